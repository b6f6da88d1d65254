//! Authentication: every JWT failure mode against a live JWKS, the ID token, static tokens.

use super::*;

#[tokio::test]
async fn jwt_failure_modes_are_401() {
    let fx = fixture_app("", false).await;
    let body = json!({"payloads": [plain("\"x\"")]}).to_string();
    let try_token = |t: String| {
        let app = fx.app.clone();
        let body = body.clone();
        async move {
            let a = bearer(&t);
            post(&app, "/decode", &auth_in(&a, "payments"), &body).await
        }
    };
    let k = rsa("rsa1.pem");
    // Alice's RS256 token with `extra` claims, or without `claim`.
    let alice_with = |extra: Value| token(&k, Algorithm::RS256, "rsa1", claims("alice", extra));
    let alice_without = |claim: &str| {
        let mut c = claims("alice", json!({}));
        c.as_object_mut().expect("obj").remove(claim);
        token(&k, Algorithm::RS256, "rsa1", c)
    };
    // Valid RS256 and ES256 tokens pass.
    assert_eq!(try_token(alice()).await.status, StatusCode::OK);
    let es = token(&ec(), Algorithm::ES256, "ec1", claims("alice", json!({})));
    assert_eq!(try_token(es).await.status, StatusCode::OK);

    let cases: Vec<(&str, String)> = vec![
        ("expired", alice_with(json!({"exp": now() - 3600}))),
        ("not yet valid", alice_with(json!({"nbf": now() + 3600}))),
        ("wrong issuer", alice_with(json!({"iss": "https://other"}))),
        ("wrong audience", alice_with(json!({"aud": "someone-else"}))),
        ("no exp", alice_without("exp")),
        // Signed by the same JWKS (a shared, multi-tenant identity provider) but meant for
        // nobody in particular: jsonwebtoken alone would accept these.
        ("no iss", alice_without("iss")),
        ("no aud", alice_without("aud")),
        ("no sub", alice_without("sub")),
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
    let r = post(&fx.app, "/decode", &[("x-namespace", "payments")], &body).await;
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
    let h = auth_in(&a, "payments");
    assert_eq!(
        post_status(&fx.app, "/decode", &h, &body).await,
        StatusCode::UNAUTHORIZED
    );
    // The identity provider rotates in a new key; the next request finds it.
    fx.jwks
        .lock()
        .expect("lock")
        .keys
        .push(jwk(&rsa("rsa2.pem"), Algorithm::RS256, "rsa2"));
    assert_eq!(
        post_status(&fx.app, "/decode", &h, &body).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn id_token_in_authorization_extras_when_required() {
    let fx = fixture_app("", true).await;
    let body = json!({"payloads": []}).to_string();
    // The access token and the ID token (the UI's audience) name the same user.
    let access = bearer(&alice());
    let id = jwt_as("alice", json!({"aud": "web-ui"}));
    let h = auth_in(&access, "payments");
    let missing = post(&fx.app, "/decode", &h, &body).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert!(missing.body.contains("Authorization-Extras"));
    // The access token with `extras` as the ID token.
    let with_extras = |extras: String| {
        let (app, body, access) = (fx.app.clone(), body.clone(), access.clone());
        async move {
            let h = [
                ("authorization", access.as_str()),
                ("authorization-extras", extras.as_str()),
                ("x-namespace", "payments"),
            ];
            post_status(&app, "/decode", &h, &body).await
        }
    };
    assert_eq!(with_extras(id).await, StatusCode::OK);
    let forged = token(
        &rsa("rsa2.pem"),
        Algorithm::RS256,
        "rsa1",
        claims("alice", json!({})),
    );
    assert_eq!(with_extras(forged).await, StatusCode::UNAUTHORIZED);
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
    r.assert_status(StatusCode::FORBIDDEN);
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
    r.assert_status(StatusCode::OK);
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
    r.assert_status(StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.body.contains("failed authentications"), "{}", r.body);
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
