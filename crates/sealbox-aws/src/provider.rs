//! The provider: connecting, resolving the key, and the checks every call makes.

mod key_provider;

use std::collections::HashMap;
use std::fmt;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyState, KeyUsageType};
use sealbox_core::transport::{Transport, redact_endpoint};
use sealbox_core::{DataKey, KekRef, KeyProvider, ProviderError, ProviderErrorKind, WrappedKey};
use zeroize::Zeroizing;

use crate::PROVIDER_ID;
use crate::arn::arn_region;
use crate::config::AwsKmsConfig;
use crate::endpoint::{check_endpoint, effective_endpoint};
use crate::error::{err, map_error};

/// An AWS KMS symmetric key used as a Sealbox KEK.
pub struct AwsKms {
    client: Client,
    key_arn: String,
    max_attempts: u32,
    multi_region_replicas: bool,
}

impl fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKms")
            .field("key_arn", &self.key_arn)
            .field("multi_region_replicas", &self.multi_region_replicas)
            .finish_non_exhaustive()
    }
}

impl AwsKms {
    /// Loads the standard AWS configuration chain, applies `config`, and resolves the key.
    /// A plain-HTTP endpoint is refused (before anything is loaded or sent) unless its host is
    /// loopback or [`AwsKmsConfig::allow_http`] is set.
    pub async fn connect(config: AwsKmsConfig) -> Result<Self, ProviderError> {
        if let Some(url) = &config.endpoint_url {
            // Fail before the credential chain runs; `connect_with` checks (and warns) again
            // on the effective endpoint.
            check_endpoint(&config.key, url, config.allow_http)?;
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        let region = config
            .region
            .clone()
            .or_else(|| arn_region(&config.key).map(str::to_owned));
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        Self::connect_with(&sdk, config).await
    }

    /// Like [`AwsKms::connect`], with an already loaded `SdkConfig` (credentials, region).
    /// `config.region` and `config.endpoint_url` still override it. The effective endpoint
    /// (`config.endpoint_url`, else the `SdkConfig`'s or `AWS_ENDPOINT_URL[_KMS]`) must be
    /// `https://` unless its host is loopback or [`AwsKmsConfig::allow_http`] is set.
    pub async fn connect_with(
        sdk: &SdkConfig,
        config: AwsKmsConfig,
    ) -> Result<Self, ProviderError> {
        if let Some(url) = effective_endpoint(sdk, &config)
            && check_endpoint(&config.key, &url, config.allow_http)? == Transport::OptedInHttp
        {
            tracing::warn!(
                provider = PROVIDER_ID,
                key = %config.key,
                endpoint = %redact_endpoint(&url),
                "INSECURE: plain-HTTP KMS endpoint on a non-loopback host accepted because \
                 allow_http is set; data keys cross the network UNENCRYPTED (development only)"
            );
        }
        let mut builder = aws_sdk_kms::config::Builder::from(sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(config.attempt_timeout)
                    .build(),
            );
        if let Some(region) = &config.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        let client = Client::from_conf(builder.build());
        let max_attempts = config.max_attempts.max(1);
        let described = client
            .describe_key()
            .key_id(&config.key)
            .send()
            .await
            .map_err(|e| map_error(&config.key, "DescribeKey", max_attempts, e))?;
        let meta = described.key_metadata().ok_or_else(|| {
            err(
                &config.key,
                ProviderErrorKind::Protocol,
                "DescribeKey returned no key metadata",
            )
        })?;
        let arn = meta
            .arn()
            .ok_or_else(|| {
                err(
                    &config.key,
                    ProviderErrorKind::Protocol,
                    "DescribeKey returned no ARN",
                )
            })?
            .to_owned();
        // A key that cannot encrypt, or is not enabled, is refused (its usage first).
        let refusal = match (meta.key_usage(), meta.key_state()) {
            (Some(usage), _) if *usage != KeyUsageType::EncryptDecrypt => Some((
                ProviderErrorKind::Misconfigured,
                format!("the key's usage is {}, not ENCRYPT_DECRYPT", usage.as_str()),
            )),
            (_, Some(state)) if *state != KeyState::Enabled => Some((
                ProviderErrorKind::KeyDisabled,
                format!("the key is {}", state.as_str()),
            )),
            _ => None,
        };
        if let Some((kind, message)) = refusal {
            return Err(err(&arn, kind, message));
        }
        KekRef::new(PROVIDER_ID, &arn)
            .map_err(|e| err(&arn, ProviderErrorKind::Protocol, e.to_string()))?;
        Ok(Self {
            client,
            key_arn: arn,
            max_attempts,
            multi_region_replicas: config.multi_region_replicas,
        })
    }

    /// Decrypts a 32-byte data key that another tool wrapped under this KMS key with a plain
    /// `Encrypt` call and no encryption context, as Temporal Proxy (and Go CDK's `awskms`
    /// keeper) does. Used only to read legacy payloads during a migration; Sealbox's own
    /// envelopes never go through here. The key is checked to be exactly 32 bytes.
    pub async fn decrypt_foreign_data_key(
        &self,
        ciphertext: &[u8],
    ) -> Result<DataKey, ProviderError> {
        self.decrypt_data_key(ciphertext, None).await
    }

    /// KMS `Decrypt` of a wrapped 32-byte data key under this key, with `context` (if any)
    /// as the KMS encryption context.
    async fn decrypt_data_key(
        &self,
        ciphertext: &[u8],
        context: Option<HashMap<String, String>>,
    ) -> Result<DataKey, ProviderError> {
        let mut out = self
            .client
            .decrypt()
            .key_id(&self.key_arn)
            .ciphertext_blob(Blob::new(ciphertext.to_vec()))
            .set_encryption_context(context)
            .send()
            .await
            .map_err(|e| self.map("Decrypt", e))?;
        let plaintext = self.take_plaintext("Decrypt", &mut out.plaintext)?;
        // KMS must say the key that decrypted is exactly this one (defence in depth: the
        // request already named it, so KMS refuses other keys' ciphertexts).
        self.check_reported_key(
            "Decrypt",
            out.key_id(),
            ProviderErrorKind::InvalidWrappedKey,
        )?;
        DataKey::try_from_slice(&plaintext)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    /// The key's ARN, as recorded in envelopes.
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    /// The plaintext data key in `op`'s answer, taken out first thing: the SDK's `Blob` cannot
    /// be wiped in place, so its Vec is moved (no copy) into `Zeroizing` before any check can
    /// return early and drop the answer with the key in it.
    fn take_plaintext(
        &self,
        op: &str,
        plaintext: &mut Option<Blob>,
    ) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
        plaintext
            .take()
            .map(|blob| Zeroizing::new(blob.into_inner()))
            .ok_or_else(|| {
                self.err(
                    ProviderErrorKind::Protocol,
                    format!("{op} returned no plaintext"),
                )
            })
    }

    /// The ciphertext in `op`'s answer, as a key wrapped by this KEK.
    fn wrapped_from(
        &self,
        op: &str,
        ciphertext: Option<Blob>,
    ) -> Result<WrappedKey, ProviderError> {
        let blob = ciphertext.ok_or_else(|| {
            self.err(
                ProviderErrorKind::Protocol,
                format!("{op} returned no ciphertext"),
            )
        })?;
        WrappedKey::new(self.kek_ref()?, blob.into_inner())
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    fn kek_ref(&self) -> Result<KekRef, ProviderError> {
        KekRef::new(PROVIDER_ID, &self.key_arn)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    fn err(&self, kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
        err(&self.key_arn, kind, message)
    }

    fn map<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static, R: fmt::Debug>(
        &self,
        op: &str,
        e: SdkError<E, R>,
    ) -> ProviderError {
        map_error(&self.key_arn, op, self.max_attempts, e)
    }

    /// Checks that `reported` (the `KeyId` of a KMS response) is exactly this key's ARN.
    fn check_reported_key(
        &self,
        op: &str,
        reported: Option<&str>,
        kind: ProviderErrorKind,
    ) -> Result<(), ProviderError> {
        match reported {
            Some(id) if id == self.key_arn => Ok(()),
            Some(id) => Err(self.err(
                kind,
                format!(
                    "{op} reports key `{}`, not this key: result refused",
                    id.escape_debug()
                ),
            )),
            None => Err(self.err(
                ProviderErrorKind::Protocol,
                format!("{op} did not report which key it used"),
            )),
        }
    }

    /// The header's key reference must be exactly what this provider writes: provider
    /// `aws-kms`, this key's ARN (or, with [`AwsKmsConfig::multi_region_replicas`], a related
    /// replica's), and no key version. Anything else was not written by Sealbox — the header
    /// was edited — and is refused before any KMS call.
    fn check_reference(&self, wrapped: &WrappedKey) -> Result<(), ProviderError> {
        let kek = wrapped.kek();
        if !self.owns(kek) {
            return Err(self.err(
                ProviderErrorKind::InvalidWrappedKey,
                format!("the envelope names {kek}, not this KMS key"),
            ));
        }
        if let Some(version) = kek.key_version() {
            return Err(self.err(
                ProviderErrorKind::InvalidWrappedKey,
                format!(
                    "the envelope's key reference carries key version `{}`, but AWS KMS \
                     envelopes never record one: the header was altered",
                    version.escape_debug()
                ),
            ));
        }
        Ok(())
    }
}
