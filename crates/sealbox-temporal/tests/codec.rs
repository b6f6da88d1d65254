//! The codecs on their own: format markers, namespace binding, pass-through, fail-closed
//! encoding, size limits, batching, compression and foreign formats.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;
use sealbox_policy::{PolicyConfig, PolicyKeyrings};
use sealbox_temporal::{
    CodecChain, CodecError, Payload, PayloadCodec, SealboxCodec, SerializationContextData,
    ZstdCodec, ZstdOptions,
};

fn payload(encoding: &str, data: &[u8]) -> Payload {
    Payload {
        metadata: HashMap::from([("encoding".to_owned(), encoding.as_bytes().to_vec())]),
        data: data.to_vec(),
        external_payloads: vec![],
    }
}

/// [`payload`] with the `extra` metadata entries too.
fn payload_with(encoding: &str, data: &[u8], extra: &[(&str, &[u8])]) -> Payload {
    let mut p = payload(encoding, data);
    for (key, value) in extra {
        p.metadata.insert((*key).to_owned(), value.to_vec());
    }
    p
}

fn keyring() -> Keyring {
    let kek = LocalKek::from_base64("codec-test", &base64_key(3)).expect("kek");
    Keyring::builder(Arc::new(kek)).build().expect("keyring")
}

/// A codec for `namespace` with the default settings over a fresh [`keyring`].
fn default_codec(namespace: &str) -> SealboxCodec {
    SealboxCodec::builder(keyring(), namespace)
        .build()
        .expect("codec")
}

fn base64_key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// The policy `policy(k)` writes, where `k` is the path of a local KEK file (32 bytes of
/// `byte`) in a fresh directory, which lives as long as the returned guard.
async fn policy_with_local_key(
    byte: u8,
    policy: impl FnOnce(&str) -> String,
) -> (tempfile::TempDir, Arc<PolicyKeyrings>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("kek");
    sealbox_testkit::write_secret_file(&key, &base64_key(byte));
    let text = policy(&key.display().to_string());
    let config = PolicyConfig::from_toml(&text, "p").expect("valid");
    let keyrings = PolicyKeyrings::build(config).await.expect("build");
    (dir, Arc::new(keyrings))
}

/// `data` as one `json/plain` payload encoded by `chain`, checking that the KEK the payload
/// names starts with `kek_prefix`.
async fn encode_json(chain: &CodecChain, data: &str, kek_prefix: &str) -> Vec<Payload> {
    let ctx = SerializationContextData::None;
    let sealed = chain
        .encode(&ctx, vec![payload("json/plain", data.as_bytes())])
        .await
        .expect("encode");
    let kek = meta(&sealed[0], "encryption-key-id").expect("kid");
    assert!(kek.starts_with(kek_prefix), "{kek}");
    sealed
}

fn meta<'a>(p: &'a Payload, key: &str) -> Option<&'a str> {
    p.metadata
        .get(key)
        .and_then(|v| std::str::from_utf8(v).ok())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn seals_whole_payload_marks_it_and_restores_it_exactly() {
    let codec = default_codec("payments");
    let original = payload_with(
        "json/plain",
        br#"{"card":"4111-1111"}"#,
        &[("messageType", b"secret.Type")],
    );
    let sealed = codec
        .encode_payloads(vec![original.clone()])
        .await
        .expect("encode");
    assert_eq!(sealed.len(), 1);
    let s = &sealed[0];
    let mut keys: Vec<&str> = s.metadata.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["encoding", "encryption-key-id", "sealbox-format"]);
    assert_eq!(meta(s, "encoding"), Some("binary/encrypted"));
    assert_eq!(meta(s, "sealbox-format"), Some("sealbox-envelope/1"));
    assert!(
        meta(s, "encryption-key-id")
            .expect("key id")
            .starts_with("local:codec-test#")
    );
    assert!(
        !s.metadata.contains_key("encryption-dek"),
        "never mistaken for Proxy's"
    );
    assert_eq!(&s.data[..4], b"SBXE");
    assert!(!contains(&s.data, b"4111-1111") && !contains(&s.data, b"secret.Type"));
    // The envelope header is readable without keys and names the namespace.
    let header = sealbox_core::inspect(&s.data).expect("header");
    assert_eq!(header.context.get("namespace"), Some("payments"));

    let opened = codec.decode_payloads(sealed).await.expect("decode");
    assert_eq!(opened, vec![original]);
}

#[tokio::test]
async fn decode_passes_unencrypted_payloads_through_in_order_when_allowed() {
    let codec = SealboxCodec::builder(keyring(), "ns")
        .require_encryption(false)
        .build()
        .expect("codec");
    let sealed = codec
        .encode_payloads(vec![
            payload("json/plain", b"\"a\""),
            payload("json/plain", b"\"b\""),
        ])
        .await
        .expect("encode");
    let plain_json = payload("json/plain", b"\"visible\"");
    let null = payload("binary/null", b"");
    let bare = Payload::default();
    let zlib = payload("binary/zlib", b"\x78\x9c");
    let mixed = vec![
        plain_json.clone(),
        sealed[0].clone(),
        null.clone(),
        bare.clone(),
        sealed[1].clone(),
        zlib.clone(),
    ];
    let out = codec.decode_payloads(mixed).await.expect("decode");
    assert_eq!(out.len(), 6);
    assert_eq!(out[0], plain_json);
    assert_eq!(out[1].data, b"\"a\"");
    assert_eq!(out[2], null);
    assert_eq!(out[3], bare);
    assert_eq!(out[4].data, b"\"b\"");
    assert_eq!(out[5], zlib);
    let stats = codec.stats();
    assert_eq!((stats.decoded, stats.passed_through), (2, 4));
}

#[tokio::test]
async fn payloads_of_one_namespace_do_not_open_in_another() {
    let kr = keyring();
    let a = SealboxCodec::builder(kr.clone(), "tenant-a")
        .build()
        .expect("a");
    let b = SealboxCodec::builder(kr, "tenant-b").build().expect("b");
    let sealed = a
        .encode_payloads(vec![payload("json/plain", b"\"a's secret\"")])
        .await
        .expect("encode");
    let err = b
        .decode_payloads(sealed.clone())
        .await
        .expect_err("other namespace");
    let text = err.to_string();
    assert!(
        text.contains("encryption context") && text.contains("namespace"),
        "{text}"
    );
    assert!(!text.contains("a's secret"));
    assert!(a.decode_payloads(sealed).await.is_ok());
}

#[tokio::test]
async fn tampered_payload_fails_instead_of_decoding() {
    let codec = default_codec("ns");
    let mut sealed = codec
        .encode_payloads(vec![payload("json/plain", b"\"x\"")])
        .await
        .expect("encode");
    let last = sealed[0].data.len() - 1;
    sealed[0].data[last] ^= 1;
    let err = codec.decode_payloads(sealed).await.expect_err("tampered");
    assert!(
        matches!(err, CodecError::Envelope { index: 0, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn one_unwrap_for_many_payloads_of_one_lease() {
    let writer = SealboxCodec::builder(keyring(), "ns")
        .build()
        .expect("writer");
    let payloads: Vec<Payload> = (0..50)
        .map(|i| payload("json/plain", format!("\"{i}\"").as_bytes()))
        .collect();
    let sealed = writer
        .encode_payloads(payloads.clone())
        .await
        .expect("encode");
    // A fresh reader (cold cache) with its own key-ring.
    let reader_ring = keyring();
    let reader = SealboxCodec::builder(reader_ring.clone(), "ns")
        .build()
        .expect("reader");
    let opened = reader
        .decode_payloads(sealed.clone())
        .await
        .expect("decode");
    assert_eq!(opened, payloads);
    assert_eq!(
        reader_ring.stats().kms_calls(),
        1,
        "{:?}",
        reader_ring.stats()
    );
    reader.decode_payloads(sealed).await.expect("again");
    assert_eq!(
        reader_ring.stats().kms_calls(),
        1,
        "the second call is served from cache"
    );
}

#[tokio::test]
async fn stats_report_the_overhead_added() {
    let codec = default_codec("ns");
    let inputs = vec![
        payload("json/plain", &[b'x'; 1000]),
        payload("json/plain", b"1"),
    ];
    let in_size: usize = inputs.iter().map(Message::encoded_len).sum();
    let out = codec.encode_payloads(inputs).await.expect("encode");
    let out_size: usize = out.iter().map(Message::encoded_len).sum();
    let stats = codec.stats();
    assert_eq!(stats.encoded, 2);
    assert_eq!(stats.bytes_in, in_size as u64);
    assert_eq!(stats.bytes_out, out_size as u64);
    assert_eq!(stats.overhead_bytes(), (out_size - in_size) as u64);
    assert!(stats.overhead_bytes() > 0);
}

#[tokio::test]
async fn payload_over_the_limit_is_refused_with_advice() {
    let limit = 64 * 1024;
    let codec = SealboxCodec::builder(keyring(), "ns")
        .max_payload_bytes(limit)
        .build()
        .expect("codec");
    // Too large before sealing: refused at once.
    let err = codec
        .encode_payloads(vec![payload("json/plain", &vec![b'a'; limit + 1])])
        .await
        .expect_err("too large");
    let text = err.to_string();
    assert!(matches!(err, CodecError::TooLarge { .. }));
    assert!(
        text.contains("compression") && text.contains("external storage"),
        "{text}"
    );
    // Fits before sealing, not after: refused, with the overhead named.
    let just_under = payload("json/plain", &vec![b'a'; limit - 40]);
    assert!(just_under.encoded_len() <= limit);
    match codec.encode_payloads(vec![just_under]).await {
        Err(CodecError::TooLarge { overhead, size, .. }) => assert!(overhead > 0 && size > limit),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Comfortably under: sealed.
    codec
        .encode_payloads(vec![payload("json/plain", &vec![b'a'; limit / 2])])
        .await
        .expect("fits");
    assert_eq!(
        codec.stats().encoded,
        1,
        "refused payloads are not counted as sealed"
    );
}

#[tokio::test]
async fn encode_fails_closed_when_the_kms_is_down() {
    let bao = sealbox_testkit::servers::OpenBao::start_with_transit_keys(&["k"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let text = bao.token_policy(dir.path(), "k");
    let policy = PolicyKeyrings::build(PolicyConfig::from_toml(&text, "t").expect("policy"))
        .await
        .expect("build");
    let codec = SealboxCodec::from_policy(Arc::new(policy), "ns")
        .build()
        .expect("codec");
    drop(bao); // the KMS goes away before the first data key is made
    let secret = b"\"must never be stored in the clear\"";
    let result = codec
        .encode(
            &SerializationContextData::None,
            vec![payload("json/plain", secret)],
        )
        .await;
    let err = result.expect_err("no data key, no payload");
    let text = err.to_string();
    assert!(text.contains("payload 0"), "{text}");
    assert!(!text.contains("must never"), "{text}");
}

#[tokio::test]
async fn foreign_encrypted_payloads_are_named_not_guessed() {
    let codec = default_codec("ns");
    let samples = payload_with(
        "binary/encrypted",
        &[0u8; 40],
        &[("encryption-key-id", b"their-key")],
    );
    let err = codec
        .decode_payloads(vec![samples.clone()])
        .await
        .expect_err("not configured");
    assert!(
        err.to_string().contains("Temporal samples format")
            && err.to_string().contains("their-key")
    );

    let mut proxy = samples.clone();
    proxy
        .metadata
        .insert("encryption-dek".into(), b"AAAA".to_vec());
    let err = codec.decode_payloads(vec![proxy]).await.expect_err("proxy");
    assert!(err.to_string().contains("Temporal Proxy"), "{err}");

    let mut future = samples.clone();
    future
        .metadata
        .insert("sealbox-format".into(), b"sealbox-envelope/9".to_vec());
    let err = codec
        .decode_payloads(vec![future])
        .await
        .expect_err("future");
    assert!(err.to_string().contains("upgrade"), "{err}");

    let lenient = SealboxCodec::builder(keyring(), "ns")
        .pass_through_foreign(true)
        .build()
        .expect("codec");
    let out = lenient
        .decode_payloads(vec![samples.clone()])
        .await
        .expect("passes");
    assert_eq!(out, vec![samples]);
}

#[tokio::test]
async fn builder_rejects_bad_settings() {
    assert!(SealboxCodec::builder(keyring(), "").build().is_err());
    assert!(
        SealboxCodec::builder(keyring(), "ns")
            .max_payload_bytes(0)
            .build()
            .is_err()
    );
    assert!(ZstdCodec::new(ZstdOptions::new(0, 0)).is_err());
    assert!(ZstdCodec::new(ZstdOptions::new(0, 20)).is_err());
    assert!(ZstdCodec::new(ZstdOptions::new(0, 3).max_decompressed(0)).is_err());
}

fn chain(min_size: usize) -> (CodecChain, SealboxCodec) {
    let sealbox = default_codec("ns");
    let zstd = ZstdCodec::new(ZstdOptions::new(min_size, 3)).expect("zstd");
    (CodecChain::new().then(zstd).then(sealbox.clone()), sealbox)
}

#[tokio::test]
async fn compression_chain_compresses_large_payloads_before_sealing() {
    let (chain, sealbox) = chain(1024);
    let ctx = SerializationContextData::None;
    let big = payload(
        "json/plain",
        "{\"line\":\"the same text again\"}".repeat(400).as_bytes(),
    );
    let small = payload("json/plain", b"\"tiny\"");
    let mut x = 0x9E37_79B9_7F4A_7C15u64; // xorshift64*: incompressible for zstd
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect();
    let noisy = payload("binary/plain", &random);
    let inputs = vec![big.clone(), small.clone(), noisy.clone()];
    let sealed = chain.encode(&ctx, inputs.clone()).await.expect("encode");
    assert!(
        sealed
            .iter()
            .all(|p| meta(p, "encoding") == Some("binary/encrypted"))
    );
    assert!(
        sealed[0].encoded_len() < big.encoded_len() / 4,
        "compressed before sealing"
    );
    // What is inside each envelope: the big one compressed (self-describing), the others not.
    let ns = sealbox_core::EncryptionContext::new()
        .with("namespace", "ns")
        .expect("ctx");
    let mut inner = Vec::new();
    for p in &sealed {
        let opened = keyring().open(&ns, &p.data).await.expect("open");
        inner.push(Payload::decode(opened.as_slice()).expect("payload"));
    }
    // The encryption codec alone decompresses what came out of its envelopes.
    assert_eq!(
        sealbox.decode_payloads(sealed.clone()).await.expect("open"),
        inputs
    );
    assert_eq!(meta(&inner[0], "encoding"), Some("binary/zstd"));
    assert_eq!(meta(&inner[0], "sealbox-format"), Some("sealbox-zstd/1"));
    assert_eq!(inner[1], small, "under the threshold: not compressed");
    let compressed_random = inner[2] != noisy;
    assert!(!compressed_random, "incompressible data is left as it is");
    // The whole chain restores the originals.
    assert_eq!(chain.decode(&ctx, sealed).await.expect("decode"), inputs);
}

#[tokio::test]
async fn zstd_decoder_refuses_bombs_and_foreign_zstd() {
    let zstd = ZstdCodec::new(ZstdOptions::new(0, 3).max_decompressed(10_000)).expect("zstd");
    let bomb = zstd::bulk::compress(&payload("x", &vec![0u8; 1_000_000]).encode_to_vec(), 3)
        .expect("compress");
    let mut p = payload("binary/zstd", &bomb);
    p.metadata
        .insert("sealbox-format".into(), b"sealbox-zstd/1".to_vec());
    let err = zstd.decode_payloads(vec![p]).expect_err("over the limit");
    assert!(err.to_string().contains("10000-byte limit"), "{err}");

    let foreign = payload("binary/zstd", &bomb);
    let err = zstd.decode_payloads(vec![foreign]).expect_err("not ours");
    assert!(err.to_string().contains("not written by Sealbox"), "{err}");

    let garbage = {
        let mut p = payload("binary/zstd", b"not zstd at all");
        p.metadata
            .insert("sealbox-format".into(), b"sealbox-zstd/1".to_vec());
        p
    };
    assert!(zstd.decode_payloads(vec![garbage]).is_err());

    // Many payloads under the per-payload limit, together over the per-call budget.
    let small = ZstdCodec::new(
        ZstdOptions::new(0, 3)
            .max_decompressed(600_000)
            .call_budget(2_000_000),
    )
    .expect("zstd");
    let mut p = payload("binary/zstd", &bomb);
    p.metadata
        .insert("sealbox-format".into(), b"sealbox-zstd/1".to_vec());
    let err = small
        .decode_payloads(vec![p; 5])
        .expect_err("over the budget");
    assert!(
        matches!(err, CodecError::Malformed { .. }),
        "1 MB each is over 600 kB: {err}"
    );
    let medium = payload("x", &vec![7u8; 500_000]);
    let mut m = payload(
        "binary/zstd",
        &zstd::bulk::compress(&medium.encode_to_vec(), 3).expect("c"),
    );
    m.metadata
        .insert("sealbox-format".into(), b"sealbox-zstd/1".to_vec());
    assert_eq!(
        small
            .decode_payloads(vec![m.clone(); 3])
            .expect("1.5 MB in all"),
        vec![medium; 3]
    );
    let err = small
        .decode_payloads(vec![m; 5])
        .expect_err("2.5 MB in all");
    assert!(
        matches!(
            err,
            CodecError::DecompressionBudget {
                index: 3,
                budget: 2_000_000
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn plaintext_is_refused_where_encryption_is_required() {
    let codec = default_codec("payments");
    let sealed = codec
        .encode_payloads(vec![payload("json/plain", b"\"amount: 10\"")])
        .await
        .expect("encode");
    // Someone with write access to Temporal's store replaces the sealed input.
    let forged = payload("json/plain", b"\"amount: 1000000\"");
    let err = codec
        .decode_payloads(vec![sealed[0].clone(), forged.clone()])
        .await
        .expect_err("downgrade");
    assert!(
        matches!(&err, CodecError::Unencrypted { index: 1, encoding, namespace }
            if encoding == "json/plain" && namespace == "payments"),
        "{err}"
    );
    assert!(!err.to_string().contains("1000000"), "{err}");
    for bare in [Payload::default(), payload("binary/zstd", b"x")] {
        assert!(codec.decode_payloads(vec![bare]).await.is_err());
    }
    // Plaintext by design passes: Temporal's null payload and external-storage references
    // (plain, and codec-encoded ones marked by the SDK).
    let null = payload("binary/null", b"");
    let mut reference = payload(
        "json/protobuf",
        br#"{"driverName":"aws.s3driver","claimData":{"bucket":"b","key":"k"}}"#,
    );
    reference.metadata.insert(
        "messageType".into(),
        b"temporal.api.sdk.v1.ExternalStorageReference".to_vec(),
    );
    let mut marked = payload("binary/plain", b"opaque");
    marked.metadata.insert(
        "__temporal_external_storage_reference".into(),
        b"true".to_vec(),
    );
    let passed = vec![null.clone(), reference.clone(), marked.clone()];
    assert_eq!(
        codec
            .decode_payloads(passed.clone())
            .await
            .expect("by design"),
        passed
    );
    // A null payload with data is not Temporal's null payload.
    assert!(
        codec
            .decode_payloads(vec![payload("binary/null", b"hidden")])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_key_policy_decides_require_encryption_per_namespace() {
    let (_dir, policy) = policy_with_local_key(4, |k| {
        format!(
            "version = 1\n[default]\nactive = \"local:///d?file={k}\"\n[[rule]]\nnamespace = \"migrating\"\nactive = \"local:///d?file={k}\"\nrequire_encryption = false\n"
        )
    })
    .await;
    let ctx = SerializationContextData::None;
    let plain = vec![payload("json/plain", b"\"old\"")];
    let strict = CodecChain::from_policy(Arc::clone(&policy), "payments").expect("chain");
    assert!(strict.decode(&ctx, plain.clone()).await.is_err());
    let lenient = CodecChain::from_policy(policy, "migrating").expect("chain");
    assert_eq!(
        lenient
            .decode(&ctx, plain.clone())
            .await
            .expect("migrating"),
        plain
    );
}

/// Peak resident memory of this process (nextest runs each test in a process of its own).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_zstd_bombs_are_refused_within_the_call_budget() {
    // 24 authentic envelopes, each holding a 2 KB zstd frame of 60 MiB of zeros: 1.4 GiB if
    // decompressed, under the 64 MiB per-payload limit each. Whoever can write to the
    // store, or a tenant's own worker, could produce them.
    let bomb_inner = {
        let huge = payload("json/plain", &vec![0u8; 60 << 20]).encode_to_vec();
        let mut p = payload(
            "binary/zstd",
            &zstd::bulk::compress(&huge, 3).expect("compress"),
        );
        p.metadata
            .insert("sealbox-format".into(), b"sealbox-zstd/1".to_vec());
        p
    };
    assert!(bomb_inner.data.len() < 64 << 10);
    let codec = default_codec("ns");
    let one = codec
        .encode_payloads(vec![bomb_inner])
        .await
        .expect("encode");
    let before = peak_rss_bytes();
    let err = codec
        .decode_payloads(vec![one[0].clone(); 24])
        .await
        .expect_err("over the per-call budget");
    assert!(
        matches!(err, CodecError::DecompressionBudget { budget, .. } if budget == 128 << 20),
        "{err}"
    );
    let peak = peak_rss_bytes();
    assert!(
        peak < before + (600 << 20),
        "decompression stayed within the budget: peak {} MiB, {} MiB before",
        peak >> 20,
        before >> 20
    );
    // A payload that claims a window over 16 MiB is refused before anything is allocated.
    let wide = {
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).expect("encoder");
        enc.window_log(27).expect("wlog");
        enc.long_distance_matching(true).expect("ldm");
        std::io::Write::write_all(&mut enc, &payload("x", &[1u8; 1000]).encode_to_vec())
            .expect("write");
        let mut p = payload("binary/zstd", &enc.finish().expect("finish"));
        p.metadata
            .insert("sealbox-format".into(), b"sealbox-zstd/1".to_vec());
        p
    };
    let sealed = codec.encode_payloads(vec![wide]).await.expect("encode");
    let err = codec
        .decode_payloads(sealed)
        .await
        .expect_err("window over 2^24");
    assert!(err.to_string().contains("malformed zstd"), "{err}");
}

#[tokio::test]
async fn policy_codec_applies_the_namespace_rule_and_its_compression() {
    let (_dir, policy) = policy_with_local_key(9, |k| {
        format!(
            r#"version = 1
[default]
active = "local:///plain?file={k}"

[[rule]]
namespace = "big-*"
active = "local:///big?file={k}"
[rule.compression]
algorithm = "zstd"
min_size = "1KiB"
[rule.context]
region = "eu"
"#
        )
    })
    .await;
    let ctx = SerializationContextData::None;
    let data = "repetitive ".repeat(500);
    let big = CodecChain::from_policy(Arc::clone(&policy), "big-data").expect("chain");
    let sealed = encode_json(&big, &data, "local:big").await;
    let header = sealbox_core::inspect(&sealed[0].data).expect("header");
    assert_eq!(header.context.get("region"), Some("eu"));
    assert!(sealed[0].data.len() < data.len() / 4, "the rule compresses");
    assert_eq!(
        big.decode(&ctx, sealed).await.expect("decode")[0].data,
        data.as_bytes()
    );

    let plain = CodecChain::from_policy(policy, "other").expect("chain");
    let sealed = encode_json(&plain, &data, "local:plain").await;
    assert!(
        sealed[0].data.len() > data.len(),
        "the default does not compress"
    );
}

#[tokio::test]
async fn another_codecs_zstd_inside_an_envelope_is_left_for_that_codec() {
    // A chain `their zstd codec → Sealbox`: what Sealbox opens is their `binary/zstd`
    // payload, not marked as ours; it is returned for their codec to decompress.
    let codec = default_codec("ns");
    let theirs = payload("binary/zstd", b"their frame");
    let sealed = codec
        .encode_payloads(vec![theirs.clone()])
        .await
        .expect("encode");
    assert_eq!(
        codec.decode_payloads(sealed).await.expect("decode"),
        vec![theirs]
    );
}
