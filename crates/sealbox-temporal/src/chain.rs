//! Chaining codecs.

use std::fmt;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use temporalio_common::data_converters::{
    PayloadCodec, PayloadConversionError, SerializationContextData,
};

use crate::Payload;

type DynCodec = Arc<dyn PayloadCodec + Send + Sync>;

/// Codecs applied in order on encode and in reverse order on decode, e.g.
/// `CodecChain::new().then(zstd).then(sealbox)` compresses, then encrypts; decoding
/// decrypts, then decompresses.
#[derive(Clone, Default)]
pub struct CodecChain {
    codecs: Vec<DynCodec>,
}

impl fmt::Debug for CodecChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodecChain")
            .field("len", &self.codecs.len())
            .finish()
    }
}

impl CodecChain {
    /// An empty chain (passes everything through).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `codec`: it encodes after, and decodes before, the codecs already in the chain.
    #[must_use]
    pub fn then(mut self, codec: impl PayloadCodec + Send + Sync + 'static) -> Self {
        self.codecs.push(Arc::new(codec));
        self
    }

    /// The chain a key policy asks for `namespace`: encryption under the policy's KEKs, with
    /// the policy's compression (if any) applied inside the codec — before sealing, and on
    /// decode only to what came out of an envelope — and its `require_encryption`. With a
    /// `[storage]` table, external storage around it ([`crate::storage::StorageCodec`]):
    /// sealed payloads over the namespace's `external_storage` threshold are stored and
    /// replaced by references, and references are resolved on decode.
    #[cfg(feature = "policy")]
    pub fn from_policy(
        policy: Arc<sealbox_policy::PolicyKeyrings>,
        namespace: &str,
    ) -> Result<Self, crate::CodecError> {
        use crate::storage;
        let builder = crate::SealboxCodec::from_policy(Arc::clone(&policy), namespace);
        let Some(settings) = policy.config().storage.as_ref() else {
            return Ok(Self::new().then(builder.build()?));
        };
        let codec = builder.storage_cap(storage::cap_of(settings)).build()?;
        let driver = storage::driver_for(settings)
            .map_err(|e| crate::CodecError::Config(format!("[storage]: {e}")))?;
        let threshold =
            storage::threshold_for(policy.config().policy_for(namespace).external_storage);
        Ok(Self::new()
            .then(storage::StorageCodec::new(codec, Arc::new(driver)).threshold(threshold)))
    }
}

/// What a codec's `encode` or `decode` returns.
type PayloadsFuture = BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>>;

/// One codec step: a codec's `encode` or `decode`.
type Step = fn(&DynCodec, &SerializationContextData, Vec<Payload>) -> PayloadsFuture;

/// Runs `step` of each of `codecs`, in order, each on what the one before returned.
fn run_chain<'a>(
    codecs: impl Iterator<Item = &'a DynCodec>,
    context: &SerializationContextData,
    payloads: Vec<Payload>,
    step: Step,
) -> PayloadsFuture {
    let codecs: Vec<DynCodec> = codecs.cloned().collect();
    let context = context.clone();
    async move {
        let mut payloads = payloads;
        for codec in &codecs {
            payloads = step(codec, &context, payloads).await?;
        }
        Ok(payloads)
    }
    .boxed()
}

impl PayloadCodec for CodecChain {
    fn encode(&self, context: &SerializationContextData, payloads: Vec<Payload>) -> PayloadsFuture {
        run_chain(
            self.codecs.iter(),
            context,
            payloads,
            |codec, context, payloads| codec.encode(context, payloads),
        )
    }

    fn decode(&self, context: &SerializationContextData, payloads: Vec<Payload>) -> PayloadsFuture {
        run_chain(
            self.codecs.iter().rev(),
            context,
            payloads,
            |codec, context, payloads| codec.decode(context, payloads),
        )
    }
}
