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
    /// Decoding refuses a call whose payloads together would decompress to more than this,
    /// so a request of many small bombs is refused as early as one large one. At least
    /// `max_decompressed`, and at least the largest payload a namespace stores externally.
    /// Default 128 MiB.
    pub call_budget: usize,
}

impl Default for ZstdOptions {
    fn default() -> Self {
        Self {
            min_size: 1024,
            level: 3,
            max_decompressed: 64 * 1024 * 1024,
            call_budget: 128 * 1024 * 1024,
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

    /// Sets the per-payload decompression limit.
    #[must_use]
    pub fn max_decompressed(mut self, bytes: usize) -> Self {
        self.max_decompressed = bytes;
        self
    }

    /// Sets the per-call decompression budget.
    #[must_use]
    pub fn call_budget(mut self, bytes: usize) -> Self {
        self.call_budget = bytes;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), CodecError> {
        if !(1..=19).contains(&self.level) {
            return Err(CodecError::Config(format!(
                "zstd level {} is out of range 1-19",
                self.level
            )));
        }
        if self.max_decompressed == 0 || self.call_budget < self.max_decompressed {
            return Err(CodecError::Config(
                "zstd max_decompressed must be greater than zero and call_budget at least \
                 max_decompressed"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Largest zstd window the decoder accepts (2^24 = 16 MiB): the encoder never uses more
/// (level 19 uses 2^23), and a frame asking for more would make the decoder allocate it.
const WINDOW_LOG_MAX: u32 = 24;

/// Compresses `p` (as the whole protobuf-serialized payload) when it is at least
/// `min_size` bytes and shrinks; otherwise returns it unchanged.
pub(crate) fn compress_payload(
    index: usize,
    p: Payload,
    o: &ZstdOptions,
) -> Result<Payload, CodecError> {
    let raw = zeroize::Zeroizing::new(p.encode_to_vec());
    if raw.len() < o.min_size {
        return Ok(p);
    }
    let packed = zstd::bulk::compress(&raw, o.level).map_err(|e| CodecError::Malformed {
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
}

/// Whether `p` is marked as compressed (by anyone: the format marker is checked when it is
/// decompressed).
pub(crate) fn is_zstd(p: &Payload) -> bool {
    meta(p, METADATA_ENCODING) == Some(ENCODING_ZSTD)
}

/// Whether `p` was compressed by Sealbox (`binary/zstd` marked `sealbox-zstd/1`); another
/// codec's `binary/zstd` inside an envelope is left for that codec.
pub(crate) fn is_sealbox_zstd(p: &Payload) -> bool {
    is_zstd(p) && meta(p, METADATA_FORMAT) == Some(FORMAT_ZSTD_V1)
}

/// What is left of one call's decompression budget.
pub(crate) struct Budget {
    pub(crate) remaining: usize,
    pub(crate) total: usize,
}

impl Budget {
    pub(crate) fn new(total: usize) -> Self {
        Self {
            remaining: total,
            total,
        }
    }
}

/// Decompresses one Sealbox zstd payload, streaming through a bounded reader: at most
/// `min(max_decompressed, budget left)` bytes are ever produced, whatever the frame claims.
pub(crate) fn decompress_payload(
    index: usize,
    p: &Payload,
    max_decompressed: usize,
    budget: &mut Budget,
) -> Result<Payload, CodecError> {
    use std::io::Read;
    let malformed = |detail: String| CodecError::Malformed {
        index,
        format: "zstd",
        detail,
    };
    match meta(p, METADATA_FORMAT) {
        Some(FORMAT_ZSTD_V1) => {}
        other => {
            return Err(CodecError::Unsupported {
                index,
                detail: format!(
                    "a `{ENCODING_ZSTD}` payload not written by Sealbox (format marker \
                     {other:?}, expected `{FORMAT_ZSTD_V1}`)"
                ),
            });
        }
    }
    let limit = max_decompressed.min(budget.remaining);
    let mut decoder = zstd::stream::read::Decoder::with_buffer(p.data.as_slice())
        .map_err(|e| malformed(format!("cannot start decompression: {e}")))?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| malformed(format!("cannot limit the window: {e}")))?;
    let mut raw = zeroize::Zeroizing::new(Vec::new());
    let read = decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| malformed(format!("cannot decompress (corrupt frame): {e}")))?;
    if read > limit {
        return Err(if limit < max_decompressed {
            CodecError::DecompressionBudget {
                index,
                budget: budget.total,
            }
        } else {
            malformed(format!(
                "decompresses to more than the {max_decompressed}-byte limit (a decompression bomb?)"
            ))
        });
    }
    budget.remaining -= read;
    Payload::decode(raw.as_slice()).map_err(|e| malformed(format!("not a Temporal Payload: {e}")))
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
        options.validate()?;
        Ok(Self {
            options: Arc::new(options),
        })
    }

    /// Compresses payloads that are large enough and shrink.
    pub fn encode_payloads(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        payloads
            .into_iter()
            .enumerate()
            .map(|(index, p)| compress_payload(index, p, &self.options))
            .collect()
    }

    /// Decompresses Sealbox zstd payloads (each within `max_decompressed`, all of them
    /// within `call_budget`); passes the rest through. Runs on the calling thread: the
    /// [`PayloadCodec`] implementation moves it off the async runtime.
    ///
    /// Chained after decryption by hand, this decompresses *any* `binary/zstd` payload it is
    /// given, including ones that never were encrypted; the key policy's compression setting
    /// (built into [`crate::SealboxCodec`]) decompresses only what came out of an envelope.
    pub fn decode_payloads(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        let mut budget = Budget::new(self.options.call_budget);
        payloads
            .into_iter()
            .enumerate()
            .map(|(index, p)| {
                if !is_zstd(&p) {
                    return Ok(p);
                }
                decompress_payload(index, &p, self.options.max_decompressed, &mut budget)
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
        let this = self.clone();
        async move {
            crate::blocking(move || this.decode_payloads(payloads))
                .await
                .map_err(Into::into)
        }
        .boxed()
    }
}
