//! The server's shared state: the key policy, the `[server]` settings in force (swapped as
//! one on reload), metrics and the audit log.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use std::collections::HashMap;

use sealbox_policy::{PolicyKeyrings, ReloadablePolicy, StorageSettings};
use sealbox_temporal::storage::{StorageDriver, StorageError};
use sealbox_temporal::{CodecError, SealboxCodec};

use crate::auth::Authenticator;
use crate::config::ServerConfig;
use crate::observe::AuditLine;
use crate::{limits, metrics};

type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// Where audit lines go.
enum AuditSink {
    Stderr,
    Stdout,
    File(Mutex<std::fs::File>),
}

/// The `[server]` settings in force and what is built from them; SIGHUP swaps them as one.
pub(crate) struct Runtime {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) auth: Authenticator,
    pub(crate) limiter: Option<Limiter>,
    pub(crate) kms_limiter: Option<Limiter>,
    pub(crate) auth_failures: limits::AuthFailures,
}

impl Runtime {
    fn new(config: ServerConfig) -> Self {
        let keyed = |n: u32| {
            std::num::NonZeroU32::new(n)
                .map(|n| governor::RateLimiter::keyed(governor::Quota::per_second(n)))
        };
        Self {
            auth: Authenticator::new(&config),
            limiter: keyed(config.rate_limit),
            kms_limiter: keyed(config.kms_rate_limit),
            auth_failures: limits::AuthFailures::new(config.max_auth_failures),
            config: Arc::new(config),
        }
    }
}

/// Shared state of the server.
pub struct AppState {
    pub(crate) policy: Arc<ReloadablePolicy>,
    pub(crate) runtime: ArcSwap<Runtime>,
    pub(crate) metrics: metrics::Metrics,
    audit: AuditSink,
    pub(crate) ready_cache: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    /// The external-storage driver of the policy's `[storage]` (URL, cap), opened on first
    /// use and reopened when a reload changes them.
    storage: Mutex<Option<(StorageSettings, Arc<dyn StorageDriver>)>>,
    /// Codecs built for the policy in force, by namespace; dropped when a reload puts another
    /// policy in force.
    codecs: Mutex<CodecCache>,
}

/// At most this many namespaces' codecs are kept (namespaces come from callers).
const CODEC_CACHE_MAX: usize = 1024;

#[derive(Default)]
struct CodecCache {
    policy: std::sync::Weak<PolicyKeyrings>,
    by_namespace: HashMap<String, SealboxCodec>,
}

impl AppState {
    /// State for `policy` and `config`; opens the audit log.
    pub fn new(policy: Arc<ReloadablePolicy>, config: ServerConfig) -> std::io::Result<Arc<Self>> {
        let audit = match config.audit_log.as_str() {
            "stderr" => AuditSink::Stderr,
            "stdout" => AuditSink::Stdout,
            path => AuditSink::File(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
        };
        Ok(Arc::new(Self {
            policy,
            runtime: ArcSwap::from_pointee(Runtime::new(config)),
            metrics: metrics::Metrics::new(),
            audit,
            ready_cache: tokio::sync::Mutex::new(None),
            storage: Mutex::new(None),
            codecs: Mutex::new(CodecCache::default()),
        }))
    }

    /// Fetches JWKS keys ahead of the first request.
    pub async fn warm_up(&self) {
        self.runtime.load().auth.warm_up().await;
    }

    /// The `[server]` settings in force.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.runtime.load().config)
    }

    /// Re-reads the whole policy file at `path` — key policy and `[server]` (tokens, JWT,
    /// CORS, limits, metrics and readiness exposure) — and puts both in force together, or
    /// neither: a file that does not validate, or whose KEKs cannot be connected, leaves
    /// everything as it was and is returned as an error. The listen address, TLS and the
    /// audit log are fixed at start; a change to them is logged as needing a restart.
    pub async fn reload(&self, path: &Path) -> Result<(), String> {
        let result = self.reload_inner(path).await;
        match &result {
            Ok(()) => tracing::info!(path = %path.display(), "configuration reloaded"),
            Err(e) => tracing::error!(
                path = %path.display(),
                "configuration reload rejected, the previous configuration stays in force: {e}"
            ),
        }
        result
    }

    async fn reload_inner(&self, path: &Path) -> Result<(), String> {
        let mut new = ServerConfig::from_file(path).map_err(|e| e.to_string())?;
        let old = self.config();
        if new.listen != old.listen {
            tracing::warn!(
                "[server].listen changed to {}; still listening on {} until restarted",
                new.listen,
                old.listen
            );
            new.listen = old.listen;
        }
        if format!("{:?}", new.tls) != format!("{:?}", old.tls) {
            tracing::warn!(
                "[server.tls] changed; the TLS listener keeps its settings until restarted"
            );
        }
        new.tls.clone_from(&old.tls);
        if new.header_timeout != old.header_timeout {
            tracing::warn!(
                "[server].header_timeout changed to {:?}; the listener keeps {:?} until restarted",
                new.header_timeout,
                old.header_timeout
            );
            new.header_timeout = old.header_timeout;
        }
        if new.audit_log != old.audit_log {
            tracing::warn!(
                "[server].audit_log changed; the audit log stays where it is until restarted"
            );
        }
        new.check_exposure()?;
        // Connect the new policy's KEKs before anything is swapped: a failure keeps both.
        self.policy.reload().await.map_err(|e| e.to_string())?;
        let runtime = Runtime::new(new);
        runtime.auth.warm_up().await;
        self.runtime.store(Arc::new(runtime));
        *self.ready_cache.lock().await = None;
        Ok(())
    }

    /// The codec of `namespace` under `policy` (a snapshot of the policy in force), built
    /// once per namespace and policy. It never refuses plaintext on decode (the server shows
    /// it and counts it), and with `[storage]` it takes payloads up to the storage cap.
    pub(crate) fn codec_for(
        &self,
        policy: &Arc<PolicyKeyrings>,
        namespace: &str,
    ) -> Result<SealboxCodec, CodecError> {
        let mut cache = self.codecs.lock().unwrap_or_else(|e| e.into_inner());
        let current = cache
            .policy
            .upgrade()
            .is_some_and(|p| Arc::ptr_eq(&p, policy));
        if !current || cache.by_namespace.len() >= CODEC_CACHE_MAX {
            *cache = CodecCache {
                policy: Arc::downgrade(policy),
                by_namespace: HashMap::new(),
            };
        }
        if let Some(codec) = cache.by_namespace.get(namespace) {
            return Ok(codec.clone());
        }
        let mut builder =
            SealboxCodec::from_policy(Arc::clone(policy), namespace).require_encryption(false);
        if let Some(settings) = &policy.config().storage {
            builder = builder.storage_cap(sealbox_temporal::storage::cap_of(settings));
        }
        let codec = builder.build()?;
        cache
            .by_namespace
            .insert(namespace.to_owned(), codec.clone());
        Ok(codec)
    }

    /// The driver for `settings` (the policy snapshot's `[storage]`).
    pub(crate) fn storage_driver(
        &self,
        settings: &StorageSettings,
    ) -> Result<Arc<dyn StorageDriver>, StorageError> {
        let mut slot = self.storage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((open, driver)) = slot.as_ref()
            && open == settings
        {
            return Ok(Arc::clone(driver));
        }
        let driver: Arc<dyn StorageDriver> =
            Arc::new(sealbox_temporal::storage::driver_for(settings)?);
        *slot = Some((settings.clone(), Arc::clone(&driver)));
        Ok(driver)
    }

    pub(crate) fn write_audit(&self, line: &AuditLine<'_>) {
        let mut text = Vec::with_capacity(320);
        if serde_json::to_writer(&mut text, line).is_err() {
            return;
        }
        text.push(b'\n');
        let _ = match &self.audit {
            AuditSink::Stderr => std::io::stderr().lock().write_all(&text),
            AuditSink::Stdout => std::io::stdout().lock().write_all(&text),
            AuditSink::File(f) => match f.lock() {
                Ok(mut f) => f.write_all(&text),
                Err(_) => Ok(()),
            },
        };
    }
}
