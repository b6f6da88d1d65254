//! `sealbox storage gc`: delete external-storage objects no workflow history still references.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use sealbox_policy::PolicyConfig;
use sealbox_rotate::gc::{GcOptions, driver_for, gc};
use sealbox_rotate::temporal::ScanOptions;

use crate::{Failure, fail};

/// What to do with external storage.
#[derive(clap::Subcommand)]
pub(crate) enum StorageCommand {
    /// Delete the objects of the policy's [storage] that no workflow history within retention
    /// references (reads every history of every namespace the objects' keys name). Exit 0
    /// done, 1 some deletion failed, 2 usage or policy error, 3 incomplete scan (nothing
    /// deleted).
    Gc {
        /// The key-policy file whose [storage] to collect.
        #[arg(long, env = "SEALBOX_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// The Temporal frontend: HOST:PORT or temporal://HOST:PORT[?tls=…] (TLS settings as
        /// for `rotate`'s temporal:// stores; the API key from TEMPORAL_API_KEY).
        #[arg(long, value_name = "URL")]
        temporal: String,
        /// Only objects of this namespace (repeatable); default: every namespace the
        /// objects' keys name.
        #[arg(long = "namespace", value_name = "NS")]
        namespaces: Vec<String>,
        /// Keep objects younger than this, whatever the histories say (covers the time
        /// between a worker storing a payload and its history event becoming visible).
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::rotate::parse_duration)]
        min_age: Duration,
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Histories read at once.
        #[arg(long, value_name = "N", default_value_t = 8)]
        concurrency: usize,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn storage(command: StorageCommand) -> Result<(), Failure> {
    let StorageCommand::Gc {
        config,
        temporal,
        namespaces,
        min_age,
        dry_run,
        concurrency,
        json,
    } = command;
    let policy = PolicyConfig::from_file(&config)
        .map_err(|e| fail(2, format!("invalid policy file:\n{e}")))?;
    let settings = policy.storage.as_ref().ok_or_else(|| {
        fail(
            2,
            format!(
                "{}: no [storage] table: nothing to collect",
                config.display()
            ),
        )
    })?;
    let driver = driver_for(settings).map_err(|e| fail(2, format!("[storage]: {e}")))?;
    // Each namespace in scope replaces the placeholder namespace.
    let source = crate::workflow::frontend(&temporal)?;
    let options = GcOptions {
        min_age,
        dry_run,
        namespaces: (!namespaces.is_empty()).then_some(namespaces),
        scan: ScanOptions {
            concurrency: concurrency.max(1),
            ..ScanOptions::default()
        },
    };
    let report = gc(&driver, &source, &options).await;
    let code = report.exit_code();
    if json {
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        v["exit_code"] = serde_json::json!(code);
        out!("{v}");
    } else if !report.complete {
        out!(
            "incomplete: nothing deleted ({} objects listed; namespaces {:?})",
            report.objects,
            report.namespaces
        );
        for e in &report.errors {
            out!("  {e}");
        }
    } else {
        out!(
            "{} objects in {}; histories of {:?} ({} runs) reference {}",
            report.objects,
            settings.url,
            report.namespaces,
            report.executions,
            report.referenced_claims
        );
        out!(
            "  kept: {} referenced, {} younger than {min_age:?}, {} out of scope",
            report.referenced,
            report.young,
            report.out_of_scope
        );
        out!(
            "  unreferenced: {} ({} bytes){}",
            report.unreferenced,
            report.unreferenced_bytes,
            if dry_run {
                " — dry run, nothing deleted".to_owned()
            } else {
                format!(", deleted {}", report.deleted)
            }
        );
        for key in &report.unreferenced_keys {
            out!("  {key}");
        }
        for f in &report.failed {
            out!("  failed: {}: {}", f.object, f.error);
        }
    }
    if code == 0 {
        Ok(())
    } else {
        Err(fail(code, String::new()))
    }
}
