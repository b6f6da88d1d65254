//! The Vault session: the HTTP client (with the configured CA pinned), the current token, its
//! background renewal, and re-login after a permission-denied answer.
//!
//! The token lives in a [`Lease`] behind an [`ArcSwap`]: every call loads the current lease
//! (one atomic load) and uses its client; a renewal or a re-login builds a new lease and swaps
//! it in, so concurrent calls never see a half-updated token. All swaps happen under
//! [`Session::refresh`], so a renewal can never overwrite a newer login.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use sealbox_core::{ProviderError, ProviderErrorKind};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;
use zeroize::{Zeroize, Zeroizing};

use crate::{PROVIDER_ID, map_error};

/// Parses and checks a Vault address: an `http(s)://host[:port]` URL whose port is 1–65535,
/// without credentials, path, query or fragment. Never panics; the error names the address.
pub(crate) fn parse_address(address: &str) -> Result<reqwest::Url, String> {
    let shown = redact_credentials(address).escape_debug().to_string();
    let bad = |why: String| format!("Vault address `{shown}` {why}");
    if !address.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "must be an http(s):// URL (no spaces or non-ASCII characters)".into(),
        ));
    }
    let url = reqwest::Url::parse(address).map_err(|e| {
        let hint = if e.to_string().contains("port") {
            " (a port is 1-65535)"
        } else {
            ""
        };
        bad(format!(
            "must be an http(s):// URL: it does not parse ({e}){hint}"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be an http(s):// URL".into()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host".into()));
    }
    if url.port() == Some(0) {
        return Err(bad("has port 0 (a port is 1-65535)".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not hold credentials".into()));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "must be SCHEME://HOST[:PORT], without a path, query or fragment".into(),
        ));
    }
    Ok(url)
}

/// `address` with any `user:password@` replaced, for error messages.
fn redact_credentials(address: &str) -> String {
    if let Some((scheme, rest)) = address.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://<credentials>@{}", &rest[at + 1..]);
        }
    }
    address.to_owned()
}

/// Builds the HTTP client. When a CA is configured (or given by `VAULT_CACERT`/`BAO_CACERT`),
/// **only** that CA is trusted: the system roots are not consulted (`tls_certs_only`).
pub(crate) fn build_http(
    address: &reqwest::Url,
    ca_cert: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_rustls()
        .timeout(timeout);
    if address.scheme() == "http" {
        // No TLS is used; an empty root set also keeps the platform verifier from loading
        // (as vaultrs does, reqwest issue 2988).
        builder = builder.tls_certs_only(Vec::new());
    } else {
        let from_env = || {
            ["VAULT_CACERT", "BAO_CACERT"]
                .iter()
                .filter_map(std::env::var_os)
                .find(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(path) = ca_cert.map(Path::to_path_buf).or_else(from_env) {
            builder = builder.tls_certs_only(read_ca(&path)?);
        }
        if let Some(identity) = client_identity()? {
            builder = builder.identity(identity);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the CA certificate {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "the CA certificate {} is not a PEM certificate: {e}",
            path.display()
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "the CA certificate {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The TLS client certificate from `VAULT_CLIENT_CERT` + `VAULT_CLIENT_KEY` (PEM files), as
/// the Vault CLI reads them; an unreadable pair is an error rather than silently ignored.
fn client_identity() -> Result<Option<reqwest::Identity>, String> {
    let var = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    let (Some(cert), Some(key)) = (var("VAULT_CLIENT_CERT"), var("VAULT_CLIENT_KEY")) else {
        return Ok(None);
    };
    let read = |p: &std::ffi::OsStr| {
        std::fs::read(p).map(Zeroizing::new).map_err(|e| {
            format!(
                "cannot read the client certificate or key {}: {e}",
                Path::new(p).display()
            )
        })
    };
    let mut pem = read(&cert)?;
    pem.extend_from_slice(&read(&key)?);
    reqwest::Identity::from_pem(&pem)
        .map(Some)
        .map_err(|e| format!("VAULT_CLIENT_CERT / VAULT_CLIENT_KEY are not a PEM pair: {e}"))
}

/// Whether `token` can travel in an HTTP header (vaultrs panics otherwise).
pub(crate) fn token_is_sendable(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_graphic())
}

/// What is needed to talk to one Vault server; clients for new tokens are built from it.
pub(crate) struct Transport {
    http: reqwest::Client,
    pub(crate) address: reqwest::Url,
    timeout: Duration,
    namespace: Option<String>,
}

impl Transport {
    pub(crate) fn new(
        http: reqwest::Client,
        address: reqwest::Url,
        timeout: Duration,
        namespace: Option<String>,
    ) -> Self {
        Self {
            http,
            address,
            timeout,
            namespace,
        }
    }

    /// A vaultrs client sending `token` (empty: no token, for logins). The connection pool is
    /// shared by all clients of this transport.
    pub(crate) fn client(&self, token: &str) -> TokenClient {
        let settings = VaultClientSettings {
            address: self.address.clone(),
            ca_certs: Vec::new(),
            identity: None,
            timeout: Some(self.timeout),
            // Requests take the token from the middleware; no second copy here.
            token: String::new(),
            verify: true,
            version: 1,
            wrapping: false,
            namespace: self.namespace.clone(),
            proxy: None,
        };
        let middle = EndpointMiddleware {
            token: token.to_owned(),
            version: "v1".into(),
            wrap: None,
            namespace: self.namespace.clone(),
        };
        TokenClient(VaultClient {
            http: rustify::clients::reqwest::Client::new(self.address.as_str(), self.http.clone()),
            middle,
            settings,
        })
    }
}

/// A vaultrs client holding one token, which is zeroized when the client is dropped (vaultrs
/// keeps it as a plain `String`; this is as far as its API lets the token be protected).
pub(crate) struct TokenClient(pub(crate) VaultClient);

impl Drop for TokenClient {
    fn drop(&mut self) {
        self.0.middle.token.zeroize();
        self.0.settings.token.zeroize();
    }
}

/// How to log in again (token auth cannot).
pub(crate) enum Login {
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretString,
    },
    Kubernetes {
        mount: String,
        role: String,
        jwt_path: PathBuf,
    },
}

impl Login {
    pub(crate) fn operation(&self) -> &'static str {
        match self {
            Login::AppRole { .. } => "AppRole login",
            Login::Kubernetes { .. } => "Kubernetes login",
        }
    }

    /// Logs in; returns the new token and its lease.
    async fn login(
        &self,
        transport: &Transport,
        key_id: &str,
    ) -> Result<(Zeroizing<String>, LeaseTiming), ProviderError> {
        let anonymous = transport.client("");
        let result = match self {
            Login::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let endpoint = LoginRequest::new(
                    mount,
                    &AppRoleBody {
                        role_id,
                        secret_id: secret_id.expose_secret(),
                    },
                )
                .map_err(|e| {
                    ProviderError::new(PROVIDER_ID, key_id, ProviderErrorKind::Protocol, e)
                })?;
                vaultrs::api::auth(&anonymous.0, endpoint).await
            }
            Login::Kubernetes {
                mount,
                role,
                jwt_path,
            } => {
                let endpoint = kubernetes_login_request(mount, role, jwt_path).map_err(|e| {
                    ProviderError::new(PROVIDER_ID, key_id, ProviderErrorKind::Misconfigured, e)
                })?;
                vaultrs::api::auth(&anonymous.0, endpoint).await
            }
        };
        let auth = result.map_err(|e| map_error(key_id, self.operation(), e))?;
        let token = Zeroizing::new(auth.client_token);
        if token.is_empty() || !token_is_sendable(&token) {
            return Err(ProviderError::new(
                PROVIDER_ID,
                key_id,
                ProviderErrorKind::Protocol,
                format!("{}: Vault returned an unusable token", self.operation()),
            ));
        }
        let ttl = Duration::from_secs(auth.lease_duration);
        Ok((
            token,
            LeaseTiming {
                ttl,
                base_ttl: ttl,
                renewable: auth.renewable,
                capped: false,
            },
        ))
    }
}

/// `POST auth/<mount>/login` with a JSON body holding a credential; the body is zeroized when
/// the request is dropped (vaultrs's own login requests keep the secret in a plain `String`).
pub(crate) struct LoginRequest {
    path: String,
    body: Zeroizing<Vec<u8>>,
}

impl LoginRequest {
    fn new(mount: &str, body: &impl serde::Serialize) -> Result<Self, String> {
        let body = serde_json::to_vec(body)
            .map(Zeroizing::new)
            .map_err(|e| format!("cannot encode the login request: {e}"))?;
        Ok(Self {
            path: format!("auth/{}/login", mount.trim_matches('/')),
            body,
        })
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("path", &self.path)
            .field("body", &"<redacted>")
            .finish()
    }
}

#[derive(serde::Serialize)]
struct AppRoleBody<'a> {
    role_id: &'a str,
    secret_id: &'a str,
}

#[derive(serde::Serialize)]
struct KubernetesBody<'a> {
    role: &'a str,
    jwt: &'a str,
}

#[async_trait]
impl rustify::Endpoint for LoginRequest {
    type Response = ();
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::POST
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(Some(self.body.to_vec()))
    }
}

/// The Kubernetes login request, with the service-account JWT read from `jwt_path` **now**:
/// Kubernetes rotates projected tokens, so every login attempt reads the file again.
pub(crate) fn kubernetes_login_request(
    mount: &str,
    role: &str,
    jwt_path: &Path,
) -> Result<LoginRequest, String> {
    let text = Zeroizing::new(std::fs::read_to_string(jwt_path).map_err(|e| {
        format!(
            "cannot read the service-account token {}: {e}",
            jwt_path.display()
        )
    })?);
    let jwt = text.trim();
    if jwt.is_empty() {
        return Err(format!(
            "the service-account token {} is empty",
            jwt_path.display()
        ));
    }
    LoginRequest::new(mount, &KubernetesBody { role, jwt })
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

/// What the maintenance task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Renew,
    Login,
}

/// When the maintenance task acts next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to do until a re-login changes the token.
    Wait,
    /// Act after this delay.
    After(Duration, Action),
}

/// The shortest sleep of the maintenance task, so that a tiny TTL cannot make it spin.
const MIN_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between retries of a failed renewal or login.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Plans the next renewal or login: at two thirds of the TTL; after `failures` failed attempts,
/// again after an exponential backoff (1 s, 2 s, … 30 s).
pub(crate) fn plan(
    timing: LeaseTiming,
    dead: bool,
    can_login: bool,
    elapsed: Duration,
    failures: u32,
) -> Step {
    if dead || timing.ttl.is_zero() {
        return Step::Wait;
    }
    let action = if timing.renewable && !timing.capped {
        Action::Renew
    } else if can_login {
        Action::Login
    } else {
        return Step::Wait;
    };
    let delay = if failures > 0 {
        let exp = failures.saturating_sub(1).min(5);
        Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
    } else {
        (timing.ttl * 2 / 3).saturating_sub(elapsed)
    };
    Step::After(delay.max(MIN_DELAY), action)
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
            lease: ArcSwap::from_pointee(Lease {
                client,
                token_generation: 0,
                obtained: Instant::now(),
                timing,
                dead: false,
            }),
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
        let info = match vaultrs::api::exec_with_result(&lease.client.0, LookupSelf).await {
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
        self.lease.store(Arc::new(Lease {
            client: lease.client.clone(),
            token_generation: lease.token_generation,
            obtained: Instant::now(),
            timing,
            dead: false,
        }));
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
        if vaultrs::api::exec_with_result(&current.client.0, LookupSelf)
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
        self.lease.store(Arc::new(Lease {
            client,
            token_generation: current.token_generation + 1,
            obtained: Instant::now(),
            timing,
            dead: false,
        }));
        self.counters.logins.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Renews the token (renew-self) and swaps in its new lease. The caller holds `refresh`.
    async fn renew_locked(&self, current: &Lease) -> Result<(), ProviderError> {
        let auth = vaultrs::api::auth(&current.client.0, RenewSelf)
            .await
            .map_err(|e| map_error(&self.key_id, "token renew-self", e))?;
        drop(Zeroizing::new(auth.client_token));
        let ttl = Duration::from_secs(auth.lease_duration);
        let capped = ttl < current.timing.base_ttl;
        if capped && !current.timing.capped {
            if self.login.is_some() {
                tracing::info!(
                    key_id = %self.key_id,
                    ttl_secs = ttl.as_secs(),
                    "the Vault token reached its maximum TTL: logging in again before it expires"
                );
            } else {
                tracing::warn!(
                    key_id = %self.key_id,
                    ttl_secs = ttl.as_secs(),
                    "the Vault token reached its maximum TTL and cannot be renewed further: calls will fail once it expires (use AppRole / Kubernetes auth or a periodic token)"
                );
            }
        }
        self.lease.store(Arc::new(Lease {
            client: current.client.clone(),
            token_generation: current.token_generation,
            obtained: Instant::now(),
            timing: LeaseTiming {
                ttl,
                base_ttl: current.timing.base_ttl,
                renewable: auth.renewable,
                capped,
            },
            dead: false,
        }));
        self.counters.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The next step of the maintenance task.
    fn next_step(&self, failures: u32) -> (Step, u64) {
        let lease = self.lease.load();
        let step = plan(
            lease.timing,
            lease.dead,
            self.login.is_some(),
            lease.obtained.elapsed(),
            failures,
        );
        (step, lease.token_generation)
    }

    /// Performs `action` unless the token changed since it was planned.
    async fn maintain_once(&self, action: Action, planned_for: u64) -> Result<(), ProviderError> {
        let _guard = self.refresh.lock().await;
        let current = self.lease.load_full();
        if current.token_generation != planned_for {
            return Ok(());
        }
        if action == Action::Renew {
            match self.renew_locked(&current).await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ProviderErrorKind::PermissionDenied => {
                    if self.login.is_none() {
                        self.lease.store(Arc::new(Lease {
                            client: current.client.clone(),
                            token_generation: current.token_generation,
                            obtained: current.obtained,
                            timing: current.timing,
                            dead: true,
                        }));
                        return Err(e);
                    }
                    // Expired or revoked: log in instead.
                }
                Err(e) => return Err(e),
            }
        }
        self.login_locked(&current).await
    }
}

/// Starts the maintenance task (renewal at two thirds of the TTL, proactive re-login) on the
/// current Tokio runtime. It holds only a weak reference to the session, and the provider
/// aborts it when dropped. Without a Tokio runtime there is no renewal (logged); re-login on
/// a 403 still works.
pub(crate) fn spawn_maintenance(session: &Arc<Session>) -> Option<tokio::task::AbortHandle> {
    if !session.needs_maintenance() {
        return None;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            key_id = %session.key_id,
            "no Tokio runtime: the Vault token will not be renewed in the background"
        );
        return None;
    };
    let task = runtime.spawn(maintain(Arc::downgrade(session), session.wake.clone()));
    Some(task.abort_handle())
}

async fn maintain(session: Weak<Session>, wake: Arc<Notify>) {
    let mut failures = 0u32;
    loop {
        let Some((step, generation)) = session.upgrade().map(|s| s.next_step(failures)) else {
            return;
        };
        let woken = match step {
            Step::Wait => {
                wake.notified().await;
                true
            }
            Step::After(delay, _) => tokio::time::timeout(delay, wake.notified()).await.is_ok(),
        };
        if woken {
            // The token changed under us: plan again from the new lease.
            failures = 0;
            continue;
        }
        let Step::After(_, action) = step else {
            continue;
        };
        let Some(s) = session.upgrade() else {
            return;
        };
        match s.maintain_once(action, generation).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                s.counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    key_id = %s.key_id,
                    action = ?action,
                    failures,
                    error = %e,
                    "Vault token maintenance failed"
                );
            }
        }
    }
}

fn is_forbidden(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 403, .. })
}

/// `GET auth/token/lookup-self`, reading only the lease fields (not the token ID).
struct LookupSelf;

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

#[async_trait]
impl rustify::Endpoint for LookupSelf {
    type Response = LookupSelfData;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        "auth/token/lookup-self".into()
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::GET
    }
}

/// `POST auth/token/renew-self` without an increment (Vault renews by the token's own TTL).
struct RenewSelf;

#[async_trait]
impl rustify::Endpoint for RenewSelf {
    type Response = ();
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        "auth/token/renew-self".into()
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::POST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(ttl: u64, renewable: bool, capped: bool) -> LeaseTiming {
        LeaseTiming {
            ttl: Duration::from_secs(ttl),
            base_ttl: Duration::from_secs(ttl),
            renewable,
            capped,
        }
    }

    #[test]
    fn renewal_is_planned_at_two_thirds_of_the_ttl() {
        let s = Duration::from_secs;
        assert_eq!(
            plan(timing(30, true, false), false, false, s(0), 0),
            Step::After(s(20), Action::Renew)
        );
        assert_eq!(
            plan(timing(30, true, false), false, false, s(5), 0),
            Step::After(s(15), Action::Renew)
        );
        // Overdue: act at once (after the minimum delay).
        assert_eq!(
            plan(timing(30, true, false), false, true, s(40), 0),
            Step::After(MIN_DELAY, Action::Renew)
        );
        // A token that never expires, or a dead one, needs nothing.
        assert_eq!(
            plan(timing(0, true, false), false, true, s(0), 0),
            Step::Wait
        );
        assert_eq!(
            plan(timing(30, true, false), true, false, s(0), 0),
            Step::Wait
        );
    }

    #[test]
    fn capped_or_non_renewable_tokens_are_replaced_by_a_login_when_possible() {
        let s = Duration::from_secs;
        assert_eq!(
            plan(timing(3, true, true), false, true, s(0), 0),
            Step::After(s(2), Action::Login)
        );
        assert_eq!(
            plan(timing(30, false, false), false, true, s(0), 0),
            Step::After(s(20), Action::Login)
        );
        // Token auth cannot log in: nothing to do but let it expire.
        assert_eq!(
            plan(timing(3, true, true), false, false, s(0), 0),
            Step::Wait
        );
        assert_eq!(
            plan(timing(30, false, false), false, false, s(0), 0),
            Step::Wait
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_thirty_seconds() {
        let s = Duration::from_secs;
        let t = timing(3600, true, false);
        let delays: Vec<Step> = (1..=8).map(|f| plan(t, false, true, s(0), f)).collect();
        let want: Vec<Step> = [1, 2, 4, 8, 16, 30, 30, 30]
            .iter()
            .map(|d| Step::After(s(*d), Action::Renew))
            .collect();
        assert_eq!(delays, want);
    }

    #[test]
    fn the_kubernetes_jwt_is_read_afresh_for_every_login() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first.jwt\n").expect("write");
        let body = |req: &LoginRequest| -> serde_json::Value {
            serde_json::from_slice(&req.body).expect("JSON body")
        };
        let req = kubernetes_login_request("kubernetes", "sealbox", &path).expect("request");
        assert_eq!(req.path, "auth/kubernetes/login");
        assert_eq!(
            body(&req),
            serde_json::json!({ "role": "sealbox", "jwt": "first.jwt" })
        );
        // The kubelet rotates the projected token: the next login sends the new one.
        std::fs::write(&path, "second.jwt").expect("rewrite");
        let req = kubernetes_login_request("kubernetes", "sealbox", &path).expect("request");
        assert_eq!(body(&req)["jwt"], "second.jwt");
        // A vanished or empty file is a clear error, naming the path but no token.
        std::fs::write(&path, " \n").expect("empty");
        let err = kubernetes_login_request("kubernetes", "sealbox", &path).expect_err("empty");
        assert!(err.contains("is empty"), "{err}");
        std::fs::remove_file(&path).expect("remove");
        let err = kubernetes_login_request("kubernetes", "sealbox", &path).expect_err("missing");
        assert!(
            err.contains("cannot read the service-account token") && err.contains("token"),
            "{err}"
        );
    }

    #[test]
    fn addresses_are_checked_without_panicking() {
        for ok in [
            "http://127.0.0.1:8200",
            "https://vault.example.com",
            "https://vault.example.com:8200/",
            "https://[::1]:8200",
            "http://h:65535",
        ] {
            parse_address(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, want) in [
            ("http://h:99999", "a port is 1-65535"),
            ("http://h:65536", "a port is 1-65535"),
            ("http://h:0", "port 0"),
            ("http://h:-1", "does not parse"),
            ("https://1.2.3.999", "does not parse"),
            ("https://[zz]:8200", "does not parse"),
            ("ftp://h", "must be an http(s):// URL"),
            ("vault.example.com:8200", "must be an http(s):// URL"),
            ("http://", "does not parse"),
            ("http://bad host", "no spaces"),
            ("https://h/v1", "without a path"),
            ("https://h?x=1", "without a path"),
        ] {
            let err = parse_address(bad).expect_err(bad);
            assert!(err.contains(want), "{bad}: {err}");
            assert!(
                err.contains(&format!("`{bad}`")),
                "names the address: {err}"
            );
        }
        // Credentials in the address are refused and not repeated.
        let err = parse_address("https://user:s3cret@h:8200").expect_err("credentials");
        assert!(err.contains("must not hold credentials"), "{err}");
        assert!(err.contains("`https://<credentials>@h:8200`"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
