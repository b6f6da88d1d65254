//! Tamper resistance: every single-bit flip, every truncation and any trailing byte of a
//! sample envelope is rejected, each with the error its region calls for.

use std::sync::Arc;

use sealbox_core::format::{COMMITMENT_LEN, NONCE_LEN, PREFIX_LEN, SALT_LEN, TAG_LEN, parse};
use sealbox_core::{Error, FormatError};
use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;
use sealbox_testkit::fixtures::{ctx, pattern};

struct Sample {
    keyring: Keyring,
    envelope: Vec<u8>,
    plaintext: Vec<u8>,
}

async fn sample() -> Sample {
    let kek = Arc::new(LocalKek::generate("tamper-kek").expect("kek"));
    kek.rotate().expect("a versioned KEK");
    let keyring = Keyring::builder(kek).build().expect("keyring");
    let plaintext = pattern(48, 7);
    let context = ctx("tamper").with("workflow", "wf-1").expect("valid");
    let envelope = keyring.seal(&context, &plaintext).await.expect("seal");
    Sample {
        keyring,
        envelope,
        plaintext,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Prefix,
    KeySection,
    Context,
    Salt,
    Nonce,
    Commitment,
    BodyLen,
    Ciphertext,
    Tag,
}

fn region_of(envelope: &[u8], i: usize) -> Region {
    let p = parse(envelope).expect("sample parses");
    let ctx_start = p.key_section.end;
    let salt_start = ctx_start + p.header.context.encoded_len();
    let nonce_start = salt_start + SALT_LEN;
    let commit_start = nonce_start + NONCE_LEN;
    let len_start = commit_start + COMMITMENT_LEN;
    let body_start = len_start + 8;
    let tag_start = envelope.len() - TAG_LEN;
    match i {
        _ if i < PREFIX_LEN => Region::Prefix,
        _ if i < ctx_start => Region::KeySection,
        _ if i < salt_start => Region::Context,
        _ if i < nonce_start => Region::Salt,
        _ if i < commit_start => Region::Nonce,
        _ if i < len_start => Region::Commitment,
        _ if i < body_start => Region::BodyLen,
        _ if i < tag_start => Region::Ciphertext,
        _ => Region::Tag,
    }
}

fn expected(region: Region, err: &Error) -> bool {
    match region {
        Region::Prefix | Region::BodyLen => matches!(err, Error::Format(_)),
        // A flipped provider or key ID names a KEK the key-ring does not trust; a flipped
        // version or wrapped key fails at the provider; a flipped length is malformed.
        Region::KeySection => matches!(
            err,
            Error::Format(_) | Error::UnknownKek { .. } | Error::Provider(_)
        ),
        Region::Context => matches!(err, Error::Format(_) | Error::ContextMismatch(_)),
        Region::Salt | Region::Commitment => matches!(err, Error::CommitmentMismatch),
        Region::Nonce | Region::Ciphertext | Region::Tag => matches!(err, Error::Authentication),
    }
}

#[tokio::test]
async fn every_single_bit_flip_is_rejected() {
    let s = sample().await;
    let c = ctx("tamper").with("workflow", "wf-1").expect("valid");
    assert_eq!(
        s.keyring
            .open(&c, &s.envelope)
            .await
            .expect("untampered opens"),
        s.plaintext
    );
    let mut seen = std::collections::HashSet::new();
    for i in 0..s.envelope.len() {
        let region = region_of(&s.envelope, i);
        seen.insert(format!("{region:?}"));
        for bit in 0..8 {
            let mut t = s.envelope.clone();
            t[i] ^= 1 << bit;
            match s.keyring.open(&c, &t).await {
                Ok(_) => panic!("flip of bit {bit} in byte {i} ({region:?}) opened"),
                Err(e) => assert!(
                    expected(region, &e),
                    "byte {i} bit {bit} ({region:?}): unexpected error {e:?}"
                ),
            }
        }
    }
    assert_eq!(seen.len(), 9, "the sample covers every region: {seen:?}");
}

#[tokio::test]
async fn every_truncation_and_any_extension_is_rejected() {
    let s = sample().await;
    let c = ctx("tamper").with("workflow", "wf-1").expect("valid");
    for len in 0..s.envelope.len() {
        let err = s
            .keyring
            .open(&c, &s.envelope[..len])
            .await
            .expect_err("truncated");
        assert!(
            matches!(err, Error::Format(_)),
            "truncated to {len}: {err:?}"
        );
    }
    let mut longer = s.envelope.clone();
    longer.push(0);
    let err = s.keyring.open(&c, &longer).await.expect_err("extended");
    assert!(
        matches!(err, Error::Format(FormatError::TrailingBytes { count: 1 })),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_versions_suites_and_magic_are_named() {
    let s = sample().await;
    let c = ctx("tamper").with("workflow", "wf-1").expect("valid");
    let cases: [(usize, u8, FormatError); 3] = [
        (0, b'X', FormatError::BadMagic),
        (4, 2, FormatError::UnsupportedVersion(2)),
        (6, 3, FormatError::UnsupportedSuite(3)),
    ];
    for (offset, value, want) in cases {
        let mut t = s.envelope.clone();
        t[offset] = value;
        match s.keyring.open(&c, &t).await {
            Err(Error::Format(got)) => assert_eq!(got, want),
            other => panic!("offset {offset}: {other:?}"),
        }
    }
    let err = s
        .keyring
        .open(&c, b"{\"not\":\"an envelope\"}")
        .await
        .expect_err("json");
    assert!(err.to_string().contains("not a Sealbox envelope"), "{err}");
}
