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
mod metrics;
mod wire;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
pub use config::{ConfigError, Permission, ServerConfig};

type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// Where audit lines go.
enum AuditSink {
    Stderr,
    Stdout,
    File(Mutex<std::fs::File>),
}

/// Shared state of the server.
pub struct AppState {
    policy: Arc<ReloadablePolicy>,
    config: Arc<ServerConfig>,
    auth: Authenticator,
    metrics: metrics::Metrics,
    audit: AuditSink,
    limiter: Option<Limiter>,
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
        let limiter = std::num::NonZeroU32::new(config.rate_limit)
            .map(|n| governor::RateLimiter::keyed(governor::Quota::per_second(n)));
        Ok(Arc::new(Self {
            auth: Authenticator::new(&config),
            policy,
            config: Arc::new(config),
            metrics: metrics::Metrics::new(),
            audit,
            limiter,
            ready_cache: tokio::sync::Mutex::new(None),
        }))
    }

    /// Fetches JWKS keys ahead of the first request.
    pub async fn warm_up(&self) {
        self.auth.warm_up().await;
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

/// The HTTP application: codec endpoints, health, readiness and metrics, with CORS and the
/// body-size limit applied.
pub fn app(state: Arc<AppState>) -> Router {
    let cors = cors_layer(&state.config.cors_origins);
    let limit = state.config.max_body;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .fallback(codec)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .layer(cors)
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
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

async fn metrics_handler(State(s): State<Arc<AppState>>) -> Response {
    let body = s.metrics.render(&s.policy.current());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let mut cache = s.ready_cache.lock().await;
    let fresh = cache
        .as_ref()
        .is_some_and(|(t, _)| t.elapsed() < Duration::from_secs(10));
    if !fresh {
        let policy = s.policy.current();
        let mut problems = Vec::new();
        for (uri, provider) in policy.providers() {
            match tokio::time::timeout(s.config.kms_timeout, provider.describe()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => problems.push(format!("{uri}: {e}")),
                Err(_) => problems.push(format!(
                    "{uri}: no answer within {:?}",
                    s.config.kms_timeout
                )),
            }
        }
        let result = if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        };
        *cache = Some((Instant::now(), result));
    }
    match cache.as_ref().map(|(_, r)| r) {
        Some(Ok(())) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
        Some(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{e}\n"),
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
    keks: BTreeSet<String>,
    status: StatusCode,
    reason: &'static str,
    detail: String,
}

fn key_ids(payloads: &[Payload]) -> BTreeSet<String> {
    payloads
        .iter()
        .filter_map(|p| p.metadata.get(sealbox_temporal::METADATA_KEY_ID))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
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
    let mut audit = Audit {
        subject: String::new(),
        namespace: String::new(),
        op: op.name(),
        payloads: 0,
        keks: BTreeSet::new(),
        status: StatusCode::OK,
        reason: "ok",
        detail: String::new(),
    };
    let response = match tokio::time::timeout(
        s.config.request_timeout,
        handle(&s, op, path_ns, &peer, req, &mut audit),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err((
            StatusCode::GATEWAY_TIMEOUT,
            "request_timeout",
            format!(
                "the request took longer than {:?}",
                s.config.request_timeout
            ),
        )),
    };
    let response = match response {
        Ok(r) => r,
        Err((status, reason, message)) => {
            audit.status = status;
            audit.reason = reason;
            audit.detail = message.clone();
            error(status, message)
        }
    };
    let elapsed = started.elapsed();
    s.metrics.observe(
        op.name(),
        audit.status.as_u16(),
        audit.reason,
        audit.payloads,
        elapsed,
    );
    s.write_audit(json!({
        "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "subject": audit.subject,
        "peer": peer,
        "namespace": audit.namespace,
        "operation": audit.op,
        "payloads": audit.payloads,
        "keks": audit.keks,
        "status": audit.status.as_u16(),
        "outcome": audit.reason,
        "error": if audit.detail.is_empty() { None } else { Some(&audit.detail) },
        "duration_ms": elapsed.as_secs_f64() * 1000.0,
    }));
    response
}

type Failure = (StatusCode, &'static str, String);

async fn handle(
    s: &AppState,
    op: Op,
    path_ns: Option<String>,
    peer: &str,
    req: Request,
    audit: &mut Audit,
) -> Result<Response, Failure> {
    let headers: HeaderMap = req.headers().clone();
    let principal = s
        .auth
        .authenticate(&headers)
        .await
        .map_err(|e| (StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string()))?;
    audit.subject = principal.subject.clone();
    if let Some(limiter) = &s.limiter {
        let key = if principal.subject == "anonymous" {
            format!("ip:{peer}")
        } else {
            principal.subject.clone()
        };
        if limiter.len() > 10_000 {
            // Forget callers whose budget is full again, so the table cannot grow without bound.
            limiter.retain_recent();
        }
        if limiter.check_key(&key).is_err() {
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests".into(),
            ));
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
    let body = axum::body::to_bytes(req.into_body(), s.config.max_body)
        .await
        .map_err(|_| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body over the {}-byte limit", s.config.max_body),
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
    if op == Op::Decode {
        audit.keks = key_ids(&payloads);
    }
    let chain = CodecChain::from_policy(Arc::clone(&policy), &namespace)
        .map_err(|e| (StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let ctx = SerializationContextData::None;
    let work = async {
        match op {
            Op::Encode => chain.encode(&ctx, payloads).await,
            _ => chain.decode(&ctx, payloads).await,
        }
    };
    let out = match tokio::time::timeout(s.config.kms_timeout, work).await {
        Err(_) => {
            return Err((
                StatusCode::GATEWAY_TIMEOUT,
                "kms_timeout",
                format!("the KMS did not answer within {:?}", s.config.kms_timeout),
            ));
        }
        Ok(Err(e)) => return Err(classify(&e)),
        Ok(Ok(out)) => out,
    };
    if op == Op::Encode {
        audit.keks = key_ids(&out);
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
/// `[server].listen`. The policy reloads on SIGHUP.
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
    #[cfg(unix)]
    let _reload = policy.reload_on_sighup()?;
    let listen = config.listen;
    let tls = config.tls.clone();
    let state = AppState::new(policy, config)?;
    state.warm_up().await;
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
