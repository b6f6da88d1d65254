//! Envelope cryptography: per-payload key derivation, key commitment, and the AEAD seam.
//!
//! For each payload a fresh 256-bit salt is drawn. Suite `0x0001` (the default) derives
//!
//! ```text
//! PRK         = HKDF-Extract(salt, lease_data_key)                       (SHA-256)
//! payload_key = HKDF-Expand(PRK, "sealbox/v1/payload-key" || suite_id, 32)
//! commitment  = HKDF-Expand(PRK, "sealbox/v1/commitment"  || suite_id, 32)
//! ```
//!
//! and suite `0x0002` skips Extract (the data key is already uniformly random), putting the
//! salt in the info instead:
//!
//! ```text
//! payload_key = HKDF-Expand(lease_data_key, "sealbox/s2/key"    || suite_id || salt, 32)
//! commitment  = HKDF-Expand(lease_data_key, "sealbox/s2/commit" || suite_id || salt, 32)
//! ```
//!
//! Each of those infos, with HKDF's counter byte, fits one SHA-256 block after HMAC's key
//! block, so with the data key's HMAC state kept in the [`DataKey`] a payload's derivation
//! is four SHA-256 compressions instead of ten.
//!
//! The body is AES-256-GCM under `payload_key` with the header's nonce and the associated
//! data `A || C` (see [`crate::format`]). Because every payload has its own key, a nonce can
//! never repeat under one key even when thousands of payloads share a cached data key.

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::aead::{AeadParams, backend};
use crate::context::EncryptionContext;
use crate::error::Error;
use crate::format::{
    self, COMMITMENT_LEN, EnvelopeHeader, EnvelopeView, FORMAT_VERSION, MAX_PLAINTEXT_LEN,
    NONCE_LEN, ParsedEnvelope, SALT_LEN, Suite, TAG_LEN,
};
use crate::kdf::Label;
use crate::key::{DATA_KEY_LEN, DataKey, WrappedKey};

/// HKDF info label for the payload key.
pub const PAYLOAD_KEY_LABEL: &[u8] = b"sealbox/v1/payload-key";
/// HKDF info label for the key commitment.
pub const COMMITMENT_LABEL: &[u8] = b"sealbox/v1/commitment";
/// Suite `0x0002`'s HKDF info label for the payload key (followed by the suite ID and salt).
pub const S2_PAYLOAD_KEY_LABEL: &[u8] = b"sealbox/s2/key";
/// Suite `0x0002`'s HKDF info label for the key commitment (followed by the suite ID and
/// salt).
pub const S2_COMMITMENT_LABEL: &[u8] = b"sealbox/s2/commit";

/// The payload key and commitment derived for one payload.
struct PayloadKeys {
    key: Zeroizing<[u8; DATA_KEY_LEN]>,
    commitment: [u8; COMMITMENT_LEN],
}

fn derive(data_key: &DataKey, suite: Suite, salt: &[u8; SALT_LEN]) -> PayloadKeys {
    let suite_id = suite.id().to_be_bytes();
    let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    match suite {
        Suite::Aes256GcmHkdfSha256Commit => {
            let hk = Hkdf::<Sha256>::new(Some(salt), data_key.expose_secret());
            // 32 bytes is far below HKDF-SHA256's 8160-byte output limit: this cannot fail.
            let ok_key = hk.expand_multi_info(&[PAYLOAD_KEY_LABEL, &suite_id], key.as_mut_slice());
            let ok_commit = hk.expand_multi_info(&[COMMITMENT_LABEL, &suite_id], &mut commitment);
            debug_assert!(ok_key.is_ok() && ok_commit.is_ok());
        }
        Suite::Aes256GcmHkdfExpandSha256Commit => {
            let expand = data_key.expand_key();
            expand.expand(Label::PayloadKey, suite_id, salt, &mut key);
            expand.expand(Label::Commitment, suite_id, salt, &mut commitment);
        }
    }
    PayloadKeys { key, commitment }
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| Error::Randomness)?;
    Ok(out)
}

/// Seals `plaintext` into a v1 envelope of suite [`Suite::DEFAULT`] with a data key the
/// caller already holds (normally the key-ring's cached lease key) and its wrapped form. A
/// fresh salt and nonce are drawn from the OS RNG. On any error nothing is returned and the
/// partial buffer is zeroized.
pub fn seal_with_data_key(
    data_key: &DataKey,
    wrapped: &WrappedKey,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    seal_with_suite(Suite::DEFAULT, data_key, wrapped, context, plaintext)
}

/// [`seal_with_data_key`] writing the given suite. Every suite of [`Suite::ALL`] is read by
/// this build; a reader older than a suite refuses its envelopes (unsupported suite), so
/// upgrade every reader before any writer uses a new suite.
pub fn seal_with_suite(
    suite: Suite,
    data_key: &DataKey,
    wrapped: &WrappedKey,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    seal_inner(
        suite,
        data_key,
        wrapped,
        context,
        plaintext,
        Randomness::fresh()?,
    )
}

/// Seals with caller-chosen suite, salt and nonce. **Only for producing and checking
/// known-answer test vectors**: reusing a salt with the same data key reuses the payload key
/// and nonce.
#[cfg(feature = "hazmat-fixed-randomness")]
pub fn seal_with_fixed_randomness(
    suite: Suite,
    data_key: &DataKey,
    wrapped: &WrappedKey,
    context: &EncryptionContext,
    plaintext: &[u8],
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, Error> {
    seal_inner(
        suite,
        data_key,
        wrapped,
        context,
        plaintext,
        Randomness { salt, nonce },
    )
}

/// The payload key and commitment for `salt`, as `(payload_key, commitment)`. **Only for
/// producing and checking known-answer test vectors.**
#[cfg(feature = "hazmat-fixed-randomness")]
pub fn derive_for_vectors(
    data_key: &DataKey,
    suite: Suite,
    salt: &[u8; SALT_LEN],
) -> ([u8; DATA_KEY_LEN], [u8; COMMITMENT_LEN]) {
    let keys = derive(data_key, suite, salt);
    (*keys.key, keys.commitment)
}

/// The random inputs of one sealed payload.
struct Randomness {
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
}

impl Randomness {
    /// A fresh salt and nonce from the OS RNG (one call for both).
    fn fresh() -> Result<Self, Error> {
        let r = random::<{ SALT_LEN + NONCE_LEN }>()?;
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        salt.copy_from_slice(&r[..SALT_LEN]);
        nonce.copy_from_slice(&r[SALT_LEN..]);
        Ok(Self { salt, nonce })
    }
}

fn seal_inner(
    suite: Suite,
    data_key: &DataKey,
    wrapped: &WrappedKey,
    context: &EncryptionContext,
    plaintext: &[u8],
    randomness: Randomness,
) -> Result<Vec<u8>, Error> {
    let Randomness { salt, nonce } = randomness;
    let len = plaintext.len() as u64;
    if len > MAX_PLAINTEXT_LEN {
        return Err(Error::PlaintextTooLarge {
            len,
            max: MAX_PLAINTEXT_LEN,
        });
    }
    let keys = derive(data_key, suite, &salt);
    let mut out =
        Vec::with_capacity(format::header_len(wrapped, context) + plaintext.len() + TAG_LEN);
    let aad = format::write_header(
        &mut out,
        FORMAT_VERSION,
        suite,
        wrapped,
        context,
        &salt,
        &nonce,
        &keys.commitment,
        len + TAG_LEN as u64,
    );
    let body_start = out.len();
    out.extend_from_slice(plaintext);
    let params = AeadParams {
        key: &keys.key,
        nonce: &nonce,
        aad: &aad,
    };
    match backend(suite).seal(&params, &mut out[body_start..]) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(out)
        }
        Err(()) => {
            // Fail closed: the buffer may still hold plaintext.
            out.zeroize();
            Err(Error::Authentication)
        }
    }
}

/// Opens a parsed envelope with its unwrapped data key, after checking that the envelope
/// was sealed under `expected` context. The key commitment is verified in constant time
/// before any decryption; a mismatch is [`Error::CommitmentMismatch`].
pub fn open_with_data_key(
    data_key: &DataKey,
    parsed: &ParsedEnvelope<'_>,
    expected: &EncryptionContext,
) -> Result<Vec<u8>, Error> {
    check_context(&parsed.header.context, expected)?;
    let h = &parsed.header;
    let keys = committed_keys(data_key, h.suite, &h.salt, &h.commitment)?;
    open_body(&keys, h.suite, &h.nonce, &parsed.aad, parsed.body)
}

/// [`open_with_data_key`] for an [`EnvelopeView`]: the same checks in the same order, with
/// the context compared by its canonical encoding (no part of the header is copied).
pub fn open_view(
    data_key: &DataKey,
    view: &EnvelopeView<'_>,
    expected: &EncryptionContext,
) -> Result<Vec<u8>, Error> {
    check_context_encoding(view.context_encoding(), expected)?;
    let keys = committed_keys(data_key, view.suite(), view.salt(), view.commitment())?;
    open_body(&keys, view.suite(), view.nonce(), &view.aad(), view.body())
}

/// Refuses an envelope whose context encoding is not exactly `expected`'s, with the same
/// error as [`check_context`].
pub fn check_context_encoding(stored: &[u8], expected: &EncryptionContext) -> Result<(), Error> {
    if expected.matches_encoding(stored) {
        return Ok(());
    }
    // The error path only: decode the stored context to name the difference.
    let (stored, _) = EncryptionContext::decode_prefix(stored)?;
    check_context(&stored, expected)
}

/// Decrypts `body` (ciphertext then tag) with the committed payload key.
fn open_body(
    keys: &PayloadKeys,
    suite: Suite,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, Error> {
    // `parse` guarantees this; a hand-built ParsedEnvelope gets an error, not a panic.
    let Some(split) = body.len().checked_sub(TAG_LEN) else {
        return Err(Error::Format(crate::error::FormatError::InvalidLength {
            field: "body length",
            len: body.len() as u64,
            min: TAG_LEN as u64,
            max: MAX_PLAINTEXT_LEN + TAG_LEN as u64,
        }));
    };
    let (ct, tag_bytes) = body.split_at(split);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(tag_bytes);
    let mut out = ct.to_vec();
    let params = AeadParams {
        key: &keys.key,
        nonce,
        aad,
    };
    match backend(suite).open(&params, &mut out, &tag) {
        Ok(()) => Ok(out),
        Err(()) => {
            out.zeroize();
            Err(Error::Authentication)
        }
    }
}

/// Checks in constant time that `data_key` is the key `header` commits to.
pub fn verify_commitment(data_key: &DataKey, header: &EnvelopeHeader) -> Result<(), Error> {
    committed_keys(data_key, header.suite, &header.salt, &header.commitment).map(|_| ())
}

/// The payload key and commitment for `salt`, once checked in constant time that
/// `data_key` is the key `commitment` commits to.
fn committed_keys(
    data_key: &DataKey,
    suite: Suite,
    salt: &[u8; SALT_LEN],
    commitment: &[u8; COMMITMENT_LEN],
) -> Result<PayloadKeys, Error> {
    let keys = derive(data_key, suite, salt);
    if bool::from(keys.commitment.ct_eq(commitment)) {
        Ok(keys)
    } else {
        Err(Error::CommitmentMismatch)
    }
}

/// Refuses an envelope whose stored context is not exactly `expected`.
pub fn check_context(
    stored: &EncryptionContext,
    expected: &EncryptionContext,
) -> Result<(), Error> {
    if stored == expected {
        Ok(())
    } else {
        Err(Error::ContextMismatch(format!(
            "expected context differs from the envelope's ({})",
            expected.describe_difference(stored)
        )))
    }
}

/// Parses and opens an envelope with its unwrapped data key.
pub fn open_envelope(
    data_key: &DataKey,
    envelope: &[u8],
    expected: &EncryptionContext,
) -> Result<Vec<u8>, Error> {
    let parsed = format::parse(envelope)?;
    open_with_data_key(data_key, &parsed, expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KekRef;

    fn fixture() -> (DataKey, WrappedKey, EncryptionContext) {
        let key = DataKey::try_from_slice(&[7; 32]).expect("32 bytes");
        let kek = KekRef::new("local", "test").expect("valid");
        let wrapped = WrappedKey::new(kek, vec![1, 2, 3]).expect("valid");
        let ctx = EncryptionContext::new()
            .with("namespace", "a")
            .expect("valid");
        (key, wrapped, ctx)
    }

    #[test]
    fn round_trip_and_fresh_salts() {
        let (key, wrapped, ctx) = fixture();
        for suite in Suite::ALL {
            let a = seal_with_suite(suite, &key, &wrapped, &ctx, b"hello").expect("seal");
            let b = seal_with_suite(suite, &key, &wrapped, &ctx, b"hello").expect("seal");
            assert_ne!(a, b, "two seals must differ (fresh salt and nonce)");
            assert_eq!(format::parse(&a).expect("parse").header.suite, suite);
            assert_eq!(open_envelope(&key, &a, &ctx).expect("open"), b"hello");
        }
        let default = seal_with_data_key(&key, &wrapped, &ctx, b"x").expect("seal");
        assert_eq!(
            format::parse(&default).expect("parse").header.suite,
            Suite::Aes256GcmHkdfSha256Commit,
            "suite 0x0001 stays the default until 0x0002 is proven"
        );
    }

    /// Another data key, or an envelope relabelled as the other suite (the two derivations
    /// are unrelated), is refused at the commitment, never decrypted.
    #[test]
    fn another_key_or_a_relabelled_suite_fails_the_commitment() {
        let (key, wrapped, ctx) = fixture();
        let other = DataKey::try_from_slice(&[8; 32]).expect("32 bytes");
        for (suite, relabelled) in [
            (Suite::ALL[0], Suite::ALL[1]),
            (Suite::ALL[1], Suite::ALL[0]),
        ] {
            let env = seal_with_suite(suite, &key, &wrapped, &ctx, b"hello").expect("seal");
            let mut swapped = env.clone();
            swapped[5..7].copy_from_slice(&relabelled.id().to_be_bytes());
            for (k, e) in [(&other, &env), (&key, &swapped)] {
                assert!(matches!(
                    open_envelope(k, e, &ctx),
                    Err(Error::CommitmentMismatch)
                ));
            }
        }
    }

    #[test]
    fn derivation_labels_separate_key_and_commitment() {
        let (key, _, _) = fixture();
        for suite in Suite::ALL {
            let keys = derive(&key, suite, &[0; SALT_LEN]);
            assert_ne!(&keys.key[..], &keys.commitment[..]);
            let other = derive(&key, suite, &[1; SALT_LEN]);
            assert_ne!(&keys.key[..], &other.key[..]);
            assert_ne!(&keys.commitment[..], &other.commitment[..]);
        }
        let s1 = derive(&key, Suite::ALL[0], &[0; SALT_LEN]);
        let s2 = derive(&key, Suite::ALL[1], &[0; SALT_LEN]);
        assert_ne!(&s1.key[..], &s2.key[..]);
        assert_ne!(&s1.commitment[..], &s2.commitment[..]);
    }

    /// Suite 0x0002 is RFC 5869's Expand with the data key as PRK: for 32-byte outputs,
    /// HMAC-SHA256(data key, label || suite ID || salt || 0x01), computed here with `hmac`
    /// alone, with no HKDF code and no state kept in the `DataKey`.
    #[test]
    fn suite_2_is_hmac_of_label_suite_salt_and_counter() {
        use hmac::{KeyInit, Mac};
        let (key, _, _) = fixture();
        let salt: [u8; SALT_LEN] = core::array::from_fn(|i| i as u8 * 3);
        let keys = derive(&key, Suite::Aes256GcmHkdfExpandSha256Commit, &salt);
        for (label, got) in [
            (S2_PAYLOAD_KEY_LABEL, &keys.key[..]),
            (S2_COMMITMENT_LABEL, &keys.commitment[..]),
        ] {
            let mut mac =
                hmac::Hmac::<Sha256>::new_from_slice(key.expose_secret()).expect("any length");
            mac.update(label);
            mac.update(&[0x00, 0x02]);
            mac.update(&salt);
            mac.update(&[0x01]);
            assert_eq!(mac.finalize().into_bytes().as_slice(), got);
        }
    }
}
