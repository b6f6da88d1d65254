//! A Cloud KMS emulator for tests: the REST subset Sealbox uses, with the semantics of the
//! public API reference (`cloudkms.v1`), held to Google's own Python client
//! (`google-cloud-kms`) by `crates/sealbox-gcp/tests/google_client.rs`.
//!
//! - Key rings, crypto keys (`ENCRYPT_DECRYPT`), versions, primary switch, version state
//!   (`ENABLED`/`DISABLED`/`DESTROYED`), `:encrypt` on a key (primary) or an explicit version,
//!   `:decrypt` on a key; ciphertexts name their version, so old versions still decrypt after
//!   rotation and disabled ones refuse.
//! - `additionalAuthenticatedData` bound with AES-256-GCM, CRC32C integrity fields checked and
//!   returned as the API describes (int64 as JSON strings).
//! - An OAuth token endpoint for the service-account JWT-bearer flow: the assertion's RS256
//!   signature is verified against the test service account's public key, and KMS calls need
//!   a bearer token it issued (or the pre-shared token).
//!
//! Errors use Google's JSON error shape (`{"error":{"code","message","status"}}`).

// Handlers return ready HTTP error responses through `Result`; their size does not matter in
// a test server.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::{Value, json};

/// A test service account: the JSON key file (with `token_uri` pointing at the emulator) and
/// the public key the emulator verifies assertions with.
pub struct ServiceAccount {
    /// The service-account key file content.
    pub json: String,
    /// The client email (JWT issuer).
    pub email: String,
    public_pem: String,
}

impl ServiceAccount {
    /// A fresh RSA-2048 service account whose `token_uri` is `token_uri`.
    pub fn generate(token_uri: &str) -> Self {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .unwrap_or_else(|e| panic!("rsa: {e}"));
        let private_pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap_or_else(|e| panic!("pem: {e}"));
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_else(|e| panic!("pem: {e}"));
        let email = "sealbox-tests@sealbox-test.iam.gserviceaccount.com".to_owned();
        let json = json!({
            "type": "service_account",
            "project_id": "sealbox-test",
            "private_key_id": "test-key-1",
            "private_key": private_pem.as_str(),
            "client_email": email,
            "client_id": "1",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string();
        Self {
            json,
            email,
            public_pem,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum VersionState {
    Enabled,
    Disabled,
    Destroyed,
}

impl VersionState {
    fn name(self) -> &'static str {
        match self {
            VersionState::Enabled => "ENABLED",
            VersionState::Disabled => "DISABLED",
            VersionState::Destroyed => "DESTROYED",
        }
    }
}

struct KeyVersion {
    material: [u8; 32],
    state: VersionState,
}

struct CryptoKey {
    versions: Vec<KeyVersion>,
    primary: Option<usize>,
}

#[derive(Default)]
struct Inner {
    rings: HashSet<String>,
    keys: HashMap<String, CryptoKey>,
    tokens: HashSet<String>,
    public_keys: HashMap<String, String>,
    requests: Vec<String>,
}

#[derive(Clone)]
struct Emu {
    inner: Arc<Mutex<Inner>>,
}

/// A running emulator on a free loopback port; stops when dropped.
pub struct GcpKmsEmulator {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A bearer token the emulator always accepts (for clients without the OAuth flow).
    pub preshared_token: String,
    emu: Emu,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GcpKmsEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, google_status: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message.into(), "status": google_status}});
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found(what: impl fmt::Display) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("{what} not found."),
    )
}

fn ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap_or_else(|e| panic!("rng: {e}"));
    b
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(v: &Value, field: &str) -> Result<Vec<u8>, Response> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => {
            STANDARD
                .decode(s)
                .or_else(|_| URL_SAFE.decode(s))
                .map_err(|_| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_ARGUMENT",
                        format!("Invalid value at '{field}': not base64"),
                    )
                })
        }
        Some(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("Invalid value at '{field}'"),
        )),
    }
}

/// An optional int64 field (JSON string per proto3, or a number).
fn int64(v: &Value, field: &str) -> Result<Option<u64>, Response> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                format!("Invalid value at '{field}'"),
            )
        }),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                format!("Invalid value at '{field}'"),
            )
        }),
        Some(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("Invalid value at '{field}'"),
        )),
    }
}

fn crc(data: &[u8]) -> u64 {
    u64::from(crc32c::crc32c(data))
}

fn check_crc(
    data: &[u8],
    given: Option<u64>,
    data_field: &str,
    crc_field: &str,
) -> Result<bool, Response> {
    match given {
        None => Ok(false),
        Some(c) if c == crc(data) => Ok(true),
        Some(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!(
                "The checksum in field {crc_field} did not match the data in field {data_field}."
            ),
        )),
    }
}

impl GcpKmsEmulator {
    /// Starts the emulator. Service accounts passed to [`GcpKmsEmulator::trust`] may exchange
    /// JWT assertions for tokens.
    pub async fn start() -> Self {
        let emu = Emu {
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let preshared_token = format!("preshared-{}", hex_string(&random::<16>()));
        emu.lock().tokens.insert(preshared_token.clone());
        let app = Router::new()
            .route("/token", post(token))
            .route("/v1/{*path}", any(kms))
            .with_state(emu.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            preshared_token,
            emu,
            task,
        }
    }

    /// The token endpoint to put in a service account's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.endpoint)
    }

    /// Trusts `sa` for the JWT-bearer flow.
    pub fn trust(&self, sa: &ServiceAccount) {
        self.emu
            .lock()
            .public_keys
            .insert(sa.email.clone(), sa.public_pem.clone());
    }

    /// The `METHOD path` of every KMS request served so far.
    pub fn requests(&self) -> Vec<String> {
        self.emu.lock().requests.clone()
    }

    /// Creates a key ring and an `ENCRYPT_DECRYPT` key with one enabled primary version;
    /// returns the key's name.
    pub fn create_key(&self, project: &str, location: &str, ring: &str, key: &str) -> String {
        let ring_name = format!("projects/{project}/locations/{location}/keyRings/{ring}");
        let name = format!("{ring_name}/cryptoKeys/{key}");
        let mut inner = self.emu.lock();
        inner.rings.insert(ring_name);
        inner.keys.insert(
            name.clone(),
            CryptoKey {
                versions: vec![KeyVersion {
                    material: random(),
                    state: VersionState::Enabled,
                }],
                primary: Some(0),
            },
        );
        name
    }

    /// Adds a version to `key` and makes it primary; returns its number.
    pub fn rotate(&self, key: &str) -> usize {
        let mut inner = self.emu.lock();
        let k = inner
            .keys
            .get_mut(key)
            .unwrap_or_else(|| panic!("no key {key}"));
        k.versions.push(KeyVersion {
            material: random(),
            state: VersionState::Enabled,
        });
        k.primary = Some(k.versions.len() - 1);
        k.versions.len()
    }

    /// Disables version `n` (1-based) of `key`.
    pub fn disable(&self, key: &str, n: usize) {
        let mut inner = self.emu.lock();
        let k = inner
            .keys
            .get_mut(key)
            .unwrap_or_else(|| panic!("no key {key}"));
        k.versions[n - 1].state = VersionState::Disabled;
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Emu {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn token(
    State(emu): State<Emu>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let refuse = |error: &str, description: String| {
        let body = json!({"error": error, "error_description": description});
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse(
            "unsupported_grant_type",
            "only the JWT-bearer grant is emulated".into(),
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse("invalid_request", "no assertion".into());
    };
    // header.payload.signature, base64url with or without padding (gcp_auth pads; Google
    // accepts both). The signature covers the first two segments exactly as sent.
    let segments: Vec<&str> = assertion.split('.').collect();
    if segments.len() != 3 {
        return refuse("invalid_grant", "the assertion is not a JWT".into());
    }
    let decode = |seg: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seg.trim_end_matches('='))
    };
    let (Ok(header), Ok(payload), Ok(signature)) = (
        decode(segments[0]),
        decode(segments[1]),
        decode(segments[2]),
    ) else {
        return refuse("invalid_grant", "the assertion is not base64url".into());
    };
    let header: Value = serde_json::from_slice(&header).unwrap_or(Value::Null);
    let claims: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
    if header["alg"] != "RS256" {
        return refuse(
            "invalid_grant",
            format!("unsupported alg {}", header["alg"]),
        );
    }
    let issuer = claims["iss"].as_str().unwrap_or_default().to_owned();
    let Some(pem) = emu.lock().public_keys.get(&issuer).cloned() else {
        return refuse(
            "invalid_grant",
            format!("unknown service account `{issuer}`"),
        );
    };
    let verified = {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::signature::Verifier;
        rsa::RsaPublicKey::from_public_key_pem(&pem)
            .ok()
            .is_some_and(|key| {
                let verifier = rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(key);
                let signing_input = format!("{}.{}", segments[0], segments[1]);
                rsa::pkcs1v15::Signature::try_from(signature.as_slice())
                    .is_ok_and(|sig| verifier.verify(signing_input.as_bytes(), &sig).is_ok())
            })
    };
    if !verified {
        return refuse("invalid_grant", "invalid JWT signature".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return refuse("invalid_grant", "iat and exp are required".into());
    };
    if exp <= now || iat > now + 60 || exp - iat > 3600 {
        return refuse(
            "invalid_grant",
            "the assertion is expired or not yet valid".into(),
        );
    }
    if claims["scope"].as_str().is_none_or(str::is_empty) {
        return refuse("invalid_scope", "the assertion names no scope".into());
    }
    let token = format!("ya29.test-{}", hex_string(&random::<16>()));
    emu.lock().tokens.insert(token.clone());
    ok(json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
}

fn version_json(key: &str, n: usize, v: &KeyVersion) -> Value {
    json!({
        "name": format!("{key}/cryptoKeyVersions/{n}"),
        "state": v.state.name(),
        "protectionLevel": "SOFTWARE",
        "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
    })
}

fn key_json(name: &str, k: &CryptoKey) -> Value {
    let mut v = json!({"name": name, "purpose": "ENCRYPT_DECRYPT"});
    if let Some(p) = k.primary {
        v["primary"] = version_json(name, p + 1, &k.versions[p]);
    }
    v
}

async fn kms(
    State(emu): State<Emu>,
    method: Method,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    emu.lock().requests.push(format!("{method} {path}"));
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    match bearer {
        Some(t) if emu.lock().tokens.contains(&t) => {}
        Some(_) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
        }
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request is missing required authentication credential.",
            );
        }
    }
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    format!("Invalid JSON payload received. {e}"),
                );
            }
        }
    };
    let (resource, verb) = match path.rsplit_once(':') {
        Some((r, v)) if !v.contains('/') => (r.to_owned(), Some(v.to_owned())),
        _ => (path.clone(), None),
    };
    let segments: Vec<&str> = resource.split('/').collect();
    match (method.as_str(), verb.as_deref(), segments.len()) {
        ("POST", None, 5) if segments[4] == "keyRings" => {
            let Some(id) = query.get("keyRingId") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    "keyRingId is required",
                );
            };
            let name = format!("{resource}/{id}");
            let mut inner = emu.lock();
            if !inner.rings.insert(name.clone()) {
                return error(
                    StatusCode::CONFLICT,
                    "ALREADY_EXISTS",
                    format!("KeyRing {name} already exists."),
                );
            }
            ok(json!({"name": name, "createTime": "2026-01-01T00:00:00Z"}))
        }
        ("POST", None, 7) if segments[6] == "cryptoKeys" => {
            let Some(id) = query.get("cryptoKeyId") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    "cryptoKeyId is required",
                );
            };
            let purpose_ok = match &req["purpose"] {
                Value::String(s) => s == "ENCRYPT_DECRYPT",
                Value::Number(n) => n.as_u64() == Some(1),
                _ => false,
            };
            if !purpose_ok {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    "only purpose ENCRYPT_DECRYPT is emulated",
                );
            }
            let name = format!("{resource}/{id}");
            let mut inner = emu.lock();
            let ring = segments[..6].join("/");
            if !inner.rings.contains(&ring) {
                return not_found(format_args!("KeyRing {ring}"));
            }
            if inner.keys.contains_key(&name) {
                return error(
                    StatusCode::CONFLICT,
                    "ALREADY_EXISTS",
                    format!("CryptoKey {name} already exists."),
                );
            }
            let skip = query
                .get("skipInitialVersionCreation")
                .is_some_and(|v| v == "true");
            let key = if skip {
                CryptoKey {
                    versions: Vec::new(),
                    primary: None,
                }
            } else {
                CryptoKey {
                    versions: vec![KeyVersion {
                        material: random(),
                        state: VersionState::Enabled,
                    }],
                    primary: Some(0),
                }
            };
            let v = key_json(&name, &key);
            inner.keys.insert(name, key);
            ok(v)
        }
        ("GET", None, 8) => {
            let inner = emu.lock();
            match inner.keys.get(&resource) {
                Some(k) => ok(key_json(&resource, k)),
                None => not_found(format_args!("CryptoKey {resource}")),
            }
        }
        ("POST", None, 9) if segments[8] == "cryptoKeyVersions" => {
            let key_name = segments[..8].join("/");
            let mut inner = emu.lock();
            let Some(k) = inner.keys.get_mut(&key_name) else {
                return not_found(format_args!("CryptoKey {key_name}"));
            };
            k.versions.push(KeyVersion {
                material: random(),
                state: VersionState::Enabled,
            });
            let n = k.versions.len();
            ok(version_json(&key_name, n, &k.versions[n - 1]))
        }
        ("GET" | "PATCH", None, 10) if segments[8] == "cryptoKeyVersions" => {
            let key_name = segments[..8].join("/");
            let n: usize = segments[9].parse().unwrap_or(0);
            let mut inner = emu.lock();
            let Some(k) = inner.keys.get_mut(&key_name) else {
                return not_found(format_args!("CryptoKey {key_name}"));
            };
            if n == 0 || n > k.versions.len() {
                return not_found(format_args!("CryptoKeyVersion {resource}"));
            }
            if method == Method::PATCH {
                let state = match &req["state"] {
                    Value::String(s) if s == "ENABLED" => VersionState::Enabled,
                    Value::String(s) if s == "DISABLED" => VersionState::Disabled,
                    Value::Number(x) if x.as_u64() == Some(1) => VersionState::Enabled,
                    Value::Number(x) if x.as_u64() == Some(2) => VersionState::Disabled,
                    _ => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "INVALID_ARGUMENT",
                            "state must be ENABLED or DISABLED",
                        );
                    }
                };
                if k.versions[n - 1].state == VersionState::Destroyed {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "FAILED_PRECONDITION",
                        "the version is destroyed",
                    );
                }
                k.versions[n - 1].state = state;
            }
            ok(version_json(&key_name, n, &k.versions[n - 1]))
        }
        ("POST", Some("updatePrimaryVersion"), 8) => {
            let id: usize = match &req["cryptoKeyVersionId"] {
                Value::String(s) => s.parse().unwrap_or(0),
                Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
                _ => 0,
            };
            let mut inner = emu.lock();
            let Some(k) = inner.keys.get_mut(&resource) else {
                return not_found(format_args!("CryptoKey {resource}"));
            };
            if id == 0 || id > k.versions.len() {
                return not_found("CryptoKeyVersion");
            }
            if k.versions[id - 1].state != VersionState::Enabled {
                return error(
                    StatusCode::BAD_REQUEST,
                    "FAILED_PRECONDITION",
                    "the primary version must be ENABLED",
                );
            }
            k.primary = Some(id - 1);
            ok(key_json(&resource, k))
        }
        ("POST", Some("encrypt"), 8 | 10) => encrypt(&emu, &resource, &segments, &req),
        ("POST", Some("decrypt"), 8) => decrypt(&emu, &resource, &req),
        _ => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{method} {path} is not emulated"),
        ),
    }
}

fn encrypt(emu: &Emu, resource: &str, segments: &[&str], req: &Value) -> Response {
    let plaintext = match unb64(req, "plaintext") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let aad = match unb64(req, "additionalAuthenticatedData") {
        Ok(a) => a,
        Err(e) => return e,
    };
    let verified_plaintext = match int64(req, "plaintextCrc32c")
        .and_then(|c| check_crc(&plaintext, c, "plaintext", "plaintext_crc32c"))
    {
        Ok(v) => v,
        Err(e) => return e,
    };
    let verified_aad = match int64(req, "additionalAuthenticatedDataCrc32c").and_then(|c| {
        check_crc(
            &aad,
            c,
            "additional_authenticated_data",
            "additional_authenticated_data_crc32c",
        )
    }) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if plaintext.is_empty() || plaintext.len() > 64 * 1024 {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "plaintext must be 1 to 65536 bytes",
        );
    }
    let key_name = segments[..8].join("/");
    let inner = emu.lock();
    let Some(k) = inner.keys.get(&key_name) else {
        return not_found(format_args!("CryptoKey {key_name}"));
    };
    let index = if segments.len() == 10 {
        match segments[9].parse::<usize>() {
            Ok(n) if n >= 1 && n <= k.versions.len() => n - 1,
            _ => {
                return not_found(format_args!("CryptoKeyVersion {resource}"));
            }
        }
    } else {
        match k.primary {
            Some(p) => p,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "FAILED_PRECONDITION",
                    "The CryptoKey has no primary version.",
                );
            }
        }
    };
    let version = &k.versions[index];
    if version.state != VersionState::Enabled {
        return error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!(
                "{key_name}/cryptoKeyVersions/{} is not enabled, current state is: {}.",
                index + 1,
                version.state.name()
            ),
        );
    }
    let nonce: [u8; 12] = random();
    let mut ct = plaintext.clone();
    let Ok(tag) = Aes256Gcm::new(&version.material.into()).encrypt_inout_detached(
        &Nonce::from(nonce),
        &aad,
        ct.as_mut_slice().into(),
    ) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "encryption failed",
        );
    };
    // Ciphertext: version number, nonce, AES-GCM ciphertext, tag.
    let mut out = ((index + 1) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out.extend_from_slice(&tag);
    ok(json!({
        "name": format!("{key_name}/cryptoKeyVersions/{}", index + 1),
        "ciphertext": b64(&out),
        "ciphertextCrc32c": crc(&out).to_string(),
        "verifiedPlaintextCrc32c": verified_plaintext,
        "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad,
        "protectionLevel": "SOFTWARE",
    }))
}

fn decrypt(emu: &Emu, resource: &str, req: &Value) -> Response {
    let ciphertext = match unb64(req, "ciphertext") {
        Ok(c) => c,
        Err(e) => return e,
    };
    let aad = match unb64(req, "additionalAuthenticatedData") {
        Ok(a) => a,
        Err(e) => return e,
    };
    if let Err(e) = int64(req, "ciphertextCrc32c")
        .and_then(|c| check_crc(&ciphertext, c, "ciphertext", "ciphertext_crc32c"))
    {
        return e;
    }
    if let Err(e) = int64(req, "additionalAuthenticatedDataCrc32c").and_then(|c| {
        check_crc(
            &aad,
            c,
            "additional_authenticated_data",
            "additional_authenticated_data_crc32c",
        )
    }) {
        return e;
    }
    let inner = emu.lock();
    let Some(k) = inner.keys.get(resource) else {
        return not_found(format_args!("CryptoKey {resource}"));
    };
    let invalid = || {
        error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Decryption failed: the ciphertext is invalid.",
        )
    };
    if ciphertext.len() < 4 + 12 + 16 {
        return invalid();
    }
    let n =
        u32::from_be_bytes([ciphertext[0], ciphertext[1], ciphertext[2], ciphertext[3]]) as usize;
    if n == 0 || n > k.versions.len() {
        return invalid();
    }
    let version = &k.versions[n - 1];
    if version.state != VersionState::Enabled {
        return error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!(
                "{resource}/cryptoKeyVersions/{n} is not enabled, current state is: {}.",
                version.state.name()
            ),
        );
    }
    let nonce: [u8; 12] = ciphertext[4..16].try_into().unwrap_or([0; 12]);
    let split = ciphertext.len() - 16;
    let tag: [u8; 16] = ciphertext[split..].try_into().unwrap_or([0; 16]);
    let mut pt = ciphertext[16..split].to_vec();
    if Aes256Gcm::new(&version.material.into())
        .decrypt_inout_detached(
            &Nonce::from(nonce),
            &aad,
            pt.as_mut_slice().into(),
            &Tag::from(tag),
        )
        .is_err()
    {
        return invalid();
    }
    ok(json!({
        "plaintext": b64(&pt),
        "plaintextCrc32c": crc(&pt).to_string(),
        "usedPrimary": k.primary == Some(n - 1),
        "protectionLevel": "SOFTWARE",
    }))
}
