//! External storage end to end, in Temporal's standard format, against real servers: the
//! Temporal dev server, S3 on moto, and Temporal's Python SDK with its official
//! `S3StorageDriver` as the foreign client (`tests/python_external_storage.py`). Sealbox
//! reads what the official driver writes and the official driver reads what Sealbox writes,
//! in one bucket; the `temporal` CLI shows the originals through the codec server.

use sealbox_testkit::servers::{Moto, TemporalDev, find_tool, json_stdout, workspace_root};

use super::*;

const TOKEN: &str = "extstore-token-0123456789abcdef";
const BUCKET: &str = "temporal-payloads";

/// A codec server storing in `s3://BUCKET` on moto: namespace `stored` stores payloads of
/// 256 KiB and more itself; in `python` the worker's SDK stores (`sdk`).
async fn codec_server(dir: &std::path::Path, moto: &Moto) -> String {
    let key = dir.join("kek");
    sealbox_testkit::write_secret_file(&key, &B64.encode([6u8; 32]));
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let secret = dir.join("s3-secret");
    sealbox_testkit::write_secret_file(&secret, "testing");
    let text = format!(
        "version = 1\n[storage]\nurl = \"s3://{BUCKET}\"\n\
         options = {{ aws_endpoint = \"{endpoint}\", aws_region = \"us-east-1\", \
         aws_access_key_id = \"testing\", aws_secret_access_key_file = \"{secret}\" }}\n\
         [default]\nactive = \"local:///extstore?file={key}\"\n\
         [[rule]]\nnamespace = \"python\"\nactive = \"local:///extstore?file={key}\"\nexternal_storage = \"sdk\"\n\
         [server]\naudit_log = \"{audit}\"\n\
         [[server.token]]\nname = \"e2e\"\ntoken_file = \"{token}\"\nnamespaces = [\"*\"]\npermissions = [\"encode\", \"decode\"]\n",
        endpoint = moto.endpoint,
        key = key.display(),
        audit = dir.join("audit.jsonl").display(),
        token = token.display(),
        secret = secret.display(),
    );
    serve_on_loopback(state_from(&dir.join("policy.toml"), &text).await).await
}

/// Runs the Python SDK worker and client (`tests/python_external_storage.py`) in
/// `namespace`: one workflow whose input is `size` bytes of text.
async fn python_workflow(
    temporal: &TemporalDev,
    moto: &Moto,
    endpoint: &str,
    namespace: &str,
    workflow_id: &str,
    size: usize,
) -> Value {
    let python = find_tool(
        "python",
        "python3 -m venv .tools/venv (scripts/setup-tools.sh)",
    );
    let script = workspace_root().join("crates/sealbox-server/tests/python_external_storage.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            &temporal.address,
            endpoint,
            namespace,
            &format!("Bearer {TOKEN}"),
            BUCKET,
            workflow_id,
            &size.to_string(),
        ])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .await
        .expect("run the Python SDK");
    json_stdout("Python SDK worker (external storage) failed", &out)
}

/// Every object in the bucket: key and bytes.
async fn bucket_objects(moto: &Moto) -> Vec<(String, Vec<u8>)> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(BUCKET)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .expect("s3");
    let metas: Vec<_> = object_store::ObjectStore::list(&s3, None)
        .try_collect()
        .await
        .expect("list");
    let mut out = Vec::new();
    for m in metas {
        let bytes = s3.get(&m.location).await.expect("get");
        out.push((
            m.location.to_string(),
            bytes.bytes().await.expect("bytes").to_vec(),
        ));
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The base64 the CLI prints for the start of the workflow's (JSON string) input: 42 bytes,
/// a multiple of 3, so it is a prefix of the whole payload's base64.
fn visible_input() -> String {
    B64.encode(&b"\"Sealbox external storage SECRET-CARD-4111 Sealbox"[..42])
}

/// `temporal workflow show` of `workflow_id`, raw or through the codec server.
fn show(temporal: &TemporalDev, namespace: &str, workflow_id: &str, codec: Option<&str>) -> String {
    let auth = format!("Bearer {TOKEN}");
    let mut args = vec![
        "workflow",
        "show",
        "--namespace",
        namespace,
        "--workflow-id",
        workflow_id,
        "--output",
        "json",
    ];
    if let Some(endpoint) = codec {
        args.extend(["--codec-endpoint", endpoint, "--codec-auth", &auth]);
    }
    temporal
        .try_cli(&args)
        .unwrap_or_else(|e| panic!("temporal workflow show {workflow_id}: {e}"))
}

/// The external-storage references among the payloads of a history (protobuf JSON).
fn references_in(history: &str) -> Vec<Value> {
    fn walk(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(map) => {
                let message_type = map
                    .get("metadata")
                    .and_then(|m| m.get("messageType"))
                    .and_then(Value::as_str);
                if message_type == Some(&B64.encode("temporal.api.sdk.v1.ExternalStorageReference"))
                {
                    out.push(v.clone());
                }
                map.values().for_each(|c| walk(c, out));
            }
            Value::Array(items) => items.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let parsed: Value = serde_json::from_str(history).expect("history JSON");
    let mut out = Vec::new();
    walk(&parsed, &mut out);
    out
}

/// POSTs `payload`, alone in a request body, to the codec server at `endpoint`.
async fn post(endpoint: &str, path: &str, namespace: &str, payload: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{endpoint}{path}"))
        .header("X-Namespace", namespace)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .json(&json!({ "payloads": [payload] }))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_s3_driver_and_sealbox_read_each_others_objects() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let temporal = TemporalDev::start(&["stored", "python"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = codec_server(dir.path(), &moto).await;
    let size = 3_000_000; // over Temporal's 2 MB payload limit

    // 1. Sealbox stores (namespace `stored`): the codec server offloads the sealed 3 MB
    //    payloads; the Python SDK's driver retrieves them for the worker.
    let stored_id = "stored run:1";
    let result = python_workflow(&temporal, &moto, &endpoint, "stored", stored_id, size).await;
    assert_eq!(result["length"], size);
    assert_eq!(result["sha256"], result["input_sha256"]);

    // 2. The SDK's driver stores (namespace `python`): the codec server only seals, and
    //    reads back what the driver wrote.
    let python_id = "python run:2";
    let result = python_workflow(&temporal, &moto, &endpoint, "python", python_id, size).await;
    assert_eq!(result["length"], size);
    assert_eq!(result["sha256"], result["input_sha256"]);

    // The bucket: Sealbox's keys for `stored`, the official driver's (percent-encoded
    // workflow ID) for `python`; every object a sealed payload without plaintext.
    let objects = bucket_objects(&moto).await;
    let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        keys.iter().any(|k| k.starts_with("v0/ns/stored/d/sha256/")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("v0/ns/python/wt/Measure/wi/python%20run%3A2/")),
        "{keys:?}"
    );
    for (key, bytes) in &objects {
        use prost::Message;
        let payload = sealbox_temporal::Payload::decode(bytes.as_slice()).expect("a Payload");
        assert!(
            sealbox_temporal::sealbox_envelope(&payload).is_some(),
            "{key}: a Sealbox envelope"
        );
        assert!(!contains(bytes, b"SECRET-CARD"), "{key}: plaintext");
    }

    for (namespace, id) in [("stored", stored_id), ("python", python_id)] {
        // The raw history holds references only: small, no plaintext.
        let raw = show(&temporal, namespace, id, None);
        assert!(raw.len() < 100_000, "{id}: {} bytes of history", raw.len());
        assert!(!raw.contains("SECRET-CARD") && !raw.contains(&visible_input()));
        let references = references_in(&raw);
        assert!(!references.is_empty(), "{id}: no reference in\n{raw}");
        // Through the codec server, the CLI shows the original input.
        let decoded = show(&temporal, namespace, id, Some(&endpoint));
        assert!(
            decoded.contains(&visible_input()),
            "{id}: the CLI shows the input through the codec server"
        );
        // /download returns the original; /decode?preserveStorageRefs=true the reference.
        let (status, body) = post(&endpoint, "/download", namespace, &references[0]).await;
        assert_eq!(status, 200, "{id}: {body}");
        let data = B64
            .decode(body["payloads"][0]["data"].as_str().expect("data"))
            .expect("base64");
        assert!(data.starts_with(b"\"Sealbox external storage SECRET-CARD-4111"));
        let (status, body) = post(
            &endpoint,
            "/decode?preserveStorageRefs=true",
            namespace,
            &references[0],
        )
        .await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(body["payloads"][0], references[0], "{id}: kept as it is");
        // Another namespace's caller gets no plaintext from it.
        let other = if namespace == "stored" {
            "python"
        } else {
            "stored"
        };
        let (status, body) = post(&endpoint, "/download", other, &references[0]).await;
        assert!(
            (400..500).contains(&status),
            "{id} from {other}: {status} {body}"
        );
        assert!(!body.to_string().contains("SECRET-CARD"));
    }
}
