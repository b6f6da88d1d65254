//! Limits per caller: request rate, KMS work per request and per second.

use super::*;

#[tokio::test]
async fn per_client_rate_limit_answers_429() {
    let fx = fixture_app("rate_limit = 1", false).await;
    let body = json!({"payloads": []}).to_string();
    let a = bearer(&alice());
    let h = auth_in(&a, "payments");
    assert_eq!(
        post_status(&fx.app, "/decode", &h, &body).await,
        StatusCode::OK
    );
    // A burst over 1 request/s is refused; asserting on the burst keeps a stall of over a
    // second on a busy machine (which refills the budget) from failing the test.
    let mut limited = None;
    for _ in 0..5 {
        let r = post(&fx.app, "/decode", &h, &body).await;
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
    let other = auth_in(&sam, "orders");
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
    let sealed = post(
        &writer,
        "/encode",
        &h,
        &json!({"payloads": [plain("1"), plain("2"), plain("3")]}).to_string(),
    )
    .await;
    assert_eq!(sealed.status, StatusCode::OK);
    // A fresh reader (cold cache) limited to 2 distinct unwraps per request.
    let (reader, state) = one_key_per_payload_app(dir.path(), "max_unwraps_per_request = 2").await;
    let r = post(&reader, "/decode", &h, &sealed.body).await;
    r.assert_says(StatusCode::TOO_MANY_REQUESTS, "3 distinct data keys");
    let metrics = get(&reader, "/metrics").await.body;
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
    let r = post(&limited, "/decode", &h, &sealed.body).await;
    r.assert_says(StatusCode::TOO_MANY_REQUESTS, "KMS budget");
    let enc = |ns: &'static str| {
        let app = limited.clone();
        async move {
            post(
                &app,
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

/// A cache storm: 1,000 concurrent `/decode` requests reach a codec server with a cold cache,
/// backed by a real OpenBao. They carry payloads sealed under 5 distinct data keys. Every
/// request gets its plaintext, and exactly 5 KMS calls are made: one unwrap per distinct key,
/// shared by all the requests that need it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_cache_storm_makes_one_kms_call_per_distinct_key() {
    const KEYS: usize = 5;
    const REQUESTS: usize = 1000;
    let bao = sealbox_testkit::servers::OpenBao::start_with_transit_keys(&["storm"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let one_per_lease = "[default.lease]\nmax_payloads = 1\n";
    let text = bao_policy_text(&bao, dir.path(), "storm", one_per_lease, "");
    let writer = app(state_from(&dir.path().join("writer.toml"), &text).await);
    let h = [("x-namespace", "storm")];
    let payloads: Vec<Value> = (0..KEYS)
        .map(|i| plain(&format!("\"payload {i}\"")))
        .collect();
    let sealed = post(
        &writer,
        "/encode",
        &h,
        &json!({ "payloads": payloads }).to_string(),
    )
    .await;
    sealed.assert_status(StatusCode::OK);
    let sealed: Vec<Value> = sealed.json()["payloads"]
        .as_array()
        .expect("payloads")
        .clone();

    // A fresh server: nothing cached.
    let reader = app(state_from(&dir.path().join("reader.toml"), &text).await);
    let requests: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let reader = reader.clone();
            let body = json!({ "payloads": [sealed[i % KEYS].clone()] }).to_string();
            tokio::spawn(async move {
                let r = post(&reader, "/decode", &[("x-namespace", "storm")], &body).await;
                (i, r.status, r.json())
            })
        })
        .collect();
    for request in requests {
        let (i, status, body) = request.await.expect("join");
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
        let data = B64
            .decode(body["payloads"][0]["data"].as_str().expect("data"))
            .expect("base64");
        assert_eq!(data, format!("\"payload {}\"", i % KEYS).into_bytes());
    }
    let metrics = get(&reader, "/metrics").await.body;
    assert!(
        metrics.contains(&format!("sealbox_kms_calls_total {KEYS}\n")),
        "one KMS call per distinct data key:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("kms"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
