//! Browsers: CORS as the Web UI sends it, and DNS rebinding against an anonymous server.

use super::*;

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
    let r = post(
        &fx.app,
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
async fn an_anonymous_server_answers_only_to_loopback_host_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("kek");
    sealbox_testkit::write_secret_file(&key, &B64.encode([9u8; 32]));
    let text = format!(
        "version = 1\n[default]\nactive = \"local:///a?file={}\"\n[server]\nanonymous = [\"encode\", \"decode\"]\nallowed_hosts = [\"codec.localtest\"]\naudit_log = \"{}\"\n",
        key.display(),
        dir.path().join("audit").display()
    );
    let app = app(state_from(&dir.path().join("p.toml"), &text).await);
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
