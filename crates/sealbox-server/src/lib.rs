//! The Sealbox codec server: Temporal's remote codec protocol over HTTP.
//!
//! `POST …/encode` and `POST …/decode` take and return `temporal.api.common.v1.Payloads` in
//! protobuf JSON, matched on the last path segment under any prefix (so `/decode`,
//! `/{namespace}/decode` and `//decode` all work); the namespace comes from `X-Namespace`,
//! else from the path segment before the operation. The Temporal Web UI, the `temporal` CLI
//! (`--codec-endpoint`) and remote codecs in Go, Java, Python or TypeScript call it.
//!
//! Callers are authenticated (static bearer tokens, JWTs verified against JWKS, or anonymous
//! when the configuration says so) and authorized per namespace and operation; every
//! request is written to an audit log (never payload contents); `/metrics`, `/healthz` and
//! `/readyz` serve operators. See `docs/codec-server.md`.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
mod limits;
mod metrics;
mod wire;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sealbox_policy::ReloadablePolicy;
use sealbox_temporal::{CodecChain, CodecError, Payload, PayloadCodec, SerializationContextData};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use auth::{Authenticator, Principal};
pub use config::{ConfigError, MetricsAccess, Permission, ServerConfig};

type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// Where audit lines go.
enum AuditSink {
    Stderr,
    Stdout,
    File(Mutex<std::fs::File>),
}

/// The `[server]` settings in force and what is built from them; SIGHUP swaps them as one.
struct Runtime {
    config: Arc<ServerConfig>,
    auth: Authenticator,
    limiter: Option<Limiter>,
    kms_limiter: Option<Limiter>,
    auth_failures: limits::AuthFailures,
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
    policy: Arc<ReloadablePolicy>,
    runtime: ArcSwap<Runtime>,
    metrics: metrics::Metrics,
    audit: AuditSink,
    ready_cache: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
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

    fn write_audit(&self, line: serde_json::Value) {
        let mut text = line.to_string();
        text.push('\n');
        let _ = match &self.audit {
            AuditSink::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
            AuditSink::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
            AuditSink::File(f) => match f.lock() {
                Ok(mut f) => f.write_all(text.as_bytes()),
                Err(_) => Ok(()),
            },
        };
    }
}

/// The HTTP application: codec endpoints, health, readiness and metrics, with CORS (origins
/// from the settings in force, so a reload changes them).
pub fn app(state: Arc<AppState>) -> Router {
    let cors = cors_layer(Arc::clone(&state));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .fallback(codec)
        .layer(cors)
        .with_state(state)
}

fn cors_layer(state: Arc<AppState>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            state
                .runtime
                .load()
                .config
                .cors_origins
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
        }))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-namespace"),
            header::HeaderName::from_static("authorization-extras"),
        ])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
}

async fn metrics_handler(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let runtime = s.runtime.load();
    match runtime.config.metrics {
        MetricsAccess::Public => {}
        MetricsAccess::Off => return error(StatusCode::NOT_FOUND, "no such endpoint: /metrics"),
        MetricsAccess::Authenticated => {
            if let Err(e) = runtime.auth.authenticate(&headers).await {
                return error(StatusCode::UNAUTHORIZED, e.to_string());
            }
        }
    }
    let body = s.metrics.render(&s.policy.current());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let config = s.config();
    let mut cache = s.ready_cache.lock().await;
    let fresh = cache
        .as_ref()
        .is_some_and(|(t, _)| t.elapsed() < Duration::from_secs(10));
    if !fresh {
        let policy = s.policy.current();
        let mut problems = Vec::new();
        for (uri, provider) in policy.providers() {
            match tokio::time::timeout(config.kms_timeout, provider.describe()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => problems.push(format!("{uri}: {e}")),
                Err(_) => {
                    problems.push(format!("{uri}: no answer within {:?}", config.kms_timeout))
                }
            }
        }
        let result = if problems.is_empty() {
            Ok(())
        } else {
            tracing::warn!("not ready: {}", problems.join("; "));
            Err(problems.join("\n"))
        };
        *cache = Some((Instant::now(), result));
    }
    match cache.as_ref().map(|(_, r)| r) {
        Some(Ok(())) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
        // KMS error text names keys, hosts and accounts: only when configured.
        Some(Err(e)) if config.readyz_detail => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{e}\n"),
        )
            .into_response(),
        Some(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {} KEK(s) not answering (details in the server log)\n",
                e.lines().count()
            ),
        )
            .into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The codec operation a path names (its last non-empty segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Encode,
    Decode,
    Download,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Encode => "encode",
            Op::Decode => "decode",
            Op::Download => "download",
        }
    }
}

fn parse_path(path: &str) -> Option<(Op, Option<String>)> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (last, rest) = segments.split_last()?;
    let op = match *last {
        "encode" => Op::Encode,
        "decode" => Op::Decode,
        "download" => Op::Download,
        _ => return None,
    };
    Some((op, rest.last().map(|s| (*s).to_owned())))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message.into() }).to_string(),
    )
        .into_response()
}

/// What the audit line says about one request.
struct Audit {
    subject: String,
    namespace: String,
    op: &'static str,
    payloads: usize,
    plaintext: usize,
    keks: BTreeSet<String>,
    keks_omitted: usize,
    status: StatusCode,
    reason: &'static str,
    detail: String,
}

/// At most this many KEK IDs per audit line, each at most [`AUDIT_KEK_ID_MAX`] bytes: on
/// `/decode` they come from caller-supplied metadata.
const AUDIT_KEKS_MAX: usize = 16;
const AUDIT_KEK_ID_MAX: usize = 256;

fn key_ids(payloads: &[Payload]) -> (BTreeSet<String>, usize) {
    let mut all: BTreeSet<&[u8]> = BTreeSet::new();
    for p in payloads {
        if let Some(v) = p.metadata.get(sealbox_temporal::METADATA_KEY_ID) {
            all.insert(v.as_slice());
        }
    }
    let omitted = all.len().saturating_sub(AUDIT_KEKS_MAX);
    let kept = all
        .into_iter()
        .take(AUDIT_KEKS_MAX)
        .map(|v| {
            let text = String::from_utf8_lossy(v);
            if text.len() <= AUDIT_KEK_ID_MAX {
                return text.into_owned();
            }
            let mut end = AUDIT_KEK_ID_MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &text[..end])
        })
        .collect();
    (kept, omitted)
}

/// While anonymous access is on, only requests addressed to a loopback name are served: a
/// web page on another site that rebinds its DNS name to 127.0.0.1 reaches the server with
/// its own name in `Host` (DNS rebinding).
fn host_allowed(config: &ServerConfig, headers: &HeaderMap) -> Result<(), String> {
    if config.anonymous.is_empty() {
        return Ok(());
    }
    let Some(host) = headers.get(header::HOST) else {
        return Ok(()); // not a browser (every browser sends Host)
    };
    let host = host.to_str().unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || config
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name));
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "Host `{}` is not a loopback name: this server allows anonymous access, so it \
             answers only to localhost and loopback addresses (DNS rebinding protection; add \
             the name to [server].allowed_hosts if it is yours)",
            host.escape_debug()
        ))
    }
}

async fn codec(State(s): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "local".into());
    let Some((op, path_ns)) = parse_path(req.uri().path()) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {}", req.uri().path()),
        );
    };
    if req.method() != Method::POST {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} needs POST", op.name()),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return r;
    }
    let runtime = s.runtime.load_full();
    let mut audit = Audit {
        subject: String::new(),
        namespace: String::new(),
        op: op.name(),
        payloads: 0,
        plaintext: 0,
        keks: BTreeSet::new(),
        keks_omitted: 0,
        status: StatusCode::OK,
        reason: "ok",
        detail: String::new(),
    };
    let timeout = runtime.config.request_timeout;
    let response = match tokio::time::timeout(
        timeout,
        handle(&s, &runtime, op, path_ns, &peer, req, &mut audit),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err((
            StatusCode::GATEWAY_TIMEOUT,
            "request_timeout",
            format!("the request took longer than {timeout:?}"),
        )),
    };
    let response = match response {
        Ok(r) => r,
        Err((status, reason, message)) => {
            audit.status = status;
            audit.reason = reason;
            audit.detail = message.clone();
            let mut r = error(status, message);
            if reason == "auth_failures" {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            r
        }
    };
    let elapsed = started.elapsed();
    s.metrics.observe(
        op.name(),
        audit.status.as_u16(),
        audit.reason,
        audit.payloads,
        audit.plaintext,
        elapsed,
    );
    s.write_audit(json!({
        "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "subject": audit.subject,
        "peer": peer,
        "namespace": audit.namespace,
        "operation": audit.op,
        "payloads": audit.payloads,
        "plaintext_payloads": audit.plaintext,
        "keks": audit.keks,
        "keks_omitted": audit.keks_omitted,
        "status": audit.status.as_u16(),
        "outcome": audit.reason,
        "error": if audit.detail.is_empty() { None } else { Some(&audit.detail) },
        "duration_ms": elapsed.as_secs_f64() * 1000.0,
    }));
    response
}

type Failure = (StatusCode, &'static str, String);

fn too_many(reason: &'static str, message: String) -> Failure {
    (StatusCode::TOO_MANY_REQUESTS, reason, message)
}

async fn handle(
    s: &AppState,
    runtime: &Runtime,
    op: Op,
    path_ns: Option<String>,
    peer: &str,
    req: Request,
    audit: &mut Audit,
) -> Result<Response, Failure> {
    let config = &runtime.config;
    let headers: HeaderMap = req.headers().clone();
    host_allowed(config, &headers).map_err(|e| (StatusCode::MISDIRECTED_REQUEST, "bad_host", e))?;
    if let Some(wait) = runtime.auth_failures.blocked(peer) {
        return Err(too_many(
            "auth_failures",
            format!("too many failed authentications from this address; retry in {wait} s"),
        ));
    }
    let principal = match runtime.auth.authenticate(&headers).await {
        Ok(p) => p,
        Err(e) => {
            runtime.auth_failures.record(peer);
            return Err((StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string()));
        }
    };
    audit.subject = principal.subject.clone();
    let caller = if principal.subject == "anonymous" {
        format!("ip:{peer}")
    } else {
        principal.subject.clone()
    };
    if let Some(limiter) = &runtime.limiter {
        if limiter.len() > 10_000 {
            // Forget callers whose budget is full again, so the table cannot grow without bound.
            limiter.retain_recent();
        }
        if limiter.check_key(&caller).is_err() {
            return Err(too_many("rate_limited", "too many requests".into()));
        }
    }
    let namespace = match headers.get("x-namespace") {
        Some(v) => v
            .to_str()
            .map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "X-Namespace is not ASCII".to_owned(),
                )
            })?
            .to_owned(),
        None => path_ns.ok_or((
            StatusCode::BAD_REQUEST,
            "bad_request",
            "no namespace: send an X-Namespace header or call /{namespace}/".to_owned() + op.name(),
        ))?,
    };
    if namespace.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            "bad_request",
            "empty namespace".into(),
        ));
    }
    audit.namespace = namespace.clone();
    let policy = s.policy.current();
    let tenant = policy
        .tenant(&namespace)
        .map_err(|e| (StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let permission = match op {
        Op::Encode => Permission::Encode,
        Op::Decode | Op::Download => Permission::Decode,
    };
    if !principal.allows(&namespace, permission, &tenant.policy.access) {
        return Err((
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} may not {} in namespace {namespace}",
                principal.subject,
                permission.as_str()
            ),
        ));
    }
    if op == Op::Download {
        return Err((
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "external storage (/download) is not configured on this codec server".into(),
        ));
    }
    let body = axum::body::to_bytes(req.into_body(), config.max_body)
        .await
        .map_err(|_| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body over the {}-byte limit", config.max_body),
            )
        })?;
    let payloads = wire::parse(&body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not Temporal Payloads in protobuf JSON: {e}"),
        )
    })?;
    audit.payloads = payloads.len();
    // KMS work this request would cause, refused or rate-limited before any of it happens.
    let kms_calls = match op {
        Op::Encode => usize::from(
            !payloads.is_empty() && tenant.keyring.seal_needs_kms(&tenant.context, 0).await,
        ),
        _ => {
            let (keks, omitted) = key_ids(&payloads);
            audit.keks = keks;
            audit.keks_omitted = omitted;
            audit.plaintext = payloads
                .iter()
                .filter(|p| {
                    !sealbox_temporal::is_encrypted(p) && !sealbox_temporal::plaintext_by_design(p)
                })
                .count();
            let items: Vec<(&sealbox_core::EncryptionContext, &[u8])> = payloads
                .iter()
                .filter_map(sealbox_temporal::sealbox_envelope)
                .map(|e| (&tenant.context, e))
                .collect();
            let n = tenant.keyring.pending_unwraps(&items);
            if n > config.max_unwraps_per_request as usize {
                return Err(too_many(
                    "too_many_keys",
                    format!(
                        "this request needs {n} distinct data keys unwrapped by the KMS, over \
                         the limit of {} per request ([server].max_unwraps_per_request); \
                         split it",
                        config.max_unwraps_per_request
                    ),
                ));
            }
            n
        }
    };
    if let (Some(limiter), Some(n)) = (
        &runtime.kms_limiter,
        std::num::NonZeroU32::new(u32::try_from(kms_calls).unwrap_or(u32::MAX)),
    ) {
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        if !matches!(limiter.check_key_n(&caller, n), Ok(Ok(()))) {
            return Err(too_many(
                "kms_rate_limited",
                format!(
                    "this request needs {n} KMS call(s), over this caller's KMS budget of {} \
                     per second ([server].kms_rate_limit)",
                    config.kms_rate_limit
                ),
            ));
        }
    }
    // Workers refuse plaintext where a namespace requires encryption; the codec server
    // shows it as it is (counted in the audit line and metrics), since the history shows
    // the same bytes to anyone who can read it, and one forged payload must not hide the
    // rest of the event from an operator.
    let chain = CodecChain::new().then(
        sealbox_temporal::SealboxCodec::from_policy(Arc::clone(&policy), &namespace)
            .require_encryption(false)
            .build()
            .map_err(|e| (StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?,
    );
    let ctx = SerializationContextData::None;
    let work = async {
        match op {
            Op::Encode => chain.encode(&ctx, payloads).await,
            _ => chain.decode(&ctx, payloads).await,
        }
    };
    let out = match tokio::time::timeout(config.kms_timeout, work).await {
        Err(_) => {
            return Err((
                StatusCode::GATEWAY_TIMEOUT,
                "kms_timeout",
                format!("the KMS did not answer within {:?}", config.kms_timeout),
            ));
        }
        Ok(Err(e)) => return Err(classify(&e)),
        Ok(Ok(out)) => out,
    };
    if op == Op::Encode {
        let (keks, omitted) = key_ids(&out);
        audit.keks = keks;
        audit.keks_omitted = omitted;
    }
    let body = wire::render(&out);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response())
}

/// KMS outages are 503 (retry later); everything else about a payload is the caller's 400.
fn classify(e: &sealbox_temporal::PayloadConversionError) -> Failure {
    use std::error::Error as _;
    let codec = e.source().and_then(|s| s.downcast_ref::<CodecError>());
    match codec {
        Some(CodecError::Envelope { source, .. }) if source.is_retryable() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "kms_unavailable",
            codec.map(ToString::to_string).unwrap_or_default(),
        ),
        Some(c) => (StatusCode::BAD_REQUEST, "codec_error", c.to_string()),
        None => (StatusCode::BAD_REQUEST, "codec_error", e.to_string()),
    }
}

/// A server started by [`start`].
pub struct RunningServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting connections and waits up to `grace` for in-flight requests.
    pub async fn shutdown(self, grace: Duration) -> std::io::Result<()> {
        self.handle.graceful_shutdown(Some(grace));
        self.wait().await
    }

    /// Waits until the server stops.
    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Loads the policy file at `config_path` (KEKs and `[server]`), checks that its exposure is
/// safe, and starts serving (HTTP, or HTTPS with `[server.tls]`) on `listen` or
/// `[server].listen`. The whole file (key policy and `[server]`) reloads on SIGHUP.
pub async fn start(
    config_path: PathBuf,
    listen: Option<SocketAddr>,
) -> Result<RunningServer, BoxError> {
    let mut config = ServerConfig::from_file(&config_path)?;
    if let Some(l) = listen {
        config.listen = l;
    }
    config.check_exposure()?;
    let policy = Arc::new(ReloadablePolicy::load(&config_path).await?);
    let listen = config.listen;
    let tls = config.tls.clone();
    let state = AppState::new(policy, config)?;
    state.warm_up().await;
    #[cfg(unix)]
    {
        // SIGHUP reloads the whole file: key policy and [server] together (see AppState::reload).
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let state = Arc::clone(&state);
        let path = config_path.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = state.reload(&path).await;
            }
        });
    }
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let (scheme, task) = match tls {
        Some(tls) => {
            let rustls = tls_config(&tls)?;
            let server = axum_server::bind_rustls(
                listen,
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(rustls)),
            )
            .handle(handle.clone());
            ("https", tokio::spawn(server.serve(app)))
        }
        None => {
            let server = axum_server::bind(listen).handle(handle.clone());
            ("http", tokio::spawn(server.serve(app)))
        }
    };
    let Some(addr) = handle.listening().await else {
        return match task.await {
            Ok(Err(e)) => Err(format!("cannot listen on {listen}: {e}").into()),
            _ => Err(format!("cannot listen on {listen}").into()),
        };
    };
    tracing::info!("codec server listening on {scheme}://{addr}");
    Ok(RunningServer {
        addr,
        scheme,
        handle,
        task,
    })
}

/// Runs the server (see [`start`]) until Ctrl-C or SIGTERM, then shuts down gracefully
/// (in-flight requests get 20 s).
pub async fn run(config_path: PathBuf, listen: Option<SocketAddr>) -> Result<(), BoxError> {
    let server = start(config_path, listen).await?;
    let _ = writeln!(
        std::io::stderr(),
        "sealbox serve: listening on {}://{}",
        server.scheme,
        server.addr
    );
    let handle = server.handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        handle.graceful_shutdown(Some(Duration::from_secs(20)));
    });
    server.wait().await?;
    let _ = writeln!(std::io::stderr(), "sealbox serve: stopped");
    Ok(())
}

fn tls_config(
    tls: &config::TlsConfig,
) -> Result<rustls::ServerConfig, Box<dyn std::error::Error + Send + Sync>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &PathBuf| -> Result<Vec<u8>, String> {
        std::fs::read(p).map_err(|e| format!("[server.tls]: cannot read {}: {e}", p.display()))
    };
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut read(&tls.cert)?.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("[server.tls] cert: {e}"))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut read(&tls.key)?.as_slice())
        .map_err(|e| format!("[server.tls] key: {e}"))?
        .ok_or("[server.tls] key: no private key in the file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut read(ca)?.as_slice()) {
                roots.add(c.map_err(|e| format!("[server.tls] client_ca: {e}"))?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
