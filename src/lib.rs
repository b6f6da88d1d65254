//! # Sealbox
//!
//! KMS-backed envelope encryption: every payload is sealed with its own AES-256-GCM key,
//! derived from a cached data key that a KEK in a KMS wraps. See the README for a quick start
//! and `docs/` for the format, the threat model and operations.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sealbox::{EncryptionContext, Keyring, LocalKek};
//!
//! let kek = Arc::new(LocalKek::generate("doc-example")?);
//! let keyring = Keyring::builder(kek).build()?;
//! let ctx = EncryptionContext::new().with("namespace", "payments")?;
//! let envelope = keyring.seal(&ctx, b"card 4111...").await?;
//! assert_eq!(sealbox::inspect(&envelope)?.kek().provider(), "local");
//! assert_eq!(keyring.open(&ctx, &envelope).await?, b"card 4111...");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use sealbox_core::{
    ContextError, DATA_KEY_LEN, DataKey, EncryptionContext, EnvelopeHeader, Error, FormatError,
    GeneratedKey, KekRef, KeyDescription, KeyProvider, ProviderError, ProviderErrorKind, Suite,
    WrappedKey, inspect,
};
pub use sealbox_keyring::{
    CacheLimits, Clock, KeyStats, Keyring, KeyringBuilder, LeaseLimits, ManualClock, SystemClock,
};
#[cfg(feature = "local")]
pub use sealbox_local::LocalKek;

/// The lower-level pieces: the format, the primitives and the provider seam.
pub use sealbox_core as core;

/// The README's Rust snippets, compiled as doc tests so the README stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
