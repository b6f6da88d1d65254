//! The provider: connecting, checking the key, and tracking its primary version.

mod http;
mod key_provider;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealbox_core::transport::{Transport, redact_endpoint};
use sealbox_core::{EncryptionContext, ProviderError, ProviderErrorKind};
use serde_json::Value;

use crate::config::{GcpCredentials, GcpKmsConfig};
use crate::endpoint::check_endpoint;
use crate::{AAD_LABEL, PROVIDER_ID};

/// A Cloud KMS symmetric key used as a Sealbox KEK.
pub struct GcpKms {
    http: reqwest::Client,
    endpoint: String,
    key_name: String,
    auth: Arc<dyn gcp_auth::TokenProvider>,
    max_attempts: u32,
    primary_ttl: Duration,
    primary: Mutex<Option<(String, Instant)>>,
}

impl fmt::Debug for GcpKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKms")
            .field("endpoint", &self.endpoint)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl GcpKms {
    /// Builds the client, obtains credentials, and checks the key exists and can encrypt.
    pub async fn connect(config: GcpKmsConfig) -> Result<Self, ProviderError> {
        let key = config.key_name.clone();
        let err = |kind, msg: String| ProviderError::new(PROVIDER_ID, &key, kind, msg);
        let parts: Vec<&str> = key.split('/').collect();
        if parts.len() != 8
            || parts[0] != "projects"
            || parts[2] != "locations"
            || parts[4] != "keyRings"
            || parts[6] != "cryptoKeys"
        {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                "key name must be projects/P/locations/L/keyRings/R/cryptoKeys/K".into(),
            ));
        }
        // Before credentials are looked for: the access token goes to this endpoint.
        match check_endpoint(&config.endpoint, config.allow_http)
            .map_err(|m| err(ProviderErrorKind::Misconfigured, m))?
        {
            Transport::OptedInHttp => tracing::warn!(
                provider = PROVIDER_ID,
                key = %key,
                endpoint = %redact_endpoint(&config.endpoint),
                "INSECURE: plain-HTTP Cloud KMS endpoint on a non-loopback host accepted because \
                 allow_http is set; access tokens and data keys cross the network UNENCRYPTED \
                 (development only)"
            ),
            Transport::Tls | Transport::LoopbackHttp => {}
        }
        let auth: Arc<dyn gcp_auth::TokenProvider> = match &config.credentials {
            GcpCredentials::Default => gcp_auth::provider().await.map_err(|e| {
                err(
                    ProviderErrorKind::Misconfigured,
                    format!("no Google credentials found: {e}"),
                )
            })?,
            GcpCredentials::ServiceAccountFile(path) => Arc::new(
                gcp_auth::CustomServiceAccount::from_file(path).map_err(|e| {
                    err(
                        ProviderErrorKind::Misconfigured,
                        format!("service-account file {}: {e}", path.display()),
                    )
                })?,
            ),
            GcpCredentials::ServiceAccountJson(text) => Arc::new(
                gcp_auth::CustomServiceAccount::from_json(secrecy::ExposeSecret::expose_secret(
                    text,
                ))
                .map_err(|e| {
                    err(
                        ProviderErrorKind::Misconfigured,
                        format!("service-account JSON: {e}"),
                    )
                })?,
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // Cloud KMS never redirects; following one could carry a data key to another
            // URL (a 307/308 keeps the body), even from https:// to http://.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                err(
                    ProviderErrorKind::Misconfigured,
                    format!("HTTP client: {e}"),
                )
            })?;
        let kms = Self {
            http,
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            key_name: key.clone(),
            auth,
            max_attempts: config.max_attempts.max(1),
            primary_ttl: config.primary_ttl,
            primary: Mutex::new(None),
        };
        let info: Value = kms.call_parsed(reqwest::Method::GET, &key, None).await?;
        let purpose_ok = match &info["purpose"] {
            Value::String(s) => s == "ENCRYPT_DECRYPT",
            Value::Number(n) => n.as_u64() == Some(1),
            _ => false,
        };
        if !purpose_ok {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                "the key's purpose is not ENCRYPT_DECRYPT".into(),
            ));
        }
        kms.remember_primary(&info)?;
        Ok(kms)
    }

    fn err(&self, kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError::new(PROVIDER_ID, &self.key_name, kind, message)
    }

    fn remember_primary(&self, info: &Value) -> Result<String, ProviderError> {
        let name = info["primary"]["name"].as_str().ok_or_else(|| {
            self.err(
                ProviderErrorKind::KeyDisabled,
                "the key has no primary version",
            )
        })?;
        let version = name
            .rsplit_once("/cryptoKeyVersions/")
            .map(|(_, v)| v.to_owned())
            .ok_or_else(|| {
                self.err(
                    ProviderErrorKind::Protocol,
                    format!("unexpected version name `{name}`"),
                )
            })?;
        *self.primary.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((version.clone(), Instant::now()));
        Ok(version)
    }

    async fn primary_version(&self, refresh: bool) -> Result<String, ProviderError> {
        if !refresh {
            let cached = self
                .primary
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some((v, at)) = cached
                && at.elapsed() < self.primary_ttl
            {
                return Ok(v);
            }
        }
        let info: Value = self
            .call_parsed(reqwest::Method::GET, &self.key_name, None)
            .await?;
        self.remember_primary(&info)
    }

    fn aad(version: &str, context: &EncryptionContext) -> Vec<u8> {
        let mut aad = AAD_LABEL.to_vec();
        aad.push(version.len() as u8);
        aad.extend_from_slice(version.as_bytes());
        context.encode_into(&mut aad);
        aad
    }
}
