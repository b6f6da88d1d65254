//! Who is calling: static bearer tokens, JWTs verified against JWKS, or anonymous.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use globset::{Glob, GlobSet, GlobSetBuilder};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::Digest;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::config::{JwtConfig, Permission, ServerConfig, TokenConfig};

/// Permissions on some namespaces: all of them (anonymous access), one exact name (a JWT's
/// Temporal permission claim), or those a glob set matches (a static token's patterns,
/// compiled once when the settings load — compiling one is ≈ 17 µs, too much per request).
#[derive(Debug, Clone)]
pub struct Grant {
    namespaces: Namespaces,
    permissions: Vec<Permission>,
}

#[derive(Debug, Clone)]
enum Namespaces {
    Any,
    Exact(String),
    Globs(Arc<GlobSet>),
}

impl Grant {
    fn new(patterns: &[String], permissions: Vec<Permission>) -> Self {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            if let Ok(g) = Glob::new(p) {
                b.add(g);
            }
        }
        Self {
            namespaces: Namespaces::Globs(Arc::new(b.build().unwrap_or_else(|_| GlobSet::empty()))),
            permissions,
        }
    }

    fn any(permissions: Vec<Permission>) -> Self {
        Self {
            namespaces: Namespaces::Any,
            permissions,
        }
    }

    fn exact(namespace: String, permissions: Vec<Permission>) -> Self {
        Self {
            namespaces: Namespaces::Exact(namespace),
            permissions,
        }
    }

    fn allows(&self, namespace: &str, p: Permission) -> bool {
        self.permissions.contains(&p)
            && match &self.namespaces {
                Namespaces::Any => true,
                Namespaces::Exact(n) => n == namespace,
                Namespaces::Globs(g) => g.is_match(namespace),
            }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `anonymous`, `token:NAME`, or the JWT's subject.
    pub subject: String,
    /// Roles from the JWT (matched against the policy's `access`).
    pub roles: Vec<String>,
    /// Direct grants (static tokens, anonymous, Temporal permission claims).
    pub grants: Vec<Grant>,
}

impl Principal {
    /// Whether the caller may do `p` in `namespace` under `access` (the namespace's policy).
    pub fn allows(
        &self,
        namespace: &str,
        p: Permission,
        access: &sealbox_policy::config::Access,
    ) -> bool {
        if self.grants.iter().any(|g| g.allows(namespace, p)) {
            return true;
        }
        let (roles, subjects) = match p {
            Permission::Decode => (&access.roles, &access.subjects),
            Permission::Encode => (&access.encode_roles, &access.encode_subjects),
        };
        subjects.contains(&self.subject) || self.roles.iter().any(|r| roles.contains(r))
    }
}

/// Why a request was not authenticated (HTTP 401).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials and no anonymous access.
    #[error("authentication required: send Authorization: Bearer <token>")]
    Missing,
    /// Credentials were presented and refused.
    #[error("invalid credentials: {0}")]
    Invalid(String),
}

type KeyMap = HashMap<String, (DecodingKey, Option<Algorithm>)>;

/// Verifies JWTs against JWKS endpoints; unknown `kid`s trigger a (rate-limited) refresh.
/// Readers never wait for the network: the key set is swapped in after a fetch, and only
/// concurrent refreshes wait for each other.
pub struct JwtVerifier {
    config: JwtConfig,
    http: reqwest::Client,
    keys: ArcSwap<KeyMap>,
    /// When the keys were last fetched; held across a fetch so refreshes are single-flight.
    refreshed: Mutex<Option<Instant>>,
}

impl JwtVerifier {
    fn new(config: JwtConfig) -> Self {
        Self {
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            keys: ArcSwap::from_pointee(HashMap::new()),
            refreshed: Mutex::new(None),
        }
    }

    async fn refresh(&self) -> Result<(), String> {
        let mut refreshed = self.refreshed.lock().await;
        if refreshed.is_some_and(|t| t.elapsed() < self.config.jwks_min_refresh) {
            return Ok(()); // another request just refreshed, or we refreshed too recently
        }
        let mut by_kid = HashMap::new();
        let mut errors = Vec::new();
        for url in &self.config.jwks_urls {
            let set: Result<JwkSet, String> = async {
                let resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP {}", resp.status()));
                }
                resp.json::<JwkSet>().await.map_err(|e| e.to_string())
            }
            .await;
            match set {
                Ok(set) => {
                    for jwk in &set.keys {
                        let Some(kid) = jwk.common.key_id.clone() else {
                            continue;
                        };
                        let alg = jwk
                            .common
                            .key_algorithm
                            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
                        if let Ok(key) = DecodingKey::from_jwk(jwk) {
                            by_kid.insert(kid, (key, alg));
                        }
                    }
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        *refreshed = Some(Instant::now());
        if by_kid.is_empty() && !errors.is_empty() {
            tracing::warn!("JWKS refresh failed: {}", errors.join("; "));
            return Err(format!("cannot fetch signing keys ({})", errors.join("; ")));
        }
        for e in &errors {
            tracing::warn!("JWKS refresh: {e}");
        }
        self.keys.store(Arc::new(by_kid));
        Ok(())
    }

    async fn key(&self, kid: &str) -> Option<(DecodingKey, Option<Algorithm>)> {
        if let Some(k) = self.keys.load().get(kid) {
            return Some(k.clone());
        }
        let _ = self.refresh().await;
        self.keys.load().get(kid).cloned()
    }

    /// Verifies `token` — signature, `exp`, `nbf`, and the configured `iss` and one of
    /// `audience` (all three claims required) — and returns its claims.
    pub async fn verify(
        &self,
        token: &str,
        audience: &[String],
    ) -> Result<serde_json::Map<String, Value>, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let kid = header.kid.ok_or("the token has no key id (kid)")?;
        let (key, jwk_alg) = self
            .key(&kid)
            .await
            .ok_or_else(|| format!("unknown signing key `{}`", kid.escape_debug()))?;
        if jwk_alg.is_some_and(|a| a != header.alg) {
            return Err(format!(
                "key `{}` is not for algorithm {:?}",
                kid.escape_debug(),
                header.alg
            ));
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.config.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        // jsonwebtoken checks `iss`/`aud` only when the token carries them: require them.
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(audience);
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &v)
            .map_err(|e| format!("token rejected: {e}"))?;
        Ok(data.claims)
    }

    /// The caller an access token (and, with `use_id_token`, its ID token) names. Identity
    /// and roles come from one token: the ID token when it is used (its subject must equal
    /// the access token's), else the access token. Temporal permission claims come from the
    /// access token, and only when `use_permissions_claim` is on.
    fn principal(
        &self,
        access: &serde_json::Map<String, Value>,
        id: Option<&serde_json::Map<String, Value>>,
    ) -> Result<Principal, String> {
        let subject_of = |claims: &serde_json::Map<String, Value>| {
            claims
                .get(&self.config.subject_claim)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let subject = subject_of(access).ok_or_else(|| {
            format!(
                "the token has no `{}` claim naming the caller",
                self.config.subject_claim
            )
        })?;
        let from = match id {
            Some(id) => {
                if subject_of(id).as_deref() != Some(subject.as_str()) {
                    return Err(format!(
                        "ID token: its `{}` is not the access token's (the two tokens must \
                         name the same user)",
                        self.config.subject_claim
                    ));
                }
                id
            }
            None => access,
        };
        let roles = strings(from.get(&self.config.roles_claim));
        let grants = if self.config.use_permissions_claim {
            temporal_permissions(access.get(&self.config.permissions_claim))
        } else {
            Vec::new()
        };
        Ok(Principal {
            subject,
            roles,
            grants,
        })
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Temporal's permission claims: `["<ns>:read", "<ns>:write"]` (the server's default claim
/// mapper) or `{"<ns>": "<permission>"}` / `{"<ns>": ["<permission>", …]}` (Temporal Cloud).
/// `read` grants decode; `write`, `worker`, `admin` and `namespaceadmin` grant both.
fn temporal_permissions(v: Option<&Value>) -> Vec<Grant> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    match v {
        Some(Value::Array(a)) => {
            for s in a.iter().filter_map(Value::as_str) {
                if let Some((ns, p)) = s.rsplit_once(':') {
                    pairs.push((ns.to_owned(), p.to_owned()));
                }
            }
        }
        Some(Value::Object(m)) => {
            for (ns, p) in m {
                for p in strings(Some(p)) {
                    pairs.push((ns.clone(), p));
                }
            }
        }
        _ => {}
    }
    pairs
        .into_iter()
        .filter_map(|(ns, p)| {
            let perms = match p.to_ascii_lowercase().as_str() {
                "read" | "reader" => vec![Permission::Decode],
                "write" | "writer" | "worker" | "admin" | "namespaceadmin" => {
                    vec![Permission::Decode, Permission::Encode]
                }
                _ => return None,
            };
            // A literal namespace name, not a pattern.
            Some(Grant::exact(ns, perms))
        })
        .collect()
}

/// Authenticates requests.
pub struct Authenticator {
    tokens: Vec<(TokenConfig, Grant)>,
    /// What anonymous callers may do (`None`: anonymous access is off).
    anonymous: Option<Grant>,
    jwt: Option<JwtVerifier>,
}

impl Authenticator {
    /// From the server's settings.
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            tokens: config
                .tokens
                .iter()
                .map(|t| (t.clone(), Grant::new(&t.namespaces, t.permissions.clone())))
                .collect(),
            anonymous: (!config.anonymous.is_empty()).then(|| Grant::any(config.anonymous.clone())),
            jwt: config.jwt.clone().map(JwtVerifier::new),
        }
    }

    /// Fetches the JWKS once (at start-up); failures are logged and retried on demand.
    pub async fn warm_up(&self) {
        if let Some(j) = &self.jwt
            && let Err(e) = j.refresh().await
        {
            tracing::warn!("JWKS not reachable at start-up (will retry on demand): {e}");
        }
    }

    /// Who sent `headers`.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            let Some(anonymous) = &self.anonymous else {
                return Err(AuthError::Missing);
            };
            return Ok(Principal {
                subject: "anonymous".into(),
                roles: Vec::new(),
                grants: vec![anonymous.clone()],
            });
        };
        let value = value
            .to_str()
            .map_err(|_| AuthError::Invalid("Authorization is not ASCII".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::Invalid("expected `Authorization: Bearer <token>`".into()))?
            .trim();
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&(TokenConfig, Grant)> = None;
        for t in &self.tokens {
            if bool::from(t.0.sha256.ct_eq(&digest)) {
                found = Some(t);
            }
        }
        if let Some((t, grant)) = found {
            return Ok(Principal {
                subject: format!("token:{}", t.name),
                roles: Vec::new(),
                grants: vec![grant.clone()],
            });
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::Invalid("unknown token".into()));
        };
        let claims = jwt
            .verify(token, &jwt.config.audience)
            .await
            .map_err(AuthError::Invalid)?;
        let id_claims = if jwt.config.use_id_token {
            let extras = headers
                .get("authorization-extras")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    AuthError::Invalid("the ID token (Authorization-Extras) is required".into())
                })?;
            let id = extras.strip_prefix("Bearer ").unwrap_or(extras).trim();
            Some(
                jwt.verify(id, &jwt.config.id_token_audience)
                    .await
                    .map_err(|e| AuthError::Invalid(format!("ID token: {e}")))?,
            )
        } else {
            None
        };
        jwt.principal(&claims, id_claims.as_ref())
            .map_err(AuthError::Invalid)
    }
}
