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

mod crypto;
mod handlers;
mod state;
mod token;
mod wire;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{any, post};
use serde_json::json;

use state::{CryptoKey, Emu, Inner, KeyVersion, VersionState, hex_string, random};

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
            .route("/token", post(token::token))
            .route("/v1/{*path}", any(handlers::kms))
            .with_state(emu.clone());
        let (listener, endpoint) = crate::servers::bind_loopback_http().await;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            preshared_token,
            emu,
            task,
        }
    }

    /// The token endpoint to put in a service account's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.endpoint)
    }

    /// Starts the emulator with one service account it trusts (see [`GcpKmsEmulator::trust`]).
    pub async fn start_with_trusted_account() -> (Self, ServiceAccount) {
        let emu = Self::start().await;
        let sa = ServiceAccount::generate(&emu.token_uri());
        emu.trust(&sa);
        (emu, sa)
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
