//! Known-answer vectors for envelope format v1, suites 0x0001 and 0x0002
//! (`tests/vectors/v1.json`): this build must
//! reproduce every valid envelope byte for byte, open it, and reject every invalid one with
//! the named class of error. The same file is checked by `tests/vectors/verify.py`, an
//! independent implementation written from `docs/format.md`.

use std::sync::Arc;

use sealbox_core::crypto::{derive_for_vectors, open_envelope, seal_with_fixed_randomness};
use sealbox_core::{
    DataKey, EncryptionContext, Error, KekRef, KeyProvider, Suite, WrappedKey, inspect,
};
use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    local_kek: LocalKekSpec,
    valid: Vec<Valid>,
    invalid: Vec<Invalid>,
}

#[derive(Deserialize)]
struct LocalKekSpec {
    key_id: String,
    key_base64: String,
    version: String,
}

#[derive(Deserialize)]
struct KekSpec {
    provider: String,
    key_id: String,
    key_version: Option<String>,
}

#[derive(Deserialize)]
struct Valid {
    name: String,
    suite: u16,
    data_key_hex: String,
    context: Vec<(String, String)>,
    plaintext_hex: String,
    salt_hex: String,
    nonce_hex: String,
    kek: KekSpec,
    wrapped_key_hex: String,
    local_kek_wrapped: bool,
    payload_key_hex: String,
    commitment_hex: String,
    envelope_hex: String,
}

#[derive(Deserialize)]
struct Invalid {
    name: String,
    data_key_hex: String,
    context: Vec<(String, String)>,
    envelope_hex: String,
    error: String,
}

fn load() -> File {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/v1.json");
    let text = std::fs::read_to_string(path).expect("tests/vectors/v1.json");
    serde_json::from_str(&text).expect("vector file parses")
}

fn bytes(h: &str) -> Vec<u8> {
    hex::decode(h).expect("hex")
}

fn array<const N: usize>(h: &str) -> [u8; N] {
    bytes(h).try_into().expect("length")
}

fn context(pairs: &[(String, String)]) -> EncryptionContext {
    EncryptionContext::try_from(pairs.to_vec()).expect("valid context")
}

#[test]
fn the_vector_file_covers_every_failure_class() {
    let file = load();
    for suite in Suite::ALL {
        let valid = file.valid.iter().filter(|v| v.suite == suite.id()).count();
        assert!(valid >= 4, "{valid} valid vectors of suite {suite}");
    }
    for class in ["format", "context", "commitment", "authentication"] {
        assert!(
            file.invalid.iter().any(|v| v.error == class),
            "no `{class}` vector"
        );
    }
    // Each suite's envelopes get every class of damage (the suite 0x0002 vectors are named
    // `fail_s0002_*`), and a relabelled suite is refused at the commitment.
    let s2 = |class: &str| {
        file.invalid
            .iter()
            .any(|v| v.name.starts_with("fail_s0002_") && v.error == class)
    };
    assert!(
        ["format", "context", "commitment", "authentication"]
            .iter()
            .all(|c| s2(c))
    );
    assert!(
        file.invalid
            .iter()
            .filter(|v| v.name.contains("relabelled"))
            .all(|v| v.error == "commitment")
    );
}

#[test]
fn valid_vectors_reproduce_byte_for_byte_and_open() {
    for v in load().valid {
        let data_key = DataKey::try_from_slice(&bytes(&v.data_key_hex)).expect("key");
        let ctx = context(&v.context);
        let mut kek = KekRef::new(&v.kek.provider, &v.kek.key_id).expect("kek ref");
        if let Some(version) = &v.kek.key_version {
            kek = kek.with_version(version).expect("version");
        }
        let wrapped = WrappedKey::new(kek, bytes(&v.wrapped_key_hex)).expect("wrapped");
        let plaintext = bytes(&v.plaintext_hex);
        let salt = array::<32>(&v.salt_hex);
        let envelope = bytes(&v.envelope_hex);

        let suite = Suite::from_id(v.suite).expect("a suite this build implements");
        let (payload_key, commitment) = derive_for_vectors(&data_key, suite, &salt);
        assert_eq!(
            hex::encode(payload_key),
            v.payload_key_hex,
            "{}: payload key",
            v.name
        );
        assert_eq!(
            hex::encode(commitment),
            v.commitment_hex,
            "{}: commitment",
            v.name
        );

        let resealed = seal_with_fixed_randomness(
            suite,
            &data_key,
            &wrapped,
            &ctx,
            &plaintext,
            salt,
            array(&v.nonce_hex),
        )
        .expect("seal");
        assert_eq!(
            hex::encode(&resealed),
            v.envelope_hex,
            "{}: envelope bytes",
            v.name
        );

        let header = inspect(&envelope).expect("header");
        assert_eq!(header.suite, suite, "{}", v.name);
        assert_eq!(header.wrapped_key, wrapped, "{}", v.name);
        assert_eq!(header.context, ctx, "{}", v.name);
        assert_eq!(
            open_envelope(&data_key, &envelope, &ctx).expect("open"),
            plaintext,
            "{}",
            v.name
        );
    }
}

#[tokio::test]
async fn local_kek_vectors_open_through_the_key_ring() {
    let file = load();
    let kek = Arc::new(
        LocalKek::from_base64(&file.local_kek.key_id, &file.local_kek.key_base64).expect("kek"),
    );
    assert_eq!(kek.versions(), vec![file.local_kek.version.clone()]);
    let keyring = Keyring::builder(kek.clone()).build().expect("keyring");
    let mut local = 0;
    for v in file.valid.iter().filter(|v| v.local_kek_wrapped) {
        local += 1;
        let ctx = context(&v.context);
        let header = inspect(&bytes(&v.envelope_hex)).expect("header");
        let unwrapped = kek.unwrap(&header.wrapped_key, &ctx).await.expect("unwrap");
        assert_eq!(
            hex::encode(unwrapped.expose_secret()),
            v.data_key_hex,
            "{}",
            v.name
        );
        let opened = keyring
            .open(&ctx, &bytes(&v.envelope_hex))
            .await
            .expect("open");
        assert_eq!(hex::encode(opened), v.plaintext_hex, "{}", v.name);
    }
    assert!(local >= 3);
}

#[test]
fn invalid_vectors_fail_with_the_named_class() {
    for v in load().invalid {
        let data_key = DataKey::try_from_slice(&bytes(&v.data_key_hex)).expect("key");
        let err = open_envelope(&data_key, &bytes(&v.envelope_hex), &context(&v.context))
            .expect_err(&format!("{} must fail", v.name));
        let class = match err {
            Error::Format(_) => "format",
            Error::ContextMismatch(_) => "context",
            Error::CommitmentMismatch => "commitment",
            Error::Authentication => "authentication",
            ref other => panic!("{}: unexpected error {other:?}", v.name),
        };
        assert_eq!(class, v.error, "{}: {err}", v.name);
    }
}
