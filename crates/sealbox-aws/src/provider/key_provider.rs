//! The [`KeyProvider`] implementation.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use sealbox_core::{
    DataKey, EncryptionContext, GeneratedKey, KekRef, KeyDescription, KeyProvider, ProviderError,
    ProviderErrorKind, WrappedKey,
};

use super::AwsKms;
use crate::PROVIDER_ID;
use crate::arn::same_multi_region_key;

fn context_map(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    if context.is_empty() {
        None
    } else {
        Some(
            context
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

#[async_trait]
impl KeyProvider for AwsKms {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_arn
    }

    /// Exactly this key's ARN; with [`AwsKmsConfig::multi_region_replicas`], also a related
    /// Multi-Region replica's or primary's ARN. (The version is checked on unwrap.)
    ///
    /// [`AwsKmsConfig::multi_region_replicas`]: crate::AwsKmsConfig::multi_region_replicas
    fn owns(&self, kek: &KekRef) -> bool {
        kek.provider() == PROVIDER_ID
            && (kek.key_id() == self.key_arn
                || (self.multi_region_replicas
                    && same_multi_region_key(kek.key_id(), &self.key_arn)))
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, ProviderError> {
        let mut out = self
            .client
            .generate_data_key()
            .key_id(&self.key_arn)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| self.map("GenerateDataKey", e))?;
        let plaintext = self.take_plaintext("GenerateDataKey", &mut out.plaintext)?;
        self.check_reported_key("GenerateDataKey", out.key_id(), ProviderErrorKind::Protocol)?;
        let data_key = DataKey::try_from_slice(&plaintext)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        let wrapped = self.wrapped_from("GenerateDataKey", out.ciphertext_blob)?;
        Ok(GeneratedKey { data_key, wrapped })
    }

    async fn wrap(
        &self,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        // Not zeroized, and cannot be: `Encrypt` must send the plaintext key, and the SDK
        // takes ownership of this copy (and of the serialized request body built from it) and
        // drops it internally. Only cross-KEK rewraps call `wrap`; data keys for sealing come
        // from `GenerateDataKey`.
        let plaintext = Blob::new(data_key.expose_secret().to_vec());
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_arn)
            .plaintext(plaintext)
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| self.map("Encrypt", e))?;
        self.check_reported_key("Encrypt", out.key_id(), ProviderErrorKind::Protocol)?;
        self.wrapped_from("Encrypt", out.ciphertext_blob)
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        self.check_reference(wrapped)?;
        self.decrypt_data_key(wrapped.ciphertext(), context_map(context))
            .await
    }

    /// `ReEncrypt`: the plaintext data key never leaves KMS.
    fn native_rewrap(&self) -> bool {
        true
    }

    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        self.check_reference(wrapped)?;
        let out = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped.ciphertext().to_vec()))
            .source_key_id(&self.key_arn)
            .set_source_encryption_context(context_map(context))
            .destination_key_id(&self.key_arn)
            .set_destination_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| self.map("ReEncrypt", e))?;
        self.check_reported_key(
            "ReEncrypt",
            out.source_key_id(),
            ProviderErrorKind::InvalidWrappedKey,
        )?;
        self.check_reported_key("ReEncrypt", out.key_id(), ProviderErrorKind::Protocol)?;
        self.wrapped_from("ReEncrypt", out.ciphertext_blob)
    }

    async fn describe(&self) -> Result<KeyDescription, ProviderError> {
        self.client
            .describe_key()
            .key_id(&self.key_arn)
            .send()
            .await
            .map_err(|e| self.map("DescribeKey", e))?;
        Ok(KeyDescription::new(
            self.kek_ref()?,
            Vec::new(),
            self.native_rewrap(),
            true,
        ))
    }
}
