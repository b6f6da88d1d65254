//! Wrapping with `:encrypt`, unwrapping with `:decrypt`, and the [`KeyProvider`]
//! implementation.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sealbox_core::{
    DataKey, EncryptionContext, KekRef, KeyDescription, KeyProvider, ProviderError,
    ProviderErrorKind, WrappedKey,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::GcpKms;
use crate::PROVIDER_ID;

/// A base64 string from a JSON answer that holds key material: zeroized on drop, even when
/// deserializing the rest of the answer fails.
struct SecretBase64(Zeroizing<String>);

impl<'de> serde::Deserialize<'de> for SecretBase64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretBase64(Zeroizing::new(s)))
    }
}

fn crc(data: &[u8]) -> u64 {
    u64::from(crc32c::crc32c(data))
}

/// An int64 JSON field (a string per proto3 JSON, or a number).
fn int64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

impl GcpKms {
    async fn encrypt_with(
        &self,
        version: &str,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        let aad = Self::aad(version, context);
        // Zeroize: the body holds the data key (base64). Build it in zeroizing memory, never
        // in a serde_json::Value whose strings would be freed without being wiped, and with
        // its exact capacity reserved up front (`format!` grows its buffer and frees the
        // smaller ones unwiped).
        let plaintext = Zeroizing::new(B64.encode(data_key.expose_secret()));
        let aad_b64 = B64.encode(&aad);
        let plaintext_crc = crc(data_key.expose_secret()).to_string();
        let aad_crc = crc(&aad).to_string();
        let pieces: [&str; 9] = [
            r#"{"plaintext":""#,
            plaintext.as_str(),
            r#"","additionalAuthenticatedData":""#,
            &aad_b64,
            r#"","plaintextCrc32c":""#,
            &plaintext_crc,
            r#"","additionalAuthenticatedDataCrc32c":""#,
            &aad_crc,
            r#""}"#,
        ];
        let mut body = Zeroizing::new(String::with_capacity(pieces.iter().map(|p| p.len()).sum()));
        for piece in pieces {
            body.push_str(piece);
        }
        let path = format!("{}/cryptoKeyVersions/{version}:encrypt", self.key_name);
        let resp: Value = self
            .call_parsed(reqwest::Method::POST, &path, Some(body.as_bytes()))
            .await?;
        if resp["verifiedPlaintextCrc32c"] != json!(true)
            || resp["verifiedAdditionalAuthenticatedDataCrc32c"] != json!(true)
        {
            return Err(self.err(ProviderErrorKind::Protocol, "Cloud KMS did not verify the request's CRC32C: the request may have been corrupted in transit"));
        }
        let ciphertext = resp["ciphertext"]
            .as_str()
            .and_then(|c| B64.decode(c).ok())
            .ok_or_else(|| {
                self.err(
                    ProviderErrorKind::Protocol,
                    "encrypt returned no ciphertext",
                )
            })?;
        if int64(&resp["ciphertextCrc32c"]) != Some(crc(&ciphertext)) {
            return Err(self.err(
                ProviderErrorKind::Protocol,
                "ciphertext CRC32C mismatch: the response was corrupted in transit",
            ));
        }
        let expected_name = format!("{}/cryptoKeyVersions/{version}", self.key_name);
        if resp["name"].as_str() != Some(expected_name.as_str()) {
            return Err(self.err(
                ProviderErrorKind::Protocol,
                format!("encrypt used `{}`, not {expected_name}", resp["name"]),
            ));
        }
        let kek = KekRef::new(PROVIDER_ID, &self.key_name)
            .and_then(|k| k.with_version(version))
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        WrappedKey::new(kek, ciphertext)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }
}

#[async_trait]
impl KeyProvider for GcpKms {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_name
    }

    async fn wrap(
        &self,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        let version = self.primary_version(false).await?;
        match self.encrypt_with(&version, data_key, context).await {
            // The cached primary may have been disabled or replaced: re-read it once.
            Err(e) if e.kind() == ProviderErrorKind::KeyDisabled => {
                let fresh = self.primary_version(true).await?;
                if fresh == version {
                    return Err(e);
                }
                self.encrypt_with(&fresh, data_key, context).await
            }
            other => other,
        }
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        if !self.owns(wrapped.kek()) {
            return Err(self.err(
                ProviderErrorKind::NotFound,
                format!("wrapped key belongs to {}, not to this key", wrapped.kek()),
            ));
        }
        let version = wrapped.kek().key_version().ok_or_else(|| {
            self.err(
                ProviderErrorKind::InvalidWrappedKey,
                "the envelope names no CryptoKeyVersion",
            )
        })?;
        let aad = Self::aad(version, context);
        let body = json!({
            "ciphertext": B64.encode(wrapped.ciphertext()),
            "additionalAuthenticatedData": B64.encode(&aad),
            "ciphertextCrc32c": crc(wrapped.ciphertext()).to_string(),
            "additionalAuthenticatedDataCrc32c": crc(&aad).to_string(),
        })
        .to_string();
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct DecryptResponse {
            // Zeroize: the base64 data key, wiped on drop (also if parsing fails half-way).
            plaintext: Option<SecretBase64>,
            #[serde(default)]
            plaintext_crc32c: Value,
        }
        let resp: DecryptResponse = self
            .call_parsed(
                reqwest::Method::POST,
                &format!("{}:decrypt", self.key_name),
                Some(body.as_bytes()),
            )
            .await?;
        let encoded = resp
            .plaintext
            .ok_or_else(|| self.err(ProviderErrorKind::Protocol, "decrypt returned no plaintext"))?
            .0;
        // Zeroize: decode into a zeroizing buffer of the right size. (`Engine::decode` would
        // drop its partly decoded Vec unwiped when the input turns out to be invalid.)
        let mut plaintext = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(encoded.len())]);
        let len = B64
            .decode_slice(encoded.as_bytes(), &mut plaintext[..])
            .map_err(|_| {
                self.err(
                    ProviderErrorKind::Protocol,
                    "decrypt returned a plaintext that is not base64",
                )
            })?;
        plaintext.truncate(len);
        if int64(&resp.plaintext_crc32c) != Some(crc(&plaintext)) {
            return Err(self.err(
                ProviderErrorKind::Protocol,
                "plaintext CRC32C mismatch: the response was corrupted in transit",
            ));
        }
        DataKey::try_from_slice(&plaintext)
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    async fn describe(&self) -> Result<KeyDescription, ProviderError> {
        let version = self.primary_version(true).await?;
        let kek = KekRef::new(PROVIDER_ID, &self.key_name)
            .and_then(|k| k.with_version(&version))
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        Ok(KeyDescription::new(
            kek,
            vec![version],
            self.native_rewrap(),
            true,
        ))
    }
}
