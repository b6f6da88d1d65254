//! `:encrypt` and `:decrypt`: AES-256-GCM under a key version, with
//! `additionalAuthenticatedData` and the CRC32C integrity fields.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::state::{Emu, VersionState, random};
use super::wire::{b64, check_crc, crc, error, int64, not_found, ok, unb64};

pub(super) fn encrypt(emu: &Emu, resource: &str, segments: &[&str], req: &Value) -> Response {
    let plaintext = match unb64(req, "plaintext") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let aad = match unb64(req, "additionalAuthenticatedData") {
        Ok(a) => a,
        Err(e) => return e,
    };
    let verified_plaintext = match int64(req, "plaintextCrc32c")
        .and_then(|c| check_crc(&plaintext, c, "plaintext", "plaintext_crc32c"))
    {
        Ok(v) => v,
        Err(e) => return e,
    };
    let verified_aad = match int64(req, "additionalAuthenticatedDataCrc32c").and_then(|c| {
        check_crc(
            &aad,
            c,
            "additional_authenticated_data",
            "additional_authenticated_data_crc32c",
        )
    }) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if plaintext.is_empty() || plaintext.len() > 64 * 1024 {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "plaintext must be 1 to 65536 bytes",
        );
    }
    let key_name = segments[..8].join("/");
    let inner = emu.lock();
    let Some(k) = inner.keys.get(&key_name) else {
        return not_found(format_args!("CryptoKey {key_name}"));
    };
    let index = if segments.len() == 10 {
        match segments[9].parse::<usize>() {
            Ok(n) if n >= 1 && n <= k.versions.len() => n - 1,
            _ => {
                return not_found(format_args!("CryptoKeyVersion {resource}"));
            }
        }
    } else {
        match k.primary {
            Some(p) => p,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "FAILED_PRECONDITION",
                    "The CryptoKey has no primary version.",
                );
            }
        }
    };
    let version = &k.versions[index];
    if version.state != VersionState::Enabled {
        return error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!(
                "{key_name}/cryptoKeyVersions/{} is not enabled, current state is: {}.",
                index + 1,
                version.state.name()
            ),
        );
    }
    let nonce: [u8; 12] = random();
    let mut ct = plaintext.clone();
    let Ok(tag) = Aes256Gcm::new(&version.material.into()).encrypt_inout_detached(
        &Nonce::from(nonce),
        &aad,
        ct.as_mut_slice().into(),
    ) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "encryption failed",
        );
    };
    // Ciphertext: version number, nonce, AES-GCM ciphertext, tag.
    let mut out = ((index + 1) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out.extend_from_slice(&tag);
    ok(json!({
        "name": format!("{key_name}/cryptoKeyVersions/{}", index + 1),
        "ciphertext": b64(&out),
        "ciphertextCrc32c": crc(&out).to_string(),
        "verifiedPlaintextCrc32c": verified_plaintext,
        "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad,
        "protectionLevel": "SOFTWARE",
    }))
}
pub(super) fn decrypt(emu: &Emu, resource: &str, req: &Value) -> Response {
    let ciphertext = match unb64(req, "ciphertext") {
        Ok(c) => c,
        Err(e) => return e,
    };
    let aad = match unb64(req, "additionalAuthenticatedData") {
        Ok(a) => a,
        Err(e) => return e,
    };
    if let Err(e) = int64(req, "ciphertextCrc32c")
        .and_then(|c| check_crc(&ciphertext, c, "ciphertext", "ciphertext_crc32c"))
    {
        return e;
    }
    if let Err(e) = int64(req, "additionalAuthenticatedDataCrc32c").and_then(|c| {
        check_crc(
            &aad,
            c,
            "additional_authenticated_data",
            "additional_authenticated_data_crc32c",
        )
    }) {
        return e;
    }
    let inner = emu.lock();
    let Some(k) = inner.keys.get(resource) else {
        return not_found(format_args!("CryptoKey {resource}"));
    };
    let invalid = || {
        error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Decryption failed: the ciphertext is invalid.",
        )
    };
    if ciphertext.len() < 4 + 12 + 16 {
        return invalid();
    }
    let n =
        u32::from_be_bytes([ciphertext[0], ciphertext[1], ciphertext[2], ciphertext[3]]) as usize;
    if n == 0 || n > k.versions.len() {
        return invalid();
    }
    let version = &k.versions[n - 1];
    if version.state != VersionState::Enabled {
        return error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!(
                "{resource}/cryptoKeyVersions/{n} is not enabled, current state is: {}.",
                version.state.name()
            ),
        );
    }
    let nonce: [u8; 12] = ciphertext[4..16].try_into().unwrap_or([0; 12]);
    let split = ciphertext.len() - 16;
    let tag: [u8; 16] = ciphertext[split..].try_into().unwrap_or([0; 16]);
    let mut pt = ciphertext[16..split].to_vec();
    if Aes256Gcm::new(&version.material.into())
        .decrypt_inout_detached(
            &Nonce::from(nonce),
            &aad,
            pt.as_mut_slice().into(),
            &Tag::from(tag),
        )
        .is_err()
    {
        return invalid();
    }
    ok(json!({
        "plaintext": b64(&pt),
        "plaintextCrc32c": crc(&pt).to_string(),
        "usedPrimary": k.primary == Some(n - 1),
        "protectionLevel": "SOFTWARE",
    }))
}
