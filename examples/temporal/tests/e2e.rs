//! End to end against a real Temporal dev server: the example workflow runs through the Rust
//! SDK with the Sealbox codec (local KEK, then OpenBao Transit); the history read back raw
//! with the `temporal` CLI holds no plaintext, and our codec decodes it.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sealbox_example_temporal::{
    ChargeWorkflow, Order, PaymentActivities, TASK_QUEUE, codec, connect,
};
use sealbox_temporal::{CodecChain, Payload, PayloadCodec, SerializationContextData};
use sealbox_testkit::servers::{OpenBao, TemporalDev};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// Every `{metadata, data}` object (a Payload in protobuf JSON) in `v`.
fn payloads_in(v: &serde_json::Value, out: &mut Vec<Payload>) {
    match v {
        serde_json::Value::Object(map) => {
            if let (Some(serde_json::Value::Object(meta)), Some(data)) =
                (map.get("metadata"), map.get("data"))
            {
                let metadata: HashMap<String, Vec<u8>> = meta
                    .iter()
                    .map(|(k, v)| {
                        let text = v.as_str().expect("metadata value is base64 text");
                        (k.clone(), B64.decode(text).expect("metadata base64"))
                    })
                    .collect();
                let data = B64
                    .decode(data.as_str().expect("data is base64 text"))
                    .expect("data base64");
                out.push(Payload {
                    metadata,
                    data,
                    external_payloads: vec![],
                });
            }
            for child in map.values() {
                payloads_in(child, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| payloads_in(i, out)),
        _ => {}
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn decode(codec: &CodecChain, payloads: Vec<Payload>) -> Result<Vec<Payload>, String> {
    codec
        .decode(&SerializationContextData::None, payloads)
        .await
        .map_err(|e| e.to_string())
}

/// Runs each `(workflow ID, order)` through a worker of `namespace` whose data converter
/// uses `codec`; returns each result (a receipt, or the failure).
async fn run_orders(
    server: &TemporalDev,
    namespace: &str,
    codec: &CodecChain,
    orders: Vec<(String, Order)>,
) -> Vec<Result<String, String>> {
    let client = connect(&server.url(), namespace, codec.clone())
        .await
        .expect("connect");
    let runtime = Runtime::from_current_tokio(Default::default()).expect("runtime");
    let options = WorkerOptions::new(TASK_QUEUE)
        .register_workflow::<ChargeWorkflow>()
        .expect("register workflow")
        .register_activities(PaymentActivities)
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options).expect("worker");
    let stop = worker.shutdown_handle();
    let drive = async {
        let mut results = Vec::new();
        for (id, order) in orders {
            let handle = client
                .start_workflow(
                    ChargeWorkflow::run,
                    order,
                    WorkflowStartOptions::new(TASK_QUEUE, &id).build(),
                )
                .await
                .expect("start");
            // A workflow task that keeps failing (e.g. the codec cannot reach its store) is
            // retried forever: fail the test instead of hanging.
            let result = tokio::time::timeout(
                std::time::Duration::from_secs(300),
                handle.get_result(WorkflowGetResultOptions::default()),
            )
            .await
            .unwrap_or_else(|_| {
                panic!("{id} did not complete: its workflow tasks keep failing (worker log above)")
            })
            .map_err(|e| format!("{e:?}"));
            results.push(result);
        }
        stop();
        results
    };
    let (run, results) = tokio::join!(worker.run(), drive);
    run.expect("worker ran");
    results
}

/// The raw history of workflow `id` (`temporal workflow show --output json`).
fn raw_history(server: &TemporalDev, namespace: &str, id: &str) -> String {
    server.cli(&[
        "workflow",
        "show",
        "--namespace",
        namespace,
        "--workflow-id",
        id,
        "--output",
        "json",
    ])
}

/// Runs one successful and one failing workflow in `namespace` with the codec of
/// `policy`, then checks the raw history.
async fn run_and_check(server: &TemporalDev, policy: &str, namespace: &str, tag: &str) {
    let card = format!("4000-{tag}-0000-SECRET");
    let customer = format!("Confidential Customer {tag}");
    let codec = codec(policy, namespace).await.expect("codec from policy");
    let ok_id = format!("ok-{tag}");
    let failed_id = format!("failed-{tag}");
    let order = Order {
        customer: customer.clone(),
        card_number: card.clone(),
        amount_cents: 1999,
    };
    let declined = Order {
        amount_cents: 0,
        ..order.clone()
    };
    let mut results = run_orders(
        server,
        namespace,
        &codec,
        vec![(ok_id.clone(), order), (failed_id.clone(), declined)],
    )
    .await
    .into_iter();
    let (ok, failed) = (results.next().expect("ok"), results.next().expect("failed"));
    let receipt = ok.expect("the workflow succeeds");
    assert!(receipt.contains(&card), "decoded result: {receipt}");
    let failure = failed.expect_err("the declined charge fails the workflow");
    assert!(
        failure.contains("NonRetryableFailure"),
        "the workflow fails because the activity failed: {failure}"
    );

    for (id, must_have) in [(&ok_id, 4usize), (&failed_id, 3)] {
        let raw = raw_history(server, namespace, id);
        for secret in [&card, &customer] {
            assert!(
                !raw.contains(secret.as_str()),
                "plaintext in the raw history of {id}"
            );
        }
        let history: serde_json::Value = serde_json::from_str(&raw).expect("history JSON");
        let mut payloads = Vec::new();
        payloads_in(&history, &mut payloads);
        let sealed: Vec<Payload> = payloads
            .into_iter()
            .filter(|p| p.metadata.get("encoding").map(Vec::as_slice) != Some(b"binary/null"))
            .collect();
        assert!(
            sealed.len() >= must_have,
            "{id}: expected at least {must_have} payloads, found {}",
            sealed.len()
        );
        for p in &sealed {
            assert_eq!(
                p.metadata.get("encoding").map(Vec::as_slice),
                Some(&b"binary/encrypted"[..]),
                "{id}: every payload in the history is encrypted"
            );
            assert_eq!(
                p.metadata.get("sealbox-format").map(Vec::as_slice),
                Some(&b"sealbox-envelope/1"[..])
            );
            assert!(!contains(&p.data, &card) && !contains(&p.data, &customer));
        }
        let decoded = decode(&codec, sealed.clone())
            .await
            .expect("decode history");
        assert!(
            decoded.iter().any(|p| contains(&p.data, &card)),
            "{id}: the codec finds the card number in the decoded history"
        );
        if id == &failed_id {
            assert!(raw.contains("Encoded failure"), "failure message replaced");
            assert!(
                decoded
                    .iter()
                    .any(|p| contains(&p.data, "declined") && contains(&p.data, &card)),
                "{id}: the failure message is in an encrypted attribute payload"
            );
        }
        // Bound to the namespace: the same policy's codec for another namespace refuses them.
        let other = codec_for_other_namespace(policy, namespace).await;
        let err = decode(&other, sealed).await.expect_err("another namespace");
        assert!(err.contains("encryption context"), "{err}");
    }
}

async fn codec_for_other_namespace(policy: &str, namespace: &str) -> CodecChain {
    codec(policy, &format!("{namespace}-other"))
        .await
        .expect("codec")
}

/// A `[default]` table whose active KEK is a local one, its key (32 bytes of `byte`) written
/// to `dir/kek`.
fn local_kek_default(dir: &std::path::Path, byte: u8) -> String {
    let key_file = dir.join("kek");
    sealbox_testkit::write_secret_file(&key_file, &format!("{}\n", B64.encode([byte; 32])));
    format!(
        "[default]\nactive = \"local:///e2e?file={}\"\n",
        key_file.display()
    )
}

/// Writes the policy `text` to `dir/name`; returns the file's path.
fn write_policy(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("policy");
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_payloads_are_encrypted_in_history_local_kek_and_openbao() {
    let server = TemporalDev::start(&["tenant-local", "tenant-bao"]);
    let dir = tempfile::tempdir().expect("tempdir");

    // The local development KEK.
    let local = format!("version = 1\n{}", local_kek_default(dir.path(), 7));
    let local_policy = write_policy(dir.path(), "local.toml", &local);
    run_and_check(&server, &local_policy, "tenant-local", "local").await;

    // OpenBao Transit.
    let bao = OpenBao::start_with_transit_keys(&["temporal-e2e"]);
    let bao_policy = write_policy(
        dir.path(),
        "bao.toml",
        &bao.token_policy(dir.path(), "temporal-e2e"),
    );
    run_and_check(&server, &bao_policy, "tenant-bao", "bao").await;
}

/// The protobuf bytes of every object in `store`.
async fn stored_objects(store: &dyn object_store::ObjectStore) -> Vec<Vec<u8>> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let metas: Vec<_> = store.list(None).try_collect().await.expect("list");
    let mut out = Vec::new();
    for m in metas {
        let got = store.get(&m.location).await.expect("get");
        out.push(got.bytes().await.expect("bytes").to_vec());
    }
    out
}

/// A 3 MB order (over Temporal's 2 MB limit) in namespace `namespace`, whose policy stores
/// in `store`: the workflow completes; its history holds only references; every stored object
/// is a Sealbox envelope with no plaintext; the codec resolves the references to the order,
/// and another namespace's codec does not.
async fn big_order_is_stored(
    server: &TemporalDev,
    policy: &str,
    namespace: &str,
    store: &dyn object_store::ObjectStore,
) {
    use prost::Message;
    let card = format!("4000-{namespace}-STORED");
    let customer = "Stored Customer ".repeat(200_000); // 3.2 MB
    let codec = codec(policy, namespace).await.expect("codec from policy");
    let id = format!("big-order-{namespace}");
    let order = Order {
        customer: customer.clone(),
        card_number: card.clone(),
        amount_cents: 42,
    };
    let receipt = run_orders(server, namespace, &codec, vec![(id.clone(), order)])
        .await
        .remove(0)
        .expect("a 3 MB order completes");
    assert!(receipt.contains(&card) && receipt.len() > 3_000_000);

    let raw = raw_history(server, namespace, &id);
    assert!(
        raw.len() < 100_000,
        "the history holds references, not megabytes ({} bytes)",
        raw.len()
    );
    assert!(!raw.contains(&card) && !raw.contains("Stored Customer"));
    let history: serde_json::Value = serde_json::from_str(&raw).expect("history JSON");
    let mut payloads = Vec::new();
    payloads_in(&history, &mut payloads);
    let references: Vec<Payload> = payloads
        .into_iter()
        .filter(sealbox_temporal::storage::is_plain_reference)
        .collect();
    // The workflow input, the activity's input and result, the workflow result.
    assert_eq!(references.len(), 4, "{raw}");

    let objects = stored_objects(store).await;
    assert_eq!(objects.len(), 4, "one object per large payload");
    for bytes in &objects {
        let p = Payload::decode(bytes.as_slice()).expect("a stored object is a Payload");
        assert!(
            sealbox_temporal::sealbox_envelope(&p).is_some(),
            "stored objects are Sealbox envelopes"
        );
        assert!(!contains(bytes, &card) && !contains(bytes, "Stored Customer"));
    }
    let decoded = decode(&codec, references.clone())
        .await
        .expect("the codec resolves and opens the references");
    assert!(decoded.iter().all(|p| contains(&p.data, &card)));
    let other = codec_for_other_namespace(policy, namespace).await;
    let err = decode(&other, references)
        .await
        .expect_err("another namespace");
    assert!(err.contains("another namespace"), "{err}");
}

/// External storage with the Rust SDK: the policy's `[storage]` is a local directory for one
/// namespace, S3 (moto) for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_go_to_external_storage_local_directory_and_s3() {
    let server = TemporalDev::start(&["tenant-files", "tenant-s3"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let active = local_kek_default(dir.path(), 8);

    let objects = dir.path().join("objects");
    let files_text = format!(
        "version = 1\n[storage]\nurl = \"file://{}\"\n{active}",
        objects.display()
    );
    let files_policy = write_policy(dir.path(), "files.toml", &files_text);
    std::fs::create_dir_all(&objects).expect("objects dir");
    let local = object_store::local::LocalFileSystem::new_with_prefix(&objects).expect("fs");
    big_order_is_stored(&server, &files_policy, "tenant-files", &local).await;

    let moto = sealbox_testkit::servers::Moto::start();
    let bucket = moto.create_bucket("payloads");
    let secret = dir.path().join("s3-secret");
    sealbox_testkit::write_secret_file(&secret, "testing");
    let s3_text = format!(
        "version = 1\n[storage]\nurl = \"s3://{bucket}\"\n\
         options = {{ aws_endpoint = \"{}\", aws_region = \"us-east-1\", aws_access_key_id = \"testing\", \
         aws_secret_access_key_file = \"{}\" }}\n{active}",
        moto.endpoint,
        secret.display()
    );
    let s3_policy = write_policy(dir.path(), "s3.toml", &s3_text);
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(&bucket)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .expect("s3");
    big_order_is_stored(&server, &s3_policy, "tenant-s3", &s3).await;
}
