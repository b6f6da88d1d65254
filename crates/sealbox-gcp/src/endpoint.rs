//! Whether plain HTTP to the configured endpoint is acceptable.

use sealbox_core::transport::{self, EndpointLabels, Transport};

/// How endpoint messages name the service, what plain HTTP exposes, and the opt-in.
const LABELS: EndpointLabels<'static> = EndpointLabels {
    service: "Cloud KMS",
    exposed: "access tokens and data keys",
    opt_in: "`GcpKmsConfig::allow_http(true)` (policy file: `[gcp] allow_http = true`)",
};

/// Accepts `https://` endpoints, `http://` ones on loopback hosts, and other `http://` ones
/// only with `allow_http`; refuses everything else (other schemes, credentials in the URL,
/// unparsable URLs) with a message naming the endpoint and the opt-in.
pub(crate) fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<Transport, String> {
    transport::check_endpoint(endpoint, allow_http, &LABELS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_accepted_only_for_loopback_hosts_or_with_the_opt_in() {
        // The host rules are tested in `sealbox_core::transport`; here, GCP's wording.
        assert_eq!(
            check_endpoint("https://cloudkms.googleapis.com", false),
            Ok(Transport::Tls)
        );
        assert_eq!(
            check_endpoint("http://[::1]:8080", false),
            Ok(Transport::LoopbackHttp)
        );
        for remote in [
            "http://cloudkms.googleapis.com",
            "http://192.168.1.10:8080",
            "http://0.0.0.0:8080",
            "http://localhost.evil.example",
        ] {
            let e = check_endpoint(remote, false).expect_err(remote);
            assert!(
                e.contains("refusing plain-HTTP Cloud KMS endpoint")
                    && e.contains(remote.trim_start_matches("http://"))
                    && e.contains("GcpKmsConfig::allow_http(true)")
                    && e.contains("[gcp] allow_http = true"),
                "{e}"
            );
            assert_eq!(
                check_endpoint(remote, true),
                Ok(Transport::OptedInHttp),
                "{remote}"
            );
        }
        for bad in ["cloudkms.googleapis.com", "ftp://example.com", ""] {
            assert!(check_endpoint(bad, true).is_err(), "{bad}");
        }
        let e = check_endpoint("https://u:hunter2@cloudkms.googleapis.com", false)
            .expect_err("credentials in the URL");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
