//! # sealbox-vault — Vault / OpenBao Transit as a Sealbox KEK
//!
//! A [`VaultTransit`] wraps data keys with one Transit key. How the encryption context is
//! bound depends on the key, which is read at connect time:
//!
//! - **Derived keys (`derived=true`, recommended).** The context (its canonical encoding,
//!   base64) is Transit's key-derivation `context`: data keys come from
//!   `datakey/plaintext/:name`, unwrap is `decrypt`, and **rewrap is Transit's `rewrap`**, all
//!   with that context, so plaintext keys never leave Vault on rewrap.
//! - **Non-derived AEAD keys** (`aes256-gcm96`, …). The context is sent as
//!   `associated_data` to `encrypt` and `decrypt`. Transit's `datakey` and `rewrap` endpoints
//!   do not accept associated data (a rewrap of such a ciphertext fails authentication), so
//!   data keys are generated locally and sealed with `encrypt`, and rewrap falls back to
//!   `decrypt` + `encrypt` inside this process (the plaintext key is zeroized afterwards).
//!
//! The wrapped key stored in envelopes is Transit's ciphertext string (`vault:vN:…`); the key
//! version `N` is recorded in the envelope header so rotation tooling can find old versions,
//! and is cross-checked against the ciphertext on unwrap.
//!
//! ## Associated-data self-test
//!
//! For a non-derived key the context's only protection is Transit's enforcement of
//! `associated_data`, so [`VaultTransit::connect`] checks it: it encrypts a random probe with
//! associated data A and decrypts it with B (which must fail) and with A (which must return the
//! probe). A server that decrypts under B ignores associated data, and connecting is refused
//! (`Misconfigured`). A token that may not encrypt or decrypt with the key cannot run the check;
//! it is skipped with a warning, so writer-only and reader-only tokens keep working.
//!
//! ## Tokens: renewal and re-login
//!
//! A background task (on the Tokio runtime that ran `connect`) keeps the token alive:
//!
//! - a **renewable token** (the configured one — its TTL is read with `lookup-self` — or one
//!   from a login) is renewed with `renew-self` at about **two thirds of its TTL**;
//! - when renewal cannot help (the token is not renewable, or a renewal came back shorter than
//!   the token's TTL because it reached its maximum TTL), **AppRole and Kubernetes** sessions
//!   log in again at two thirds of the remaining TTL; a static token is left to expire (logged);
//! - a call answered **403** makes the provider check its token (`lookup-self`): if the token
//!   is no longer valid (expired, revoked) and the session can log in, it logs in again —
//!   concurrent calls share one login — and **retries the call once**; a token that is valid
//!   but lacks the capability gives `PermissionDenied` without a login.
//!
//! Kubernetes logins read the service-account JWT file afresh every time (the kubelet rotates
//! projected tokens). Failures are logged (`tracing::warn!`, never with the token) and retried
//! with an exponential backoff (1 s … 30 s); [`VaultTransit::session_stats`] counts logins,
//! renewals and failures. The token is swapped atomically (the calls' client lives behind an
//! `ArcSwap`), and the task holds only a weak reference to the session and is aborted when the
//! provider is dropped.
//!
//! ## TLS
//!
//! Certificates are always verified (`VAULT_SKIP_VERIFY` is ignored). With `ca_cert` (or, when
//! it is not set, `VAULT_CACERT` / `BAO_CACERT`) **only that CA is trusted**: the system roots
//! are not consulted, so a certificate from any public CA is refused. Without it the system
//! roots are used. `VAULT_CLIENT_CERT` + `VAULT_CLIENT_KEY` give a TLS client certificate.
//! Addresses are parsed as URLs and must be `http(s)://host[:port]` with a port 1–65535;
//! anything else is a `Misconfigured` error naming the address, never a panic.
//!
//! ## Secret handling
//!
//! Tokens and AppRole secret IDs are `SecretString`s in the configuration. `vaultrs` needs the
//! session token as a plain `String` in its request middleware; this crate keeps exactly one
//! such copy per token and zeroizes it when the token is replaced or the provider dropped.
//! Login and renewal responses are zeroized after use; the HTTP layer's buffers (tokens in
//! headers, base64 data keys in bodies) are outside this crate's control.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod session;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sealbox_core::{
    DataKey, EncryptionContext, KekRef, KeyDescription, KeyProvider, ProviderError,
    ProviderErrorKind, WrappedKey,
};
use secrecy::{ExposeSecret, SecretString};
use vaultrs::api::transit::requests::{
    DataKeyType, DecryptDataRequestBuilder, EncryptDataRequestBuilder,
    GenerateDataKeyRequestBuilder, RewrapDataRequestBuilder,
};
use vaultrs::api::transit::responses::DecryptDataResponse;
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use crate::session::{Login, Session};

/// The provider ID written into envelopes.
pub const PROVIDER_ID: &str = "vault-transit";

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

/// Counters of a provider's token maintenance (see the crate documentation), for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Successful logins (AppRole / Kubernetes), the one at connect included.
    pub logins: u64,
    /// Successful token renewals (`renew-self`).
    pub renewals: u64,
    /// Failed background renewals or logins (each also logged as a warning).
    pub maintenance_failures: u64,
}

/// A Transit key used as a Sealbox KEK.
///
/// Dropping it stops its token-maintenance task.
pub struct VaultTransit {
    session: Arc<Session>,
    maintenance: Option<tokio::task::AbortHandle>,
    mount: String,
    key: String,
    key_id: String,
    binding: ContextBinding,
}

impl Drop for VaultTransit {
    fn drop(&mut self) {
        if let Some(task) = &self.maintenance {
            task.abort();
        }
    }
}

impl fmt::Debug for VaultTransit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultTransit")
            .field("address", &self.session.transport.address.as_str())
            .field("key_id", &self.key_id)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl VaultTransit {
    /// Connects, authenticates, and reads the key to learn how the context is bound; for a
    /// non-derived key, checks that the server enforces `associated_data` (see the crate
    /// documentation). Starts the token-maintenance task on the current Tokio runtime.
    ///
    /// Fails with `NotFound` if the key does not exist, `Misconfigured` if the settings are
    /// invalid, the key cannot encrypt, or the server ignores associated data.
    pub async fn connect(config: VaultTransitConfig) -> Result<Self, ProviderError> {
        let key_id = match &config.namespace {
            Some(ns) => format!(
                "{}/{}/keys/{}",
                ns.trim_matches('/'),
                config.mount,
                config.key
            ),
            None => format!("{}/keys/{}", config.mount, config.key),
        };
        let err = |kind, msg: String| ProviderError::new(PROVIDER_ID, &key_id, kind, msg);
        KekRef::new(PROVIDER_ID, &key_id)
            .map_err(|e| err(ProviderErrorKind::Misconfigured, e.to_string()))?;

        // Refuse what would make the HTTP layer panic (vaultrs unwraps URL parsing), and never
        // let VAULT_SKIP_VERIFY switch certificate checks off behind the operator's back.
        let address = session::parse_address(&config.address)
            .map_err(|e| err(ProviderErrorKind::Misconfigured, e))?;
        if let Some(ns) = &config.namespace
            && (ns.is_empty()
                || !ns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)))
        {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                "a Vault namespace may only hold ASCII letters, digits and - _ . /".into(),
            ));
        }
        let token: Option<SecretString> = match &config.auth {
            VaultAuth::Token(t) => Some(t.clone()),
            VaultAuth::TokenFromEnv => Some(
                std::env::var("VAULT_TOKEN")
                    .or_else(|_| std::env::var("BAO_TOKEN"))
                    .map(SecretString::from)
                    .map_err(|_| {
                        err(
                            ProviderErrorKind::Misconfigured,
                            "VAULT_TOKEN is not set".into(),
                        )
                    })?,
            ),
            _ => None,
        };
        if let Some(t) = &token
            && !session::token_is_sendable(t.expose_secret())
        {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                "the Vault token contains whitespace or non-ASCII characters".into(),
            ));
        }
        if address.scheme() == "http" {
            tracing::warn!(
                key_id = %key_id,
                "Vault is reached over plain HTTP: tokens and data keys cross the network unencrypted (development only)"
            );
        }
        let http = session::build_http(&address, config.ca_cert.as_deref(), config.timeout)
            .map_err(|e| err(ProviderErrorKind::Misconfigured, e))?;
        let transport =
            session::Transport::new(http, address, config.timeout, config.namespace.clone());

        let session = match (config.auth, token) {
            (_, Some(token)) => Session::with_token(&key_id, transport, &token),
            (
                VaultAuth::AppRole {
                    mount,
                    role_id,
                    secret_id,
                },
                None,
            ) => {
                let login = Login::AppRole {
                    mount,
                    role_id,
                    secret_id,
                };
                Session::with_login(&key_id, transport, login).await?
            }
            (
                VaultAuth::Kubernetes {
                    mount,
                    role,
                    jwt_path,
                },
                None,
            ) => {
                let login = Login::Kubernetes {
                    mount,
                    role,
                    jwt_path,
                };
                Session::with_login(&key_id, transport, login).await?
            }
            (VaultAuth::Token(_) | VaultAuth::TokenFromEnv, None) => {
                return Err(err(
                    ProviderErrorKind::Misconfigured,
                    "no Vault token".into(),
                ));
            }
        };
        let session = Arc::new(session);

        let (mount, key) = (config.mount, config.key);
        let info = session
            .call("reading the key", |lease| {
                let (mount, key) = (&mount, &key);
                async move { vaultrs::transit::key::read(&lease.client.0, mount, key).await }
            })
            .await?;
        // Only AEAD keys bind associated data or a derivation context; RSA and other types would
        // wrap keys without binding the encryption context.
        let aead = matches!(
            info.key_type,
            vaultrs::api::transit::KeyType::Aes128Gcm96
                | vaultrs::api::transit::KeyType::Aes256Gcm96
                | vaultrs::api::transit::KeyType::Chacha20Poly1305
        );
        if !aead || !info.supports_encryption || !info.supports_decryption {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                format!(
                    "Transit key `{key}` is of type {:?}; Sealbox needs an AEAD key (aes256-gcm96, aes128-gcm96 or chacha20-poly1305)",
                    info.key_type
                ),
            ));
        }
        let binding = if info.derived {
            ContextBinding::Derived
        } else {
            ContextBinding::AssociatedData
        };
        // A static token: learn its TTL so it can be renewed (after the key read, whose error
        // is the clearer one when the server is unreachable or the token invalid).
        if !session.can_login() {
            session.lookup_token().await?;
        }
        let provider = Self {
            maintenance: session::spawn_maintenance(&session),
            session,
            mount,
            key,
            key_id,
            binding,
        };
        if binding == ContextBinding::AssociatedData {
            tracing::info!(
                key_id = %provider.key_id,
                "Transit key is not derived: the context is bound as associated data and rewrap \
                 runs as decrypt + encrypt in this process; create keys with derived=true for native rewrap"
            );
            provider.associated_data_self_test().await?;
        }
        Ok(provider)
    }

    /// Counters of this provider's token maintenance: logins, renewals, failures.
    pub fn session_stats(&self) -> SessionStats {
        let c = &self.session.counters;
        SessionStats {
            logins: c.logins.load(Ordering::Relaxed),
            renewals: c.renewals.load(Ordering::Relaxed),
            maintenance_failures: c.failures.load(Ordering::Relaxed),
        }
    }

    /// For a non-derived key: encrypts a random probe with associated data A, then checks
    /// that decrypting it with associated data B fails and with A returns the probe. A server
    /// that decrypts under B ignores `associated_data`, so wrapped keys would not be bound to
    /// their context: connecting is refused. A token without `encrypt` or `decrypt` cannot run
    /// the check; it is skipped with a warning (so writer-only and reader-only tokens work).
    async fn associated_data_self_test(&self) -> Result<(), ProviderError> {
        let probe = DataKey::generate()
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        let plaintext = Zeroizing::new(B64.encode(probe.expose_secret()));
        let ad_a = B64.encode(b"sealbox associated-data self-test: A");
        let ad_b = B64.encode(b"sealbox associated-data self-test: B");
        let encrypted = self
            .session
            .call("self-test encrypt", |lease| {
                let (plaintext, ad_a) = (&*plaintext, &ad_a);
                async move {
                    let mut opts = EncryptDataRequestBuilder::default();
                    opts.associated_data(ad_a.clone());
                    vaultrs::transit::data::encrypt(
                        &lease.client.0,
                        &self.mount,
                        &self.key,
                        plaintext,
                        Some(&mut opts),
                    )
                    .await
                }
            })
            .await;
        let ciphertext = match encrypted {
            Ok(resp) => resp.ciphertext,
            Err(e) if e.kind() == ProviderErrorKind::PermissionDenied => {
                tracing::warn!(
                    key_id = %self.key_id,
                    error = %e,
                    "cannot check that Transit enforces associated_data: the token may not encrypt with this key; skipping the self-test"
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let decrypt_with = |ad: String| {
            let ciphertext = &ciphertext;
            async move {
                self.session
                    .call("self-test decrypt", |lease| {
                        let ad = &ad;
                        async move {
                            let mut opts = DecryptDataRequestBuilder::default();
                            opts.associated_data(ad.clone());
                            vaultrs::transit::data::decrypt(
                                &lease.client.0,
                                &self.mount,
                                &self.key,
                                ciphertext,
                                Some(&mut opts),
                            )
                            .await
                        }
                    })
                    .await
            }
        };
        let classify = |result: Result<DecryptDataResponse, ProviderError>| match result {
            Ok(resp) => {
                let opened = Zeroizing::new(resp.plaintext);
                Ok(if *opened == *plaintext {
                    Probe::Opened
                } else {
                    Probe::OpenedOther
                })
            }
            Err(e) => match e.kind() {
                ProviderErrorKind::InvalidWrappedKey => Ok(Probe::Rejected),
                ProviderErrorKind::PermissionDenied => Ok(Probe::Denied),
                _ => Err(e),
            },
        };
        let wrong = classify(decrypt_with(ad_b).await)?;
        let right = classify(decrypt_with(ad_a).await)?;
        match judge_associated_data(wrong, right) {
            AdVerdict::Enforced => Ok(()),
            AdVerdict::Ignored => Err(self.err(
                ProviderErrorKind::Misconfigured,
                "the server ignores associated_data: Transit decrypted a self-test probe under \
                 other associated data than it was encrypted with, so wrapped keys would not be \
                 bound to their encryption context; refusing this non-derived key (use a \
                 derived key, derived=true, or fix the server)",
            )),
            AdVerdict::Inconclusive => {
                tracing::warn!(
                    key_id = %self.key_id,
                    "cannot check that Transit enforces associated_data: the token may not decrypt with this key; skipping the self-test"
                );
                Ok(())
            }
            AdVerdict::Broken => Err(self.err(
                ProviderErrorKind::Protocol,
                "associated-data self-test: Transit did not return the probe when decrypting \
                 it with the associated data it was encrypted with",
            )),
        }
    }

    /// How this key binds the encryption context.
    pub fn binding(&self) -> ContextBinding {
        self.binding
    }

    fn err(&self, kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError::new(PROVIDER_ID, &self.key_id, kind, message)
    }

    fn wrapped_from(&self, ciphertext: String) -> Result<WrappedKey, ProviderError> {
        let version = parse_version(&ciphertext).ok_or_else(|| {
            self.err(
                ProviderErrorKind::Protocol,
                "Transit returned a ciphertext without `vault:vN:`",
            )
        })?;
        let kek = KekRef::new(PROVIDER_ID, &self.key_id)
            .and_then(|k| k.with_version(version.to_string()))
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        WrappedKey::new(kek, ciphertext.into_bytes())
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    /// The Transit ciphertext of a wrapped key, checked against the header's version.
    fn ciphertext_of<'a>(&self, wrapped: &'a WrappedKey) -> Result<&'a str, ProviderError> {
        if !self.owns(wrapped.kek()) {
            return Err(self.err(
                ProviderErrorKind::NotFound,
                format!(
                    "wrapped key belongs to {}, not to this Transit key",
                    wrapped.kek()
                ),
            ));
        }
        let ct = std::str::from_utf8(wrapped.ciphertext()).map_err(|_| {
            self.err(
                ProviderErrorKind::InvalidWrappedKey,
                "wrapped key is not a Transit ciphertext",
            )
        })?;
        let version = parse_version(ct).ok_or_else(|| {
            self.err(
                ProviderErrorKind::InvalidWrappedKey,
                "wrapped key is not a `vault:vN:` ciphertext",
            )
        })?;
        if wrapped.kek().key_version() != Some(version.to_string().as_str()) {
            return Err(self.err(
                ProviderErrorKind::InvalidWrappedKey,
                "the envelope's key version does not match the Transit ciphertext's",
            ));
        }
        Ok(ct)
    }

    fn decode_key(&self, plaintext_b64: &str) -> Result<DataKey, ProviderError> {
        let bytes = Zeroizing::new(B64.decode(plaintext_b64).map_err(|_| {
            self.err(
                ProviderErrorKind::Protocol,
                "Transit returned a plaintext that is not base64",
            )
        })?);
        DataKey::try_from_slice(&bytes)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }
}

/// `POST {mount}/decrypt/{name}` with `batch_input`: many unwraps in one HTTP request.
/// Partial failures are answered with 207 so the per-item results can be read.
struct BatchDecrypt {
    path: String,
    body: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct BatchDecryptResponse {
    batch_results: Vec<BatchItem>,
}

#[derive(serde::Deserialize)]
struct BatchItem {
    #[serde(default)]
    plaintext: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[async_trait]
impl rustify::Endpoint for BatchDecrypt {
    type Response = BatchDecryptResponse;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::POST
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(Some(self.body.clone()))
    }
}

/// What decrypting the associated-data self-test probe gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The probe came back.
    Opened,
    /// Something else came back.
    OpenedOther,
    /// Transit refused it (authentication failed).
    Rejected,
    /// The token may not decrypt.
    Denied,
}

/// The associated-data self-test's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdVerdict {
    /// Wrong associated data is refused, the right one opens the probe.
    Enforced,
    /// Wrong associated data opens the ciphertext: the server does not bind it.
    Ignored,
    /// The token may not decrypt: the check cannot run.
    Inconclusive,
    /// The right associated data does not give the probe back.
    Broken,
}

/// Judges the self-test from decrypting the probe with the wrong and the right associated data.
fn judge_associated_data(wrong: Probe, right: Probe) -> AdVerdict {
    match (wrong, right) {
        (Probe::Opened | Probe::OpenedOther, _) => AdVerdict::Ignored,
        (Probe::Denied, _) | (_, Probe::Denied) => AdVerdict::Inconclusive,
        (Probe::Rejected, Probe::Opened) => AdVerdict::Enforced,
        (Probe::Rejected, Probe::OpenedOther | Probe::Rejected) => AdVerdict::Broken,
    }
}

/// The `N` of `vault:vN:…`.
fn parse_version(ciphertext: &str) -> Option<u64> {
    let rest = ciphertext.strip_prefix("vault:v")?;
    let (n, body) = rest.split_once(':')?;
    if body.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Maps a Vault error to a typed provider error, never echoing request bodies.
fn map_error(key_id: &str, op: &str, e: ClientError) -> ProviderError {
    let (kind, message) = match &e {
        ClientError::APIError { code, errors } => {
            let text = errors.join("; ");
            let lower = text.to_lowercase();
            let kind = match code {
                403 => ProviderErrorKind::PermissionDenied,
                404 => ProviderErrorKind::NotFound,
                429 => ProviderErrorKind::Throttled,
                503 if lower.contains("sealed") => ProviderErrorKind::Unavailable,
                500..=599 => ProviderErrorKind::Unavailable,
                _ if lower.contains("key not found") || lower.contains("no existing key") => {
                    ProviderErrorKind::NotFound
                }
                _ if lower.contains("disallowed by policy")
                    || lower.contains("min_decryption_version") =>
                {
                    ProviderErrorKind::KeyDisabled
                }
                _ if lower.contains("authentication failed")
                    || lower.contains("invalid ciphertext")
                    || lower.contains("unable to decrypt") =>
                {
                    ProviderErrorKind::InvalidWrappedKey
                }
                _ => ProviderErrorKind::Protocol,
            };
            let hint = if lower.contains("sealed") {
                " (Vault is sealed: an operator must unseal it)"
            } else if lower.contains("disallowed by policy") {
                " (the key version is below the key's min_decryption_version)"
            } else {
                ""
            };
            (kind, format!("{op}: HTTP {code}: {text}{hint}"))
        }
        ClientError::RestClientError { source } => {
            let text = format!("{source}: {}", error_chain(source));
            let kind = if text.to_lowercase().contains("timed out")
                || text.to_lowercase().contains("timeout")
            {
                ProviderErrorKind::Timeout
            } else {
                ProviderErrorKind::Unavailable
            };
            (kind, format!("{op}: cannot reach Vault: {text}"))
        }
        other => (ProviderErrorKind::Protocol, format!("{op}: {other}")),
    };
    ProviderError::new(PROVIDER_ID, key_id, kind, message)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

fn context_b64(context: &EncryptionContext) -> String {
    B64.encode(context.encode())
}

#[async_trait]
impl KeyProvider for VaultTransit {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<sealbox_core::GeneratedKey, ProviderError> {
        if self.binding == ContextBinding::AssociatedData {
            let data_key = DataKey::generate()
                .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
            let wrapped = self.wrap(&data_key, context).await?;
            return Ok(sealbox_core::GeneratedKey { data_key, wrapped });
        }
        let context = context_b64(context);
        let resp = self
            .session
            .call("datakey", |lease| {
                let context = &context;
                async move {
                    let mut opts = GenerateDataKeyRequestBuilder::default();
                    opts.context(context.clone()).bits(256u16);
                    vaultrs::transit::generate::data_key(
                        &lease.client.0,
                        &self.mount,
                        &self.key,
                        DataKeyType::Plaintext,
                        Some(&mut opts),
                    )
                    .await
                }
            })
            .await?;
        let plaintext = Zeroizing::new(resp.plaintext.ok_or_else(|| {
            self.err(
                ProviderErrorKind::Protocol,
                "datakey/plaintext returned no plaintext",
            )
        })?);
        let data_key = self.decode_key(&plaintext)?;
        let wrapped = self.wrapped_from(resp.ciphertext)?;
        Ok(sealbox_core::GeneratedKey { data_key, wrapped })
    }

    async fn wrap(
        &self,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        let plaintext = Zeroizing::new(B64.encode(data_key.expose_secret()));
        let context = context_b64(context);
        let resp = self
            .session
            .call("encrypt", |lease| {
                let (plaintext, context) = (&*plaintext, &context);
                async move {
                    let mut opts = EncryptDataRequestBuilder::default();
                    match self.binding {
                        ContextBinding::Derived => opts.context(context.clone()),
                        ContextBinding::AssociatedData => opts.associated_data(context.clone()),
                    };
                    vaultrs::transit::data::encrypt(
                        &lease.client.0,
                        &self.mount,
                        &self.key,
                        plaintext,
                        Some(&mut opts),
                    )
                    .await
                }
            })
            .await?;
        self.wrapped_from(resp.ciphertext)
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let ct = self.ciphertext_of(wrapped)?;
        let context = context_b64(context);
        let resp = self
            .session
            .call("decrypt", |lease| {
                let context = &context;
                async move {
                    let mut opts = DecryptDataRequestBuilder::default();
                    match self.binding {
                        ContextBinding::Derived => opts.context(context.clone()),
                        ContextBinding::AssociatedData => opts.associated_data(context.clone()),
                    };
                    vaultrs::transit::data::decrypt(
                        &lease.client.0,
                        &self.mount,
                        &self.key,
                        ct,
                        Some(&mut opts),
                    )
                    .await
                }
            })
            .await?;
        let plaintext = Zeroizing::new(resp.plaintext);
        self.decode_key(&plaintext)
    }

    /// One `decrypt` request with `batch_input` for all items; per-item failures (wrong
    /// context, corrupted key) fail only their item.
    async fn unwrap_many(
        &self,
        items: &[(&WrappedKey, &EncryptionContext)],
    ) -> Vec<Result<DataKey, ProviderError>> {
        let field = match self.binding {
            ContextBinding::Derived => "context",
            ContextBinding::AssociatedData => "associated_data",
        };
        let mut out: Vec<Option<Result<DataKey, ProviderError>>> = Vec::with_capacity(items.len());
        let mut batch = Vec::new();
        let mut slots = Vec::new();
        for (i, (wrapped, context)) in items.iter().enumerate() {
            match self.ciphertext_of(wrapped) {
                Ok(ct) => {
                    batch
                        .push(serde_json::json!({ "ciphertext": ct, field: context_b64(context) }));
                    slots.push(i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        if !batch.is_empty() {
            let body =
                serde_json::json!({ "batch_input": batch, "partial_failure_response_code": 207 });
            let path = format!("{}/decrypt/{}", self.mount, self.key);
            let body = body.to_string().into_bytes();
            let response = self
                .session
                .call("batch decrypt", |lease| {
                    let endpoint = BatchDecrypt {
                        path: path.clone(),
                        body: body.clone(),
                    };
                    async move { vaultrs::api::exec_with_result(&lease.client.0, endpoint).await }
                })
                .await;
            let results: Vec<Result<DataKey, ProviderError>> = match response {
                Ok(resp) if resp.batch_results.len() == slots.len() => resp
                    .batch_results
                    .into_iter()
                    .map(|item| {
                        let plaintext = item.plaintext.map(Zeroizing::new);
                        match (plaintext, item.error) {
                            (_, Some(e)) if !e.is_empty() => Err(map_error(
                                &self.key_id,
                                "batch decrypt",
                                ClientError::APIError {
                                    code: 400,
                                    errors: vec![e],
                                },
                            )),
                            (Some(p), _) => self.decode_key(&p),
                            (None, _) => Err(self.err(
                                ProviderErrorKind::Protocol,
                                "batch decrypt item has no plaintext",
                            )),
                        }
                    })
                    .collect(),
                Ok(resp) => {
                    let e = self.err(
                        ProviderErrorKind::Protocol,
                        format!(
                            "batch decrypt returned {} results for {} items",
                            resp.batch_results.len(),
                            slots.len()
                        ),
                    );
                    slots.iter().map(|_| Err(e.clone())).collect()
                }
                Err(e) => slots.iter().map(|_| Err(e.clone())).collect(),
            };
            for (slot, result) in slots.into_iter().zip(results) {
                out[slot] = Some(result);
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(self.err(ProviderErrorKind::Protocol, "batch item without result"))
                })
            })
            .collect()
    }

    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        match self.binding {
            ContextBinding::Derived => {
                let ct = self.ciphertext_of(wrapped)?;
                let context = context_b64(context);
                let resp = self
                    .session
                    .call("rewrap", |lease| {
                        let context = &context;
                        async move {
                            let mut opts = RewrapDataRequestBuilder::default();
                            opts.context(context.clone());
                            vaultrs::transit::data::rewrap(
                                &lease.client.0,
                                &self.mount,
                                &self.key,
                                ct,
                                Some(&mut opts),
                            )
                            .await
                        }
                    })
                    .await?;
                self.wrapped_from(resp.ciphertext)
            }
            ContextBinding::AssociatedData => {
                let key = self.unwrap(wrapped, context).await?;
                self.wrap(&key, context).await
            }
        }
    }

    async fn describe(&self) -> Result<KeyDescription, ProviderError> {
        let info = self
            .session
            .call("reading the key", |lease| async move {
                vaultrs::transit::key::read(&lease.client.0, &self.mount, &self.key).await
            })
            .await?;
        let mut versions: Vec<u64> = match &info.keys {
            vaultrs::api::transit::responses::ReadKeyData::Symmetric(m) => {
                m.keys().filter_map(|k| k.parse().ok()).collect()
            }
            vaultrs::api::transit::responses::ReadKeyData::Asymmetric(m) => {
                m.keys().filter_map(|k| k.parse().ok()).collect()
            }
        };
        versions.retain(|v| *v >= info.min_decryption_version);
        versions.sort_unstable();
        let latest = versions.last().copied().unwrap_or(1);
        let kek = KekRef::new(PROVIDER_ID, &self.key_id)
            .and_then(|k| k.with_version(latest.to_string()))
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        Ok(KeyDescription::new(
            kek,
            versions.iter().map(u64::to_string).collect(),
            self.binding == ContextBinding::Derived,
            true,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{AdVerdict, Probe, judge_associated_data, parse_version};

    #[test]
    fn the_associated_data_self_test_refuses_a_server_that_ignores_it() {
        use Probe::*;
        // Decrypting under the wrong associated data must fail, whatever else happens.
        for right in [Opened, OpenedOther, Rejected, Denied] {
            assert_eq!(judge_associated_data(Opened, right), AdVerdict::Ignored);
            assert_eq!(
                judge_associated_data(OpenedOther, right),
                AdVerdict::Ignored
            );
        }
        assert_eq!(judge_associated_data(Rejected, Opened), AdVerdict::Enforced);
        // The right associated data must give the probe back.
        assert_eq!(judge_associated_data(Rejected, Rejected), AdVerdict::Broken);
        assert_eq!(
            judge_associated_data(Rejected, OpenedOther),
            AdVerdict::Broken
        );
        // Without decrypt permission the test cannot run.
        assert_eq!(
            judge_associated_data(Denied, Denied),
            AdVerdict::Inconclusive
        );
        assert_eq!(
            judge_associated_data(Denied, Opened),
            AdVerdict::Inconclusive
        );
        assert_eq!(
            judge_associated_data(Rejected, Denied),
            AdVerdict::Inconclusive
        );
    }

    #[test]
    fn transit_versions_are_parsed_strictly() {
        assert_eq!(parse_version("vault:v12:abc"), Some(12));
        assert_eq!(parse_version("vault:v1:"), None);
        assert_eq!(parse_version("vault:vx:abc"), None);
        assert_eq!(parse_version("vault:v:abc"), None);
        assert_eq!(parse_version("other:v1:abc"), None);
    }
}
