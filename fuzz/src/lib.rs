//! What the fuzz targets share: the one-thread runtime and the local key-ring each builds
//! once per process.

use std::sync::Arc;

use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;

/// A current-thread runtime (the targets drive async code one input at a time).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// A local KEK `key_id` from base64 key bytes, and a key-ring on it (default limits).
pub fn local_keyring(key_id: &str, kek_b64: &str) -> (Arc<LocalKek>, Keyring) {
    let kek = Arc::new(LocalKek::from_base64(key_id, kek_b64).expect("kek"));
    let keyring = Keyring::builder(kek.clone()).build().expect("keyring");
    (kek, keyring)
}
