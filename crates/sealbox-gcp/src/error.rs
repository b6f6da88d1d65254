//! Mapping Cloud KMS answers and transport failures to typed provider errors.

use sealbox_core::ProviderErrorKind;
use sealbox_core::error::source_chain;
use serde_json::Value;

/// `e` and its sources, joined by `": "`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let sources = source_chain(e);
    if sources.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {sources}")
    }
}

/// The kind and message of a Cloud KMS error answer.
pub(crate) fn classify(status: reqwest::StatusCode, text: &str) -> (ProviderErrorKind, String) {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let google = v["error"]["status"].as_str().unwrap_or("");
    let mut msg = v["error"]["message"].as_str().unwrap_or(text).to_owned();
    if msg.len() > 512 {
        let mut end = 512;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
        msg.push('…');
    }
    let kind = match (status.as_u16(), google) {
        (401 | 403, _) => ProviderErrorKind::PermissionDenied,
        (404, _) => ProviderErrorKind::NotFound,
        (429, _) => ProviderErrorKind::Throttled,
        (_, "FAILED_PRECONDITION") => ProviderErrorKind::KeyDisabled,
        (400, "INVALID_ARGUMENT") if msg.contains("Decryption failed") => {
            ProviderErrorKind::InvalidWrappedKey
        }
        (500..=599, _) => ProviderErrorKind::Unavailable,
        _ => ProviderErrorKind::Protocol,
    };
    (kind, format!("HTTP {} {google}: {msg}", status.as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_includes_the_error_itself() {
        let e = sealbox_core::ProviderError::new("p", "k", ProviderErrorKind::Protocol, "outer")
            .with_source(std::fmt::Error);
        assert_eq!(error_chain(&e), format!("{e}: {}", std::fmt::Error));
        assert_eq!(error_chain(&std::fmt::Error), std::fmt::Error.to_string());
    }
}
