//! External storage through the codec server: `/encode` seals then stores, `/decode`
//! resolves references (or preserves them for the Web UI), `/download` returns originals;
//! references from the caller are checked.

use super::*;

/// A server whose policy stores payloads of 1 KiB and more in a local directory (namespace
/// `payments`), none for `small`, every payload for `pii`; for `python` the worker's SDK
/// stores (the server only seals).
async fn storage_app(dir: &std::path::Path) -> Router {
    storage_app_with(dir, "64KiB").await
}

async fn storage_app_with(dir: &std::path::Path, max_body: &str) -> Router {
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
    app(state_from(&dir.join("policy.toml"), &text).await)
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
    let dir = tempfile::tempdir().expect("tempdir");
    let app = storage_app(dir.path()).await;
    let large = format!("\"{}\"", "card-4111 ".repeat(300_000)); // 3 MB
    let body = json!({"payloads": [plain("\"small\""), plain(&large)]}).to_string();
    let enc = call(&app, Method::POST, "/encode", &headers("payments"), &body).await;
    assert_eq!(enc.status, StatusCode::OK, "{}", enc.body);
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
    let dec = call(
        &app,
        Method::POST,
        "/decode",
        &headers("payments"),
        &enc.body,
    )
    .await;
    assert_eq!(dec.status, StatusCode::OK, "{}", dec.body);
    assert_eq!(data_of(&dec.json()["payloads"][1]), large.as_bytes());
    let ui = call(
        &app,
        Method::POST,
        "/decode?preserveStorageRefs=TRUE",
        &headers("payments"),
        &enc.body,
    )
    .await;
    let kept = ui.json();
    assert!(is_reference(&kept["payloads"][1]), "{kept}");
    assert_eq!(data_of(&kept["payloads"][0]), b"\"small\"");
    let one = json!({"payloads": [kept["payloads"][1]]}).to_string();
    let down = call(
        &app,
        Method::POST,
        "/download?preserveStorageRefs=true",
        &headers("payments"),
        &one,
    )
    .await;
    assert_eq!(down.status, StatusCode::OK, "{}", down.body);
    assert_eq!(data_of(&down.json()["payloads"][0]), large.as_bytes());

    // Not a reference: 400. Another namespace: its key prefix is refused, naming the key.
    let not_ref = json!({"payloads": [plain("\"x\"")]}).to_string();
    let r = call(
        &app,
        Method::POST,
        "/download",
        &headers("payments"),
        &not_ref,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("not an external-storage reference"));
    let r = call(&app, Method::POST, "/download", &headers("small"), &one).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("another namespace"), "{}", r.body);
}

/// With storage on for a namespace, /encode takes payloads up to the storage cap whatever
/// `max_body` says (64 KiB here); without it, `max_body` holds.
#[tokio::test]
async fn body_limits_follow_the_storage_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = storage_app(dir.path()).await;
    let large = format!("\"{}\"", "z".repeat(1_000_000));
    let body = json!({"payloads": [plain(&large)]}).to_string();
    let stored = call(&app, Method::POST, "/encode", &headers("payments"), &body).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    let refused = call(&app, Method::POST, "/encode", &headers("small"), &body).await;
    assert_eq!(
        refused.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        refused.body
    );
    // Over the storage cap (8 MiB) even where storage is on.
    let huge = format!("\"{}\"", "z".repeat(9 * 1024 * 1024));
    let body = json!({"payloads": [plain(&huge)]}).to_string();
    let r = call(&app, Method::POST, "/encode", &headers("payments"), &body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
}

/// A namespace with storage off never gets more than Temporal's 2 MiB inline, though the
/// codec behind it accepts storage-sized payloads.
#[tokio::test]
async fn storage_off_still_holds_inline_payloads_to_temporals_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = storage_app_with(dir.path(), "16MiB").await;
    let large = format!("\"{}\"", "card-4111 ".repeat(300_000)); // 3 MB
    let body = json!({"payloads": [plain(&large)]}).to_string();
    let r = call(&app, Method::POST, "/encode", &headers("small"), &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("exceeds the limit of 2097152 bytes"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("card-4111"));
    // The same payload in a storing namespace is stored.
    let ok = call(&app, Method::POST, "/encode", &headers("payments"), &body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

/// Where the worker's SDK stores (`sdk`), /encode is a pure codec: a 3 MB payload comes back
/// sealed, not offloaded (the SDK offloads it after the codec; never twice), and nothing is
/// written to the store. The namespace checks of references still hold on /decode.
#[tokio::test]
async fn where_the_sdk_stores_encode_only_seals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = storage_app(dir.path()).await;
    let large = format!("\"{}\"", "card-4111 ".repeat(300_000)); // 3 MB
    let body = json!({"payloads": [plain(&large)]}).to_string();
    let enc = call(&app, Method::POST, "/encode", &headers("python"), &body).await;
    assert_eq!(enc.status, StatusCode::OK, "{}", enc.body);
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
    let dec = call(
        &app,
        Method::POST,
        "/decode",
        &headers("python"),
        &json!({"payloads": [sealed]}).to_string(),
    )
    .await;
    assert_eq!(dec.status, StatusCode::OK, "{}", dec.body);
    assert_eq!(data_of(&dec.json()["payloads"][0]), large.as_bytes());
    // A reference stored for another namespace does not resolve here.
    let stored = call(&app, Method::POST, "/encode", &headers("pii"), &body).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    let r = &stored.json()["payloads"][0];
    assert!(is_reference(r));
    let elsewhere = call(
        &app,
        Method::POST,
        "/decode",
        &headers("python"),
        &json!({"payloads": [r]}).to_string(),
    )
    .await;
    assert_ne!(elsewhere.status, StatusCode::OK, "bound to pii, not python");
}

#[tokio::test]
async fn the_threshold_is_per_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = storage_app(dir.path()).await;
    let medium = format!("\"{}\"", "m".repeat(4096));
    let body = json!({"payloads": [plain(&medium)]}).to_string();
    for (ns, stored) in [("payments", true), ("small", false)] {
        let enc = call(&app, Method::POST, "/encode", &headers(ns), &body).await;
        assert_eq!(enc.status, StatusCode::OK, "{ns}: {}", enc.body);
        assert_eq!(is_reference(&enc.json()["payloads"][0]), stored, "{ns}");
    }
    let tiny = json!({"payloads": [plain("\"t\"")]}).to_string();
    let enc = call(&app, Method::POST, "/encode", &headers("pii"), &tiny).await;
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
