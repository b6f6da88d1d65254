//! The `[server]` section of a key-policy file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why the server's configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("{file}: [server]: {message}")]
pub struct ConfigError {
    /// The policy file.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    #[serde(default)]
    anonymous: Vec<String>,
    max_body: Option<String>,
    kms_timeout: Option<String>,
    request_timeout: Option<String>,
    header_timeout: Option<String>,
    #[serde(default)]
    cors_origins: Vec<String>,
    audit_log: Option<String>,
    rate_limit: Option<u32>,
    max_auth_failures: Option<u32>,
    max_unwraps_per_request: Option<u32>,
    kms_rate_limit: Option<u32>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    readyz_detail: Option<bool>,
    path_namespace: Option<bool>,
    metrics: Option<String>,
    #[serde(default)]
    token: Vec<RawToken>,
    jwt: Option<RawJwt>,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    token_env: Option<String>,
    token_file: Option<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    #[serde(default)]
    jwks_urls: Vec<String>,
    issuer: Option<String>,
    #[serde(default)]
    audience: Vec<String>,
    #[serde(default)]
    algorithms: Vec<String>,
    subject_claim: Option<String>,
    roles_claim: Option<String>,
    permissions_claim: Option<String>,
    #[serde(default)]
    use_id_token: bool,
    #[serde(default)]
    id_token_audience: Vec<String>,
    #[serde(default)]
    use_permissions_claim: bool,
    jwks_min_refresh: Option<String>,
    leeway: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
    client_ca: Option<String>,
}

/// An operation a caller may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `POST …/encode`.
    Encode,
    /// `POST …/decode` (and `/download`).
    Decode,
}

impl Permission {
    /// `encode` / `decode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Encode => "encode",
            Permission::Decode => "decode",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "encode" => Some(Permission::Encode),
            "decode" => Some(Permission::Decode),
            _ => None,
        }
    }
}

/// A static bearer token (for the CLI and worker-to-server calls).
#[derive(Clone)]
pub struct TokenConfig {
    /// Its name, used as the audit subject (`token:NAME`).
    pub name: String,
    /// SHA-256 of the token (the token itself is not kept).
    pub sha256: [u8; 32],
    /// Namespace globs it is valid for (`*` = all).
    pub namespaces: Vec<String>,
    /// What it may do.
    pub permissions: Vec<Permission>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The digest is not the token, but it is enough to test guesses offline: not printed.
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("sha256", &"<redacted>")
            .field("namespaces", &self.namespaces)
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Anyone who can reach the listener (the default: Prometheus scrapers).
    Public,
    /// Callers with a valid credential (any static token or JWT the server accepts).
    Authenticated,
    /// Not served (404).
    Off,
}

/// JWT verification against JWKS endpoints.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// JWKS URLs (HTTPS, or HTTP on loopback for tests).
    pub jwks_urls: Vec<String>,
    /// Required `iss` (mandatory: a token without it, or with another, is refused).
    pub issuer: String,
    /// Accepted `aud` values, one of which the token must carry (mandatory: a token without
    /// `aud` is refused).
    pub audience: Vec<String>,
    /// Accepted algorithms (asymmetric only; default RS256 and ES256).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Claim naming the caller (default `sub`).
    pub subject_claim: String,
    /// Claim with the caller's roles (default `roles`), matched against the policy's `access`.
    pub roles_claim: String,
    /// Claim with per-namespace permissions (default `permissions`): Temporal's
    /// `["<ns>:read", "<ns>:write", …]` or Temporal Cloud's `{"<ns>": "<permission>"}`.
    pub permissions_claim: String,
    /// Whether the permissions claim grants decode/encode (default `false`: only the policy's
    /// `access` does). Off by default because many claim mappers give `<ns>:read` to every
    /// developer so they can read histories, and reading a history must not imply reading
    /// its payloads.
    pub use_permissions_claim: bool,
    /// Also verify the ID token in `Authorization-Extras` and take the roles from it.
    pub use_id_token: bool,
    /// Accepted `aud` values of the ID token (required with `use_id_token`; usually the Web
    /// UI's client ID). The ID token must also have the same issuer and subject as the
    /// access token.
    pub id_token_audience: Vec<String>,
    /// Minimum time between JWKS refreshes triggered by an unknown `kid`.
    pub jwks_min_refresh: Duration,
    /// Clock skew allowed for `exp` / `nbf`.
    pub leeway: Duration,
}

/// TLS settings (rustls).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle: when set, clients must present a certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// The codec server's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where to listen (default `127.0.0.1:8089`).
    pub listen: SocketAddr,
    /// Permissions granted without credentials (only for development configs).
    pub anonymous: Vec<Permission>,
    /// Largest request body accepted.
    pub max_body: usize,
    /// Limit on the KMS work of one request.
    pub kms_timeout: Duration,
    /// Limit on a whole request.
    pub request_timeout: Duration,
    /// Limit on receiving a request's headers (HTTP/1): a client that sends them slower
    /// (slow-loris) is disconnected. Default 10 s. A listener setting: kept on reload.
    pub header_timeout: Duration,
    /// Web UI origins allowed to call (CORS), exact `scheme://host[:port]`.
    pub cors_origins: Vec<String>,
    /// Audit log: `stderr`, `stdout` or a file path (appended).
    pub audit_log: String,
    /// Requests per second per client (subject, else IP address); 0 = unlimited.
    pub rate_limit: u32,
    /// Failed authentications per minute per client IP address before it gets 429 for the
    /// rest of the minute; 0 = unlimited. Default 60.
    pub max_auth_failures: u32,
    /// Most distinct data keys one `/decode` may need unwrapped by the KMS (cached ones are
    /// free); more is 429. Default 1000.
    pub max_unwraps_per_request: u32,
    /// KMS calls per second per client (unwraps a decode needs, a new data-key lease an
    /// encode needs), counted before the work is done; 0 = unlimited (the default).
    pub kms_rate_limit: u32,
    /// Extra `Host` names accepted while anonymous access is on (besides `localhost` and
    /// loopback addresses).
    pub allowed_hosts: Vec<String>,
    /// Whether `/readyz` answers with the KMS errors (default `false`: they go to the log).
    pub readyz_detail: bool,
    /// Whether the route shape is `/{namespace}/decode`: the namespace is the path segment
    /// before the operation, and an `X-Namespace` that disagrees is refused (400), so an
    /// ingress that authorizes by path cannot be bypassed by the header. Default `false`:
    /// the namespace comes from `X-Namespace` only, and a prefix such as `/codec/decode` is
    /// never taken for a namespace.
    pub path_namespace: bool,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// Static bearer tokens.
    pub tokens: Vec<TokenConfig>,
    /// JWT verification.
    pub jwt: Option<JwtConfig>,
    /// TLS.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8089)),
            anonymous: Vec::new(),
            max_body: 8 * 1024 * 1024,
            kms_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            cors_origins: Vec::new(),
            audit_log: "stderr".into(),
            rate_limit: 0,
            max_auth_failures: 60,
            max_unwraps_per_request: 1000,
            kms_rate_limit: 0,
            allowed_hosts: Vec::new(),
            readyz_detail: false,
            path_namespace: false,
            metrics: MetricsAccess::Public,
            tokens: Vec::new(),
            jwt: None,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Reads the `[server]` section of the policy file at `path` (defaults if absent).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::from_toml(&text, &file)
    }

    /// Reads the `[server]` section of policy text.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            file: file.to_owned(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let raw: RawServer = match table.get("server") {
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| err(e.message().to_owned()))?,
            None => RawServer::default(),
        };
        let mut problems = Vec::new();
        let mut c = ServerConfig::default();
        if let Some(l) = raw.listen {
            match l.parse() {
                Ok(a) => c.listen = a,
                Err(_) => problems.push(format!("listen: `{l}` is not an IP:PORT address")),
            }
        }
        c.anonymous = perms(&raw.anonymous, "anonymous", &mut problems);
        if let Some(b) = raw.max_body {
            match b.parse::<bytesize::ByteSize>() {
                Ok(v) if v.as_u64() > 0 => {
                    c.max_body = usize::try_from(v.as_u64()).unwrap_or(usize::MAX)
                }
                _ => problems.push(format!("max_body: `{b}` is not a size like \"8MiB\"")),
            }
        }
        for (field, value, slot) in [
            ("kms_timeout", raw.kms_timeout, &mut c.kms_timeout),
            (
                "request_timeout",
                raw.request_timeout,
                &mut c.request_timeout,
            ),
            ("header_timeout", raw.header_timeout, &mut c.header_timeout),
        ] {
            if let Some(v) = value {
                match humantime::parse_duration(&v) {
                    Ok(d) if !d.is_zero() => *slot = d,
                    _ => problems.push(format!("{field}: `{v}` is not a duration like \"10s\"")),
                }
            }
        }
        for o in &raw.cors_origins {
            if !(o.starts_with("http://") || o.starts_with("https://"))
                || o.ends_with('/')
                || o == "*"
            {
                problems.push(format!(
                    "cors_origins: `{o}` must be an exact origin like \"https://ui.example.com\" (no path, no wildcard)"
                ));
            }
        }
        c.cors_origins = raw.cors_origins;
        if let Some(a) = raw.audit_log {
            c.audit_log = a;
        }
        c.rate_limit = raw.rate_limit.unwrap_or(0);
        if let Some(n) = raw.max_auth_failures {
            c.max_auth_failures = n;
        }
        match raw.max_unwraps_per_request {
            Some(0) => problems.push(
                "max_unwraps_per_request: must be at least 1 (a decode of one sealed payload \
                 needs one)"
                    .into(),
            ),
            Some(n) => c.max_unwraps_per_request = n,
            None => {}
        }
        c.kms_rate_limit = raw.kms_rate_limit.unwrap_or(0);
        for h in &raw.allowed_hosts {
            if h.is_empty() || h.contains(['/', ' ', '@']) {
                problems.push(format!("allowed_hosts: `{h}` is not a host name"));
            }
        }
        c.allowed_hosts = raw.allowed_hosts;
        c.readyz_detail = raw.readyz_detail.unwrap_or(false);
        c.path_namespace = raw.path_namespace.unwrap_or(false);
        c.metrics = match raw.metrics.as_deref() {
            None | Some("public") => MetricsAccess::Public,
            Some("authenticated") => MetricsAccess::Authenticated,
            Some("off") => MetricsAccess::Off,
            Some(other) => {
                problems.push(format!(
                    "metrics: `{other}` is not one of \"public\", \"authenticated\", \"off\""
                ));
                MetricsAccess::Public
            }
        };
        for t in raw.token {
            let secret = match (&t.token_env, &t.token_file) {
                (Some(var), None) => std::env::var(var).map_err(|_| {
                    format!("token `{}`: environment variable {var} is not set", t.name)
                }),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map_err(|e| format!("token `{}`: cannot read {path}: {e}", t.name)),
                _ => Err(format!(
                    "token `{}`: set exactly one of token_env or token_file",
                    t.name
                )),
            };
            let secret = match secret {
                Ok(s) => zeroize::Zeroizing::new(s.trim().to_owned()),
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            if secret.len() < 16 {
                problems.push(format!(
                    "token `{}`: must be at least 16 characters",
                    t.name
                ));
            }
            let namespaces = if t.namespaces.is_empty() {
                problems.push(format!(
                    "token `{}`: namespaces is required (use [\"*\"] for all)",
                    t.name
                ));
                Vec::new()
            } else {
                t.namespaces
            };
            for n in &namespaces {
                if globset::Glob::new(n).is_err() {
                    problems.push(format!("token `{}`: bad namespace pattern `{n}`", t.name));
                }
            }
            let permissions = perms(
                &t.permissions,
                &format!("token `{}`", t.name),
                &mut problems,
            );
            if permissions.is_empty() {
                problems.push(format!("token `{}`: permissions is required", t.name));
            }
            use sha2::Digest;
            c.tokens.push(TokenConfig {
                name: t.name,
                sha256: sha2::Sha256::digest(secret.as_bytes()).into(),
                namespaces,
                permissions,
            });
        }
        if let Some(j) = raw.jwt {
            let mut algorithms = Vec::new();
            let names = if j.algorithms.is_empty() {
                vec!["RS256".to_owned(), "ES256".to_owned()]
            } else {
                j.algorithms
            };
            for a in &names {
                match a.parse::<jsonwebtoken::Algorithm>() {
                    Ok(jsonwebtoken::Algorithm::HS256 | jsonwebtoken::Algorithm::HS384 | jsonwebtoken::Algorithm::HS512) | Err(_) => {
                        problems.push(format!(
                            "jwt.algorithms: `{a}` is not allowed (asymmetric only: RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
                        ))
                    }
                    Ok(alg) => algorithms.push(alg),
                }
            }
            if j.jwks_urls.is_empty() {
                problems.push("jwt.jwks_urls: at least one JWKS URL is required".into());
            }
            for u in &j.jwks_urls {
                if !jwks_url_ok(u) {
                    problems.push(format!(
                        "jwt.jwks_urls: `{u}` must be an https:// URL (plain http only on a loopback address)"
                    ));
                }
            }
            let dur = |v: Option<String>, d: Duration, f: &str, problems: &mut Vec<String>| match v
            {
                None => d,
                Some(s) => humantime::parse_duration(&s).unwrap_or_else(|_| {
                    problems.push(format!("jwt.{f}: `{s}` is not a duration"));
                    d
                }),
            };
            let issuer = j.issuer.filter(|i| !i.is_empty()).unwrap_or_else(|| {
                problems.push(
                    "jwt.issuer: required — tokens must name the identity provider that issued \
                     them (`iss`), or any issuer sharing the JWKS could sign in"
                        .into(),
                );
                String::new()
            });
            if j.audience.is_empty() || j.audience.iter().any(String::is_empty) {
                problems.push(
                    "jwt.audience: required — the `aud` values meant for this server (e.g. \
                     [\"sealbox\"]), or any application's token from the same identity \
                     provider would be accepted"
                        .into(),
                );
            }
            if j.use_id_token && j.id_token_audience.is_empty() {
                problems.push(
                    "jwt.id_token_audience: required with use_id_token — the `aud` of the ID \
                     tokens to accept (the Web UI's client ID)"
                        .into(),
                );
            }
            c.jwt = Some(JwtConfig {
                jwks_urls: j.jwks_urls,
                issuer,
                audience: j.audience,
                algorithms,
                subject_claim: j.subject_claim.unwrap_or_else(|| "sub".into()),
                roles_claim: j.roles_claim.unwrap_or_else(|| "roles".into()),
                permissions_claim: j.permissions_claim.unwrap_or_else(|| "permissions".into()),
                use_permissions_claim: j.use_permissions_claim,
                use_id_token: j.use_id_token,
                id_token_audience: j.id_token_audience,
                jwks_min_refresh: dur(
                    j.jwks_min_refresh,
                    Duration::from_secs(30),
                    "jwks_min_refresh",
                    &mut problems,
                ),
                leeway: dur(j.leeway, Duration::from_secs(30), "leeway", &mut problems),
            });
        }
        c.tls = raw.tls.map(|t| TlsConfig {
            cert: t.cert.into(),
            key: t.key.into(),
            client_ca: t.client_ca.map(Into::into),
        });
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(err(problems.join("; ")))
        }
    }

    /// Whether any credential is configured (tokens, JWT or client certificates).
    pub fn has_auth(&self) -> bool {
        !self.tokens.is_empty()
            || self.jwt.is_some()
            || self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }

    /// Refuses settings that are unsafe where the server listens: off loopback, it must
    /// require credentials (no anonymous access) and use TLS.
    pub fn check_exposure(&self) -> Result<(), String> {
        if self.listen.ip().is_loopback() {
            return Ok(());
        }
        let mut missing = Vec::new();
        if self.tls.is_none() {
            missing.push("TLS ([server.tls])");
        }
        if !self.has_auth() {
            missing.push("authentication ([server.jwt], [[server.token]] or mTLS)");
        }
        if !self.anonymous.is_empty() {
            missing.push("no anonymous access (remove [server].anonymous)");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "refusing to listen on non-loopback address {} without {}",
                self.listen,
                missing.join(", ")
            ))
        }
    }
}

/// `https://…`, or `http://` to a loopback host (127.0.0.0/8, ::1, `localhost`).
fn jwks_url_ok(u: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(u) else {
        return false;
    };
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => sealbox_core::transport::is_loopback_host(url.host()),
        _ => false,
    }
}

fn perms(names: &[String], field: &str, problems: &mut Vec<String>) -> Vec<Permission> {
    names
        .iter()
        .filter_map(|n| {
            let p = Permission::parse(n);
            if p.is_none() {
                problems.push(format!(
                    "{field}: unknown permission `{n}` (encode, decode)"
                ));
            }
            p
        })
        .collect()
}
