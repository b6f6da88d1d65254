//! The codec protocol's routes and handlers: `POST /encode`, `/decode`, `/download` under
//! any prefix, and the operators' `/healthz`, `/readyz`, `/metrics`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sealbox_policy::ExternalStorage;
use sealbox_temporal::Payload;
use sealbox_temporal::storage::{StorageCodec, cap_of, threshold_for};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Principal;
use crate::config::{MetricsAccess, Permission};
use crate::error::ApiError;
use crate::extract::{Namespace, PathNamespace, caller_key, peer};
use crate::observe::{AuditSlot, runtime_of};
use crate::state::{AppState, Runtime};

/// The codec operations, matched on a path's last non-empty segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Encode,
    Decode,
    Download,
}

/// Temporal's clients call the codec under any prefix (`/decode`, `//decode`,
/// `/{namespace}/decode`, `/codec/{namespace}/decode`): route on the last segment, keeping
/// the one before it as the path's namespace.
pub(crate) fn route_by_last_segment(mut req: Request) -> Request {
    let path = req.uri().path();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some((last, rest)) = segments.split_last() else {
        return req;
    };
    if !matches!(*last, "encode" | "decode" | "download") {
        return req;
    }
    let namespace = rest.last().map(|s| PathNamespace((*s).to_owned()));
    let target = match req.uri().query() {
        Some(q) => format!("/{last}?{q}"),
        None => format!("/{last}"),
    };
    if let Ok(uri) = target.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    if let Some(ns) = namespace {
        req.extensions_mut().insert(ns);
    }
    req
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

pub(crate) async fn not_post(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} needs POST", uri.path().trim_start_matches('/')),
    )
}

/// `POST /encode`, `/decode` and `/download`: the operation is the path's last segment
/// (the request has been routed on it, see [`route_by_last_segment`]).
pub(crate) async fn codec(
    State(s): State<Arc<AppState>>,
    principal: Principal,
    Namespace(namespace): Namespace,
    req: Request,
) -> Result<Response, ApiError> {
    let op = match req.uri().path() {
        "/encode" => Op::Encode,
        "/decode" => Op::Decode,
        _ => Op::Download,
    };
    codec_call(&s, op, &principal, &namespace, req).await
}

/// One codec request: the tenant is resolved once from one policy snapshot, authorized,
/// admitted by the KMS work it would cause, then encoded or decoded.
async fn codec_call(
    s: &AppState,
    op: Op,
    principal: &Principal,
    namespace: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let runtime = runtime_of(&parts, s);
    let config = &runtime.config;
    let audit = parts
        .extensions
        .get::<AuditSlot>()
        .cloned()
        .unwrap_or_default();
    let policy = s.policy.current();
    let tenant = policy
        .tenant(namespace)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let permission = match op {
        Op::Encode => Permission::Encode,
        Op::Decode | Op::Download => Permission::Decode,
    };
    if !principal.allows(namespace, permission, &tenant.policy.access) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} may not {} in namespace {namespace}",
                principal.subject,
                permission.as_str()
            ),
        ));
    }
    let storage = match &policy.config().storage {
        Some(settings) => Some(s.storage_driver(settings).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "storage_unavailable",
                e.to_string(),
            )
        })?),
        None => None,
    };
    if op == Op::Download && storage.is_none() {
        // 404 is what the Web UI explains as "connected, but not configured to download".
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "external storage is not configured on this codec server ([storage] in the policy file)",
        ));
    }
    let preserve_references = preserve_storage_refs(parts.uri.query());
    // Where the namespace stores payloads externally, /encode and /decode take payloads up
    // to the storage cap (base64 in JSON: 4/3 of it, plus room for metadata): a worker whose
    // SDK retrieves the objects posts them to /decode.
    let max_body = match (&policy.config().storage, op, tenant.policy.external_storage) {
        (
            Some(st),
            Op::Encode | Op::Decode,
            ExternalStorage::Always | ExternalStorage::Threshold(_) | ExternalStorage::Sdk,
        ) => {
            let cap = cap_of(st);
            config.max_body.max(cap.saturating_mul(4) / 3 + 64 * 1024)
        }
        _ => config.max_body,
    };
    let body = axum::body::to_bytes(body, max_body).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body over the {max_body}-byte limit"),
        )
    })?;
    let payloads = sealbox_temporal::json::parse_payloads(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not Temporal Payloads in protobuf JSON: {e}"
        ))
    })?;
    audit.update(|a| a.payloads = payloads.len());
    let kms_calls = match op {
        Op::Encode => usize::from(
            !payloads.is_empty() && tenant.keyring.seal_needs_kms(&tenant.context, 0).await,
        ),
        _ => {
            let (keks, omitted) = key_ids(&payloads);
            let plaintext = payloads
                .iter()
                .filter(|p| {
                    !sealbox_temporal::is_encrypted(p) && !sealbox_temporal::plaintext_by_design(p)
                })
                .count();
            audit.update(|a| {
                a.keks = keks;
                a.keks_omitted = omitted;
                a.plaintext = plaintext;
            });
            let items: Vec<(&sealbox_core::EncryptionContext, &[u8])> = payloads
                .iter()
                .filter_map(sealbox_temporal::sealbox_envelope)
                .map(|e| (&tenant.context, e))
                .collect();
            let n = tenant.keyring.pending_unwraps(&items);
            if n > config.max_unwraps_per_request as usize {
                return Err(ApiError::too_many(
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
    kms_budget(&runtime, &caller_key(principal, &peer(&parts)), kms_calls)?;
    // Workers refuse plaintext where a namespace requires encryption; the codec server
    // shows it as it is (counted in the audit line and metrics), since the history shows
    // the same bytes to anyone who can read it, and one forged payload must not hide the
    // rest of the event from an operator.
    let codec = s
        .codec_for(&policy, namespace)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // With [storage], every call goes through the storage codec: it stores what is over the
    // namespace's threshold (nothing when it is "off") and holds what stays inline to
    // Temporal's 2 MiB, whatever the codec's own (storage-sized) limit. Where the worker's
    // SDK stores ("sdk"), /encode is a pure codec: the SDK offloads after it.
    let stored = storage.map(|driver| {
        StorageCodec::new(codec.clone(), driver)
            .threshold(threshold_for(tenant.policy.external_storage))
    });
    let sdk_stores = tenant.policy.external_storage == ExternalStorage::Sdk;
    let work = async {
        match (op, &stored) {
            (Op::Encode, Some(storage)) if !sdk_stores => storage.encode_payloads(payloads).await,
            (Op::Encode, _) => codec.encode_payloads(payloads).await,
            (Op::Decode, Some(storage)) => {
                storage.decode_payloads(payloads, preserve_references).await
            }
            (Op::Decode, None) => codec.decode_payloads(payloads).await,
            (Op::Download, Some(storage)) => storage.download(payloads).await,
            (Op::Download, None) => Ok(Vec::new()), // refused above
        }
    };
    let out = match tokio::time::timeout(config.kms_timeout, work).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "kms_timeout",
                format!("the KMS did not answer within {:?}", config.kms_timeout),
            ));
        }
        Ok(Err(e)) => return Err(ApiError::from_codec(&e)),
        Ok(Ok(out)) => out,
    };
    if op == Op::Encode {
        let (keks, omitted) = key_ids(&out);
        audit.update(|a| {
            a.keks = keks;
            a.keks_omitted = omitted;
        });
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(sealbox_temporal::json::render_payloads(&out)),
    )
        .into_response())
}

/// `?preserveStorageRefs=true` (the Web UI's; case-insensitive): return external-storage
/// references as they are instead of resolving them.
fn preserve_storage_refs(query: Option<&str>) -> bool {
    query.unwrap_or("").split('&').any(|pair| {
        pair.split_once('=').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("preserveStorageRefs") && v.eq_ignore_ascii_case("true")
        })
    })
}

/// Charges `calls` KMS calls to `caller`'s budget (`[server].kms_rate_limit`), before any is
/// made; a refused request is not charged.
fn kms_budget(runtime: &Runtime, caller: &str, calls: usize) -> Result<(), ApiError> {
    let (Some(limiter), Some(n)) = (
        &runtime.kms_limiter,
        std::num::NonZeroU32::new(u32::try_from(calls).unwrap_or(u32::MAX)),
    ) else {
        return Ok(());
    };
    if limiter.len() > 10_000 {
        limiter.retain_recent();
    }
    if matches!(limiter.check_key_n(&caller.to_owned(), n), Ok(Ok(()))) {
        Ok(())
    } else {
        Err(ApiError::too_many(
            "kms_rate_limited",
            format!(
                "this request needs {n} KMS call(s), over this caller's KMS budget of {} per \
                 second ([server].kms_rate_limit)",
                runtime.config.kms_rate_limit
            ),
        ))
    }
}

/// At most this many KEK IDs per audit line, each at most [`AUDIT_KEK_ID_MAX`] bytes: on
/// `/decode` they come from caller-supplied metadata.
const AUDIT_KEKS_MAX: usize = 16;
const AUDIT_KEK_ID_MAX: usize = 256;

pub(crate) fn key_ids(payloads: &[Payload]) -> (BTreeSet<String>, usize) {
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

pub(crate) async fn metrics_handler(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    let runtime = s.runtime.load();
    match runtime.config.metrics {
        MetricsAccess::Public => {}
        MetricsAccess::Off => return ApiError::not_found("/metrics").into_response(),
        MetricsAccess::Authenticated => {
            if let Err(e) = runtime.auth.authenticate(&headers).await {
                return ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
                    .into_response();
            }
        }
    }
    let body = s.metrics.render(&s.policy.current());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub(crate) async fn readyz(State(s): State<Arc<AppState>>) -> Response {
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

pub(crate) fn cors_layer(state: Arc<AppState>) -> CorsLayer {
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
