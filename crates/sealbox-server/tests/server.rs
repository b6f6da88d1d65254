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

const ISSUER: &str = "https://idp.test";
const CLI_TOKEN: &str = "cli-token-0123456789abcdef";
const UI_ORIGIN: &str = "http://ui.example.test:8080";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn rsa(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture(name)).expect("rsa key")
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(&fixture("ec1.pem")).expect("ec key")
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(key, alg).expect("jwk");
    j.common.key_id = Some(kid.to_owned());
    j
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn token(key: &EncodingKey, alg: Algorithm, kid: &str, claims: Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, &claims, key).expect("sign")
}

fn claims(sub: &str, extra: Value) -> Value {
    let mut c =
        json!({"sub": sub, "iss": ISSUER, "aud": "sealbox", "exp": now() + 300, "iat": now()});
    if let (Some(c), Value::Object(e)) = (c.as_object_mut(), extra) {
        c.extend(e);
    }
    c
}

struct Fx {
    app: Router,
    jwks: Arc<Mutex<JwkSet>>,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _jwks_task: tokio::task::JoinHandle<()>,
}

async fn jwks_server(set: Arc<Mutex<JwkSet>>) -> (String, tokio::task::JoinHandle<()>) {
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

async fn fixture_app(extra_server: &str, use_id_token: bool) -> Fx {
    fixture_with(extra_server, &format!("use_id_token = {use_id_token}")).await
}

async fn fixture_with(extra_server: &str, extra_jwt: &str) -> Fx {
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
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, &text).expect("policy");
    let config = ServerConfig::from_file(&path).expect("server config");
    let policy = Arc::new(ReloadablePolicy::load(&path).await.expect("policy"));
    let state = AppState::new(policy, config).expect("state");
    Fx {
        app: app(state),
        jwks,
        audit,
        _dir: dir,
        _jwks_task: task,
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn call(
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

fn plain(data: &str) -> Value {
    json!({"metadata": {"encoding": B64.encode("json/plain")}, "data": B64.encode(data)})
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn alice() -> String {
    token(
        &rsa("rsa1.pem"),
        Algorithm::RS256,
        "rsa1",
        claims("alice", json!({})),
    )
}

#[tokio::test]
async fn encode_then_decode_round_trips_in_order_under_any_prefix() {
    let fx = fixture_app("", false).await;
    let auth = bearer(&alice());
    let h = [
        ("authorization", auth.as_str()),
        ("x-namespace", "payments"),
        ("content-type", "application/json"),
    ];
    let body =
        json!({"payloads": [plain("\"one\""), plain("\"two\""), plain("\"three\"")]}).to_string();
    let enc = call(&fx.app, Method::POST, "/encode", &h, &body).await;
    assert_eq!(enc.status, StatusCode::OK, "{}", enc.body);
    assert_eq!(enc.headers["content-type"], "application/json");
    let sealed = enc.json();
    let list = sealed["payloads"].as_array().expect("payloads");
    assert_eq!(list.len(), 3);
    for p in list {
        assert_eq!(p["metadata"]["encoding"], B64.encode("binary/encrypted"));
        assert!(
            !B64.decode(p["data"].as_str().expect("data"))
                .expect("b64")
                .windows(3)
                .any(|w| w == b"one")
        );
    }
    // Mixed with a plain payload, decoded under several mount points; order and count kept.
    let mixed = json!({"payloads": [list[2], plain("\"plain\""), list[0], list[1]]}).to_string();
    for path in [
        "/decode",
        "//decode",
        "/payments/decode",
        "/codec/payments/decode?preserveStorageRefs=true",
    ] {
        let dec = call(&fx.app, Method::POST, path, &h, &mixed).await;
        assert_eq!(dec.status, StatusCode::OK, "{path}: {}", dec.body);
        let got: Vec<String> = dec.json()["payloads"]
            .as_array()
            .expect("payloads")
            .iter()
            .map(|p| {
                String::from_utf8(B64.decode(p["data"].as_str().expect("d")).expect("b64"))
                    .expect("utf8")
            })
            .collect();
        assert_eq!(
            got,
            ["\"three\"", "\"plain\"", "\"one\"", "\"two\""],
            "{path}"
        );
    }
    // Namespace from the path when there is no header.
    let h2 = [("authorization", auth.as_str())];
    let dec = call(&fx.app, Method::POST, "/payments/decode", &h2, &mixed).await;
    assert_eq!(dec.status, StatusCode::OK, "{}", dec.body);
}

#[tokio::test]
async fn protocol_errors_have_the_right_status_and_no_plaintext() {
    let fx = fixture_app("", false).await;
    let auth = bearer(&alice());
    let h = [
        ("authorization", auth.as_str()),
        ("x-namespace", "payments"),
    ];
    let ok = json!({"payloads": [plain("\"card 4111\"")]}).to_string();
    assert_eq!(
        call(&fx.app, Method::POST, "/nope", &h, &ok).await.status,
        StatusCode::NOT_FOUND
    );
    let get = call(&fx.app, Method::GET, "/decode", &h, "").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers["allow"], "POST, OPTIONS");
    let bad_json = call(&fx.app, Method::POST, "/decode", &h, "{not json").await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_json.json()["error"]
            .as_str()
            .expect("msg")
            .contains("invalid JSON")
    );
    let bad_b64 = call(
        &fx.app,
        Method::POST,
        "/decode",
        &h,
        r#"{"payloads":[{"data":"!!!"}]}"#,
    )
    .await;
    assert_eq!(bad_b64.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_b64.body.contains("payloads[0].data: invalid base64"),
        "{}",
        bad_b64.body
    );
    let no_ns = call(
        &fx.app,
        Method::POST,
        "/decode",
        &[("authorization", auth.as_str())],
        &ok,
    )
    .await;
    assert_eq!(no_ns.status, StatusCode::BAD_REQUEST);
    assert!(no_ns.body.contains("X-Namespace"));
    let big = "x".repeat(70 * 1024);
    assert_eq!(
        call(&fx.app, Method::POST, "/decode", &h, &big)
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        call(&fx.app, Method::POST, "/download", &h, &ok)
            .await
            .status,
        StatusCode::NOT_IMPLEMENTED
    );

    // A sealed payload that fails to open: tampered, and presented as another namespace.
    let enc = call(&fx.app, Method::POST, "/encode", &h, &ok).await.json();
    let mut tampered = enc.clone();
    let data = tampered["payloads"][0]["data"]
        .as_str()
        .expect("d")
        .to_owned();
    let mut raw = B64.decode(data).expect("b64");
    let last = raw.len() - 1;
    raw[last] ^= 1;
    tampered["payloads"][0]["data"] = Value::String(B64.encode(raw));
    let r = call(&fx.app, Method::POST, "/decode", &h, &tampered.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.body.contains("4111"));
    let support = token(
        &rsa("rsa1.pem"),
        Algorithm::RS256,
        "rsa1",
        claims("sam", json!({"roles": ["support"]})),
    );
    let sa = bearer(&support);
    let r = call(
        &fx.app,
        Method::POST,
        "/decode",
        &[("authorization", sa.as_str()), ("x-namespace", "other")],
        &enc.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("encryption context"), "{}", r.body);
    assert!(!r.body.contains("4111"));

    // Every request is in the audit log, never a payload.
    let audit = std::fs::read_to_string(&fx.audit).expect("audit");
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(lines.len() >= 8, "{} audit lines", lines.len());
    assert!(!audit.contains("4111") && !audit.contains(&B64.encode("\"card 4111\"")));
    let encode = lines
        .iter()
        .find(|l| l["operation"] == "encode" && l["status"] == 200)
        .expect("encode line");
    assert_eq!(encode["subject"], "alice");
    assert_eq!(encode["namespace"], "payments");
    assert_eq!(encode["payloads"], 1);
    assert!(
        encode["keks"][0]
            .as_str()
            .expect("kek")
            .starts_with("local:t")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["status"] == 400 && l["outcome"] == "codec_error")
    );
}

#[tokio::test]
async fn cors_preflight_echoes_only_configured_origins() {
    let fx = fixture_app("", false).await;
    let pre = |origin: &'static str| {
        let app = fx.app.clone();
        async move {
            call(
                &app,
                Method::OPTIONS,
                "/decode?preserveStorageRefs=true",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "content-type,x-namespace,authorization,authorization-extras",
                    ),
                ],
                "",
            )
            .await
        }
    };
    let ok = pre(UI_ORIGIN).await;
    assert!(ok.status.is_success(), "{}", ok.status);
    assert_eq!(ok.headers["access-control-allow-origin"], UI_ORIGIN);
    assert_eq!(ok.headers["access-control-allow-credentials"], "true");
    let allowed = ok.headers["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    for h in [
        "content-type",
        "x-namespace",
        "authorization",
        "authorization-extras",
    ] {
        assert!(allowed.contains(h), "{allowed}");
    }
    assert!(
        ok.headers["access-control-allow-methods"]
            .to_str()
            .expect("ascii")
            .contains("POST")
    );
    let evil = pre("https://evil.example").await;
    assert!(evil.headers.get("access-control-allow-origin").is_none());
    // The actual request from the UI also carries the exact origin back.
    let auth = bearer(&alice());
    let r = call(
        &fx.app,
        Method::POST,
        "/decode",
        &[
            ("origin", UI_ORIGIN),
            ("authorization", auth.as_str()),
            ("x-namespace", "payments"),
        ],
        r#"{"payloads":[]}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["access-control-allow-origin"], UI_ORIGIN);
}

#[tokio::test]
async fn jwt_failure_modes_are_401() {
    let fx = fixture_app("", false).await;
    let body = json!({"payloads": [plain("\"x\"")]}).to_string();
    let try_token = |t: String| {
        let app = fx.app.clone();
        let body = body.clone();
        async move {
            let a = bearer(&t);
            call(
                &app,
                Method::POST,
                "/decode",
                &[("authorization", a.as_str()), ("x-namespace", "payments")],
                &body,
            )
            .await
        }
    };
    let k = rsa("rsa1.pem");
    // Valid RS256 and ES256 tokens pass.
    assert_eq!(try_token(alice()).await.status, StatusCode::OK);
    let es = token(&ec(), Algorithm::ES256, "ec1", claims("alice", json!({})));
    assert_eq!(try_token(es).await.status, StatusCode::OK);

    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            token(
                &k,
                Algorithm::RS256,
                "rsa1",
                claims("alice", json!({"exp": now() - 3600})),
            ),
        ),
        (
            "not yet valid",
            token(
                &k,
                Algorithm::RS256,
                "rsa1",
                claims("alice", json!({"nbf": now() + 3600})),
            ),
        ),
        (
            "wrong issuer",
            token(
                &k,
                Algorithm::RS256,
                "rsa1",
                claims("alice", json!({"iss": "https://other"})),
            ),
        ),
        (
            "wrong audience",
            token(
                &k,
                Algorithm::RS256,
                "rsa1",
                claims("alice", json!({"aud": "someone-else"})),
            ),
        ),
        ("no exp", {
            let mut c = claims("alice", json!({}));
            c.as_object_mut().expect("obj").remove("exp");
            token(&k, Algorithm::RS256, "rsa1", c)
        }),
        // Signed by the same JWKS (a shared, multi-tenant identity provider) but meant for
        // nobody in particular: jsonwebtoken alone would accept these.
        ("no iss", {
            let mut c = claims("alice", json!({}));
            c.as_object_mut().expect("obj").remove("iss");
            token(&k, Algorithm::RS256, "rsa1", c)
        }),
        ("no aud", {
            let mut c = claims("alice", json!({}));
            c.as_object_mut().expect("obj").remove("aud");
            token(&k, Algorithm::RS256, "rsa1", c)
        }),
        ("no sub", {
            let mut c = claims("alice", json!({}));
            c.as_object_mut().expect("obj").remove("sub");
            token(&k, Algorithm::RS256, "rsa1", c)
        }),
        (
            "signed by an unknown key",
            token(
                &rsa("rsa2.pem"),
                Algorithm::RS256,
                "rsa1",
                claims("alice", json!({})),
            ),
        ),
        (
            "unknown kid",
            token(
                &rsa("rsa2.pem"),
                Algorithm::RS256,
                "nobody",
                claims("alice", json!({})),
            ),
        ),
        ("alg none", {
            let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"rsa1"}"#);
            let c = URL_SAFE_NO_PAD.encode(claims("alice", json!({})).to_string());
            format!("{h}.{c}.")
        }),
        ("HS256 keyed with the RSA public key", {
            let hs = EncodingKey::from_secret(&fixture("rsa1.pub.pem"));
            token(&hs, Algorithm::HS256, "rsa1", claims("alice", json!({})))
        }),
        (
            "RS256 header on the EC key",
            token(&k, Algorithm::RS256, "ec1", claims("alice", json!({}))),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (name, t) in cases {
        let r = try_token(t).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.body);
        assert!(r.body.contains("invalid credentials"), "{name}: {}", r.body);
    }
    // No credentials at all (anonymous is not configured).
    let r = call(
        &fx.app,
        Method::POST,
        "/decode",
        &[("x-namespace", "payments")],
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_kid_refreshes_the_jwks() {
    let fx = fixture_app("", false).await;
    let body = json!({"payloads": []}).to_string();
    let rotated = token(
        &rsa("rsa2.pem"),
        Algorithm::RS256,
        "rsa2",
        claims("alice", json!({})),
    );
    let a = bearer(&rotated);
    let h = [("authorization", a.as_str()), ("x-namespace", "payments")];
    assert_eq!(
        call(&fx.app, Method::POST, "/decode", &h, &body)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // The identity provider rotates in a new key; the next request finds it.
    fx.jwks
        .lock()
        .expect("lock")
        .keys
        .push(jwk(&rsa("rsa2.pem"), Algorithm::RS256, "rsa2"));
    assert_eq!(
        call(&fx.app, Method::POST, "/decode", &h, &body)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn permissions_are_per_namespace_and_per_operation() {
    let fx = fixture_with("", "use_permissions_claim = true").await;
    let body = json!({"payloads": [plain("\"x\"")]}).to_string();
    let k = rsa("rsa1.pem");
    let status = |t: String, op: &'static str, ns: &'static str| {
        let app = fx.app.clone();
        let body = body.clone();
        async move {
            let a = bearer(&t);
            call(
                &app,
                Method::POST,
                &format!("/{op}"),
                &[("authorization", a.as_str()), ("x-namespace", ns)],
                &body,
            )
            .await
            .status
        }
    };
    // Policy access: alice may encode and decode payments; support may decode the default's
    // namespaces but not payments, and may not encode.
    assert_eq!(status(alice(), "encode", "payments").await, StatusCode::OK);
    assert_eq!(
        status(alice(), "decode", "orders").await,
        StatusCode::FORBIDDEN
    );
    let sam = token(
        &k,
        Algorithm::RS256,
        "rsa1",
        claims("sam", json!({"roles": ["support"]})),
    );
    assert_eq!(
        status(sam.clone(), "decode", "orders").await,
        StatusCode::OK
    );
    assert_eq!(
        status(sam.clone(), "decode", "payments").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(sam, "encode", "orders").await, StatusCode::FORBIDDEN);
    // Temporal's permission claims: list form and Temporal Cloud's map form.
    let reader = token(
        &k,
        Algorithm::RS256,
        "rsa1",
        claims("r", json!({"permissions": ["orders:read"]})),
    );
    assert_eq!(
        status(reader.clone(), "decode", "orders").await,
        StatusCode::OK
    );
    assert_eq!(
        status(reader.clone(), "encode", "orders").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(reader, "decode", "payments").await,
        StatusCode::FORBIDDEN
    );
    let writer = token(
        &k,
        Algorithm::RS256,
        "rsa1",
        claims("w", json!({"permissions": {"orders": "write"}})),
    );
    assert_eq!(
        status(writer.clone(), "encode", "orders").await,
        StatusCode::OK
    );
    assert_eq!(status(writer, "decode", "orders").await, StatusCode::OK);
    // A glob-looking namespace in a claim is a literal name, not a pattern.
    let sneaky = token(
        &k,
        Algorithm::RS256,
        "rsa1",
        claims("s", json!({"permissions": ["*:admin"]})),
    );
    assert_eq!(
        status(sneaky, "decode", "orders").await,
        StatusCode::FORBIDDEN
    );

    // The static CLI token: decode only, team-* only.
    let cli = |op: &'static str, ns: &'static str| status(CLI_TOKEN.to_owned(), op, ns);
    assert_eq!(cli("decode", "team-a").await, StatusCode::OK);
    assert_eq!(cli("encode", "team-a").await, StatusCode::FORBIDDEN);
    assert_eq!(cli("decode", "payments").await, StatusCode::FORBIDDEN);
    assert_eq!(
        status("wrong-token-0123456789".into(), "decode", "team-a").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn id_token_in_authorization_extras_when_required() {
    let fx = fixture_app("", true).await;
    let body = json!({"payloads": []}).to_string();
    let k = rsa("rsa1.pem");
    // The access token and the ID token (the UI's audience) name the same user.
    let access = bearer(&token(
        &k,
        Algorithm::RS256,
        "rsa1",
        claims("alice", json!({})),
    ));
    let id = token(
        &k,
        Algorithm::RS256,
        "rsa1",
        claims("alice", json!({"aud": "web-ui"})),
    );
    let h = [
        ("authorization", access.as_str()),
        ("x-namespace", "payments"),
    ];
    let missing = call(&fx.app, Method::POST, "/decode", &h, &body).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert!(missing.body.contains("Authorization-Extras"));
    let with = [
        ("authorization", access.as_str()),
        ("authorization-extras", id.as_str()),
        ("x-namespace", "payments"),
    ];
    assert_eq!(
        call(&fx.app, Method::POST, "/decode", &with, &body)
            .await
            .status,
        StatusCode::OK
    );
    let forged = token(
        &rsa("rsa2.pem"),
        Algorithm::RS256,
        "rsa1",
        claims("alice", json!({})),
    );
    let bad = [
        ("authorization", access.as_str()),
        ("authorization-extras", forged.as_str()),
        ("x-namespace", "payments"),
    ];
    assert_eq!(
        call(&fx.app, Method::POST, "/decode", &bad, &body)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn health_metrics_and_readiness() {
    let fx = fixture_app("", false).await;
    let auth = bearer(&alice());
    let h = [
        ("authorization", auth.as_str()),
        ("x-namespace", "payments"),
    ];
    let enc = call(
        &fx.app,
        Method::POST,
        "/encode",
        &h,
        &json!({"payloads": [plain("1"), plain("2")]}).to_string(),
    )
    .await;
    call(&fx.app, Method::POST, "/decode", &h, &enc.body).await;
    call(&fx.app, Method::POST, "/decode", &h, "nope").await;
    assert_eq!(
        call(&fx.app, Method::GET, "/healthz", &[], "").await.status,
        StatusCode::OK
    );
    let ready = call(&fx.app, Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let m = call(&fx.app, Method::GET, "/metrics", &[], "").await.body;
    for needle in [
        r#"sealbox_codec_requests_total{operation="encode",status="200"} 1"#,
        r#"sealbox_codec_requests_total{operation="decode",status="200"} 1"#,
        r#"sealbox_codec_failures_total{operation="decode",reason="bad_request"} 1"#,
        r#"sealbox_codec_payloads_total{operation="encode"} 2"#,
        "sealbox_codec_request_seconds_bucket",
        "sealbox_kms_calls_total",
        "sealbox_unwrap_cache_hits_total",
        "sealbox_envelopes_sealed_total 2",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
}

#[tokio::test]
async fn exposure_rules_refuse_unsafe_public_listeners() {
    let cfg = |s: &str| ServerConfig::from_toml(&format!("[server]\n{s}"), "t.toml");
    assert!(
        cfg("listen = \"127.0.0.1:9000\"\nanonymous = [\"decode\"]")
            .expect("ok")
            .check_exposure()
            .is_ok()
    );
    let open = cfg("listen = \"0.0.0.0:9000\"\nanonymous = [\"decode\"]").expect("parses");
    let err = open.check_exposure().expect_err("refused");
    assert!(
        err.contains("TLS") && err.contains("authentication") && err.contains("anonymous"),
        "{err}"
    );
    // Configuration mistakes are reported, all at once.
    let err =
        cfg("anonymous = [\"delete\"]\nmax_body = \"lots\"\ncors_origins = [\"*\"]\nbogus = 1")
            .expect_err("invalid");
    assert!(err.to_string().contains("bogus"), "{err}");
    let err = cfg("anonymous = [\"delete\"]\nmax_body = \"lots\"\ncors_origins = [\"*\"]")
        .expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains("delete") && text.contains("max_body") && text.contains("cors_origins"),
        "{text}"
    );
    let err =
        cfg("[server.jwt]\njwks_urls = [\"http://idp.example/jwks\"]\nalgorithms = [\"HS256\"]")
            .expect_err("hs");
    let jwt = "issuer = \"https://idp.example\"\naudience = [\"sealbox\"]";
    assert!(
        err.to_string().contains("HS256") && err.to_string().contains("https://"),
        "{err}"
    );
    for bad in [
        "http://localhost.evil.example/jwks",
        "http://10.0.0.1/jwks",
        "ftp://127.0.0.1/jwks",
    ] {
        let e = cfg(&format!("[server.jwt]\njwks_urls = [\"{bad}\"]\n{jwt}")).expect_err(bad);
        assert!(e.to_string().contains("must be an https://"), "{bad}: {e}");
    }
    for good in [
        "https://idp.example/jwks",
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9/jwks",
    ] {
        cfg(&format!("[server.jwt]\njwks_urls = [\"{good}\"]\n{jwt}"))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_kms_gives_504_not_a_hung_request() {
    let bao = sealbox_testkit::servers::OpenBao::start();
    bao.enable_transit("transit");
    bao.create_key("transit", "k", true);
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, &bao.root_token).expect("token");
    let text = format!(
        "version = 1\n[vault]\nauth = \"token\"\ntoken_file = \"{}\"\n[default]\nactive = \"vault+http://{}/transit/keys/k\"\n[server]\nanonymous = [\"encode\", \"decode\"]\nkms_timeout = \"1s\"\naudit_log = \"{}\"\n",
        token.display(),
        bao.addr.trim_start_matches("http://"),
        dir.path().join("audit").display()
    );
    let path = dir.path().join("p.toml");
    std::fs::write(&path, text).expect("policy");
    let policy = Arc::new(ReloadablePolicy::load(&path).await.expect("policy"));
    let state = AppState::new(policy, ServerConfig::from_file(&path).expect("cfg")).expect("state");
    let app = app(state);
    let body = json!({"payloads": [plain("\"x\"")]}).to_string();
    let h = [("x-namespace", "ns")];
    assert_eq!(
        call(&app, Method::POST, "/encode", &h, &body).await.status,
        StatusCode::OK
    );
    bao.freeze();
    let r = call(
        &app,
        Method::POST,
        "/encode",
        &[("x-namespace", "other-ns")],
        &body,
    )
    .await;
    let ready = call(&app, Method::GET, "/readyz", &[], "").await;
    bao.thaw();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert!(r.body.contains("did not answer"));
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    // KMS error text names hosts and keys: it goes to the log, not to whoever asks.
    assert!(ready.body.contains("not answering"), "{}", ready.body);
    assert!(
        !ready.body.contains(bao.addr.trim_start_matches("http://")),
        "{}",
        ready.body
    );
}

#[tokio::test]
async fn per_client_rate_limit_answers_429() {
    let fx = fixture_app("rate_limit = 1", false).await;
    let body = json!({"payloads": []}).to_string();
    let a = bearer(&alice());
    let h = [("authorization", a.as_str()), ("x-namespace", "payments")];
    assert_eq!(
        call(&fx.app, Method::POST, "/decode", &h, &body)
            .await
            .status,
        StatusCode::OK
    );
    let second = call(&fx.app, Method::POST, "/decode", &h, &body).await;
    assert_eq!(
        second.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        second.body
    );
    // Another client has its own budget.
    let sam = bearer(&token(
        &rsa("rsa1.pem"),
        Algorithm::RS256,
        "rsa1",
        claims("sam", json!({"roles": ["support"]})),
    ));
    let other = [("authorization", sam.as_str()), ("x-namespace", "orders")];
    assert_eq!(
        call(&fx.app, Method::POST, "/decode", &other, &body)
            .await
            .status,
        StatusCode::OK
    );
}

#[test]
fn kubernetes_example_policy_is_valid() {
    let yaml = std::fs::read_to_string(format!(
        "{}/../../docs/deploy/codec-server.k8s.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("manifest");
    let start = yaml.find("policy.toml: |").expect("policy block") + "policy.toml: |".len();
    let end = start + yaml[start..].find("\n---").expect("end of block");
    let toml: String = yaml[start..end]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    sealbox_policy::PolicyConfig::from_toml(&toml, "k8s example").expect("valid policy");
    // Everything in [server] is valid; only the mounted token file is absent here.
    let err = ServerConfig::from_toml(&toml, "k8s example").expect_err("no token file here");
    let text = err.to_string();
    assert!(
        text.contains("token `workers`: cannot read /etc/sealbox/tokens/workers"),
        "{text}"
    );
    assert_eq!(
        text.matches(';').count(),
        0,
        "only that one problem: {text}"
    );
}

// ---- security review findings (issue #11) ----

fn jwt_as(sub: &str, extra: Value) -> String {
    token(
        &rsa("rsa1.pem"),
        Algorithm::RS256,
        "rsa1",
        claims(sub, extra),
    )
}

async fn decode_status(app: &Router, headers: &[(&str, &str)], ns: &str) -> Resp {
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

#[tokio::test]
async fn jwt_issuer_and_audience_are_mandatory_settings() {
    let cfg = |jwt: &str| {
        ServerConfig::from_toml(
            &format!("[server.jwt]\njwks_urls = [\"https://idp.example/jwks\"]\n{jwt}"),
            "t.toml",
        )
    };
    let e = cfg("audience = [\"sealbox\"]").expect_err("no issuer");
    assert!(e.to_string().contains("jwt.issuer: required"), "{e}");
    let e = cfg("issuer = \"https://idp.example\"").expect_err("no audience");
    assert!(e.to_string().contains("jwt.audience: required"), "{e}");
    let e = cfg("issuer = \"https://idp.example\"\naudience = [\"sealbox\"]\nuse_id_token = true")
        .expect_err("no ID token audience");
    assert!(e.to_string().contains("id_token_audience"), "{e}");
    cfg("issuer = \"https://idp.example\"\naudience = [\"sealbox\"]").expect("valid");
}

#[tokio::test]
async fn the_id_token_must_belong_to_the_same_user_issuer_and_ui() {
    let fx = fixture_app("", true).await;
    let k = rsa("rsa1.pem");
    // alice's access token carries a role; her ID token carries none.
    let access = bearer(&jwt_as("alice", json!({"roles": ["support"]})));
    let id_of = |sub: &str, extra: Value| {
        let mut c = claims(sub, json!({"aud": "web-ui"}));
        if let (Some(c), Value::Object(e)) = (c.as_object_mut(), extra) {
            c.extend(e);
        }
        token(&k, Algorithm::RS256, "rsa1", c)
    };
    let with_id = |id: String| {
        let app = fx.app.clone();
        let access = access.clone();
        async move {
            decode_status(
                &app,
                &[
                    ("authorization", access.as_str()),
                    ("authorization-extras", id.as_str()),
                ],
                "payments",
            )
            .await
        }
    };
    assert_eq!(
        with_id(id_of("alice", json!({}))).await.status,
        StatusCode::OK
    );
    for (name, id) in [
        ("another user's ID token", id_of("mallory", json!({}))),
        (
            "another app's ID token",
            id_of("alice", json!({"aud": "other-app"})),
        ),
        (
            "an ID token from another issuer",
            id_of("alice", json!({"iss": "https://other-idp.test"})),
        ),
        (
            "an access token replayed as ID token",
            jwt_as("alice", json!({})),
        ),
    ] {
        let r = with_id(id).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.body);
        assert!(r.body.contains("ID token"), "{name}: {}", r.body);
    }
    // Roles come from one token only: the ID token. The access token's `support` role does
    // not open the default's namespaces; the same role in the ID token does.
    let r = decode_status(
        &fx.app,
        &[
            ("authorization", access.as_str()),
            ("authorization-extras", id_of("alice", json!({})).as_str()),
        ],
        "orders",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = decode_status(
        &fx.app,
        &[
            ("authorization", access.as_str()),
            (
                "authorization-extras",
                id_of("alice", json!({"roles": ["support"]})).as_str(),
            ),
        ],
        "orders",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn temporal_permission_claims_grant_nothing_unless_enabled() {
    // `orders:read` lets a developer read histories in Temporal; by default it must not
    // also decrypt their payloads.
    let reader = bearer(&jwt_as("dev", json!({"permissions": ["orders:read"]})));
    let h = [("authorization", reader.as_str())];
    let off = fixture_app("", false).await;
    assert_eq!(
        decode_status(&off.app, &h, "orders").await.status,
        StatusCode::FORBIDDEN
    );
    let on = fixture_with("", "use_permissions_claim = true").await;
    assert_eq!(
        decode_status(&on.app, &h, "orders").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn repeated_failed_authentications_are_refused_for_a_while() {
    let fx = fixture_app("max_auth_failures = 3", false).await;
    for _ in 0..3 {
        let r = decode_status(
            &fx.app,
            &[("authorization", "Bearer guess-0123456789abcdef")],
            "team-a",
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right token is refused now: guessing cannot continue at full speed.
    let auth = bearer(CLI_TOKEN);
    let r = decode_status(&fx.app, &[("authorization", auth.as_str())], "team-a").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.body.contains("failed authentications"), "{}", r.body);
}

#[tokio::test]
async fn ops_endpoints_exposure_is_configurable() {
    let auth = bearer(&alice());
    let fx = fixture_app("metrics = \"authenticated\"", false).await;
    assert_eq!(
        call(&fx.app, Method::GET, "/metrics", &[], "").await.status,
        StatusCode::UNAUTHORIZED
    );
    let m = call(
        &fx.app,
        Method::GET,
        "/metrics",
        &[("authorization", auth.as_str())],
        "",
    )
    .await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.body.contains("sealbox_kms_calls_total"));
    let off = fixture_app("metrics = \"off\"", false).await;
    assert_eq!(
        call(
            &off.app,
            Method::GET,
            "/metrics",
            &[("authorization", auth.as_str())],
            ""
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert!(
        ServerConfig::from_toml("[server]\nmetrics = \"sometimes\"", "t")
            .expect_err("bad value")
            .to_string()
            .contains("metrics")
    );
}

#[tokio::test]
async fn the_audit_line_bounds_caller_supplied_key_ids() {
    let fx = fixture_app("", false).await;
    let auth = bearer(&alice());
    let payloads: Vec<Value> = (0..40)
        .map(|i| {
            json!({"metadata": {
                "encoding": B64.encode("binary/encrypted"),
                "encryption-key-id": B64.encode(format!("{i:02}-{}", "k".repeat(1000))),
            }, "data": B64.encode("x")})
        })
        .collect();
    let r = call(
        &fx.app,
        Method::POST,
        "/decode",
        &[
            ("authorization", auth.as_str()),
            ("x-namespace", "payments"),
        ],
        &json!({ "payloads": payloads }).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let audit = std::fs::read_to_string(&fx.audit).expect("audit");
    let line: Value = serde_json::from_str(audit.lines().last().expect("line")).expect("json");
    let keks = line["keks"].as_array().expect("keks");
    assert_eq!(keks.len(), 16);
    assert!(
        keks.iter()
            .all(|k| k.as_str().expect("str").len() <= 256 + 3)
    );
    assert_eq!(line["keks_omitted"], 24);
    assert!(
        audit.len() < 16 * 1024,
        "one bounded line: {} bytes",
        audit.len()
    );
}

#[tokio::test]
async fn an_anonymous_server_answers_only_to_loopback_host_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("kek");
    sealbox_testkit::write_secret_file(&key, &B64.encode([9u8; 32]));
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        format!(
            "version = 1\n[default]\nactive = \"local:///a?file={}\"\n[server]\nanonymous = [\"encode\", \"decode\"]\nallowed_hosts = [\"codec.localtest\"]\naudit_log = \"{}\"\n",
            key.display(),
            dir.path().join("audit").display()
        ),
    )
    .expect("policy");
    let policy = Arc::new(ReloadablePolicy::load(&path).await.expect("policy"));
    let app =
        app(AppState::new(policy, ServerConfig::from_file(&path).expect("cfg")).expect("state"));
    for (host, want) in [
        ("localhost:8089", StatusCode::OK),
        ("127.0.0.1:8089", StatusCode::OK),
        ("[::1]:8089", StatusCode::OK),
        ("codec.localtest", StatusCode::OK),
        // A page on attacker.example whose DNS name was rebound to 127.0.0.1.
        ("attacker.example:8089", StatusCode::MISDIRECTED_REQUEST),
        (
            "localhost.attacker.example",
            StatusCode::MISDIRECTED_REQUEST,
        ),
    ] {
        let r = decode_status(&app, &[("host", host)], "ns").await;
        assert_eq!(r.status, want, "{host}: {}", r.body);
    }
}

#[tokio::test]
async fn sighup_reload_revokes_tokens_and_keeps_a_broken_file_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("kek");
    sealbox_testkit::write_secret_file(&key, &B64.encode([7u8; 32]));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, "token-a-0123456789abcdef").expect("a");
    std::fs::write(&b, "token-b-0123456789abcdef").expect("b");
    let policy_text = |tokens: &[(&str, &std::path::Path)], origin: &str| {
        let mut t = format!(
            "version = 1\n[default]\nactive = \"local:///r?file={}\"\n[server]\ncors_origins = [\"{origin}\"]\naudit_log = \"{}\"\n",
            key.display(),
            dir.path().join("audit").display()
        );
        for (name, file) in tokens {
            t.push_str(&format!(
                "[[server.token]]\nname = \"{name}\"\ntoken_file = \"{}\"\nnamespaces = [\"*\"]\npermissions = [\"decode\"]\n",
                file.display()
            ));
        }
        t
    };
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        policy_text(&[("a", &a), ("b", &b)], "https://one.test"),
    )
    .expect("w");
    let policy = Arc::new(ReloadablePolicy::load(&path).await.expect("policy"));
    let state = AppState::new(policy, ServerConfig::from_file(&path).expect("cfg")).expect("state");
    let app = app(state.clone());
    let status = |t: &'static str| {
        let app = app.clone();
        async move {
            let auth = format!("Bearer {t}");
            decode_status(&app, &[("authorization", auth.as_str())], "ns")
                .await
                .status
        }
    };
    let preflight = |origin: &'static str| {
        let app = app.clone();
        async move {
            call(
                &app,
                Method::OPTIONS,
                "/decode",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ],
                "",
            )
            .await
            .headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap_or("").to_owned())
        }
    };
    assert_eq!(status("token-a-0123456789abcdef").await, StatusCode::OK);
    assert_eq!(
        preflight("https://one.test").await.as_deref(),
        Some("https://one.test")
    );

    // Token a is revoked and the UI moves: both take effect on reload.
    std::fs::write(&path, policy_text(&[("b", &b)], "https://two.test")).expect("w");
    state.reload(&path).await.expect("reload");
    assert_eq!(
        status("token-a-0123456789abcdef").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status("token-b-0123456789abcdef").await, StatusCode::OK);
    assert_eq!(preflight("https://one.test").await, None);
    assert_eq!(
        preflight("https://two.test").await.as_deref(),
        Some("https://two.test")
    );

    // A broken [server] section (or a broken policy) changes nothing.
    std::fs::write(
        &path,
        policy_text(&[("a", &a)], "https://three.test") + "[server.jwt]\njwks_urls = []\n",
    )
    .expect("w");
    let e = state.reload(&path).await.expect_err("broken");
    assert!(e.contains("jwks_urls"), "{e}");
    std::fs::write(
        &path,
        policy_text(&[("a", &a)], "https://three.test").replace("local:///r", "nope:///r"),
    )
    .expect("w");
    state.reload(&path).await.expect_err("broken policy");
    assert_eq!(
        status("token-a-0123456789abcdef").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status("token-b-0123456789abcdef").await, StatusCode::OK);
    assert_eq!(preflight("https://three.test").await, None);
}

/// A policy whose leases hold one payload each, so every sealed payload has its own data key.
async fn one_key_per_payload_app(dir: &std::path::Path, server: &str) -> (Router, Arc<AppState>) {
    let key = dir.join("kek");
    if !key.exists() {
        sealbox_testkit::write_secret_file(&key, &B64.encode([3u8; 32]));
    }
    let path = dir.join(format!("p{}.toml", server.len()));
    std::fs::write(
        &path,
        format!(
            "version = 1\n[default]\nactive = \"local:///q?file={}\"\n[default.lease]\nmax_payloads = 1\n[server]\nanonymous = [\"encode\", \"decode\"]\naudit_log = \"{}\"\n{server}\n",
            key.display(),
            dir.join("audit").display()
        ),
    )
    .expect("policy");
    let policy = Arc::new(ReloadablePolicy::load(&path).await.expect("policy"));
    let state = AppState::new(policy, ServerConfig::from_file(&path).expect("cfg")).expect("state");
    (app(state.clone()), state)
}

#[tokio::test]
async fn kms_work_per_request_and_per_caller_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, _) = one_key_per_payload_app(dir.path(), "").await;
    let h = [("x-namespace", "ns")];
    let sealed = call(
        &writer,
        Method::POST,
        "/encode",
        &h,
        &json!({"payloads": [plain("1"), plain("2"), plain("3")]}).to_string(),
    )
    .await;
    assert_eq!(sealed.status, StatusCode::OK);
    // A fresh reader (cold cache) limited to 2 distinct unwraps per request.
    let (reader, state) = one_key_per_payload_app(dir.path(), "max_unwraps_per_request = 2").await;
    let r = call(&reader, Method::POST, "/decode", &h, &sealed.body).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("3 distinct data keys"), "{}", r.body);
    let metrics = call(&reader, Method::GET, "/metrics", &[], "").await.body;
    assert!(
        metrics.contains("sealbox_kms_calls_total 0"),
        "refused before any KMS call:\n{metrics}"
    );
    // Once the keys are cached (the writer knows them), the same request costs nothing.
    assert_eq!(
        call(&writer, Method::POST, "/decode", &h, &sealed.body)
            .await
            .status,
        StatusCode::OK
    );
    drop(state);

    // One KMS call per second per caller: a cold decode of 3 keys is over budget, and so is
    // a second brand-new namespace right after a first (each costs a data-key lease).
    let (limited, _) = one_key_per_payload_app(dir.path(), "kms_rate_limit = 1").await;
    let r = call(&limited, Method::POST, "/decode", &h, &sealed.body).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("KMS budget"), "{}", r.body);
    let enc = |ns: &'static str| {
        let app = limited.clone();
        async move {
            call(
                &app,
                Method::POST,
                "/encode",
                &[("x-namespace", ns)],
                &json!({"payloads": [plain("1")]}).to_string(),
            )
            .await
            .status
        }
    };
    // The refused decode consumed nothing: the first new namespace fits the budget.
    assert_eq!(enc("tenant-1").await, StatusCode::OK);
    assert_eq!(enc("tenant-2").await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn decode_shows_plaintext_as_is_but_counts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _) = one_key_per_payload_app(dir.path(), "").await;
    // A plaintext zstd "bomb" from the caller is returned untouched, never decompressed.
    let bomb = vec![0u8; 64];
    let zstd_payload = json!({"metadata": {
        "encoding": B64.encode("binary/zstd"),
        "sealbox-format": B64.encode("sealbox-zstd/1"),
    }, "data": B64.encode(&bomb)});
    let null_payload = json!({"metadata": {"encoding": B64.encode("binary/null")}});
    let body = json!({"payloads": [plain("\"forged\""), zstd_payload, null_payload]}).to_string();
    let r = call(
        &app,
        Method::POST,
        "/decode",
        &[("x-namespace", "ns")],
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let out = r.json()["payloads"].clone();
    assert_eq!(out[1]["data"], B64.encode(&bomb));
    let metrics = call(&app, Method::GET, "/metrics", &[], "").await.body;
    assert!(
        metrics.contains(r#"sealbox_codec_plaintext_payloads_total{operation="decode"} 2"#),
        "{metrics}"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit")).expect("audit");
    assert!(audit.contains("\"plaintext_payloads\":2"), "{audit}");
}

#[test]
fn debug_output_of_the_settings_holds_no_token_material() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t");
    std::fs::write(&file, CLI_TOKEN).expect("token");
    let config = ServerConfig::from_toml(
        &format!(
            "[server]\n[[server.token]]\nname = \"cli\"\ntoken_file = \"{}\"\nnamespaces = [\"*\"]\npermissions = [\"decode\"]\n",
            file.display()
        ),
        "t",
    )
    .expect("valid");
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(CLI_TOKEN.as_bytes()).into();
    let debug = format!("{config:?}");
    assert!(
        debug.contains("cli") && debug.contains("<redacted>"),
        "{debug}"
    );
    assert!(!debug.contains(CLI_TOKEN), "{debug}");
    assert!(!debug.contains(&hex::encode(digest)), "{debug}");
    assert!(
        !debug.contains(
            &format!("{:?}", &digest[..4])
                .trim_end_matches(']')
                .to_owned()
        ),
        "{debug}"
    );
}
