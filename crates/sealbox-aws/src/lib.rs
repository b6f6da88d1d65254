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

mod arn;
mod config;
mod endpoint;
mod error;
mod provider;
mod scheme;

pub use config::AwsKmsConfig;
pub use provider::AwsKms;
pub use scheme::AwsKmsScheme;

/// The provider ID written into envelopes.
pub const PROVIDER_ID: &str = "aws-kms";
