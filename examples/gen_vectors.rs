//! Maintainer tool: writes the known-answer vectors of envelope format v1 (suites 0x0001
//! and 0x0002) to stdout.
//!
//! ```sh
//! cargo run --example gen_vectors > tests/vectors/v1.json
//! ```
//!
//! The committed file is frozen: `tests/vectors.rs` (and `tests/vectors/verify.py`, an
//! independent implementation from `docs/format.md`) check that every vector still holds.
//! Locally wrapped keys use a random nonce, so running this again produces a different —
//! equally valid — file; only regenerate on purpose. (Suite 0x0002's vectors were added to
//! the file with suite 0x0001's vectors kept byte for byte, and `fail_suite_0002` turned into
//! `fail_suite_0003` by hand, which is what this tool now writes.)
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use base64::Engine;
use sealbox::core::crypto::{derive_for_vectors, seal_with_fixed_randomness};
use sealbox::core::format::{SALT_LEN, parse};
use sealbox::{DataKey, EncryptionContext, KekRef, KeyProvider, LocalKek, Suite, WrappedKey};
use serde_json::{Value, json};

fn pattern<const N: usize>(seed: u64) -> [u8; N] {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = [0u8; N];
    for b in &mut out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    out
}

fn ctx_json(ctx: &EncryptionContext) -> Value {
    Value::Array(ctx.iter().map(|(k, v)| json!([k, v])).collect())
}

struct Case {
    suite: Suite,
    name: &'static str,
    description: &'static str,
    context: EncryptionContext,
    plaintext: Vec<u8>,
    seed: u64,
    foreign: Option<(KekRef, Vec<u8>)>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let kek_bytes: [u8; 32] = core::array::from_fn(|i| i as u8);
    let kek_b64 = base64::engine::general_purpose::STANDARD.encode(kek_bytes);
    let kek = LocalKek::from_base64("vector-kek", &kek_b64).unwrap();

    let mut cases = cases(Suite::Aes256GcmHkdfSha256Commit, "v1_", 0);
    cases.extend(cases_for_suite_2());

    let mut valid = Vec::new();
    let mut bases = Vec::new();
    for case in cases {
        let data_key = DataKey::try_from_slice(&pattern::<32>(case.seed * 100)).unwrap();
        let local = case.foreign.is_none();
        let wrapped = match case.foreign {
            Some((kek_ref, ct)) => WrappedKey::new(kek_ref, ct).unwrap(),
            None => kek.wrap(&data_key, &case.context).await.unwrap(),
        };
        let salt = pattern::<SALT_LEN>(case.seed * 100 + 1);
        let nonce = pattern::<12>(case.seed * 100 + 2);
        let envelope = seal_with_fixed_randomness(
            case.suite,
            &data_key,
            &wrapped,
            &case.context,
            &case.plaintext,
            salt,
            nonce,
        )
        .unwrap();
        let (payload_key, commitment) = derive_for_vectors(&data_key, case.suite, &salt);
        if case.seed % 10 == 2 {
            bases.push((envelope.clone(), hex::encode(data_key.expose_secret())));
        }
        valid.push(json!({
            "name": case.name,
            "description": case.description,
            "suite": case.suite.id(),
            "data_key_hex": hex::encode(data_key.expose_secret()),
            "context": ctx_json(&case.context),
            "plaintext_hex": hex::encode(&case.plaintext),
            "salt_hex": hex::encode(salt),
            "nonce_hex": hex::encode(nonce),
            "kek": {
                "provider": wrapped.kek().provider(),
                "key_id": wrapped.kek().key_id(),
                "key_version": wrapped.kek().key_version(),
            },
            "wrapped_key_hex": hex::encode(wrapped.ciphertext()),
            "local_kek_wrapped": local,
            "payload_key_hex": hex::encode(payload_key),
            "commitment_hex": hex::encode(commitment),
            "envelope_hex": hex::encode(&envelope),
        }));
    }

    let (base1, key1) = &bases[0];
    let (base2, key2) = &bases[1];
    let mut invalid = invalid_vectors("fail_", base1, key1);
    // Suite 0x0002: the same damage, and the same classes of failure.
    invalid.extend(invalid_vectors("fail_s0002_", base2, key2));
    let relabel = |base: &[u8], suite: u8| {
        let mut e = base.to_vec();
        e[6] = suite;
        e
    };
    for (name, description, base, key, suite) in [
        (
            "fail_suite_0001_relabelled_0002",
            "A suite 0x0001 envelope whose suite field was changed to 0x0002.",
            base1,
            key1,
            2,
        ),
        (
            "fail_suite_0002_relabelled_0001",
            "A suite 0x0002 envelope whose suite field was changed to 0x0001.",
            base2,
            key2,
            1,
        ),
    ] {
        invalid.push(json!({
            "name": name,
            "description": description,
            "data_key_hex": key,
            "context": [["namespace", "payments"]],
            "envelope_hex": hex::encode(relabel(base, suite)),
            "error": "commitment",
        }));
    }

    let doc = json!({
        "format": "Sealbox envelope format v1 (docs/format.md)",
        "notes": "All byte strings are hex. `context` is a list of [key, value] pairs. Valid vectors: opening envelope_hex with data_key_hex under context yields plaintext_hex, and sealing plaintext_hex with the given suite, data key, wrapped key, salt and nonce yields envelope_hex exactly (payload_key_hex and commitment_hex are the suite's derivations). Where local_kek_wrapped is true, unwrapping wrapped_key_hex with local_kek under the context yields data_key_hex. Invalid vectors must fail with the named class: format, context, commitment or authentication.",
        "local_kek": {
            "key_id": "vector-kek",
            "key_base64": kek_b64,
            "version": kek.versions()[0],
        },
        "valid": valid,
        "invalid": invalid,
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
}

/// Suite 0x0002's valid vectors: four of suite 0x0001's cases, with their own keys.
fn cases_for_suite_2() -> Vec<Case> {
    cases(Suite::Aes256GcmHkdfExpandSha256Commit, "v1_s0002_", 10)
        .into_iter()
        .filter(|c| c.seed != 14)
        .collect()
}

/// The valid cases for `suite`, named `prefix` + the case's name, seeds offset by `seed`.
fn cases(suite: Suite, prefix: &str, seed: u64) -> Vec<Case> {
    let name = |n: &str| -> &'static str { format!("{prefix}{n}").leak() };
    vec![
        Case {
            suite,
            name: name("empty_plaintext_empty_context"),
            description: "Zero-length plaintext, empty context, local KEK.",
            context: EncryptionContext::new(),
            plaintext: Vec::new(),
            seed: seed + 1,
            foreign: None,
        },
        Case {
            suite,
            name: name("namespace_context"),
            description: "A Temporal-style context holding the namespace, local KEK.",
            context: EncryptionContext::new()
                .with("namespace", "payments")
                .unwrap(),
            plaintext: b"hello, sealbox".to_vec(),
            seed: seed + 2,
            foreign: None,
        },
        Case {
            suite,
            name: name("multi_pair_unicode_context"),
            description: "Several context pairs (inserted out of order by the generator; listed and encoded in canonical byte order), non-ASCII UTF-8, an empty value, 1000-byte plaintext, local KEK.",
            context: EncryptionContext::new()
                .with("tenant", "zürich-ß")
                .and_then(|c| c.with("namespace", "orders-eu"))
                .and_then(|c| c.with("a", ""))
                .unwrap(),
            plaintext: (0..1000u32).map(|i| (i * 7 + 3) as u8).collect(),
            seed: seed + 3,
            foreign: None,
        },
        Case {
            suite,
            name: name("aws_kms_ref_without_version"),
            description: "A KEK reference with no version (as AWS KMS records it); the wrapped key is opaque bytes here, the data key is given.",
            context: EncryptionContext::new()
                .with("namespace", "billing")
                .unwrap(),
            plaintext: b"{\"amount\":42}".to_vec(),
            seed: seed + 4,
            foreign: Some((
                KekRef::new(
                    "aws-kms",
                    "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                )
                .unwrap(),
                pattern::<184>(40).to_vec(),
            )),
        },
        Case {
            suite,
            name: name("vault_transit_ref_with_version"),
            description: "A Transit KEK reference with a version; the wrapped key is a Transit ciphertext string; the data key is given.",
            context: EncryptionContext::new()
                .with("namespace", "default")
                .unwrap(),
            plaintext: vec![0u8; 64],
            seed: seed + 5,
            foreign: Some((
                KekRef::new("vault-transit", "transit/keys/sealbox")
                    .unwrap()
                    .with_version("3")
                    .unwrap(),
                b"vault:v3:c2VhbGJveCB2ZWN0b3Igd3JhcHBlZCBrZXkgZm9yIHRlc3Rz".to_vec(),
            )),
        },
    ]
}

/// The invalid vectors made by damaging `base` (a valid envelope under context
/// `namespace=payments` and data key `base_key`), named `prefix` + the damage.
fn invalid_vectors(prefix: &str, base: &[u8], base_key: &str) -> Vec<Value> {
    let base = base.to_vec();
    let parsed = parse(&base).unwrap();
    let ks = parsed.key_section.clone();
    let c_start = ks.end;
    let salt_at = c_start + parsed.header.context.encoded_len();
    let nonce_at = salt_at + 32;
    let commit_at = nonce_at + 12;
    let len_at = commit_at + 32;
    let body_at = len_at + 8;
    let flip = |at: usize| {
        let mut e = base.clone();
        e[at] ^= 0x01;
        e
    };
    let set = |at: usize, v: u8| {
        let mut e = base.clone();
        e[at] = v;
        e
    };
    let mut moved = Vec::new();
    let mut header = parsed.header.clone();
    header.context = EncryptionContext::new()
        .with("namespace", "payments-evil")
        .unwrap();
    header.encode_into(&mut moved);
    moved.extend_from_slice(parsed.body);
    let mut unsorted = base[..c_start].to_vec();
    // Two pairs, "b" before "a": not canonical.
    unsorted.extend_from_slice(&[0, 2, 0, 1, b'b', 0, 0, 0, 1, b'a', 0, 0]);
    unsorted.extend_from_slice(&base[salt_at..]);
    let mut ks_len = base.clone();
    ks_len[ks.start + 1] ^= 0x01;
    let mut small_len = base.clone();
    small_len[len_at..len_at + 8].copy_from_slice(&15u64.to_be_bytes());
    let mut trailing = base.clone();
    trailing.push(0);

    let ns = json!([["namespace", "payments"]]);
    let ns_evil = json!([["namespace", "payments-evil"]]);
    let wrong_key = hex::encode(pattern::<32>(999));
    let base_key = base_key.to_owned();
    let invalid = vec![
        (
            "fail_bad_magic",
            "First byte changed.",
            &base_key,
            &ns,
            set(0, b'X'),
            "format",
        ),
        (
            "fail_version_2",
            "Format version 2.",
            &base_key,
            &ns,
            set(4, 2),
            "format",
        ),
        (
            "fail_suite_0003",
            "Unknown suite 0x0003.",
            &base_key,
            &ns,
            set(6, 3),
            "format",
        ),
        (
            "fail_truncated_header",
            "Cut inside the salt.",
            &base_key,
            &ns,
            base[..salt_at + 5].to_vec(),
            "format",
        ),
        (
            "fail_truncated_body",
            "Last byte of the tag missing.",
            &base_key,
            &ns,
            base[..base.len() - 1].to_vec(),
            "format",
        ),
        (
            "fail_trailing_byte",
            "One byte after the body.",
            &base_key,
            &ns,
            trailing,
            "format",
        ),
        (
            "fail_key_section_length",
            "key_section_len off by one.",
            &base_key,
            &ns,
            ks_len,
            "format",
        ),
        (
            "fail_context_not_canonical",
            "Context keys unsorted.",
            &base_key,
            &ns,
            unsorted,
            "format",
        ),
        (
            "fail_body_length_below_tag",
            "body_len 15.",
            &base_key,
            &ns,
            small_len,
            "format",
        ),
        (
            "fail_salt_bit_flip",
            "One salt bit flipped.",
            &base_key,
            &ns,
            flip(salt_at),
            "commitment",
        ),
        (
            "fail_commitment_bit_flip",
            "One commitment bit flipped.",
            &base_key,
            &ns,
            flip(commit_at + 31),
            "commitment",
        ),
        (
            "fail_wrong_data_key",
            "Opened with another data key.",
            &wrong_key,
            &ns,
            base.clone(),
            "commitment",
        ),
        (
            "fail_nonce_bit_flip",
            "One nonce bit flipped.",
            &base_key,
            &ns,
            flip(nonce_at),
            "authentication",
        ),
        (
            "fail_ciphertext_bit_flip",
            "One ciphertext bit flipped.",
            &base_key,
            &ns,
            flip(body_at),
            "authentication",
        ),
        (
            "fail_tag_bit_flip",
            "One tag bit flipped.",
            &base_key,
            &ns,
            flip(base.len() - 1),
            "authentication",
        ),
        (
            "fail_context_rewritten",
            "Stored context rewritten to another namespace, opened as that namespace with the right data key.",
            &base_key,
            &ns_evil,
            moved,
            "authentication",
        ),
        (
            "fail_context_mismatch",
            "Opened under another namespace than the one sealed.",
            &base_key,
            &ns_evil,
            base.clone(),
            "context",
        ),
    ];
    invalid
        .into_iter()
        .map(|(name, description, key, ctx, env, error)| {
            json!({
                "name": format!("{prefix}{}", name.strip_prefix("fail_").unwrap_or(name)),
                "description": description,
                "data_key_hex": key,
                "context": ctx,
                "envelope_hex": hex::encode(env),
                "error": error,
            })
        })
        .collect()
}
