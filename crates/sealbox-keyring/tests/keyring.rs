//! Key-ring behaviour: round trips, leases, single flight, context binding, commitment,
//! rewrap, configuration and failure handling.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sealbox_core::format::{parse, replace_wrapped_key};
use sealbox_core::{EncryptionContext, Error, KeyProvider, ProviderErrorKind, inspect};
use sealbox_core::{open_with_data_key, seal_with_data_key};
use sealbox_keyring::{CacheLimits, Keyring, LeaseLimits, ManualClock};
use sealbox_local::LocalKek;
use sealbox_testkit::fixtures::{
    Instrumented, ctx, leasing_keyring, max_payloads, pattern, wrapped_keys,
};

fn kek(id: &str) -> Arc<LocalKek> {
    Arc::new(LocalKek::generate(id).expect("local kek"))
}

/// Lease limits that end a lease at `max_age`, renewing it `renew_before` that in the
/// background.
fn aging(max_age: Duration, renew_before: Duration) -> LeaseLimits {
    LeaseLimits {
        max_age,
        renew_before,
        ..LeaseLimits::default()
    }
}

/// A local KEK `id`, a key-ring over it, and `plaintext` sealed by it under `ctx("a")`.
async fn sealed_once(id: &str, plaintext: &[u8]) -> (Arc<LocalKek>, Keyring, Vec<u8>) {
    let key = kek(id);
    let keyring = Keyring::builder(key.clone()).build().expect("keyring");
    let envelope = keyring.seal(&ctx("a"), plaintext).await.expect("seal");
    (key, keyring, envelope)
}

/// `n` payloads (`pattern(len, i)` for i in 0..n) sealed by `keyring` under `context`.
async fn seal_patterns(
    keyring: &Keyring,
    context: &EncryptionContext,
    n: u64,
    len: usize,
) -> Vec<Vec<u8>> {
    let mut envelopes = Vec::new();
    for i in 0..n {
        envelopes.push(keyring.seal(context, &pattern(len, i)).await.expect("seal"));
    }
    envelopes
}

#[tokio::test]
async fn round_trips_from_empty_to_4_mib() {
    let keyring = Keyring::builder(kek("rt")).build().expect("keyring");
    let context = ctx("payments");
    for (i, len) in [
        0usize,
        1,
        15,
        16,
        17,
        1023,
        1024,
        64 << 10,
        1 << 20,
        4 << 20,
    ]
    .into_iter()
    .enumerate()
    {
        let plaintext = pattern(len, i as u64 + 1);
        let envelope = keyring.seal(&context, &plaintext).await.expect("seal");
        let header = inspect(&envelope).expect("header");
        assert_eq!(header.plaintext_len(), len as u64);
        assert_eq!(header.context, context);
        if len >= 16 {
            assert!(
                !envelope.windows(16).any(|w| w == &plaintext[..16]),
                "plaintext visible in the envelope of {len} bytes"
            );
        }
        assert_eq!(
            keyring.open(&context, &envelope).await.expect("open"),
            plaintext,
            "len {len}"
        );
    }
    let stats = keyring.stats();
    assert_eq!(stats.generate_calls, 1, "one lease for all ten payloads");
    assert_eq!(
        stats.unwrap_calls, 0,
        "the sealing key-ring knows its own lease keys"
    );
}

#[tokio::test]
async fn a_fresh_reader_makes_one_unwrap_per_distinct_wrapped_key() {
    let key = kek("reader");
    let writer = leasing_keyring(key.clone(), max_payloads(5), None);
    let context = ctx("a");
    let envelopes = seal_patterns(&writer, &context, 20, 100).await;
    assert_eq!(wrapped_keys(&envelopes).len(), 4);
    let reader = Keyring::builder(key).build().expect("keyring");
    for _ in 0..3 {
        for e in &envelopes {
            reader.open(&context, e).await.expect("open");
        }
    }
    assert_eq!(
        reader.stats().unwrap_calls,
        4,
        "60 opens of 4 distinct wrapped keys"
    );
    assert_eq!(reader.stats().opens, 60);
}

#[tokio::test]
async fn cached_keys_expire_after_the_unwrap_ttl_even_on_the_hot_path() {
    let (key, _, envelope) = sealed_once("ttl", b"payload").await;
    let context = ctx("a");
    let reader = Keyring::builder(key)
        .cache_limits(CacheLimits {
            // Long enough that a stall on a busy machine cannot expire it mid-loop.
            unwrap_ttl: Duration::from_secs(2),
            ..Default::default()
        })
        .build()
        .expect("reader");
    let start = std::time::Instant::now();
    for _ in 0..100 {
        assert_eq!(
            reader.open(&context, &envelope).await.expect("open"),
            b"payload"
        );
    }
    // 100 in-memory opens take well under a millisecond; only a machine that stalled this
    // task past the TTL may legitimately have unwrapped again (once per TTL elapsed).
    let ttls_elapsed = (start.elapsed().as_secs_f64() / 2.0).floor() as u64;
    let unwraps = reader.stats().unwrap_calls;
    assert!(
        unwraps == 1 || (ttls_elapsed > 0 && unwraps <= 1 + ttls_elapsed),
        "100 opens within the TTL: {unwraps} unwraps in {:?}",
        start.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        reader.open(&context, &envelope).await.expect("open"),
        b"payload"
    );
    assert_eq!(
        reader.stats().unwrap_calls,
        unwraps + 1,
        "an open after the TTL asks the KMS again (neither the cache nor its front kept it)"
    );
}

#[tokio::test]
async fn more_distinct_keys_than_the_cache_front_has_slots_all_open_from_the_cache() {
    // One data key per payload: 600 distinct wrapped keys, more than the unwrap cache's
    // front holds, so many share a slot and evict each other there.
    let key = kek("many");
    let writer = leasing_keyring(key.clone(), LeaseLimits::one_payload_per_key(), None);
    let context = ctx("a");
    let envelopes = seal_patterns(&writer, &context, 600, 16).await;
    assert_eq!(wrapped_keys(&envelopes).len(), 600);
    let reader = Keyring::builder(key).build().expect("reader");
    for round in 0..3 {
        for (i, e) in envelopes.iter().enumerate() {
            let opened = reader.open(&context, e).await.expect("open");
            assert_eq!(opened, pattern(16, i as u64), "round {round}, envelope {i}");
        }
    }
    assert_eq!(
        reader.stats().unwrap_calls,
        600,
        "one unwrap per distinct key; later rounds are served by the cache behind the front"
    );
    // The batch path and the admission estimate agree with the single path.
    let items: Vec<_> = envelopes.iter().map(|e| (&context, e.as_slice())).collect();
    assert_eq!(reader.pending_unwraps(&items), 0);
    for (i, r) in reader.open_many(&items).await.into_iter().enumerate() {
        assert_eq!(r.expect("open_many"), pattern(16, i as u64));
    }
    assert_eq!(reader.stats().unwrap_calls, 600);
}

/// The lease cache drops a slot nobody read for `max_age` (real time); its front must not
/// hide a steady sealer's reads from it for that long, or the slot, with the lease renewed
/// ahead in it, would be dropped and the next seal would wait for a new one.
#[tokio::test]
async fn a_steady_sealer_keeps_its_lease_slot_through_the_cache_idle_time() {
    let key = Arc::new(Instrumented::new(kek("steady")));
    // Margins for a busy machine: a seal may stall up to 3 s (the idle time) and a
    // background renewal may take up to 1.5 s (renew_before) without failing the test;
    // holding slots for the whole idle time made a seal wait at every 3 s.
    let keyring = Keyring::builder(key.clone())
        .lease_limits(aging(Duration::from_secs(3), Duration::from_millis(1500)))
        .build()
        .expect("keyring");
    let c = ctx("a");
    let start = std::time::Instant::now();
    // Gaps of ≥ 1 s between seals: a machine that stalls this task that long may let a
    // lease expire before a seal starts its renewal, and such a seal waits legitimately.
    let mut stalls = 0;
    let mut last = start;
    while start.elapsed() < Duration::from_secs(7) {
        keyring.seal(&c, b"steady").await.expect("seal");
        if last.elapsed() >= Duration::from_secs(1) {
            stalls += 1;
        }
        last = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = keyring.stats();
    assert!(
        stats.seal_waits >= 1 && stats.seal_waits <= 1 + stalls,
        "only the first seal waited ({stalls} stalls of ≥ 1 s); every later lease was renewed \
         ahead: {stats:?}"
    );
    assert!(stats.leases_renewed_ahead >= 2, "{stats:?}");
}

#[tokio::test]
async fn lease_payload_limit() {
    let keyring = leasing_keyring(kek("count"), max_payloads(3), None);
    let envelopes = seal_patterns(&keyring, &ctx("a"), 10, 10).await;
    assert_eq!(keyring.stats().generate_calls, 4, "ceil(10 / 3) leases");
    assert_eq!(wrapped_keys(&envelopes).len(), 4);
}

#[tokio::test]
async fn one_payload_per_lease_gives_one_wrapped_key_per_payload() {
    let keyring = leasing_keyring(kek("one"), LeaseLimits::one_payload_per_key(), None);
    let envelopes = seal_patterns(&keyring, &ctx("a"), 20, 10).await;
    assert_eq!(keyring.stats().generate_calls, 20);
    assert_eq!(
        wrapped_keys(&envelopes).len(),
        20,
        "every payload has its own wrapped data key"
    );
}

#[tokio::test]
async fn lease_byte_limit() {
    let limits = LeaseLimits {
        max_bytes: 100,
        ..LeaseLimits::default()
    };
    let keyring = leasing_keyring(kek("bytes"), limits, None);
    let c = ctx("a");
    let a = keyring.seal(&c, &[1; 40]).await.expect("seal");
    let b = keyring.seal(&c, &[2; 60]).await.expect("seal"); // 100 bytes: still within the limit
    assert_eq!(keyring.stats().generate_calls, 1);
    let d = keyring.seal(&c, &[3; 1]).await.expect("seal"); // 101 > 100: new lease
    assert_eq!(keyring.stats().generate_calls, 2);
    let big = keyring.seal(&c, &[4; 500]).await.expect("seal"); // over the limit alone: own lease
    assert_eq!(keyring.stats().generate_calls, 3);
    let after = keyring.seal(&c, &[5; 1]).await.expect("seal"); // the big lease is spent
    assert_eq!(keyring.stats().generate_calls, 4);
    assert_eq!(wrapped_keys(&[a.clone(), b]).len(), 1);
    assert_eq!(wrapped_keys(&[a, d, big, after]).len(), 4);
}

#[tokio::test]
async fn lease_age_limit_with_a_manual_clock() {
    let clock = Arc::new(ManualClock::new());
    let limits = aging(Duration::from_secs(60), Duration::ZERO);
    let keyring = leasing_keyring(kek("age"), limits, Some(clock.clone()));
    let c = ctx("a");
    keyring.seal(&c, b"1").await.expect("seal");
    clock.advance(Duration::from_secs(59));
    keyring.seal(&c, b"2").await.expect("seal");
    assert_eq!(
        keyring.stats().generate_calls,
        1,
        "59 s old lease is still valid"
    );
    clock.advance(Duration::from_secs(1));
    keyring.seal(&c, b"3").await.expect("seal");
    assert_eq!(
        keyring.stats().generate_calls,
        2,
        "a 60 s old lease is renewed"
    );
}

/// Seals from 8 concurrent tasks while a manual clock runs 5× faster than real time through
/// `rollovers` lease lifetimes (5 s of lease age each), against a KMS whose
/// `generate_data_key` takes 200 ms. Returns the key-ring's counters over the run (after a
/// warm-up seal) and every seal's latency.
async fn seal_through_rollovers(
    renew_before: Duration,
    rollovers: u32,
) -> (sealbox_keyring::KeyStats, Vec<Duration>) {
    let clock = Arc::new(ManualClock::new());
    let slow = Arc::new(Instrumented {
        generate_latency: Duration::from_millis(200),
        ..Instrumented::new(kek("slow"))
    });
    let limits = aging(Duration::from_secs(5), renew_before);
    let keyring = leasing_keyring(slow.clone(), limits, Some(clock.clone()));
    let c = ctx("rollover");
    keyring.seal(&c, b"warm-up").await.expect("seal");
    let before = keyring.stats();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut sealers = Vec::new();
    for task in 0..8u64 {
        let (keyring, c, done) = (keyring.clone(), c.clone(), done.clone());
        sealers.push(tokio::spawn(async move {
            let payload = pattern(1024, task + 1);
            let mut latencies = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let start = std::time::Instant::now();
                let envelope = keyring.seal(&c, &payload).await.expect("seal");
                latencies.push(start.elapsed());
                assert_eq!(keyring.open(&c, &envelope).await.expect("open"), payload);
                tokio::task::yield_now().await;
            }
            latencies
        }));
    }
    // The clock only ever runs slower than 5× real time (a late tick only slows it), so a
    // 200 ms KMS call always lands within a renewal window of ≥ 2.5 s of lease age.
    for _ in 0..rollovers * 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        clock.advance(Duration::from_millis(50));
    }
    done.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for s in sealers {
        latencies.extend(s.await.expect("sealer"));
    }
    let after = keyring.stats();
    assert_eq!(
        slow.generate_calls.load(Ordering::SeqCst) as u64,
        after.generate_calls,
        "every generate call is counted"
    );
    let mut delta = after;
    delta.seal_waits -= before.seal_waits;
    delta.leases_created -= before.leases_created;
    delta.leases_renewed_ahead -= before.leases_renewed_ahead;
    delta.seals -= before.seals;
    (delta, latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Lease rollovers under load add no KMS round trip to any seal: the next lease is fetched in
/// the background ahead of expiry. Structural assertion (the count of seals that waited for a
/// KMS call stays 0), with renewal ahead off as the control that shows the count can move.
/// Prints the seal latency percentiles across the rollovers (a figure for docs/security.md,
/// not an assertion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_rollovers_under_load_never_make_a_seal_wait_for_the_kms() {
    let rollovers = 5;
    let (ahead, mut latencies) =
        seal_through_rollovers(Duration::from_millis(2500), rollovers).await;
    assert!(ahead.seals > 1000, "the load ran: {ahead:?}");
    assert_eq!(ahead.seal_waits, 0, "no seal waited for the KMS: {ahead:?}");
    assert!(
        ahead.leases_renewed_ahead >= u64::from(rollovers) - 1,
        "the leases rolled over, in the background: {ahead:?}"
    );
    assert_eq!(
        ahead.leases_created, ahead.leases_renewed_ahead,
        "{ahead:?}"
    );
    latencies.sort();
    eprintln!(
        "seal latency across {} rollovers with a 200 ms KMS, {} seals: p50 {:?}, p99 {:?}, \
         p99.9 {:?}, max {:?}",
        ahead.leases_renewed_ahead,
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        latencies[latencies.len() - 1]
    );

    let (off, _) = seal_through_rollovers(Duration::ZERO, 3).await;
    assert_eq!(off.leases_renewed_ahead, 0, "{off:?}");
    assert!(
        off.seal_waits >= 2,
        "without renewal ahead, seals wait at each rollover: {off:?}"
    );
}

/// A background renewal that fails leaves the current lease in use until it is spent and is
/// retried a second later; a spent lease with the KMS down fails the seal (never plaintext).
#[tokio::test]
async fn a_failed_background_renewal_keeps_the_current_lease_and_retries() {
    let clock = Arc::new(ManualClock::new());
    let flaky = Arc::new(Instrumented::new(kek("flaky")));
    let limits = aging(Duration::from_secs(60), Duration::from_secs(10));
    let keyring = leasing_keyring(flaky.clone(), limits, Some(clock.clone()));
    let c = ctx("a");
    let first = keyring.seal(&c, b"1").await.expect("seal");
    let settle = || async {
        // Background renewals run on the runtime; give them a moment to land.
        for _ in 0..100 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    // The KMS fails its next `calls` calls, then `secs` pass.
    let outage_then = |calls: usize, secs: u64| {
        flaky.fail_next.store(calls, Ordering::SeqCst);
        clock.advance(Duration::from_secs(secs));
    };
    outage_then(1, 51);
    let during = keyring
        .seal(&c, b"2")
        .await
        .expect("seal with the current lease");
    settle().await;
    assert_eq!(keyring.stats().failed_calls, 1, "{:?}", keyring.stats());
    let after_failure = keyring.seal(&c, b"3").await.expect("seal");
    assert_eq!(
        wrapped_keys(&[first.clone(), during, after_failure]).len(),
        1,
        "the current lease stays in use after a failed renewal"
    );
    assert_eq!(
        keyring.stats().generate_calls,
        2,
        "no retry within a second"
    );
    clock.advance(Duration::from_secs(1));
    keyring.seal(&c, b"4").await.expect("seal");
    settle().await;
    let renewed = keyring.seal(&c, b"5").await.expect("seal");
    let stats = keyring.stats();
    assert_eq!(stats.leases_renewed_ahead, 1, "{stats:?}");
    assert_eq!(
        stats.seal_waits, 1,
        "only the very first seal waited: {stats:?}"
    );
    assert_eq!(
        wrapped_keys(&[first, renewed]).len(),
        2,
        "a new lease is in use"
    );
    // The KMS goes down and the lease runs out: sealing fails closed.
    outage_then(1000, 61);
    let err = keyring
        .seal(&c, b"secret")
        .await
        .expect_err("no lease, no KMS");
    assert!(matches!(err, Error::Provider(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("secret"));
}

#[tokio::test]
async fn leases_are_partitioned_by_context() {
    let keyring = Keyring::builder(kek("part")).build().expect("keyring");
    let a = keyring.seal(&ctx("tenant-a"), b"x").await.expect("seal");
    let b = keyring.seal(&ctx("tenant-b"), b"x").await.expect("seal");
    assert_eq!(keyring.stats().generate_calls, 2);
    assert_eq!(
        wrapped_keys(&[a.clone(), b]).len(),
        2,
        "tenants never share a data key"
    );
    let err = keyring
        .open(&ctx("tenant-b"), &a)
        .await
        .expect_err("wrong tenant");
    assert!(matches!(err, Error::ContextMismatch(_)), "{err}");
    assert!(err.to_string().contains("namespace"), "{err}");
}

/// An attacker rewrites the stored context of tenant A's envelope to tenant B's and presents
/// it as B's: the KMS (here the local KEK) refuses to unwrap, and even with the data key in
/// hand the body fails authentication.
#[tokio::test]
async fn an_envelope_moved_to_another_tenant_does_not_open() {
    let key = kek("move");
    let keyring = Keyring::builder(key.clone()).build().expect("keyring");
    let envelope = keyring
        .seal(&ctx("tenant-a"), b"tenant a's secret")
        .await
        .expect("seal");
    let parsed = parse(&envelope).expect("parse");
    let mut header = parsed.header.clone();
    header.context = ctx("tenant-b");
    let mut moved = Vec::new();
    header.encode_into(&mut moved);
    moved.extend_from_slice(parsed.body);

    let err = keyring
        .open(&ctx("tenant-b"), &moved)
        .await
        .expect_err("must not open");
    assert!(
        matches!(&err, Error::Provider(p) if p.kind() == ProviderErrorKind::InvalidWrappedKey),
        "{err}"
    );

    let data_key = key
        .unwrap(&header.wrapped_key, &ctx("tenant-a"))
        .await
        .expect("unwrap as a");
    let moved_parsed = parse(&moved).expect("parse");
    let err = open_with_data_key(&data_key, &moved_parsed, &ctx("tenant-b"))
        .expect_err("AAD binds context");
    assert!(matches!(err, Error::Authentication), "{err}");
}

/// A valid wrapped key of another data key swapped into the header must not yield a
/// (different) plaintext: the key commitment catches it before decryption.
#[tokio::test]
async fn key_commitment_rejects_a_swapped_data_key() {
    let keyring = leasing_keyring(kek("commit"), LeaseLimits::one_payload_per_key(), None);
    let c = ctx("a");
    let first = keyring.seal(&c, b"first").await.expect("seal");
    let second = keyring.seal(&c, b"second").await.expect("seal");
    let other = inspect(&second).expect("header").wrapped_key;
    let forged = replace_wrapped_key(&first, &other).expect("splice");
    let err = keyring.open(&c, &forged).await.expect_err("must not open");
    assert!(matches!(err, Error::CommitmentMismatch), "{err}");
}

// 64 concurrent opens making one provider call: the conformance suite's
// `concurrent_opens_one_call`, run for the local KEK in crates/sealbox-local/tests/conformance.rs
// and for every KMS provider against its server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_seals_make_one_generate_call() {
    let counted = Arc::new(Instrumented::new(kek("seal-flight")));
    let keyring = Keyring::builder(counted.clone()).build().expect("keyring");
    let c = ctx("a");
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let (keyring, c) = (keyring.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            keyring.seal(&c, &pattern(64, i)).await
        }));
    }
    let mut envelopes = Vec::new();
    for t in tasks {
        envelopes.push(t.await.expect("task").expect("seal"));
    }
    assert_eq!(counted.generate_calls.load(Ordering::SeqCst), 1);
    assert_eq!(wrapped_keys(&envelopes).len(), 1);
}

#[tokio::test]
async fn unknown_kek_is_refused_and_decrypt_only_keks_open_old_data() {
    let old = kek("old");
    let new = kek("new");
    let old_ring = Keyring::builder(old.clone()).build().expect("keyring");
    let c = ctx("a");
    let envelope = old_ring.seal(&c, b"legacy").await.expect("seal");

    let new_only = Keyring::builder(new.clone()).build().expect("keyring");
    let err = new_only.open(&c, &envelope).await.expect_err("unknown kek");
    assert!(
        matches!(&err, Error::UnknownKek { key_id, .. } if key_id == "old"),
        "{err}"
    );

    let migrating = Keyring::builder(new.clone())
        .decrypt_only(old)
        .build()
        .expect("keyring");
    assert_eq!(
        migrating.open(&c, &envelope).await.expect("open"),
        b"legacy"
    );
    let fresh = migrating.seal(&c, b"new data").await.expect("seal");
    assert_eq!(
        inspect(&fresh).expect("header").kek().key_id(),
        "new",
        "decrypt-only keys never wrap"
    );
}

// Rewrap across KEKs and after a server-side rotation: the conformance suite's
// `rewrap_across_keks` and `rotation_and_rewrap`, run for the local KEK and every KMS provider.

#[test]
fn invalid_configurations_are_refused_with_a_reason() {
    let a = kek("a");
    let builder = || Keyring::builder(a.clone());
    let cases = [
        (
            "duplicate KEK",
            builder().decrypt_only(a.clone()),
            "listed twice",
        ),
        (
            "zero payloads",
            builder().lease_limits(max_payloads(0)),
            "max_payloads",
        ),
        (
            "zero age",
            builder().lease_limits(LeaseLimits {
                max_age: Duration::ZERO,
                ..LeaseLimits::default()
            }),
            "max_age",
        ),
        // An endless TTL is refused, not a panic when an entry's expiry is computed.
        (
            "endless TTL",
            builder().cache_limits(CacheLimits {
                unwrap_ttl: Duration::MAX,
                ..CacheLimits::default()
            }),
            "at most 7 days",
        ),
    ];
    for (case, config, reason) in cases {
        let err = config.build().expect_err(case);
        assert!(err.to_string().contains(reason), "{case}: {err}");
    }
}

#[tokio::test]
async fn a_provider_outage_fails_the_seal_and_is_not_cached() {
    let flaky = Arc::new(Instrumented::new(kek("flaky")));
    flaky.fail_next.store(1, Ordering::SeqCst);
    let keyring = Keyring::builder(flaky.clone()).build().expect("keyring");
    let c = ctx("a");
    let err = keyring
        .seal(&c, b"must not leak")
        .await
        .expect_err("outage");
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("injected outage") && err.to_string().contains("flaky"),
        "{err}"
    );
    let envelope = keyring
        .seal(&c, b"after recovery")
        .await
        .expect("second try succeeds");

    let reader_provider = Arc::new(Instrumented::new(flaky.inner.clone()));
    reader_provider.fail_next.store(1, Ordering::SeqCst);
    let reader = Keyring::builder(reader_provider.clone())
        .build()
        .expect("keyring");
    assert!(reader.open(&c, &envelope).await.is_err());
    assert_eq!(
        reader
            .open(&c, &envelope)
            .await
            .expect("errors are not cached"),
        b"after recovery"
    );
    assert_eq!(reader.stats().failed_calls, 1);
}

#[tokio::test]
async fn secrets_never_appear_in_debug_output_or_errors() {
    let (key, keyring, envelope) = sealed_once("secret", b"x").await;
    let c = ctx("a");
    let header = inspect(&envelope).expect("header");
    let data_key = key.unwrap(&header.wrapped_key, &c).await.expect("unwrap");
    let hex_key = hex::encode(data_key.expose_secret());
    let dec_key = format!("{:?}", data_key.expose_secret());

    let mut outputs = vec![
        format!("{keyring:?}"),
        format!("{header:?}"),
        format!("{data_key:?}"),
        format!("{key:?}"),
    ];
    let mut tampered = envelope.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    for result in [
        keyring.open(&c, &tampered).await,
        keyring.open(&ctx("b"), &envelope).await,
        open_with_data_key(&data_key, &parse(&envelope).expect("parse"), &ctx("b")),
    ] {
        let err = result.expect_err("must fail");
        outputs.push(format!("{err}"));
        outputs.push(format!("{err:?}"));
    }
    for out in outputs {
        assert!(
            !out.contains(&hex_key) && !out.contains(&dec_key),
            "key material in: {out}"
        );
    }
}

#[tokio::test]
async fn core_primitives_round_trip_and_check_the_context() {
    let key = kek("core");
    let c = EncryptionContext::new();
    let generated = key.generate_data_key(&c).await.expect("generate");
    let envelope =
        seal_with_data_key(&generated.data_key, &generated.wrapped, &c, b"abc").expect("seal");
    let parsed = parse(&envelope).expect("parse");
    assert_eq!(
        open_with_data_key(&generated.data_key, &parsed, &c).expect("open"),
        b"abc"
    );
    assert!(matches!(
        open_with_data_key(&generated.data_key, &parsed, &ctx("x")),
        Err(Error::ContextMismatch(_))
    ));
}

#[tokio::test]
async fn open_many_batches_per_kek_and_fails_items_independently() {
    let old = kek("old");
    let new = kek("new");
    let c = ctx("a");
    let old_writer = leasing_keyring(old.clone(), max_payloads(2), None);
    let new_writer = Keyring::builder(new.clone()).build().expect("keyring");
    let mut envs = Vec::new();
    for i in 0..6u64 {
        envs.push(old_writer.seal(&c, &pattern(20, i)).await.expect("seal"));
    }
    for i in 6..9u64 {
        envs.push(new_writer.seal(&c, &pattern(20, i)).await.expect("seal"));
    }
    let stranger = Keyring::builder(kek("stranger")).build().expect("keyring");
    let unknown = stranger.seal(&c, b"?").await.expect("seal");
    let other_ctx = ctx("b");

    let reader = Keyring::builder(new)
        .decrypt_only(old)
        .build()
        .expect("keyring");
    let mut items: Vec<(&EncryptionContext, &[u8])> =
        envs.iter().map(|e| (&c, e.as_slice())).collect();
    items.push((&c, unknown.as_slice()));
    items.push((&other_ctx, envs[0].as_slice()));
    items.push((&c, b"garbage".as_slice()));
    let results = reader.open_many(&items).await;
    for (i, r) in results.iter().take(9).enumerate() {
        assert_eq!(r.as_ref().expect("open"), &pattern(20, i as u64));
    }
    assert!(
        matches!(results[9], Err(Error::UnknownKek { .. })),
        "{:?}",
        results[9]
    );
    assert!(
        matches!(results[10], Err(Error::ContextMismatch(_))),
        "{:?}",
        results[10]
    );
    assert!(
        matches!(results[11], Err(Error::Format(_))),
        "{:?}",
        results[11]
    );
    let stats = reader.stats();
    assert_eq!(stats.batch_unwrap_calls, 2, "one batch per KEK");
    assert_eq!(
        stats.batch_unwrapped_keys, 4,
        "3 distinct old keys + 1 new key"
    );
    assert_eq!(stats.unwrap_calls, 0);
    let again = reader.open_many(&items[..9]).await;
    assert!(again.iter().all(Result::is_ok));
    assert_eq!(reader.stats().batch_unwrap_calls, 2, "all cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_many_unwraps_the_batches_of_different_keks_concurrently() {
    let c = ctx("a");
    let (a, b) = (kek("kek-a"), kek("kek-b"));
    let ea = Keyring::builder(a.clone()).build().expect("keyring");
    let eb = Keyring::builder(b.clone()).build().expect("keyring");
    let env_a = ea.seal(&c, b"from a").await.expect("seal");
    let env_b = eb.seal(&c, b"from b").await.expect("seal");
    // Each KEK's batch waits at a two-party barrier: only concurrent batches get past it.
    let gate = Arc::new(tokio::sync::Barrier::new(2));
    let gated = |k: Arc<LocalKek>| {
        let mut p = Instrumented::new(k);
        p.batch_gate = Some(gate.clone());
        Arc::new(p)
    };
    let reader = Keyring::builder(gated(a))
        .decrypt_only(gated(b))
        .build()
        .expect("keyring");
    let items = [(&c, env_a.as_slice()), (&c, env_b.as_slice())];
    // A generous guard against a deadlock (sequential batches), not a speed assertion.
    let results = tokio::time::timeout(Duration::from_secs(60), reader.open_many(&items))
        .await
        .expect("the two KEKs' batches ran one after another and deadlocked at the barrier");
    assert_eq!(results[0].as_deref().expect("a"), b"from a");
    assert_eq!(results[1].as_deref().expect("b"), b"from b");
    assert_eq!(reader.stats().batch_unwrap_calls, 2);
}

#[tokio::test]
async fn a_refused_wrapped_key_is_not_sent_to_the_kms_again() {
    // Two local KEKs with the same ID but different material: the reader's KMS refuses the
    // writer's wrapped keys (an unknown key version), the way a KMS refuses a forged or
    // foreign one.
    let writer = Keyring::builder(kek("shared")).build().expect("writer");
    let c = ctx("a");
    let envelope = writer.seal(&c, b"payload").await.expect("seal");
    let reader_kms = Arc::new(Instrumented::new(kek("shared")));
    let reader = Keyring::builder(reader_kms.clone())
        .build()
        .expect("reader");
    assert_eq!(reader.pending_unwraps(&[(&c, envelope.as_slice())]), 1);
    for _ in 0..5 {
        let e = reader.open(&c, &envelope).await.expect_err("foreign key");
        assert!(
            matches!(&e, Error::Provider(p) if p.kind() == ProviderErrorKind::NotFound),
            "{e}"
        );
    }
    let batch = reader
        .open_many(&[(&c, envelope.as_slice()), (&c, envelope.as_slice())])
        .await;
    assert!(batch.iter().all(Result::is_err));
    assert_eq!(
        reader_kms.unwrap_calls.load(Ordering::SeqCst),
        1,
        "one KMS call for the first refusal, none for the replays"
    );
    assert_eq!(
        reader.stats().negative_cache_hits,
        6,
        "4 replayed opens + 2 batch items"
    );
    // Refused keys cost nothing now, so admission control does not count them.
    assert_eq!(reader.pending_unwraps(&[(&c, envelope.as_slice())]), 0);
    // The same wrapped key under another context is a different question for the KMS.
    let other = ctx("b");
    assert_eq!(reader.pending_unwraps(&[(&other, envelope.as_slice())]), 0);
}

#[tokio::test]
async fn refusals_expire_and_transient_failures_are_never_remembered() {
    let writer_kek = kek("w2");
    let writer = Keyring::builder(writer_kek.clone())
        .build()
        .expect("writer");
    let c = ctx("a");
    let envelope = writer.seal(&c, b"payload").await.expect("seal");
    let kms = Arc::new(Instrumented::new(kek("w2")));
    let reader = Keyring::builder(kms.clone())
        .cache_limits(CacheLimits {
            // Long enough that a stall on a busy machine between the next two opens cannot
            // expire it; the sleep below only has to outlast it.
            negative_ttl: Duration::from_secs(2),
            ..Default::default()
        })
        .build()
        .expect("reader");
    reader.open(&c, &envelope).await.expect_err("foreign");
    reader
        .open(&c, &envelope)
        .await
        .expect_err("cached refusal");
    assert_eq!(kms.unwrap_calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    reader.open(&c, &envelope).await.expect_err("asked again");
    assert_eq!(kms.unwrap_calls.load(Ordering::SeqCst), 2);

    // An outage (transient) is not remembered: the next open asks the KMS and succeeds.
    let flaky = Arc::new(Instrumented::new(writer_kek));
    flaky.fail_next.store(1, Ordering::SeqCst);
    let r2 = Keyring::builder(flaky.clone()).build().expect("r2");
    r2.open(&c, &envelope).await.expect_err("outage");
    assert_eq!(r2.open(&c, &envelope).await.expect("recovered"), b"payload");
}

#[tokio::test]
async fn seal_needs_kms_tells_whether_a_lease_is_ready() {
    let keyring = leasing_keyring(kek("lease"), max_payloads(2), None);
    let c = ctx("a");
    assert!(keyring.seal_needs_kms(&c, 10).await, "no lease yet");
    keyring.seal(&c, b"one").await.expect("seal");
    assert!(!keyring.seal_needs_kms(&c, 10).await, "lease has room");
    assert!(keyring.seal_needs_kms(&ctx("b"), 10).await, "per context");
    keyring.seal(&c, b"two").await.expect("seal");
    assert!(keyring.seal_needs_kms(&c, 10).await, "lease spent");
}
