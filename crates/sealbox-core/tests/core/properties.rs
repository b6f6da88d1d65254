//! Property tests: any plaintext under any valid context, in either suite, round-trips, the
//! header always parses back to what was sealed, and any single-byte change is rejected.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use sealbox_core::format::encode_key_binding;
use sealbox_core::{EncryptionContext, Suite, inspect, parse, parse_view};
use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// A key-ring writing `suite` (it reads every suite).
fn keyring(suite: Suite) -> Keyring {
    Keyring::builder(Arc::new(LocalKek::generate("prop").expect("kek")))
        .suite(suite)
        .build()
        .expect("keyring")
}

fn suite_strategy() -> impl Strategy<Value = Suite> {
    prop::sample::select(Suite::ALL.to_vec())
}

fn context_strategy() -> impl Strategy<Value = EncryptionContext> {
    prop::collection::btree_map("[a-z][a-z0-9._-]{0,15}", "[ -~]{0,24}", 0..6).prop_map(
        |m: BTreeMap<String, String>| {
            let mut ctx = EncryptionContext::new();
            for (k, v) in m {
                ctx.insert(k, v).expect("strategy yields valid pairs");
            }
            ctx
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(
        plaintext in prop::collection::vec(any::<u8>(), 0..4096),
        context in context_strategy(),
        suite in suite_strategy(),
    ) {
        let rt = runtime();
        let keyring = keyring(suite);
        let envelope = rt.block_on(keyring.seal(&context, &plaintext)).expect("seal");
        let header = inspect(&envelope).expect("header");
        prop_assert_eq!(header.suite, suite);
        prop_assert_eq!(&header.context, &context);
        // The key-ring's unwrap-cache key: the envelope's bytes there are exactly the
        // encoding of the parsed wrapped key and context.
        let parsed = parse(&envelope).expect("parse");
        let binding = encode_key_binding(&header.wrapped_key, &context);
        prop_assert_eq!(&envelope[parsed.key_binding.clone()], binding.as_slice());
        prop_assert_eq!(header.plaintext_len(), plaintext.len() as u64);
        let opened = rt.block_on(keyring.open(&context, &envelope)).expect("open");
        prop_assert_eq!(opened, plaintext);
    }

    #[test]
    fn any_byte_change_is_rejected(
        plaintext in prop::collection::vec(any::<u8>(), 0..512),
        context in context_strategy(),
        position in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        suite in suite_strategy(),
    ) {
        let rt = runtime();
        let keyring = keyring(suite);
        let mut envelope = rt.block_on(keyring.seal(&context, &plaintext)).expect("seal");
        let i = position.index(envelope.len());
        envelope[i] ^= xor;
        prop_assert!(rt.block_on(keyring.open(&context, &envelope)).is_err(), "change at byte {} opened", i);
    }

    /// The borrowed parser (the key-ring's hot path) accepts exactly what `parse` accepts,
    /// refuses with the same error, and reads the same values.
    #[test]
    fn view_and_parse_agree_on_damaged_envelopes(
        plaintext in prop::collection::vec(any::<u8>(), 0..64),
        context in context_strategy(),
        changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let rt = runtime();
        let keyring = keyring(Suite::DEFAULT);
        let mut envelope = rt.block_on(keyring.seal(&context, &plaintext)).expect("seal");
        // Damage concentrated on the header, where the two parsers do their work.
        let header_len = envelope.len() - plaintext.len() - 16;
        for (at, value) in &changes {
            envelope[at.index(header_len)] = *value;
        }
        if let Some(cut) = cut {
            envelope.truncate(cut.index(envelope.len()));
        }
        match (parse(&envelope), parse_view(&envelope)) {
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (Ok(parsed), Ok(view)) => {
                let back = view.to_parsed().expect("a view converts");
                prop_assert!(back.header == parsed.header);
                prop_assert_eq!(&back.aad, &parsed.aad);
                prop_assert_eq!(&view.aad(), &parsed.aad);
                prop_assert_eq!(view.body(), parsed.body);
                prop_assert_eq!(view.key_binding(), &envelope[parsed.key_binding.clone()]);
                prop_assert_eq!(
                    view.kek_ids(),
                    (parsed.header.kek().provider(), parsed.header.kek().key_id())
                );
                prop_assert!(parsed.header.context.matches_encoding(view.context_encoding()));
            }
            (a, b) => prop_assert!(false, "parse {:?} but parse_view {:?}", a.map(|_| ()), b.map(|_| ())),
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = inspect(&bytes);
        let mut prefixed = b"SBXE\x01\x00\x01".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = inspect(&prefixed);
    }
}
