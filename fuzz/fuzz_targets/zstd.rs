//! The bounded zstd decompressor (`crates/sealbox-temporal/src/zstd_codec.rs`), reached two
//! ways with the same limits (64 KiB per payload, 96 KiB per call: small, so a decompression bomb costs
//! little time, and two copies of a payload near the limit cross the budget):
//!
//! 1. `ZstdCodec::decode_payloads` on a `binary/zstd` payload whose data is the fuzz input;
//! 2. `SealboxCodec::decode_payloads` on the same `binary/zstd` payload sealed in an envelope
//!    under a fixed local KEK (the way the codec's own compression stores it), so the
//!    fuzzer gets past the envelope and reaches the decompression inside the codec.
//!
//! Byte 0 selects: bit 0 omits the `sealbox-format` marker (the decoders must refuse or
//! skip the payload, not decompress it); bit 1 sends the payload twice in one call (the
//! per-call budget); bit 2 also round-trips the input through `ZstdCodec::encode_payloads`
//! (level 1, no size threshold) and back; bit 3 skips way 2 (the sealed path costs a seal, an
//! open and a thread hop per run, so the fuzzer may spend some runs on the decoder alone).
//! The rest is the zstd frame.
//!
//! Invariants: no panic; both ways agree (same payloads, or the same kind of error); nothing
//! larger than the limit comes out; compress → decompress is the identity.
#![no_main]

use std::collections::HashMap;
use std::mem::discriminant;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sealbox_core::EncryptionContext;
use sealbox_keyring::Keyring;
use sealbox_temporal::{CodecError, Payload, SealboxCodec, ZstdCodec, ZstdOptions};

const MAX_DECOMPRESSED: usize = 64 << 10;
const CALL_BUDGET: usize = 96 << 10;

struct Fixture {
    rt: tokio::runtime::Runtime,
    keyring: Keyring,
    context: EncryptionContext,
    sealbox: SealboxCodec,
    zstd: ZstdCodec,
    compressor: ZstdCodec,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = sealbox_fuzz::runtime();
        let (_, keyring) = sealbox_fuzz::local_keyring("fuzz", &B64.encode([7u8; 32]));
        let sealbox = SealboxCodec::builder(keyring.clone(), "fuzz")
            .decompression_limits(MAX_DECOMPRESSED, CALL_BUDGET)
            .build()
            .expect("codec");
        let limits = ZstdOptions::new(0, 1)
            .max_decompressed(MAX_DECOMPRESSED)
            .call_budget(CALL_BUDGET);
        Fixture {
            rt,
            context: EncryptionContext::new()
                .with("namespace", "fuzz")
                .expect("context"),
            keyring,
            sealbox,
            zstd: ZstdCodec::new(limits).expect("zstd"),
            compressor: ZstdCodec::new(limits).expect("zstd"),
        }
    })
}

fn zstd_payload(frame: &[u8], marked: bool) -> Payload {
    let mut metadata = HashMap::new();
    metadata.insert("encoding".to_owned(), b"binary/zstd".to_vec());
    if marked {
        metadata.insert("sealbox-format".to_owned(), b"sealbox-zstd/1".to_vec());
    }
    Payload {
        metadata,
        data: frame.to_vec(),
        external_payloads: Vec::new(),
    }
}

fn through_encryption_codec(
    f: &Fixture,
    inner: &Payload,
    copies: usize,
    marked: bool,
    direct: &Result<Vec<Payload>, CodecError>,
) {
    let sealed: Vec<Payload> = f.rt.block_on(async {
        let plain = inner.encode_to_vec();
        let envelope = f.keyring.seal(&f.context, &plain).await.expect("seal");
        let mut metadata = HashMap::new();
        metadata.insert("encoding".to_owned(), b"binary/encrypted".to_vec());
        metadata.insert("encryption-key-id".to_owned(), b"local:fuzz".to_vec());
        metadata.insert("sealbox-format".to_owned(), b"sealbox-envelope/1".to_vec());
        let outer = Payload {
            metadata,
            data: envelope,
            external_payloads: Vec::new(),
        };
        vec![outer; copies]
    });
    let through_codec = f.rt.block_on(f.sealbox.decode_payloads(sealed));
    if marked {
        match (direct, &through_codec) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "the two decompression paths differ"),
            (Err(a), Err(b)) => assert_eq!(discriminant(a), discriminant(b), "{a} vs {b}"),
            (a, b) => panic!("the two decompression paths disagree: {a:?} vs {b:?}"),
        }
    } else {
        // Another codec's binary/zstd inside an envelope is left for that codec.
        let out = through_codec.expect("unmarked payload comes out of the envelope untouched");
        assert!(out.iter().all(|p| p == inner));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let marked = sel & 1 == 0;
    let copies = if sel & 2 != 0 { 2 } else { 1 };
    let inner = zstd_payload(frame, marked);
    let payloads = vec![inner.clone(); copies];

    // 1. The compression codec on its own.
    let direct = f.zstd.decode_payloads(payloads.clone());
    match &direct {
        Ok(out) => {
            assert_eq!(out.len(), copies);
            assert!(marked, "an unmarked binary/zstd payload was decompressed");
            for p in out {
                assert!(p.data.len() <= MAX_DECOMPRESSED);
            }
        }
        Err(CodecError::Unsupported { .. }) => assert!(!marked),
        Err(CodecError::Malformed { .. } | CodecError::DecompressionBudget { .. }) => {}
        Err(e) => panic!("unexpected error from ZstdCodec: {e:?}"),
    }

    // 2. The same payloads sealed, through the encryption codec.
    if sel & 8 == 0 {
        through_encryption_codec(f, &inner, copies, marked, &direct);
    }

    // 3. Compress → decompress is the identity.
    if sel & 4 != 0 {
        let plain = Payload {
            metadata: HashMap::from([("encoding".to_owned(), b"binary/plain".to_vec())]),
            data: frame.to_vec(),
            external_payloads: Vec::new(),
        };
        let packed = f
            .compressor
            .encode_payloads(vec![plain.clone()])
            .expect("compress");
        let unpacked = f.compressor.decode_payloads(packed).expect("decompress");
        assert_eq!(unpacked, vec![plain]);
    }
});
