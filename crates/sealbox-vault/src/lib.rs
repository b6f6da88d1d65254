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
//! Secret handling: tokens and AppRole secret IDs are `SecretString`s in the configuration;
//! `vaultrs` keeps the session token in its own (non-zeroizing) memory, and the HTTP layer's
//! buffers briefly hold base64 data keys — both are outside this crate's control.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::path::PathBuf;
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
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

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
    /// Vault address, e.g. `https://vault.example.com:8200`.
    pub address: String,
    /// Transit mount path (default `transit`).
    pub mount: String,
    /// Transit key name.
    pub key: String,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// Authentication.
    pub auth: VaultAuth,
    /// PEM file of the CA that signed Vault's TLS certificate (default: system roots, or
    /// `VAULT_CACERT`).
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

    /// Sets the CA certificate file.
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

/// A Transit key used as a Sealbox KEK.
pub struct VaultTransit {
    client: VaultClient,
    mount: String,
    key: String,
    key_id: String,
    binding: ContextBinding,
}

impl fmt::Debug for VaultTransit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultTransit")
            .field("address", &self.client.settings.address.as_str())
            .field("key_id", &self.key_id)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl VaultTransit {
    /// Connects, authenticates, and reads the key to learn how the context is bound.
    /// Fails with `NotFound` if the key does not exist, `Misconfigured` if it cannot encrypt.
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

        let token: SecretString = match &config.auth {
            VaultAuth::Token(t) => t.clone(),
            VaultAuth::TokenFromEnv => std::env::var("VAULT_TOKEN")
                .or_else(|_| std::env::var("BAO_TOKEN"))
                .map(SecretString::from)
                .map_err(|_| {
                    err(
                        ProviderErrorKind::Misconfigured,
                        "VAULT_TOKEN is not set".into(),
                    )
                })?,
            _ => SecretString::from(String::new()),
        };
        // Refuse what would make the HTTP layer panic, and never let VAULT_SKIP_VERIFY switch
        // certificate checks off behind the operator's back.
        let address_ok = (config.address.starts_with("https://")
            || config.address.starts_with("http://"))
            && config.address.len() > "https://".len()
            && config.address.bytes().all(|b| b.is_ascii_graphic());
        if !address_ok {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                format!(
                    "Vault address `{}` must be an http(s):// URL",
                    config.address.escape_debug()
                ),
            ));
        }
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
        if !token.expose_secret().bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                "the Vault token contains whitespace or non-ASCII characters".into(),
            ));
        }
        if config.address.starts_with("http://") {
            tracing::warn!(
                key_id = %key_id,
                "Vault is reached over plain HTTP: tokens and data keys cross the network unencrypted (development only)"
            );
        }
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(&config.address)
            .token(token.expose_secret())
            .timeout(Some(config.timeout))
            .verify(true);
        if let Some(ns) = &config.namespace {
            settings.set_namespace(ns.clone());
        }
        if let Some(ca) = &config.ca_cert {
            settings.ca_certs(vec![ca.to_string_lossy().into_owned()]);
        }
        let settings = settings.build().map_err(|e| {
            err(
                ProviderErrorKind::Misconfigured,
                format!("invalid Vault settings: {e}"),
            )
        })?;
        let mut client = VaultClient::new(settings).map_err(|e| {
            err(
                ProviderErrorKind::Misconfigured,
                format!("cannot build the Vault client: {e}"),
            )
        })?;

        match &config.auth {
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let auth = vaultrs::auth::approle::login(
                    &client,
                    mount,
                    role_id,
                    secret_id.expose_secret(),
                )
                .await
                .map_err(|e| map_error(&key_id, "AppRole login", e))?;
                client.set_token(&auth.client_token);
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_path,
            } => {
                let jwt = Zeroizing::new(std::fs::read_to_string(jwt_path).map_err(|e| {
                    err(
                        ProviderErrorKind::Misconfigured,
                        format!(
                            "cannot read the service-account token {}: {e}",
                            jwt_path.display()
                        ),
                    )
                })?);
                let auth = vaultrs::auth::kubernetes::login(&client, mount, role, jwt.trim())
                    .await
                    .map_err(|e| map_error(&key_id, "Kubernetes login", e))?;
                client.set_token(&auth.client_token);
            }
            _ => {}
        }

        let info = vaultrs::transit::key::read(&client, &config.mount, &config.key)
            .await
            .map_err(|e| map_error(&key_id, "reading the key", e))?;
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
                    "Transit key `{}` is of type {:?}; Sealbox needs an AEAD key (aes256-gcm96, aes128-gcm96 or chacha20-poly1305)",
                    config.key, info.key_type
                ),
            ));
        }
        let binding = if info.derived {
            ContextBinding::Derived
        } else {
            ContextBinding::AssociatedData
        };
        if binding == ContextBinding::AssociatedData {
            tracing::info!(
                key_id = %key_id,
                "Transit key is not derived: the context is bound as associated data and rewrap \
                 runs as decrypt + encrypt in this process; create keys with derived=true for native rewrap"
            );
        }
        Ok(Self {
            client,
            mount: config.mount,
            key: config.key,
            key_id,
            binding,
        })
    }

    /// How this key binds the encryption context.
    pub fn binding(&self) -> ContextBinding {
        self.binding
    }

    fn err(&self, kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError::new(PROVIDER_ID, &self.key_id, kind, message)
    }

    fn map(&self, op: &str, e: ClientError) -> ProviderError {
        map_error(&self.key_id, op, e)
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
        let mut opts = GenerateDataKeyRequestBuilder::default();
        opts.context(context_b64(context)).bits(256u16);
        let resp = vaultrs::transit::generate::data_key(
            &self.client,
            &self.mount,
            &self.key,
            DataKeyType::Plaintext,
            Some(&mut opts),
        )
        .await
        .map_err(|e| self.map("datakey", e))?;
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
        let mut opts = EncryptDataRequestBuilder::default();
        match self.binding {
            ContextBinding::Derived => opts.context(context_b64(context)),
            ContextBinding::AssociatedData => opts.associated_data(context_b64(context)),
        };
        let resp = vaultrs::transit::data::encrypt(
            &self.client,
            &self.mount,
            &self.key,
            &plaintext,
            Some(&mut opts),
        )
        .await
        .map_err(|e| self.map("encrypt", e))?;
        self.wrapped_from(resp.ciphertext)
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let ct = self.ciphertext_of(wrapped)?;
        let mut opts = DecryptDataRequestBuilder::default();
        match self.binding {
            ContextBinding::Derived => opts.context(context_b64(context)),
            ContextBinding::AssociatedData => opts.associated_data(context_b64(context)),
        };
        let resp = vaultrs::transit::data::decrypt(
            &self.client,
            &self.mount,
            &self.key,
            ct,
            Some(&mut opts),
        )
        .await
        .map_err(|e| self.map("decrypt", e))?;
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
            let endpoint = BatchDecrypt {
                path: format!("{}/decrypt/{}", self.mount, self.key),
                body: body.to_string().into_bytes(),
            };
            let results: Vec<Result<DataKey, ProviderError>> =
                match vaultrs::api::exec_with_result(&self.client, endpoint).await {
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
                    Err(e) => {
                        let e = self.map("batch decrypt", e);
                        slots.iter().map(|_| Err(e.clone())).collect()
                    }
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
                let mut opts = RewrapDataRequestBuilder::default();
                opts.context(context_b64(context));
                let resp = vaultrs::transit::data::rewrap(
                    &self.client,
                    &self.mount,
                    &self.key,
                    ct,
                    Some(&mut opts),
                )
                .await
                .map_err(|e| self.map("rewrap", e))?;
                self.wrapped_from(resp.ciphertext)
            }
            ContextBinding::AssociatedData => {
                let key = self.unwrap(wrapped, context).await?;
                self.wrap(&key, context).await
            }
        }
    }

    async fn describe(&self) -> Result<KeyDescription, ProviderError> {
        let info = vaultrs::transit::key::read(&self.client, &self.mount, &self.key)
            .await
            .map_err(|e| self.map("reading the key", e))?;
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
    use super::parse_version;

    #[test]
    fn transit_versions_are_parsed_strictly() {
        assert_eq!(parse_version("vault:v12:abc"), Some(12));
        assert_eq!(parse_version("vault:v1:"), None);
        assert_eq!(parse_version("vault:vx:abc"), None);
        assert_eq!(parse_version("vault:v:abc"), None);
        assert_eq!(parse_version("other:v1:abc"), None);
    }
}
