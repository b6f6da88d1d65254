//! The encryption codec.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use prost::Message;
use sealbox_core::EncryptionContext;
use sealbox_keyring::Keyring;
use temporalio_common::data_converters::{
    PayloadCodec, PayloadConversionError, SerializationContextData,
};
use zeroize::Zeroizing;

use crate::error::CodecError;
use crate::legacy::LegacyFormats;
use crate::zstd_codec::{
    Budget, ZstdOptions, compress_payload, decompress_payload, is_sealbox_zstd,
};
use crate::{
    ENCODING_ENCRYPTED, FORMAT_ENVELOPE_V1, METADATA_ENCODING, METADATA_FORMAT, METADATA_KEY_ID,
    METADATA_PROXY_DEK, Payload, TEMPORAL_PAYLOAD_LIMIT, meta,
};

/// The context key that holds the namespace (the same key the key policy uses).
const NAMESPACE_KEY: &str = "namespace";

/// Where the codec gets its key-ring and encryption context.
enum KeySource {
    /// One key-ring; the context is `{namespace}`.
    Fixed {
        keyring: Keyring,
        context: EncryptionContext,
    },
    /// A policy: the namespace's rule picks the key-ring and extra context.
    #[cfg(feature = "policy")]
    Policy(Arc<sealbox_policy::PolicyKeyrings>),
    /// A policy that may be reloaded; each call uses the policy in force when it starts.
    #[cfg(feature = "policy")]
    Reloadable(Arc<sealbox_policy::ReloadablePolicy>),
}

/// What one call works with: the namespace's key-ring, context and settings.
struct Resolved {
    keyring: Keyring,
    context: EncryptionContext,
    /// Compression from the key policy (fixed codecs: from the builder).
    compression: Option<ZstdOptions>,
    /// The key policy's `require_encryption` (fixed codecs: true).
    require_encryption: bool,
}

impl KeySource {
    fn resolve(&self, namespace: &str) -> Result<Resolved, sealbox_core::Error> {
        #[cfg(not(feature = "policy"))]
        let _ = namespace; // a fixed codec's context is its own
        match self {
            KeySource::Fixed { keyring, context } => Ok(Resolved {
                keyring: keyring.clone(),
                context: context.clone(),
                compression: None,
                require_encryption: true,
            }),
            #[cfg(feature = "policy")]
            KeySource::Policy(p) => Ok(from_tenant(&p.tenant(namespace)?)),
            #[cfg(feature = "policy")]
            KeySource::Reloadable(p) => Ok(from_tenant(&p.current().tenant(namespace)?)),
        }
    }
}

#[cfg(feature = "policy")]
fn from_tenant(t: &sealbox_policy::Tenant<'_>) -> Resolved {
    Resolved {
        keyring: t.keyring.clone(),
        context: t.context.clone(),
        compression: t
            .policy
            .compression
            .as_ref()
            .map(|c| ZstdOptions::new(usize::try_from(c.min_size).unwrap_or(usize::MAX), c.level)),
        require_encryption: t.policy.require_encryption,
    }
}

#[derive(Default)]
struct Counters {
    encoded: AtomicU64,
    decoded: AtomicU64,
    legacy_decoded: AtomicU64,
    passed_through: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// Counters of one codec since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodecStats {
    /// Payloads sealed.
    pub encoded: u64,
    /// Sealbox payloads opened.
    pub decoded: u64,
    /// Legacy (samples / Proxy) payloads opened.
    pub legacy_decoded: u64,
    /// Payloads that decode left untouched because they were not encrypted.
    pub passed_through: u64,
    /// Protobuf-encoded size of the payloads handed to `encode`.
    pub bytes_in: u64,
    /// Protobuf-encoded size of the payloads `encode` returned.
    pub bytes_out: u64,
}

impl CodecStats {
    /// Bytes the codec added to the payloads it sealed (envelope header, wrapped key,
    /// commitment, tag and the outer metadata).
    pub fn overhead_bytes(&self) -> u64 {
        self.bytes_out.saturating_sub(self.bytes_in)
    }
}

struct Inner {
    source: KeySource,
    namespace: String,
    max_payload_bytes: usize,
    legacy: LegacyFormats,
    pass_through_foreign: bool,
    /// Overrides the policy's `require_encryption` when set.
    require_encryption: Option<bool>,
    /// Overrides the policy's compression when set.
    compression: Option<Option<ZstdOptions>>,
    /// Decompression limits (per payload, per call) for what comes out of envelopes.
    decompression: ZstdOptions,
    counters: Counters,
}

/// A Temporal [`PayloadCodec`] that seals each payload in a Sealbox envelope bound to one
/// namespace. Cheap to clone (shared state).
///
/// **Encode** serializes the whole payload (metadata and data) as protobuf and seals it
/// under the context `{namespace: <ns>}` (plus the policy's extra fields). The result has
/// metadata `encoding = binary/encrypted`, `encryption-key-id = <KEK>` and
/// `sealbox-format = sealbox-envelope/1`; its data is the envelope. Any failure fails the
/// call: no payload is ever passed through unencrypted. A payload that would exceed the
/// size limit (default 2 MiB, Temporal's) once sealed is refused with an error that says so.
///
/// **Decode** opens Sealbox payloads (all of a call's distinct wrapped keys unwrapped in one
/// batch per KEK, then cached), decompresses what came out of an envelope compressed (within
/// a per-payload limit and a per-call budget, off the async runtime), and reads legacy
/// formats configured with [`SealboxCodecBuilder::legacy`]. A payload sealed for another
/// namespace fails (the context does not match). An encrypted payload in a format it cannot
/// read is an error naming the format, unless [`SealboxCodecBuilder::pass_through_foreign`]
/// is set (for chaining with another codec).
///
/// **Plaintext on decode.** By default (and for every namespace of a key policy, unless its
/// rule says `require_encryption = false`) a payload that is not encrypted is refused:
/// whoever can write to Temporal's store could otherwise replace a sealed input or result
/// with a forged plaintext one that workers would accept as genuine. Temporal's null payload
/// (`binary/null`) and external-storage references pass, being plaintext by design (see
/// [`crate::plaintext_by_design`]). With `require_encryption` off, plaintext payloads are
/// returned untouched.
#[derive(Clone)]
pub struct SealboxCodec {
    inner: Arc<Inner>,
}

impl fmt::Debug for SealboxCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealboxCodec")
            .field("namespace", &self.inner.namespace)
            .field("max_payload_bytes", &self.inner.max_payload_bytes)
            .field("legacy", &self.inner.legacy)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SealboxCodec`]: the codec's settings, checked by [`SealboxCodecBuilder::build`].
#[must_use]
pub struct SealboxCodecBuilder {
    inner: Inner,
}

impl SealboxCodec {
    /// A codec for `namespace` that seals with `keyring`.
    pub fn builder(keyring: Keyring, namespace: impl Into<String>) -> SealboxCodecBuilder {
        SealboxCodecBuilder::new(
            KeySource::Fixed {
                keyring,
                context: EncryptionContext::new(),
            },
            namespace.into(),
        )
    }

    /// A codec for `namespace` under a loaded key policy: the namespace's rule picks the
    /// KEKs, lease limits and extra context. (The policy's compression setting is applied by
    /// [`crate::CodecChain::from_policy`].)
    #[cfg(feature = "policy")]
    pub fn from_policy(
        policy: Arc<sealbox_policy::PolicyKeyrings>,
        namespace: impl Into<String>,
    ) -> SealboxCodecBuilder {
        SealboxCodecBuilder::new(KeySource::Policy(policy), namespace.into())
    }

    /// Like [`SealboxCodec::from_policy`] for a policy that is reloaded while in use; every
    /// call uses the policy in force when it starts.
    #[cfg(feature = "policy")]
    pub fn from_reloadable(
        policy: Arc<sealbox_policy::ReloadablePolicy>,
        namespace: impl Into<String>,
    ) -> SealboxCodecBuilder {
        SealboxCodecBuilder::new(KeySource::Reloadable(policy), namespace.into())
    }

    /// The namespace this codec seals for.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Counters since the codec was built, including the bytes it added.
    pub fn stats(&self) -> CodecStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CodecStats {
            encoded: get(&c.encoded),
            decoded: get(&c.decoded),
            legacy_decoded: get(&c.legacy_decoded),
            passed_through: get(&c.passed_through),
            bytes_in: get(&c.bytes_in),
            bytes_out: get(&c.bytes_out),
        }
    }

    /// Seals `payloads` (see the type's documentation).
    pub async fn encode_payloads(
        &self,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Payload>, CodecError> {
        self.inner.encode(payloads).await
    }

    /// Opens `payloads` (see the type's documentation).
    pub async fn decode_payloads(
        &self,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Payload>, CodecError> {
        self.inner.decode(payloads).await
    }
}

impl SealboxCodecBuilder {
    fn new(source: KeySource, namespace: String) -> Self {
        let inner = Inner {
            source,
            namespace,
            max_payload_bytes: TEMPORAL_PAYLOAD_LIMIT,
            legacy: LegacyFormats::default(),
            pass_through_foreign: false,
            require_encryption: None,
            compression: None,
            decompression: ZstdOptions::default(),
            counters: Counters::default(),
        };
        Self { inner }
    }

    /// Refuse payloads that are not encrypted on decode (see the codec's documentation).
    /// Default: the key policy's `require_encryption` (itself on by default); on for a codec
    /// built from a key-ring.
    pub fn require_encryption(mut self, yes: bool) -> Self {
        self.inner.require_encryption = Some(yes);
        self
    }

    /// Compress payloads before sealing them (`None`: never). Default: the key policy's
    /// `compression`; none for a codec built from a key-ring. Compressed payloads are
    /// decompressed on decode whatever this says, but only when they come out of an
    /// envelope. See [`crate::ZstdCodec`] for the compression side channel.
    pub fn compression(mut self, options: Option<ZstdOptions>) -> Self {
        self.inner.compression = Some(options);
        self
    }

    /// Limits on decompressing what comes out of envelopes: `max_decompressed` per payload
    /// and `call_budget` per call (defaults 64 MiB and 128 MiB). The budget must be at least
    /// the largest payload a namespace stores, externally included.
    pub fn decompression_limits(mut self, max_decompressed: usize, call_budget: usize) -> Self {
        self.inner.decompression = self
            .inner
            .decompression
            .max_decompressed(max_decompressed)
            .call_budget(call_budget);
        self
    }

    /// Sizes for a codec in front of external storage capped at `cap` bytes per payload:
    /// payloads up to the cap reach the codec (they are stored, not put in history), and the
    /// decompression limits are at least the cap.
    pub fn storage_cap(self, cap: usize) -> Self {
        self.max_payload_bytes(cap.max(crate::TEMPORAL_PAYLOAD_LIMIT))
            .decompression_limits(cap.max(64 << 20), cap.saturating_mul(2).max(128 << 20))
    }

    /// Refuse to produce payloads larger than this (protobuf-encoded). Default: 2 MiB,
    /// Temporal's default blob size limit. Lower it if your server is configured lower.
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.inner.max_payload_bytes = limit;
        self
    }

    /// Legacy formats the decoder should read (migration from Temporal's samples or Proxy).
    pub fn legacy(mut self, legacy: LegacyFormats) -> Self {
        self.inner.legacy = legacy;
        self
    }

    /// Pass through encrypted payloads in formats this codec cannot read instead of failing
    /// (for a chain where another codec decodes them). Default: fail with an error naming
    /// the format.
    pub fn pass_through_foreign(mut self, yes: bool) -> Self {
        self.inner.pass_through_foreign = yes;
        self
    }

    /// Checks the settings and builds the codec.
    pub fn build(self) -> Result<SealboxCodec, CodecError> {
        let mut inner = self.inner;
        if inner.namespace.is_empty() {
            return Err(CodecError::Config("the namespace must not be empty".into()));
        }
        if inner.max_payload_bytes == 0 {
            return Err(CodecError::Config(
                "max_payload_bytes must be greater than zero".into(),
            ));
        }
        inner.decompression.validate()?;
        if let Some(Some(c)) = &inner.compression {
            c.validate()?;
        }
        inner.source = match inner.source {
            KeySource::Fixed { keyring, .. } => KeySource::Fixed {
                keyring,
                context: EncryptionContext::new()
                    .with(NAMESPACE_KEY, inner.namespace.clone())
                    .map_err(|e| CodecError::Config(format!("namespace: {e}")))?,
            },
            #[cfg(feature = "policy")]
            other => other,
        };
        // Resolve once so that a namespace the policy cannot serve fails now, not per call.
        inner
            .source
            .resolve(&inner.namespace)
            .map_err(|e| CodecError::Config(format!("namespace `{}`: {e}", inner.namespace)))?;
        Ok(SealboxCodec {
            inner: Arc::new(inner),
        })
    }
}

/// How decode treats one payload.
enum Kind {
    Plain,
    Sealbox,
    Samples,
    Proxy,
    /// Marked as Sealbox but in a format version this build does not know.
    FutureSealbox(String),
}

fn classify(p: &Payload) -> Kind {
    if meta(p, METADATA_ENCODING) != Some(ENCODING_ENCRYPTED) {
        return Kind::Plain;
    }
    match p.metadata.get(METADATA_FORMAT) {
        Some(v) if v.as_slice() == FORMAT_ENVELOPE_V1.as_bytes() => Kind::Sealbox,
        Some(v) => Kind::FutureSealbox(String::from_utf8_lossy(v).into_owned()),
        None if p.metadata.contains_key(METADATA_PROXY_DEK) => Kind::Proxy,
        None => Kind::Samples,
    }
}

fn bump(a: &AtomicU64, by: u64) {
    a.fetch_add(by, Ordering::Relaxed);
}

impl Inner {
    fn resolve(&self, index: usize) -> Result<Resolved, CodecError> {
        let mut r = self
            .source
            .resolve(&self.namespace)
            .map_err(|source| CodecError::Envelope { index, source })?;
        if let Some(c) = self.compression {
            r.compression = c;
        }
        if let Some(yes) = self.require_encryption {
            r.require_encryption = yes;
        }
        Ok(r)
    }

    async fn encode(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        let Resolved {
            keyring,
            context,
            compression,
            ..
        } = self.resolve(0)?;
        let mut out = Vec::with_capacity(payloads.len());
        for (index, payload) in payloads.into_iter().enumerate() {
            let input = payload.encoded_len();
            let payload = match &compression {
                Some(o) => compress_payload(index, payload, o)?,
                None => payload,
            };
            let plain = Zeroizing::new(payload.encode_to_vec());
            if plain.len() > self.max_payload_bytes {
                // Sealing only adds bytes: refuse before any KMS call.
                return Err(CodecError::TooLarge {
                    index,
                    input,
                    size: plain.len(),
                    overhead: plain.len().saturating_sub(input),
                    limit: self.max_payload_bytes,
                });
            }
            let external_payloads = payload.external_payloads.clone();
            drop(payload);
            let envelope = keyring
                .seal(&context, &plain)
                .await
                .map_err(|source| CodecError::Envelope { index, source })?;
            let header = sealbox_core::inspect(&envelope).map_err(|e| CodecError::Envelope {
                index,
                source: e.into(),
            })?;
            let mut metadata = HashMap::with_capacity(3);
            metadata.insert(METADATA_ENCODING.into(), ENCODING_ENCRYPTED.into());
            metadata.insert(
                METADATA_KEY_ID.into(),
                header.kek().to_string().into_bytes(),
            );
            metadata.insert(METADATA_FORMAT.into(), FORMAT_ENVELOPE_V1.into());
            let sealed = Payload {
                metadata,
                data: envelope,
                external_payloads,
            };
            let size = sealed.encoded_len();
            if size > self.max_payload_bytes {
                return Err(CodecError::TooLarge {
                    index,
                    input,
                    size,
                    overhead: size.saturating_sub(input),
                    limit: self.max_payload_bytes,
                });
            }
            bump(&self.counters.encoded, 1);
            bump(&self.counters.bytes_in, input as u64);
            bump(&self.counters.bytes_out, size as u64);
            tracing::trace!(
                namespace = %self.namespace,
                input,
                size,
                kek = %header.kek(),
                "sealed payload"
            );
            out.push(sealed);
        }
        Ok(out)
    }

    async fn decode(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        let resolved = self.resolve(0)?;
        let mut out: Vec<Option<Payload>> = Vec::with_capacity(payloads.len());
        let mut ours: Vec<(usize, Payload)> = Vec::new();
        for (index, p) in payloads.into_iter().enumerate() {
            match classify(&p) {
                Kind::Plain => {
                    if resolved.require_encryption && !crate::plaintext_by_design(&p) {
                        return Err(CodecError::Unencrypted {
                            index,
                            encoding: meta(&p, METADATA_ENCODING)
                                .unwrap_or("<none>")
                                .escape_debug()
                                .to_string(),
                            namespace: self.namespace.clone(),
                        });
                    }
                    bump(&self.counters.passed_through, 1);
                    out.push(Some(p));
                }
                Kind::Sealbox => {
                    ours.push((index, p));
                    out.push(None);
                }
                Kind::FutureSealbox(version) => {
                    return Err(CodecError::Unsupported {
                        index,
                        detail: format!(
                            "written in Sealbox payload format `{version}`, which this build \
                             does not know (it reads `{FORMAT_ENVELOPE_V1}`); upgrade Sealbox"
                        ),
                    });
                }
                kind @ (Kind::Samples | Kind::Proxy) => {
                    let proxy = matches!(kind, Kind::Proxy);
                    match self.legacy.decode(index, &p, proxy).await? {
                        Some(decoded) => {
                            bump(&self.counters.legacy_decoded, 1);
                            out.push(Some(decoded));
                        }
                        None if self.pass_through_foreign => {
                            bump(&self.counters.passed_through, 1);
                            out.push(Some(p));
                        }
                        None => {
                            return Err(CodecError::Unsupported {
                                index,
                                detail: self.legacy.unsupported_detail(&p, proxy),
                            });
                        }
                    }
                }
            }
        }
        if !ours.is_empty() {
            let Resolved {
                keyring, context, ..
            } = resolved;
            let items: Vec<(&EncryptionContext, &[u8])> = ours
                .iter()
                .map(|(_, p)| (&context, p.data.as_slice()))
                .collect();
            let results = keyring.open_many(&items).await;
            for ((index, _), result) in ours.iter().zip(results) {
                let plain = Zeroizing::new(result.map_err(|source| CodecError::Envelope {
                    index: *index,
                    source,
                })?);
                let decoded =
                    Payload::decode(plain.as_slice()).map_err(|e| CodecError::Malformed {
                        index: *index,
                        format: "Sealbox",
                        detail: format!("the opened envelope is not a Temporal Payload: {e}"),
                    })?;
                out[*index] = Some(decoded);
            }
            bump(&self.counters.decoded, ours.len() as u64);
            // Decompress only what came out of an envelope: a caller's own `binary/zstd`
            // payload is plaintext and was handled above like any other.
            let packed: Vec<(usize, Payload)> = ours
                .iter()
                .filter_map(|(i, _)| {
                    let p = out[*i].as_ref()?;
                    is_sealbox_zstd(p).then(|| (*i, p.clone()))
                })
                .collect();
            if !packed.is_empty() {
                let limits = self.decompression;
                let unpacked = crate::blocking(move || {
                    let mut budget = Budget::new(limits.call_budget);
                    packed
                        .into_iter()
                        .map(|(i, p)| {
                            decompress_payload(i, &p, limits.max_decompressed, &mut budget)
                                .map(|d| (i, d))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
                for (i, p) in unpacked {
                    out[i] = Some(p);
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

impl PayloadCodec for SealboxCodec {
    fn encode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let inner = Arc::clone(&self.inner);
        async move { inner.encode(payloads).await.map_err(Into::into) }.boxed()
    }

    fn decode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let inner = Arc::clone(&self.inner);
        async move { inner.decode(payloads).await.map_err(Into::into) }.boxed()
    }
}
