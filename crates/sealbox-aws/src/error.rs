//! Mapping AWS SDK errors to typed provider errors.

use std::fmt;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use sealbox_core::error::source_chain;
use sealbox_core::{ProviderError, ProviderErrorKind};

use crate::PROVIDER_ID;

/// A provider error about `key`.
pub(crate) fn err(key: &str, kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
    ProviderError::new(PROVIDER_ID, key, kind, message)
}

/// Maps an SDK error to a typed provider error by its AWS error code.
pub(crate) fn map_error<E, R>(
    key: &str,
    op: &str,
    attempts: u32,
    e: SdkError<E, R>,
) -> ProviderError
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
