//! `sealbox rotate …`: inventory, rewrap, reencrypt and check over a store of envelopes.

use std::io::{IsTerminal, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sealbox_policy::PolicyKeyrings;
use sealbox_rotate::temporal::{self, ScanOptions, TemporalError, TemporalSource};
use sealbox_rotate::{Mode, Progress, Report, Retire, RunOptions, Shard, Store};
use serde_json::json;

use crate::{Failure, fail};

/// What to rotate.
#[derive(clap::Subcommand)]
pub(crate) enum RotateCommand {
    /// Count a store's objects per KEK and version (and what is not an envelope or damaged).
    Inventory {
        #[command(flatten)]
        target: Target,
        /// Only this shard of the keys (I/N).
        #[arg(long, value_name = "I/N", default_value = "0/1")]
        shard: Shard,
        /// Objects read at once.
        #[arg(long, value_name = "N", default_value_t = 16)]
        concurrency: usize,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        temporal: crate::workflow::TemporalArgs,
        /// With --temporal: shards of the store, each an activity on the rotation workers.
        #[arg(long, value_name = "N", default_value_t = 8)]
        shards: u32,
    },
    /// Wrap every envelope's data key with its namespace's active KEK (current version);
    /// the ciphertext is untouched.
    Rewrap(RewriteArgs),
    /// Seal every envelope's plaintext again under a fresh data key (suspected data-key leak).
    Reencrypt(RewriteArgs),
    /// Exit 0 when the store is proven free of a KEK (and version), 1 when it is still in
    /// use, 2 for usage or policy errors, 3 when the scan was incomplete.
    Check(CheckArgs),
}

/// What `rotate check` checks, and how it answers.
#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    target: Target,
    /// The KEK to retire (any URI form the policy's providers resolve: alias, ARN,
    /// host-less vault:///…).
    #[arg(long, value_name = "KEK_URI")]
    retire: String,
    /// Only this KEK version.
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// Objects read at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    concurrency: usize,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

/// The policy and the store.
#[derive(clap::Args)]
pub(crate) struct Target {
    /// The key-policy file (its KEKs are connected).
    #[arg(long, env = "SEALBOX_CONFIG", value_name = "FILE")]
    pub(crate) config: PathBuf,
    /// The store: file:///DIR or a path, s3://BUCKET/PREFIX, postgres://…?table=T&column=C&key=K, memory://;
    /// or temporal://HOST:PORT/NAMESPACE (workflow histories: inventory and check only).
    #[arg(long, value_name = "URL")]
    pub(crate) store: String,
}

/// Options of rewrap and reencrypt.
#[derive(clap::Args)]
pub(crate) struct RewriteArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Change nothing; report what would change.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Save progress here after every page; a rerun with the same file resumes.
    #[arg(long, value_name = "FILE")]
    pub(crate) checkpoint: Option<PathBuf>,
    /// Only this shard of the keys (I/N); N processes with 0/N … N-1/N cover every key once.
    #[arg(long, value_name = "I/N", default_value = "0/1")]
    pub(crate) shard: Shard,
    /// Objects in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// At most N KMS calls per second.
    #[arg(long, value_name = "N")]
    pub(crate) kms_rate: Option<NonZeroU32>,
    /// Print one JSON document (no progress bar).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) temporal: crate::workflow::TemporalArgs,
    /// With --temporal: shards of the store, each a heartbeating activity.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub(crate) shards: u32,
    /// With --temporal: a shard's activity that has not heartbeated for this long (its
    /// worker died) is retried on another worker, from its last heartbeat.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub(crate) heartbeat_timeout: Duration,
    /// With --temporal: shards per workflow run, after which the workflow continues as new
    /// (its history stays small however many shards there are).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub(crate) shards_per_run: u32,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    sealbox_core::scheme::duration_setting(s, 0..0, "duration").map_err(|e| e.message)
}

pub(crate) async fn rotate(command: RotateCommand) -> Result<(), Failure> {
    match command {
        RotateCommand::Inventory {
            target,
            shard,
            concurrency,
            json,
            ..
        } if temporal::is_temporal_url(&target.store) => {
            temporal_inventory(&target, shard, concurrency, json).await
        }
        RotateCommand::Inventory {
            target,
            shard,
            concurrency,
            json,
            temporal,
            shards,
        } => {
            let (inv, described) = match temporal.temporal.as_deref() {
                Some(address) => {
                    if shard != Shard::ALL {
                        return Err(fail(2, "with --temporal, use --shards N, not --shard"));
                    }
                    crate::workflow::inventory_on_temporal(
                        &target,
                        &temporal,
                        address,
                        shards,
                        concurrency,
                    )
                    .await?
                }
                None => {
                    let (policy, store) = open(&target).await?;
                    let name = |kek: &sealbox_core::KekRef| kek_name(&policy, kek);
                    let inv = sealbox_rotate::inventory(store.as_ref(), shard, concurrency, &name)
                        .await
                        .map_err(|e| fail(1, format!("inventory of {}: {e}", store.describe())))?;
                    (inv, store.describe())
                }
            };
            if json {
                let v = json!({
                    "total": inv.total,
                    "by_kek": inv.by_kek,
                    "not_envelopes": inv.not_envelopes,
                    "damaged": inv.damaged,
                    "external_objects": inv.external_objects,
                });
                out!("{v}");
            } else {
                out!("{} objects in {described}", inv.total);
                print_by_kek(&inv.by_kek);
                out!(
                    "  not envelopes {}, damaged {}",
                    inv.not_envelopes,
                    inv.damaged
                );
            }
            Ok(())
        }
        RotateCommand::Rewrap(args) => rewrite(Mode::Rewrap, args).await,
        RotateCommand::Reencrypt(args) => rewrite(Mode::Reencrypt, args).await,
        RotateCommand::Check(args) if temporal::is_temporal_url(&args.target.store) => {
            temporal_check(&args).await
        }
        RotateCommand::Check(args) => store_check(&args).await,
    }
}

/// One line per KEK and version: count, bytes, KEK, version, external-storage objects.
fn print_by_kek(by_kek: &[sealbox_rotate::KekCount]) {
    for k in by_kek {
        out!(
            "  {:>10}  {:>14} bytes  {}  version {}{}",
            k.count,
            k.bytes,
            k.kek,
            k.version.as_deref().unwrap_or("-"),
            if k.external > 0 {
                format!("  ({} in external storage)", k.external)
            } else {
                String::new()
            }
        );
    }
}

/// A KEK's display name: the policy's URI when it names the KEK, else `provider:key_id`.
fn kek_name(policy: &PolicyKeyrings, kek: &sealbox_core::KekRef) -> String {
    policy.uri_of(kek).map_or_else(
        || format!("{}:{}", kek.provider(), kek.key_id()),
        ToString::to_string,
    )
}

/// Resolves `--retire` (exit 2 for a URI this build does not parse, 3 for one it cannot
/// resolve).
async fn resolve(retire: &str, policy: &PolicyKeyrings) -> Result<Retire, Failure> {
    Retire::resolve(retire, policy).await.map_err(|e| match e {
        sealbox_rotate::ResolveError::Invalid(_) => fail(2, e.to_string()),
        sealbox_rotate::ResolveError::Unresolved { .. } => fail(3, e.to_string()),
    })
}

pub(crate) async fn load_policy(target: &Target) -> Result<PolicyKeyrings, Failure> {
    PolicyKeyrings::load(&target.config)
        .await
        .map_err(|e| fail(2, format!("{}: {e}", target.config.display())))
}

/// The policy and the `temporal://` namespace (settings from the URL and `TEMPORAL_*`).
async fn open_temporal(target: &Target) -> Result<(PolicyKeyrings, TemporalSource), Failure> {
    let policy = load_policy(target).await?;
    let source = TemporalSource::from_url_and_env(&target.store)
        .map_err(|e| fail(2, format!("--store: {e}")))?;
    Ok((policy, source))
}

/// History scan options; the policy's `[storage]`, if any, resolves external-storage
/// references.
fn scan_options(policy: &PolicyKeyrings, concurrency: usize) -> Result<ScanOptions, Failure> {
    let storage = match &policy.config().storage {
        Some(settings) => Some(Arc::new(
            sealbox_rotate::gc::driver_for(settings)
                .map_err(|e| fail(2, format!("[storage]: {e}")))?,
        )),
        None => None,
    };
    Ok(ScanOptions {
        concurrency: concurrency.max(1),
        storage,
        ..ScanOptions::default()
    })
}

/// `rotate inventory` over a namespace's workflow histories.
async fn temporal_inventory(
    target: &Target,
    shard: Shard,
    concurrency: usize,
    json: bool,
) -> Result<(), Failure> {
    if shard != Shard::ALL {
        return Err(fail(
            2,
            "--shard applies to stores, not to temporal:// histories",
        ));
    }
    let (policy, source) = open_temporal(target).await?;
    let name = |kek: &sealbox_core::KekRef| kek_name(&policy, kek);
    let inv = temporal::inventory(&source, &scan_options(&policy, concurrency)?, &name)
        .await
        .map_err(|e| {
            let code = if matches!(e, TemporalError::InvalidUrl(_)) {
                2
            } else {
                1
            };
            fail(code, format!("inventory of {}: {e}", source.describe()))
        })?;
    if json {
        out!("{}", serde_json::to_value(&inv).unwrap_or_default());
        return Ok(());
    }
    let i = &inv.inventory;
    out!(
        "{} payloads in {} workflow runs ({} events) of {}",
        i.total,
        inv.executions,
        inv.events,
        source.describe()
    );
    print_by_kek(&i.by_kek);
    out!(
        "  not envelopes {}, damaged {}, external-storage references {} ({} objects read and \
         counted above as external{})",
        i.not_envelopes,
        i.damaged,
        inv.external_references,
        i.external_objects,
        if inv.unresolved_references > 0 {
            format!(
                "; {} not resolved: codec-encoded, unreadable, or no [storage] in the policy",
                inv.unresolved_references
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `rotate check` over a store's objects.
async fn store_check(args: &CheckArgs) -> Result<(), Failure> {
    let (policy, store) = open(&args.target).await?;
    let resolved = resolve(&args.retire, &policy).await?;
    let report = sealbox_rotate::check(
        store.as_ref(),
        &resolved,
        args.version.as_deref(),
        args.concurrency,
    )
    .await;
    let code = report.exit_code();
    let json = serde_json::to_value(&report).unwrap_or_default();
    finish_check(args, code, json, |what| match code {
        0 => out!(
            "free: none of {} objects in {} needs {what}",
            report.scanned,
            store.describe()
        ),
        1 => {
            out!(
                "in use: {} object(s) need {what} ({} external-storage); for example:",
                report.in_use,
                report.external_in_use
            );
            for e in &report.examples {
                out!("  {e}");
            }
        }
        _ => out!(
            "incomplete: {} damaged, {} unreadable object(s), or the store could not be \
                     listed to the end; {what} is NOT proven free",
            report.damaged,
            report.unreadable
        ),
    })
}

/// `rotate check` over a namespace's workflow histories.
async fn temporal_check(args: &CheckArgs) -> Result<(), Failure> {
    let (policy, source) = open_temporal(&args.target).await?;
    let resolved = resolve(&args.retire, &policy).await?;
    let report = temporal::check(
        &source,
        &resolved,
        args.version.as_deref(),
        &scan_options(&policy, args.concurrency)?,
    )
    .await;
    let code = report.exit_code();
    let r = &report.report;
    let json = serde_json::to_value(&report).unwrap_or_default();
    finish_check(args, code, json, |what| match code {
        0 => out!(
            "free: none of {} payloads in {} workflow runs of {} needs {what}",
            r.scanned,
            report.executions,
            source.describe()
        ),
        1 => {
            out!(
                "in use: {} payload(s) in {} need {what}; for example (workflow_id/run_id#event_id):",
                r.in_use,
                source.describe()
            );
            for e in &r.examples {
                out!("  {e}");
            }
        }
        _ => {
            out!(
                "incomplete: {} damaged payload(s), {} unreadable history(ies), unresolved \
                     external-storage references, or executions not listed to the end; {what} \
                     is NOT proven free",
                r.damaged,
                r.unreadable
            );
            for e in &report.errors {
                out!("  {e}");
            }
        }
    })
}

/// Prints a check's report, as `json` (with what was checked and the exit code added) or as
/// text (`human`, told what was checked) as `args` ask; then the command's result for the
/// report's exit `code`.
fn finish_check(
    args: &CheckArgs,
    code: u8,
    json: serde_json::Value,
    human: impl FnOnce(&str),
) -> Result<(), Failure> {
    let what = retire_label(&args.retire, args.version.as_deref());
    if args.json {
        print_check_json(json, &what, code);
    } else {
        human(&what);
    }
    if code == 0 {
        Ok(())
    } else {
        Err(fail(code, String::new()))
    }
}

async fn open(target: &Target) -> Result<(PolicyKeyrings, Arc<dyn Store>), Failure> {
    let policy = load_policy(target).await?;
    let store = sealbox_rotate::open_store(&target.store)
        .await
        .map_err(|e| fail(2, format!("--store: {e}")))?;
    Ok((policy, store))
}

async fn rewrite(mode: Mode, args: RewriteArgs) -> Result<(), Failure> {
    if temporal::is_temporal_url(&args.target.store) {
        return Err(fail(
            2,
            "--store temporal://…: rewrap and reencrypt do not apply to workflow histories \
             (they are immutable); use `sealbox rotate inventory` or `sealbox rotate check` on it",
        ));
    }
    if let Some(address) = args.temporal.temporal.clone() {
        return crate::workflow::rewrite_on_temporal(mode, &args, &address).await;
    }
    let (policy, store) = open(&args.target).await?;
    let mut options = RunOptions::new(mode);
    options.dry_run = args.dry_run;
    options.checkpoint = args.checkpoint.clone();
    options.shard = args.shard;
    options.concurrency = args.concurrency.max(1);
    options.kms_rate = args.kms_rate;
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| progress_bar(mode));
    options.progress = bar.clone().map(|b| b as Arc<dyn Progress>);
    let report = sealbox_rotate::run(&policy, store.as_ref(), &options)
        .await
        .map_err(|e| {
            fail(
                1,
                format!("{} of {}: {e}", mode.done_word(), store.describe()),
            )
        })?;
    if let Some(bar) = bar {
        bar.0.finish_and_clear();
    }
    finish(mode, &args, &report, None)
}

/// Prints a rewrite's report (with `workflow_id` when it ran on Temporal); exit 1 if any
/// object failed.
pub(crate) fn finish(
    mode: Mode,
    args: &RewriteArgs,
    report: &Report,
    workflow_id: Option<&str>,
) -> Result<(), Failure> {
    if args.json {
        let mut v = report.to_json(mode.done_word(), args.dry_run);
        if let Some(id) = workflow_id {
            v["workflow_id"] = json!(id);
        }
        out!("{v}");
    } else {
        print_report(mode, args.dry_run, report, args.checkpoint.as_deref());
    }
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(fail(
            1,
            format!(
                "{} object(s) failed and were left untouched",
                report.failed.len()
            ),
        ))
    }
}

fn print_report(mode: Mode, dry_run: bool, r: &Report, checkpoint: Option<&Path>) {
    out!("scanned       {}", r.scanned);
    if dry_run {
        out!("would change  {}", r.would_change);
    } else {
        out!("{:<13} {}", mode.done_word(), r.changed);
    }
    out!(
        "skipped       {} (already on the active KEK version)",
        r.skipped
    );
    out!("not envelopes {}", r.not_envelopes);
    out!("external      {} (never rewritten)", r.external_objects);
    out!("kms calls     {}", r.kms_calls);
    out!("conflicts     {}", r.conflicts.len());
    for c in &r.conflicts {
        out!("  {c} (changed by another writer; left as it is — run again to cover it)");
    }
    out!("failed        {}", r.failed.len());
    for f in &r.failed {
        out!("  {}: {}", f.object, f.error);
    }
    if let Some(path) = checkpoint {
        out!("checkpoint    {}", path.display());
    }
}

/// A spinner with counts and rate (the store is listed page by page, so the total — and an
/// ETA — is not known up front; `rotate inventory` gives it).
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn update(&self, r: &Report) {
        self.0.set_position(r.scanned);
        self.0.set_message(format!(
            "{} changed, {} skipped, {} failed, {} conflicts, {} KMS calls",
            r.changed + r.would_change,
            r.skipped,
            r.failed.len(),
            r.conflicts.len(),
            r.kms_calls
        ));
    }
}

fn progress_bar(mode: Mode) -> Arc<Bar> {
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {elapsed_precise} {prefix} {pos} scanned ({per_sec}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(mode.done_word().to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    Arc::new(Bar(bar))
}

/// `KEK_URI` or `KEK_URI version V`, for check reports.
fn retire_label(retire: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{retire} version {v}"),
        None => retire.to_owned(),
    }
}

/// A check report as one JSON document, with the KEK asked about and the exit code.
fn print_check_json(mut v: serde_json::Value, what: &str, code: u8) {
    v["kek"] = json!(what);
    v["exit_code"] = json!(code);
    out!("{v}");
}
