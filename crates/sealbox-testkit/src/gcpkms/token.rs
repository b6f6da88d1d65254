//! The OAuth token endpoint: the service-account JWT-bearer flow, RS256 verified against
//! the trusted service account's public key.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::state::{Emu, hex_string, random};
use super::wire::ok;

pub(super) async fn token(
    State(emu): State<Emu>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let refuse = |error: &str, description: String| {
        let body = json!({"error": error, "error_description": description});
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse(
            "unsupported_grant_type",
            "only the JWT-bearer grant is emulated".into(),
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse("invalid_request", "no assertion".into());
    };
    // header.payload.signature, base64url with or without padding (gcp_auth pads; Google
    // accepts both). The signature covers the first two segments exactly as sent.
    let segments: Vec<&str> = assertion.split('.').collect();
    if segments.len() != 3 {
        return refuse("invalid_grant", "the assertion is not a JWT".into());
    }
    let decode = |seg: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seg.trim_end_matches('='))
    };
    let (Ok(header), Ok(payload), Ok(signature)) = (
        decode(segments[0]),
        decode(segments[1]),
        decode(segments[2]),
    ) else {
        return refuse("invalid_grant", "the assertion is not base64url".into());
    };
    let header: Value = serde_json::from_slice(&header).unwrap_or(Value::Null);
    let claims: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
    if header["alg"] != "RS256" {
        return refuse(
            "invalid_grant",
            format!("unsupported alg {}", header["alg"]),
        );
    }
    let issuer = claims["iss"].as_str().unwrap_or_default().to_owned();
    let Some(pem) = emu.lock().public_keys.get(&issuer).cloned() else {
        return refuse(
            "invalid_grant",
            format!("unknown service account `{issuer}`"),
        );
    };
    let verified = {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::signature::Verifier;
        rsa::RsaPublicKey::from_public_key_pem(&pem)
            .ok()
            .is_some_and(|key| {
                let verifier = rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(key);
                let signing_input = format!("{}.{}", segments[0], segments[1]);
                rsa::pkcs1v15::Signature::try_from(signature.as_slice())
                    .is_ok_and(|sig| verifier.verify(signing_input.as_bytes(), &sig).is_ok())
            })
    };
    if !verified {
        return refuse("invalid_grant", "invalid JWT signature".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return refuse("invalid_grant", "iat and exp are required".into());
    };
    if exp <= now || iat > now + 60 || exp - iat > 3600 {
        return refuse(
            "invalid_grant",
            "the assertion is expired or not yet valid".into(),
        );
    }
    if claims["scope"].as_str().is_none_or(str::is_empty) {
        return refuse("invalid_scope", "the assertion names no scope".into());
    }
    let token = format!("ya29.test-{}", hex_string(&random::<16>()));
    emu.lock().tokens.insert(token.clone());
    ok(json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
}
