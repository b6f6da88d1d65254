//! # sealbox-gcp — Google Cloud KMS as a Sealbox KEK
//!
//! Cloud KMS has no data-key call: data keys are generated locally and wrapped with
//! `:encrypt` over HTTPS JSON, with a bearer token from `gcp_auth` (service-account JSON via
//! `GOOGLE_APPLICATION_CREDENTIALS`, the metadata server, or gcloud user credentials).
//!
//! - **Context binding**: `additionalAuthenticatedData` = `"sealbox-gcp/v1"`, the key version,
//!   and the canonical encryption context. Binding the version means a header whose version
//!   was altered no longer decrypts.
//! - **Version**: each wrap names the primary CryptoKeyVersion explicitly
//!   (`…/cryptoKeyVersions/N:encrypt`); the version is cached (30 s by default) and re-read when
//!   `:encrypt` refuses it. The envelope records `N`.
//! - **Integrity**: every request carries CRC32C of its data (`plaintextCrc32c`,
//!   `additionalAuthenticatedDataCrc32c`, `ciphertextCrc32c`), and every response is checked
//!   (`verifiedPlaintextCrc32c`, `verifiedAdditionalAuthenticatedDataCrc32c`, the returned
//!   CRC32Cs); a mismatch is a loud `Protocol` error, as Google recommends.
//! - **Rewrap** = decrypt + encrypt inside this process (Cloud KMS has no re-encrypt call);
//!   the plaintext key is zeroized.
//! - Retries on 429 and 5xx with bounded exponential backoff; typed errors for permission
//!   denied, disabled or destroyed versions, unknown keys and locations.
//! - **Endpoints must be `https://`**: a plain `http://` endpoint is refused at connect
//!   unless its host is loopback (`127.0.0.0/8`, `::1`, `localhost`) or
//!   [`GcpKmsConfig::allow_http`] is set (development only; logged as a warning at every
//!   connect). Redirects are never followed.
//! - **Zeroization**: request bodies holding a data key, response bodies, and the base64 and
//!   decoded plaintexts are held in zeroizing memory (buffers inside `hyper`/`rustls` are
//!   out of reach).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sealbox_core::{
    DataKey, EncryptionContext, KekRef, KeyDescription, KeyProvider, ProviderError,
    ProviderErrorKind, WrappedKey,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// The provider ID written into envelopes.
pub const PROVIDER_ID: &str = "gcp-kms";
/// The OAuth scope Cloud KMS needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloudkms";
/// The AAD label.
pub const AAD_LABEL: &[u8] = b"sealbox-gcp/v1";
const PRIMARY_TTL: Duration = Duration::from_secs(30);
/// The largest response body read from Cloud KMS (its answers are well under 64 KiB).
const MAX_RESPONSE: usize = 1 << 20;

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

/// A Cloud KMS symmetric key used as a Sealbox KEK.
pub struct GcpKms {
    http: reqwest::Client,
    endpoint: String,
    key_name: String,
    auth: Arc<dyn gcp_auth::TokenProvider>,
    max_attempts: u32,
    primary_ttl: Duration,
    primary: Mutex<Option<(String, Instant)>>,
}

impl fmt::Debug for GcpKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKms")
            .field("endpoint", &self.endpoint)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// How an endpoint will be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// `https://`.
    Tls,
    /// `http://` to a loopback host (tests, local emulators).
    LoopbackHttp,
    /// `http://` to another host, accepted only because `allow_http` is set.
    OptedInHttp,
}

/// `endpoint` without user name and password, for messages and logs.
fn redacted(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => endpoint.escape_debug().to_string(),
    }
}

/// Whether `host` is loopback: `127.0.0.0/8`, `::1` (also as `::ffff:127.x.y.z`) or
/// `localhost`.
fn is_loopback(host: Option<url::Host<&str>>) -> bool {
    match host {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

/// Accepts `https://` endpoints, `http://` ones on loopback hosts, and other `http://` ones
/// only with `allow_http`; refuses everything else (other schemes, credentials in the URL,
/// unparsable URLs) with a message naming the endpoint and the opt-in.
fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<Transport, String> {
    let url = url::Url::parse(endpoint).map_err(|e| {
        format!(
            "Cloud KMS endpoint `{}` is not a valid URL: {e}",
            endpoint.escape_debug()
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "Cloud KMS endpoint `{}` must not contain a user name or password",
            redacted(endpoint)
        ));
    }
    match url.scheme() {
        "https" => Ok(Transport::Tls),
        "http" if is_loopback(url.host()) => Ok(Transport::LoopbackHttp),
        "http" if allow_http => Ok(Transport::OptedInHttp),
        "http" => Err(format!(
            "refusing plain-HTTP Cloud KMS endpoint `{}`: http:// is accepted only for loopback \
             hosts (127.0.0.0/8, ::1, localhost), because access tokens and data keys would \
             cross the network unencrypted; use https://, or opt in for development with \
             `GcpKmsConfig::allow_http(true)` (policy file: `[gcp] allow_http = true`)",
            redacted(endpoint)
        )),
        other => Err(format!(
            "Cloud KMS endpoint `{}` must be an https:// URL, not `{other}:`",
            redacted(endpoint)
        )),
    }
}

/// Appends `data` to `buf` without letting `Vec` reallocate behind our back: when `buf` is
/// full, its contents move to a larger zeroizing buffer and the old one is wiped on drop.
fn push_zeroizing(buf: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    if buf.capacity() - buf.len() < data.len() {
        let wanted = (buf.len() + data.len()).max(buf.capacity() * 2);
        let mut bigger = Zeroizing::new(Vec::with_capacity(wanted));
        bigger.extend_from_slice(buf);
        std::mem::swap(buf, &mut bigger);
    }
    buf.extend_from_slice(data);
}

/// A base64 string from a JSON answer that holds key material: zeroized on drop, even when
/// deserializing the rest of the answer fails.
struct SecretBase64(Zeroizing<String>);

impl<'de> serde::Deserialize<'de> for SecretBase64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretBase64(Zeroizing::new(s)))
    }
}

fn crc(data: &[u8]) -> u64 {
    u64::from(crc32c::crc32c(data))
}

/// The kind and message of a Cloud KMS error answer.
fn classify(status: reqwest::StatusCode, text: &str) -> (ProviderErrorKind, String) {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let google = v["error"]["status"].as_str().unwrap_or("");
    let mut msg = v["error"]["message"].as_str().unwrap_or(text).to_owned();
    if msg.len() > 512 {
        let mut end = 512;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
        msg.push('…');
    }
    let kind = match (status.as_u16(), google) {
        (401 | 403, _) => ProviderErrorKind::PermissionDenied,
        (404, _) => ProviderErrorKind::NotFound,
        (429, _) => ProviderErrorKind::Throttled,
        (_, "FAILED_PRECONDITION") => ProviderErrorKind::KeyDisabled,
        (400, "INVALID_ARGUMENT") if msg.contains("Decryption failed") => {
            ProviderErrorKind::InvalidWrappedKey
        }
        (500..=599, _) => ProviderErrorKind::Unavailable,
        _ => ProviderErrorKind::Protocol,
    };
    (kind, format!("HTTP {} {google}: {msg}", status.as_u16()))
}

/// An int64 JSON field (a string per proto3 JSON, or a number).
fn int64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

impl GcpKms {
    /// Builds the client, obtains credentials, and checks the key exists and can encrypt.
    pub async fn connect(config: GcpKmsConfig) -> Result<Self, ProviderError> {
        let key = config.key_name.clone();
        let err = |kind, msg: String| ProviderError::new(PROVIDER_ID, &key, kind, msg);
        let parts: Vec<&str> = key.split('/').collect();
        if parts.len() != 8
            || parts[0] != "projects"
            || parts[2] != "locations"
            || parts[4] != "keyRings"
            || parts[6] != "cryptoKeys"
        {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                "key name must be projects/P/locations/L/keyRings/R/cryptoKeys/K".into(),
            ));
        }
        // Before credentials are looked for: the access token goes to this endpoint.
        match check_endpoint(&config.endpoint, config.allow_http)
            .map_err(|m| err(ProviderErrorKind::Misconfigured, m))?
        {
            Transport::OptedInHttp => tracing::warn!(
                provider = PROVIDER_ID,
                key = %key,
                endpoint = %redacted(&config.endpoint),
                "INSECURE: plain-HTTP Cloud KMS endpoint on a non-loopback host accepted because \
                 allow_http is set; access tokens and data keys cross the network UNENCRYPTED \
                 (development only)"
            ),
            Transport::Tls | Transport::LoopbackHttp => {}
        }
        let auth: Arc<dyn gcp_auth::TokenProvider> = match &config.credentials {
            GcpCredentials::Default => gcp_auth::provider().await.map_err(|e| {
                err(
                    ProviderErrorKind::Misconfigured,
                    format!("no Google credentials found: {e}"),
                )
            })?,
            GcpCredentials::ServiceAccountFile(path) => Arc::new(
                gcp_auth::CustomServiceAccount::from_file(path).map_err(|e| {
                    err(
                        ProviderErrorKind::Misconfigured,
                        format!("service-account file {}: {e}", path.display()),
                    )
                })?,
            ),
            GcpCredentials::ServiceAccountJson(text) => Arc::new(
                gcp_auth::CustomServiceAccount::from_json(secrecy::ExposeSecret::expose_secret(
                    text,
                ))
                .map_err(|e| {
                    err(
                        ProviderErrorKind::Misconfigured,
                        format!("service-account JSON: {e}"),
                    )
                })?,
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // Cloud KMS never redirects; following one could carry a data key to another
            // URL (a 307/308 keeps the body), even from https:// to http://.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                err(
                    ProviderErrorKind::Misconfigured,
                    format!("HTTP client: {e}"),
                )
            })?;
        let kms = Self {
            http,
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            key_name: key.clone(),
            auth,
            max_attempts: config.max_attempts.max(1),
            primary_ttl: config.primary_ttl,
            primary: Mutex::new(None),
        };
        let info: Value = kms.call_parsed(reqwest::Method::GET, &key, None).await?;
        let purpose_ok = match &info["purpose"] {
            Value::String(s) => s == "ENCRYPT_DECRYPT",
            Value::Number(n) => n.as_u64() == Some(1),
            _ => false,
        };
        if !purpose_ok {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                "the key's purpose is not ENCRYPT_DECRYPT".into(),
            ));
        }
        kms.remember_primary(&info)?;
        Ok(kms)
    }

    fn err(&self, kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError::new(PROVIDER_ID, &self.key_name, kind, message)
    }

    fn remember_primary(&self, info: &Value) -> Result<String, ProviderError> {
        let name = info["primary"]["name"].as_str().ok_or_else(|| {
            self.err(
                ProviderErrorKind::KeyDisabled,
                "the key has no primary version",
            )
        })?;
        let version = name
            .rsplit_once("/cryptoKeyVersions/")
            .map(|(_, v)| v.to_owned())
            .ok_or_else(|| {
                self.err(
                    ProviderErrorKind::Protocol,
                    format!("unexpected version name `{name}`"),
                )
            })?;
        *self.primary.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((version.clone(), Instant::now()));
        Ok(version)
    }

    async fn primary_version(&self, refresh: bool) -> Result<String, ProviderError> {
        if !refresh {
            let cached = self
                .primary
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some((v, at)) = cached
                && at.elapsed() < self.primary_ttl
            {
                return Ok(v);
            }
        }
        let info: Value = self
            .call_parsed(reqwest::Method::GET, &self.key_name, None)
            .await?;
        self.remember_primary(&info)
    }

    fn aad(version: &str, context: &EncryptionContext) -> Vec<u8> {
        let mut aad = AAD_LABEL.to_vec();
        aad.push(version.len() as u8);
        aad.extend_from_slice(version.as_bytes());
        context.encode_into(&mut aad);
        aad
    }

    /// One REST call with bounded retries on 429 / 5xx / connection errors.
    async fn call_parsed<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<T, ProviderError> {
        let text = self.call(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| {
            self.err(
                ProviderErrorKind::Protocol,
                format!("invalid JSON from Cloud KMS: {e}"),
            )
        })
    }

    /// One REST call with bounded retries; returns the response body in zeroizing memory.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Zeroizing<String>, ProviderError> {
        let url = format!("{}/v1/{path}", self.endpoint);
        // Zeroize: the body may hold a data key (`:encrypt`). Copy it once into memory that
        // is wiped when reqwest drops its last reference (a `Bytes` whose owner is
        // `Zeroizing`); each attempt shares it instead of copying it again.
        let body =
            body.map(|b| bytes::Bytes::from_owner(Zeroizing::new(b.to_vec())) as bytes::Bytes);
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.auth.token(&[SCOPE]).await.map_err(|e| {
                self.err(
                    ProviderErrorKind::PermissionDenied,
                    format!("cannot obtain a Google access token: {}", error_chain(&e)),
                )
            })?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.as_str());
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let (kind, message) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    match self.read_body(resp).await {
                        Ok(text) if status.is_success() => return Ok(text),
                        Ok(text) => classify(status, &text),
                        Err(failure) => failure,
                    }
                }
                Err(e) if e.is_timeout() => (
                    ProviderErrorKind::Timeout,
                    format!("request timed out: {e}"),
                ),
                Err(e) => (
                    ProviderErrorKind::Unavailable,
                    format!("cannot reach Cloud KMS: {e}"),
                ),
            };
            if kind.is_transient() && attempt < self.max_attempts {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
            let suffix = if kind.is_transient() && attempt > 1 {
                format!(" (after {attempt} attempts)")
            } else {
                String::new()
            };
            return Err(self.err(kind, format!("{message}{suffix}")));
        }
    }

    /// Reads a response body (at most [`MAX_RESPONSE`] bytes) into zeroizing memory.
    ///
    /// Zeroize: a `:decrypt` answer holds the data key (base64). `Response::text` would leave
    /// an unwiped `Bytes` copy and a second `String` copy; here every chunk goes straight into
    /// one zeroizing buffer that becomes the returned string without another copy. (The
    /// chunks themselves are `hyper`'s buffers, which cannot be wiped from here.)
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
    ) -> Result<Zeroizing<String>, (ProviderErrorKind, String)> {
        let expected = resp
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(4096)
            .min(MAX_RESPONSE);
        let mut buf = Zeroizing::new(Vec::with_capacity(expected));
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_RESPONSE {
                        return Err((
                            ProviderErrorKind::Protocol,
                            format!("Cloud KMS answered with more than {MAX_RESPONSE} bytes"),
                        ));
                    }
                    push_zeroizing(&mut buf, &chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let kind = if e.is_timeout() {
                        ProviderErrorKind::Timeout
                    } else {
                        ProviderErrorKind::Unavailable
                    };
                    return Err((
                        kind,
                        format!("reading the Cloud KMS answer failed: {}", error_chain(&e)),
                    ));
                }
            }
        }
        // `String::from_utf8` takes the Vec without copying; on failure, take it back so it
        // is wiped too.
        match String::from_utf8(std::mem::take(&mut *buf)) {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                Err((
                    ProviderErrorKind::Protocol,
                    "Cloud KMS answered with a body that is not UTF-8".to_owned(),
                ))
            }
        }
    }

    async fn encrypt_with(
        &self,
        version: &str,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        let aad = Self::aad(version, context);
        // Zeroize: the body holds the data key (base64). Build it in zeroizing memory, never
        // in a serde_json::Value whose strings would be freed without being wiped, and with
        // its exact capacity reserved up front (`format!` grows its buffer and frees the
        // smaller ones unwiped).
        let plaintext = Zeroizing::new(B64.encode(data_key.expose_secret()));
        let aad_b64 = B64.encode(&aad);
        let plaintext_crc = crc(data_key.expose_secret()).to_string();
        let aad_crc = crc(&aad).to_string();
        let pieces: [&str; 9] = [
            r#"{"plaintext":""#,
            plaintext.as_str(),
            r#"","additionalAuthenticatedData":""#,
            &aad_b64,
            r#"","plaintextCrc32c":""#,
            &plaintext_crc,
            r#"","additionalAuthenticatedDataCrc32c":""#,
            &aad_crc,
            r#""}"#,
        ];
        let mut body = Zeroizing::new(String::with_capacity(pieces.iter().map(|p| p.len()).sum()));
        for piece in pieces {
            body.push_str(piece);
        }
        let path = format!("{}/cryptoKeyVersions/{version}:encrypt", self.key_name);
        let resp: Value = self
            .call_parsed(reqwest::Method::POST, &path, Some(body.as_bytes()))
            .await?;
        if resp["verifiedPlaintextCrc32c"] != json!(true)
            || resp["verifiedAdditionalAuthenticatedDataCrc32c"] != json!(true)
        {
            return Err(self.err(ProviderErrorKind::Protocol, "Cloud KMS did not verify the request's CRC32C: the request may have been corrupted in transit"));
        }
        let ciphertext = resp["ciphertext"]
            .as_str()
            .and_then(|c| B64.decode(c).ok())
            .ok_or_else(|| {
                self.err(
                    ProviderErrorKind::Protocol,
                    "encrypt returned no ciphertext",
                )
            })?;
        if int64(&resp["ciphertextCrc32c"]) != Some(crc(&ciphertext)) {
            return Err(self.err(
                ProviderErrorKind::Protocol,
                "ciphertext CRC32C mismatch: the response was corrupted in transit",
            ));
        }
        let expected_name = format!("{}/cryptoKeyVersions/{version}", self.key_name);
        if resp["name"].as_str() != Some(expected_name.as_str()) {
            return Err(self.err(
                ProviderErrorKind::Protocol,
                format!("encrypt used `{}`, not {expected_name}", resp["name"]),
            ));
        }
        let kek = KekRef::new(PROVIDER_ID, &self.key_name)
            .and_then(|k| k.with_version(version))
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        WrappedKey::new(kek, ciphertext)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }
}

#[async_trait]
impl KeyProvider for GcpKms {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_name
    }

    async fn wrap(
        &self,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        let version = self.primary_version(false).await?;
        match self.encrypt_with(&version, data_key, context).await {
            // The cached primary may have been disabled or replaced: re-read it once.
            Err(e) if e.kind() == ProviderErrorKind::KeyDisabled => {
                let fresh = self.primary_version(true).await?;
                if fresh == version {
                    return Err(e);
                }
                self.encrypt_with(&fresh, data_key, context).await
            }
            other => other,
        }
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        if !self.owns(wrapped.kek()) {
            return Err(self.err(
                ProviderErrorKind::NotFound,
                format!("wrapped key belongs to {}, not to this key", wrapped.kek()),
            ));
        }
        let version = wrapped.kek().key_version().ok_or_else(|| {
            self.err(
                ProviderErrorKind::InvalidWrappedKey,
                "the envelope names no CryptoKeyVersion",
            )
        })?;
        let aad = Self::aad(version, context);
        let body = json!({
            "ciphertext": B64.encode(wrapped.ciphertext()),
            "additionalAuthenticatedData": B64.encode(&aad),
            "ciphertextCrc32c": crc(wrapped.ciphertext()).to_string(),
            "additionalAuthenticatedDataCrc32c": crc(&aad).to_string(),
        })
        .to_string();
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct DecryptResponse {
            // Zeroize: the base64 data key, wiped on drop (also if parsing fails half-way).
            plaintext: Option<SecretBase64>,
            #[serde(default)]
            plaintext_crc32c: Value,
        }
        let resp: DecryptResponse = self
            .call_parsed(
                reqwest::Method::POST,
                &format!("{}:decrypt", self.key_name),
                Some(body.as_bytes()),
            )
            .await?;
        let encoded = resp
            .plaintext
            .ok_or_else(|| self.err(ProviderErrorKind::Protocol, "decrypt returned no plaintext"))?
            .0;
        // Zeroize: decode into a zeroizing buffer of the right size. (`Engine::decode` would
        // drop its partly decoded Vec unwiped when the input turns out to be invalid.)
        let mut plaintext = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(encoded.len())]);
        let len = B64
            .decode_slice(encoded.as_bytes(), &mut plaintext[..])
            .map_err(|_| {
                self.err(
                    ProviderErrorKind::Protocol,
                    "decrypt returned a plaintext that is not base64",
                )
            })?;
        plaintext.truncate(len);
        if int64(&resp.plaintext_crc32c) != Some(crc(&plaintext)) {
            return Err(self.err(
                ProviderErrorKind::Protocol,
                "plaintext CRC32C mismatch: the response was corrupted in transit",
            ));
        }
        DataKey::try_from_slice(&plaintext)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    async fn describe(&self) -> Result<KeyDescription, ProviderError> {
        let version = self.primary_version(true).await?;
        let kek = KekRef::new(PROVIDER_ID, &self.key_name)
            .and_then(|k| k.with_version(&version))
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        Ok(KeyDescription::new(kek, vec![version], false, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_accepted_only_for_loopback_hosts_or_with_the_opt_in() {
        for ok in [
            "https://cloudkms.googleapis.com",
            "https://cloudkms.europe-west1.rep.googleapis.com/",
        ] {
            assert_eq!(check_endpoint(ok, false), Ok(Transport::Tls), "{ok}");
        }
        for loopback in [
            "http://127.0.0.1:8080",
            "http://127.255.0.1",
            "http://localhost:9000/",
            "http://[::1]:8080",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert_eq!(
                check_endpoint(loopback, false),
                Ok(Transport::LoopbackHttp),
                "{loopback}"
            );
        }
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

    #[test]
    fn zeroizing_appends_keep_every_byte() {
        let mut buf = Zeroizing::new(Vec::with_capacity(2));
        for chunk in [&b"ab"[..], b"cde", b"", b"fghijklmnop"] {
            push_zeroizing(&mut buf, chunk);
        }
        assert_eq!(buf.as_slice(), b"abcdefghijklmnop");
    }
}
