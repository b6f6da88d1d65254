//! The running policy: one key-ring per policy, providers connected once per KEK, and atomic
//! reload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sealbox_core::{EncryptionContext, Error, KeyProvider, ProviderError, ProviderErrorKind};
use sealbox_keyring::Keyring;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::config::{ConfigErrors, Policy, PolicyConfig, VaultAuthSetting};
use crate::uri::{KekUri, LocalSource};

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
            let mut builder = Keyring::builder(get(&policy.active)?).lease_limits(policy.lease);
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

fn read_secret(
    uri: &KekUri,
    env: Option<&str>,
    file: Option<&str>,
) -> Result<SecretString, ProviderError> {
    if let Some(var) = env {
        return std::env::var(var)
            .map(|v| SecretString::from(v.trim().to_owned()))
            .map_err(|_| misconfigured(uri, format!("environment variable {var} is not set")));
    }
    if let Some(path) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| misconfigured(uri, format!("cannot read secret file {path}: {e}")))?,
        );
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    Err(misconfigured(uri, "no secret source configured".into()))
}

/// Connects the provider a KEK URI names.
pub async fn connect(
    uri: &KekUri,
    config: &PolicyConfig,
) -> Result<Arc<dyn KeyProvider>, ProviderError> {
    let (vault, aws, gcp) = (config.vault.as_ref(), &config.aws, &config.gcp);
    match uri {
        KekUri::Local { name, source } => {
            let kek = match source {
                LocalSource::DevDefault => sealbox_local::LocalKek::dev_default()?,
                LocalSource::File(path) => sealbox_local::LocalKek::from_file(name, path)?,
                LocalSource::Env(var) => sealbox_local::LocalKek::from_env(name, var)?,
            };
            Ok(Arc::new(kek))
        }
        #[cfg(feature = "aws")]
        KekUri::AwsKms {
            key,
            region,
            endpoint,
        } => {
            let mut config = sealbox_aws::AwsKmsConfig::new(key)
                .max_attempts(aws.max_attempts)
                .allow_http(aws.allow_http)
                .multi_region_replicas(aws.multi_region_replicas);
            config.attempt_timeout = aws.attempt_timeout;
            if let Some(r) = region {
                config = config.region(r);
            }
            if let Some(e) = endpoint {
                config = config.endpoint_url(e);
            }
            Ok(Arc::new(sealbox_aws::AwsKms::connect(config).await?))
        }
        #[cfg(feature = "vault")]
        KekUri::Vault {
            address,
            mount,
            key,
            namespace,
        } => {
            use sealbox_vault::{VaultAuth, VaultTransit, VaultTransitConfig};
            let settings = vault.ok_or_else(|| misconfigured(uri, "no [vault] settings".into()))?;
            let auth = match &settings.auth {
                VaultAuthSetting::Token { env, file } => {
                    VaultAuth::Token(read_secret(uri, env.as_deref(), file.as_deref())?)
                }
                VaultAuthSetting::AppRole {
                    mount,
                    role_id,
                    secret_id_env,
                    secret_id_file,
                } => VaultAuth::AppRole {
                    mount: mount.clone(),
                    role_id: role_id.clone(),
                    secret_id: read_secret(
                        uri,
                        secret_id_env.as_deref(),
                        secret_id_file.as_deref(),
                    )?,
                },
                VaultAuthSetting::Kubernetes {
                    mount,
                    role,
                    jwt_path,
                } => VaultAuth::Kubernetes {
                    mount: mount.clone(),
                    role: role.clone(),
                    jwt_path: PathBuf::from(jwt_path),
                },
            };
            let mut config = VaultTransitConfig::new(address, key, auth)
                .mount(mount)
                .timeout(settings.timeout);
            if let Some(ns) = namespace {
                config = config.namespace(ns);
            }
            if let Some(ca) = &settings.ca_cert {
                config = config.ca_cert(ca);
            }
            Ok(Arc::new(VaultTransit::connect(config).await?))
        }
        #[cfg(feature = "gcp")]
        KekUri::GcpKms { name } => {
            let mut c = sealbox_gcp::GcpKmsConfig::new(name).allow_http(gcp.allow_http);
            if let Some(e) = &gcp.endpoint {
                c = c.endpoint(e);
            }
            if let Some(f) = &gcp.credentials_file {
                c = c.credentials(sealbox_gcp::GcpCredentials::ServiceAccountFile(
                    PathBuf::from(f),
                ));
            }
            if let Some(m) = gcp.max_attempts {
                c = c.max_attempts(m);
            }
            Ok(Arc::new(sealbox_gcp::GcpKms::connect(c).await?))
        }
        // Reachable only when a provider feature is switched off.
        #[allow(unreachable_patterns)]
        other => {
            let _ = (vault, aws, gcp);
            Err(misconfigured(
                other,
                format!(
                    "the {} provider is not compiled into this build",
                    other.provider_id()
                ),
            ))
        }
    }
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
