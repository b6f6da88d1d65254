//! The running policy: one key-ring per policy, providers connected once per KEK, and atomic
//! reload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sealbox_core::{
    EncryptionContext, Error, KekRef, KekUri, KeyProvider, ProviderError, ProviderErrorKind,
};
use sealbox_keyring::Keyring;

use crate::config::{ConfigErrors, Policy, PolicyConfig};

/// Why a policy could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file is invalid.
    #[error("invalid policy:\n{0}")]
    Config(#[from] ConfigErrors),
    /// A KEK could not be reached or used.
    #[error("KEK `{uri}`: {source}")]
    Kek {
        /// The KEK URI.
        uri: String,
        /// The provider's error.
        source: ProviderError,
    },
    /// A key-ring could not be built.
    #[error("{policy}: {source}")]
    Keyring {
        /// The policy's name.
        policy: String,
        /// The error.
        source: Error,
    },
}

/// A namespace's key-ring and encryption context.
#[derive(Debug, Clone)]
pub struct Tenant<'a> {
    /// The key-ring of the namespace's policy (shared by the namespaces of that policy;
    /// leases and caches are partitioned by context, which holds the namespace).
    pub keyring: &'a Keyring,
    /// The namespace's context: `namespace` plus the policy's extra fields.
    pub context: EncryptionContext,
    /// The effective policy.
    pub policy: &'a Policy,
}

/// A validated policy with its providers connected and key-rings built.
#[derive(Debug)]
pub struct PolicyKeyrings {
    config: PolicyConfig,
    /// 0: the default; i + 1: rule i.
    keyrings: Vec<Keyring>,
    providers: Vec<(KekUri, Arc<dyn KeyProvider>)>,
}

impl PolicyKeyrings {
    /// Connects every KEK the policy names (once each) and builds the key-rings.
    pub async fn build(config: PolicyConfig) -> Result<Self, PolicyError> {
        let mut providers: Vec<(KekUri, Arc<dyn KeyProvider>)> = Vec::new();
        for uri in config.keks() {
            let provider = connect(uri, &config)
                .await
                .map_err(|source| PolicyError::Kek {
                    uri: uri.to_string(),
                    source,
                })?;
            providers.push((uri.clone(), provider));
        }
        let lookup: HashMap<&KekUri, &Arc<dyn KeyProvider>> =
            providers.iter().map(|(u, p)| (u, p)).collect();
        let get = |uri: &KekUri| -> Result<Arc<dyn KeyProvider>, PolicyError> {
            lookup
                .get(uri)
                .map(|p| Arc::clone(p))
                .ok_or_else(|| PolicyError::Kek {
                    uri: uri.to_string(),
                    source: misconfigured(uri, "KEK was not connected".into()),
                })
        };
        let mut keyrings = Vec::new();
        let policies =
            std::iter::once(&config.default).chain(config.rules.iter().map(|r| &r.policy));
        for policy in policies {
            let mut builder = Keyring::builder(get(&policy.active)?)
                .lease_limits(policy.lease)
                .suite(policy.suite);
            for d in &policy.decrypt_only {
                builder = builder.decrypt_only(get(d)?);
            }
            let keyring = builder.build().map_err(|source| PolicyError::Keyring {
                policy: policy.name.clone(),
                source,
            })?;
            keyrings.push(keyring);
        }
        Ok(Self {
            config,
            keyrings,
            providers,
        })
    }

    /// Reads, validates and builds a policy file.
    pub async fn load(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        Self::build(PolicyConfig::from_file(path)?).await
    }

    /// The validated configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Every key-ring: the default's first, then one per rule (for counters).
    pub fn keyrings(&self) -> &[Keyring] {
        &self.keyrings
    }

    /// Every connected KEK.
    pub fn providers(&self) -> &[(KekUri, Arc<dyn KeyProvider>)] {
        &self.providers
    }

    /// The policy's URI for the KEK an envelope names, if one of its KEKs owns it (asked of
    /// the connected provider, so aliases and replicas resolve as they do for decryption).
    pub fn uri_of(&self, kek: &KekRef) -> Option<&KekUri> {
        self.providers
            .iter()
            .find(|(_, p)| p.owns(kek))
            .map(|(uri, _)| uri)
    }

    /// The key-ring and context of `namespace`: the first matching rule's, else the default's.
    /// There is no pass-through: every namespace resolves to a policy.
    pub fn tenant(&self, namespace: &str) -> Result<Tenant<'_>, Error> {
        let (index, policy) = match self.config.rule_for(namespace) {
            Some((i, rule)) => (i + 1, &rule.policy),
            None => (0, &self.config.default),
        };
        Ok(Tenant {
            keyring: &self.keyrings[index],
            context: policy.context_for(namespace)?,
            policy,
        })
    }

    /// Seals `plaintext` for `namespace`.
    pub async fn seal(&self, namespace: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let t = self.tenant(namespace)?;
        t.keyring.seal(&t.context, plaintext).await
    }

    /// Opens an envelope presented as `namespace`'s; one sealed for another namespace fails.
    pub async fn open(&self, namespace: &str, envelope: &[u8]) -> Result<Vec<u8>, Error> {
        let t = self.tenant(namespace)?;
        t.keyring.open(&t.context, envelope).await
    }
}

fn misconfigured(uri: &KekUri, message: String) -> ProviderError {
    ProviderError::new(
        uri.provider_id(),
        uri.to_string(),
        ProviderErrorKind::Misconfigured,
        message,
    )
}

/// Connects the provider a KEK URI names, with the policy's settings for its scheme.
pub async fn connect(
    uri: &KekUri,
    config: &PolicyConfig,
) -> Result<Arc<dyn KeyProvider>, ProviderError> {
    let (scheme, settings) = config.scheme_of(uri).ok_or_else(|| {
        misconfigured(
            uri,
            format!(
                "the `{}` KEK scheme is not compiled into this build",
                uri.scheme()
            ),
        )
    })?;
    scheme.connect(uri, settings).await
}

/// A policy that can be reloaded while in use. Readers take a snapshot
/// ([`ReloadablePolicy::current`]) and finish on it even if a reload happens meanwhile; a
/// reload that fails (invalid file, unreachable KEK) leaves the old policy in force.
#[derive(Debug)]
pub struct ReloadablePolicy {
    path: PathBuf,
    current: ArcSwap<PolicyKeyrings>,
}

impl ReloadablePolicy {
    /// Loads the policy file at `path`.
    pub async fn load(path: impl Into<PathBuf>) -> Result<Self, PolicyError> {
        let path = path.into();
        let keyrings = PolicyKeyrings::load(&path).await?;
        Ok(Self {
            path,
            current: ArcSwap::from_pointee(keyrings),
        })
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<PolicyKeyrings> {
        self.current.load_full()
    }

    /// Re-reads the file. On success the new policy replaces the old atomically and the
    /// change is logged; on failure the error is logged and returned and the old policy stays.
    pub async fn reload(&self) -> Result<(), PolicyError> {
        match PolicyKeyrings::load(&self.path).await {
            Ok(new) => {
                let summary = format!(
                    "{} rule(s), default KEK {}",
                    new.config().rules.len(),
                    new.config().default.active
                );
                self.current.store(Arc::new(new));
                tracing::info!(path = %self.path.display(), "key policy reloaded: {summary}");
                Ok(())
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), "key policy reload rejected, the previous policy stays in force: {e}");
                Err(e)
            }
        }
    }

    /// Reloads on every SIGHUP until the returned task is aborted.
    #[cfg(unix)]
    pub fn reload_on_sighup(self: &Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let this = self.clone();
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = this.reload().await;
            }
        }))
    }
}
