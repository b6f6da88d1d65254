use temporalio_common::data_converters::PayloadConversionError;

/// Why a codec refused to encode or decode. Never contains payload contents or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Sealing or opening failed in the key-ring (KMS error, wrong namespace, tampering, …).
    #[error("payload {index}: {source}")]
    Envelope {
        /// Position of the payload in the call.
        index: usize,
        /// The key-ring's error.
        #[source]
        source: sealbox_core::Error,
    },
    /// The payload would be too large for Temporal once encoded.
    #[error(
        "payload {index}: {size} bytes after encoding ({input} bytes before, {overhead} added by \
         the codec) exceeds the limit of {limit} bytes (Temporal rejects payloads over 2 MiB); \
         enable compression (ZstdCodec, or `compression` in the key policy) or store large \
         payloads outside Temporal (external storage)"
    )]
    TooLarge {
        /// Position of the payload in the call.
        index: usize,
        /// Size of the payload handed to the codec (protobuf-encoded).
        input: usize,
        /// Size after encoding (protobuf-encoded), or a lower bound when refused early.
        size: usize,
        /// Bytes the codec added.
        overhead: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The payload claims to be in a format we read but is malformed.
    #[error("payload {index}: malformed {format} payload: {detail}")]
    Malformed {
        /// Position of the payload in the call.
        index: usize,
        /// The format it claims.
        format: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The payload is encrypted in a format this decoder is not configured to read.
    #[error("payload {index}: {detail}")]
    Unsupported {
        /// Position of the payload in the call.
        index: usize,
        /// What it is and how to read it.
        detail: String,
    },
    /// A legacy payload could not be decrypted.
    #[error("payload {index}: cannot decrypt {format} payload (key `{key_id}`): {detail}")]
    Legacy {
        /// Position of the payload in the call.
        index: usize,
        /// Which legacy format.
        format: &'static str,
        /// The key ID the payload names.
        key_id: String,
        /// What failed.
        detail: String,
    },
    /// The payloads of one call decompress to more than the per-call budget.
    #[error(
        "payload {index}: the payloads of this call decompress to more than the {budget}-byte \
         per-call budget (a decompression bomb?); nothing was returned"
    )]
    DecompressionBudget {
        /// Position of the payload that crossed the budget.
        index: usize,
        /// The per-call budget in bytes.
        budget: usize,
    },
    /// A payload that is not encrypted where the namespace requires encryption.
    #[error(
        "payload {index}: not encrypted (encoding `{encoding}`), but namespace `{namespace}` \
         requires encryption; refusing it, since a plaintext payload where a sealed one is \
         expected may have been forged by whoever can write to Temporal's store (set \
         `require_encryption = false` in the key policy to accept plaintext during a migration)"
    )]
    Unencrypted {
        /// Position of the payload in the call.
        index: usize,
        /// Its `encoding` metadata (or `<none>`).
        encoding: String,
        /// The namespace whose policy requires encryption.
        namespace: String,
    },
    /// External storage could not store or retrieve a payload (the error names the
    /// reference, never payload data).
    #[error("payload {index}: {source}")]
    Storage {
        /// Position of the payload in the call.
        index: usize,
        /// The driver's error.
        #[source]
        source: crate::storage::StorageError,
    },
    /// A payload given to `/download` is not an external-storage reference.
    #[error("payload {index}: not an external-storage reference")]
    NotAReference {
        /// Position of the payload in the call.
        index: usize,
    },
    /// The codec's configuration is invalid.
    #[error("invalid codec configuration: {0}")]
    Config(String),
}

impl From<CodecError> for PayloadConversionError {
    fn from(e: CodecError) -> Self {
        PayloadConversionError::EncodingError(Box::new(e))
    }
}
