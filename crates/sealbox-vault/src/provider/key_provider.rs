//! The [`KeyProvider`] implementation: data keys, wrap, unwrap, rewrap, describe; and the
//! Transit `encrypt`/`decrypt` calls it shares with the associated-data self-test.

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
use vaultrs::transit::data;
use zeroize::Zeroizing;

use super::VaultTransit;
use crate::{ContextBinding, PROVIDER_ID};

pub(super) fn context_b64(context: &EncryptionContext) -> String {
    B64.encode(context.encode())
}

/// How a Transit request binds its (base64) context: as the key-derivation `context` of a
/// derived key, or as `associated_data`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Binding<'a> {
    Context(&'a str),
    AssociatedData(&'a str),
}

/// A Transit data call and its input.
#[derive(Debug, Clone, Copy)]
pub(super) enum TransitCall<'a> {
    /// `encrypt` of a base64 plaintext.
    Encrypt { plaintext: &'a str },
    /// `decrypt` of a Transit ciphertext.
    Decrypt { ciphertext: &'a str },
}

/// A default `$builder` (Transit's encrypt or decrypt request options) with the context set
/// as `$binding` says: one builder for both request types, which share these two setters.
macro_rules! bound_options {
    ($builder:ty, $binding:expr) => {{
        let mut opts = <$builder>::default();
        match $binding {
            Binding::Context(c) => opts.context(c),
            Binding::AssociatedData(a) => opts.associated_data(a),
        };
        opts
    }};
}

impl VaultTransit {
    /// How this key binds `context` (base64): derived keys as `context`, others as
    /// `associated_data`.
    fn bind<'a>(&self, context: &'a str) -> Binding<'a> {
        match self.binding {
            ContextBinding::Derived => Binding::Context(context),
            ContextBinding::AssociatedData => Binding::AssociatedData(context),
        }
    }

    /// One Transit `encrypt` or `decrypt` call under this key, bound as `binding` says;
    /// returns the ciphertext or the (base64) plaintext, zeroized on drop. `op` names the
    /// call in errors.
    pub(super) async fn transit(
        &self,
        op: &str,
        call: TransitCall<'_>,
        binding: Binding<'_>,
    ) -> Result<Zeroizing<String>, ProviderError> {
        let (mount, key) = (&self.mount, &self.key);
        self.session
            .call(op, |lease| async move {
                let client = &lease.client.0;
                let out = match call {
                    TransitCall::Encrypt { plaintext } => {
                        let mut opts = bound_options!(EncryptDataRequestBuilder, binding);
                        data::encrypt(client, mount, key, plaintext, Some(&mut opts))
                            .await?
                            .ciphertext
                    }
                    TransitCall::Decrypt { ciphertext } => {
                        let mut opts = bound_options!(DecryptDataRequestBuilder, binding);
                        data::decrypt(client, mount, key, ciphertext, Some(&mut opts))
                            .await?
                            .plaintext
                    }
                };
                Ok(Zeroizing::new(out))
            })
            .await
    }
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
        let (mount, key, context) = (&self.mount, &self.key, &context);
        let resp = self
            .session
            .call("datakey", |lease| async move {
                let mut opts = GenerateDataKeyRequestBuilder::default();
                opts.context(context).bits(256u16);
                let plaintext = DataKeyType::Plaintext;
                vaultrs::transit::generate::data_key(
                    &lease.client.0,
                    mount,
                    key,
                    plaintext,
                    Some(&mut opts),
                )
                .await
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
        let call = TransitCall::Encrypt {
            plaintext: &plaintext,
        };
        let ciphertext = self.transit("encrypt", call, self.bind(&context)).await?;
        self.wrapped_from(ciphertext.to_string())
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let ct = self.ciphertext_of(wrapped)?;
        let context = context_b64(context);
        let call = TransitCall::Decrypt { ciphertext: ct };
        let plaintext = self.transit("decrypt", call, self.bind(&context)).await?;
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
    /// Transit's `rewrap` for a derived key; a plain AEAD key's context is associated data,
    /// which `rewrap` cannot carry, so its rewrap is a decrypt and an encrypt.
    fn native_rewrap(&self) -> bool {
        matches!(self.binding, ContextBinding::Derived)
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
                let (mount, key, context) = (&self.mount, &self.key, &context);
                let resp = self
                    .session
                    .call("rewrap", |lease| async move {
                        let mut opts = RewrapDataRequestBuilder::default();
                        opts.context(context);
                        data::rewrap(&lease.client.0, mount, key, ct, Some(&mut opts)).await
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
            self.native_rewrap(),
            true,
        ))
    }
}
