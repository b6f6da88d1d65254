//! The protocol: routing under any prefix, order and count kept, status codes, plaintext.

use super::*;

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
    let enc = post(&fx.app, "/encode", &h, &body).await;
    enc.assert_status(StatusCode::OK);
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
        let dec = post(&fx.app, path, &h, &mixed).await;
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
    // By default the namespace comes from X-Namespace only: a path segment is never taken
    // for one (`/codec/decode` is a prefix, not namespace `codec`).
    let h2 = [("authorization", auth.as_str())];
    let dec = post(&fx.app, "/payments/decode", &h2, &mixed).await;
    dec.assert_says(StatusCode::BAD_REQUEST, "X-Namespace");
}

/// `[server] path_namespace = true`: the route shape is `/{namespace}/decode`; the path names
/// the namespace, a disagreeing X-Namespace is refused (an ingress that authorizes by path
/// cannot be bypassed by the header), and a path without a namespace is refused.
#[tokio::test]
async fn with_path_namespaces_the_path_wins_and_the_header_must_agree() {
    let fx = fixture_app("path_namespace = true", false).await;
    let auth = bearer(&alice());
    let body = json!({"payloads": [plain("\"one\"")]}).to_string();
    let only_auth = [("authorization", auth.as_str())];
    let enc = post(&fx.app, "/codec/payments/encode", &only_auth, &body).await;
    enc.assert_status(StatusCode::OK);
    let agreeing = auth_in(&auth, "payments");
    let dec = post(&fx.app, "/payments/decode", &agreeing, &enc.body).await;
    dec.assert_status(StatusCode::OK);
    // alice may decode `payments` only; a header naming it on another path is refused.
    let bypass = auth_in(&auth, "payments");
    let r = post(&fx.app, "/team-a/decode", &bypass, &enc.body).await;
    r.assert_says(StatusCode::BAD_REQUEST, "disagrees with the path");
    let r = post(&fx.app, "/decode", &agreeing, &enc.body).await;
    r.assert_says(StatusCode::BAD_REQUEST, "no namespace in the path");
}

#[tokio::test]
async fn protocol_errors_have_the_right_status_and_no_plaintext() {
    let fx = fixture_app("", false).await;
    let auth = bearer(&alice());
    let h = auth_in(&auth, "payments");
    let ok = json!({"payloads": [plain("\"card 4111\"")]}).to_string();
    assert_eq!(
        post_status(&fx.app, "/nope", &h, &ok).await,
        StatusCode::NOT_FOUND
    );
    let get = call(&fx.app, Method::GET, "/decode", &h, "").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers["allow"], "POST, OPTIONS");
    let bad_json = post(&fx.app, "/decode", &h, "{not json").await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_json.json()["error"]
            .as_str()
            .expect("msg")
            .contains("invalid JSON")
    );
    let bad_b64 = post(&fx.app, "/decode", &h, r#"{"payloads":[{"data":"!!!"}]}"#).await;
    assert_eq!(bad_b64.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_b64.body.contains("payloads[0].data: invalid base64"),
        "{}",
        bad_b64.body
    );
    let no_ns = post(&fx.app, "/decode", &[("authorization", auth.as_str())], &ok).await;
    assert_eq!(no_ns.status, StatusCode::BAD_REQUEST);
    assert!(no_ns.body.contains("X-Namespace"));
    let big = "x".repeat(70 * 1024);
    assert_eq!(
        post_status(&fx.app, "/decode", &h, &big).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Without [storage], /download is the Web UI's "not configured" 404.
    let not_configured = post(&fx.app, "/download", &h, &ok).await;
    assert_eq!(not_configured.status, StatusCode::NOT_FOUND);
    assert!(not_configured.body.contains("not configured"));

    // A sealed payload that fails to open: tampered, and presented as another namespace.
    let enc = post(&fx.app, "/encode", &h, &ok).await.json();
    let mut tampered = enc.clone();
    let data = tampered["payloads"][0]["data"]
        .as_str()
        .expect("d")
        .to_owned();
    let mut raw = B64.decode(data).expect("b64");
    let last = raw.len() - 1;
    raw[last] ^= 1;
    tampered["payloads"][0]["data"] = Value::String(B64.encode(raw));
    let r = post(&fx.app, "/decode", &h, &tampered.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.body.contains("4111"));
    let support = token(
        &rsa("rsa1.pem"),
        Algorithm::RS256,
        "rsa1",
        claims("sam", json!({"roles": ["support"]})),
    );
    let sa = bearer(&support);
    let r = post(&fx.app, "/decode", &auth_in(&sa, "other"), &enc.to_string()).await;
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
    let r = post(&app, "/decode", &[("x-namespace", "ns")], &body).await;
    r.assert_status(StatusCode::OK);
    let out = r.json()["payloads"].clone();
    assert_eq!(out[1]["data"], B64.encode(&bomb));
    let metrics = get(&app, "/metrics").await.body;
    assert!(
        metrics.contains(r#"sealbox_codec_plaintext_payloads_total{operation="decode"} 2"#),
        "{metrics}"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit")).expect("audit");
    assert!(audit.contains("\"plaintext_payloads\":2"), "{audit}");
}
