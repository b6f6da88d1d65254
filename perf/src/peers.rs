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

/// A peer with ring's AEAD API (`ring` itself, and `aws-lc-rs`, which mirrors it); only the
/// open call differs between the two.
macro_rules! ring_api_peer {
    ($name:ident, $krate:ident, |$key:ident, $nonce:ident, $buf:ident, $tag:ident| $open:expr) => {
        pub struct $name($krate::aead::LessSafeKey);

        impl $name {
            pub fn new(key: &[u8; 32]) -> Self {
                let unbound = $krate::aead::UnboundKey::new(&$krate::aead::AES_256_GCM, key);
                Self($krate::aead::LessSafeKey::new(unbound.expect("32-byte key")))
            }
        }

        impl RawAead for $name {
            fn seal(&self, nonce: [u8; 12], buf: &mut [u8]) -> [u8; TAG_LEN] {
                let nonce = $krate::aead::Nonce::assume_unique_for_key(nonce);
                let tag = self.0.seal_in_place_separate_tag(nonce, $krate::aead::Aad::empty(), buf);
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.expect(stringify!($krate seal)).as_ref());
                out
            }

            fn open(&self, nonce: [u8; 12], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
                let ($key, $nonce, $buf, $tag) =
                    (&self.0, $krate::aead::Nonce::assume_unique_for_key(nonce), buf, tag);
                $open.is_ok()
            }
        }
    };
}

ring_api_peer!(Ring, ring, |key, nonce, buf, tag| key
    .open_in_place_separate_tag(
        nonce,
        ring::aead::Aad::empty(),
        ring::aead::Tag::from(*tag),
        buf,
        0..
    ));
ring_api_peer!(AwsLc, aws_lc_rs, |key, nonce, buf, tag| key
    .open_in_place_separate_tag(
        nonce,
        aws_lc_rs::aead::Aad::empty(),
        tag,
        buf
    ));

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
