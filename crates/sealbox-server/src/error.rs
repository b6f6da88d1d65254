//! One error type for every failed codec request: its status, its reason (the metrics label
//! and the audit `outcome`) and a message that never holds payload contents or key material.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sealbox_temporal::CodecError;
use serde_json::json;

/// A failed request: the HTTP status, the reason (the `outcome` of the audit line and the
/// `reason` label of `sealbox_codec_failures_total`) and the message sent as
/// `{"error": "…"}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// What a response failed with, left in its extensions for the audit line and metrics.
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The reason, e.g. `unauthenticated`, `rate_limited`, `kms_timeout`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The message sent to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn new(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn too_many(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, reason, message)
    }

    pub(crate) fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such endpoint: {path}"),
        )
    }

    /// KMS outages are 503 (retry later); everything else about a payload is the caller's 400.
    pub(crate) fn from_codec(e: &CodecError) -> Self {
        match e {
            CodecError::Envelope { source, .. } if source.is_retryable() => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "kms_unavailable",
                e.to_string(),
            ),
            CodecError::Storage { source, .. } => {
                use sealbox_temporal::storage::StorageError;
                let (status, reason) = match source {
                    StorageError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                    StorageError::Backend(_) => (StatusCode::BAD_GATEWAY, "storage_unavailable"),
                    _ => (StatusCode::BAD_REQUEST, "storage_error"),
                };
                Self::new(status, reason, e.to_string())
            }
            _ => Self::new(StatusCode::BAD_REQUEST, "codec_error", e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "error": self.message }).to_string(),
        )
            .into_response();
        match self.status {
            StatusCode::METHOD_NOT_ALLOWED => {
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
            }
            StatusCode::TOO_MANY_REQUESTS if self.reason == "auth_failures" => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            _ => {}
        }
        r.extensions_mut().insert(Failed {
            reason: self.reason,
            message: self.message,
        });
        r
    }
}
