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
        // The test kit's table of endpoints, through AWS's wiring and wording.
        sealbox_testkit::fixtures::assert_plain_http_rule(
            transport,
            &[
                "refusing plain-HTTP KMS endpoint",
                "allow_http(true)",
                "[aws] allow_http = true",
            ],
        );
    }
}
