//! The envelope parser and opener on arbitrary bytes.
//!
//! Every input goes to `sealbox_core::format::parse`. For inputs that parse:
//! - the header re-encodes to exactly the input's header bytes, and the associated data the
//!   encoder returns is the parser's (the encoding is canonical: one envelope, one encoding);
//! - `inspect` agrees with `parse`, and `replace_wrapped_key` with the same wrapped key is
//!   the identity;
//! - opening with the known-answer vectors' data key under the envelope's own context, with
//!   the vectors' local KEK (`LocalKek::unwrap`) and through a `Keyring` with that KEK must
//!   fail with an error, never panic. Where one succeeds (only an untouched valid vector can),
//!   re-sealing the plaintext with the header's salt and nonce gives back the input, byte for
//!   byte;
//! - opening under another context is always a context mismatch;
//! - the borrowed parser (`parse_view`, the key-ring's hot path) accepts exactly what `parse`
//!   accepts, reads the same key binding, AAD and body, and `open_view` gives the same result
//!   as `open_with_data_key`; the key binding is `encode_key_binding` of the parsed values;
//! - a fresh seal with the parsed header's wrapped key, context, salt and nonce parses back
//!   to the same header fields and opens to the same plaintext.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sealbox_core::crypto::seal_with_fixed_randomness;
use sealbox_core::format::{
    TAG_LEN, encode_key_binding, inspect, parse, parse_view, replace_wrapped_key,
};
use sealbox_core::{DataKey, EncryptionContext, Error, KeyProvider, open_view, open_with_data_key};
use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;

/// `tests/vectors/v1.json`: `local_kek.key_base64` (key ID `vector-kek`).
const VECTOR_KEK_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// `tests/vectors/v1.json`: the data key of `v1_namespace_context`.
const VECTOR_DATA_KEY: [u8; 32] = [
    0xc9, 0xde, 0x73, 0x1b, 0x15, 0xf3, 0xa2, 0xb1, 0x2c, 0x88, 0x17, 0x8b, 0x7c, 0xfe, 0xe5, 0xd0,
    0xab, 0x54, 0x36, 0x6c, 0x4e, 0xb4, 0xcb, 0xca, 0xbb, 0xee, 0x3d, 0x85, 0x2a, 0x8c, 0x0f, 0x57,
];

struct Fixture {
    rt: tokio::runtime::Runtime,
    data_key: DataKey,
    kek: Arc<LocalKek>,
    keyring: Keyring,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (kek, keyring) = sealbox_fuzz::local_keyring("vector-kek", VECTOR_KEK_B64);
        Fixture {
            rt: sealbox_fuzz::runtime(),
            data_key: DataKey::try_from_slice(&VECTOR_DATA_KEY).expect("32 bytes"),
            kek,
            keyring,
        }
    })
}

/// Re-sealing an opened envelope with its own salt and nonce must reproduce it.
fn check_reseal(key: &DataKey, data: &[u8], plaintext: &[u8]) {
    let parsed = parse(data).expect("parsed before");
    let h = &parsed.header;
    let again = seal_with_fixed_randomness(
        h.suite,
        key,
        &h.wrapped_key,
        &h.context,
        plaintext,
        h.salt,
        h.nonce,
    )
    .expect("re-seal");
    assert_eq!(
        again, data,
        "an envelope that opens must be the canonical seal of its plaintext"
    );
}

fuzz_target!(|data: &[u8]| {
    let view = parse_view(data);
    let Ok(parsed) = parse(data) else {
        assert_eq!(
            view.err(),
            parse(data).err(),
            "parse_view must refuse as parse does"
        );
        return;
    };
    let view = view.expect("parse_view accepts what parse accepts");
    let f = fixture();
    let h = &parsed.header;
    assert_eq!(view.key_binding(), &data[parsed.key_binding.clone()]);
    assert_eq!(
        view.key_binding(),
        encode_key_binding(&h.wrapped_key, &h.context)
    );
    assert_eq!(view.aad(), parsed.aad);
    assert_eq!(view.body(), parsed.body);
    assert!(h.context.matches_encoding(view.context_encoding()));
    assert_eq!(
        format!("{:?}", open_view(&f.data_key, &view, &h.context)),
        format!("{:?}", open_with_data_key(&f.data_key, &parsed, &h.context)),
    );

    // Canonical encoding: the header re-encodes to the input's header bytes.
    let mut header = Vec::new();
    let aad = h.encode_into(&mut header);
    assert_eq!(header.len(), h.encoded_len());
    assert_eq!(
        &data[..header.len()],
        &header[..],
        "header does not re-encode"
    );
    assert_eq!(aad, parsed.aad);
    assert_eq!(&data[header.len()..], parsed.body);
    assert_eq!(parsed.body.len() as u64, h.body_len);
    assert!(parsed.key_section.end <= header.len());
    assert_eq!(&inspect(data).expect("inspect"), h);
    assert_eq!(
        replace_wrapped_key(data, &h.wrapped_key).expect("rewrap"),
        data
    );
    let _ = format!("{h:?} {}", h.suite);

    // The fixed data key, under the envelope's own context.
    match open_with_data_key(&f.data_key, &parsed, &h.context) {
        Ok(pt) => check_reseal(&f.data_key, data, &pt),
        Err(Error::CommitmentMismatch | Error::Authentication) => {}
        Err(e) => panic!("unexpected error from open_with_data_key: {e:?}"),
    }

    // Another context: always refused as a context mismatch, before any cryptography.
    let other = EncryptionContext::new()
        .with("\u{10FFFF}fuzz", "other")
        .expect("valid");
    if other != h.context {
        assert!(matches!(
            open_with_data_key(&f.data_key, &parsed, &other),
            Err(Error::ContextMismatch(_))
        ));
    }

    // The local KEK, then the key-ring.
    f.rt.block_on(async {
        if let Ok(key) = f.kek.unwrap(&h.wrapped_key, &h.context).await {
            if let Ok(pt) = open_with_data_key(&key, &parsed, &h.context) {
                check_reseal(&key, data, &pt);
            }
        }
        if let Ok(pt) = f.keyring.open(&h.context, data).await {
            let key = f
                .kek
                .unwrap(&h.wrapped_key, &h.context)
                .await
                .expect("unwrapped once");
            check_reseal(&key, data, &pt);
        }
    });

    // Seal → parse → open round trip with what the parser accepted.
    let plaintext = &parsed.body[..parsed.body.len() - TAG_LEN];
    let sealed = seal_with_fixed_randomness(
        h.suite,
        &f.data_key,
        &h.wrapped_key,
        &h.context,
        plaintext,
        h.salt,
        h.nonce,
    )
    .expect("seal");
    assert_eq!(sealed.len(), data.len());
    let back = parse(&sealed).expect("a fresh seal parses");
    assert_eq!(back.header.wrapped_key, h.wrapped_key);
    assert_eq!(back.header.context, h.context);
    assert_eq!(back.header.salt, h.salt);
    assert_eq!(back.header.nonce, h.nonce);
    assert_eq!(back.header.body_len, h.body_len);
    assert_eq!(back.header.suite, h.suite);
    let opened = open_with_data_key(&f.data_key, &back, &h.context).expect("a fresh seal opens");
    assert_eq!(opened, plaintext);
});
