//! # sealbox-gcp — Google Cloud KMS as a Sealbox KEK
//!
//! Cloud KMS has no data-key call: data keys are generated locally and wrapped with
//! `:encrypt` over HTTPS JSON, with a bearer token from `gcp_auth` (service-account JSON via
//! `GOOGLE_APPLICATION_CREDENTIALS`, the metadata server, or gcloud user credentials).
//!
//! - **Context binding**: `additionalAuthenticatedData` = `"sealbox-gcp/v1"`, the key version,
//!   and the canonical encryption context. Binding the version means a header whose version
//!   was altered no longer decrypts.
//! - **Version**: each wrap names the primary CryptoKeyVersion explicitly
//!   (`…/cryptoKeyVersions/N:encrypt`); the version is cached (30 s by default) and re-read when
//!   `:encrypt` refuses it. The envelope records `N`.
//! - **Integrity**: every request carries CRC32C of its data (`plaintextCrc32c`,
//!   `additionalAuthenticatedDataCrc32c`, `ciphertextCrc32c`), and every response is checked
//!   (`verifiedPlaintextCrc32c`, `verifiedAdditionalAuthenticatedDataCrc32c`, the returned
//!   CRC32Cs); a mismatch is a loud `Protocol` error, as Google recommends.
//! - **Rewrap** = decrypt + encrypt inside this process (Cloud KMS has no re-encrypt call);
//!   the plaintext key is zeroized.
//! - Retries on 429 and 5xx with bounded exponential backoff; typed errors for permission
//!   denied, disabled or destroyed versions, unknown keys and locations.
//! - **Endpoints must be `https://`**: a plain `http://` endpoint is refused at connect
//!   unless its host is loopback (`127.0.0.0/8`, `::1`, `localhost`) or
//!   [`GcpKmsConfig::allow_http`] is set (development only; logged as a warning at every
//!   connect). Redirects are never followed.
//! - **Zeroization**: request bodies holding a data key, response bodies, and the base64 and
//!   decoded plaintexts are held in zeroizing memory (buffers inside `hyper`/`rustls` are
//!   out of reach).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod endpoint;
mod error;
mod provider;
mod scheme;

pub use config::{GcpCredentials, GcpKmsConfig};
pub use provider::GcpKms;
pub use scheme::GcpKmsScheme;

/// The provider ID written into envelopes.
pub const PROVIDER_ID: &str = "gcp-kms";
/// The OAuth scope Cloud KMS needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloudkms";
/// The AAD label.
pub const AAD_LABEL: &[u8] = b"sealbox-gcp/v1";
