//! Suite `0x0002`'s key derivation: HKDF-SHA256-Expand with the data key as PRK, for infos
//! that fit one SHA-256 block.
//!
//! With L = 32 = HashLen, HKDF-Expand(PRK, info, 32) is one HMAC: `HMAC-SHA256(PRK, info ||
//! 0x01)`. HMAC's keyed states (the compression of `PRK ⊕ ipad` and of `PRK ⊕ opad`) depend on
//! the key alone, so [`ExpandKey`] computes them once per data key. Suite `0x0002`'s infos
//! (label, suite ID, salt) with the counter byte are at most 52 bytes, so a derivation is then
//! exactly two compressions: the inner message block and the outer one. This is the RFC 2104
//! construction written over `sha2`'s compression function, because the generic `hmac` and
//! `hkdf` types spend as much again on copying and wiping their buffered state per call; the
//! unit tests check it against the `hmac` and `hkdf` crates on random keys and infos.

use sha2::block_api::compress256;
use zeroize::Zeroizing;

use crate::format::SALT_LEN;
use crate::key::DATA_KEY_LEN;

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
const BLOCK: usize = 64;
const DIGEST: usize = 32;

/// Suite `0x0002`'s two info labels. An enum, so the info length is known at compile time.
#[derive(Clone, Copy)]
pub(crate) enum Label {
    /// `sealbox/s2/key`: the payload key.
    PayloadKey,
    /// `sealbox/s2/commit`: the key commitment.
    Commitment,
}

impl Label {
    pub(crate) const fn bytes(self) -> &'static [u8] {
        match self {
            Label::PayloadKey => crate::crypto::S2_PAYLOAD_KEY_LABEL,
            Label::Commitment => crate::crypto::S2_COMMITMENT_LABEL,
        }
    }
}

/// The longest info (label, suite ID, salt) plus HKDF's counter byte, which must leave room
/// in one block for SHA-256's `0x80` byte and 64-bit length.
const LONGEST_INPUT: usize = {
    let a = Label::PayloadKey.bytes().len();
    let b = Label::Commitment.bytes().len();
    (if a > b { a } else { b }) + 2 + SALT_LEN + 1
};
const _: () = assert!(LONGEST_INPUT <= BLOCK - 9);

/// HMAC-SHA256 keyed with a 32-byte key: the states after the `key ⊕ ipad` and `key ⊕ opad`
/// blocks. As secret as the key; zeroized on drop.
pub(crate) struct ExpandKey {
    inner: Zeroizing<[u32; 8]>,
    outer: Zeroizing<[u32; 8]>,
}

impl ExpandKey {
    /// Keys HMAC with `key` (shorter than a block, so it is zero-padded, per RFC 2104).
    pub(crate) fn new(key: &[u8; DATA_KEY_LEN]) -> Self {
        let mut block = Zeroizing::new([0x36u8; BLOCK]);
        for (b, k) in block.iter_mut().zip(key) {
            *b ^= k;
        }
        let mut inner = Zeroizing::new(IV);
        compress256(&mut inner, core::slice::from_ref(&*block));
        for b in block.iter_mut() {
            *b ^= 0x36 ^ 0x5c;
        }
        let mut outer = Zeroizing::new(IV);
        compress256(&mut outer, core::slice::from_ref(&*block));
        Self { inner, outer }
    }

    /// `HKDF-Expand(key, label || suite_id || salt, 32)` = `HMAC-SHA256(key, label || suite_id
    /// || salt || 0x01)`.
    pub(crate) fn expand(
        &self,
        label: Label,
        suite_id: [u8; 2],
        salt: &[u8; SALT_LEN],
        out: &mut [u8; DIGEST],
    ) {
        let label = label.bytes();
        // Inner: one block after the keyed state: the message, 0x80, zeros, the bit length of
        // the key block plus the message.
        let mut block = [0u8; BLOCK];
        let (l, rest) = block.split_at_mut(label.len());
        l.copy_from_slice(label);
        let (s, rest) = rest.split_at_mut(2);
        s.copy_from_slice(&suite_id);
        let (salt_dst, rest) = rest.split_at_mut(SALT_LEN);
        salt_dst.copy_from_slice(salt);
        rest[0] = 0x01;
        rest[1] = 0x80;
        let len = label.len() + 2 + SALT_LEN + 1;
        block[BLOCK - 8..].copy_from_slice(&(((BLOCK + len) * 8) as u64).to_be_bytes());
        let mut state = Zeroizing::new(*self.inner);
        compress256(&mut state, core::slice::from_ref(&block));

        // Outer: the inner digest, 0x80, zeros, the bit length of the key block plus 32 bytes.
        let mut outer_block = Zeroizing::new([0u8; BLOCK]);
        for (chunk, word) in outer_block[..DIGEST].chunks_exact_mut(4).zip(state.iter()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        outer_block[DIGEST] = 0x80;
        outer_block[BLOCK - 8..].copy_from_slice(&(((BLOCK + DIGEST) * 8) as u64).to_be_bytes());
        *state = *self.outer;
        compress256(&mut state, core::slice::from_ref(&*outer_block));
        for (chunk, word) in out.chunks_exact_mut(4).zip(state.iter()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hkdf::Hkdf;
    use hmac::{KeyInit, Mac};
    use proptest::prelude::*;
    use sha2::Sha256;

    fn reference(key: &[u8; 32], label: Label, suite_id: [u8; 2], salt: &[u8; 32]) -> [u8; 32] {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("any length");
        mac.update(label.bytes());
        mac.update(&suite_id);
        mac.update(salt);
        mac.update(&[0x01]);
        let hmac_out: [u8; 32] = mac.finalize().into_bytes().into();
        let mut hkdf_out = [0u8; 32];
        Hkdf::<Sha256>::from_prk(key)
            .expect("32-byte PRK")
            .expand_multi_info(&[label.bytes(), &suite_id, salt], &mut hkdf_out)
            .expect("32 bytes");
        assert_eq!(hmac_out, hkdf_out, "HKDF-Expand to 32 bytes is one HMAC");
        hmac_out
    }

    #[test]
    fn known_keys_match_hmac_and_hkdf() {
        for (key, salt) in [([0u8; 32], [0u8; 32]), ([0xff; 32], [0xa5; 32])] {
            let k = ExpandKey::new(&key);
            for label in [Label::PayloadKey, Label::Commitment] {
                for suite_id in [[0, 1], [0, 2], [0xff, 0xff]] {
                    let mut out = [0u8; 32];
                    k.expand(label, suite_id, &salt, &mut out);
                    assert_eq!(out, reference(&key, label, suite_id, &salt));
                }
            }
        }
    }

    proptest! {
        #[test]
        fn random_keys_and_salts_match_hmac_and_hkdf(
            key in proptest::array::uniform32(any::<u8>()),
            salt in proptest::array::uniform32(any::<u8>()),
            suite_id in proptest::array::uniform2(any::<u8>()),
            commitment in any::<bool>(),
        ) {
            let label = if commitment { Label::Commitment } else { Label::PayloadKey };
            let mut out = [0u8; 32];
            ExpandKey::new(&key).expand(label, suite_id, &salt, &mut out);
            prop_assert_eq!(out, reference(&key, label, suite_id, &salt));
        }
    }
}
