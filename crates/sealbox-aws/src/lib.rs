//! # sealbox-aws — AWS KMS as a Sealbox KEK
//!
//! - Data keys from `GenerateDataKey` (`AES_256`) with the envelope's encryption context as
//!   the KMS encryption context; unwrap with `Decrypt`, passing the same context **and the
//!   expected key ARN** (KMS refuses a ciphertext of any other key); rewrap with `ReEncrypt`,
//!   so the plaintext key never leaves KMS.
//! - The key is configured by key ID, ARN, alias name or alias ARN; it is resolved once with
//!   `DescribeKey`, and envelopes record the **full key ARN**.
//! - Credentials and region come from the standard AWS chain (`aws-config`: environment,
//!   profile, SSO, web identity, ECS/EC2 metadata); an endpoint override serves VPC endpoints,
//!   FIPS endpoints and tests.
//! - Throttling and transient failures are retried by the SDK's standard retry strategy with
//!   exponential backoff, bounded by `max_attempts`; after that the error says so.
//! - **Multi-Region keys**: a provider for a replica (`mrk-…` in another region) owns
//!   envelopes sealed by any related replica or the primary (same partition, account and key
//!   ID), and decrypts them with its own regional ARN — as AWS's MRK-aware keyrings do.
//!
//! KMS does not report backing-key versions, so envelopes record no key version; automatic
//! and on-demand rotation are transparent to readers.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState, KeyUsageType};
use sealbox_core::{
    DataKey, EncryptionContext, GeneratedKey, KekRef, KeyDescription, KeyProvider, ProviderError,
    ProviderErrorKind, WrappedKey,
};
use zeroize::Zeroizing;

/// The provider ID written into envelopes.
pub const PROVIDER_ID: &str = "aws-kms";

/// Where the key is and how to reach KMS.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AwsKmsConfig {
    /// Key ID, key ARN, alias name (`alias/…`) or alias ARN.
    pub key: String,
    /// Region; default from the AWS chain (`AWS_REGION`, profile, …). A key ARN's region
    /// wins when no region is configured.
    pub region: Option<String>,
    /// Endpoint override (VPC endpoint, FIPS endpoint, or a test server).
    pub endpoint_url: Option<String>,
    /// Attempts per call including the first (standard retry mode, exponential backoff).
    pub max_attempts: u32,
    /// Timeout of one attempt.
    pub attempt_timeout: Duration,
}

impl AwsKmsConfig {
    /// A configuration for `key`, 5 attempts of at most 10 s each.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            region: None,
            endpoint_url: None,
            max_attempts: 5,
            attempt_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the endpoint override.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Sets the attempts per call (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
}

/// An AWS KMS symmetric key used as a Sealbox KEK.
pub struct AwsKms {
    client: Client,
    key_arn: String,
    max_attempts: u32,
}

impl fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKms")
            .field("key_arn", &self.key_arn)
            .finish_non_exhaustive()
    }
}

impl AwsKms {
    /// Loads the standard AWS configuration chain, applies `config`, and resolves the key.
    pub async fn connect(config: AwsKmsConfig) -> Result<Self, ProviderError> {
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
    /// `config.region` and `config.endpoint_url` still override it.
    pub async fn connect_with(
        sdk: &SdkConfig,
        config: AwsKmsConfig,
    ) -> Result<Self, ProviderError> {
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
        if let Some(usage) = meta.key_usage()
            && *usage != KeyUsageType::EncryptDecrypt
        {
            return Err(err(
                &arn,
                ProviderErrorKind::Misconfigured,
                format!("the key's usage is {}, not ENCRYPT_DECRYPT", usage.as_str()),
            ));
        }
        if let Some(state) = meta.key_state()
            && *state != KeyState::Enabled
        {
            {
                return Err(err(
                    &arn,
                    ProviderErrorKind::KeyDisabled,
                    format!("the key is {}", state.as_str()),
                ));
            }
        }
        KekRef::new(PROVIDER_ID, &arn)
            .map_err(|e| err(&arn, ProviderErrorKind::Protocol, e.to_string()))?;
        Ok(Self {
            client,
            key_arn: arn,
            max_attempts,
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
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_arn)
            .ciphertext_blob(Blob::new(ciphertext.to_vec()))
            .set_encryption_context(context)
            .send()
            .await
            .map_err(|e| self.map("Decrypt", e))?;
        let plaintext = Zeroizing::new(
            out.plaintext
                .ok_or_else(|| {
                    self.err(ProviderErrorKind::Protocol, "Decrypt returned no plaintext")
                })?
                .into_inner(),
        );
        DataKey::try_from_slice(&plaintext)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    /// The key's ARN, as recorded in envelopes.
    pub fn key_arn(&self) -> &str {
        &self.key_arn
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

    fn check_owned(&self, wrapped: &WrappedKey) -> Result<(), ProviderError> {
        if self.owns(wrapped.kek()) {
            Ok(())
        } else {
            Err(self.err(
                ProviderErrorKind::NotFound,
                format!(
                    "wrapped key belongs to {}, not to this KMS key",
                    wrapped.kek()
                ),
            ))
        }
    }
}

fn err(key: &str, kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
    ProviderError::new(PROVIDER_ID, key, kind, message)
}

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

/// The region of an ARN (`arn:partition:kms:REGION:account:…`).
fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

/// Whether two key ARNs are the same Multi-Region key (possibly in different regions).
fn same_multi_region_key(a: &str, b: &str) -> bool {
    let split = |arn: &str| -> Option<(String, String, String)> {
        let p: Vec<&str> = arn.splitn(6, ':').collect();
        if p.len() != 6 || p[0] != "arn" || p[2] != "kms" {
            return None;
        }
        let key = p[5].strip_prefix("key/")?;
        key.starts_with("mrk-")
            .then(|| (p[1].to_owned(), p[4].to_owned(), key.to_owned()))
    };
    matches!((split(a), split(b)), (Some(x), Some(y)) if x == y)
}

/// Maps an SDK error to a typed provider error by its AWS error code.
fn map_error<E, R>(key: &str, op: &str, attempts: u32, e: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug,
{
    use ProviderErrorKind as K;
    let (kind, detail) = match &e {
        SdkError::TimeoutError(_) => (K::Timeout, "the request timed out".to_owned()),
        SdkError::DispatchFailure(d) => (
            if d.is_timeout() {
                K::Timeout
            } else {
                K::Unavailable
            },
            format!("cannot reach KMS: {}", source_chain(&e)),
        ),
        SdkError::ConstructionFailure(_) => (
            K::Misconfigured,
            format!("cannot build the request: {}", source_chain(&e)),
        ),
        _ => {
            let code = e.code().unwrap_or("Unknown");
            let message = e.message().unwrap_or("");
            let kind = match code {
                "NotFoundException" => K::NotFound,
                "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException" => K::PermissionDenied,
                "InvalidCiphertextException" | "IncorrectKeyException" => K::InvalidWrappedKey,
                "DisabledException" | "KMSInvalidStateException" | "KeyUnavailableException" => {
                    K::KeyDisabled
                }
                "ThrottlingException" | "LimitExceededException" | "RequestLimitExceeded" => {
                    K::Throttled
                }
                "DependencyTimeoutException" => K::Timeout,
                "KMSInternalException" | "InternalFailure" | "ServiceUnavailable" => K::Unavailable,
                "ValidationException" | "InvalidKeyUsageException" | "InvalidArnException" => {
                    K::Misconfigured
                }
                _ => K::Protocol,
            };
            (kind, format!("{code}: {message}"))
        }
    };
    let retried = if kind.is_transient() && attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    };
    ProviderError::new(PROVIDER_ID, key, kind, format!("{op}: {detail}{retried}"))
        .with_retryable(kind.is_transient())
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

#[async_trait]
impl KeyProvider for AwsKms {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_arn
    }

    fn owns(&self, kek: &KekRef) -> bool {
        kek.provider() == PROVIDER_ID
            && (kek.key_id() == self.key_arn || same_multi_region_key(kek.key_id(), &self.key_arn))
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, ProviderError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_arn)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| self.map("GenerateDataKey", e))?;
        let plaintext = Zeroizing::new(
            out.plaintext
                .ok_or_else(|| {
                    self.err(
                        ProviderErrorKind::Protocol,
                        "GenerateDataKey returned no plaintext",
                    )
                })?
                .into_inner(),
        );
        let data_key = DataKey::try_from_slice(&plaintext)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        let blob = out.ciphertext_blob.ok_or_else(|| {
            self.err(
                ProviderErrorKind::Protocol,
                "GenerateDataKey returned no ciphertext",
            )
        })?;
        let wrapped = WrappedKey::new(self.kek_ref()?, blob.into_inner())
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        Ok(GeneratedKey { data_key, wrapped })
    }

    async fn wrap(
        &self,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_arn)
            .plaintext(Blob::new(data_key.expose_secret().to_vec()))
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| self.map("Encrypt", e))?;
        let blob = out.ciphertext_blob.ok_or_else(|| {
            self.err(
                ProviderErrorKind::Protocol,
                "Encrypt returned no ciphertext",
            )
        })?;
        WrappedKey::new(self.kek_ref()?, blob.into_inner())
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        self.check_owned(wrapped)?;
        self.decrypt_data_key(wrapped.ciphertext(), context_map(context))
            .await
    }

    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        self.check_owned(wrapped)?;
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
        let blob = out.ciphertext_blob.ok_or_else(|| {
            self.err(
                ProviderErrorKind::Protocol,
                "ReEncrypt returned no ciphertext",
            )
        })?;
        WrappedKey::new(self.kek_ref()?, blob.into_inner())
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    async fn describe(&self) -> Result<KeyDescription, ProviderError> {
        self.client
            .describe_key()
            .key_id(&self.key_arn)
            .send()
            .await
            .map_err(|e| self.map("DescribeKey", e))?;
        Ok(KeyDescription::new(self.kek_ref()?, Vec::new(), true, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_regions() {
        assert_eq!(
            arn_region("arn:aws:kms:eu-west-1:111122223333:key/abc"),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("alias/sealbox"), None);
        assert_eq!(arn_region("1234abcd-12ab"), None);
    }

    #[test]
    fn multi_region_replicas_match_only_their_own_family() {
        let east = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd";
        let west = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd";
        assert!(same_multi_region_key(east, west));
        assert!(!same_multi_region_key(
            east,
            "arn:aws:kms:us-west-2:999999999999:key/mrk-1234abcd"
        ));
        assert!(!same_multi_region_key(
            east,
            "arn:aws:kms:us-west-2:111122223333:key/mrk-ffff"
        ));
        assert!(!same_multi_region_key(
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd",
            "arn:aws:kms:us-west-2:111122223333:key/1234abcd"
        ));
        assert!(!same_multi_region_key(
            east,
            "arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234abcd"
        ));
    }
}
