//! `temporal://` inventory and check against histories written through the Sealbox codec on
//! a real Temporal dev server: workflow inputs, memos, signals, results and failures (with a
//! nested cause) sealed under two KEKs, plus plaintext payloads (user metadata, termination
//! details), an external-storage reference and, in a second namespace, a damaged envelope.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealbox_policy::PolicyKeyrings;
use sealbox_rotate::Retire;
use sealbox_rotate::temporal::{self, ScanOptions, TemporalError, TemporalSource};
use sealbox_temporal::{
    EXTERNAL_STORAGE_REFERENCE_TYPE, FORMAT_ENVELOPE_V1, Payload, SealboxCodec, data_converter,
};
use sealbox_testkit::servers::{TemporalDev, free_port};
use temporalio_client::grpc::WorkflowService;
use temporalio_client::tonic::IntoRequest;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, UntypedSignal, UntypedWorkflow,
    UntypedWorkflowHandle, WorkflowSignalOptions, WorkflowStartOptions, WorkflowTerminateOptions,
};
use temporalio_common::MemoValues;
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::command::v1::{
    Command, CompleteWorkflowExecutionCommandAttributes, FailWorkflowExecutionCommandAttributes,
    command,
};
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::protos::temporal::api::enums::v1::{CommandType, TaskQueueKind};
use temporalio_common::protos::temporal::api::failure::v1::{
    ApplicationFailureInfo, Failure, failure::FailureInfo,
};
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    ListWorkflowExecutionsRequest, PollWorkflowTaskQueueRequest,
    RespondWorkflowTaskCompletedRequest,
};

use crate::engine::{keys, policy};

/// The namespace whose histories hold envelopes under two KEKs.
const NS: &str = "rotation";
/// A namespace whose only history holds a damaged envelope.
const DAMAGED_NS: &str = "rotation-damaged";
/// A namespace with no histories: proven free of any KEK.
const EMPTY_NS: &str = "rotation-empty";

fn json(value: &str) -> Payload {
    Payload {
        metadata: HashMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
        data: serde_json::to_vec(value).expect("json"),
        ..Payload::default()
    }
}

/// A plain (unsealed) external-storage reference, as an SDK with claim check writes it.
fn reference() -> Payload {
    Payload {
        metadata: HashMap::from([
            ("encoding".to_owned(), b"json/protobuf".to_vec()),
            (
                "messageType".to_owned(),
                EXTERNAL_STORAGE_REFERENCE_TYPE.as_bytes().to_vec(),
            ),
        ]),
        data: br#"{"driverName":"aws.s3driver","claimData":{"bucket":"b","key":"k"}}"#.to_vec(),
        ..Payload::default()
    }
}

async fn connection(address: &str) -> Connection {
    let url = url::Url::parse(&format!("http://{address}")).expect("url");
    Connection::connect(
        ConnectionOptions::new(url)
            .identity("sealbox-rotate-test".to_owned())
            .build(),
    )
    .await
    .expect("connect to the dev server")
}

/// A codec sealing under `policy`'s active KEK for [`NS`].
fn codec(policy: &Arc<PolicyKeyrings>) -> SealboxCodec {
    SealboxCodec::from_policy(policy.clone(), NS)
        .build()
        .expect("codec")
}

fn client(connection: &Connection, namespace: &str, codec: Option<SealboxCodec>) -> Client {
    let options = match codec {
        Some(c) => ClientOptions::new(namespace.to_owned())
            .data_converter(data_converter(c))
            .build(),
        None => ClientOptions::new(namespace.to_owned()).build(),
    };
    Client::new(connection.clone(), options).expect("client")
}

async fn start(
    client: &Client,
    id: &str,
    input: Payload,
    options: WorkflowStartOptions,
) -> (UntypedWorkflowHandle<Client>, String) {
    let handle = client
        .start_workflow(
            UntypedWorkflow::new("Charge"),
            RawValue::new(vec![input]),
            options,
        )
        .await
        .unwrap_or_else(|e| panic!("start {id}: {e}"));
    let run_id = handle.info().run_id.clone().expect("run id");
    (handle, run_id)
}

async fn signal(handle: &UntypedWorkflowHandle<Client>, value: &str) {
    handle
        .signal(
            UntypedSignal::new("poke"),
            RawValue::new(vec![json(value)]),
            WorkflowSignalOptions::default(),
        )
        .await
        .expect("signal");
}

/// Starts workflow `id` with `input` on the task queue `tq-{id}`, with no other options.
async fn start_plain(
    client: &Client,
    id: &str,
    input: Payload,
) -> (UntypedWorkflowHandle<Client>, String) {
    let options = WorkflowStartOptions::new(format!("tq-{id}"), id).build();
    start(client, id, input, options).await
}

/// Acts as the worker for one workflow task on `task_queue`: answers it with a command of
/// `command_type` with `attributes`.
async fn answer_task(
    connection: &Connection,
    task_queue: &str,
    command_type: CommandType,
    attributes: command::Attributes,
) {
    let command = Command {
        command_type: command_type as i32,
        attributes: Some(attributes),
        ..Command::default()
    };
    let mut svc = connection.clone();
    let task = svc
        .poll_workflow_task_queue(
            PollWorkflowTaskQueueRequest {
                namespace: NS.into(),
                task_queue: Some(TaskQueue {
                    name: task_queue.into(),
                    kind: TaskQueueKind::Normal as i32,
                    ..TaskQueue::default()
                }),
                identity: "sealbox-rotate-test".into(),
                ..PollWorkflowTaskQueueRequest::default()
            }
            .into_request(),
        )
        .await
        .expect("poll")
        .into_inner();
    assert!(
        !task.task_token.is_empty(),
        "no workflow task on {task_queue}"
    );
    svc.respond_workflow_task_completed(
        RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token,
            commands: vec![command],
            identity: "sealbox-rotate-test".into(),
            namespace: NS.into(),
            ..RespondWorkflowTaskCompletedRequest::default()
        }
        .into_request(),
    )
    .await
    .expect("respond");
}

async fn sealed(codec: &SealboxCodec, value: &str) -> Payload {
    let mut out = codec
        .encode_payloads(vec![json(value)])
        .await
        .expect("seal");
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// Waits (bounded) until visibility lists `runs` in `namespace`: listing is eventually
/// consistent on the dev server.
async fn await_visible(connection: &Connection, namespace: &str, runs: &[&str]) {
    let want: HashSet<&str> = runs.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut svc = connection.clone();
    loop {
        let listed = svc
            .list_workflow_executions(
                ListWorkflowExecutionsRequest {
                    namespace: namespace.into(),
                    page_size: 100,
                    ..ListWorkflowExecutionsRequest::default()
                }
                .into_request(),
            )
            .await
            .expect("list")
            .into_inner();
        let seen: HashSet<String> = listed
            .executions
            .into_iter()
            .filter_map(|e| e.execution.map(|e| e.run_id))
            .collect();
        if want.iter().all(|r| seen.contains(*r)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "visibility never listed {want:?} in {namespace} (saw {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn name(kek: &sealbox_core::KekRef) -> String {
    format!("{}:{}", kek.provider(), kek.key_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_check_walk_every_history_of_a_namespace() {
    let server = TemporalDev::start(&[NS, DAMAGED_NS, EMPTY_NS]);
    let k = keys();
    // Policy A seals under `local:///old`, policy B under `local:///new`.
    let policy_a = Arc::new(policy(&k.old, &[], 100).await);
    let policy_b = Arc::new(policy(&k.new, &[k.old.as_str()], 100).await);
    let (codec_a, codec_b) = (codec(&policy_a), codec(&policy_b));
    let conn = connection(&server.address).await;
    let client_a = client(&conn, NS, Some(codec_a.clone()));
    let client_b = client(&conn, NS, Some(codec_b.clone()));

    // a-1: sealed input, memo, signal and result (A); a plaintext summary (user metadata).
    let mut memo = MemoValues::new();
    memo.insert("customer", "Ada Lovelace".to_owned());
    let (a1, run_a1) = start(
        &client_a,
        "a-1",
        json("card 4111 1111 1111 1111"),
        WorkflowStartOptions::new("tq-a-1", "a-1")
            .memo(memo)
            .static_summary("charge a-1")
            .build(),
    )
    .await;
    signal(&a1, "retry please").await;
    let result = sealed(&codec_a, "receipt a-1").await;
    answer_task(
        &conn,
        "tq-a-1",
        CommandType::CompleteWorkflowExecution,
        command::Attributes::CompleteWorkflowExecutionCommandAttributes(
            CompleteWorkflowExecutionCommandAttributes {
                result: Some(Payloads {
                    payloads: vec![result],
                }),
            },
        ),
    )
    .await;

    // a-2: sealed input and signal (A); terminated with plaintext details and a reference.
    let (a2, run_a2) = start_plain(&client_a, "a-2", json("card 5500 0000 0000 0004")).await;
    signal(&a2, "hold").await;
    a2.terminate(
        WorkflowTerminateOptions::builder()
            .reason("test")
            .details(Payloads {
                payloads: vec![json("terminated by the test"), reference()],
            })
            .build(),
    )
    .await
    .expect("terminate");

    // b-1: sealed input (B); failed with a sealed failure whose cause is sealed too.
    let (_b1, run_b1) = start_plain(&client_b, "b-1", json("card 3714 496353 98431")).await;
    let failure = Failure {
        message: "Encoded failure".into(),
        encoded_attributes: Some(
            sealed(&codec_b, r#"{"message":"card declined","stack_trace":""}"#).await,
        ),
        cause: Some(Box::new(Failure {
            message: "Encoded failure".into(),
            encoded_attributes: Some(
                sealed(&codec_b, r#"{"message":"issuer said no","stack_trace":""}"#).await,
            ),
            ..Failure::default()
        })),
        failure_info: Some(FailureInfo::ApplicationFailureInfo(
            ApplicationFailureInfo {
                r#type: "Declined".into(),
                non_retryable: true,
                ..ApplicationFailureInfo::default()
            },
        )),
        ..Failure::default()
    };
    answer_task(
        &conn,
        "tq-b-1",
        CommandType::FailWorkflowExecution,
        command::Attributes::FailWorkflowExecutionCommandAttributes(
            FailWorkflowExecutionCommandAttributes {
                failure: Some(failure),
            },
        ),
    )
    .await;

    // b-2: sealed input (B), left running.
    let (_b2, run_b2) = start_plain(&client_b, "b-2", json("card 6011 0009 9013 9424")).await;

    // The damaged namespace: an input marked as a Sealbox envelope whose data is not one
    // (written through a client without a codec, so it reaches history as it is).
    let raw = client(&conn, DAMAGED_NS, None);
    let mut bad = json("not an envelope");
    bad.metadata
        .insert("encoding".into(), b"binary/encrypted".to_vec());
    bad.metadata.insert(
        "sealbox-format".into(),
        FORMAT_ENVELOPE_V1.as_bytes().to_vec(),
    );
    let (_d, run_d) = start_plain(&raw, "d-1", bad).await;

    await_visible(&conn, NS, &[&run_a1, &run_a2, &run_b1, &run_b2]).await;
    await_visible(&conn, DAMAGED_NS, &[&run_d]).await;

    // Inventory, with tiny pages (listing and history paging) and with the defaults.
    let source =
        TemporalSource::parse(&format!("temporal://{}/{NS}", server.address)).expect("url");
    let paged = ScanOptions {
        concurrency: 2,
        list_page_size: 1,
        history_page_size: 2,
        ..ScanOptions::default()
    };
    let inv = temporal::inventory(&source, &paged, &name)
        .await
        .expect("inventory");
    assert_eq!(
        temporal::inventory(&source, &ScanOptions::default(), &name)
            .await
            .expect("inventory"),
        inv,
        "paging changes nothing"
    );
    assert_eq!(inv.executions, 4, "{inv:?}");
    let per_kek: BTreeMap<&str, u64> = inv
        .inventory
        .by_kek
        .iter()
        .map(|k| (k.kek.as_str(), k.count))
        .collect();
    // A: a-1 input, memo, signal, result; a-2 input, signal. B: b-1 input, failure and its
    // cause; b-2 input.
    assert_eq!(
        per_kek,
        BTreeMap::from([("local:new", 4), ("local:old", 6)]),
        "{inv:?}"
    );
    assert!(
        inv.inventory
            .by_kek
            .iter()
            .all(|k| k.bytes > 0 && k.external == 0)
    );
    // The summary (user metadata) and the termination details (a JSON payload and a
    // reference) are plaintext.
    assert_eq!(inv.inventory.not_envelopes, 3, "{inv:?}");
    assert_eq!(inv.external_references, 1, "{inv:?}");
    assert_eq!(inv.inventory.damaged, 0);
    assert_eq!(inv.inventory.total, 13);
    assert!(inv.events >= 4 * 2, "{inv:?}");

    // check: a KEK present → 1 with examples naming the events.
    let old = Retire::resolve(&k.old, &policy_a).await.expect("resolve");
    let hit = temporal::check(&source, &old, None, &paged).await;
    assert_eq!(hit.exit_code(), 1, "{hit:?}");
    assert_eq!(hit.report.in_use, 6);
    // Every history was read; only the unresolved reference keeps the scan from complete.
    assert_eq!(hit.errors.len(), 1, "{hit:?}");
    assert!(
        hit.errors[0].contains("external-storage reference"),
        "{hit:?}"
    );
    assert_eq!(hit.report.scanned, 13);
    assert_eq!(hit.executions, 4);
    assert!(
        hit.report.examples.contains(&format!("a-1/{run_a1}#1")),
        "the started event of a-1 holds a sealed input: {:?}",
        hit.report.examples
    );
    assert!(
        hit.report
            .examples
            .iter()
            .all(|e| e.starts_with(&format!("a-1/{run_a1}#"))
                || e.starts_with(&format!("a-2/{run_a2}#"))),
        "{:?}",
        hit.report.examples
    );
    let new = Retire::resolve(&k.new, &policy_b).await.expect("resolve");
    let hit = temporal::check(&source, &new, None, &ScanOptions::default()).await;
    assert_eq!((hit.exit_code(), hit.report.in_use), (1, 4), "{hit:?}");
    assert!(
        hit.report.examples.contains(&format!("b-2/{run_b2}#1")),
        "{:?}",
        hit.report.examples
    );

    // check: a KEK absent (or a version no envelope names) is in no payload, every history
    // walked; but the namespace holds an external-storage reference whose object is not
    // checked here, so it is not proven free: 3, never 0.
    let gone = Retire::KeyId {
        provider: "local".into(),
        key_id: "gone".into(),
    };
    for (retire, version) in [(&gone, None), (&old, Some("999"))] {
        let free = temporal::check(&source, retire, version, &paged).await;
        assert_eq!((free.exit_code(), free.report.in_use), (3, 0), "{free:?}");
        assert!(!free.report.complete && free.report.examples.is_empty());
        assert_eq!((free.report.scanned, free.executions), (13, 4));
        assert_eq!(free.external_references, 1);
        assert!(
            free.errors
                .iter()
                .any(|e| e.contains("external-storage reference"))
        );
    }

    // A namespace listed to the end with nothing in it is free: 0.
    let empty =
        TemporalSource::parse(&format!("temporal://{}/{EMPTY_NS}", server.address)).expect("url");
    let free = temporal::check(&empty, &gone, None, &paged).await;
    assert_eq!(free.exit_code(), 0, "{free:?}");
    assert!(free.report.complete);

    // A damaged envelope makes the scan incomplete, never "free".
    let damaged =
        TemporalSource::parse(&format!("temporal://{}/{DAMAGED_NS}", server.address)).expect("url");
    let inv = temporal::inventory(&damaged, &paged, &name)
        .await
        .expect("inventory");
    assert_eq!(
        (inv.inventory.total, inv.inventory.damaged, inv.executions),
        (1, 1, 1)
    );
    let incomplete = temporal::check(&damaged, &gone, None, &paged).await;
    assert_eq!(incomplete.exit_code(), 3, "{incomplete:?}");
    assert_eq!(incomplete.report.damaged, 1);

    // A namespace that does not exist cannot be listed: incomplete, and inventory fails.
    let missing =
        TemporalSource::parse(&format!("temporal://{}/no-such-namespace", server.address))
            .expect("url");
    let report = temporal::check(&missing, &gone, None, &paged).await;
    assert_eq!(report.exit_code(), 3, "{report:?}");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("no-such-namespace")),
        "{report:?}"
    );
    assert!(matches!(
        temporal::inventory(&missing, &paged, &name).await,
        Err(TemporalError::List { .. })
    ));
}

#[tokio::test]
async fn an_unreachable_frontend_is_incomplete_never_free() {
    let source = TemporalSource::parse(&format!("temporal://127.0.0.1:{}/default", free_port()))
        .expect("url");
    let gone = Retire::KeyId {
        provider: "local".into(),
        key_id: "gone".into(),
    };
    let report = temporal::check(&source, &gone, None, &ScanOptions::default()).await;
    assert_eq!(report.exit_code(), 3, "{report:?}");
    assert!(!report.report.complete);
    assert!(
        report.errors.iter().any(|e| e.contains("cannot connect")),
        "{report:?}"
    );
    assert!(matches!(
        temporal::inventory(&source, &ScanOptions::default(), &name).await,
        Err(TemporalError::Connect { .. })
    ));
}

/// `sealbox storage gc`'s engine against a real dev server: of three stored objects, the one
/// a workflow's input references stays, the unreferenced one goes (listed only on a dry run,
/// kept while younger than `min_age`), and an object of a namespace Temporal does not know
/// makes the run incomplete: nothing is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_gc_deletes_only_what_no_history_references() {
    use sealbox_rotate::gc::{GcOptions, gc};
    use sealbox_temporal::storage::{ObjectStoreDriver, StorageCodec, Threshold};

    const GC_NS: &str = "storage-gc";
    let server = TemporalDev::start(&[GC_NS]);
    let k = keys();
    let policy = Arc::new(policy(&k.new, &[], 100).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().join("objects").display());
    let driver = ObjectStoreDriver::open(&url, 8 << 20).expect("driver");
    let storing = |namespace: &str| {
        let sealbox = SealboxCodec::from_policy(policy.clone(), namespace)
            .build()
            .expect("codec");
        StorageCodec::new(
            sealbox,
            Arc::new(ObjectStoreDriver::open(&url, 8 << 20).expect("driver")),
        )
        .threshold(Threshold::Always)
    };
    let stored = storing(GC_NS)
        .encode_payloads(vec![json("kept card 4111"), json("orphan card 5500")])
        .await
        .expect("store");
    let (kept, orphan) = (stored[0].clone(), stored[1].clone());
    let key_of = |p: &Payload| {
        sealbox_temporal::storage::ExternalStorageReference::from_payload(p)
            .expect("a reference")
            .expect("parses")
            .claim_data["key"]
            .clone()
    };
    let (kept_key, orphan_key) = (key_of(&kept), key_of(&orphan));

    // Only `kept` enters a history (as the workflow's input, sent as is).
    let conn = connection(&server.address).await;
    let (_, run) = start_plain(&client(&conn, GC_NS, None), "gc-1", kept.clone()).await;
    await_visible(&conn, GC_NS, &[&run]).await;

    let source = TemporalSource::parse(&format!("temporal://{}/_", server.address)).expect("url");
    let listed = |r: &sealbox_rotate::gc::GcReport| r.unreferenced_keys.clone();
    let options = |min_age: Duration, dry_run: bool| GcOptions {
        min_age,
        dry_run,
        ..GcOptions::default()
    };
    let keys_now = || async {
        let mut keys: Vec<String> = driver
            .list_objects()
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        keys
    };
    let both = {
        let mut v = vec![kept_key.clone(), orphan_key.clone()];
        v.sort();
        v
    };

    // Young objects are kept whatever the histories say.
    let young = gc(&driver, &source, &options(Duration::from_secs(3600), false)).await;
    assert!(young.complete, "{young:?}");
    assert_eq!(
        (young.referenced, young.young, young.deleted),
        (1, 1, 0),
        "{young:?}"
    );
    assert_eq!(keys_now().await, both);

    // A dry run lists the orphan and deletes nothing.
    let dry = gc(&driver, &source, &options(Duration::ZERO, true)).await;
    assert_eq!(dry.exit_code(), 0, "{dry:?}");
    assert_eq!(listed(&dry), vec![orphan_key.clone()]);
    assert_eq!((dry.referenced, dry.deleted), (1, 0));
    assert_eq!(dry.namespaces, vec![GC_NS.to_owned()]);
    assert!(dry.executions >= 1);
    assert_eq!(keys_now().await, both);

    // An object of a namespace Temporal does not know: incomplete, nothing deleted.
    storing("no-such-namespace")
        .encode_payloads(vec![json("stray")])
        .await
        .expect("store");
    let incomplete = gc(&driver, &source, &options(Duration::ZERO, false)).await;
    assert_eq!(incomplete.exit_code(), 3, "{incomplete:?}");
    assert_eq!(incomplete.deleted, 0);
    assert!(
        incomplete
            .errors
            .iter()
            .any(|e| e.contains("no-such-namespace")),
        "{:?}",
        incomplete.errors
    );
    assert_eq!(keys_now().await.len(), 3);

    // Scoped to the namespace that exists: the orphan goes, the referenced object stays
    // and still resolves; the other namespace's object is out of scope, kept.
    let done = gc(
        &driver,
        &source,
        &GcOptions {
            namespaces: Some(vec![GC_NS.to_owned()]),
            ..options(Duration::ZERO, false)
        },
    )
    .await;
    assert_eq!(done.exit_code(), 0, "{done:?}");
    assert_eq!(
        (done.deleted, done.referenced, done.out_of_scope),
        (1, 1, 1)
    );
    let left = keys_now().await;
    assert!(
        left.contains(&kept_key) && !left.contains(&orphan_key),
        "{left:?}"
    );
    let opened = storing(GC_NS)
        .decode_payloads(vec![kept], false)
        .await
        .expect("the referenced object still resolves");
    assert_eq!(
        opened[0].data,
        serde_json::to_vec("kept card 4111").expect("json")
    );
    let gone = storing(GC_NS).decode_payloads(vec![orphan], false).await;
    assert!(gone.is_err(), "the orphan is gone");

    // temporal:// inventory and check read the object the history references from the
    // store (the history itself holds only the plain reference): counted under its KEK as
    // external; without the store it stays unresolved and the KEK is never proven free.
    let history = source.with_namespace(GC_NS);
    let with_store = ScanOptions {
        storage: Some(Arc::new(
            ObjectStoreDriver::open(&url, 8 << 20).expect("driver"),
        )),
        ..ScanOptions::default()
    };
    let inv = temporal::inventory(&history, &with_store, &name)
        .await
        .expect("inventory");
    assert_eq!(
        (inv.inventory.external_objects, inv.unresolved_references),
        (1, 0),
        "{inv:?}"
    );
    let on_new = inv
        .inventory
        .by_kek
        .iter()
        .find(|k| k.key_id == "new")
        .expect("the stored object's KEK");
    assert_eq!((on_new.count, on_new.external), (1, 1));
    let blind = temporal::inventory(&history, &ScanOptions::default(), &name)
        .await
        .expect("inventory");
    assert_eq!(
        (
            blind.inventory.external_objects,
            blind.unresolved_references
        ),
        (0, 1)
    );
    let retire_new = Retire::resolve(&k.new, &policy).await.expect("resolve");
    let hit = temporal::check(&history, &retire_new, None, &with_store).await;
    assert_eq!(hit.exit_code(), 1, "{hit:?}");
    assert!(hit.report.complete);
    assert_eq!(hit.report.external_in_use, 1);
    assert!(hit.report.examples[0].starts_with("external:v0/ns/storage-gc/"));
    let unproven = temporal::check(&history, &retire_new, None, &ScanOptions::default()).await;
    assert_eq!(unproven.exit_code(), 3, "{unproven:?}");
}
