//! The emulator's state: key rings, crypto keys and their versions, issued tokens, trusted
//! service accounts and the request log, with their JSON resource representations.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum VersionState {
    Enabled,
    Disabled,
    Destroyed,
}

impl VersionState {
    pub(super) fn name(self) -> &'static str {
        match self {
            VersionState::Enabled => "ENABLED",
            VersionState::Disabled => "DISABLED",
            VersionState::Destroyed => "DESTROYED",
        }
    }
}

pub(super) struct KeyVersion {
    pub(super) material: [u8; 32],
    pub(super) state: VersionState,
}

pub(super) struct CryptoKey {
    pub(super) versions: Vec<KeyVersion>,
    pub(super) primary: Option<usize>,
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) rings: HashSet<String>,
    pub(super) keys: HashMap<String, CryptoKey>,
    pub(super) tokens: HashSet<String>,
    pub(super) public_keys: HashMap<String, String>,
    pub(super) requests: Vec<String>,
}

#[derive(Clone)]
pub(super) struct Emu {
    pub(super) inner: Arc<Mutex<Inner>>,
}

impl Emu {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A version as the API represents it.
pub(super) fn version_json(key: &str, n: usize, v: &KeyVersion) -> Value {
    json!({
        "name": format!("{key}/cryptoKeyVersions/{n}"),
        "state": v.state.name(),
        "protectionLevel": "SOFTWARE",
        "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
    })
}

/// A crypto key as the API represents it (with its primary version).
pub(super) fn key_json(name: &str, k: &CryptoKey) -> Value {
    let mut v = json!({"name": name, "purpose": "ENCRYPT_DECRYPT"});
    if let Some(p) = k.primary {
        v["primary"] = version_json(name, p + 1, &k.versions[p]);
    }
    v
}

pub(super) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap_or_else(|e| panic!("rng: {e}"));
    b
}

pub(super) fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
