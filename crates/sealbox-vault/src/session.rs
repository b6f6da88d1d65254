//! The Vault session: the HTTP client (with the configured CA pinned), the current token, its
//! background renewal, and re-login after a permission-denied answer.
//!
//! The token lives in a [`Lease`] behind an [`ArcSwap`]: every call loads the current lease
//! (one atomic load) and uses its client; a renewal or a re-login builds a new lease and swaps
//! it in, so concurrent calls never see a half-updated token. All swaps happen under
//! [`Session::refresh`], so a renewal can never overwrite a newer login.

mod login;
mod maintenance;
mod request;
mod transport;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use sealbox_core::ProviderError;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use vaultrs::error::ClientError;

use crate::error::map_error;

pub(crate) use login::Login;
pub(crate) use maintenance::spawn_maintenance;
pub(crate) use request::JsonRequest;
pub(crate) use transport::{Transport, build_http, parse_address, token_is_sendable};

use transport::TokenClient;

/// Counters of a provider's token maintenance (see the crate documentation), for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Successful logins (AppRole / Kubernetes), the one at connect included.
    pub logins: u64,
    /// Successful token renewals (`renew-self`).
    pub renewals: u64,
    /// Failed background renewals or logins (each also logged as a warning).
    pub maintenance_failures: u64,
}

/// A token's lifetime as last reported by Vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseTiming {
    /// Remaining TTL when the lease was obtained; zero means the token never expires.
    pub(crate) ttl: Duration,
    /// The TTL a renewal grants when the token is not yet at its maximum TTL.
    pub(crate) base_ttl: Duration,
    /// Whether Vault allows renewing the token.
    pub(crate) renewable: bool,
    /// A renewal came back shorter than `base_ttl`: the token reached its maximum TTL and
    /// renewing cannot keep it alive.
    pub(crate) capped: bool,
}

/// The current token.
pub(crate) struct Lease {
    pub(crate) client: Arc<TokenClient>,
    /// Incremented at each login (not at renewals).
    token_generation: u64,
    obtained: Instant,
    timing: LeaseTiming,
    /// A renewal was refused and there is no way to log in: nothing left to try.
    dead: bool,
}

impl Lease {
    /// A lease of generation `token_generation` obtained now.
    fn new(client: Arc<TokenClient>, token_generation: u64, timing: LeaseTiming) -> Self {
        Self {
            client,
            token_generation,
            obtained: Instant::now(),
            timing,
            dead: false,
        }
    }

    /// This lease's token as renewed now (same client and generation), lasting `timing`.
    fn renewed(&self, timing: LeaseTiming) -> Self {
        Self::new(self.client.clone(), self.token_generation, timing)
    }
}

/// Counters of token maintenance.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) logins: AtomicU64,
    pub(crate) renewals: AtomicU64,
    pub(crate) failures: AtomicU64,
}

/// One authenticated session with Vault, shared by the provider and its maintenance task.
pub(crate) struct Session {
    key_id: String,
    pub(crate) transport: Transport,
    login: Option<Login>,
    lease: ArcSwap<Lease>,
    /// Serializes renewals and logins (and thereby every lease swap).
    refresh: Mutex<()>,
    /// Wakes the maintenance task after a re-login outside it.
    wake: Arc<Notify>,
    pub(crate) counters: Counters,
}

impl Session {
    /// A session on a static token, whose lease is read with lookup-self by
    /// [`Session::lookup_token`].
    pub(crate) fn with_token(key_id: &str, transport: Transport, token: &SecretString) -> Self {
        let client = Arc::new(transport.client(token.expose_secret()));
        Self::new(
            key_id,
            transport,
            None,
            client,
            LeaseTiming {
                ttl: Duration::ZERO,
                base_ttl: Duration::ZERO,
                renewable: false,
                capped: false,
            },
        )
    }

    /// Logs in with `login` and returns the session.
    pub(crate) async fn with_login(
        key_id: &str,
        transport: Transport,
        login: Login,
    ) -> Result<Self, ProviderError> {
        let (token, timing) = login.login(&transport, key_id).await?;
        let client = Arc::new(transport.client(&token));
        let session = Self::new(key_id, transport, Some(login), client, timing);
        session.counters.logins.fetch_add(1, Ordering::Relaxed);
        Ok(session)
    }

    fn new(
        key_id: &str,
        transport: Transport,
        login: Option<Login>,
        client: Arc<TokenClient>,
        timing: LeaseTiming,
    ) -> Self {
        Self {
            key_id: key_id.to_owned(),
            transport,
            login,
            lease: ArcSwap::from_pointee(Lease::new(client, 0, timing)),
            refresh: Mutex::new(()),
            wake: Arc::new(Notify::new()),
            counters: Counters::default(),
        }
    }

    /// Reads the static token's TTL and renewability (lookup-self). A token that may not look
    /// itself up keeps working, without renewal (logged).
    pub(crate) async fn lookup_token(&self) -> Result<(), ProviderError> {
        let _guard = self.refresh.lock().await;
        let lease = self.lease.load_full();
        let info = match vaultrs::api::exec_with_result(&lease.client.0, lookup_self()).await {
            Ok(info) => info,
            Err(e) => {
                let e = map_error(&self.key_id, "token lookup-self", e);
                if e.kind().is_transient() {
                    return Err(e);
                }
                tracing::warn!(
                    key_id = %self.key_id,
                    error = %e,
                    "cannot look up the Vault token's TTL: it will not be renewed"
                );
                return Ok(());
            }
        };
        let ttl = Duration::from_secs(info.ttl);
        let base = if info.period.unwrap_or(0) > 0 {
            info.period.unwrap_or(0)
        } else {
            info.creation_ttl.unwrap_or(info.ttl)
        };
        let timing = LeaseTiming {
            ttl,
            base_ttl: Duration::from_secs(base).max(ttl),
            renewable: info.renewable.unwrap_or(false),
            capped: false,
        };
        if !ttl.is_zero() && !timing.renewable {
            tracing::warn!(
                key_id = %self.key_id,
                ttl_secs = ttl.as_secs(),
                "the Vault token is not renewable: calls will fail once it expires (use a renewable or periodic token, or AppRole / Kubernetes auth)"
            );
        }
        self.lease.store(Arc::new(lease.renewed(timing)));
        Ok(())
    }

    /// Whether the session can log in again (AppRole, Kubernetes).
    pub(crate) fn can_login(&self) -> bool {
        self.login.is_some()
    }

    /// Whether the maintenance task has anything to do.
    pub(crate) fn needs_maintenance(&self) -> bool {
        self.login.is_some() || !self.lease.load().timing.ttl.is_zero()
    }

    /// Runs `call` with the current token. If Vault answers 403 and the session can log in,
    /// and the token turns out to be no longer valid (expired or revoked), logs in again and
    /// runs `call` once more.
    pub(crate) async fn call<T, F, Fut>(&self, op: &str, call: F) -> Result<T, ProviderError>
    where
        F: Fn(Arc<Lease>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let lease = self.lease.load_full();
        match call(lease.clone()).await {
            Err(e) if is_forbidden(&e) && self.login.is_some() => {
                match self.relogin_after_denial(&lease).await? {
                    true => call(self.lease.load_full())
                        .await
                        .map_err(|e| map_error(&self.key_id, op, e)),
                    false => Err(map_error(&self.key_id, op, e)),
                }
            }
            result => result.map_err(|e| map_error(&self.key_id, op, e)),
        }
    }

    /// After a 403 with the token of `seen`: `Ok(true)` if there is a new token to retry with
    /// (another call already logged in, or this one did), `Ok(false)` if the token is still
    /// valid (the policy denies the call; logging in again would not help).
    async fn relogin_after_denial(&self, seen: &Lease) -> Result<bool, ProviderError> {
        let _guard = self.refresh.lock().await;
        let current = self.lease.load_full();
        if current.token_generation != seen.token_generation {
            return Ok(true);
        }
        if vaultrs::api::exec_with_result(&current.client.0, lookup_self())
            .await
            .is_ok()
        {
            return Ok(false);
        }
        tracing::info!(
            key_id = %self.key_id,
            "Vault refused the token (expired or revoked): logging in again"
        );
        self.login_locked(&current).await?;
        self.wake.notify_one();
        Ok(true)
    }

    /// Logs in and swaps the new token in. The caller holds `refresh`.
    async fn login_locked(&self, current: &Lease) -> Result<(), ProviderError> {
        let Some(login) = &self.login else {
            return Ok(());
        };
        let (token, timing) = login.login(&self.transport, &self.key_id).await?;
        let client = Arc::new(self.transport.client(&token));
        let generation = current.token_generation + 1;
        self.lease
            .store(Arc::new(Lease::new(client, generation, timing)));
        self.counters.logins.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn is_forbidden(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 403, .. })
}

/// `GET auth/token/lookup-self`, reading only the lease fields (not the token ID).
fn lookup_self() -> JsonRequest<LookupSelfData> {
    JsonRequest::get("auth/token/lookup-self")
}

/// `POST auth/token/renew-self` without an increment (Vault renews by the token's own TTL).
fn renew_self() -> JsonRequest<()> {
    JsonRequest::post("auth/token/renew-self", None)
}

#[derive(serde::Deserialize)]
struct LookupSelfData {
    #[serde(default)]
    ttl: u64,
    #[serde(default)]
    creation_ttl: Option<u64>,
    #[serde(default)]
    period: Option<u64>,
    #[serde(default)]
    renewable: Option<bool>,
}
