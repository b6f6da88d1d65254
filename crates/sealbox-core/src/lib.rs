//! # sealbox-core
//!
//! The foundation of Sealbox: the versioned envelope format (v1), per-payload key derivation
//! with HKDF-SHA256, key commitment, encryption-context binding, the secret [`DataKey`] type,
//! the [`KeyProvider`] trait every KMS backend implements, and one error type.
//!
//! This crate has no KMS SDK and no async runtime in its dependency tree. Most users want
//! the `sealbox` crate, whose `Keyring` adds data-key leases and caches on top.
//!
//! The byte-level specification is `docs/format.md` in the repository; known-answer vectors
//! are in `tests/vectors/`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aead;
pub mod context;
pub mod crypto;
pub mod error;
pub mod format;
mod kdf;
pub mod key;
pub mod provider;
pub mod scheme;
pub mod transport;

pub use context::EncryptionContext;
pub use crypto::{
    open_envelope, open_view, open_with_data_key, seal_with_data_key, seal_with_suite,
    verify_commitment,
};
pub use error::{ContextError, Error, FormatError, ProviderError, ProviderErrorKind};
pub use format::{
    EnvelopeHeader, EnvelopeView, ParsedEnvelope, Suite, inspect, parse, parse_view,
    replace_wrapped_key,
};
pub use key::{DATA_KEY_LEN, DataKey, KekRef, WrappedKey};
pub use provider::{GeneratedKey, KeyDescription, KeyProvider};
pub use scheme::{KekScheme, KekUri, SchemeSettings, SettingError};
