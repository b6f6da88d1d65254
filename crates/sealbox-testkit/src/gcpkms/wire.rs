//! JSON and HTTP helpers: Google's error shape, base64 and int64 fields, CRC32C checks.

use std::fmt;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::{Value, json};

pub(super) fn error(
    status: StatusCode,
    google_status: &str,
    message: impl Into<String>,
) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message.into(), "status": google_status}});
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A 400 `INVALID_ARGUMENT` error.
pub(super) fn invalid_argument(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

pub(super) fn not_found(what: impl fmt::Display) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("{what} not found."),
    )
}

pub(super) fn ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

pub(super) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub(super) fn unb64(v: &Value, field: &str) -> Result<Vec<u8>, Response> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => STANDARD
            .decode(s)
            .or_else(|_| URL_SAFE.decode(s))
            .map_err(|_| invalid_argument(format!("Invalid value at '{field}': not base64"))),
        Some(_) => Err(invalid_argument(format!("Invalid value at '{field}'"))),
    }
}

/// An optional int64 field (JSON string per proto3, or a number).
pub(super) fn int64(v: &Value, field: &str) -> Result<Option<u64>, Response> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| invalid_argument(format!("Invalid value at '{field}'"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid_argument(format!("Invalid value at '{field}'"))),
        Some(_) => Err(invalid_argument(format!("Invalid value at '{field}'"))),
    }
}

pub(super) fn crc(data: &[u8]) -> u64 {
    u64::from(crc32c::crc32c(data))
}

pub(super) fn check_crc(
    data: &[u8],
    given: Option<u64>,
    data_field: &str,
    crc_field: &str,
) -> Result<bool, Response> {
    match given {
        None => Ok(false),
        Some(c) if c == crc(data) => Ok(true),
        Some(_) => Err(invalid_argument(format!(
            "The checksum in field {crc_field} did not match the data in field {data_field}."
        ))),
    }
}
