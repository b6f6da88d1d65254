//! The provider conformance suite: the definition of "a provider works".
//!
//! Each check is a plain async function over a [`Harness`]; a provider crate's tests run all
//! of them against its real server with [`conformance_tests!`](crate::conformance_tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use sealbox_core::{
    DataKey, EncryptionContext, Error, KeyProvider, ProviderError, ProviderErrorKind, WrappedKey,
    inspect,
};
use sealbox_keyring::Keyring;

use crate::fixtures::{
    Instrumented, assert_kind_in, leasing_keyring, max_payloads, unwrap_refused, wrapped_keys,
};
use tokio::sync::Semaphore;

/// What the suite needs from a provider's test setup.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Providers for two distinct KEKs in the same KMS: the main one and a second one.
    fn keks(&self) -> [Arc<dyn KeyProvider>; 2];
    /// A provider for the main KEK.
    fn provider(&self) -> Arc<dyn KeyProvider> {
        let [main, _] = self.keks();
        main
    }
    /// A provider for the second, distinct KEK in the same KMS.
    fn other(&self) -> Arc<dyn KeyProvider> {
        let [_, second] = self.keks();
        second
    }
    /// A provider configured for a KEK that does not exist.
    async fn missing(&self) -> Result<Arc<dyn KeyProvider>, ProviderError>;
    /// Rotates the main KEK on the server: new wrapping version, old ones still unwrap.
    async fn rotate(&self);
    /// Whether wrapped keys record a KEK version that changes on rotation.
    fn versioned(&self) -> bool;
}

fn ctx(ns: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("namespace", ns)
        .and_then(|c| c.with("suite", "conformance"))
        .expect("valid context")
}

/// generate → unwrap returns the same key; the wrapped key names the provider's KEK;
/// `wrap` of an existing key round-trips too.
pub async fn round_trip(h: &dyn Harness) {
    let p = h.provider();
    let c = ctx("a");
    let g = p.generate_data_key(&c).await.expect("generate_data_key");
    assert!(
        p.owns(g.wrapped.kek()),
        "wrapped key names {} not the provider's KEK",
        g.wrapped.kek()
    );
    assert_eq!(
        g.wrapped.kek().key_version().is_some(),
        h.versioned(),
        "{}",
        g.wrapped.kek()
    );
    let back = p.unwrap(&g.wrapped, &c).await.expect("unwrap");
    assert_eq!(back.expose_secret(), g.data_key.expose_secret());
    let again = p.generate_data_key(&c).await.expect("generate");
    assert_ne!(
        again.data_key.expose_secret(),
        g.data_key.expose_secret(),
        "data keys must be fresh"
    );

    let local = DataKey::generate().expect("rng");
    let wrapped = p.wrap(&local, &c).await.expect("wrap");
    let back = p.unwrap(&wrapped, &c).await.expect("unwrap of wrap");
    assert_eq!(back.expose_secret(), local.expose_secret());
    let d = p.describe().await.expect("describe");
    assert!(p.owns(&d.kek), "describe names {}", d.kek);
}

/// A wrapped key presented under another context does not unwrap (the KMS binds it).
pub async fn wrong_context_fails(h: &dyn Harness) {
    let p = h.provider();
    let (g, err) = unwrap_refused(
        &*p,
        &ctx("tenant-a"),
        &ctx("tenant-b"),
        "other context must fail",
    )
    .await;
    assert_eq!(err.kind(), ProviderErrorKind::InvalidWrappedKey, "{err}");
    assert_eq!(err.key_id(), p.key_id());
    let err = p
        .unwrap(&g.wrapped, &EncryptionContext::new())
        .await
        .expect_err("empty context must fail");
    assert!(!err.is_retryable(), "{err}");
}

/// Another KEK cannot unwrap, whether the wrapped key names the first KEK or is relabelled
/// to name the second.
pub async fn wrong_key_fails(h: &dyn Harness) {
    let (a, b) = (h.provider(), h.other());
    assert!(
        !a.owns(&b.describe().await.expect("describe").kek),
        "the harness must give two KEKs"
    );
    let c = ctx("a");
    let g = a.generate_data_key(&c).await.expect("generate");
    assert!(
        b.unwrap(&g.wrapped, &c).await.is_err(),
        "B unwrapped a key that names A"
    );
    let b_ref = b
        .generate_data_key(&c)
        .await
        .expect("generate")
        .wrapped
        .kek()
        .clone();
    let relabelled = WrappedKey::new(b_ref, g.wrapped.ciphertext().to_vec()).expect("wrapped");
    let err = b
        .unwrap(&relabelled, &c)
        .await
        .expect_err("B must not unwrap A's ciphertext");
    // AWS KMS answers IncorrectKeyException (InvalidWrappedKey); moto AccessDeniedException.
    assert_kind_in(
        &err,
        &[
            ProviderErrorKind::InvalidWrappedKey,
            ProviderErrorKind::NotFound,
            ProviderErrorKind::PermissionDenied,
        ],
    );
    assert!(!err.is_retryable(), "{err}");
}

/// The KEK version an envelope's header names.
fn kek_version(envelope: &[u8]) -> Option<String> {
    let header = inspect(envelope).expect("header");
    header.kek().key_version().map(str::to_owned)
}

/// Envelopes sealed before a server-side rotation stay readable; new data uses the new
/// version; `rewrap` moves an old envelope to the new version, body untouched.
pub async fn rotation_and_rewrap(h: &dyn Harness) {
    let p = h.provider();
    let c = ctx("a");
    let keyring = Keyring::builder(p.clone()).build().expect("keyring");
    let old = keyring
        .seal(&c, b"sealed before rotation")
        .await
        .expect("seal");
    let old_version = kek_version(&old);
    h.rotate().await;

    let fresh_ring = Keyring::builder(p.clone()).build().expect("keyring");
    assert_eq!(
        fresh_ring.open(&c, &old).await.expect("old envelope opens"),
        b"sealed before rotation"
    );
    let new = fresh_ring
        .seal(&c, b"sealed after rotation")
        .await
        .expect("seal");
    let new_version = kek_version(&new);
    // The old envelope was opened above: its data key is in the cache.
    let unwraps = fresh_ring.stats().unwrap_calls;
    let rewrapped = fresh_ring.rewrap(&c, &old).await.expect("rewrap");
    let stats = fresh_ring.stats();
    if p.native_rewrap() {
        assert_eq!(
            (stats.rewrap_calls, stats.wrap_calls),
            (1, 0),
            "same KEK with a native rewrap: the provider's own rewrap is used"
        );
    } else {
        assert_eq!(
            (stats.rewrap_calls, stats.wrap_calls),
            (0, 1),
            "same KEK without a native rewrap: the cached data key is wrapped again"
        );
    }
    assert_eq!(
        stats.unwrap_calls,
        unwraps + 1,
        "one unwrap, of the new wrapped key (the commitment check); the old one was cached"
    );
    let rewrapped_version = kek_version(&rewrapped);
    if h.versioned() {
        assert_ne!(
            old_version, new_version,
            "new data must use the rotated version"
        );
        assert_eq!(
            rewrapped_version, new_version,
            "rewrap must move to the current version"
        );
    }
    assert_eq!(
        sealbox_core::parse(&old).expect("parse").body,
        sealbox_core::parse(&rewrapped).expect("parse").body
    );
    let reader = Keyring::builder(p).build().expect("keyring");
    assert_eq!(
        reader.open(&c, &rewrapped).await.expect("rewrapped opens"),
        b"sealed before rotation"
    );
    assert_eq!(
        reader.open(&c, &new).await.expect("new opens"),
        b"sealed after rotation"
    );
}

/// `rewrap` with the other KEK active and this one decrypt-only moves the envelope across
/// KEKs, changing only the key section; a key-ring that only knows the new KEK opens the
/// result. Once for an envelope of each suite.
pub async fn rewrap_across_keks(h: &dyn Harness) {
    let (a, b) = (h.provider(), h.other());
    let c = ctx("a");
    // Each suite: a rewrap copies the suite with the rest of the authenticated prefix.
    for suite in sealbox_core::Suite::ALL {
        let env = Keyring::builder(a.clone())
            .suite(suite)
            .build()
            .expect("keyring")
            .seal(&c, b"move me")
            .await
            .expect("seal");
        let migrating = Keyring::builder(b.clone())
            .decrypt_only(a.clone())
            .build()
            .expect("keyring");
        let moved = migrating
            .rewrap(&c, &env)
            .await
            .expect("rewrap across KEKs");
        assert!(b.owns(inspect(&moved).expect("header").kek()));
        let (before, after) = (
            sealbox_core::parse(&env).expect("parse"),
            sealbox_core::parse(&moved).expect("parse"),
        );
        assert_eq!(after.header.suite, suite, "the suite is kept");
        assert_eq!(before.body, after.body, "the body is untouched");
        assert_eq!(before.aad, after.aad, "only the key section changes");
        let b_only = Keyring::builder(b.clone()).build().expect("keyring");
        assert_eq!(b_only.open(&c, &moved).await.expect("open"), b"move me");
        assert!(matches!(
            b_only.open(&c, &env).await,
            Err(Error::UnknownKek { .. })
        ));
    }
}

/// Sealing many payloads makes one KMS call per lease; opening them in a fresh key-ring one
/// per distinct wrapped key.
pub async fn kms_call_counts(h: &dyn Harness) {
    let p = h.provider();
    let c = ctx("a");
    let writer = leasing_keyring(p.clone(), max_payloads(10), None);
    let mut envs = Vec::new();
    for i in 0..30u8 {
        envs.push(writer.seal(&c, &[i; 100]).await.expect("seal"));
    }
    assert_eq!(writer.stats().generate_calls, 3);
    assert_eq!(wrapped_keys(&envs).len(), 3);
    let reader = Keyring::builder(p).build().expect("keyring");
    for (i, e) in envs.iter().enumerate() {
        assert_eq!(reader.open(&c, e).await.expect("open"), vec![i as u8; 100]);
    }
    assert_eq!(reader.stats().unwrap_calls, 3);
    assert_eq!(reader.stats().kms_calls(), 3);
}

/// 64 concurrent opens of one envelope in a fresh key-ring make exactly one KMS call.
pub async fn concurrent_opens_one_call(h: &dyn Harness) {
    let p = h.provider();
    let c = ctx("a");
    let env = Arc::new(
        Keyring::builder(p.clone())
            .build()
            .expect("keyring")
            .seal(&c, b"x")
            .await
            .expect("seal"),
    );
    let unwrap_gate = Arc::new(Semaphore::new(0));
    let gate = Arc::new(Instrumented {
        unwrap_gate: Some(unwrap_gate.clone()),
        ..Instrumented::new(p)
    });
    let reader = Keyring::builder(gate.clone()).build().expect("keyring");
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (reader, env, c, started) = (reader.clone(), env.clone(), c.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            reader.open(&c, &env).await
        }));
    }
    while started.load(Ordering::SeqCst) < 64 || gate.unwrap_calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    unwrap_gate.add_permits(Semaphore::MAX_PERMITS / 2);
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("open"), b"x");
    }
    assert_eq!(gate.unwrap_calls.load(Ordering::SeqCst), 1);
    assert_eq!(reader.stats().unwrap_calls, 1);
}

/// A KEK that does not exist gives a typed, non-retryable error that names the key.
pub async fn missing_key_is_a_typed_error(h: &dyn Harness) {
    let p = match h.missing().await {
        Err(e) => {
            assert_eq!(e.kind(), ProviderErrorKind::NotFound, "{e}");
            assert!(
                !e.key_id().is_empty() && e.to_string().contains(e.key_id()),
                "{e}"
            );
            return;
        }
        Ok(p) => p,
    };
    let err = p
        .generate_data_key(&ctx("a"))
        .await
        .expect_err("missing key");
    assert_kind_in(
        &err,
        &[
            ProviderErrorKind::NotFound,
            ProviderErrorKind::PermissionDenied,
        ],
    );
    assert!(
        err.to_string().contains(p.key_id()),
        "error must name the key: {err}"
    );
    assert!(!err.is_retryable(), "{err}");
}

/// Every single-bit flip and every truncation of an envelope sealed through this provider is
/// rejected: flips in the wrapped key reach the KMS, which must refuse them (or return a key
/// that the envelope's commitment rejects); everything else fails before or at decryption.
pub async fn tampering_is_rejected(h: &dyn Harness) {
    let p = h.provider();
    let c = ctx("tamper");
    let plaintext = b"tamper-evident payload".to_vec();
    let writer = Keyring::builder(p.clone()).build().expect("keyring");
    let envelope = writer.seal(&c, &plaintext).await.expect("seal");
    let reader = Keyring::builder(p).build().expect("keyring");
    assert_eq!(reader.open(&c, &envelope).await.expect("open"), plaintext);
    for i in 0..envelope.len() {
        for bit in 0..8 {
            let mut t = envelope.clone();
            t[i] ^= 1 << bit;
            if let Ok(opened) = reader.open(&c, &t).await {
                panic!(
                    "a flip of bit {bit} in byte {i} of {} opened ({} bytes)",
                    envelope.len(),
                    opened.len()
                );
            }
        }
    }
    for len in 0..envelope.len() {
        assert!(
            reader.open(&c, &envelope[..len]).await.is_err(),
            "truncated to {len} bytes, it opened"
        );
    }
    // The untampered envelope still opens: nothing above poisoned the caches.
    assert_eq!(reader.open(&c, &envelope).await.expect("open"), plaintext);
}

/// Every check in the suite, as one test per check in the calling crate. `$make` is an async
/// function returning the harness (it may start a server; the harness keeps it alive).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            conformance_round_trip => round_trip,
            conformance_wrong_context_fails => wrong_context_fails,
            conformance_wrong_key_fails => wrong_key_fails,
            conformance_rotation_and_rewrap => rotation_and_rewrap,
            conformance_rewrap_across_keks => rewrap_across_keks,
            conformance_kms_call_counts => kms_call_counts,
            conformance_concurrent_opens_one_call => concurrent_opens_one_call,
            conformance_missing_key_is_a_typed_error => missing_key_is_a_typed_error,
            conformance_tampering_is_rejected => tampering_is_rejected,
        );
    };
    (@each $make:path; $($test:ident => $check:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                $crate::conformance::$check(&$make().await).await;
            }
        )*
    };
}
