//! Operators: health, readiness, metrics, the audit line, exposure rules, reload, timeouts.

use super::*;

#[tokio::test]
async fn health_metrics_and_readiness() {
    let fx = fixture_app("", false).await;
    let auth = bearer(&alice());
    let h = auth_in(&auth, "payments");
    let enc = post(
        &fx.app,
        "/encode",
        &h,
        &json!({"payloads": [plain("1"), plain("2")]}).to_string(),
    )
    .await;
    post(&fx.app, "/decode", &h, &enc.body).await;
    post(&fx.app, "/decode", &h, "nope").await;
    assert_eq!(get(&fx.app, "/healthz").await.status, StatusCode::OK);
    let ready = get(&fx.app, "/readyz").await;
    ready.assert_status(StatusCode::OK);
    let m = get(&fx.app, "/metrics").await.body;
    for needle in [
        r#"sealbox_codec_requests_total{operation="encode",status="200"} 1"#,
        r#"sealbox_codec_requests_total{operation="decode",status="200"} 1"#,
        r#"sealbox_codec_failures_total{operation="decode",reason="bad_request"} 1"#,
        r#"sealbox_codec_payloads_total{operation="encode"} 2"#,
        "sealbox_codec_request_seconds_bucket",
        "sealbox_kms_calls_total",
        "sealbox_unwrap_cache_hits_total",
        "sealbox_envelopes_sealed_total 2",
        // One lease, created by the first encode of the namespace: it waited; none since.
        "sealbox_data_key_leases_total 1\n",
        "sealbox_seal_kms_waits_total 1\n",
        "sealbox_data_key_leases_renewed_ahead_total 0\n",
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
    let mistakes = "anonymous = [\"delete\"]\nmax_body = \"lots\"\ncors_origins = [\"*\"]";
    for (text, says) in [
        (format!("{mistakes}\nbogus = 1"), &["bogus"][..]),
        (mistakes.to_owned(), &["delete", "max_body", "cors_origins"]),
        (
            "[server.jwt]\njwks_urls = [\"http://idp.example/jwks\"]\nalgorithms = [\"HS256\"]"
                .into(),
            &["HS256", "https://"],
        ),
    ] {
        let err = cfg(&text).expect_err(&text).to_string();
        for s in says {
            assert!(err.contains(s), "{text}: {err}");
        }
    }
    let jwt = "issuer = \"https://idp.example\"\naudience = [\"sealbox\"]";
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
    let bao = sealbox_testkit::servers::OpenBao::start_with_transit_keys(&["k"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let text = bao_policy_text(&bao, dir.path(), "k", "", "kms_timeout = \"1s\"\n");
    let app = app(state_from(&dir.path().join("p.toml"), &text).await);
    let body = json!({"payloads": [plain("\"x\"")]}).to_string();
    let h = [("x-namespace", "ns")];
    assert_eq!(
        post_status(&app, "/encode", &h, &body).await,
        StatusCode::OK
    );
    bao.freeze();
    let r = post(&app, "/encode", &[("x-namespace", "other-ns")], &body).await;
    let ready = get(&app, "/readyz").await;
    bao.thaw();
    // freeze() checked that the server is stopped, owns its port and answers nothing there:
    // a success here would be a data key that came from somewhere other than the KMS.
    assert_ne!(
        r.status,
        StatusCode::OK,
        "a new namespace was served a data key while its KMS was frozen: {}",
        r.body
    );
    r.assert_status(StatusCode::GATEWAY_TIMEOUT);
    assert!(r.body.contains("did not answer"));
    ready.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    // KMS error text names hosts and keys: it goes to the log, not to whoever asks.
    assert!(ready.body.contains("not answering"), "{}", ready.body);
    assert!(
        !ready.body.contains(bao.addr.trim_start_matches("http://")),
        "{}",
        ready.body
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

#[tokio::test]
async fn ops_endpoints_exposure_is_configurable() {
    let auth = bearer(&alice());
    let fx = fixture_app("metrics = \"authenticated\"", false).await;
    assert_eq!(
        get(&fx.app, "/metrics").await.status,
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
    let r = post(
        &fx.app,
        "/decode",
        &auth_in(&auth, "payments"),
        &json!({ "payloads": payloads }).to_string(),
    )
    .await;
    r.assert_status(StatusCode::BAD_REQUEST);
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
    let text = policy_text(&[("a", &a), ("b", &b)], "https://one.test");
    let state = state_from(&path, &text).await;
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

    // Only token b is accepted, and `origin` is no longer allowed.
    let b_only_and_not = |origin: &'static str| {
        let (status, preflight) = (&status, &preflight);
        async move {
            assert_eq!(
                status("token-a-0123456789abcdef").await,
                StatusCode::UNAUTHORIZED
            );
            assert_eq!(status("token-b-0123456789abcdef").await, StatusCode::OK);
            assert_eq!(preflight(origin).await, None, "{origin}");
        }
    };

    // Token a is revoked and the UI moves: both take effect on reload.
    std::fs::write(&path, policy_text(&[("b", &b)], "https://two.test")).expect("w");
    state.reload(&path).await.expect("reload");
    b_only_and_not("https://one.test").await;
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
    b_only_and_not("https://three.test").await;
}

/// Codecs are built once per namespace and policy: after a reload that moves the active KEK,
/// new payloads name the new KEK (no stale cached codec), and the old ones still open.
#[tokio::test]
async fn a_reload_reaches_the_cached_codecs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ka, kb) = (dir.path().join("a.kek"), dir.path().join("b.kek"));
    sealbox_testkit::write_secret_file(&ka, &B64.encode([1u8; 32]));
    sealbox_testkit::write_secret_file(&kb, &B64.encode([2u8; 32]));
    let text = |active: &str, old: &str| {
        format!(
            "version = 1\n[default]\nactive = \"{active}\"\ndecrypt_only = [{old}]\n[server]\nanonymous = [\"encode\", \"decode\"]\naudit_log = \"{}\"\n",
            dir.path().join("audit").display()
        )
    };
    let a = format!("local:///a?file={}", ka.display());
    let b = format!("local:///b?file={}", kb.display());
    let path = dir.path().join("p.toml");
    let state = state_from(&path, &text(&a, "")).await;
    let app = app(state.clone());
    let h = [
        ("x-namespace", "orders"),
        ("content-type", "application/json"),
    ];
    let body = json!({"payloads": [plain("\"x\"")]}).to_string();
    let kek_of = |r: &Resp| {
        let v = r.json();
        String::from_utf8(
            B64.decode(
                v["payloads"][0]["metadata"]["encryption-key-id"]
                    .as_str()
                    .expect("kid"),
            )
            .expect("b64"),
        )
        .expect("utf8")
    };
    let first = post(&app, "/encode", &h, &body).await;
    assert!(kek_of(&first).starts_with("local:a"), "{}", kek_of(&first));
    let again = post(&app, "/encode", &h, &body).await;
    assert!(kek_of(&again).starts_with("local:a"));

    std::fs::write(&path, text(&b, &format!("\"{a}\""))).expect("write");
    state.reload(&path).await.expect("reload");
    let after = post(&app, "/encode", &h, &body).await;
    assert!(kek_of(&after).starts_with("local:b"), "{}", kek_of(&after));
    let old = post(&app, "/decode", &h, &first.body).await;
    old.assert_status(StatusCode::OK);
}
