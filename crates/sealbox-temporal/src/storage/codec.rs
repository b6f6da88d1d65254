//! [`StorageCodec`]: the Sealbox codec with Temporal's external storage around it.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use prost::Message;
use temporalio_common::data_converters::{
    PayloadCodec, PayloadConversionError, SerializationContextData,
};

use super::driver::{StorageClaim, StorageContext, StorageDriver, StorageError};
use super::reference::{ExternalStorageReference, is_marked_reference, is_plain_reference};
use crate::{CodecError, Payload, SealboxCodec, TEMPORAL_PAYLOAD_LIMIT, sealbox_envelope};

/// Temporal's default threshold: payloads of 256 KiB and more (protobuf size, after
/// encoding) are stored outside history.
pub const DEFAULT_THRESHOLD: usize = 256 * 1024;

/// Which encoded payloads go to external storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// Payloads whose encoded protobuf size is at least this many bytes.
    Bytes(usize),
    /// Every payload (nothing encrypted enters history but references).
    Always,
}

impl Threshold {
    fn offloads(self, size: usize) -> bool {
        match self {
            Threshold::Always => true,
            Threshold::Bytes(n) => size >= n,
        }
    }
}

/// Seals payloads with a [`SealboxCodec`], then stores those over a threshold with a
/// [`StorageDriver`] and puts a plain `ExternalStorageReference` in their place (on the way
/// out); resolves references, then opens (on the way in). The stored object is the
/// protobuf-serialized **sealed** payload, so the store holds only envelopes bound to the
/// namespace; the reference in history holds no payload data (bucket, key, hash, size).
///
/// Decoding reads plain references and codec-encoded ones marked
/// `__temporal_external_storage_reference` (opened first, then resolved). A retrieved object
/// must be a Sealbox envelope, and it opens only in its own namespace: a reference copied
/// into another namespace opens nowhere.
#[derive(Clone, Debug)]
pub struct StorageCodec {
    codec: SealboxCodec,
    driver: Arc<dyn StorageDriver>,
    threshold: Threshold,
    context: StorageContext,
}

impl StorageCodec {
    /// External storage with `driver` around `codec`, at [`DEFAULT_THRESHOLD`]. The codec
    /// must accept payloads as large as the driver's cap
    /// ([`crate::SealboxCodecBuilder::max_payload_bytes`]); what stays in history is still
    /// held to Temporal's 2 MiB.
    pub fn new(codec: SealboxCodec, driver: Arc<dyn StorageDriver>) -> Self {
        let context = StorageContext {
            namespace: codec.namespace().to_owned(),
        };
        Self {
            codec,
            driver,
            threshold: Threshold::Bytes(DEFAULT_THRESHOLD),
            context,
        }
    }

    /// Sets the threshold.
    #[must_use]
    pub fn threshold(mut self, threshold: Threshold) -> Self {
        self.threshold = threshold;
        self
    }

    /// Seals, then stores what is over the threshold.
    pub async fn encode_payloads(
        &self,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Payload>, CodecError> {
        let mut sealed = self.codec.encode_payloads(payloads).await?;
        let offload: Vec<usize> = sealed
            .iter()
            .enumerate()
            .filter(|(_, p)| self.threshold.offloads(p.encoded_len()))
            .map(|(i, _)| i)
            .collect();
        if !offload.is_empty() {
            let batch: Vec<Payload> = offload.iter().map(|&i| sealed[i].clone()).collect();
            let claims = self
                .driver
                .store(&self.context, &batch)
                .await
                .map_err(|source| CodecError::Storage {
                    index: offload[0],
                    source,
                })?;
            for ((&i, claim), stored) in offload.iter().zip(claims).zip(&batch) {
                let reference = ExternalStorageReference {
                    driver_name: self.driver.name().to_owned(),
                    claim_data: claim.claim_data,
                };
                sealed[i] = reference.to_payload(stored.encoded_len());
            }
        }
        for (index, p) in sealed.iter().enumerate() {
            let size = p.encoded_len();
            if size > TEMPORAL_PAYLOAD_LIMIT {
                return Err(CodecError::TooLarge {
                    index,
                    input: size,
                    size,
                    overhead: 0,
                    limit: TEMPORAL_PAYLOAD_LIMIT,
                });
            }
        }
        Ok(sealed)
    }

    /// Resolves references (unless `preserve_references`: then plain references are
    /// returned as they are, and marked ones decoded to plain ones), then opens.
    pub async fn decode_payloads(
        &self,
        payloads: Vec<Payload>,
        preserve_references: bool,
    ) -> Result<Vec<Payload>, CodecError> {
        let mut payloads = self.unmark(payloads).await?;
        if !preserve_references {
            self.resolve(&mut payloads).await?;
        }
        self.codec.decode_payloads(payloads).await
    }

    /// The codec server's `/download`: every payload must be a reference (else
    /// [`CodecError::NotAReference`]); each is retrieved and opened.
    pub async fn download(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        if let Some(index) = payloads
            .iter()
            .position(|p| !is_plain_reference(p) && !is_marked_reference(p))
        {
            return Err(CodecError::NotAReference { index });
        }
        self.decode_payloads(payloads, false).await
    }

    /// Opens codec-encoded references (marked `__temporal_external_storage_reference`);
    /// each must open to a plain reference.
    async fn unmark(&self, mut payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        let marked: Vec<usize> = (0..payloads.len())
            .filter(|&i| is_marked_reference(&payloads[i]) && !is_plain_reference(&payloads[i]))
            .collect();
        if marked.is_empty() {
            return Ok(payloads);
        }
        let batch: Vec<Payload> = marked.iter().map(|&i| payloads[i].clone()).collect();
        let opened = self.codec.decode_payloads(batch).await?;
        for (&i, p) in marked.iter().zip(opened) {
            if !is_plain_reference(&p) {
                return Err(CodecError::Storage {
                    index: i,
                    source: StorageError::Invalid(
                        "a payload marked as an external-storage reference is not one".into(),
                    ),
                });
            }
            payloads[i] = p;
        }
        Ok(payloads)
    }

    /// Replaces plain references by the sealed payloads they point to.
    async fn resolve(&self, payloads: &mut [Payload]) -> Result<(), CodecError> {
        let mut at = Vec::new();
        let mut claims = Vec::new();
        for (index, p) in payloads.iter().enumerate() {
            let Some(parsed) = ExternalStorageReference::from_payload(p) else {
                continue;
            };
            let storage = |source| CodecError::Storage { index, source };
            let reference = parsed.map_err(|e| storage(StorageError::Invalid(e)))?;
            if reference.driver_name != self.driver.name() {
                return Err(storage(StorageError::Invalid(format!(
                    "the reference names driver `{}`; this codec reads `{}`",
                    reference.driver_name,
                    self.driver.name()
                ))));
            }
            at.push(index);
            claims.push(StorageClaim {
                claim_data: reference.claim_data,
            });
        }
        if at.is_empty() {
            return Ok(());
        }
        let retrieved = self
            .driver
            .retrieve(&self.context, &claims)
            .await
            .map_err(|source| CodecError::Storage {
                index: at[0],
                source,
            })?;
        for ((&index, claim), p) in at.iter().zip(&claims).zip(retrieved) {
            if sealbox_envelope(&p).is_none() {
                let key = claim.claim_data.get("key").map_or("?", String::as_str);
                return Err(CodecError::Storage {
                    index,
                    source: StorageError::Invalid(format!(
                        "the object at `{key}` is not a Sealbox envelope; refusing it"
                    )),
                });
            }
            payloads[index] = p;
        }
        Ok(())
    }
}

impl PayloadCodec for StorageCodec {
    fn encode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let this = self.clone();
        async move { Ok(this.encode_payloads(payloads).await?) }.boxed()
    }

    fn decode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let this = self.clone();
        async move { Ok(this.decode_payloads(payloads, false).await?) }.boxed()
    }
}
