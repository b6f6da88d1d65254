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
        // The test kit's table of endpoints, through GCP's wording.
        sealbox_testkit::fixtures::assert_plain_http_rule(
            check_endpoint,
            &[
                "refusing plain-HTTP Cloud KMS endpoint",
                "GcpKmsConfig::allow_http(true)",
                "[gcp] allow_http = true",
            ],
        );
    }
}
