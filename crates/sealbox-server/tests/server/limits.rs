//! Limits per caller: request rate, KMS work per request and per second.

use super::*;

#[tokio::test]
async fn per_client_rate_limit_answers_429() {
    let fx = fixture_app("rate_limit = 1", false).await;
    let body = json!({"payloads": []}).to_string();
    let a = bearer(&alice());
    let h = [("authorization", a.as_str()), ("x-namespace", "payments")];
    assert_eq!(
        post_status(&fx.app, "/decode", &h, &body).await,
        StatusCode::OK
    );
    // A burst over 1 request/s is refused; asserting on the burst keeps a stall of over a
    // second on a busy machine (which refills the budget) from failing the test.
    let mut limited = None;
    for _ in 0..5 {
        let r = call(&fx.app, Method::POST, "/decode", &h, &body).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("a burst over the rate limit gets 429");
    assert!(
        limited.body.contains("too many requests"),
        "{}",
        limited.body
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
        post_status(&fx.app, "/decode", &other, &body).await,
        StatusCode::OK
    );
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
        post_status(&writer, "/decode", &h, &sealed.body).await,
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
    // The refused decode consumed nothing: the first new namespace fits the budget. Then a
    // burst of new namespaces (each a data-key lease) runs out of it; asserting on the burst,
    // not on one request, keeps a stall of over a second on a busy machine from refilling
    // the budget between exactly two calls.
    assert_eq!(enc("tenant-1").await, StatusCode::OK);
    let mut refused = 0;
    for ns in ["tenant-2", "tenant-3", "tenant-4", "tenant-5", "tenant-6"] {
        if enc(ns).await == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused >= 1, "a burst of new leases over a budget of 1/s");
}
