//! The compression codec.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use prost::Message;
use temporalio_common::data_converters::{
    PayloadCodec, PayloadConversionError, SerializationContextData,
};

use crate::error::CodecError;
use crate::{ENCODING_ZSTD, FORMAT_ZSTD_V1, METADATA_ENCODING, METADATA_FORMAT, Payload, meta};

/// Settings of [`ZstdCodec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZstdOptions {
    /// Payloads whose protobuf encoding is smaller than this are left as they are.
    pub min_size: usize,
    /// zstd compression level (1–19).
    pub level: i32,
    /// Decoding refuses a payload that would decompress to more than this (a decompression
    /// bomb guard). Default 64 MiB.
    pub max_decompressed: usize,
}

impl Default for ZstdOptions {
    fn default() -> Self {
        Self {
            min_size: 1024,
            level: 3,
            max_decompressed: 64 * 1024 * 1024,
        }
    }
}

impl ZstdOptions {
    /// Compress payloads of at least `min_size` bytes at `level`.
    pub fn new(min_size: usize, level: i32) -> Self {
        Self {
            min_size,
            level,
            ..Self::default()
        }
    }

    /// Sets the decompression limit.
    #[must_use]
    pub fn max_decompressed(mut self, bytes: usize) -> Self {
        self.max_decompressed = bytes;
        self
    }
}

/// A Temporal [`PayloadCodec`] that compresses the whole payload (metadata and data,
/// serialized as protobuf) with zstd when it is at least `min_size` bytes and compression
/// makes it smaller. The result has `encoding = binary/zstd` and
/// `sealbox-format = sealbox-zstd/1`, so decode is self-describing; other payloads pass
/// through both ways.
///
/// Chain it *before* encryption ([`crate::CodecChain`]): ciphertext does not compress.
/// Compressing before encrypting makes the ciphertext's length depend on the content: an
/// observer who can inject data next to a secret in the same payload and watch payload
/// sizes in the history can learn about the secret (the CRIME/BREACH class of attacks).
/// Leave compression off for payloads that mix attacker-controlled input with secrets, or
/// use a high `min_size`.
#[derive(Debug, Clone)]
pub struct ZstdCodec {
    options: Arc<ZstdOptions>,
}

impl ZstdCodec {
    /// A codec with `options`; fails on an invalid level or a zero decompression limit.
    pub fn new(options: ZstdOptions) -> Result<Self, CodecError> {
        if !(1..=19).contains(&options.level) {
            return Err(CodecError::Config(format!(
                "zstd level {} is out of range 1-19",
                options.level
            )));
        }
        if options.max_decompressed == 0 {
            return Err(CodecError::Config(
                "zstd max_decompressed must be greater than zero".into(),
            ));
        }
        Ok(Self {
            options: Arc::new(options),
        })
    }

    /// Compresses payloads that are large enough and shrink.
    pub fn encode_payloads(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        let o = *self.options;
        payloads
            .into_iter()
            .enumerate()
            .map(|(index, p)| {
                let raw = p.encode_to_vec();
                if raw.len() < o.min_size {
                    return Ok(p);
                }
                let packed =
                    zstd::bulk::compress(&raw, o.level).map_err(|e| CodecError::Malformed {
                        index,
                        format: "zstd",
                        detail: format!("compression failed: {e}"),
                    })?;
                if packed.len() >= raw.len() {
                    return Ok(p);
                }
                let mut metadata = HashMap::with_capacity(2);
                metadata.insert(METADATA_ENCODING.into(), ENCODING_ZSTD.into());
                metadata.insert(METADATA_FORMAT.into(), FORMAT_ZSTD_V1.into());
                Ok(Payload {
                    metadata,
                    data: packed,
                    external_payloads: p.external_payloads,
                })
            })
            .collect()
    }

    /// Decompresses Sealbox zstd payloads; passes the rest through.
    pub fn decode_payloads(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        let limit = self.options.max_decompressed;
        payloads
            .into_iter()
            .enumerate()
            .map(|(index, p)| {
                if meta(&p, METADATA_ENCODING) != Some(ENCODING_ZSTD) {
                    return Ok(p);
                }
                let malformed = |detail: String| CodecError::Malformed {
                    index,
                    format: "zstd",
                    detail,
                };
                match meta(&p, METADATA_FORMAT) {
                    Some(FORMAT_ZSTD_V1) => {}
                    other => {
                        return Err(CodecError::Unsupported {
                            index,
                            detail: format!(
                                "a `{ENCODING_ZSTD}` payload not written by Sealbox (format \
                                 marker {other:?}, expected `{FORMAT_ZSTD_V1}`)"
                            ),
                        });
                    }
                }
                let raw = zstd::bulk::decompress(&p.data, limit).map_err(|e| {
                    malformed(format!(
                        "cannot decompress (corrupt, or larger than the {limit}-byte limit): {e}"
                    ))
                })?;
                Payload::decode(raw.as_slice())
                    .map_err(|e| malformed(format!("not a Temporal Payload: {e}")))
            })
            .collect()
    }
}

impl PayloadCodec for ZstdCodec {
    fn encode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let result = self.encode_payloads(payloads).map_err(Into::into);
        async move { result }.boxed()
    }

    fn decode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let result = self.decode_payloads(payloads).map_err(Into::into);
        async move { result }.boxed()
    }
}
