//! External storage: large payloads sealed, stored in a real store (a local directory,
//! memory, S3 on moto) and replaced by Temporal's standard reference; and every way a
//! reference from the outside can be wrong.

use std::collections::HashMap;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use prost::Message;
use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;
use sealbox_temporal::storage::{
    ExternalStorageReference, ObjectStoreDriver, S3_DRIVER, StorageCodec, StorageDriver,
    StorageError, Threshold,
};
use sealbox_temporal::{CodecError, Payload, SealboxCodec};

fn payload(data: &[u8]) -> Payload {
    Payload {
        metadata: HashMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
        data: data.to_vec(),
        external_payloads: vec![],
    }
}

fn keyring() -> Keyring {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let kek = LocalKek::from_base64("storage-test", &key).expect("kek");
    Keyring::builder(Arc::new(kek)).build().expect("keyring")
}

fn codec(keyring: &Keyring, namespace: &str, driver: Arc<dyn StorageDriver>) -> StorageCodec {
    let sealbox = SealboxCodec::builder(keyring.clone(), namespace)
        .max_payload_bytes(64 * 1024 * 1024)
        .build()
        .expect("codec");
    StorageCodec::new(sealbox, driver)
}

/// 3 MB of JSON-ish text: over Temporal's 2 MB limit, and easy to find if it leaked.
fn big() -> Vec<u8> {
    let mut v = b"\"".to_vec();
    v.extend(std::iter::repeat_n(b"SECRET-CARD-4111 ".as_slice(), 3 * 1024 * 1024 / 17).flatten());
    v.push(b'"');
    v
}

async fn objects(store: &dyn ObjectStore) -> Vec<(String, Vec<u8>)> {
    use futures::TryStreamExt;
    let metas: Vec<_> = store.list(None).try_collect().await.expect("list");
    let mut out = Vec::new();
    for m in metas {
        let bytes = store
            .get(&m.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        out.push((m.location.to_string(), bytes.to_vec()));
    }
    out
}

/// The round trip every store must pass: a small payload stays inline (sealed), a big one
/// becomes a reference; the store holds only the sealed payload; decoding gives both back.
async fn round_trip(store: Arc<dyn ObjectStore>, driver: ObjectStoreDriver) {
    let keyring = keyring();
    let driver: Arc<dyn StorageDriver> = Arc::new(driver);
    let codec = codec(&keyring, "payments", driver.clone());
    let small = payload(b"{\"amount\":12}");
    let large = payload(&big());
    let encoded = codec
        .encode_payloads(vec![small.clone(), large.clone()])
        .await
        .expect("encode");
    assert!(sealbox_temporal::sealbox_envelope(&encoded[0]).is_some());
    let reference = ExternalStorageReference::from_payload(&encoded[1])
        .expect("a reference")
        .expect("parses");
    assert!(
        encoded[1].encoded_len() < 1024,
        "the reference holds no payload data"
    );
    assert_eq!(reference.claim_data["hash_algorithm"], "sha256");
    assert!(reference.claim_data["key"].starts_with("v0/ns/payments/d/sha256/"));
    let stored = objects(store.as_ref()).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        encoded[1].external_payloads[0].size_bytes,
        stored[0].1.len() as i64
    );
    let object = Payload::decode(stored[0].1.as_slice()).expect("a protobuf Payload");
    assert!(
        sealbox_temporal::sealbox_envelope(&object).is_some(),
        "stored sealed"
    );
    assert!(
        !stored[0].1.windows(16).any(|w| w == b"SECRET-CARD-4111"),
        "plaintext in the store"
    );
    // Preserving references (the Web UI's /decode) returns the reference untouched.
    let preserved = codec
        .decode_payloads(encoded.clone(), true)
        .await
        .expect("decode, references preserved");
    assert_eq!(preserved[0].data, small.data);
    assert_eq!(preserved[1], encoded[1]);
    let decoded = codec
        .decode_payloads(encoded.clone(), false)
        .await
        .expect("decode");
    assert_eq!(decoded, vec![small.clone(), large.clone()]);
    // Storing the same payload again (a retried activity) writes nothing new: objects are
    // content-addressed and stored only if absent. (A decoded and re-encoded payload may
    // serialize its metadata map in another order: a new object.) Sealing again is a new
    // envelope, so a new object too.
    let context = sealbox_temporal::storage::StorageContext {
        namespace: "payments".into(),
    };
    let first = driver
        .store(&context, std::slice::from_ref(&object))
        .await
        .expect("store");
    let count = objects(store.as_ref()).await.len();
    let again = driver
        .store(&context, &[object])
        .await
        .expect("store again");
    assert_eq!(again, first);
    assert_eq!(objects(store.as_ref()).await.len(), count);
    codec
        .encode_payloads(vec![large])
        .await
        .expect("seal again");
    assert_eq!(objects(store.as_ref()).await.len(), count + 1);
    // /download: references only.
    let err = codec
        .download(vec![small])
        .await
        .expect_err("not a reference");
    assert!(
        matches!(err, CodecError::NotAReference { index: 0 }),
        "{err}"
    );
    let downloaded = codec
        .download(vec![encoded[1].clone()])
        .await
        .expect("download");
    assert_eq!(downloaded[0].data, big());
}

#[tokio::test]
async fn a_local_directory_store_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
    let driver = ObjectStoreDriver::new(
        sealbox_temporal::storage::FILE_DRIVER,
        "local",
        store.clone(),
    );
    round_trip(store, driver).await;
}

#[tokio::test]
async fn an_s3_store_on_moto_round_trips() {
    let moto = sealbox_testkit::servers::Moto::start();
    moto.create_bucket("payloads");
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("payloads")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .expect("s3");
    let store: Arc<dyn ObjectStore> = Arc::new(s3);
    let driver = ObjectStoreDriver::new(S3_DRIVER, "payloads", store.clone());
    round_trip(store, driver).await;
}

/// Stores one big payload in `namespace`; returns the codec, the store and the reference.
async fn stored(namespace: &str) -> (StorageCodec, Arc<InMemory>, Payload, Keyring) {
    let keyring = keyring();
    let store = Arc::new(InMemory::new());
    let driver =
        ObjectStoreDriver::new(S3_DRIVER, "bucket", store.clone()).max_size(8 * 1024 * 1024);
    let codec = codec(&keyring, namespace, Arc::new(driver)).threshold(Threshold::Always);
    let encoded = codec
        .encode_payloads(vec![payload(b"{\"a\":1}")])
        .await
        .expect("encode");
    (
        codec,
        store,
        encoded.into_iter().next().expect("one"),
        keyring,
    )
}

fn with_claim(reference: &Payload, key: &str, value: &str) -> Payload {
    let mut r = ExternalStorageReference::from_payload(reference)
        .expect("reference")
        .expect("parses");
    r.claim_data.insert(key.to_owned(), value.to_owned());
    r.to_payload(100)
}

fn storage_error(e: CodecError) -> StorageError {
    match e {
        CodecError::Storage { source, .. } => source,
        other => panic!("expected a storage error, got {other}"),
    }
}

/// The storage error with which `codec` refuses to download `reference` (`case` names it).
async fn refused(codec: &StorageCodec, reference: Payload, case: &str) -> StorageError {
    storage_error(codec.download(vec![reference]).await.expect_err(case))
}

/// Writes `bytes` at `key` behind the codec's back.
async fn put(store: &InMemory, key: &str, bytes: Vec<u8>) {
    store
        .put(&ObjectPath::from(key), PutPayload::from(bytes))
        .await
        .expect("put");
}

/// `reference` pointed at the object `key` whose SHA-256 is `hash`.
fn pointing_at(reference: &Payload, key: &str, hash: &str) -> Payload {
    with_claim(&with_claim(reference, "key", key), "hash_value", hash)
}

#[tokio::test]
async fn bad_references_are_refused_with_errors_naming_them() {
    let (codec, store, reference, keyring) = stored("payments").await;
    let r = ExternalStorageReference::from_payload(&reference)
        .expect("reference")
        .expect("parses");
    let key = r.claim_data["key"].clone();

    // Another bucket.
    let e = refused(&codec, with_claim(&reference, "bucket", "other"), "bucket").await;
    assert!(matches!(e, StorageError::ForeignBucket { .. }), "{e}");
    // Another namespace's key prefix.
    let foreign = key.replace("v0/ns/payments/", "v0/ns/billing/");
    let e = refused(&codec, with_claim(&reference, "key", &foreign), "ns").await;
    assert!(matches!(e, StorageError::WrongNamespace { .. }), "{e}");
    assert!(e.to_string().contains(&foreign));
    // A missing object.
    let missing = key.replace(&r.claim_data["hash_value"], &"0".repeat(64));
    let e = refused(&codec, with_claim(&reference, "key", &missing), "missing").await;
    assert!(matches!(e, StorageError::NotFound { .. }), "{e}");
    // Path tricks and bad hashes.
    for (claim, value) in [
        ("key", "v0/../secrets"),
        ("key", "other/key"),
        ("hash_value", "ABC"),
        ("hash_algorithm", "md5"),
    ] {
        let e = storage_error(
            codec
                .download(vec![with_claim(&reference, claim, value)])
                .await
                .expect_err(value),
        );
        assert!(
            matches!(e, StorageError::Invalid(_)),
            "{claim}={value}: {e}"
        );
    }
    // A tampered object: its hash no longer matches the claim.
    let path = ObjectPath::from(key.as_str());
    let mut bytes = store
        .get(&path)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .expect("tamper");
    let e = refused(&codec, reference.clone(), "tampered").await;
    assert!(matches!(e, StorageError::HashMismatch { .. }), "{e}");

    // A plaintext object under a correct hash: not an envelope, refused.
    let plain = payload(b"\"not sealed\"").encode_to_vec();
    let hex = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&plain));
    let plain_key = format!("v0/ns/payments/d/sha256/{hex}");
    put(&store, &plain_key, plain).await;
    let forged = pointing_at(&reference, &plain_key, &hex);
    let e = refused(&codec, forged, "plaintext").await;
    assert!(e.to_string().contains("not a Sealbox envelope"), "{e}");

    // An oversized object is refused before it is read.
    let big = vec![0u8; 9 * 1024 * 1024];
    let hex = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&big));
    let big_key = format!("v0/ns/payments/d/sha256/{hex}");
    put(&store, &big_key, big).await;
    let huge = pointing_at(&reference, &big_key, &hex);
    let e = refused(&codec, huge, "too large").await;
    assert!(matches!(e, StorageError::TooLarge { .. }), "{e}");

    // A reference copied into another namespace opens nowhere, even with a key that names
    // no namespace: the envelope is bound to `payments`.
    let (other, other_store, other_ref, _) = stored("billing").await;
    drop(other);
    let r2 = ExternalStorageReference::from_payload(&other_ref)
        .expect("r")
        .expect("p");
    let object = other_store
        .get(&ObjectPath::from(r2.claim_data["key"].as_str()))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let neutral_key = format!("v0/d/sha256/{}", r2.claim_data["hash_value"]);
    put(&store, &neutral_key, object.to_vec()).await;
    let copied = pointing_at(&reference, &neutral_key, &r2.claim_data["hash_value"]);
    let e = codec
        .download(vec![copied])
        .await
        .expect_err("other namespace's envelope");
    assert!(matches!(e, CodecError::Envelope { .. }), "{e}");
    drop(keyring);
}

#[tokio::test]
async fn codec_encoded_references_are_opened_then_resolved() {
    let (codec, _store, reference, keyring) = stored("payments").await;
    // An SDK that runs the codec over the reference marks it; decode opens it first.
    let sealbox = SealboxCodec::builder(keyring, "payments")
        .build()
        .expect("codec");
    let mut marked = sealbox
        .encode_payloads(vec![reference])
        .await
        .expect("seal the reference");
    marked[0].metadata.insert(
        "__temporal_external_storage_reference".into(),
        b"true".to_vec(),
    );
    let decoded = codec
        .decode_payloads(marked.clone(), false)
        .await
        .expect("decode");
    assert_eq!(decoded[0].data, b"{\"a\":1}");
    // Preserving references turns it into the plain reference the Web UI understands.
    let preserved = codec.decode_payloads(marked, true).await.expect("preserve");
    assert!(sealbox_temporal::storage::is_plain_reference(&preserved[0]));
}

/// Keys are used exactly as written: an official driver's key, whose segments it
/// percent-encoded (`run%3A1`), names that very object, not a re-encoded `run%253A1`. A
/// driver with a prefix writes and reads under it, and refuses keys outside it.
#[tokio::test]
async fn official_driver_keys_are_read_verbatim_and_prefixes_hold() {
    use sha2::Digest;
    let keyring = keyring();
    let store = Arc::new(InMemory::new());
    let plain = ObjectStoreDriver::new(S3_DRIVER, "bucket", store.clone());
    let official = codec(&keyring, "payments", Arc::new(plain));
    // What the Python SDK's S3 driver writes for a workflow ID `run:1` (type `Echo`).
    let sealed = official
        .encode_payloads(vec![payload(b"\"from another SDK\"")])
        .await
        .expect("seal")
        .remove(0);
    let bytes = sealed.encode_to_vec();
    let hex = hex::encode(sha2::Sha256::digest(&bytes));
    let key = format!("v0/ns/payments/wt/Echo/wi/run%3A1/ri/null/d/sha256/{hex}");
    store
        .put(
            &ObjectPath::parse(&key).expect("key"),
            PutPayload::from(bytes.clone()),
        )
        .await
        .expect("put");
    let reference = ExternalStorageReference {
        driver_name: S3_DRIVER.into(),
        claim_data: [
            ("bucket", "bucket"),
            ("key", key.as_str()),
            ("hash_algorithm", "sha256"),
            ("hash_value", hex.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    }
    .to_payload(bytes.len());
    let opened = official
        .decode_payloads(vec![reference.clone()], false)
        .await
        .expect("an official driver's key resolves");
    assert_eq!(opened[0].data, b"\"from another SDK\"");
    let listed: Vec<String> = objects(store.as_ref())
        .await
        .into_iter()
        .map(|o| o.0)
        .collect();
    assert_eq!(listed, vec![key.clone()], "stored and read under one key");

    // Under a prefix: written as `tenant-a/v0/…`, read back; root keys are refused.
    let prefixed = ObjectStoreDriver::new(S3_DRIVER, "bucket", store.clone()).prefix("tenant-a/");
    let under = codec(&keyring, "payments", Arc::new(prefixed));
    let encoded = under
        .encode_payloads(vec![payload(&big())])
        .await
        .expect("encode");
    let r = ExternalStorageReference::from_payload(&encoded[0])
        .expect("reference")
        .expect("parses");
    assert!(
        r.claim_data["key"].starts_with("tenant-a/v0/ns/payments/d/sha256/"),
        "{:?}",
        r.claim_data
    );
    let back = under
        .decode_payloads(encoded, false)
        .await
        .expect("prefixed keys resolve");
    assert_eq!(back[0].data, big());
    let e = storage_error(
        under
            .decode_payloads(vec![reference], false)
            .await
            .expect_err("outside the prefix"),
    );
    assert!(matches!(e, StorageError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("tenant-a/v0/"), "{e}");
}
