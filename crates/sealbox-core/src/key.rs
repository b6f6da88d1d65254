//! Data keys (secret) and wrapped keys with their KEK references (not secret).

use std::fmt;

use secrecy::{ExposeSecret, SecretBox};

use crate::error::Error;
use crate::format::{
    MAX_KEY_ID_LEN, MAX_KEY_VERSION_LEN, MAX_PROVIDER_ID_LEN, MAX_WRAPPED_KEY_LEN,
};
use crate::kdf::ExpandKey;

/// Length of a data key in bytes (AES-256).
pub const DATA_KEY_LEN: usize = 32;

/// A plaintext 256-bit data key. Held in a [`SecretBox`], zeroized on drop, and never
/// printed: its `Debug` output is `DataKey(<redacted>)`.
///
/// Alongside the key it keeps HMAC-SHA256's state keyed by it ([`ExpandKey`]), computed once
/// when the key is made: suite `0x0002` derives every payload's key from that state, so no
/// payload pays for keying HMAC. The state is as secret as the key and is zeroized on drop
/// too.
pub struct DataKey {
    key: SecretBox<[u8; DATA_KEY_LEN]>,
    expand: Box<ExpandKey>,
}

impl DataKey {
    fn new(key: SecretBox<[u8; DATA_KEY_LEN]>) -> Self {
        let expand = Box::new(ExpandKey::new(key.expose_secret()));
        Self { key, expand }
    }

    /// A fresh random key from the operating system's RNG.
    pub fn generate() -> Result<Self, Error> {
        let mut failed = false;
        let key = SecretBox::init_with_mut(|k: &mut [u8; DATA_KEY_LEN]| {
            failed = getrandom::fill(k).is_err();
        });
        if failed {
            return Err(Error::Randomness);
        }
        Ok(Self::new(key))
    }

    /// Takes ownership of key bytes already in a secret box.
    pub fn from_secret(key: SecretBox<[u8; DATA_KEY_LEN]>) -> Self {
        Self::new(key)
    }

    /// Copies a key from a slice (for instance a KMS response buffer, which the caller
    /// should zeroize). Refuses any length other than 32 bytes.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != DATA_KEY_LEN {
            return Err(Error::InvalidKey(format!(
                "a data key must be {DATA_KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Self::new(SecretBox::init_with_mut(
            |k: &mut [u8; DATA_KEY_LEN]| k.copy_from_slice(bytes),
        )))
    }

    /// The key bytes. Keep the borrow short and never copy them into unprotected memory.
    pub fn expose_secret(&self) -> &[u8; DATA_KEY_LEN] {
        self.key.expose_secret()
    }

    /// HKDF-Expand keyed by this key as PRK (RFC 5869 §3.3: no Extract for a key that is
    /// already uniformly random).
    pub(crate) fn expand_key(&self) -> &ExpandKey {
        &self.expand
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Which key-encryption key (KEK) wrapped a data key: the provider, the KEK's ID, and the
/// KEK version where the KMS reports one. Stored in every envelope header.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KekRef {
    provider: String,
    key_id: String,
    key_version: Option<String>,
}

/// Characters refused in key IDs, key versions and context keys and values: control
/// characters (Unicode Cc), bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E,
/// U+2066–U+2069) and zero-width characters (U+200B–U+200D, U+2060, U+FEFF). The last two
/// kinds print as nothing, so two different key IDs or namespaces could look identical in a
/// log, an audit line or `sealbox inspect` output.
pub(crate) fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Whether `provider` is a valid provider ID (1–32 characters of `[a-z0-9-]`).
pub(crate) fn valid_provider_id(provider: &str) -> bool {
    !provider.is_empty()
        && provider.len() <= MAX_PROVIDER_ID_LEN
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `key_id` is a valid KEK ID (1–2048 bytes, no hidden characters).
pub(crate) fn valid_key_id(key_id: &str) -> bool {
    !key_id.is_empty() && key_id.len() <= MAX_KEY_ID_LEN && !key_id.chars().any(is_hidden_char)
}

/// Whether `version` is a valid KEK version (1–255 bytes, no hidden characters).
pub(crate) fn valid_key_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= MAX_KEY_VERSION_LEN
        && !version.chars().any(is_hidden_char)
}

impl KekRef {
    /// A reference to `provider`'s KEK `key_id`. The provider ID is 1–32 characters of
    /// `[a-z0-9-]`; the key ID 1–2048 bytes of UTF-8 without control, bidirectional-control or
    /// zero-width characters.
    pub fn new(provider: impl Into<String>, key_id: impl Into<String>) -> Result<Self, Error> {
        let provider = provider.into();
        let key_id = key_id.into();
        if !valid_provider_id(&provider) {
            return Err(Error::InvalidKey(format!(
                "provider ID `{}` must be 1-{MAX_PROVIDER_ID_LEN} characters of [a-z0-9-]",
                provider.escape_debug()
            )));
        }
        if !valid_key_id(&key_id) {
            return Err(Error::InvalidKey(format!(
                "key ID must be 1-{MAX_KEY_ID_LEN} bytes without control, bidirectional-control or \
                 zero-width characters (got {} bytes)",
                key_id.len()
            )));
        }
        Ok(Self {
            provider,
            key_id,
            key_version: None,
        })
    }

    /// The same reference with a KEK version (1–255 bytes, no control characters).
    pub fn with_version(mut self, version: impl Into<String>) -> Result<Self, Error> {
        let version = version.into();
        if !valid_key_version(&version) {
            return Err(Error::InvalidKey(format!(
                "key version must be 1-{MAX_KEY_VERSION_LEN} bytes without control, \
                 bidirectional-control or zero-width characters"
            )));
        }
        self.key_version = Some(version);
        Ok(self)
    }

    /// The provider ID.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The KEK ID.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The KEK version, when the KMS reports one.
    pub fn key_version(&self) -> Option<&str> {
        self.key_version.as_deref()
    }

    /// Whether `other` names the same KEK (ignoring the version).
    pub fn same_kek(&self, other: &KekRef) -> bool {
        self.provider == other.provider && self.key_id == other.key_id
    }
}

impl fmt::Debug for KekRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekRef({self})")
    }
}

impl fmt::Display for KekRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.key_id)?;
        if let Some(v) = &self.key_version {
            write!(f, "#{v}")?;
        }
        Ok(())
    }
}

/// A data key encrypted by a KEK, with the reference to that KEK. Not secret (only the KMS
/// can unwrap it), but its bytes are not printed either: `Debug` shows the length.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey {
    kek: KekRef,
    ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// A wrapped key of 1–8192 bytes produced by the KEK `kek`.
    pub fn new(kek: KekRef, ciphertext: Vec<u8>) -> Result<Self, Error> {
        if ciphertext.is_empty() || ciphertext.len() > MAX_WRAPPED_KEY_LEN {
            return Err(Error::InvalidKey(format!(
                "wrapped key must be 1-{MAX_WRAPPED_KEY_LEN} bytes, got {}",
                ciphertext.len()
            )));
        }
        Ok(Self { kek, ciphertext })
    }

    /// The KEK that wrapped this key.
    pub fn kek(&self) -> &KekRef {
        &self.kek
    }

    /// The KMS ciphertext of the data key.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kek", &self.kek)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_key_debug_is_redacted() {
        let key = DataKey::try_from_slice(&[0x41; 32]).expect("32 bytes");
        let dbg = format!("{key:?}");
        assert_eq!(dbg, "DataKey(<redacted>)");
        assert!(DataKey::try_from_slice(&[0; 31]).is_err());
    }

    #[test]
    fn generated_keys_differ() {
        let a = DataKey::generate().expect("rng");
        let b = DataKey::generate().expect("rng");
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn kek_ref_validation() {
        assert!(KekRef::new("aws-kms", "arn:aws:kms:eu-west-1:1:key/x").is_ok());
        assert!(KekRef::new("AWS", "k").is_err());
        assert!(KekRef::new("local", "").is_err());
        assert!(KekRef::new("local", "a\nb").is_err());
        // Key IDs that would print like another one.
        assert!(KekRef::new("local", "old\u{200B}").is_err());
        assert!(KekRef::new("local", "\u{202E}dlo").is_err());
        assert!(
            KekRef::new("local", "k")
                .and_then(|r| r.with_version("1\u{2066}"))
                .is_err()
        );
        let r = KekRef::new("local", "dev")
            .and_then(|r| r.with_version("v1"))
            .expect("valid");
        assert_eq!(r.to_string(), "local:dev#v1");
        assert!(WrappedKey::new(r, Vec::new()).is_err());
    }
}
