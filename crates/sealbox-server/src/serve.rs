//! Listening: HTTP or HTTPS (rustls, optional mTLS), SIGHUP reload, graceful shutdown.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sealbox_policy::ReloadablePolicy;

use crate::config::{self, ServerConfig};
use crate::{AppState, app};

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

/// HTTP/1 limits before a request reaches the router: a client that takes longer than
/// `limit` to send its headers (slow-loris) is disconnected — hyper applies its header
/// timeout only when it has a timer, which axum-server does not give it — and a request
/// head over 64 KiB is refused with 431 (hyper's default read buffer would accept ≈ 400 KiB
/// of headers per connection). Once the headers are in, `request_timeout` (a layer) bounds
/// the rest, body upload included.
fn http1_limits(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limit: Duration,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limit)
        .max_buf_size(64 * 1024);
}

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
    serve(state, listen).await
}

/// Serves `state` on `listen` (HTTP, or HTTPS with its `[server.tls]`), with the same
/// listener limits as [`start`] but no SIGHUP handling and no exposure check: for
/// embedding the codec server in another program, and for tests.
pub async fn serve(state: Arc<AppState>, listen: SocketAddr) -> Result<RunningServer, BoxError> {
    let config = state.config();
    let (tls, header_timeout) = (config.tls.clone(), config.header_timeout);
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let (scheme, task) = match tls {
        Some(tls) => {
            let rustls = tls_config(&tls)?;
            let mut server = axum_server::bind_rustls(
                listen,
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(rustls)),
            )
            .handle(handle.clone());
            http1_limits(server.http_builder(), header_timeout);
            ("https", tokio::spawn(server.serve(app)))
        }
        None => {
            let mut server = axum_server::bind(listen).handle(handle.clone());
            http1_limits(server.http_builder(), header_timeout);
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
///
/// Core dumps are turned off first (`RLIMIT_CORE` 0 on Unix): a core of the server would
/// hold unwrapped data keys, lease keys and tokens.
pub async fn run(config_path: PathBuf, listen: Option<SocketAddr>) -> Result<(), BoxError> {
    #[cfg(unix)]
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::CORE, 0, 0) {
        tracing::warn!("could not turn core dumps off: {e}");
    }
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
