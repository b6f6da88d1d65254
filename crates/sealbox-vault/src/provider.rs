//! [`VaultTransit`]: connecting to a Transit key and the provider's shared helpers.

mod batch;
mod ciphertext;
mod key_provider;
mod self_test;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sealbox_core::{KekRef, ProviderError, ProviderErrorKind};
use secrecy::{ExposeSecret, SecretString};

use crate::session::{self, Login, Session};
use crate::{ContextBinding, PROVIDER_ID, SessionStats, VaultAuth, VaultTransitConfig};

/// A Transit key used as a Sealbox KEK.
///
/// Dropping it stops its token-maintenance task.
pub struct VaultTransit {
    session: Arc<Session>,
    maintenance: Option<tokio::task::AbortHandle>,
    mount: String,
    key: String,
    key_id: String,
    binding: ContextBinding,
}

impl Drop for VaultTransit {
    fn drop(&mut self) {
        if let Some(task) = &self.maintenance {
            task.abort();
        }
    }
}

impl fmt::Debug for VaultTransit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultTransit")
            .field("address", &self.session.transport.address.as_str())
            .field("key_id", &self.key_id)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl VaultTransit {
    /// Connects, authenticates, and reads the key to learn how the context is bound; for a
    /// non-derived key, checks that the server enforces `associated_data` (see the crate
    /// documentation). Starts the token-maintenance task on the current Tokio runtime.
    ///
    /// Fails with `NotFound` if the key does not exist, `Misconfigured` if the settings are
    /// invalid, the key cannot encrypt, or the server ignores associated data.
    pub async fn connect(config: VaultTransitConfig) -> Result<Self, ProviderError> {
        let key_id = match &config.namespace {
            Some(ns) => format!(
                "{}/{}/keys/{}",
                ns.trim_matches('/'),
                config.mount,
                config.key
            ),
            None => format!("{}/keys/{}", config.mount, config.key),
        };
        let err = |kind, msg: String| ProviderError::new(PROVIDER_ID, &key_id, kind, msg);
        KekRef::new(PROVIDER_ID, &key_id)
            .map_err(|e| err(ProviderErrorKind::Misconfigured, e.to_string()))?;

        // Refuse what would make the HTTP layer panic (vaultrs unwraps URL parsing), and never
        // let VAULT_SKIP_VERIFY switch certificate checks off behind the operator's back.
        let address = session::parse_address(&config.address)
            .map_err(|e| err(ProviderErrorKind::Misconfigured, e))?;
        if let Some(ns) = &config.namespace
            && (ns.is_empty()
                || !ns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)))
        {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                "a Vault namespace may only hold ASCII letters, digits and - _ . /".into(),
            ));
        }
        let token: Option<SecretString> = match &config.auth {
            VaultAuth::Token(t) => Some(t.clone()),
            VaultAuth::TokenFromEnv => Some(
                std::env::var("VAULT_TOKEN")
                    .or_else(|_| std::env::var("BAO_TOKEN"))
                    .map(SecretString::from)
                    .map_err(|_| {
                        err(
                            ProviderErrorKind::Misconfigured,
                            "VAULT_TOKEN is not set".into(),
                        )
                    })?,
            ),
            _ => None,
        };
        if let Some(t) = &token
            && !session::token_is_sendable(t.expose_secret())
        {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                "the Vault token contains whitespace or non-ASCII characters".into(),
            ));
        }
        if address.scheme() == "http" {
            tracing::warn!(
                key_id = %key_id,
                "Vault is reached over plain HTTP: tokens and data keys cross the network unencrypted (development only)"
            );
        }
        let http = session::build_http(&address, config.ca_cert.as_deref(), config.timeout)
            .map_err(|e| err(ProviderErrorKind::Misconfigured, e))?;
        let transport =
            session::Transport::new(http, address, config.timeout, config.namespace.clone());

        let session = match (config.auth, token) {
            (_, Some(token)) => Session::with_token(&key_id, transport, &token),
            (auth, None) => match Login::new(auth) {
                Ok(login) => Session::with_login(&key_id, transport, login).await?,
                Err(_) => {
                    return Err(err(
                        ProviderErrorKind::Misconfigured,
                        "no Vault token".into(),
                    ));
                }
            },
        };
        let session = Arc::new(session);

        let (mount, key) = (config.mount, config.key);
        let info = session
            .call("reading the key", |lease| {
                let (mount, key) = (&mount, &key);
                async move { vaultrs::transit::key::read(&lease.client.0, mount, key).await }
            })
            .await?;
        // Only AEAD keys bind associated data or a derivation context; RSA and other types would
        // wrap keys without binding the encryption context.
        let aead = matches!(
            info.key_type,
            vaultrs::api::transit::KeyType::Aes128Gcm96
                | vaultrs::api::transit::KeyType::Aes256Gcm96
                | vaultrs::api::transit::KeyType::Chacha20Poly1305
        );
        if !aead || !info.supports_encryption || !info.supports_decryption {
            return Err(err(
                ProviderErrorKind::Misconfigured,
                format!(
                    "Transit key `{key}` is of type {:?}; Sealbox needs an AEAD key (aes256-gcm96, aes128-gcm96 or chacha20-poly1305)",
                    info.key_type
                ),
            ));
        }
        let binding = if info.derived {
            ContextBinding::Derived
        } else {
            ContextBinding::AssociatedData
        };
        // A static token: learn its TTL so it can be renewed (after the key read, whose error
        // is the clearer one when the server is unreachable or the token invalid).
        if !session.can_login() {
            session.lookup_token().await?;
        }
        let provider = Self {
            maintenance: session::spawn_maintenance(&session),
            session,
            mount,
            key,
            key_id,
            binding,
        };
        if binding == ContextBinding::AssociatedData {
            tracing::info!(
                key_id = %provider.key_id,
                "Transit key is not derived: the context is bound as associated data and rewrap \
                 runs as decrypt + encrypt in this process; create keys with derived=true for native rewrap"
            );
            provider.associated_data_self_test().await?;
        }
        Ok(provider)
    }

    /// Counters of this provider's token maintenance: logins, renewals, failures.
    pub fn session_stats(&self) -> SessionStats {
        let c = &self.session.counters;
        SessionStats {
            logins: c.logins.load(Ordering::Relaxed),
            renewals: c.renewals.load(Ordering::Relaxed),
            maintenance_failures: c.failures.load(Ordering::Relaxed),
        }
    }
    /// How this key binds the encryption context.
    pub fn binding(&self) -> ContextBinding {
        self.binding
    }

    fn err(&self, kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError::new(PROVIDER_ID, &self.key_id, kind, message)
    }
}
