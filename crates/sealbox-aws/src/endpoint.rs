//! Which endpoint the KMS client uses, and whether plain HTTP to it is acceptable.

use aws_config::SdkConfig;
use aws_types::service_config::ServiceConfigKey;
use sealbox_core::transport::{self, EndpointLabels, Transport};
use sealbox_core::{ProviderError, ProviderErrorKind};

use crate::config::AwsKmsConfig;
use crate::error::err;

/// How endpoint messages name the service, what plain HTTP exposes, and the opt-in.
const LABELS: EndpointLabels<'static> = EndpointLabels {
    service: "KMS",
    exposed: "data keys",
    opt_in: "`AwsKmsConfig::allow_http(true)` (policy file: `[aws] allow_http = true`)",
};

/// The endpoint the KMS client will use, found the way `aws_sdk_kms::config::Builder::from`
/// finds it: `config.endpoint_url`, else an endpoint set in code on the `SdkConfig`, else
/// the KMS-specific setting (`AWS_ENDPOINT_URL_KMS`, profile `services`), else the
/// `SdkConfig`'s general one (`AWS_ENDPOINT_URL`, profile `endpoint_url`).
pub(crate) fn effective_endpoint(sdk: &SdkConfig, config: &AwsKmsConfig) -> Option<String> {
    if let Some(url) = &config.endpoint_url {
        return Some(url.clone());
    }
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(str::to_owned);
    }
    let key = ServiceConfigKey::builder()
        .service_id("KMS")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    key.and_then(|k| sdk.service_config().and_then(|c| c.load_config(k)))
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
}

/// Accepts `https://` endpoints, `http://` ones on loopback hosts, and other `http://` ones
/// only with `allow_http`; refuses everything else (other schemes, credentials in the URL,
/// unparsable URLs) with a `Misconfigured` error naming the endpoint and the opt-in.
pub(crate) fn check_endpoint(
    key: &str,
    endpoint: &str,
    allow_http: bool,
) -> Result<Transport, ProviderError> {
    transport::check_endpoint(endpoint, allow_http, &LABELS)
        .map_err(|message| err(key, ProviderErrorKind::Misconfigured, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(endpoint: &str, allow_http: bool) -> Result<Transport, String> {
        check_endpoint("k", endpoint, allow_http).map_err(|e| {
            assert_eq!(e.kind(), ProviderErrorKind::Misconfigured, "{e}");
            e.to_string()
        })
    }

    #[test]
    fn plain_http_is_accepted_only_for_loopback_hosts_or_with_the_opt_in() {
        // The host rules are tested in `sealbox_core::transport`; here, AWS's wiring and wording.
        assert_eq!(
            transport("https://kms.eu-west-1.amazonaws.com", false),
            Ok(Transport::Tls)
        );
        assert_eq!(
            transport("http://localhost:4566/", false),
            Ok(Transport::LoopbackHttp)
        );
        for remote in [
            "http://kms.example.com",
            "http://10.0.0.5:4566",
            "http://0.0.0.0:4566",
            "http://[::]:4566",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
        ] {
            let e = transport(remote, false).expect_err(remote);
            assert!(
                e.contains("refusing plain-HTTP KMS endpoint")
                    && e.contains(remote.trim_start_matches("http://"))
                    && e.contains("allow_http(true)")
                    && e.contains("[aws] allow_http = true"),
                "{e}"
            );
            assert_eq!(
                transport(remote, true),
                Ok(Transport::OptedInHttp),
                "{remote}"
            );
        }
        for bad in ["kms.example.com", "ftp://kms.example.com", "not a url"] {
            let e = transport(bad, true).expect_err(bad);
            assert!(e.contains("https://") || e.contains("valid URL"), "{e}");
        }
        let e = transport("https://user:hunter2@kms.example.com", false).expect_err("creds");
        assert!(
            e.contains("user name or password") && !e.contains("hunter2"),
            "{e}"
        );
    }
}
