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
//! - **Endpoints must be `https://`**: a plain `http://` endpoint (from the configuration, the
//!   `SdkConfig`, or `AWS_ENDPOINT_URL[_KMS]`) is refused at connect unless its host is
//!   loopback (`127.0.0.0/8`, `::1`, `localhost`) or [`AwsKmsConfig::allow_http`] is set
//!   (development only; logged as a warning at every connect).
//! - Throttling and transient failures are retried by the SDK's standard retry strategy with
//!   exponential backoff, bounded by `max_attempts`; after that the error says so.
//! - **Strict key references**: an envelope is unwrapped only if its header names exactly what
//!   this provider writes — provider `aws-kms`, this key's full ARN, and no key version — and
//!   KMS must report that same ARN as the key that decrypted. Any edit of the header's key
//!   reference fails (`UnknownKek` from the key-ring, or `InvalidWrappedKey`).
//! - **Multi-Region keys** (opt-in, [`AwsKmsConfig::multi_region_replicas`]): a provider for a
//!   replica (`mrk-…`) then also owns envelopes sealed by any related replica or the primary
//!   (same partition, account and key ID), and decrypts them with its own regional ARN — as
//!   AWS's MRK-aware keyrings do. The region in such an envelope's ARN is then not
//!   authenticated (see `docs/threat-model.md`).
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
use aws_types::service_config::ServiceConfigKey;
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
    /// Endpoint override (VPC endpoint, FIPS endpoint, or a test server). Must be `https://`
    /// unless its host is loopback or [`AwsKmsConfig::allow_http`] is set.
    pub endpoint_url: Option<String>,
    /// Attempts per call including the first (standard retry mode, exponential backoff).
    pub max_attempts: u32,
    /// Timeout of one attempt.
    pub attempt_timeout: Duration,
    /// Accept a plain `http://` endpoint on a non-loopback host (default `false`).
    /// Development only: data keys would cross the network unencrypted.
    pub allow_http: bool,
    /// Own envelopes sealed by related replicas of a Multi-Region key (default `false`).
    pub multi_region_replicas: bool,
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
            allow_http: false,
            multi_region_replicas: false,
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

    /// Accepts (`true`) a plain `http://` endpoint whose host is not loopback. **Development
    /// only**: the data keys KMS returns would cross the network unencrypted. Every connect
    /// with such an endpoint logs a warning. Loopback `http://` endpoints (`127.0.0.0/8`,
    /// `::1`, `localhost`) need no opt-in.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Lets a provider for a Multi-Region key (`mrk-…`) also own envelopes whose header names
    /// a related replica or the primary (same partition, account and key ID, another region),
    /// decrypting them with its own regional ARN. Off by default: with it on, the region in
    /// such an envelope's header is not authenticated — an edit that swaps it for another
    /// region still opens (harmless for confidentiality and integrity, since replicas share
    /// key material, but the header's region is then only a claim).
    pub fn multi_region_replicas(mut self, accept: bool) -> Self {
        self.multi_region_replicas = accept;
        self
    }
}

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
                endpoint = %redacted(&url),
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
        // Zeroize: the SDK's `Blob` cannot be wiped in place, so take its Vec out (no copy)
        // into `Zeroizing` first, before any check below can return early and drop `out`.
        let plaintext = Zeroizing::new(
            out.plaintext
                .take()
                .ok_or_else(|| {
                    self.err(ProviderErrorKind::Protocol, "Decrypt returned no plaintext")
                })?
                .into_inner(),
        );
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

/// How an endpoint will be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// `https://`.
    Tls,
    /// `http://` to a loopback host (tests, local emulators).
    LoopbackHttp,
    /// `http://` to another host, accepted only because `allow_http` is set.
    OptedInHttp,
}

/// The endpoint the KMS client will use, found the way `aws_sdk_kms::config::Builder::from`
/// finds it: `config.endpoint_url`, else an endpoint set in code on the `SdkConfig`, else
/// the KMS-specific setting (`AWS_ENDPOINT_URL_KMS`, profile `services`), else the
/// `SdkConfig`'s general one (`AWS_ENDPOINT_URL`, profile `endpoint_url`).
fn effective_endpoint(sdk: &SdkConfig, config: &AwsKmsConfig) -> Option<String> {
    if let Some(url) = &config.endpoint_url {
        return Some(url.clone());
    }
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(str::to_owned);
    }
    let key = ServiceConfigKey::builder()
        .service_id("KMS")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    key.and_then(|k| sdk.service_config().and_then(|c| c.load_config(k)))
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
}

/// `url` without user name and password, for messages and logs.
fn redacted(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => endpoint.escape_debug().to_string(),
    }
}

/// Whether `host` is loopback: `127.0.0.0/8`, `::1` (also as `::ffff:127.x.y.z`) or
/// `localhost`.
fn is_loopback(host: Option<url::Host<&str>>) -> bool {
    match host {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

/// Accepts `https://` endpoints, `http://` ones on loopback hosts, and other `http://` ones
/// only with `allow_http`; refuses everything else (other schemes, credentials in the URL,
/// unparsable URLs) with a `Misconfigured` error naming the endpoint and the opt-in.
fn check_endpoint(key: &str, endpoint: &str, allow_http: bool) -> Result<Transport, ProviderError> {
    let misconfigured = |message: String| err(key, ProviderErrorKind::Misconfigured, message);
    let url = url::Url::parse(endpoint).map_err(|e| {
        misconfigured(format!(
            "KMS endpoint `{}` is not a valid URL: {e}",
            endpoint.escape_debug()
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(misconfigured(format!(
            "KMS endpoint `{}` must not contain a user name or password",
            redacted(endpoint)
        )));
    }
    match url.scheme() {
        "https" => Ok(Transport::Tls),
        "http" if is_loopback(url.host()) => Ok(Transport::LoopbackHttp),
        "http" if allow_http => Ok(Transport::OptedInHttp),
        "http" => Err(misconfigured(format!(
            "refusing plain-HTTP KMS endpoint `{}`: http:// is accepted only for loopback hosts \
             (127.0.0.0/8, ::1, localhost), because data keys would cross the network \
             unencrypted; use https://, or opt in for development with \
             `AwsKmsConfig::allow_http(true)` (policy file: `[aws] allow_http = true`)",
            redacted(endpoint)
        ))),
        other => Err(misconfigured(format!(
            "KMS endpoint `{}` must be an https:// URL, not `{other}:`",
            redacted(endpoint)
        ))),
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

/// Whether two key ARNs are the same Multi-Region key (possibly in different regions). The
/// region must be a plausible region name (`[a-z0-9-]+`).
fn same_multi_region_key(a: &str, b: &str) -> bool {
    let split = |arn: &str| -> Option<(String, String, String)> {
        let p: Vec<&str> = arn.splitn(6, ':').collect();
        if p.len() != 6 || p[0] != "arn" || p[2] != "kms" {
            return None;
        }
        let region_ok = !p[3].is_empty()
            && p[3]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
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

    /// Exactly this key's ARN; with [`AwsKmsConfig::multi_region_replicas`], also a related
    /// Multi-Region replica's or primary's ARN. (The version is checked on unwrap.)
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
        // Zeroize: take the SDK `Blob`'s Vec out (no copy) into `Zeroizing` first, before any
        // check below can return early and drop `out` with the key in it.
        let plaintext = Zeroizing::new(
            out.plaintext
                .take()
                .ok_or_else(|| {
                    self.err(
                        ProviderErrorKind::Protocol,
                        "GenerateDataKey returned no plaintext",
                    )
                })?
                .into_inner(),
        );
        self.check_reported_key("GenerateDataKey", out.key_id(), ProviderErrorKind::Protocol)?;
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
        self.check_reference(wrapped)?;
        self.decrypt_data_key(wrapped.ciphertext(), context_map(context))
            .await
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
        assert!(!same_multi_region_key(
            east,
            "arn:aws:kms:US West 2:111122223333:key/mrk-1234abcd"
        ));
        assert!(!same_multi_region_key(
            east,
            "arn:aws:kms::111122223333:key/mrk-1234abcd"
        ));
    }

    fn transport(endpoint: &str, allow_http: bool) -> Result<Transport, String> {
        check_endpoint("k", endpoint, allow_http).map_err(|e| {
            assert_eq!(e.kind(), ProviderErrorKind::Misconfigured, "{e}");
            e.to_string()
        })
    }

    #[test]
    fn plain_http_is_accepted_only_for_loopback_hosts_or_with_the_opt_in() {
        for ok in [
            "https://kms.eu-west-1.amazonaws.com",
            "https://vpce-1.kms.eu-west-1.vpce.amazonaws.com:443/",
            "https://127.0.0.1:4566",
        ] {
            assert_eq!(transport(ok, false), Ok(Transport::Tls), "{ok}");
        }
        for loopback in [
            "http://127.0.0.1:5000",
            "http://127.8.9.10",
            "http://localhost:4566/",
            "http://LOCALHOST",
            "http://[::1]:5000",
            "http://[::ffff:127.0.0.1]:5000",
        ] {
            assert_eq!(
                transport(loopback, false),
                Ok(Transport::LoopbackHttp),
                "{loopback}"
            );
        }
        for remote in [
            "http://kms.example.com",
            "http://10.0.0.5:4566",
            "http://0.0.0.0:4566",
            "http://[::]:4566",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
        ] {
            let e = transport(remote, false).expect_err(remote);
            assert!(
                e.contains("refusing plain-HTTP KMS endpoint")
                    && e.contains(remote.trim_start_matches("http://"))
                    && e.contains("allow_http(true)")
                    && e.contains("[aws] allow_http = true"),
                "{e}"
            );
            assert_eq!(
                transport(remote, true),
                Ok(Transport::OptedInHttp),
                "{remote}"
            );
        }
        for bad in ["kms.example.com", "ftp://kms.example.com", "not a url"] {
            let e = transport(bad, true).expect_err(bad);
            assert!(e.contains("https://") || e.contains("valid URL"), "{e}");
        }
        let e = transport("https://user:hunter2@kms.example.com", false).expect_err("creds");
        assert!(
            e.contains("user name or password") && !e.contains("hunter2"),
            "{e}"
        );
    }
}
