//! Who is calling and for which namespace, as extractors: a handler that takes a
//! [`Principal`] runs only for an authenticated, admitted caller, and one that takes a
//! [`Namespace`] only with a valid namespace.

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};

use crate::auth::Principal;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::observe::{AuditSlot, runtime_of};
use crate::state::{AppState, Runtime};

/// The namespace a path names before its operation (`/{namespace}/decode`), recorded when
/// the path is routed.
#[derive(Debug, Clone)]
pub(crate) struct PathNamespace(pub(crate) String);

/// The client's address, or `local` for in-process calls (tests).
pub(crate) fn peer(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "local".into())
}

/// The key by which a caller's request and KMS budgets are kept.
pub(crate) fn caller_key(principal: &Principal, peer: &str) -> String {
    if principal.subject == "anonymous" {
        format!("ip:{peer}")
    } else {
        principal.subject.clone()
    }
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    /// Checks `Host` (DNS rebinding, when anonymous access is on), the address's failed
    /// authentications, the credentials, and the caller's request rate.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let runtime = runtime_of(parts, state);
        let peer = peer(parts);
        host_allowed(&runtime.config, &parts.headers)
            .map_err(|e| ApiError::new(StatusCode::MISDIRECTED_REQUEST, "bad_host", e))?;
        if let Some(wait) = runtime.auth_failures.blocked(&peer) {
            return Err(ApiError::too_many(
                "auth_failures",
                format!("too many failed authentications from this address; retry in {wait} s"),
            ));
        }
        let principal = match runtime.auth.authenticate(&parts.headers).await {
            Ok(p) => p,
            Err(e) => {
                runtime.auth_failures.record(&peer);
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    e.to_string(),
                ));
            }
        };
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            slot.update(|a| a.subject.clone_from(&principal.subject));
        }
        rate_limit(&runtime, &caller_key(&principal, &peer))?;
        Ok(principal)
    }
}

fn rate_limit(runtime: &Runtime, caller: &str) -> Result<(), ApiError> {
    let Some(limiter) = &runtime.limiter else {
        return Ok(());
    };
    if limiter.len() > 10_000 {
        // Forget callers whose budget is full again, so the table cannot grow without bound.
        limiter.retain_recent();
    }
    limiter
        .check_key(&caller.to_owned())
        .map_err(|_| ApiError::too_many("rate_limited", "too many requests"))
}

/// The namespace of a codec request: `X-Namespace`, else the path segment before the
/// operation.
#[derive(Debug, Clone)]
pub(crate) struct Namespace(pub(crate) String);

impl FromRequestParts<Arc<AppState>> for Namespace {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let path_namespace = runtime_of(parts, state).config.path_namespace;
        let header = match parts.headers.get("x-namespace") {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::bad_request("X-Namespace is not ASCII"))?
                    .to_owned(),
            ),
            None => None,
        };
        let path = parts.extensions.get::<PathNamespace>().map(|p| p.0.clone());
        let namespace = if path_namespace {
            match (header, path) {
                (Some(h), Some(p)) if h != p => {
                    return Err(ApiError::bad_request(format!(
                        "X-Namespace `{}` disagrees with the path's namespace `{}`",
                        h.escape_debug(),
                        p.escape_debug()
                    )));
                }
                (_, Some(p)) => p,
                (_, None) => {
                    return Err(ApiError::bad_request(format!(
                        "no namespace in the path: this server takes it from \
                         /{{namespace}}{} ([server].path_namespace)",
                        parts.uri.path()
                    )));
                }
            }
        } else {
            header.ok_or_else(|| {
                ApiError::bad_request(
                    "no namespace: send an X-Namespace header (or set [server].path_namespace \
                     = true to take it from /{namespace}/decode)",
                )
            })?
        };
        if namespace.is_empty() {
            return Err(ApiError::bad_request("empty namespace"));
        }
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            slot.update(|a| a.namespace.clone_from(&namespace));
        }
        Ok(Self(namespace))
    }
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
    let parsed = if name.contains(':') {
        url::Host::parse(&format!("[{name}]")).ok()
    } else {
        url::Host::parse(name).ok()
    };
    let loopback = sealbox_core::transport::is_loopback_host(parsed.as_ref().map(|h| match h {
        url::Host::Domain(d) => url::Host::Domain(d.as_str()),
        url::Host::Ipv4(a) => url::Host::Ipv4(*a),
        url::Host::Ipv6(a) => url::Host::Ipv6(*a),
    })) || config
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
