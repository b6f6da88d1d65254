//! The peers: raw AES-256-GCM from `ring`, `aws-lc-rs` and RustCrypto `aes-gcm`, each with its
//! key expanded once (the limit an envelope scheme is measured against), in place on a
//! caller's buffer, empty associated data, 96-bit nonce and 128-bit tag.

use aes_gcm::aead::{AeadInOut, KeyInit};

pub const TAG_LEN: usize = 16;

/// One raw AES-256-GCM implementation with a pre-expanded key.
pub trait RawAead {
    fn seal(&self, nonce: [u8; 12], buf: &mut [u8]) -> [u8; TAG_LEN];
    /// `true` when the tag verified (then `buf` holds the plaintext).
    fn open(&self, nonce: [u8; 12], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool;
}

pub struct Ring(ring::aead::LessSafeKey);

impl Ring {
    pub fn new(key: &[u8; 32]) -> Self {
        Self(ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key).expect("32-byte key"),
        ))
    }
}

impl RawAead for Ring {
    fn seal(&self, nonce: [u8; 12], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                buf,
            )
            .expect("ring seal");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn open(&self, nonce: [u8; 12], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
        self.0
            .open_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                ring::aead::Tag::from(*tag),
                buf,
                0..,
            )
            .is_ok()
    }
}

pub struct AwsLc(aws_lc_rs::aead::LessSafeKey);

impl AwsLc {
    pub fn new(key: &[u8; 32]) -> Self {
        Self(aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key)
                .expect("32-byte key"),
        ))
    }
}

impl RawAead for AwsLc {
    fn seal(&self, nonce: [u8; 12], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::empty(),
                buf,
            )
            .expect("aws-lc-rs seal");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn open(&self, nonce: [u8; 12], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
        self.0
            .open_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::empty(),
                tag,
                buf,
            )
            .is_ok()
    }
}

pub struct RustCrypto(aes_gcm::Aes256Gcm);

impl RustCrypto {
    pub fn new(key: &[u8; 32]) -> Self {
        Self(aes_gcm::Aes256Gcm::new(&(*key).into()))
    }
}

impl RawAead for RustCrypto {
    fn seal(&self, nonce: [u8; 12], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .encrypt_inout_detached(&aes_gcm::Nonce::from(nonce), b"", buf.into())
            .expect("aes-gcm seal");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        out
    }

    fn open(&self, nonce: [u8; 12], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
        self.0
            .decrypt_inout_detached(
                &aes_gcm::Nonce::from(nonce),
                b"",
                buf.into(),
                &aes_gcm::Tag::from(*tag),
            )
            .is_ok()
    }
}

/// A unique nonce per operation: a 64-bit counter in the last 8 bytes.
pub fn counter_nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}
