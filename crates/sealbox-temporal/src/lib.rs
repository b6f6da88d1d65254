//! Temporal payload codecs backed by Sealbox envelope encryption.
//!
//! - [`SealboxCodec`] seals every payload — its metadata and data, serialized as protobuf —
//!   into a Sealbox envelope bound to one Temporal namespace. The result is marked
//!   `encoding = binary/encrypted`, carries the KEK in `encryption-key-id` and names the
//!   format in `sealbox-format`, so no other codec mistakes it for its own and we never
//!   mistake theirs for ours. Encoding never passes a payload through in plaintext: if
//!   sealing fails, the call fails.
//! - [`ZstdCodec`] compresses payloads above a size threshold (encoding `binary/zstd`,
//!   marked as ours); chain it before the encryption codec with [`CodecChain`].
//! - [`LegacyFormats`] lets the decoder read payloads written by Temporal's encryption
//!   samples (static AES-256-GCM keys) and by Temporal Proxy (KMS-wrapped DEKs), for
//!   migrations.
//! - [`data_converter`] builds a Temporal `DataConverter` whose failure converter moves
//!   failure messages and stack traces into an encoded (so encrypted) attribute payload.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sealbox_keyring::Keyring;
//! use sealbox_temporal::{SealboxCodec, data_converter};
//! # let kek: Arc<dyn sealbox_core::KeyProvider> = unimplemented!();
//! let keyring = Keyring::builder(kek).build()?;
//! let codec = SealboxCodec::builder(keyring, "payments").build()?;
//! let converter = data_converter(codec);
//! // ClientOptions::new("payments").data_converter(converter).build()
//! # let _ = converter; Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod chain;
mod codec;
mod error;
pub mod json;
mod legacy;
pub mod storage;
mod zstd_codec;

pub use chain::CodecChain;
pub use codec::{CodecStats, SealboxCodec, SealboxCodecBuilder};
pub use error::CodecError;
pub use legacy::{LegacyFormats, ProxyKek};
pub use zstd_codec::{ZstdCodec, ZstdOptions};

pub use temporalio_common::data_converters::{
    DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError, PayloadConverter,
    SerializationContextData,
};
pub use temporalio_common::protos::temporal::api::common::v1::Payload;

/// The metadata key holding a payload's encoding.
pub const METADATA_ENCODING: &str = "encoding";
/// The encoding of an encrypted payload (ours, Temporal's samples' and Temporal Proxy's).
pub const ENCODING_ENCRYPTED: &str = "binary/encrypted";
/// The encoding of a payload compressed by [`ZstdCodec`].
pub const ENCODING_ZSTD: &str = "binary/zstd";
/// The metadata key naming the KEK that wrapped the payload's data key.
pub const METADATA_KEY_ID: &str = "encryption-key-id";
/// The metadata key that marks a payload as written by Sealbox, with the format version.
pub const METADATA_FORMAT: &str = "sealbox-format";
/// [`METADATA_FORMAT`] of an encrypted payload: a Sealbox v1 envelope (`docs/format.md`)
/// over the protobuf serialization of the original payload.
pub const FORMAT_ENVELOPE_V1: &str = "sealbox-envelope/1";
/// [`METADATA_FORMAT`] of a compressed payload: a zstd frame over the protobuf serialization
/// of the original payload.
pub const FORMAT_ZSTD_V1: &str = "sealbox-zstd/1";
/// Temporal Proxy's metadata key for the KMS-wrapped data key.
pub const METADATA_PROXY_DEK: &str = "encryption-dek";
/// Temporal's default limit on one payload (the server rejects larger blobs): 2 MiB.
pub const TEMPORAL_PAYLOAD_LIMIT: usize = 2 * 1024 * 1024;

/// A `DataConverter` with Temporal's default payload converter, `codec`, and a failure
/// converter that encodes common attributes: failure messages and stack traces are moved
/// into `encoded_attributes`, a payload that goes through `codec` (so they are encrypted),
/// and the failure shows `"Encoded failure"` in plaintext instead.
pub fn data_converter(codec: impl PayloadCodec + Send + Sync + 'static) -> DataConverter {
    DataConverter::new(
        PayloadConverter::default(),
        DefaultFailureConverter::new(true),
        codec,
    )
}

/// The `encoding` of Temporal's null payload (`None`, `nil`, `undefined`).
pub const ENCODING_NULL: &str = "binary/null";
/// The `encoding` of a protobuf message serialized as JSON.
pub const ENCODING_JSON_PROTOBUF: &str = "json/protobuf";
/// The metadata key naming a protobuf payload's message type.
pub const METADATA_MESSAGE_TYPE: &str = "messageType";
/// The message type of Temporal's external-storage (claim check) reference.
pub const EXTERNAL_STORAGE_REFERENCE_TYPE: &str = "temporal.api.sdk.v1.ExternalStorageReference";
/// The metadata key with which an SDK marks a codec-encoded external-storage reference.
pub const METADATA_EXTERNAL_STORAGE_REFERENCE: &str = "__temporal_external_storage_reference";

/// Whether a payload that is not encrypted may still be accepted where a namespace requires
/// encryption: Temporal's null payload (`binary/null`, which carries no data) and
/// external-storage references (`json/protobuf` of
/// `temporal.api.sdk.v1.ExternalStorageReference`, or marked with
/// `__temporal_external_storage_reference`), which hold no payload data by design — the data
/// they point to is stored encrypted.
pub fn plaintext_by_design(p: &Payload) -> bool {
    match meta(p, METADATA_ENCODING) {
        Some(ENCODING_NULL) => p.data.is_empty(),
        Some(ENCODING_JSON_PROTOBUF)
            if meta(p, METADATA_MESSAGE_TYPE) == Some(EXTERNAL_STORAGE_REFERENCE_TYPE) =>
        {
            true
        }
        _ => p.metadata.contains_key(METADATA_EXTERNAL_STORAGE_REFERENCE),
    }
}

/// Whether `p` is sealed (or claims to be: any `binary/encrypted` payload, ours or a
/// legacy format's).
pub fn is_encrypted(p: &Payload) -> bool {
    meta(p, METADATA_ENCODING) == Some(ENCODING_ENCRYPTED)
}

/// The envelope inside `p` when it is a Sealbox payload (`binary/encrypted`, marked
/// `sealbox-envelope/1`).
pub fn sealbox_envelope(p: &Payload) -> Option<&[u8]> {
    (is_encrypted(p) && meta(p, METADATA_FORMAT) == Some(FORMAT_ENVELOPE_V1))
        .then_some(p.data.as_slice())
}

/// Runs CPU-heavy work (decompression) off the async runtime when there is one, so that
/// timeouts around the call can fire; inline otherwise.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CodecError> + Send + 'static,
) -> Result<T, CodecError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(work)
            .await
            .map_err(|e| CodecError::Config(format!("the decompression task failed: {e}")))?,
        Err(_) => work(),
    }
}

/// The value of metadata `key` if it is valid UTF-8.
pub(crate) fn meta<'a>(payload: &'a Payload, key: &str) -> Option<&'a str> {
    payload
        .metadata
        .get(key)
        .and_then(|v| std::str::from_utf8(v).ok())
}
