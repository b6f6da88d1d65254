//! The layer around every codec request: one settings snapshot, the request timeout, and
//! afterwards the metrics and the audit line, from what the extractors and handlers left in
//! the request's [`AuditSlot`] and the response's extensions.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ApiError, Failed};
use crate::extract::peer;
use crate::state::{AppState, Runtime};

/// What the audit line says about one request beyond its status.
#[derive(Debug, Default)]
pub(crate) struct AuditRecord {
    pub(crate) subject: String,
    pub(crate) namespace: String,
    pub(crate) payloads: usize,
    pub(crate) plaintext: usize,
    pub(crate) keks: BTreeSet<String>,
    pub(crate) keks_omitted: usize,
}

/// One audit line: a JSON object with its keys in sorted order (the field order below),
/// serialized straight into the line's buffer.
#[derive(Serialize)]
pub(crate) struct AuditLine<'a> {
    duration_ms: f64,
    error: Option<&'a str>,
    keks: &'a BTreeSet<String>,
    keks_omitted: usize,
    namespace: &'a str,
    operation: &'a str,
    outcome: &'a str,
    payloads: usize,
    peer: &'a str,
    plaintext_payloads: usize,
    status: u16,
    subject: &'a str,
    #[serde(serialize_with = "display")]
    time: humantime::Rfc3339Timestamp,
}

fn display<S: serde::Serializer>(v: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The request's audit record, filled in by extractors and handlers.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditSlot(Arc<Mutex<AuditRecord>>);

impl AuditSlot {
    pub(crate) fn update(&self, f: impl FnOnce(&mut AuditRecord)) {
        if let Ok(mut a) = self.0.lock() {
            f(&mut a);
        }
    }

    fn take(&self) -> AuditRecord {
        self.0
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }
}

/// The settings snapshot of this request (taken by [`observe`]), or the current one.
pub(crate) fn runtime_of(parts: &Parts, state: &AppState) -> Arc<Runtime> {
    parts
        .extensions
        .get::<Arc<Runtime>>()
        .cloned()
        .unwrap_or_else(|| state.runtime.load_full())
}

pub(crate) async fn observe(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let op = req.uri().path().trim_start_matches('/').to_owned();
    let (mut parts, body) = req.into_parts();
    let peer = peer(&parts);
    let runtime = s.runtime.load_full();
    let timeout = runtime.config.request_timeout;
    let slot = AuditSlot::default();
    parts.extensions.insert(runtime);
    parts.extensions.insert(slot.clone());
    let response =
        match tokio::time::timeout(timeout, next.run(Request::from_parts(parts, body))).await {
            Ok(r) => r,
            Err(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "request_timeout",
                format!("the request took longer than {timeout:?}"),
            )
            .into_response(),
        };
    let elapsed = started.elapsed();
    let audit = slot.take();
    let status = response.status();
    let failed = response.extensions().get::<Failed>();
    let reason = failed.map_or(if status.is_success() { "ok" } else { "error" }, |f| {
        f.reason
    });
    s.metrics.observe(
        &op,
        status.as_u16(),
        reason,
        audit.payloads,
        audit.plaintext,
        elapsed,
    );
    s.write_audit(&AuditLine {
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        error: failed.map(|f| f.message.as_str()),
        keks: &audit.keks,
        keks_omitted: audit.keks_omitted,
        namespace: &audit.namespace,
        operation: &op,
        outcome: reason,
        payloads: audit.payloads,
        peer: &peer,
        plaintext_payloads: audit.plaintext,
        status: status.as_u16(),
        subject: &audit.subject,
        time: humantime::format_rfc3339_millis(std::time::SystemTime::now()),
    });
    response
}
