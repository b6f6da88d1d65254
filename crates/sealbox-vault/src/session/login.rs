//! Logging in (AppRole, Kubernetes) and the login requests, whose bodies are zeroized.

use std::path::Path;
use std::time::Duration;

use sealbox_core::{ProviderError, ProviderErrorKind};
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::LeaseTiming;
use super::request::JsonRequest;
use super::transport::{Transport, token_is_sendable};
use crate::error::map_error;
use crate::{PROVIDER_ID, VaultAuth};

/// How to log in again: an AppRole or Kubernetes [`VaultAuth`] (token auth cannot).
pub(crate) struct Login(VaultAuth);

impl Login {
    /// The login of `auth`, or `auth` back when it is token auth, which cannot log in.
    pub(crate) fn new(auth: VaultAuth) -> Result<Self, VaultAuth> {
        match auth {
            VaultAuth::AppRole { .. } | VaultAuth::Kubernetes { .. } => Ok(Self(auth)),
            VaultAuth::Token(_) | VaultAuth::TokenFromEnv => Err(auth),
        }
    }

    pub(crate) fn operation(&self) -> &'static str {
        match self.0 {
            VaultAuth::Kubernetes { .. } => "Kubernetes login",
            _ => "AppRole login",
        }
    }

    /// Logs in; returns the new token and its lease.
    pub(super) async fn login(
        &self,
        transport: &Transport,
        key_id: &str,
    ) -> Result<(Zeroizing<String>, LeaseTiming), ProviderError> {
        let anonymous = transport.client("");
        let endpoint = match &self.0 {
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => login_request(
                mount,
                &AppRoleBody {
                    role_id,
                    secret_id: secret_id.expose_secret(),
                },
            )
            .map_err(|e| ProviderError::new(PROVIDER_ID, key_id, ProviderErrorKind::Protocol, e))?,
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_path,
            } => kubernetes_login_request(mount, role, jwt_path).map_err(|e| {
                ProviderError::new(PROVIDER_ID, key_id, ProviderErrorKind::Misconfigured, e)
            })?,
            VaultAuth::Token(_) | VaultAuth::TokenFromEnv => {
                return Err(ProviderError::new(
                    PROVIDER_ID,
                    key_id,
                    ProviderErrorKind::Misconfigured,
                    "token auth cannot log in",
                ));
            }
        };
        let result = vaultrs::api::auth(&anonymous.0, endpoint).await;
        let auth = result.map_err(|e| map_error(key_id, self.operation(), e))?;
        let token = Zeroizing::new(auth.client_token);
        if token.is_empty() || !token_is_sendable(&token) {
            return Err(ProviderError::new(
                PROVIDER_ID,
                key_id,
                ProviderErrorKind::Protocol,
                format!("{}: Vault returned an unusable token", self.operation()),
            ));
        }
        let ttl = Duration::from_secs(auth.lease_duration);
        Ok((
            token,
            LeaseTiming {
                ttl,
                base_ttl: ttl,
                renewable: auth.renewable,
                capped: false,
            },
        ))
    }
}

/// `POST auth/<mount>/login` with a JSON body holding a credential; the body is zeroized when
/// the request is dropped (vaultrs's own login requests keep the secret in a plain `String`).
pub(crate) type LoginRequest = JsonRequest<()>;

fn login_request(mount: &str, body: &impl serde::Serialize) -> Result<LoginRequest, String> {
    let body = serde_json::to_vec(body)
        .map(Zeroizing::new)
        .map_err(|e| format!("cannot encode the login request: {e}"))?;
    Ok(JsonRequest::post(
        format!("auth/{}/login", mount.trim_matches('/')),
        Some(body),
    ))
}

#[derive(serde::Serialize)]
struct AppRoleBody<'a> {
    role_id: &'a str,
    secret_id: &'a str,
}

#[derive(serde::Serialize)]
struct KubernetesBody<'a> {
    role: &'a str,
    jwt: &'a str,
}

/// The Kubernetes login request, with the service-account JWT read from `jwt_path` **now**:
/// Kubernetes rotates projected tokens, so every login attempt reads the file again.
pub(crate) fn kubernetes_login_request(
    mount: &str,
    role: &str,
    jwt_path: &Path,
) -> Result<LoginRequest, String> {
    let text = Zeroizing::new(std::fs::read_to_string(jwt_path).map_err(|e| {
        format!(
            "cannot read the service-account token {}: {e}",
            jwt_path.display()
        )
    })?);
    let jwt = text.trim();
    if jwt.is_empty() {
        return Err(format!(
            "the service-account token {} is empty",
            jwt_path.display()
        ));
    }
    login_request(mount, &KubernetesBody { role, jwt })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_jwt_is_read_afresh_for_every_login() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first.jwt\n").expect("write");
        let body = |req: &LoginRequest| -> serde_json::Value {
            serde_json::from_slice(req.body.as_deref().expect("a body")).expect("JSON body")
        };
        let req = kubernetes_login_request("kubernetes", "sealbox", &path).expect("request");
        assert_eq!(req.path, "auth/kubernetes/login");
        assert_eq!(
            body(&req),
            serde_json::json!({ "role": "sealbox", "jwt": "first.jwt" })
        );
        // The kubelet rotates the projected token: the next login sends the new one.
        std::fs::write(&path, "second.jwt").expect("rewrite");
        let req = kubernetes_login_request("kubernetes", "sealbox", &path).expect("request");
        assert_eq!(body(&req)["jwt"], "second.jwt");
        // A vanished or empty file is a clear error, naming the path but no token.
        std::fs::write(&path, " \n").expect("empty");
        let err = kubernetes_login_request("kubernetes", "sealbox", &path).expect_err("empty");
        assert!(err.contains("is empty"), "{err}");
        std::fs::remove_file(&path).expect("remove");
        let err = kubernetes_login_request("kubernetes", "sealbox", &path).expect_err("missing");
        assert!(
            err.contains("cannot read the service-account token") && err.contains("token"),
            "{err}"
        );
    }
}
