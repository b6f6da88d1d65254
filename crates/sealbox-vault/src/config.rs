//! The provider's settings: where the Transit key is, how to authenticate, and how the
//! encryption context is bound.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// How the provider authenticates to Vault.
#[non_exhaustive]
pub enum VaultAuth {
    /// A token (for instance from `VAULT_TOKEN`).
    Token(SecretString),
    /// The token in the environment variable `VAULT_TOKEN` (or `BAO_TOKEN`), read at connect.
    TokenFromEnv,
    /// AppRole login (`auth/<mount>/login`).
    AppRole {
        /// The AppRole auth mount, usually `approle`.
        mount: String,
        /// The role ID.
        role_id: String,
        /// The secret ID.
        secret_id: SecretString,
    },
    /// Kubernetes login with the pod's service-account JWT (`auth/<mount>/login`).
    Kubernetes {
        /// The Kubernetes auth mount, usually `kubernetes`.
        mount: String,
        /// The Vault role.
        role: String,
        /// The JWT file, usually `/var/run/secrets/kubernetes.io/serviceaccount/token`.
        jwt_path: PathBuf,
    },
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(<redacted>)"),
            VaultAuth::TokenFromEnv => f.write_str("TokenFromEnv"),
            VaultAuth::AppRole { mount, role_id, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .field("role_id", role_id)
                .field("secret_id", &"<redacted>")
                .finish(),
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_path,
            } => f
                .debug_struct("Kubernetes")
                .field("mount", mount)
                .field("role", role)
                .field("jwt_path", jwt_path)
                .finish(),
        }
    }
}

/// Where the Transit key is and how to reach it.
#[derive(Debug)]
#[non_exhaustive]
pub struct VaultTransitConfig {
    /// Vault address, `http(s)://host[:port]`, e.g. `https://vault.example.com:8200`.
    pub address: String,
    /// Transit mount path (default `transit`).
    pub mount: String,
    /// Transit key name.
    pub key: String,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// Authentication.
    pub auth: VaultAuth,
    /// PEM file of the CA (or CAs) that signed Vault's TLS certificate. When set — or, if not,
    /// when `VAULT_CACERT` / `BAO_CACERT` names one — **only** these CAs are trusted (the system
    /// roots are not). Default: the system roots.
    pub ca_cert: Option<PathBuf>,
    /// Timeout of each HTTP request (default 10 s).
    pub timeout: Duration,
}

impl VaultTransitConfig {
    /// A configuration for key `key` at `address`, mount `transit`, 10 s timeout.
    pub fn new(address: impl Into<String>, key: impl Into<String>, auth: VaultAuth) -> Self {
        Self {
            address: address.into(),
            mount: "transit".into(),
            key: key.into(),
            namespace: None,
            auth,
            ca_cert: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// Sets the Transit mount path.
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into();
        self
    }

    /// Sets the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the CA certificate file, which is then the only trusted CA.
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Sets the per-request timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// How the context is bound to wrapped keys (see the crate documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextBinding {
    /// Transit key derivation `context`; native rewrap.
    Derived,
    /// AEAD `associated_data`; rewrap by decrypt + encrypt.
    AssociatedData,
}
