//! The provider's configuration.

use std::time::Duration;

/// Where the key is and how to reach KMS.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AwsKmsConfig {
    /// Key ID, key ARN, alias name (`alias/…`) or alias ARN.
    pub key: String,
    /// Region; default from the AWS chain (`AWS_REGION`, profile, …). A key ARN's region
    /// wins when no region is configured.
    pub region: Option<String>,
    /// Endpoint override (VPC endpoint, FIPS endpoint, or a test server). Must be `https://`
    /// unless its host is loopback or [`AwsKmsConfig::allow_http`] is set.
    pub endpoint_url: Option<String>,
    /// Attempts per call including the first (standard retry mode, exponential backoff).
    pub max_attempts: u32,
    /// Timeout of one attempt.
    pub attempt_timeout: Duration,
    /// Accept a plain `http://` endpoint on a non-loopback host (default `false`).
    /// Development only: data keys would cross the network unencrypted.
    pub allow_http: bool,
    /// Own envelopes sealed by related replicas of a Multi-Region key (default `false`).
    pub multi_region_replicas: bool,
}

impl AwsKmsConfig {
    /// A configuration for `key`, 5 attempts of at most 10 s each.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            region: None,
            endpoint_url: None,
            max_attempts: 5,
            attempt_timeout: Duration::from_secs(10),
            allow_http: false,
            multi_region_replicas: false,
        }
    }

    /// Sets the region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the endpoint override.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Sets the attempts per call (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Accepts (`true`) a plain `http://` endpoint whose host is not loopback. **Development
    /// only**: the data keys KMS returns would cross the network unencrypted. Every connect
    /// with such an endpoint logs a warning. Loopback `http://` endpoints (`127.0.0.0/8`,
    /// `::1`, `localhost`) need no opt-in.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Lets a provider for a Multi-Region key (`mrk-…`) also own envelopes whose header names
    /// a related replica or the primary (same partition, account and key ID, another region),
    /// decrypting them with its own regional ARN. Off by default: with it on, the region in
    /// such an envelope's header is not authenticated — an edit that swaps it for another
    /// region still opens (harmless for confidentiality and integrity, since replicas share
    /// key material, but the header's region is then only a claim).
    pub fn multi_region_replicas(mut self, accept: bool) -> Self {
        self.multi_region_replicas = accept;
        self
    }
}
