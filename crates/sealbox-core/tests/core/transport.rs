//! The plain-HTTP endpoint rule (`sealbox_core::transport`), over the test kit's table of
//! endpoints that the providers' own endpoint checks run too.

use sealbox_core::transport::{EndpointLabels, check_endpoint};
use sealbox_testkit::fixtures::assert_plain_http_rule;

#[test]
fn plain_http_is_accepted_only_for_loopback_hosts_or_with_the_opt_in() {
    let labels = EndpointLabels {
        service: "Test KMS",
        exposed: "data keys",
        opt_in: "`TestConfig::allow_http(true)`",
    };
    assert_plain_http_rule(
        |endpoint, allow_http| check_endpoint(endpoint, allow_http, &labels),
        &[
            "refusing plain-HTTP Test KMS endpoint",
            "`TestConfig::allow_http(true)`",
        ],
    );
}
