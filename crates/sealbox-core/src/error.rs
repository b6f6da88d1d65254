//! Typed errors. None of them ever carries key material: messages name keys by their
//! identifiers only, and provider errors carry the provider's own (secret-free) message.

use std::fmt;
use std::sync::Arc;

/// Why an envelope's bytes could not be parsed. Every malformed input maps to one of
/// these; the parser never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input does not start with the Sealbox magic bytes `SBXE`.
    #[error("not a Sealbox envelope: the first bytes are not the magic \"SBXE\"")]
    BadMagic,
    /// The format version byte names a version this build does not read.
    #[error("unsupported envelope format version {0} (this build reads version 1)")]
    UnsupportedVersion(u8),
    /// The algorithm-suite ID is not one this build implements.
    #[error("unsupported algorithm suite 0x{0:04x} (this build implements 0x0001)")]
    UnsupportedSuite(u16),
    /// The input ended inside a field.
    #[error("envelope truncated in {field}: {needed} bytes needed, {available} available")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes that were left.
        available: u64,
    },
    /// A length field is outside the range the format allows.
    #[error("invalid length for {field}: {len} (allowed {min}..={max})")]
    InvalidLength {
        /// The field whose length is wrong.
        field: &'static str,
        /// The length found.
        len: u64,
        /// The smallest allowed length.
        min: u64,
        /// The largest allowed length.
        max: u64,
    },
    /// A text field is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field that is not UTF-8.
        field: &'static str,
    },
    /// A field has a value the format forbids.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Bytes follow the declared end of the envelope.
    #[error("{count} unexpected bytes after the end of the envelope body")]
    TrailingBytes {
        /// How many bytes follow the body.
        count: u64,
    },
}

/// Why an encryption context was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// Context keys must be non-empty.
    #[error("encryption context keys must not be empty")]
    EmptyKey,
    /// A key is longer than [`crate::context::MAX_CONTEXT_KEY_LEN`].
    #[error("encryption context key of {len} bytes exceeds the maximum of {max}")]
    KeyTooLong {
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A value is longer than [`crate::context::MAX_CONTEXT_VALUE_LEN`].
    #[error("encryption context value for key `{key}` is {len} bytes, over the maximum of {max}")]
    ValueTooLong {
        /// The key whose value is too long.
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// More pairs than [`crate::context::MAX_CONTEXT_PAIRS`].
    #[error("encryption context has more than {max} pairs")]
    TooManyPairs {
        /// The maximum.
        max: usize,
    },
    /// The encoded context would exceed [`crate::context::MAX_CONTEXT_ENCODED_LEN`].
    #[error("encoded encryption context would be {len} bytes, over the maximum of {max}")]
    TooLarge {
        /// The encoded length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A key or value contains a control, bidirectional-control or zero-width character.
    #[error(
        "encryption context key `{key}` or its value contains a control, bidirectional-control \
         or zero-width character"
    )]
    ControlCharacter {
        /// The offending key (control characters escaped).
        key: String,
    },
}

/// What kind of failure a [`ProviderError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderErrorKind {
    /// The KEK (or the key version) does not exist.
    NotFound,
    /// The credentials lack permission for the operation.
    PermissionDenied,
    /// The wrapped key did not unwrap: wrong KEK, wrong encryption context, or corrupted.
    InvalidWrappedKey,
    /// The KEK or version exists but is disabled, destroyed or below the minimum decryption version.
    KeyDisabled,
    /// The KMS could not be reached or answered with a server error.
    Unavailable,
    /// The KMS throttled the request.
    Throttled,
    /// The request timed out.
    Timeout,
    /// The provider is configured wrongly (bad key file, bad URI, missing credentials).
    Misconfigured,
    /// The provider cannot do this operation.
    Unsupported,
    /// The KMS answered something the provider did not expect.
    Protocol,
}

impl ProviderErrorKind {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Unavailable | Self::Throttled | Self::Timeout)
    }

    fn describe(self) -> &'static str {
        match self {
            Self::NotFound => "key not found",
            Self::PermissionDenied => "permission denied",
            Self::InvalidWrappedKey => {
                "wrapped key did not unwrap (wrong key, wrong context or corrupted)"
            }
            Self::KeyDisabled => "key disabled",
            Self::Unavailable => "KMS unavailable",
            Self::Throttled => "throttled",
            Self::Timeout => "timed out",
            Self::Misconfigured => "misconfigured",
            Self::Unsupported => "operation not supported",
            Self::Protocol => "unexpected KMS response",
        }
    }
}

/// A failure inside a [`crate::KeyProvider`]: names the provider, the key, the kind of failure
/// and whether a retry may help. It never contains key material.
#[derive(Clone)]
pub struct ProviderError {
    provider: String,
    key_id: String,
    kind: ProviderErrorKind,
    message: String,
    retryable: bool,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ProviderError {
    /// A new error for `provider`'s key `key_id`. `message` must not contain secrets.
    pub fn new(
        provider: impl Into<String>,
        key_id: impl Into<String>,
        kind: ProviderErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            provider: provider.into(),
            key_id: key_id.into(),
            kind,
            message: message.into(),
            retryable: kind.is_transient(),
            source: None,
        }
    }

    /// Attaches the underlying error (which must not contain secrets).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Overrides whether a retry may help (the default follows [`ProviderErrorKind::is_transient`]).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The provider that failed (`local`, `aws-kms`, `gcp-kms`, `vault-transit`, …).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The KEK the failing call was about.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The kind of failure.
    pub fn kind(&self) -> ProviderErrorKind {
        self.kind
    }

    /// The provider's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Debug for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderError")
            .field("provider", &self.provider)
            .field("key_id", &self.key_id)
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("retryable", &self.retryable)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} key `{}`: {}",
            self.provider,
            self.key_id,
            self.kind.describe()
        )?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if self.retryable {
            write!(f, " (transient: a retry may succeed)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// The error type of sealing, opening and rewrapping envelopes.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The envelope's bytes are malformed.
    #[error("malformed envelope: {0}")]
    Format(#[from] FormatError),
    /// The encryption context was refused.
    #[error("invalid encryption context: {0}")]
    Context(#[from] ContextError),
    /// A key provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The envelope names a KEK that this key-ring is not configured to trust for decryption.
    #[error(
        "envelope is wrapped by {provider} key `{key_id}`, which this key-ring is not configured to use"
    )]
    UnknownKek {
        /// The provider named in the envelope.
        provider: String,
        /// The KEK named in the envelope.
        key_id: String,
    },
    /// The envelope was sealed under a different encryption context than the caller expects
    /// (for Temporal: another namespace). Only the differing keys are named.
    #[error("encryption context does not match the envelope: {0}")]
    ContextMismatch(String),
    /// The data key does not match the envelope's key commitment.
    #[error(
        "key commitment mismatch: the unwrapped data key is not the one this envelope was sealed with"
    )]
    CommitmentMismatch,
    /// AES-GCM authentication failed: the envelope was corrupted or tampered with.
    #[error("envelope failed authentication: it was corrupted or tampered with")]
    Authentication,
    /// The plaintext is larger than one envelope can hold.
    #[error("plaintext of {len} bytes exceeds the maximum of {max} bytes for one envelope")]
    PlaintextTooLarge {
        /// The plaintext length.
        len: u64,
        /// The maximum.
        max: u64,
    },
    /// The operating system's random number generator failed; nothing was sealed.
    #[error("the operating system random number generator failed")]
    Randomness,
    /// A key or key reference handed to Sealbox is invalid.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The key-ring's configuration is invalid.
    #[error("invalid key-ring configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Provider(e) if e.is_retryable())
    }
}

/// The messages of `e`'s sources (not of `e` itself), outermost first, joined by `": "`;
/// empty when `e` has no source. For a message that includes `e`, write
/// `format!("{e}: {}", source_chain(&e))`.
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// `e` and its sources, joined with `": "`, skipping a source whose message its parent's
/// already contains (many errors repeat their source in their own message).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|s| s as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn source_chain_joins_only_the_sources() {
        let e = Layer(
            "outer",
            Some(Box::new(Layer(
                "middle",
                Some(Box::new(Layer("inner", None))),
            ))),
        );
        assert_eq!(source_chain(&e), "middle: inner");
        assert_eq!(source_chain(&Layer("alone", None)), "");
    }
}
