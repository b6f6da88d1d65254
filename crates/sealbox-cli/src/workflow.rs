//! `sealbox rotate … --temporal` and `sealbox worker rotate`: the rotation (and the
//! inventory) as Temporal workflows on the rotation workers.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use sealbox_policy::PolicyKeyrings;
use sealbox_rotate::temporal::{self, TemporalSource};
use sealbox_rotate::{Inventory, Mode, Shard};

use crate::rotate::{RewriteArgs, Target, finish, load_policy};
use crate::{Failure, fail};

/// Where the rotation workflow runs.
#[derive(clap::Args)]
pub(crate) struct TemporalArgs {
    /// Run as a Temporal workflow on the workers (`sealbox worker rotate`) of this frontend:
    /// HOST:PORT or temporal://HOST:PORT[?tls=…] (TLS and API key as for temporal:// stores).
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) temporal: Option<String>,
    /// The Temporal namespace the workflow runs in (not a tenant: envelopes keep theirs).
    #[arg(long, value_name = "NS", default_value = "default")]
    pub(crate) temporal_namespace: String,
    /// The task queue of the rotation workers.
    #[arg(long, value_name = "QUEUE", default_value = sealbox_rotate::workflow::TASK_QUEUE)]
    pub(crate) task_queue: String,
}

impl TemporalArgs {
    /// The frontend and namespace as a `temporal://` source.
    pub(crate) fn source(&self, address: &str) -> Result<TemporalSource, Failure> {
        frontend(address).map(|s| s.with_namespace(&self.temporal_namespace))
    }
}

/// `--temporal ADDRESS` (`HOST:PORT` or `temporal://HOST:PORT[?tls=…]`) as a source; its
/// namespace is a placeholder for the caller to replace (`TemporalSource::with_namespace`).
pub(crate) fn frontend(address: &str) -> Result<TemporalSource, Failure> {
    let base = if temporal::is_temporal_url(address) {
        address.to_owned()
    } else {
        format!("temporal://{address}")
    };
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h.to_owned(), format!("?{q}")),
        None => (base.clone(), String::new()),
    };
    let url = format!("{}/_{query}", head.trim_end_matches('/'));
    TemporalSource::from_url_and_env(&url).map_err(|e| fail(2, format!("--temporal: {e}")))
}

/// A new workflow ID: `sealbox-rotate-WHAT-PID-MILLIS`.
fn workflow_id(what: &str) -> String {
    format!(
        "sealbox-rotate-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    )
}

/// `rotate inventory --temporal`: the inventory as a workflow; the inventory and how to name
/// what it counted.
pub(crate) async fn inventory_on_temporal(
    target: &Target,
    temporal: &TemporalArgs,
    address: &str,
    shards: u32,
    concurrency: usize,
) -> Result<(Inventory, String), Failure> {
    if shards == 0 {
        return Err(fail(2, "--shards must be at least 1"));
    }
    let policy = Arc::new(load_policy(target).await?);
    let source = temporal.source(address)?;
    let client = sealbox_rotate::workflow::client(&source, policy)
        .await
        .map_err(|e| fail(1, e))?;
    let request = sealbox_rotate::workflow::InventoryRequest {
        store: target.store.clone().into(),
        shards,
        concurrency: u32::try_from(concurrency.max(1)).unwrap_or(16),
        heartbeat_timeout_secs: 30,
    };
    let id = workflow_id("inventory");
    let inv =
        sealbox_rotate::workflow::execute_inventory(&client, &id, &temporal.task_queue, request)
            .await
            .map_err(|e| fail(1, e))?;
    Ok((
        inv,
        format!(
            "{} (workflow {id})",
            sealbox_rotate::store::redact_url(&target.store)
        ),
    ))
}

/// `rotate rewrap|reencrypt --temporal`: the rotation as a workflow on the rotation workers.
pub(crate) async fn rewrite_on_temporal(
    mode: Mode,
    args: &RewriteArgs,
    address: &str,
) -> Result<(), Failure> {
    if args.checkpoint.is_some() || args.shard != Shard::ALL {
        return Err(fail(
            2,
            "with --temporal, progress is kept by the workflow (heartbeats): --checkpoint and \
             --shard do not apply (use --shards N)",
        ));
    }
    if args.shards == 0 {
        return Err(fail(2, "--shards must be at least 1"));
    }
    // The policy gives the codec of the workflow's own payloads; the workers rotate.
    let policy = Arc::new(load_policy(&args.target).await?);
    let source = args.temporal.source(address)?;
    let client = sealbox_rotate::workflow::client(&source, policy)
        .await
        .map_err(|e| fail(1, e))?;
    let mut request =
        sealbox_rotate::workflow::RotationRequest::new(args.target.store.clone(), mode);
    request.dry_run = args.dry_run;
    request.shards = args.shards;
    request.parallel = args.shards;
    request.concurrency = u32::try_from(args.concurrency.max(1)).unwrap_or(16);
    request.kms_rate = args.kms_rate.map(NonZeroU32::get);
    request.heartbeat_timeout_secs = args.heartbeat_timeout.as_secs().max(1);
    request.shards_per_run = args.shards_per_run.max(1);
    let id = workflow_id(mode.done_word());
    if !args.json {
        eprintln!(
            "workflow {id} on {} (task queue {}), {} shards",
            source.describe(),
            args.temporal.task_queue,
            args.shards
        );
    }
    let report =
        sealbox_rotate::workflow::execute(&client, &id, &args.temporal.task_queue, request)
            .await
            .map_err(|e| fail(1, e))?;
    finish(mode, args, &report, Some(&id))
}

/// `sealbox worker rotate`: runs rotation workflows and their shard activities until SIGTERM
/// or Ctrl-C.
pub(crate) async fn worker(config: &Path, temporal: &TemporalArgs) -> Result<(), Failure> {
    let address = temporal
        .temporal
        .as_deref()
        .ok_or_else(|| fail(2, "--temporal ADDRESS is required"))?;
    let policy = Arc::new(
        PolicyKeyrings::load(config)
            .await
            .map_err(|e| fail(2, format!("{}: {e}", config.display())))?,
    );
    let source = temporal.source(address)?;
    let client = sealbox_rotate::workflow::client(&source, policy.clone())
        .await
        .map_err(|e| fail(1, e))?;
    eprintln!(
        "rotation worker on {} (task queue {}); SIGTERM or Ctrl-C stops",
        source.describe(),
        temporal.task_queue
    );
    let stop = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
    };
    sealbox_rotate::workflow::run_worker(client, policy, &temporal.task_queue, stop)
        .await
        .map_err(|e| fail(1, format!("rotation worker: {e}")))
}
