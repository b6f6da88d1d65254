//! The codec server's HTTP contract: routing, status codes, CORS as the Web UI sends it,
//! static tokens, every JWT failure mode against a real JWKS endpoint, authorization per
//! namespace and operation, audit log, metrics, readiness, KMS timeouts.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sealbox_policy::ReloadablePolicy;
use sealbox_server::{AppState, ServerConfig, app};
use serde_json::{Value, json};
use tower::ServiceExt;

mod cors;
mod faults;
mod hostile;
mod jwt;
mod limits;
mod ops;
mod permissions;
mod protocol;
mod storage;
mod storage_e2e;
mod temporal_e2e;
mod tls;
mod webui;

pub(crate) const ISSUER: &str = "https://idp.test";

pub(crate) const CLI_TOKEN: &str = "cli-token-0123456789abcdef";

pub(crate) const UI_ORIGIN: &str = "http://ui.example.test:8080";

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

pub(crate) fn rsa(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture(name)).expect("rsa key")
}

pub(crate) fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(&fixture("ec1.pem")).expect("ec key")
}

pub(crate) fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(key, alg).expect("jwk");
    j.common.key_id = Some(kid.to_owned());
    j
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn token(key: &EncodingKey, alg: Algorithm, kid: &str, claims: Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, &claims, key).expect("sign")
}

pub(crate) fn claims(sub: &str, extra: Value) -> Value {
    let mut c =
        json!({"sub": sub, "iss": ISSUER, "aud": "sealbox", "exp": now() + 300, "iat": now()});
    if let (Some(c), Value::Object(e)) = (c.as_object_mut(), extra) {
        c.extend(e);
    }
    c
}

pub(crate) struct Fx {
    app: Router,
    jwks: Arc<Mutex<JwkSet>>,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _jwks_task: tokio::task::JoinHandle<()>,
}

pub(crate) async fn jwks_server(set: Arc<Mutex<JwkSet>>) -> (String, tokio::task::JoinHandle<()>) {
    let router = Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let set = set.clone();
            async move {
                let body = serde_json::to_string(&*set.lock().expect("lock")).expect("json");
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/jwks"), task)
}

/// The server state from the policy file `path`, written with `text` first: the policy and
/// its `[server]` settings.
pub(crate) async fn state_from(path: &std::path::Path, text: &str) -> Arc<AppState> {
    std::fs::write(path, text).expect("policy");
    let policy = Arc::new(ReloadablePolicy::load(path).await.expect("policy"));
    AppState::new(policy, ServerConfig::from_file(path).expect("cfg")).expect("state")
}

/// Serves `state` through the production listener (`sealbox_server::serve`: the peer's
/// address, header timeout and size limits) on a free loopback port, in the background; its
/// URL, `http://127.0.0.1:PORT`.
pub(crate) async fn serve_on_loopback(state: Arc<AppState>) -> String {
    let server = sealbox_server::serve(state, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("listen");
    format!("http://{}", server.addr)
}

pub(crate) async fn fixture_app(extra_server: &str, use_id_token: bool) -> Fx {
    fixture_with(extra_server, &format!("use_id_token = {use_id_token}")).await
}

pub(crate) async fn fixture_with(extra_server: &str, extra_jwt: &str) -> Fx {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("kek");
    sealbox_testkit::write_secret_file(&key, &B64.encode([5u8; 32]));
    let token_file = dir.path().join("cli-token");
    std::fs::write(&token_file, CLI_TOKEN).expect("token");
    let audit = dir.path().join("audit.jsonl");
    let jwks = Arc::new(Mutex::new(JwkSet {
        keys: vec![
            jwk(&rsa("rsa1.pem"), Algorithm::RS256, "rsa1"),
            jwk(&ec(), Algorithm::ES256, "ec1"),
        ],
    }));
    let (jwks_url, task) = jwks_server(jwks.clone()).await;
    let text = format!(
        r#"version = 1
[default]
active = "local:///t?file={key}"
[default.access]
roles = ["support"]

[[rule]]
namespace = "payments"
active = "local:///t?file={key}"
[rule.access]
subjects = ["alice"]
encode_subjects = ["alice"]

[server]
cors_origins = ["{UI_ORIGIN}"]
max_body = "64KiB"
audit_log = "{audit}"
{extra_server}

[[server.token]]
name = "cli"
token_file = "{token}"
namespaces = ["team-*"]
permissions = ["decode"]

[server.jwt]
jwks_urls = ["{jwks_url}"]
issuer = "{ISSUER}"
audience = ["sealbox"]
jwks_min_refresh = "0s"
id_token_audience = ["web-ui"]
{extra_jwt}
"#,
        key = key.display(),
        audit = audit.display(),
        token = token_file.display(),
    );
    let state = state_from(&dir.path().join("policy.toml"), &text).await;
    Fx {
        app: app(state),
        jwks,
        audit,
        _dir: dir,
        _jwks_task: task,
    }
}

pub(crate) struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The answer has `status` (else the test fails showing the body).
    #[track_caller]
    fn assert_status(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.body);
    }

    /// The answer has `status` and its body says `says`.
    #[track_caller]
    fn assert_says(&self, status: StatusCode, says: &str) {
        self.assert_status(status);
        assert!(self.body.contains(says), "{}", self.body);
    }
}

pub(crate) async fn call(
    app: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `POST path` with `headers` and `body`.
pub(crate) async fn post(app: &Router, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    call(app, Method::POST, path, headers, body).await
}

/// `POST path` with `headers` and `body`: the answer's status.
pub(crate) async fn post_status(
    app: &Router,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> StatusCode {
    post(app, path, headers, body).await.status
}

/// `GET path`, without headers or body.
pub(crate) async fn get(app: &Router, path: &str) -> Resp {
    call(app, Method::GET, path, &[], "").await
}

/// The headers of a request made with the credentials `auth` (an Authorization value) for
/// `namespace`.
pub(crate) fn auth_in<'a>(auth: &'a str, namespace: &'a str) -> [(&'static str, &'a str); 2] {
    [("authorization", auth), ("x-namespace", namespace)]
}

/// A request body holding `payloads`.
pub(crate) fn payloads_body(payloads: &[&Value]) -> String {
    json!({ "payloads": payloads }).to_string()
}

pub(crate) fn plain(data: &str) -> Value {
    json!({"metadata": {"encoding": B64.encode("json/plain")}, "data": B64.encode(data)})
}

pub(crate) fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

pub(crate) fn alice() -> String {
    token(
        &rsa("rsa1.pem"),
        Algorithm::RS256,
        "rsa1",
        claims("alice", json!({})),
    )
}

pub(crate) fn jwt_as(sub: &str, extra: Value) -> String {
    token(
        &rsa("rsa1.pem"),
        Algorithm::RS256,
        "rsa1",
        claims(sub, extra),
    )
}

pub(crate) async fn decode_status(app: &Router, headers: &[(&str, &str)], ns: &str) -> Resp {
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    h.push(("x-namespace", ns));
    call(
        app,
        Method::POST,
        "/decode",
        &h,
        &json!({"payloads": []}).to_string(),
    )
    .await
}

/// A policy over `bao`'s transit key `key` (its token policy, then `policy`) whose `[server]`
/// allows anonymous encode and decode, adds `server`, and keeps its audit log in `dir`.
pub(crate) fn bao_policy_text(
    bao: &sealbox_testkit::servers::OpenBao,
    dir: &std::path::Path,
    key: &str,
    policy: &str,
    server: &str,
) -> String {
    format!(
        "{}{policy}[server]\nanonymous = [\"encode\", \"decode\"]\n{server}audit_log = \"{}\"\n",
        bao.token_policy(dir, key),
        dir.join("audit").display()
    )
}

/// A policy whose leases hold one payload each, so every sealed payload has its own data key.
pub(crate) async fn one_key_per_payload_app(
    dir: &std::path::Path,
    server: &str,
) -> (Router, Arc<AppState>) {
    let key = dir.join("kek");
    if !key.exists() {
        sealbox_testkit::write_secret_file(&key, &B64.encode([3u8; 32]));
    }
    let text = format!(
        "version = 1\n[default]\nactive = \"local:///q?file={}\"\n[default.lease]\nmax_payloads = 1\n[server]\nanonymous = [\"encode\", \"decode\"]\naudit_log = \"{}\"\n{server}\n",
        key.display(),
        dir.join("audit").display()
    );
    let state = state_from(&dir.join(format!("p{}.toml", server.len())), &text).await;
    (app(state.clone()), state)
}
