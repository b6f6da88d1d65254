//! The rotation as a Temporal workflow: one store split into shards, each shard a
//! heartbeating activity, run by as many workers as there are (`sealbox worker rotate`).
//!
//! [`RotationWorkflow`] runs the shards `0/N … N-1/N` of a store (at most `parallel` at
//! once) as [`RotationActivities::rotate_shard`] activities and returns their summed
//! [`Report`]. Each activity runs [`crate::run`] on its shard and heartbeats its
//! [`Position`] (the last finished page and the counts so far) every few seconds; the
//! heartbeat timeout is short, so the activity of a killed worker is retried on another
//! worker, which resumes from the last heartbeat (objects done since are seen again: rewrap
//! skips them, reencrypt re-encrypts them — correct either way, as with a checkpoint file).
//! After `shards_per_run` shards the workflow continues as new, carrying the next shard and
//! the report so far, so its history stays small however many shards there are.
//!
//! Requests carry the store's URL and the options; keep credentials in the workers'
//! environment (a password in a `postgres://` URL would travel in the request, sealed). The
//! workers hold the key policy; the workflow's own payloads (the request and the reports,
//! which name objects) go through the Sealbox codec of the client's data converter.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, ContinueAsNewOptions, WorkflowContext, WorkflowResult,
};

use crate::{Inventory, Mode, Position, Progress, Report, RunOptions, Shard, open_store, run};

/// The task queue rotation workers poll by default.
pub const TASK_QUEUE: &str = "sealbox-rotate";

/// A store's URL in a workflow's input: it may hold a password (`postgres://u:p@…`), so its
/// `Debug` is redacted; in history it is sealed by the codec like every payload.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(pub String);

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::store::redact_url(&self.0))
    }
}

impl From<String> for StoreUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for StoreUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

/// Opens the shard `index`/`count` of `store`; bad input fails without retries.
async fn open_shard(
    store: &StoreUrl,
    index: u32,
    count: u32,
) -> Result<(Shard, Arc<dyn crate::Store>), ActivityError> {
    let shard = Shard::new(index, count).ok_or_else(|| {
        ApplicationFailure::non_retryable(format!("shard {index}/{count} does not exist"))
    })?;
    let opened = open_store(&store.0)
        .await
        .map_err(|e| ApplicationFailure::non_retryable(format!("store {store:?}: {e}")))?;
    Ok((shard, opened))
}

/// Heartbeats every third of the heartbeat timeout.
fn heartbeat_every(timeout_secs: u64) -> Duration {
    Duration::from_secs(timeout_secs.max(1)).div_f64(3.0)
}

/// What to rotate, and how (see [`RotationWorkflow`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRequest {
    /// The store's URL (`file:///…`, `s3://…`, `postgres://…`); credentials come from the
    /// workers' environment, never from the request.
    pub store: StoreUrl,
    /// Rewrap or reencrypt.
    pub mode: Mode,
    /// Change nothing; count what would change.
    pub dry_run: bool,
    /// Shards the store is split into (each an activity).
    pub shards: u32,
    /// Shards in flight at once.
    pub parallel: u32,
    /// Shards per workflow run; then it continues as new.
    pub shards_per_run: u32,
    /// Objects in flight at once within a shard.
    pub concurrency: u32,
    /// At most this many KMS calls per second, per shard.
    pub kms_rate: Option<u32>,
    /// How long a shard's activity may go without a heartbeat before it is retried
    /// elsewhere (it heartbeats every third of it).
    pub heartbeat_timeout_secs: u64,
    /// The first shard this run starts (carried across continue-as-new).
    pub next_shard: u32,
    /// The report of the shards done by earlier runs.
    pub done: Report,
}

impl RotationRequest {
    /// A request with defaults: 8 shards, all in flight, 256 per run, 16 objects in flight,
    /// a 30 s heartbeat timeout.
    pub fn new(store: impl Into<StoreUrl>, mode: Mode) -> Self {
        Self {
            store: store.into(),
            mode,
            dry_run: false,
            shards: 8,
            parallel: 8,
            shards_per_run: 256,
            concurrency: 16,
            kms_rate: None,
            heartbeat_timeout_secs: 30,
            next_shard: 0,
            done: Report::default(),
        }
    }
}

/// One shard of a request: the input of [`RotationActivities::rotate_shard`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardTask {
    /// The store's URL.
    pub store: StoreUrl,
    /// Rewrap or reencrypt.
    pub mode: Mode,
    /// Change nothing.
    pub dry_run: bool,
    /// This shard.
    pub index: u32,
    /// Of this many.
    pub count: u32,
    /// Objects in flight at once.
    pub concurrency: u32,
    /// KMS calls per second.
    pub kms_rate: Option<u32>,
    /// Heartbeat timeout in seconds.
    pub heartbeat_timeout_secs: u64,
}

/// Adds `other`'s counts to `into`.
pub fn merge(into: &mut Report, other: Report) {
    into.scanned += other.scanned;
    into.changed += other.changed;
    into.would_change += other.would_change;
    into.skipped += other.skipped;
    into.not_envelopes += other.not_envelopes;
    into.external_objects += other.external_objects;
    into.conflicts.extend(other.conflicts);
    into.failed.extend(other.failed);
    into.kms_calls += other.kms_calls;
}

/// The rotation of one store, shard by shard (see the [module documentation](self)).
#[workflow]
#[derive(Default)]
pub struct RotationWorkflow;

#[workflow_methods]
impl RotationWorkflow {
    /// Runs the request's shards from `next_shard`; returns the summed report.
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: RotationRequest,
    ) -> WorkflowResult<Report> {
        let mut request = request;
        let end = request.shards.min(
            request
                .next_shard
                .saturating_add(request.shards_per_run.max(1)),
        );
        while request.next_shard < end {
            let batch_end = end.min(request.next_shard.saturating_add(request.parallel.max(1)));
            let heartbeat = Duration::from_secs(request.heartbeat_timeout_secs.max(1));
            let runs: Vec<_> = (request.next_shard..batch_end)
                .map(|index| {
                    let task = ShardTask {
                        store: request.store.clone(),
                        mode: request.mode,
                        dry_run: request.dry_run,
                        index,
                        count: request.shards,
                        concurrency: request.concurrency,
                        kms_rate: request.kms_rate,
                        heartbeat_timeout_secs: request.heartbeat_timeout_secs,
                    };
                    let options = ActivityOptions::with_start_to_close_timeout(
                        Duration::from_secs(7 * 24 * 3600),
                    )
                    .heartbeat_timeout(heartbeat)
                    .activity_id(format!("shard-{index}-of-{}", request.shards))
                    .build();
                    ctx.execute_activity(RotationActivities::rotate_shard, task, options)
                })
                .collect();
            for report in futures::future::join_all(runs).await {
                merge(&mut request.done, report?);
            }
            request.next_shard = batch_end;
        }
        if request.next_shard < request.shards {
            match ctx.continue_as_new(request, ContinueAsNewOptions::default()) {
                Err(termination) => return Err(termination),
                Ok(never) => match never {},
            }
        }
        Ok(request.done)
    }
}

/// An inventory of one store, shard by shard: the input of [`InventoryWorkflow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRequest {
    /// The store's URL.
    pub store: StoreUrl,
    /// Shards (each an activity; all in flight at once).
    pub shards: u32,
    /// Objects read at once within a shard.
    pub concurrency: u32,
    /// Heartbeat timeout of a shard's activity, in seconds.
    pub heartbeat_timeout_secs: u64,
}

/// One shard of an inventory: the input of [`RotationActivities::inventory_shard`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryTask {
    /// The store's URL.
    pub store: StoreUrl,
    /// This shard.
    pub index: u32,
    /// Of this many.
    pub count: u32,
    /// Objects read at once.
    pub concurrency: u32,
    /// Heartbeat timeout in seconds.
    pub heartbeat_timeout_secs: u64,
}

/// Counts a store's objects per KEK and version, shard by shard on the rotation workers (a
/// shard whose worker dies is counted again elsewhere).
#[workflow]
#[derive(Default)]
pub struct InventoryWorkflow;

#[workflow_methods]
impl InventoryWorkflow {
    /// Runs every shard; returns the merged inventory.
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: InventoryRequest,
    ) -> WorkflowResult<Inventory> {
        let heartbeat = Duration::from_secs(request.heartbeat_timeout_secs.max(1));
        let runs: Vec<_> = (0..request.shards.max(1))
            .map(|index| {
                let task = InventoryTask {
                    store: request.store.clone(),
                    index,
                    count: request.shards.max(1),
                    concurrency: request.concurrency,
                    heartbeat_timeout_secs: request.heartbeat_timeout_secs,
                };
                let options =
                    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(24 * 3600))
                        .heartbeat_timeout(heartbeat)
                        .activity_id(format!("inventory-{index}-of-{}", request.shards))
                        .build();
                ctx.execute_activity(RotationActivities::inventory_shard, task, options)
            })
            .collect();
        let mut total = Inventory::default();
        for inventory in futures::future::join_all(runs).await {
            total.merge(inventory?);
        }
        Ok(total)
    }
}

/// Runs `work`, recording a heartbeat (`details()`) every `every` until it ends.
async fn heartbeating<T, D>(
    ctx: &ActivityContext,
    every: Duration,
    work: impl std::future::Future<Output = T>,
    details: impl Fn() -> D,
) -> Result<T, ActivityError>
where
    D: temporalio_common::data_converters::TemporalSerializable + 'static,
{
    tokio::pin!(work);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            done = &mut work => return Ok(done),
            _ = tick.tick() => ctx.record_heartbeat(details()).await?,
        }
    }
}

/// The activities of [`RotationWorkflow`]: they hold the key policy of the worker.
pub struct RotationActivities {
    policy: Arc<sealbox_policy::PolicyKeyrings>,
}

impl RotationActivities {
    /// Activities that rotate under `policy` (each envelope's namespace's active KEK).
    pub fn new(policy: Arc<sealbox_policy::PolicyKeyrings>) -> Self {
        Self { policy }
    }
}

/// Keeps the latest position for the heartbeat loop.
struct Latest(Mutex<Position>);

impl Progress for Latest {
    fn update(&self, _: &Report) {}

    fn position(&self, position: &Position) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = position.clone();
    }
}

#[activities]
impl RotationActivities {
    /// Runs one shard, resuming from the last heartbeat's position; heartbeats its position
    /// every third of the heartbeat timeout. Usage errors (a bad store URL, a bad shard) fail
    /// without retries; anything else is retried.
    #[activity]
    pub async fn rotate_shard(
        self: Arc<Self>,
        ctx: ActivityContext,
        task: ShardTask,
    ) -> Result<Report, ActivityError> {
        let resume: Option<Position> = ctx.heartbeat_details().deserialize::<Position>()?;
        let (shard, store) = open_shard(&task.store, task.index, task.count).await?;
        let latest = Arc::new(Latest(Mutex::new(resume.clone().unwrap_or_default())));
        let mut options = RunOptions::new(task.mode);
        options.dry_run = task.dry_run;
        options.shard = shard;
        options.concurrency = usize::try_from(task.concurrency).unwrap_or(16).max(1);
        options.kms_rate = task.kms_rate.and_then(std::num::NonZeroU32::new);
        options.resume = resume;
        options.progress = Some(latest.clone());
        let every = heartbeat_every(task.heartbeat_timeout_secs);
        let work = run(&self.policy, store.as_ref(), &options);
        let done = heartbeating(&ctx, every, work, || {
            latest.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
        })
        .await?;
        done.map_err(|e| ActivityError::from(ApplicationFailure::new(e)))
    }

    /// Counts one shard of a store (heartbeating while it reads; a retry counts the shard
    /// again from the start).
    #[activity]
    pub async fn inventory_shard(
        self: Arc<Self>,
        ctx: ActivityContext,
        task: InventoryTask,
    ) -> Result<Inventory, ActivityError> {
        let (shard, store) = open_shard(&task.store, task.index, task.count).await?;
        let policy = self.policy.clone();
        let name = move |kek: &sealbox_core::KekRef| {
            policy.uri_of(kek).map_or_else(
                || format!("{}:{}", kek.provider(), kek.key_id()),
                ToString::to_string,
            )
        };
        let every = heartbeat_every(task.heartbeat_timeout_secs);
        let concurrency = usize::try_from(task.concurrency).unwrap_or(16).max(1);
        let work = crate::inventory(store.as_ref(), shard, concurrency, &name);
        let done = heartbeating(&ctx, every, work, || ()).await?;
        done.map_err(|e| ActivityError::from(ApplicationFailure::new(e)))
    }
}

/// A client of `source`'s namespace whose data converter seals with `policy`'s codec for that
/// namespace (the workflow's own payloads: requests and reports).
pub async fn client(
    source: &crate::temporal::TemporalSource,
    policy: Arc<sealbox_policy::PolicyKeyrings>,
) -> Result<temporalio_client::Client, String> {
    let connection = source.connect().await.map_err(|e| e.to_string())?;
    let codec = sealbox_temporal::CodecChain::from_policy(policy, source.namespace())
        .map_err(|e| format!("the codec of namespace `{}`: {e}", source.namespace()))?;
    let options = temporalio_client::ClientOptions::new(source.namespace().to_owned())
        .data_converter(sealbox_temporal::data_converter(codec))
        .build();
    temporalio_client::Client::new(connection, options).map_err(|e| e.to_string())
}

/// Runs a rotation worker on `task_queue` until `stop` resolves (then it finishes the tasks
/// it holds and returns).
pub async fn run_worker(
    client: temporalio_client::Client,
    policy: Arc<sealbox_policy::PolicyKeyrings>,
    task_queue: &str,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())
        .map_err(|e| e.to_string())?;
    let options = temporalio_sdk::WorkerOptions::new(task_queue)
        .register_workflow::<RotationWorkflow>()
        .map_err(|e| e.to_string())?
        .register_workflow::<InventoryWorkflow>()
        .map_err(|e| e.to_string())?
        .register_activities(RotationActivities::new(policy))
        .build();
    let mut worker =
        temporalio_sdk::Worker::new(&runtime, client, options).map_err(|e| e.to_string())?;
    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        stop.await;
        shutdown();
    });
    worker.run().await.map_err(|e| e.to_string())
}

/// Starts a [`RotationWorkflow`] with `request` as workflow `id` on `task_queue` and waits
/// for its report (following continue-as-new).
pub async fn execute(
    client: &temporalio_client::Client,
    id: &str,
    task_queue: &str,
    request: RotationRequest,
) -> Result<Report, String> {
    start_and_wait(client, id, task_queue, RotationWorkflow::run, request).await
}

/// Starts an [`InventoryWorkflow`] as workflow `id` on `task_queue` and waits for it.
pub async fn execute_inventory(
    client: &temporalio_client::Client,
    id: &str,
    task_queue: &str,
    request: InventoryRequest,
) -> Result<Inventory, String> {
    start_and_wait(client, id, task_queue, InventoryWorkflow::run, request).await
}

/// Starts `workflow` with `input` as workflow `id` on `task_queue`; waits for its result.
async fn start_and_wait<W>(
    client: &temporalio_client::Client,
    id: &str,
    task_queue: &str,
    workflow: W,
    input: W::Input,
) -> Result<W::Output, String>
where
    W: temporalio_common::HasWorkflowDefinition,
    W::Input: Send,
{
    use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
    let handle = client
        .start_workflow(
            workflow,
            input,
            WorkflowStartOptions::new(task_queue, id).build(),
        )
        .await
        .map_err(|e| format!("start workflow {id}: {e}"))?;
    handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .map_err(|e| format!("workflow {id}: {e}"))
}
