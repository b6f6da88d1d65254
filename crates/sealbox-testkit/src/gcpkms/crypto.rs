//! `:encrypt` and `:decrypt`: AES-256-GCM under a key version, with
//! `additionalAuthenticatedData` and the CRC32C integrity fields.

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::state::{Emu, KeyVersion, VersionState, random};
use super::wire::{b64, check_crc, crc, error, int64, invalid_argument, not_found, ok, unb64};

pub(super) fn encrypt(
    emu: &Emu,
    resource: &str,
    segments: &[&str],
    req: &Value,
) -> Result<Response, Response> {
    let plaintext = unb64(req, "plaintext")?;
    let aad = unb64(req, AAD)?;
    let plaintext_crc = int64(req, "plaintextCrc32c")?;
    let verified_plaintext = check_crc(&plaintext, plaintext_crc, "plaintext", "plaintext_crc32c")?;
    let verified_aad = check_aad_crc(req, &aad)?;
    if plaintext.is_empty() || plaintext.len() > 64 * 1024 {
        return Err(invalid_argument("plaintext must be 1 to 65536 bytes"));
    }
    let key_name = segments[..8].join("/");
    let inner = emu.lock();
    let Some(k) = inner.keys.get(&key_name) else {
        return Err(not_found(format_args!("CryptoKey {key_name}")));
    };
    let index = if segments.len() == 10 {
        match segments[9].parse::<usize>() {
            Ok(n) if n >= 1 && n <= k.versions.len() => n - 1,
            _ => {
                return Err(not_found(format_args!("CryptoKeyVersion {resource}")));
            }
        }
    } else {
        match k.primary {
            Some(p) => p,
            None => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "FAILED_PRECONDITION",
                    "The CryptoKey has no primary version.",
                ));
            }
        }
    };
    let version = &k.versions[index];
    check_enabled(
        version,
        format_args!("{key_name}/cryptoKeyVersions/{}", index + 1),
    )?;
    let nonce: [u8; 12] = random();
    let mut ct = plaintext.clone();
    let Ok(tag) = Aes256Gcm::new(&version.material.into()).encrypt_inout_detached(
        &Nonce::from(nonce),
        &aad,
        ct.as_mut_slice().into(),
    ) else {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "encryption failed",
        ));
    };
    // Ciphertext: version number, nonce, AES-GCM ciphertext, tag.
    let mut out = ((index + 1) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out.extend_from_slice(&tag);
    Ok(ok(json!({
        "name": format!("{key_name}/cryptoKeyVersions/{}", index + 1),
        "ciphertext": b64(&out),
        "ciphertextCrc32c": crc(&out).to_string(),
        "verifiedPlaintextCrc32c": verified_plaintext,
        "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad,
        "protectionLevel": "SOFTWARE",
    })))
}
pub(super) fn decrypt(emu: &Emu, resource: &str, req: &Value) -> Result<Response, Response> {
    let ciphertext = unb64(req, "ciphertext")?;
    let aad = unb64(req, AAD)?;
    let ciphertext_crc = int64(req, "ciphertextCrc32c")?;
    check_crc(
        &ciphertext,
        ciphertext_crc,
        "ciphertext",
        "ciphertext_crc32c",
    )?;
    check_aad_crc(req, &aad)?;
    let inner = emu.lock();
    let Some(k) = inner.keys.get(resource) else {
        return Err(not_found(format_args!("CryptoKey {resource}")));
    };
    let invalid = || invalid_argument("Decryption failed: the ciphertext is invalid.");
    if ciphertext.len() < 4 + 12 + 16 {
        return Err(invalid());
    }
    let n =
        u32::from_be_bytes([ciphertext[0], ciphertext[1], ciphertext[2], ciphertext[3]]) as usize;
    if n == 0 || n > k.versions.len() {
        return Err(invalid());
    }
    let version = &k.versions[n - 1];
    check_enabled(version, format_args!("{resource}/cryptoKeyVersions/{n}"))?;
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
        return Err(invalid());
    }
    Ok(ok(json!({
        "plaintext": b64(&pt),
        "plaintextCrc32c": crc(&pt).to_string(),
        "usedPrimary": k.primary == Some(n - 1),
        "protectionLevel": "SOFTWARE",
    })))
}

/// The request's `additionalAuthenticatedData` field.
const AAD: &str = "additionalAuthenticatedData";

/// Checks `aad` against the request's `additionalAuthenticatedDataCrc32c`, if given; whether
/// it was.
fn check_aad_crc(req: &Value, aad: &[u8]) -> Result<bool, Response> {
    let given = int64(req, "additionalAuthenticatedDataCrc32c")?;
    check_crc(
        aad,
        given,
        "additional_authenticated_data",
        "additional_authenticated_data_crc32c",
    )
}

/// Refuses a version (named `name` in the message) that is not enabled.
fn check_enabled(version: &KeyVersion, name: fmt::Arguments<'_>) -> Result<(), Response> {
    if version.state == VersionState::Enabled {
        return Ok(());
    }
    Err(error(
        StatusCode::BAD_REQUEST,
        "FAILED_PRECONDITION",
        format!(
            "{name} is not enabled, current state is: {}.",
            version.state.name()
        ),
    ))
}
