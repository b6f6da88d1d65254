//! Envelope cryptography: per-payload key derivation, key commitment, and the AEAD seam.
//!
//! For each payload a fresh 256-bit salt is drawn, and
//!
//! ```text
//! PRK         = HKDF-Extract(salt, lease_data_key)                       (SHA-256)
//! payload_key = HKDF-Expand(PRK, "sealbox/v1/payload-key" || suite_id, 32)
//! commitment  = HKDF-Expand(PRK, "sealbox/v1/commitment"  || suite_id, 32)
//! ```
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
use crate::key::{DATA_KEY_LEN, DataKey, WrappedKey};

/// HKDF info label for the payload key.
pub const PAYLOAD_KEY_LABEL: &[u8] = b"sealbox/v1/payload-key";
/// HKDF info label for the key commitment.
pub const COMMITMENT_LABEL: &[u8] = b"sealbox/v1/commitment";

/// The payload key and commitment derived for one payload.
struct PayloadKeys {
    key: Zeroizing<[u8; DATA_KEY_LEN]>,
    commitment: [u8; COMMITMENT_LEN],
}

fn derive(data_key: &DataKey, suite: Suite, salt: &[u8; SALT_LEN]) -> PayloadKeys {
    let hk = Hkdf::<Sha256>::new(Some(salt), data_key.expose_secret());
    let suite_id = suite.id().to_be_bytes();
    let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    // 32 bytes is far below HKDF-SHA256's 8160-byte output limit, so expansion cannot fail.
    let ok_key = hk.expand_multi_info(&[PAYLOAD_KEY_LABEL, &suite_id], key.as_mut_slice());
    let ok_commit = hk.expand_multi_info(&[COMMITMENT_LABEL, &suite_id], &mut commitment);
    debug_assert!(ok_key.is_ok() && ok_commit.is_ok());
    PayloadKeys { key, commitment }
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| Error::Randomness)?;
    Ok(out)
}

/// Seals `plaintext` into a v1 envelope with a data key the caller already holds (normally
/// the key-ring's cached lease key) and its wrapped form. A fresh salt and nonce are drawn
/// from the OS RNG. On any error nothing is returned and the partial buffer is zeroized.
pub fn seal_with_data_key(
    data_key: &DataKey,
    wrapped: &WrappedKey,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    seal_inner(data_key, wrapped, context, plaintext, Randomness::fresh()?)
}

/// Seals with caller-chosen salt and nonce. **Only for producing and checking known-answer
/// test vectors**: reusing a salt with the same data key reuses the payload key and nonce.
#[cfg(feature = "hazmat-fixed-randomness")]
pub fn seal_with_fixed_randomness(
    data_key: &DataKey,
    wrapped: &WrappedKey,
    context: &EncryptionContext,
    plaintext: &[u8],
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, Error> {
    seal_inner(
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
    let suite = Suite::Aes256GcmHkdfSha256Commit;
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
        let a = seal_with_data_key(&key, &wrapped, &ctx, b"hello").expect("seal");
        let b = seal_with_data_key(&key, &wrapped, &ctx, b"hello").expect("seal");
        assert_ne!(a, b, "two seals must differ (fresh salt and nonce)");
        assert_eq!(open_envelope(&key, &a, &ctx).expect("open"), b"hello");
    }

    #[test]
    fn wrong_key_fails_commitment_not_aead() {
        let (key, wrapped, ctx) = fixture();
        let env = seal_with_data_key(&key, &wrapped, &ctx, b"hello").expect("seal");
        let other = DataKey::try_from_slice(&[8; 32]).expect("32 bytes");
        assert!(matches!(
            open_envelope(&other, &env, &ctx),
            Err(Error::CommitmentMismatch)
        ));
    }

    #[test]
    fn derivation_labels_separate_key_and_commitment() {
        let (key, _, _) = fixture();
        let keys = derive(&key, Suite::Aes256GcmHkdfSha256Commit, &[0; SALT_LEN]);
        assert_ne!(&keys.key[..], &keys.commitment[..]);
        let other = derive(&key, Suite::Aes256GcmHkdfSha256Commit, &[1; SALT_LEN]);
        assert_ne!(&keys.key[..], &other.key[..]);
    }
}
