//! External storage through the codec server: `/encode` seals then stores, `/decode`
//! resolves references (or preserves them for the Web UI), `/download` returns originals;
//! references from the caller are checked.

use super::*;

/// A server whose policy stores payloads of 1 KiB and more in a local directory (namespace
/// `payments`), none for `small`, every payload for `pii`; for `python` the worker's SDK
/// stores (the server only seals). The directory holds the policy, key, audit log and objects.
async fn storage_app() -> (tempfile::TempDir, Router) {
    storage_app_with("64KiB").await
}

async fn storage_app_with(max_body: &str) -> (tempfile::TempDir, Router) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let key = dir.join("kek");
    sealbox_testkit::write_secret_file(&key, &B64.encode([4u8; 32]));
    let text = format!(
        "version = 1\n[storage]\nurl = \"file://{objects}\"\nmax_size = \"8MiB\"\n\
         [default]\nactive = \"local:///s?file={key}\"\nexternal_storage = \"1KiB\"\n\
         [[rule]]\nnamespace = \"small\"\nactive = \"local:///s?file={key}\"\nexternal_storage = \"off\"\n\
         [[rule]]\nnamespace = \"pii\"\nactive = \"local:///s?file={key}\"\nexternal_storage = \"always\"\n\
         [[rule]]\nnamespace = \"python\"\nactive = \"local:///s?file={key}\"\nexternal_storage = \"sdk\"\n\
         [server]\nanonymous = [\"encode\", \"decode\"]\nmax_body = \"{max_body}\"\naudit_log = \"{audit}\"\n",
        objects = dir.join("objects").display(),
        key = key.display(),
        audit = dir.join("audit").display(),
    );
    let app = app(state_from(&dir.join("policy.toml"), &text).await);
    (tmp, app)
}

fn headers(ns: &str) -> [(&str, &str); 2] {
    [("x-namespace", ns), ("content-type", "application/json")]
}

fn is_reference(p: &Value) -> bool {
    p["metadata"]["messageType"] == B64.encode("temporal.api.sdk.v1.ExternalStorageReference")
}

fn data_of(p: &Value) -> Vec<u8> {
    B64.decode(p["data"].as_str().expect("data")).expect("b64")
}

#[tokio::test]
async fn large_payloads_are_stored_and_come_back_through_decode_and_download() {
    let (dir, app) = storage_app().await;
    let large = format!("\"{}\"", "card-4111 ".repeat(300_000)); // 3 MB
    let body = json!({"payloads": [plain("\"small\""), plain(&large)]}).to_string();
    let enc = post(&app, "/encode", &headers("payments"), &body).await;
    enc.assert_status(StatusCode::OK);
    let encoded = enc.json();
    let list = encoded["payloads"].as_array().expect("payloads");
    assert!(
        !is_reference(&list[0]) && is_reference(&list[1]),
        "{encoded}"
    );
    let reference: Value = serde_json::from_slice(&data_of(&list[1])).expect("reference json");
    assert_eq!(reference["driverName"], "sealbox.filedriver");
    assert!(
        reference["claimData"]["key"]
            .as_str()
            .expect("key")
            .starts_with("v0/ns/payments/d/sha256/")
    );
    assert!(enc.body.len() < 4096, "no payload data in the response");
    // The stored object is sealed: no plaintext on disk.
    let mut files = Vec::new();
    for entry in walk(&dir.path().join("objects")) {
        files.push(std::fs::read(entry).expect("read"));
    }
    assert_eq!(files.len(), 1);
    assert!(!files[0].windows(9).any(|w| w == b"card-4111"));

    // The CLI's /decode resolves; the Web UI's keeps the reference; /download resolves it.
    let dec = post(&app, "/decode", &headers("payments"), &enc.body).await;
    dec.assert_status(StatusCode::OK);
    assert_eq!(data_of(&dec.json()["payloads"][1]), large.as_bytes());
    let ui = post(
        &app,
        "/decode?preserveStorageRefs=TRUE",
        &headers("payments"),
        &enc.body,
    )
    .await;
    let kept = ui.json();
    assert!(is_reference(&kept["payloads"][1]), "{kept}");
    assert_eq!(data_of(&kept["payloads"][0]), b"\"small\"");
    let one = payloads_body(&[&kept["payloads"][1]]);
    let down = post(
        &app,
        "/download?preserveStorageRefs=true",
        &headers("payments"),
        &one,
    )
    .await;
    down.assert_status(StatusCode::OK);
    assert_eq!(data_of(&down.json()["payloads"][0]), large.as_bytes());

    // Not a reference: 400. Another namespace: its key prefix is refused, naming the key.
    let not_ref = json!({"payloads": [plain("\"x\"")]}).to_string();
    let r = post(&app, "/download", &headers("payments"), &not_ref).await;
    r.assert_status(StatusCode::BAD_REQUEST);
    assert!(r.body.contains("not an external-storage reference"));
    let r = post(&app, "/download", &headers("small"), &one).await;
    r.assert_says(StatusCode::BAD_REQUEST, "another namespace");
}

/// With storage on for a namespace, /encode takes payloads up to the storage cap whatever
/// `max_body` says (64 KiB here); without it, `max_body` holds.
#[tokio::test]
async fn body_limits_follow_the_storage_cap() {
    let (_dir, app) = storage_app().await;
    let large = format!("\"{}\"", "z".repeat(1_000_000));
    let body = json!({"payloads": [plain(&large)]}).to_string();
    let stored = post(&app, "/encode", &headers("payments"), &body).await;
    stored.assert_status(StatusCode::OK);
    let refused = post(&app, "/encode", &headers("small"), &body).await;
    refused.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    // Over the storage cap (8 MiB) even where storage is on.
    let huge = format!("\"{}\"", "z".repeat(9 * 1024 * 1024));
    let body = json!({"payloads": [plain(&huge)]}).to_string();
    let r = post(&app, "/encode", &headers("payments"), &body).await;
    r.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
}

/// A namespace with storage off never gets more than Temporal's 2 MiB inline, though the
/// codec behind it accepts storage-sized payloads.
#[tokio::test]
async fn storage_off_still_holds_inline_payloads_to_temporals_limit() {
    let (_dir, app) = storage_app_with("16MiB").await;
    let large = format!("\"{}\"", "card-4111 ".repeat(300_000)); // 3 MB
    let body = json!({"payloads": [plain(&large)]}).to_string();
    let r = post(&app, "/encode", &headers("small"), &body).await;
    r.assert_says(
        StatusCode::BAD_REQUEST,
        "exceeds the limit of 2097152 bytes",
    );
    assert!(!r.body.contains("card-4111"));
    // The same payload in a storing namespace is stored.
    let ok = post(&app, "/encode", &headers("payments"), &body).await;
    ok.assert_status(StatusCode::OK);
}

/// Where the worker's SDK stores (`sdk`), /encode is a pure codec: a 3 MB payload comes back
/// sealed, not offloaded (the SDK offloads it after the codec; never twice), and nothing is
/// written to the store. The namespace checks of references still hold on /decode.
#[tokio::test]
async fn where_the_sdk_stores_encode_only_seals() {
    let (dir, app) = storage_app().await;
    let large = format!("\"{}\"", "card-4111 ".repeat(300_000)); // 3 MB
    let body = json!({"payloads": [plain(&large)]}).to_string();
    let enc = post(&app, "/encode", &headers("python"), &body).await;
    enc.assert_status(StatusCode::OK);
    let sealed = enc.json()["payloads"][0].clone();
    assert!(!is_reference(&sealed), "the SDK stores, not the server");
    assert_eq!(
        sealed["metadata"]["encoding"],
        B64.encode("binary/encrypted")
    );
    assert!(data_of(&sealed).len() > 3_000_000);
    assert!(
        walk(&dir.path().join("objects")).is_empty(),
        "nothing stored"
    );
    let dec = post(
        &app,
        "/decode",
        &headers("python"),
        &payloads_body(&[&sealed]),
    )
    .await;
    dec.assert_status(StatusCode::OK);
    assert_eq!(data_of(&dec.json()["payloads"][0]), large.as_bytes());
    // A reference stored for another namespace does not resolve here.
    let stored = post(&app, "/encode", &headers("pii"), &body).await;
    stored.assert_status(StatusCode::OK);
    let r = &stored.json()["payloads"][0];
    assert!(is_reference(r));
    let elsewhere = post(&app, "/decode", &headers("python"), &payloads_body(&[r])).await;
    assert_ne!(elsewhere.status, StatusCode::OK, "bound to pii, not python");
}

#[tokio::test]
async fn the_threshold_is_per_namespace() {
    let (_dir, app) = storage_app().await;
    let medium = format!("\"{}\"", "m".repeat(4096));
    let body = json!({"payloads": [plain(&medium)]}).to_string();
    for (ns, stored) in [("payments", true), ("small", false)] {
        let enc = post(&app, "/encode", &headers(ns), &body).await;
        assert_eq!(enc.status, StatusCode::OK, "{ns}: {}", enc.body);
        assert_eq!(is_reference(&enc.json()["payloads"][0]), stored, "{ns}");
    }
    let tiny = json!({"payloads": [plain("\"t\"")]}).to_string();
    let enc = post(&app, "/encode", &headers("pii"), &tiny).await;
    assert!(
        is_reference(&enc.json()["payloads"][0]),
        "always: {}",
        enc.body
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
