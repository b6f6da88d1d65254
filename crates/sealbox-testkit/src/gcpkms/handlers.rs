//! The Cloud KMS REST endpoints (`/v1/...`): authentication, request parsing, routing, and the
//! key-ring, crypto-key and version handlers (`:encrypt` and `:decrypt` are in `crypto`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::crypto::{decrypt, encrypt};
use super::state::{CryptoKey, Emu, KeyVersion, VersionState, key_json, random, version_json};
use super::wire::{error, invalid_argument, not_found, ok};

/// One KMS request: logs it, checks its bearer token, parses its body, and routes it.
pub(super) async fn kms(
    State(emu): State<Emu>,
    method: Method,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    emu.lock().requests.push(format!("{method} {path}"));
    if let Err(refused) = authenticate(&emu, &headers) {
        return refused;
    }
    let req = match parse_body(&body) {
        Ok(req) => req,
        Err(refused) => return refused,
    };
    let (resource, verb) = split_verb(&path);
    let segments: Vec<&str> = resource.split('/').collect();
    match (method.as_str(), verb.as_deref(), segments.len()) {
        ("POST", None, 5) if segments[4] == "keyRings" => create_key_ring(&emu, &resource, &query),
        ("POST", None, 7) if segments[6] == "cryptoKeys" => {
            create_crypto_key(&emu, &resource, &segments, &query, &req)
        }
        ("GET", None, 8) => get_crypto_key(&emu, &resource),
        ("POST", None, 9) if segments[8] == "cryptoKeyVersions" => create_version(&emu, &segments),
        ("GET" | "PATCH", None, 10) if segments[8] == "cryptoKeyVersions" => {
            get_or_patch_version(&emu, &method, &resource, &segments, &req)
        }
        ("POST", Some("updatePrimaryVersion"), 8) => update_primary(&emu, &resource, &req),
        ("POST", Some("encrypt"), 8 | 10) => {
            encrypt(&emu, &resource, &segments, &req).unwrap_or_else(|e| e)
        }
        ("POST", Some("decrypt"), 8) => decrypt(&emu, &resource, &req).unwrap_or_else(|e| e),
        _ => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{method} {path} is not emulated"),
        ),
    }
}

/// Accepts a request only with a bearer token the emulator issued (or the pre-shared one).
fn authenticate(emu: &Emu, headers: &HeaderMap) -> Result<(), Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    match bearer {
        Some(t) if emu.lock().tokens.contains(&t) => Ok(()),
        Some(_) => Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        )),
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential.",
        )),
    }
}

/// The JSON request body; an empty body is `{}`.
fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| invalid_argument(format!("Invalid JSON payload received. {e}")))
}

/// Splits `resource:verb` (a custom method such as `:encrypt`) from the resource path.
fn split_verb(path: &str) -> (String, Option<String>) {
    match path.rsplit_once(':') {
        Some((r, v)) if !v.contains('/') => (r.to_owned(), Some(v.to_owned())),
        _ => (path.to_owned(), None),
    }
}

/// `POST projects/*/locations/*/keyRings?keyRingId=…`
fn create_key_ring(emu: &Emu, resource: &str, query: &HashMap<String, String>) -> Response {
    let Some(id) = query.get("keyRingId") else {
        return invalid_argument("keyRingId is required");
    };
    let name = format!("{resource}/{id}");
    let mut inner = emu.lock();
    if !inner.rings.insert(name.clone()) {
        return error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("KeyRing {name} already exists."),
        );
    }
    ok(json!({"name": name, "createTime": "2026-01-01T00:00:00Z"}))
}

/// `POST …/keyRings/*/cryptoKeys?cryptoKeyId=…[&skipInitialVersionCreation=true]`
fn create_crypto_key(
    emu: &Emu,
    resource: &str,
    segments: &[&str],
    query: &HashMap<String, String>,
    req: &Value,
) -> Response {
    let Some(id) = query.get("cryptoKeyId") else {
        return invalid_argument("cryptoKeyId is required");
    };
    let purpose_ok = match &req["purpose"] {
        Value::String(s) => s == "ENCRYPT_DECRYPT",
        Value::Number(n) => n.as_u64() == Some(1),
        _ => false,
    };
    if !purpose_ok {
        return invalid_argument("only purpose ENCRYPT_DECRYPT is emulated");
    }
    let name = format!("{resource}/{id}");
    let mut inner = emu.lock();
    let ring = segments[..6].join("/");
    if !inner.rings.contains(&ring) {
        return not_found(format_args!("KeyRing {ring}"));
    }
    if inner.keys.contains_key(&name) {
        return error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("CryptoKey {name} already exists."),
        );
    }
    let skip = query
        .get("skipInitialVersionCreation")
        .is_some_and(|v| v == "true");
    let key = if skip {
        CryptoKey {
            versions: Vec::new(),
            primary: None,
        }
    } else {
        CryptoKey {
            versions: vec![KeyVersion {
                material: random(),
                state: VersionState::Enabled,
            }],
            primary: Some(0),
        }
    };
    let v = key_json(&name, &key);
    inner.keys.insert(name, key);
    ok(v)
}

/// `GET …/cryptoKeys/*`
fn get_crypto_key(emu: &Emu, resource: &str) -> Response {
    let inner = emu.lock();
    match inner.keys.get(resource) {
        Some(k) => ok(key_json(resource, k)),
        None => not_found(format_args!("CryptoKey {resource}")),
    }
}

/// `POST …/cryptoKeys/*/cryptoKeyVersions`: a new enabled version (not made primary).
fn create_version(emu: &Emu, segments: &[&str]) -> Response {
    let key_name = segments[..8].join("/");
    let mut inner = emu.lock();
    let Some(k) = inner.keys.get_mut(&key_name) else {
        return not_found(format_args!("CryptoKey {key_name}"));
    };
    k.versions.push(KeyVersion {
        material: random(),
        state: VersionState::Enabled,
    });
    let n = k.versions.len();
    ok(version_json(&key_name, n, &k.versions[n - 1]))
}

/// `GET` or `PATCH` (`state`) `…/cryptoKeyVersions/*`.
fn get_or_patch_version(
    emu: &Emu,
    method: &Method,
    resource: &str,
    segments: &[&str],
    req: &Value,
) -> Response {
    let key_name = segments[..8].join("/");
    let n: usize = segments[9].parse().unwrap_or(0);
    let mut inner = emu.lock();
    let Some(k) = inner.keys.get_mut(&key_name) else {
        return not_found(format_args!("CryptoKey {key_name}"));
    };
    if n == 0 || n > k.versions.len() {
        return not_found(format_args!("CryptoKeyVersion {resource}"));
    }
    if *method == Method::PATCH {
        let state = match &req["state"] {
            Value::String(s) if s == "ENABLED" => VersionState::Enabled,
            Value::String(s) if s == "DISABLED" => VersionState::Disabled,
            Value::Number(x) if x.as_u64() == Some(1) => VersionState::Enabled,
            Value::Number(x) if x.as_u64() == Some(2) => VersionState::Disabled,
            _ => {
                return invalid_argument("state must be ENABLED or DISABLED");
            }
        };
        if k.versions[n - 1].state == VersionState::Destroyed {
            return error(
                StatusCode::BAD_REQUEST,
                "FAILED_PRECONDITION",
                "the version is destroyed",
            );
        }
        k.versions[n - 1].state = state;
    }
    ok(version_json(&key_name, n, &k.versions[n - 1]))
}

/// `POST …/cryptoKeys/*:updatePrimaryVersion`
fn update_primary(emu: &Emu, resource: &str, req: &Value) -> Response {
    let id: usize = match &req["cryptoKeyVersionId"] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    };
    let mut inner = emu.lock();
    let Some(k) = inner.keys.get_mut(resource) else {
        return not_found(format_args!("CryptoKey {resource}"));
    };
    if id == 0 || id > k.versions.len() {
        return not_found("CryptoKeyVersion");
    }
    if k.versions[id - 1].state != VersionState::Enabled {
        return error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            "the primary version must be ENABLED",
        );
    }
    k.primary = Some(id - 1);
    ok(key_json(resource, k))
}
