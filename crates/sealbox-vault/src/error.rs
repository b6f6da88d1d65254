//! Mapping Vault errors to typed provider errors.

use sealbox_core::error::source_chain;
use sealbox_core::{ProviderError, ProviderErrorKind};
use vaultrs::error::ClientError;

use crate::PROVIDER_ID;

/// Maps a Vault error to a typed provider error, never echoing request bodies.
pub(crate) fn map_error(key_id: &str, op: &str, e: ClientError) -> ProviderError {
    let (kind, message) = match &e {
        ClientError::APIError { code, errors } => {
            let text = errors.join("; ");
            let lower = text.to_lowercase();
            let kind = match code {
                403 => ProviderErrorKind::PermissionDenied,
                404 => ProviderErrorKind::NotFound,
                429 => ProviderErrorKind::Throttled,
                503 if lower.contains("sealed") => ProviderErrorKind::Unavailable,
                500..=599 => ProviderErrorKind::Unavailable,
                _ if lower.contains("key not found") || lower.contains("no existing key") => {
                    ProviderErrorKind::NotFound
                }
                _ if lower.contains("disallowed by policy")
                    || lower.contains("min_decryption_version") =>
                {
                    ProviderErrorKind::KeyDisabled
                }
                _ if lower.contains("authentication failed")
                    || lower.contains("invalid ciphertext")
                    || lower.contains("unable to decrypt") =>
                {
                    ProviderErrorKind::InvalidWrappedKey
                }
                _ => ProviderErrorKind::Protocol,
            };
            let hint = if lower.contains("sealed") {
                " (Vault is sealed: an operator must unseal it)"
            } else if lower.contains("disallowed by policy") {
                " (the key version is below the key's min_decryption_version)"
            } else {
                ""
            };
            (kind, format!("{op}: HTTP {code}: {text}{hint}"))
        }
        ClientError::RestClientError { source } => {
            let text = format!("{source}: {}", source_chain(source));
            let kind = if text.to_lowercase().contains("timed out")
                || text.to_lowercase().contains("timeout")
            {
                ProviderErrorKind::Timeout
            } else {
                ProviderErrorKind::Unavailable
            };
            (kind, format!("{op}: cannot reach Vault: {text}"))
        }
        other => (ProviderErrorKind::Protocol, format!("{op}: {other}")),
    };
    ProviderError::new(PROVIDER_ID, key_id, kind, message)
}
