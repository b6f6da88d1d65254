//! The [`KeyProvider`] implementation: data keys, wrap, unwrap, rewrap, describe.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sealbox_core::{
    DataKey, EncryptionContext, KekRef, KeyDescription, KeyProvider, ProviderError,
    ProviderErrorKind, WrappedKey,
};
use vaultrs::api::transit::requests::{
    DataKeyType, DecryptDataRequestBuilder, EncryptDataRequestBuilder,
    GenerateDataKeyRequestBuilder, RewrapDataRequestBuilder,
};
use zeroize::Zeroizing;

use super::VaultTransit;
use crate::{ContextBinding, PROVIDER_ID};

pub(super) fn context_b64(context: &EncryptionContext) -> String {
    B64.encode(context.encode())
}
#[async_trait]
impl KeyProvider for VaultTransit {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<sealbox_core::GeneratedKey, ProviderError> {
        if self.binding == ContextBinding::AssociatedData {
            let data_key = DataKey::generate()
                .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
            let wrapped = self.wrap(&data_key, context).await?;
            return Ok(sealbox_core::GeneratedKey { data_key, wrapped });
        }
        let context = context_b64(context);
        let resp = self
            .session
            .call("datakey", |lease| {
                let context = &context;
                async move {
                    let mut opts = GenerateDataKeyRequestBuilder::default();
                    opts.context(context.clone()).bits(256u16);
                    vaultrs::transit::generate::data_key(
                        &lease.client.0,
                        &self.mount,
                        &self.key,
                        DataKeyType::Plaintext,
                        Some(&mut opts),
                    )
                    .await
                }
            })
            .await?;
        let plaintext = Zeroizing::new(resp.plaintext.ok_or_else(|| {
            self.err(
                ProviderErrorKind::Protocol,
                "datakey/plaintext returned no plaintext",
            )
        })?);
        let data_key = self.decode_key(&plaintext)?;
        let wrapped = self.wrapped_from(resp.ciphertext)?;
        Ok(sealbox_core::GeneratedKey { data_key, wrapped })
    }

    async fn wrap(
        &self,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        let plaintext = Zeroizing::new(B64.encode(data_key.expose_secret()));
        let context = context_b64(context);
        let resp = self
            .session
            .call("encrypt", |lease| {
                let (plaintext, context) = (&*plaintext, &context);
                async move {
                    let mut opts = EncryptDataRequestBuilder::default();
                    match self.binding {
                        ContextBinding::Derived => opts.context(context.clone()),
                        ContextBinding::AssociatedData => opts.associated_data(context.clone()),
                    };
                    vaultrs::transit::data::encrypt(
                        &lease.client.0,
                        &self.mount,
                        &self.key,
                        plaintext,
                        Some(&mut opts),
                    )
                    .await
                }
            })
            .await?;
        self.wrapped_from(resp.ciphertext)
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let ct = self.ciphertext_of(wrapped)?;
        let context = context_b64(context);
        let resp = self
            .session
            .call("decrypt", |lease| {
                let context = &context;
                async move {
                    let mut opts = DecryptDataRequestBuilder::default();
                    match self.binding {
                        ContextBinding::Derived => opts.context(context.clone()),
                        ContextBinding::AssociatedData => opts.associated_data(context.clone()),
                    };
                    vaultrs::transit::data::decrypt(
                        &lease.client.0,
                        &self.mount,
                        &self.key,
                        ct,
                        Some(&mut opts),
                    )
                    .await
                }
            })
            .await?;
        let plaintext = Zeroizing::new(resp.plaintext);
        self.decode_key(&plaintext)
    }

    /// One `decrypt` request with `batch_input` for all items; per-item failures (wrong
    /// context, corrupted key) fail only their item.
    async fn unwrap_many(
        &self,
        items: &[(&WrappedKey, &EncryptionContext)],
    ) -> Vec<Result<DataKey, ProviderError>> {
        self.unwrap_batch(items).await
    }
    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        match self.binding {
            ContextBinding::Derived => {
                let ct = self.ciphertext_of(wrapped)?;
                let context = context_b64(context);
                let resp = self
                    .session
                    .call("rewrap", |lease| {
                        let context = &context;
                        async move {
                            let mut opts = RewrapDataRequestBuilder::default();
                            opts.context(context.clone());
                            vaultrs::transit::data::rewrap(
                                &lease.client.0,
                                &self.mount,
                                &self.key,
                                ct,
                                Some(&mut opts),
                            )
                            .await
                        }
                    })
                    .await?;
                self.wrapped_from(resp.ciphertext)
            }
            ContextBinding::AssociatedData => {
                let key = self.unwrap(wrapped, context).await?;
                self.wrap(&key, context).await
            }
        }
    }

    async fn describe(&self) -> Result<KeyDescription, ProviderError> {
        let info = self
            .session
            .call("reading the key", |lease| async move {
                vaultrs::transit::key::read(&lease.client.0, &self.mount, &self.key).await
            })
            .await?;
        let mut versions: Vec<u64> = match &info.keys {
            vaultrs::api::transit::responses::ReadKeyData::Symmetric(m) => {
                m.keys().filter_map(|k| k.parse().ok()).collect()
            }
            vaultrs::api::transit::responses::ReadKeyData::Asymmetric(m) => {
                m.keys().filter_map(|k| k.parse().ok()).collect()
            }
        };
        versions.retain(|v| *v >= info.min_decryption_version);
        versions.sort_unstable();
        let latest = versions.last().copied().unwrap_or(1);
        let kek = KekRef::new(PROVIDER_ID, &self.key_id)
            .and_then(|k| k.with_version(latest.to_string()))
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        Ok(KeyDescription::new(
            kek,
            versions.iter().map(u64::to_string).collect(),
            self.binding == ContextBinding::Derived,
            true,
        ))
    }
}
