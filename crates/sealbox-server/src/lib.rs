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
mod error;
mod extract;
mod limits;
mod metrics;
mod observe;
mod routes;
mod serve;
mod state;

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

pub use auth::{Authenticator, Principal};
pub use config::{ConfigError, MetricsAccess, Permission, ServerConfig};
pub use error::ApiError;
pub use serve::{RunningServer, run, serve, start};
pub use state::AppState;

/// The HTTP application: the codec routes (under any prefix, audited and timed by one
/// layer), health, readiness and metrics, with CORS (origins from the settings in force, so
/// a reload changes them).
pub fn app(state: Arc<AppState>) -> Router {
    let codec = Router::new()
        .route("/encode", post(routes::codec).fallback(routes::not_post))
        .route("/decode", post(routes::codec).fallback(routes::not_post))
        .route("/download", post(routes::codec).fallback(routes::not_post))
        .layer(from_fn_with_state(Arc::clone(&state), observe::observe));
    let routed = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics_handler))
        .merge(codec)
        .fallback(routes::not_found)
        .with_state(Arc::clone(&state));
    // Routing happens on the path's last segment: rewrite before the router sees it.
    let service = tower::ServiceBuilder::new()
        .map_request(routes::route_by_last_segment)
        .service(routed);
    Router::new()
        .fallback_service(service)
        .layer(routes::cors_layer(state))
}
