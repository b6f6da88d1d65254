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

/// Runs one successful and one failing workflow in `namespace` with the codec of
/// `policy`, then checks the raw history.
async fn run_and_check(server: &TemporalDev, policy: &str, namespace: &str, tag: &str) {
    let card = format!("4000-{tag}-0000-SECRET");
    let customer = format!("Confidential Customer {tag}");
    let codec = codec(policy, namespace).await.expect("codec from policy");
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
    let ok_id = format!("ok-{tag}");
    let failed_id = format!("failed-{tag}");
    let drive = async {
        let order = Order {
            customer: customer.clone(),
            card_number: card.clone(),
            amount_cents: 1999,
        };
        let ok = client
            .start_workflow(
                ChargeWorkflow::run,
                order.clone(),
                WorkflowStartOptions::new(TASK_QUEUE, &ok_id).build(),
            )
            .await
            .expect("start")
            .get_result(WorkflowGetResultOptions::default())
            .await
            .map_err(|e| e.to_string());
        let declined = Order {
            amount_cents: 0,
            ..order
        };
        let failed = client
            .start_workflow(
                ChargeWorkflow::run,
                declined,
                WorkflowStartOptions::new(TASK_QUEUE, &failed_id).build(),
            )
            .await
            .expect("start")
            .get_result(WorkflowGetResultOptions::default())
            .await
            .map(|r| r.to_string())
            .map_err(|e| format!("{e:?}"));
        stop();
        (ok, failed)
    };
    let (run, (ok, failed)) = tokio::join!(worker.run(), drive);
    run.expect("worker ran");
    let receipt = ok.expect("the workflow succeeds");
    assert!(receipt.contains(&card), "decoded result: {receipt}");
    let failure = failed.expect_err("the declined charge fails the workflow");
    assert!(
        failure.contains("NonRetryableFailure"),
        "the workflow fails because the activity failed: {failure}"
    );

    for (id, must_have) in [(&ok_id, 4usize), (&failed_id, 3)] {
        let raw = server.cli(&[
            "workflow",
            "show",
            "--namespace",
            namespace,
            "--workflow-id",
            id,
            "--output",
            "json",
        ]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_payloads_are_encrypted_in_history_local_kek_and_openbao() {
    let server = TemporalDev::start(&["tenant-local", "tenant-bao"]);
    let dir = tempfile::tempdir().expect("tempdir");

    // The local development KEK.
    let key_file = dir.path().join("kek");
    sealbox_testkit::write_secret_file(&key_file, &format!("{}\n", B64.encode([7u8; 32])));
    let local_policy = dir.path().join("local.toml");
    std::fs::write(
        &local_policy,
        format!(
            "version = 1\n[default]\nactive = \"local:///e2e?file={}\"\n",
            key_file.display()
        ),
    )
    .expect("policy");
    run_and_check(
        &server,
        &local_policy.to_string_lossy(),
        "tenant-local",
        "local",
    )
    .await;

    // OpenBao Transit.
    let bao = OpenBao::start();
    bao.enable_transit("transit");
    bao.create_key("transit", "temporal-e2e", true);
    let token_file = dir.path().join("token");
    sealbox_testkit::write_secret_file(&token_file, &bao.root_token);
    let bao_policy = dir.path().join("bao.toml");
    std::fs::write(
        &bao_policy,
        format!(
            "version = 1\n[vault]\nauth = \"token\"\ntoken_file = \"{}\"\n[default]\nactive = \"vault+http://{}/transit/keys/temporal-e2e\"\n",
            token_file.display(),
            bao.addr.trim_start_matches("http://")
        ),
    )
    .expect("policy");
    run_and_check(&server, &bao_policy.to_string_lossy(), "tenant-bao", "bao").await;
}
