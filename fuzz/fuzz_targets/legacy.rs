//! The legacy-format readers (`crates/sealbox-temporal/src/legacy.rs`: Temporal samples'
//! static-key AES-GCM format and Temporal Proxy's KMS-wrapped-DEK format), driven through
//! the public API: `SealboxCodec::decode_payloads` with `LegacyFormats` configured.
//!
//! Input layout: byte 0 selects the case, the rest fills it.
//!
//! ```text
//! bits 0-1  0: samples payload under the configured key ID
//!           1: Proxy payload under the configured KEK URI (wrapped DEK from the input)
//!           2: encrypted payload under a key ID nobody configured (samples or Proxy)
//!           3: raw: metadata pairs and data entirely from the input
//! bit 2     seal: the rest is the *plaintext*; the target encrypts it with the right key
//!           (nonce from the input), so decryption succeeds and the protobuf decoder of
//!           the decrypted payload gets arbitrary bytes. Otherwise the rest is the data as
//!           stored (nonce ‖ ciphertext ‖ tag), exercising the length and tag checks.
//! bit 3     pass_through_foreign on
//! bit 4     require_encryption off
//! bit 5     Proxy: `encryption-dek` given raw (not base64) — usually invalid base64
//! bit 6     add `sealbox-format` = next length-prefixed field (a future Sealbox format)
//! bit 7     send the payload twice in one call
//! ```
//!
//! Invariants: decode never panics; a sealed legacy payload decodes to exactly
//! `Payload::decode(plaintext)` (or a `Malformed` error when that fails); a foreign payload
//! passed through comes back unchanged; every call returns one payload per input or an error.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::future::BoxFuture;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sealbox_core::{DataKey, ProviderError, ProviderErrorKind};
use sealbox_temporal::{CodecError, LegacyFormats, Payload, ProxyKek, SealboxCodec};
use secrecy::SecretBox;
use sha2::{Digest, Sha256};

const SAMPLES_KEY_ID: &str = "test-key-id";
const SAMPLES_KEY: [u8; 32] = [0x42; 32];
const PROXY_KEK_URI: &str =
    "awskms:///arn:aws:kms:us-east-1:000000000000:key/fuzz?region=us-east-1";

/// A stand-in KMS: the data key is SHA-256("fuzz-proxy-kek" ‖ wrapped); an empty wrapped key
/// or one starting with 0xff is refused (the KMS error path).
#[derive(Debug)]
struct StubProxyKek;

fn proxy_data_key(wrapped: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fuzz-proxy-kek");
    h.update(wrapped);
    h.finalize().into()
}

impl ProxyKek for StubProxyKek {
    fn decrypt_data_key<'a>(
        &'a self,
        encrypted_dek: &'a [u8],
    ) -> BoxFuture<'a, Result<DataKey, ProviderError>> {
        Box::pin(async move {
            if encrypted_dek.first().is_none_or(|&b| b == 0xff) {
                return Err(ProviderError::new(
                    "aws-kms",
                    PROXY_KEK_URI,
                    ProviderErrorKind::InvalidWrappedKey,
                    "stub KMS refuses this key",
                ));
            }
            DataKey::try_from_slice(&proxy_data_key(encrypted_dek)).map_err(|e| {
                ProviderError::new(
                    "aws-kms",
                    PROXY_KEK_URI,
                    ProviderErrorKind::Protocol,
                    e.to_string(),
                )
            })
        })
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    /// Indexed by (pass_through_foreign, require_encryption off) bits.
    codecs: Vec<SealboxCodec>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = sealbox_fuzz::runtime();
        let (_, keyring) = sealbox_fuzz::local_keyring("new", &B64.encode([1u8; 32]));
        let legacy = LegacyFormats::new()
            .samples_key(SAMPLES_KEY_ID, SecretBox::new(Box::new(SAMPLES_KEY)))
            .proxy_kek(PROXY_KEK_URI, Arc::new(StubProxyKek));
        let codecs = (0..4)
            .map(|bits| {
                SealboxCodec::builder(keyring.clone(), "migrating")
                    .legacy(legacy.clone())
                    .pass_through_foreign(bits & 1 != 0)
                    .require_encryption(bits & 2 == 0)
                    .build()
                    .expect("codec")
            })
            .collect();
        Fixture { rt, codecs }
    })
}

/// A cursor over the fuzz input.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    /// A field of up to 255 bytes, length first.
    fn field(&mut self) -> &'a [u8] {
        let n = self.byte() as usize;
        self.take(n)
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

fn seal_gcm(key: &[u8; 32], nonce: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut n = [0u8; 12];
    n[..nonce.len()].copy_from_slice(nonce);
    let mut buf = plaintext.to_vec();
    let tag = Aes256Gcm::new(&(*key).into())
        .encrypt_inout_detached(&Nonce::from(n), &[], buf.as_mut_slice().into())
        .expect("encrypt");
    let mut out = n.to_vec();
    out.extend_from_slice(&buf);
    out.extend_from_slice(&tag);
    out
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut input = Input(data);
    let sel = input.byte();
    let seal = sel & 0x04 != 0;
    let codec = &f.codecs[((sel >> 3) & 3) as usize];
    let pass_through = sel & 0x08 != 0;

    let mut metadata: HashMap<String, Vec<u8>> = HashMap::new();
    let mut plaintext: Option<&[u8]> = None;
    let mut key: Option<[u8; 32]> = None;
    let mut foreign = false;
    match sel & 3 {
        0 => {
            metadata.insert("encoding".into(), b"binary/encrypted".to_vec());
            metadata.insert("encryption-key-id".into(), SAMPLES_KEY_ID.into());
            key = Some(SAMPLES_KEY);
        }
        1 => {
            metadata.insert("encoding".into(), b"binary/encrypted".to_vec());
            metadata.insert("encryption-key-id".into(), PROXY_KEK_URI.into());
            let wrapped = input.field();
            if sel & 0x20 != 0 {
                metadata.insert("encryption-dek".into(), wrapped.to_vec());
                key = B64
                    .decode(wrapped)
                    .ok()
                    .filter(|w| w.first().is_some_and(|&b| b != 0xff))
                    .map(|w| proxy_data_key(&w));
            } else {
                metadata.insert("encryption-dek".into(), B64.encode(wrapped).into_bytes());
                key = wrapped
                    .first()
                    .is_some_and(|&b| b != 0xff)
                    .then(|| proxy_data_key(wrapped));
            }
        }
        2 => {
            metadata.insert("encoding".into(), b"binary/encrypted".to_vec());
            let id = input.field();
            metadata.insert("encryption-key-id".into(), id.to_vec());
            if id.first().is_some_and(|b| b & 1 != 0) {
                metadata.insert("encryption-dek".into(), input.field().to_vec());
            }
            foreign = id != SAMPLES_KEY_ID.as_bytes() && id != PROXY_KEK_URI.as_bytes();
        }
        _ => {
            let pairs = input.byte() % 8;
            for _ in 0..pairs {
                let k = String::from_utf8_lossy(input.field()).into_owned();
                metadata.insert(k, input.field().to_vec());
            }
        }
    }
    if sel & 0x40 != 0 {
        metadata.insert("sealbox-format".into(), input.field().to_vec());
    }
    let payload_data = match (seal, key) {
        (true, Some(key)) if sel & 0x40 == 0 && sel & 3 != 3 => {
            let nonce = input.take(12);
            let pt = input.rest();
            plaintext = Some(pt);
            seal_gcm(&key, nonce, pt)
        }
        _ => input.rest().to_vec(),
    };
    let payload = Payload {
        metadata,
        data: payload_data,
        external_payloads: Vec::new(),
    };
    let payloads = if sel & 0x80 != 0 {
        vec![payload.clone(), payload.clone()]
    } else {
        vec![payload.clone()]
    };
    let n = payloads.len();
    let result = f.rt.block_on(codec.decode_payloads(payloads));
    if let Ok(out) = &result {
        assert_eq!(out.len(), n, "one payload out per payload in");
    }
    if let Some(pt) = plaintext {
        match (Payload::decode(pt), &result) {
            (Ok(expected), Ok(out)) => assert!(out.iter().all(|p| *p == expected)),
            (Ok(_), Err(e)) => panic!("sealed legacy payload did not decode: {e}"),
            (Err(_), Err(CodecError::Malformed { .. })) => {}
            (Err(_), other) => panic!("undecodable plaintext gave {other:?}"),
        }
    }
    if foreign && sel & 0x40 == 0 {
        if pass_through {
            let out = result.expect("foreign payloads pass through");
            assert!(out.iter().all(|p| *p == payload));
        } else {
            assert!(matches!(result, Err(CodecError::Unsupported { .. })));
        }
    }
});
