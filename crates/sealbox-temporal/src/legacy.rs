//! Reading payloads written by other Temporal encryption codecs, for migrations.
//!
//! Both formats mark payloads `encoding = binary/encrypted` and store
//! `nonce(12) ‖ AES-256-GCM ciphertext ‖ tag(16)` over the protobuf serialization of the
//! original payload, with no associated data:
//!
//! - **Temporal's encryption samples** (Go, Python, TypeScript, Java): a static key chosen
//!   by `encryption-key-id`.
//! - **Temporal Proxy**: a data key wrapped by a KMS KEK, base64 in `encryption-dek`, the
//!   KEK's URI in `encryption-key-id`.
//!
//! These formats have no key commitment and no namespace binding; Sealbox only reads them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use futures::future::BoxFuture;
use prost::Message;
use sealbox_core::{DataKey, ProviderError};
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use crate::error::CodecError;
use crate::{METADATA_KEY_ID, METADATA_PROXY_DEK, Payload, meta};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const SAMPLES: &str = "Temporal samples";
const PROXY: &str = "Temporal Proxy";

/// A KMS key that can decrypt Temporal Proxy's wrapped data keys (a plain KMS `Encrypt` of
/// the 32-byte key, no encryption context).
pub trait ProxyKek: Send + Sync + fmt::Debug {
    /// Decrypts one wrapped data key.
    fn decrypt_data_key<'a>(
        &'a self,
        encrypted_dek: &'a [u8],
    ) -> BoxFuture<'a, Result<DataKey, ProviderError>>;
}

#[cfg(feature = "aws")]
impl ProxyKek for sealbox_aws::AwsKms {
    fn decrypt_data_key<'a>(
        &'a self,
        encrypted_dek: &'a [u8],
    ) -> BoxFuture<'a, Result<DataKey, ProviderError>> {
        Box::pin(self.decrypt_foreign_data_key(encrypted_dek))
    }
}

/// Keys for reading legacy payloads. Empty by default (no legacy format is read).
#[derive(Clone)]
pub struct LegacyFormats {
    samples: HashMap<String, Arc<SecretBox<[u8; 32]>>>,
    proxy: HashMap<String, Arc<dyn ProxyKek>>,
    /// Unwrapped Proxy data keys by (KEK URI, wrapped key): Proxy uses one data key for many
    /// payloads, so this keeps it to one KMS call per distinct wrapped key.
    proxy_keys: moka::future::Cache<(String, Vec<u8>), Arc<DataKey>>,
}

impl Default for LegacyFormats {
    fn default() -> Self {
        Self {
            samples: HashMap::new(),
            proxy: HashMap::new(),
            proxy_keys: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(std::time::Duration::from_secs(3600))
                .build(),
        }
    }
}

impl fmt::Debug for LegacyFormats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut samples: Vec<&String> = self.samples.keys().collect();
        samples.sort();
        let mut proxy: Vec<&String> = self.proxy.keys().collect();
        proxy.sort();
        f.debug_struct("LegacyFormats")
            .field("samples_key_ids", &samples)
            .field("proxy_keks", &proxy)
            .finish()
    }
}

impl LegacyFormats {
    /// No legacy format.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads Temporal-samples payloads whose `encryption-key-id` is `key_id` with this
    /// static AES-256 key.
    #[must_use]
    pub fn samples_key(mut self, key_id: impl Into<String>, key: SecretBox<[u8; 32]>) -> Self {
        self.samples.insert(key_id.into(), Arc::new(key));
        self
    }

    /// Reads Temporal Proxy payloads whose `encryption-key-id` is `kek_uri` (exactly as Proxy
    /// wrote it, e.g. `awskms:///arn:aws:kms:…?region=…`) by asking `kek` to decrypt their
    /// data keys.
    #[must_use]
    pub fn proxy_kek(mut self, kek_uri: impl Into<String>, kek: Arc<dyn ProxyKek>) -> Self {
        self.proxy.insert(kek_uri.into(), kek);
        self
    }

    /// Whether any legacy key is configured.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.proxy.is_empty()
    }

    /// Decodes a legacy payload, or `None` if no key for it is configured.
    pub(crate) async fn decode(
        &self,
        index: usize,
        p: &Payload,
        proxy: bool,
    ) -> Result<Option<Payload>, CodecError> {
        let format = if proxy { PROXY } else { SAMPLES };
        let key_id = meta(p, METADATA_KEY_ID).unwrap_or_default().to_owned();
        let fail = |detail: String| CodecError::Legacy {
            index,
            format,
            key_id: key_id.clone(),
            detail,
        };
        let plain = if proxy {
            let Some(kek) = self.proxy.get(&key_id) else {
                return Ok(None);
            };
            let dek_b64 = p.metadata.get(METADATA_PROXY_DEK).map(Vec::as_slice);
            let wrapped = base64::engine::general_purpose::STANDARD
                .decode(dek_b64.unwrap_or_default())
                .map_err(|e| fail(format!("`{METADATA_PROXY_DEK}` is not base64: {e}")))?;
            let kek = Arc::clone(kek);
            let key = self
                .proxy_keys
                .try_get_with((key_id.clone(), wrapped.clone()), async move {
                    kek.decrypt_data_key(&wrapped).await.map(Arc::new)
                })
                .await
                .map_err(|e| fail(format!("the KMS refused the data key: {e}")))?;
            open_gcm(key.expose_secret(), &p.data).map_err(fail)?
        } else {
            let Some(key) = self.samples.get(&key_id) else {
                return Ok(None);
            };
            open_gcm(key.expose_secret(), &p.data).map_err(fail)?
        };
        Payload::decode(plain.as_slice())
            .map(Some)
            .map_err(|e| CodecError::Malformed {
                index,
                format,
                detail: format!("decrypted data is not a Temporal Payload: {e}"),
            })
    }

    /// Why a legacy payload cannot be read, and what to configure.
    pub(crate) fn unsupported_detail(&self, p: &Payload, proxy: bool) -> String {
        let key_id = meta(p, METADATA_KEY_ID).unwrap_or("<none>");
        if proxy {
            format!(
                "encrypted by Temporal Proxy under KEK `{key_id}`, which is not configured for \
                 reading legacy payloads (LegacyFormats::proxy_kek)"
            )
        } else {
            format!(
                "encrypted by another codec (Temporal samples format, key id `{key_id}`), whose \
                 key is not configured (LegacyFormats::samples_key)"
            )
        }
    }
}

/// `nonce ‖ ciphertext ‖ tag`, AES-256-GCM, no associated data.
fn open_gcm(key: &[u8; 32], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(format!(
            "{} bytes is too short for nonce and tag ({} bytes)",
            data.len(),
            NONCE_LEN + TAG_LEN
        ));
    }
    let (nonce, rest) = data.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| "bad nonce".to_owned())?;
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| "bad tag".to_owned())?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let cipher = Aes256Gcm::new(&(*key).into());
    cipher
        .decrypt_inout_detached(
            &Nonce::from(nonce),
            &[],
            buf.as_mut_slice().into(),
            &Tag::from(tag),
        )
        .map_err(|_| "authentication failed: wrong key, or the payload was altered".to_owned())?;
    Ok(buf)
}
