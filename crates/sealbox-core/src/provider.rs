//! The key-provider seam: one KEK in one KMS.

use std::fmt;

use async_trait::async_trait;

use crate::context::EncryptionContext;
use crate::error::{ProviderError, ProviderErrorKind};
use crate::key::{DataKey, KekRef, WrappedKey};

/// A freshly generated data key: the plaintext (secret) and its wrapped form.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The plaintext data key.
    pub data_key: DataKey,
    /// The data key wrapped by the provider's current KEK version.
    pub wrapped: WrappedKey,
}

/// What a provider reports about its KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyDescription {
    /// The KEK, with its current primary version where the KMS reports one.
    pub kek: KekRef,
    /// Versions that can still unwrap, where the KMS reports them.
    pub versions: Vec<String>,
    /// Whether [`KeyProvider::rewrap`] runs inside the KMS (plaintext never leaves it): what
    /// [`KeyProvider::native_rewrap`] says.
    pub native_rewrap: bool,
    /// Whether the KMS itself binds the encryption context to the wrapped key.
    pub binds_context: bool,
}

impl KeyDescription {
    /// A description of `kek`.
    pub fn new(
        kek: KekRef,
        versions: Vec<String>,
        native_rewrap: bool,
        binds_context: bool,
    ) -> Self {
        Self {
            kek,
            versions,
            native_rewrap,
            binds_context,
        }
    }
}

/// One key-encryption key (KEK) in one KMS: wraps and unwraps data keys.
///
/// Implementations must bind the encryption context to the wrapped key wherever the KMS
/// supports it (KMS encryption context, Transit associated data, Cloud KMS AAD), so a wrapped
/// key presented under another context fails to unwrap. The trait is object-safe: the
/// key-ring holds `Arc<dyn KeyProvider>`.
#[async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The provider ID written into envelopes (`local`, `aws-kms`, `gcp-kms`, `vault-transit`).
    fn provider_id(&self) -> &str;

    /// The KEK's ID as written into envelopes (a full ARN, a Cloud KMS key name, a Transit
    /// mount and key name, …).
    fn key_id(&self) -> &str;

    /// Whether this provider owns the KEK an envelope names (version ignored).
    fn owns(&self, kek: &KekRef) -> bool {
        kek.provider() == self.provider_id() && kek.key_id() == self.key_id()
    }

    /// A new random data key and its wrapped form. The default generates the key locally
    /// and calls [`KeyProvider::wrap`]; KMSs with a data-key call override it.
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, ProviderError> {
        let data_key = DataKey::generate().map_err(|e| {
            ProviderError::new(
                self.provider_id(),
                self.key_id(),
                ProviderErrorKind::Protocol,
                e.to_string(),
            )
        })?;
        let wrapped = self.wrap(&data_key, context).await?;
        Ok(GeneratedKey { data_key, wrapped })
    }

    /// Wraps an existing data key under the current KEK version, bound to `context`.
    async fn wrap(
        &self,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError>;

    /// Unwraps a data key this KEK wrapped under `context`.
    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError>;

    /// Unwraps several keys. The default calls [`KeyProvider::unwrap`] for each; providers
    /// with a batch call (Transit `batch_input`) override it. Results are in input order.
    async fn unwrap_many(
        &self,
        items: &[(&WrappedKey, &EncryptionContext)],
    ) -> Vec<Result<DataKey, ProviderError>> {
        let mut out = Vec::with_capacity(items.len());
        for (wrapped, ctx) in items {
            out.push(self.unwrap(wrapped, ctx).await);
        }
        out
    }

    /// Whether [`KeyProvider::rewrap`] is one KMS call that never releases the plaintext data
    /// key (Transit `rewrap` of a derived key, KMS `ReEncrypt`). When it is not (the
    /// default), a key-ring rewraps with an unwrap through its cache and a wrap, so that
    /// each KMS call is counted and an unwrap it already made is not repeated.
    fn native_rewrap(&self) -> bool {
        false
    }

    /// Re-encrypts a wrapped key under the KEK's current primary version. Providers whose KMS
    /// can do this without releasing the plaintext (Transit `rewrap`, KMS `ReEncrypt`)
    /// override it, and [`KeyProvider::native_rewrap`]; the default unwraps and wraps again
    /// in this process.
    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        let key = self.unwrap(wrapped, context).await?;
        self.wrap(&key, context).await
    }

    /// Describes the KEK: its current version and what the provider can do.
    async fn describe(&self) -> Result<KeyDescription, ProviderError>;
}
