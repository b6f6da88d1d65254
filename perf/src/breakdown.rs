//! Section 1's cost breakdown at 1 KiB: each step of the core's seal and open timed on its
//! own with the same crates, and the key-ring's share derived.

use super::*;

/// The core's AEAD backend in this build, as scripts/perf.sh found it with `cargo tree`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Ring,
    RustCrypto,
}

pub(crate) fn core_backend() -> Option<Backend> {
    match std::env::var("SEALBOX_PERF_CORE_BACKEND").ok().as_deref() {
        Some("ring") => Some(Backend::Ring),
        Some("rustcrypto") => Some(Backend::RustCrypto),
        _ => None,
    }
}

pub(crate) fn derive_like_core(
    key: &[u8; 32],
    salt: &[u8; 32],
    suite_id: &[u8; 2],
) -> ([u8; 32], [u8; 32]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), key);
    let mut k = [0u8; 32];
    let mut c = [0u8; 32];
    hk.expand_multi_info(&[PAYLOAD_KEY_LABEL, suite_id], &mut k)
        .expect("32 bytes");
    hk.expand_multi_info(&[COMMITMENT_LABEL, suite_id], &mut c)
        .expect("32 bytes");
    (k, c)
}

/// The core's derivation computed with `ring::hkdf` instead (a reference for what HKDF can cost).
pub(crate) fn derive_with_ring(
    key: &[u8; 32],
    salt: &[u8; 32],
    suite_id: &[u8; 2],
) -> ([u8; 32], [u8; 32]) {
    use ring::hkdf::{HKDF_SHA256, Salt};
    let prk = Salt::new(HKDF_SHA256, salt).extract(key);
    let mut k = [0u8; 32];
    let mut c = [0u8; 32];
    prk.expand(&[PAYLOAD_KEY_LABEL, suite_id], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut k))
        .expect("32 bytes");
    prk.expand(&[COMMITMENT_LABEL, suite_id], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut c))
        .expect("32 bytes");
    (k, c)
}

/// Suite 0x0002's derivation with the `hkdf` crate: HKDF-Expand from `expand` (HMAC keyed with
/// the data key, set up once per key), the salt at the end of each info. A reference: the core
/// finishes the two HMACs over `sha2`'s compression function instead.
pub(crate) fn derive_suite2(
    expand: &Hkdf<Sha256>,
    salt: &[u8; 32],
    suite_id: &[u8; 2],
) -> ([u8; 32], [u8; 32]) {
    let mut k = [0u8; 32];
    let mut c = [0u8; 32];
    expand
        .expand_multi_info(&[S2_PAYLOAD_KEY_LABEL, suite_id, salt], &mut k)
        .expect("32 bytes");
    expand
        .expand_multi_info(&[S2_COMMITMENT_LABEL, suite_id, salt], &mut c)
        .expect("32 bytes");
    (k, c)
}

pub(crate) struct Breakdown {
    pub(crate) seal: Table,
    pub(crate) open: Table,
    pub(crate) csv: String,
    /// (component, ns) of the seal path, largest first, for the target explanations.
    pub(crate) seal_parts: Vec<(String, f64)>,
    pub(crate) open_parts: Vec<(String, f64)>,
    pub(crate) keyring_seal_ns: f64,
    pub(crate) keyring_open_ns: f64,
}

/// Where the per-payload time of a 1 KiB seal and open goes.
pub(crate) fn breakdown(
    fx: &Fixture,
    cfg: &Config,
    totals: &mut (Duration, Duration),
) -> Breakdown {
    const SIZE: usize = 1 << 10;
    let input = mem::pattern(SIZE, 77);
    let envelope = fx.seal(&input);
    let empty_env = fx.seal(b"");
    let header = inspect(&envelope).expect("header");
    let (data_key, wrapped) = fx.keys_of(&envelope);
    assert_eq!(
        open_envelope(&data_key, &envelope, &fx.ctx).expect("core open"),
        input
    );
    let salt = header.salt;
    let suite_id = Suite::Aes256GcmHkdfSha256Commit.id().to_be_bytes();
    let dk = *data_key.expose_secret();
    // The derivation reproduced here is the core's: check it against the envelope's commitment.
    assert_eq!(
        derive_like_core(&dk, &salt, &suite_id).1,
        header.commitment,
        "the breakdown's HKDF does not reproduce the core's commitment"
    );
    let payload_key = derive_like_core(&dk, &salt, &suite_id).0;
    assert_eq!(
        derive_with_ring(&dk, &salt, &suite_id),
        derive_like_core(&dk, &salt, &suite_id),
        "ring::hkdf and the hkdf crate disagree"
    );
    // Suite 0x0002, checked against an envelope of that suite the same way.
    let envelope2 = fx.seal2(&input);
    let header2 = inspect(&envelope2).expect("header");
    let (data_key2, _) = fx.keys_of(&envelope2);
    let dk2 = *data_key2.expose_secret();
    let expand2 = Hkdf::<Sha256>::from_prk(&dk2).expect("32-byte PRK");
    let suite2_id = Suite::Aes256GcmHkdfExpandSha256Commit.id().to_be_bytes();
    let suite2 = Suite::Aes256GcmHkdfExpandSha256Commit;
    assert_eq!(
        derive_for_vectors(&data_key2, suite2, &header2.salt),
        derive_suite2(&expand2, &header2.salt, &suite2_id),
        "the core's suite 0x0002 derivation and hkdf's Expand disagree"
    );
    assert_eq!(
        derive_for_vectors(&data_key2, suite2, &header2.salt).1,
        header2.commitment,
        "the breakdown's suite 0x0002 HKDF does not reproduce the envelope's commitment"
    );
    let aead_ring = Ring::new(&payload_key);
    let aead_rc = RustCrypto::new(&payload_key);

    // Seal-side components.
    progress("breakdown: seal path at 1 KiB");
    let mut buf_ring = input.clone();
    let mut buf_rc = input.clone();
    let mut ctr = 0u64;
    let mut ctr2 = 0u64;
    let seal_names: Vec<&str> = vec![
        "getrandom::fill, 44 bytes (salt + nonce)",
        "HKDF-SHA256 Hkdf::new only (Extract, then HMAC keyed with the PRK)",
        "HKDF-SHA256 Extract + 2 Expands (payload key, commitment)",
        "AES-256-GCM key setup: ring (UnboundKey::new)",
        "AES-256-GCM key setup: RustCrypto (Aes256Gcm::new)",
        "AES-256-GCM key setup: aws-lc-rs (UnboundKey::new)",
        "output Vec + header/AAD encoding + plaintext copy",
        "AES-256-GCM seal 1 KiB in place, key set up: ring",
        "AES-256-GCM seal 1 KiB in place, key set up: RustCrypto",
        "core seal_with_data_key, 1 KiB (no key-ring)",
        "core seal_with_data_key, 0 B",
        "Keyring::seal, 1 KiB",
        "Keyring::seal, 0 B",
        "reference: the same HKDF (Extract + 2 Expands) with ring::hkdf",
        "reference: SHA-256 of 32 bytes (one block), sha2 0.11",
        "suite 0x0002: the core's derivation, 2 HMAC finishes from the data key's keyed state",
        "suite 0x0002: Keyring::seal, 1 KiB",
        "reference: suite 0x0002's derivation with hkdf 0.13 (Hkdf::from_prk kept per key)",
    ];
    let mut cases = vec![
        Case::new(seal_names[0], |n| {
            let mut b = [0u8; 44];
            for _ in 0..n {
                getrandom::fill(black_box(&mut b)).expect("getrandom");
            }
        }),
        Case::new(seal_names[1], |n| {
            for _ in 0..n {
                black_box(Hkdf::<Sha256>::new(Some(black_box(&salt)), black_box(&dk)));
            }
        }),
        Case::new(seal_names[2], |n| {
            for _ in 0..n {
                black_box(derive_like_core(
                    black_box(&dk),
                    black_box(&salt),
                    &suite_id,
                ));
            }
        }),
        Case::new(seal_names[3], |n| {
            for _ in 0..n {
                black_box(ring::aead::LessSafeKey::new(
                    ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, black_box(&payload_key))
                        .expect("key"),
                ));
            }
        }),
        Case::new(seal_names[4], |n| {
            use aes_gcm::aead::KeyInit;
            for _ in 0..n {
                black_box(aes_gcm::Aes256Gcm::new(&(*black_box(&payload_key)).into()));
            }
        }),
        Case::new(seal_names[5], |n| {
            for _ in 0..n {
                black_box(aws_lc_rs::aead::LessSafeKey::new(
                    aws_lc_rs::aead::UnboundKey::new(
                        &aws_lc_rs::aead::AES_256_GCM,
                        black_box(&payload_key),
                    )
                    .expect("key"),
                ));
            }
        }),
        Case::new(seal_names[6], |n| {
            for _ in 0..n {
                let mut out = Vec::with_capacity(header.encoded_len() + SIZE + peers::TAG_LEN);
                let aad = header.encode_into(&mut out);
                out.extend_from_slice(black_box(&input));
                black_box((out, aad));
            }
        }),
        Case::new(seal_names[7], |n| {
            for _ in 0..n {
                ctr += 1;
                black_box(aead_ring.seal(counter_nonce(ctr), black_box(&mut buf_ring)));
            }
        }),
        Case::new(seal_names[8], |n| {
            for _ in 0..n {
                ctr2 += 1;
                black_box(aead_rc.seal(counter_nonce(ctr2), black_box(&mut buf_rc)));
            }
        }),
        Case::new(seal_names[9], |n| {
            for _ in 0..n {
                black_box(
                    seal_with_data_key(&data_key, &wrapped, &fx.ctx, black_box(&input))
                        .expect("seal"),
                );
            }
        }),
        Case::new(seal_names[10], |n| {
            for _ in 0..n {
                black_box(seal_with_data_key(&data_key, &wrapped, &fx.ctx, b"").expect("seal"));
            }
        }),
        fx.seal_case(seal_names[11], &input),
        fx.seal_case(seal_names[12], b""),
        Case::new(seal_names[13], |n| {
            for _ in 0..n {
                black_box(derive_with_ring(
                    black_box(&dk),
                    black_box(&salt),
                    &suite_id,
                ));
            }
        }),
        Case::new(seal_names[14], |n| {
            use sha2::Digest;
            for _ in 0..n {
                black_box(Sha256::digest(black_box(&dk)));
            }
        }),
        Case::new(seal_names[15], |n| {
            for _ in 0..n {
                black_box(derive_for_vectors(
                    black_box(&data_key2),
                    suite2,
                    black_box(&header2.salt),
                ));
            }
        }),
        fx.seal_case2(seal_names[16], &input),
        Case::new(seal_names[17], |n| {
            for _ in 0..n {
                black_box(derive_suite2(
                    black_box(&expand2),
                    black_box(&header2.salt),
                    &suite2_id,
                ));
            }
        }),
    ];
    let seal_stats = measure(&mut cases, cfg);
    drop(cases);

    // Open-side components.
    progress("breakdown: open path at 1 KiB");
    let (ct_ring, tag_ring) = {
        let mut b = input.clone();
        let t = aead_ring.seal(header.nonce, &mut b);
        (b, t)
    };
    let mut work_ring = WorkBuf::away_from(&ct_ring);
    let mut work_rc = WorkBuf::away_from(&ct_ring);
    let body = parse(&envelope).expect("parse").body.to_vec();
    let open_names: Vec<&str> = vec![
        "parse_view (header checked, borrowed) + context check ← the key-ring's path",
        "ciphertext copy to a new Vec (ct.to_vec())",
        "AES-256-GCM open 1 KiB in place, key set up: ring",
        "AES-256-GCM open 1 KiB in place, key set up: RustCrypto",
        "core parse_view + open_view, 1 KiB (no key-ring)",
        "core parse_view + open_view, 0 B",
        "Keyring::open, 1 KiB",
        "Keyring::open, 0 B",
        "reference: parse (owned header, the cache-miss path) + context check",
        "reference: core open_envelope (owned header), 1 KiB",
        "suite 0x0002: Keyring::open, 1 KiB",
    ];
    let mut cases = vec![
        Case::new(open_names[0], |n| {
            for _ in 0..n {
                let v = parse_view(black_box(&envelope)).expect("parse_view");
                check_context_encoding(v.context_encoding(), &fx.ctx).expect("context");
                black_box(v);
            }
        }),
        Case::new(open_names[1], |n| {
            for _ in 0..n {
                black_box(black_box(&body[..SIZE]).to_vec());
            }
        }),
        Case::new(open_names[2], |n| {
            for _ in 0..n {
                let w = work_ring.buf();
                w.copy_from_slice(&ct_ring);
                assert!(aead_ring.open(header.nonce, black_box(w), &tag_ring));
            }
        }),
        Case::new(open_names[3], |n| {
            for _ in 0..n {
                let w = work_rc.buf();
                w.copy_from_slice(&ct_ring);
                assert!(aead_rc.open(header.nonce, black_box(w), &tag_ring));
            }
        }),
        Case::new(open_names[4], |n| {
            for _ in 0..n {
                let v = parse_view(black_box(&envelope)).expect("parse_view");
                black_box(open_view(&data_key, &v, &fx.ctx).expect("open"));
            }
        }),
        Case::new(open_names[5], |n| {
            let (k, _) = fx.keys_of(&empty_env);
            for _ in 0..n {
                let v = parse_view(black_box(&empty_env)).expect("parse_view");
                black_box(open_view(&k, &v, &fx.ctx).expect("open"));
            }
        }),
        fx.open_case(open_names[6], &envelope),
        fx.open_case(open_names[7], &empty_env),
        Case::new(open_names[8], |n| {
            for _ in 0..n {
                let p = parse(black_box(&envelope)).expect("parse");
                check_context(&p.header.context, &fx.ctx).expect("context");
                black_box(p);
            }
        }),
        Case::new(open_names[9], |n| {
            for _ in 0..n {
                black_box(open_envelope(&data_key, black_box(&envelope), &fx.ctx).expect("open"));
            }
        }),
        fx.open_case(open_names[10], &envelope2),
    ];
    let open_stats = measure(&mut cases, cfg);
    drop(cases);
    for s in seal_stats.iter().chain(&open_stats) {
        totals.0 += s.cpu;
        totals.1 += s.wall;
    }
    // A 1 KiB open in place includes a 1 KiB copy (restoring the ciphertext); take the copy out.
    let copy_1k = open_stats[1].median_ns;

    let m = |i: usize| seal_stats[i].median_ns;
    let o = |i: usize| open_stats[i].median_ns;
    let backend = core_backend();
    let (setup, aead_seal, aead_open, bname) = match backend {
        Some(Backend::RustCrypto) => (m(4), m(8), o(3), "RustCrypto"),
        _ => (m(3), m(7), o(2), "ring"),
    };
    let keyring_seal = m(11);
    let keyring_open = o(6);
    let core_seal = m(9);
    let core_open = o(4);
    let pct = |v: f64, total: f64| format!("{:.0}%", 100.0 * v / total);

    let mut csv = String::from("path,component,ns_per_op,q1_ns,q3_ns,batches\n");
    for (name, s) in seal_names.iter().zip(&seal_stats) {
        csv.push_str(&format!(
            "seal,\"{name}\",{:.1},{:.1},{:.1},{}\n",
            s.median_ns, s.q1_ns, s.q3_ns, s.batches
        ));
    }
    for (name, s) in open_names.iter().zip(&open_stats) {
        csv.push_str(&format!(
            "open,\"{name}\",{:.1},{:.1},{:.1},{}\n",
            s.median_ns, s.q1_ns, s.q3_ns, s.batches
        ));
    }

    // Seal table: every measured row, then the derived ones.
    let mut seal = Table::new(&["seal path at 1 KiB", "ns/op", "share of Keyring::seal"]);
    for (i, (name, s)) in seal_names.iter().zip(&seal_stats).enumerate() {
        let mut label = (*name).to_owned();
        let used = match backend {
            Some(Backend::RustCrypto) => [4, 8].contains(&i),
            Some(Backend::Ring) => [3, 7].contains(&i),
            None => false,
        };
        if used {
            label.push_str(" ← the core's backend");
        }
        let share = if i >= 9 || i == 1 || i == 5 || (!used && [3, 4, 7, 8].contains(&i)) {
            String::new()
        } else {
            pct(s.median_ns, keyring_seal)
        };
        seal.row(vec![label, with_spread(s), share]);
    }
    let seal_named = m(0) + m(2) + setup + m(6) + aead_seal;
    let seal_rest = core_seal - seal_named;
    let seal_keyring = keyring_seal - core_seal;
    seal.row(vec![
        format!("= sum of the core's steps above (random, HKDF, {bname} key setup, output/header, {bname} AEAD)"),
        ns(seal_named),
        pct(seal_named, keyring_seal),
    ]);
    seal.row(vec![
        "= core seal − that sum (unattributed: Zeroizing, tag append, dispatch, cache effects)"
            .into(),
        ns(seal_rest),
        pct(seal_rest, keyring_seal),
    ]);
    seal.row(vec![
        "= key-ring lease path (Keyring::seal − core seal, 1 KiB)".into(),
        ns(seal_keyring),
        pct(seal_keyring, keyring_seal),
    ]);
    seal.row(vec![
        "= key-ring lease path (Keyring::seal − core seal, 0 B)".into(),
        ns(m(12) - m(10)),
        String::new(),
    ]);

    let mut open = Table::new(&["open path at 1 KiB", "ns/op", "share of Keyring::open"]);
    let hkdf = m(2);
    let open_rows: Vec<(String, f64, Option<&Stats>)> = vec![
        (open_names[0].into(), o(0), Some(&open_stats[0])),
        (
            "HKDF-SHA256 Extract + 2 Expands (from the seal table)".into(),
            hkdf,
            Some(&seal_stats[2]),
        ),
        (
            format!("AES-256-GCM key setup: {bname} (from the seal table)"),
            setup,
            None,
        ),
        (open_names[1].into(), copy_1k, Some(&open_stats[1])),
        (
            format!(
                "{} minus a 1 KiB copy ← the core's backend",
                open_names[if bname == "ring" { 2 } else { 3 }]
            ),
            aead_open - copy_1k,
            None,
        ),
    ];
    for (name, v, s) in &open_rows {
        open.row(vec![
            name.clone(),
            s.map_or_else(
                || ns(*v),
                |s| {
                    if (s.median_ns - v).abs() < 0.5 {
                        with_spread(s)
                    } else {
                        ns(*v)
                    }
                },
            ),
            pct(*v, keyring_open),
        ]);
    }
    for i in [2usize, 3] {
        let s = &open_stats[i];
        open.row(vec![
            format!("{} (incl. the copy)", open_names[i]),
            with_spread(s),
            String::new(),
        ]);
    }
    for i in 4..open_names.len() {
        open.row(vec![
            open_names[i].into(),
            with_spread(&open_stats[i]),
            String::new(),
        ]);
    }
    let open_named: f64 = open_rows.iter().map(|r| r.1).sum();
    let open_rest = core_open - open_named;
    let open_keyring = keyring_open - core_open;
    open.row(vec![
        "= sum of the core's steps above".into(),
        ns(open_named),
        pct(open_named, keyring_open),
    ]);
    open.row(vec![
        "= core open − that sum (unattributed: commitment compare, Zeroizing, dispatch)".into(),
        ns(open_rest),
        pct(open_rest, keyring_open),
    ]);
    open.row(vec![
        "= key-ring unwrap-cache path (Keyring::open − core open, 1 KiB)".into(),
        ns(open_keyring),
        pct(open_keyring, keyring_open),
    ]);
    open.row(vec![
        "= key-ring unwrap-cache path (Keyring::open − core open, 0 B)".into(),
        ns(o(7) - o(5)),
        String::new(),
    ]);

    let mut seal_parts = vec![
        ("OS random (getrandom)".to_owned(), m(0)),
        ("HKDF Extract + 2 Expands".to_owned(), hkdf),
        (format!("AES-GCM key setup ({bname})"), setup),
        ("output allocation + header + copy".to_owned(), m(6)),
        (format!("AES-GCM over 1 KiB ({bname})"), aead_seal),
        ("key-ring lease path".to_owned(), seal_keyring),
        ("unattributed in the core".to_owned(), seal_rest),
    ];
    seal_parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut open_parts = vec![
        ("parse + context check".to_owned(), o(0)),
        ("HKDF Extract + 2 Expands".to_owned(), hkdf),
        (format!("AES-GCM key setup ({bname})"), setup),
        ("ciphertext copy".to_owned(), copy_1k),
        (format!("AES-GCM over 1 KiB ({bname})"), aead_open - copy_1k),
        ("key-ring unwrap-cache path".to_owned(), open_keyring),
        ("unattributed in the core".to_owned(), open_rest),
    ];
    open_parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    Breakdown {
        seal,
        open,
        csv,
        seal_parts,
        open_parts,
        keyring_seal_ns: keyring_seal,
        keyring_open_ns: keyring_open,
    }
}

pub(crate) fn top_parts(parts: &[(String, f64)]) -> String {
    parts
        .iter()
        .take(4)
        .map(|(n, v)| format!("{n} {} ns", int(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}
