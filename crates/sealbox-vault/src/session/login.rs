//! Logging in (AppRole, Kubernetes) and the login requests, whose bodies are zeroized.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sealbox_core::{ProviderError, ProviderErrorKind};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::LeaseTiming;
use super::transport::{Transport, token_is_sendable};
use crate::PROVIDER_ID;
use crate::error::map_error;

/// How to log in again (token auth cannot).
pub(crate) enum Login {
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretString,
    },
    Kubernetes {
        mount: String,
        role: String,
        jwt_path: PathBuf,
    },
}

impl Login {
    pub(crate) fn operation(&self) -> &'static str {
        match self {
            Login::AppRole { .. } => "AppRole login",
            Login::Kubernetes { .. } => "Kubernetes login",
        }
    }

    /// Logs in; returns the new token and its lease.
    pub(super) async fn login(
        &self,
        transport: &Transport,
        key_id: &str,
    ) -> Result<(Zeroizing<String>, LeaseTiming), ProviderError> {
        let anonymous = transport.client("");
        let result = match self {
            Login::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let endpoint = LoginRequest::new(
                    mount,
                    &AppRoleBody {
                        role_id,
                        secret_id: secret_id.expose_secret(),
                    },
                )
                .map_err(|e| {
                    ProviderError::new(PROVIDER_ID, key_id, ProviderErrorKind::Protocol, e)
                })?;
                vaultrs::api::auth(&anonymous.0, endpoint).await
            }
            Login::Kubernetes {
                mount,
                role,
                jwt_path,
            } => {
                let endpoint = kubernetes_login_request(mount, role, jwt_path).map_err(|e| {
                    ProviderError::new(PROVIDER_ID, key_id, ProviderErrorKind::Misconfigured, e)
                })?;
                vaultrs::api::auth(&anonymous.0, endpoint).await
            }
        };
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
pub(crate) struct LoginRequest {
    path: String,
    body: Zeroizing<Vec<u8>>,
}

impl LoginRequest {
    fn new(mount: &str, body: &impl serde::Serialize) -> Result<Self, String> {
        let body = serde_json::to_vec(body)
            .map(Zeroizing::new)
            .map_err(|e| format!("cannot encode the login request: {e}"))?;
        Ok(Self {
            path: format!("auth/{}/login", mount.trim_matches('/')),
            body,
        })
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("path", &self.path)
            .field("body", &"<redacted>")
            .finish()
    }
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

#[async_trait]
impl rustify::Endpoint for LoginRequest {
    type Response = ();
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::POST
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(Some(self.body.to_vec()))
    }
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
    LoginRequest::new(mount, &KubernetesBody { role, jwt })
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
            serde_json::from_slice(&req.body).expect("JSON body")
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
