//! The `sealbox` facade: what the README's library example uses is reachable from the root
//! crate and works end to end. The core's and the key-ring's own tests live in their crates.

use std::sync::Arc;

use sealbox::{EncryptionContext, Keyring, LeaseLimits, LocalKek};

#[tokio::test]
async fn the_readme_library_example_works_through_the_facade() {
    let old = Arc::new(LocalKek::generate("facade-old").expect("kek"));
    let new = Arc::new(LocalKek::generate("facade-new").expect("kek"));
    let writer = Keyring::builder(old.clone())
        .lease_limits(LeaseLimits::default())
        .build()
        .expect("keyring");
    let ctx = EncryptionContext::new()
        .with("namespace", "payments")
        .expect("context");
    let envelope = writer.seal(&ctx, b"secret").await.expect("seal");
    let header = sealbox::inspect(&envelope).expect("header");
    assert_eq!(header.kek().key_id(), "facade-old");
    assert_eq!(writer.open(&ctx, &envelope).await.expect("open"), b"secret");
    // Rotation through the facade: the new KEK active, the old one decrypt-only.
    let rotated = Keyring::builder(new)
        .decrypt_only(old)
        .build()
        .expect("keyring");
    let moved = rotated.rewrap(&ctx, &envelope).await.expect("rewrap");
    assert_eq!(
        sealbox::inspect(&moved).expect("header").kek().key_id(),
        "facade-new"
    );
    assert_eq!(rotated.open(&ctx, &moved).await.expect("open"), b"secret");
    let other = EncryptionContext::new()
        .with("namespace", "orders")
        .expect("context");
    assert!(
        rotated.open(&other, &moved).await.is_err(),
        "bound to its namespace"
    );
    assert!(rotated.stats().kms_calls() > 0);
}
