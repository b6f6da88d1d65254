//! The AEAD seam: the format fixes the algorithm (AES-256-GCM for suites 0x0001 and 0x0002); a backend
//! fixes nothing but the call shape, so another implementation of the same algorithm can be
//! dropped in and measured without touching the format.
//!
//! - `ring` (cargo feature `ring`, on by default): BoringSSL's AES-GCM assembly, the fastest
//!   here (≈ 2.8× RustCrypto's at 1 MiB on the project machine). ring does not zeroize its
//!   key schedule when a key is dropped: for Sealbox that is the schedule of one payload's
//!   key (derived per payload; the data key itself stays in a zeroizing `SecretBox`).
//! - RustCrypto `aes-gcm` (without the feature): pure Rust with AES-NI and CLMUL, key
//!   schedule zeroized on drop.
//!
//! Both produce the same bytes (checked by a test and by the known-answer vectors).

use crate::format::{NONCE_LEN, Suite, TAG_LEN};
use crate::key::DATA_KEY_LEN;

/// What one AEAD call is keyed and bound with: the payload key, the nonce and the associated
/// data.
pub(crate) struct AeadParams<'a> {
    pub(crate) key: &'a [u8; DATA_KEY_LEN],
    pub(crate) nonce: &'a [u8; NONCE_LEN],
    pub(crate) aad: &'a [u8],
}

/// One implementation of a suite's AEAD.
pub(crate) trait AeadBackend: Send + Sync {
    /// Encrypts `buf` in place and returns the tag.
    fn seal(&self, params: &AeadParams<'_>, buf: &mut [u8]) -> Result<[u8; TAG_LEN], ()>;

    /// Verifies `tag` and decrypts `buf` in place.
    fn open(&self, params: &AeadParams<'_>, buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), ()>;
}

/// AES-256-GCM from RustCrypto's `aes-gcm` (AES-NI and CLMUL when the CPU has them): the
/// backend without the `ring` feature, and the reference the `ring` backend is tested against.
#[cfg(any(not(feature = "ring"), test))]
pub(crate) struct RustCryptoAesGcm;

#[cfg(any(not(feature = "ring"), test))]
impl AeadBackend for RustCryptoAesGcm {
    fn seal(&self, params: &AeadParams<'_>, buf: &mut [u8]) -> Result<[u8; TAG_LEN], ()> {
        use aes_gcm::aead::{AeadInOut, KeyInit};
        let cipher = aes_gcm::Aes256Gcm::new(&(*params.key).into());
        let tag = cipher
            .encrypt_inout_detached(&aes_gcm::Nonce::from(*params.nonce), params.aad, buf.into())
            .map_err(|_| ())?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        Ok(out)
    }

    fn open(&self, params: &AeadParams<'_>, buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), ()> {
        use aes_gcm::aead::{AeadInOut, KeyInit};
        let cipher = aes_gcm::Aes256Gcm::new(&(*params.key).into());
        let nonce = aes_gcm::Nonce::from(*params.nonce);
        cipher
            .decrypt_inout_detached(&nonce, params.aad, buf.into(), &aes_gcm::Tag::from(*tag))
            .map_err(|_| ())
    }
}

/// AES-256-GCM from `ring`.
#[cfg(feature = "ring")]
pub(crate) struct RingAesGcm;

#[cfg(feature = "ring")]
impl RingAesGcm {
    fn key(params: &AeadParams<'_>) -> Result<ring::aead::LessSafeKey, ()> {
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, params.key)
            .map(ring::aead::LessSafeKey::new)
            .map_err(|_| ())
    }
}

#[cfg(feature = "ring")]
impl AeadBackend for RingAesGcm {
    fn seal(&self, params: &AeadParams<'_>, buf: &mut [u8]) -> Result<[u8; TAG_LEN], ()> {
        // Every payload has its own key (HKDF with a fresh salt), so a nonce is never reused
        // under one key: the "less safe" key's caller-supplied nonce is sound here.
        let nonce = ring::aead::Nonce::assume_unique_for_key(*params.nonce);
        let tag = Self::key(params)?
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(params.aad), buf)
            .map_err(|_| ())?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    fn open(&self, params: &AeadParams<'_>, buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), ()> {
        let nonce = ring::aead::Nonce::assume_unique_for_key(*params.nonce);
        Self::key(params)?
            .open_in_place_separate_tag(
                nonce,
                ring::aead::Aad::from(params.aad),
                ring::aead::Tag::from(*tag),
                buf,
                0..,
            )
            .map(|_| ())
            .map_err(|_| ())
    }
}

/// The backend for `suite` in this build.
pub(crate) fn backend(suite: Suite) -> &'static dyn AeadBackend {
    // Both suites use AES-256-GCM; they differ only in how the payload key is derived.
    match suite {
        #[cfg(feature = "ring")]
        Suite::Aes256GcmHkdfSha256Commit | Suite::Aes256GcmHkdfExpandSha256Commit => &RingAesGcm,
        #[cfg(not(feature = "ring"))]
        Suite::Aes256GcmHkdfSha256Commit | Suite::Aes256GcmHkdfExpandSha256Commit => {
            &RustCryptoAesGcm
        }
    }
}

#[cfg(all(test, feature = "ring"))]
mod tests {
    use super::*;

    /// The two backends are interchangeable: same ciphertext and tag for the same inputs,
    /// each opens what the other sealed, and each refuses a flipped tag, body or AAD.
    #[test]
    fn ring_and_rustcrypto_agree() {
        let mut seed = 0x5eed_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in [0usize, 1, 15, 16, 17, 255, 4096, 65_537] {
            let key: [u8; 32] = std::array::from_fn(|_| next() as u8);
            let nonce: [u8; 12] = std::array::from_fn(|_| next() as u8);
            let aad: Vec<u8> = (0..(next() % 200)).map(|_| next() as u8).collect();
            let plain: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let params = AeadParams {
                key: &key,
                nonce: &nonce,
                aad: &aad,
            };
            let (mut a, mut b) = (plain.clone(), plain.clone());
            let tag_a = RingAesGcm.seal(&params, &mut a).expect("ring seal");
            let tag_b = RustCryptoAesGcm
                .seal(&params, &mut b)
                .expect("rustcrypto seal");
            assert_eq!((&a, tag_a), (&b, tag_b), "{len} bytes");
            RustCryptoAesGcm
                .open(&params, &mut a, &tag_a)
                .expect("cross open");
            RingAesGcm
                .open(&params, &mut b, &tag_b)
                .expect("cross open");
            assert_eq!((&a, &b), (&plain, &plain));
            let mut bad_tag = tag_a;
            bad_tag[0] ^= 1;
            let mut c = a.clone();
            RingAesGcm.seal(&params, &mut c).expect("seal");
            assert!(RingAesGcm.open(&params, &mut c.clone(), &bad_tag).is_err());
            if len > 0 {
                let tag = RingAesGcm.seal(&params, &mut a).expect("seal");
                a[len / 2] ^= 0x80;
                assert!(RingAesGcm.open(&params, &mut a, &tag).is_err());
            }
            let other_aad = [aad.as_slice(), b"x"].concat();
            let other = AeadParams {
                aad: &other_aad,
                ..params
            };
            let mut d = plain.clone();
            let tag = RingAesGcm.seal(&params, &mut d).expect("seal");
            assert!(RingAesGcm.open(&other, &mut d, &tag).is_err());
        }
    }
}
