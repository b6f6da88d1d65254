//! The provider's configuration and credentials.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How long the primary version is cached by default.
const PRIMARY_TTL: Duration = Duration::from_secs(30);

/// Where credentials come from. `Debug` never prints key material.
#[derive(Clone)]
#[non_exhaustive]
pub enum GcpCredentials {
    /// `gcp_auth`'s default chain: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud, metadata server.
    Default,
    /// A service-account JSON key file.
    ServiceAccountFile(PathBuf),
    /// Service-account JSON key text (it holds a private key).
    ServiceAccountJson(secrecy::SecretString),
}

impl fmt::Debug for GcpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcpCredentials::Default => f.write_str("Default"),
            GcpCredentials::ServiceAccountFile(p) => {
                f.debug_tuple("ServiceAccountFile").field(p).finish()
            }
            GcpCredentials::ServiceAccountJson(_) => f.write_str("ServiceAccountJson(<redacted>)"),
        }
    }
}

/// Where the key is and how to reach Cloud KMS.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GcpKmsConfig {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub key_name: String,
    /// API endpoint (default `https://cloudkms.googleapis.com`; regional, Private Service
    /// Connect or emulator endpoints work too). Must be `https://` unless its host is
    /// loopback or [`GcpKmsConfig::allow_http`] is set.
    pub endpoint: String,
    /// Credentials.
    pub credentials: GcpCredentials,
    /// Attempts per call on 429 / 5xx / connection errors.
    pub max_attempts: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long the primary version is cached before it is read again (default 30 s). After
    /// a rotation, new data keys move to the new primary within this time.
    pub primary_ttl: Duration,
    /// Accept a plain `http://` endpoint on a non-loopback host (default `false`).
    /// Development only: access tokens and data keys would cross the network unencrypted.
    pub allow_http: bool,
}

impl GcpKmsConfig {
    /// A configuration for `key_name` with the default endpoint and credentials.
    pub fn new(key_name: impl Into<String>) -> Self {
        Self {
            key_name: key_name.into(),
            endpoint: "https://cloudkms.googleapis.com".into(),
            credentials: GcpCredentials::Default,
            max_attempts: 5,
            timeout: Duration::from_secs(10),
            primary_ttl: PRIMARY_TTL,
            allow_http: false,
        }
    }

    /// Accepts (`true`) a plain `http://` endpoint whose host is not loopback. **Development
    /// only**: the OAuth access token, and the data keys in every `:encrypt` request and
    /// `:decrypt` answer, would cross the network unencrypted. Every connect with such an
    /// endpoint logs a warning. Loopback `http://` endpoints (`127.0.0.0/8`, `::1`,
    /// `localhost`) need no opt-in.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Sets how long the primary version is cached.
    pub fn primary_ttl(mut self, ttl: Duration) -> Self {
        self.primary_ttl = ttl;
        self
    }

    /// Sets the endpoint.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// Sets the credentials.
    pub fn credentials(mut self, credentials: GcpCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Sets the attempts per call (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
}
