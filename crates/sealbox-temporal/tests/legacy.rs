//! Reading payloads written by Temporal's encryption samples and by Temporal Proxy, produced
//! by an independent implementation (`tests/legacy/make_payloads.py`: Temporal's Python
//! protobuf classes, the `cryptography` package, boto3 against moto's KMS).

use std::process::Command;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::config::Credentials;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message;
use sealbox_aws::{AwsKms, AwsKmsConfig};
use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;
use sealbox_temporal::{CodecError, LegacyFormats, Payload, SealboxCodec};
use sealbox_testkit::servers::{Moto, find_tool, json_stdout, workspace_root};
use secrecy::SecretBox;

const SAMPLES_KEY: [u8; 32] = [0x42; 32];

/// What the independent writer produced, with the KMS its Proxy payloads' keys are wrapped
/// by.
struct Legacy {
    _moto: Moto,
    kms: Arc<AwsKms>,
    /// Temporal samples payloads, with their original encoding and data.
    samples: Vec<(Payload, String, String)>,
    /// Temporal Proxy payloads, likewise.
    proxy: Vec<(Payload, String, String)>,
    /// The KEK URI Proxy names its KMS key by.
    kek_uri: String,
}

impl Legacy {
    /// The legacy formats configured right: the samples key and the Proxy KEK.
    fn formats(&self) -> LegacyFormats {
        LegacyFormats::new()
            .samples_key("test-key-id", SecretBox::new(Box::new(SAMPLES_KEY)))
            .proxy_kek(self.kek_uri.clone(), self.kms.clone())
    }
}

async fn generate() -> Legacy {
    let moto = Moto::start();
    let python = find_tool(
        "python",
        "python3 -m venv .tools/venv (scripts/setup-tools.sh)",
    );
    let script = workspace_root().join("crates/sealbox-temporal/tests/legacy/make_payloads.py");
    let run = Command::new(&python)
        .arg(&script)
        .arg(B64.encode(SAMPLES_KEY))
        .arg(&moto.endpoint)
        .output()
        .expect("run make_payloads.py");
    let out = json_stdout(
        "make_payloads.py failed (install its packages with scripts/setup-tools.sh)",
        &run,
    );
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "t"))
        .endpoint_url(&moto.endpoint)
        .load()
        .await;
    let arn = out["key_arn"].as_str().expect("arn");
    let kms = Arc::new(
        AwsKms::connect_with(&sdk, AwsKmsConfig::new(arn))
            .await
            .expect("kms"),
    );
    Legacy {
        _moto: moto,
        kms,
        samples: items(&out["samples"]),
        proxy: items(&out["proxy"]),
        kek_uri: out["kek_uri"].as_str().expect("uri").to_owned(),
    }
}

fn items(v: &serde_json::Value) -> Vec<(Payload, String, String)> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|i| {
            let outer = B64
                .decode(i["outer"].as_str().expect("outer"))
                .expect("b64");
            (
                Payload::decode(outer.as_slice()).expect("Python wrote a Temporal Payload"),
                i["encoding"].as_str().expect("encoding").to_owned(),
                i["data"].as_str().expect("data").to_owned(),
            )
        })
        .collect()
}

fn codec(legacy: LegacyFormats) -> SealboxCodec {
    let kek = LocalKek::from_base64("new", &B64.encode([1u8; 32])).expect("kek");
    let keyring = Keyring::builder(Arc::new(kek)).build().expect("keyring");
    SealboxCodec::builder(keyring, "migrating")
        .legacy(legacy)
        .build()
        .expect("codec")
}

fn check(decoded: &[Payload], expected: &[(Payload, String, String)]) {
    assert_eq!(decoded.len(), expected.len());
    for (d, (_, encoding, data)) in decoded.iter().zip(expected) {
        assert_eq!(
            d.metadata.get("encoding"),
            Some(&encoding.as_bytes().to_vec())
        );
        assert_eq!(d.data, data.as_bytes());
    }
}

#[tokio::test]
async fn reads_samples_and_proxy_payloads_from_an_independent_writer() {
    let l = generate().await;
    let (samples, proxy) = (&l.samples, &l.proxy);
    let codec = codec(l.formats());

    let all: Vec<Payload> = samples
        .iter()
        .chain(proxy)
        .map(|(p, _, _)| p.clone())
        .collect();
    let decoded = codec.decode_payloads(all).await.expect("decode legacy");
    check(&decoded[..2], samples);
    check(&decoded[2..], proxy);
    assert_eq!(codec.stats().legacy_decoded, 4);

    // Migration: what we read back, we write in our own format.
    let resealed = codec
        .encode_payloads(decoded.clone())
        .await
        .expect("reseal");
    assert!(
        resealed
            .iter()
            .all(|p| p.metadata.contains_key("sealbox-format"))
    );
    assert_eq!(
        codec.decode_payloads(resealed).await.expect("open"),
        decoded
    );
}

#[tokio::test]
async fn wrong_key_tampering_and_unknown_keys_are_errors() {
    let l = generate().await;
    let (samples, proxy) = (&l.samples, &l.proxy);

    // Wrong static key.
    let wrong = codec(
        LegacyFormats::new().samples_key("test-key-id", SecretBox::new(Box::new([0x43; 32]))),
    );
    let err = wrong
        .decode_payloads(vec![samples[0].0.clone()])
        .await
        .expect_err("wrong key");
    assert!(matches!(err, CodecError::Legacy { .. }), "{err}");
    assert!(err.to_string().contains("authentication failed"), "{err}");

    // Right key, one flipped ciphertext bit.
    let right = codec(l.formats());
    let mut tampered = samples[1].0.clone();
    tampered.data[20] ^= 0x80;
    assert!(right.decode_payloads(vec![tampered]).await.is_err());
    let mut tampered = proxy[0].0.clone();
    tampered.data[20] ^= 0x80;
    assert!(right.decode_payloads(vec![tampered]).await.is_err());

    // A wrapped DEK the KMS refuses.
    let mut bad_dek = proxy[0].0.clone();
    bad_dek.metadata.insert(
        "encryption-dek".into(),
        B64.encode(b"not a KMS ciphertext").into_bytes(),
    );
    let err = right
        .decode_payloads(vec![bad_dek])
        .await
        .expect_err("kms refuses");
    assert!(err.to_string().contains("KMS refused"), "{err}");

    // Nothing configured for them: named, not guessed.
    let none = codec(LegacyFormats::new());
    let err = none
        .decode_payloads(vec![proxy[0].0.clone()])
        .await
        .expect_err("no proxy kek");
    assert!(err.to_string().contains(&l.kek_uri), "{err}");
    let err = none
        .decode_payloads(vec![samples[0].0.clone()])
        .await
        .expect_err("no samples key");
    assert!(err.to_string().contains("test-key-id"), "{err}");
}
