//! Transit ciphertexts (`vault:vN:…`) as wrapped keys, and base64 data keys.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sealbox_core::{DataKey, KekRef, KeyProvider, ProviderError, ProviderErrorKind, WrappedKey};
use zeroize::Zeroizing;

use super::VaultTransit;
use crate::PROVIDER_ID;

impl VaultTransit {
    pub(super) fn wrapped_from(&self, ciphertext: String) -> Result<WrappedKey, ProviderError> {
        let version = parse_version(&ciphertext).ok_or_else(|| {
            self.err(
                ProviderErrorKind::Protocol,
                "Transit returned a ciphertext without `vault:vN:`",
            )
        })?;
        let kek = KekRef::new(PROVIDER_ID, &self.key_id)
            .and_then(|k| k.with_version(version.to_string()))
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        WrappedKey::new(kek, ciphertext.into_bytes())
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    /// The Transit ciphertext of a wrapped key, checked against the header's version.
    pub(super) fn ciphertext_of<'a>(
        &self,
        wrapped: &'a WrappedKey,
    ) -> Result<&'a str, ProviderError> {
        if !self.owns(wrapped.kek()) {
            return Err(self.err(
                ProviderErrorKind::NotFound,
                format!(
                    "wrapped key belongs to {}, not to this Transit key",
                    wrapped.kek()
                ),
            ));
        }
        let ct = std::str::from_utf8(wrapped.ciphertext()).map_err(|_| {
            self.err(
                ProviderErrorKind::InvalidWrappedKey,
                "wrapped key is not a Transit ciphertext",
            )
        })?;
        let version = parse_version(ct).ok_or_else(|| {
            self.err(
                ProviderErrorKind::InvalidWrappedKey,
                "wrapped key is not a `vault:vN:` ciphertext",
            )
        })?;
        if wrapped.kek().key_version() != Some(version.to_string().as_str()) {
            return Err(self.err(
                ProviderErrorKind::InvalidWrappedKey,
                "the envelope's key version does not match the Transit ciphertext's",
            ));
        }
        Ok(ct)
    }

    pub(super) fn decode_key(&self, plaintext_b64: &str) -> Result<DataKey, ProviderError> {
        let bytes = Zeroizing::new(B64.decode(plaintext_b64).map_err(|_| {
            self.err(
                ProviderErrorKind::Protocol,
                "Transit returned a plaintext that is not base64",
            )
        })?);
        DataKey::try_from_slice(&bytes)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }
}

/// The `N` of `vault:vN:…`.
fn parse_version(ciphertext: &str) -> Option<u64> {
    let rest = ciphertext.strip_prefix("vault:v")?;
    let (n, body) = rest.split_once(':')?;
    if body.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn transit_versions_are_parsed_strictly() {
        assert_eq!(parse_version("vault:v12:abc"), Some(12));
        assert_eq!(parse_version("vault:v1:"), None);
        assert_eq!(parse_version("vault:vx:abc"), None);
        assert_eq!(parse_version("vault:v:abc"), None);
        assert_eq!(parse_version("other:v1:abc"), None);
    }
}
