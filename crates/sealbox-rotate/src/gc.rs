//! `sealbox storage gc`: deletes external-storage objects that no workflow history within
//! retention still references.
//!
//! Deleting by age is unsafe: a continue-as-new chain can reference an object stored by a run
//! that closed long ago, and retention counts from a run's close. So [`gc`] asks Temporal
//! instead:
//!
//! 1. it lists the store's objects (`[prefix]v0/…`);
//! 2. it reads every history (open and closed runs) of every namespace in scope — the
//!    namespaces the objects' keys name (`v0/ns/<namespace>/…`), or those given — with the
//!    rotation job's `temporal://` walk, and collects the claims of their references;
//! 3. an object is **unreferenced** when its namespace was scanned, no reference claims it,
//!    and it is older than `min_age`; only those are deleted (none on a dry run).
//!
//! It deletes nothing unless every scan was complete: a namespace that cannot be listed, a
//! history that cannot be read, or a reference whose claim cannot be read without the codec
//! (codec-encoded or legacy) makes the run incomplete (exit 3), since the unknown reference
//! may point at any object. Objects whose key names no namespace (`v0/d/…`) or one outside
//! the scope are kept.
//!
//! `min_age` covers the window between a codec storing an object and the history event that
//! references it becoming visible (a worker stores before it completes its task; visibility
//! is eventually consistent); keep it far above that (the default is a day). What remains: a
//! history created after the scan that references an object already older than `min_age`,
//! which only happens if a payload's sealed bytes are stored again unchanged (Sealbox seals
//! every payload under a fresh data key, so its objects are not shared). With Temporal's
//! archival on, archived histories are not read: keep objects past the archival horizon by
//! `min_age`, or do not run gc.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use sealbox_temporal::storage::{ObjectStoreDriver, canonical_key, key_namespace};
use serde::Serialize;

pub use sealbox_temporal::storage::driver_for;

use crate::report::Failure;
use crate::temporal::{ScanOptions, TemporalSource, references};

/// At most this many unreferenced keys are listed in a [`GcReport`].
const LISTED: usize = 1000;

/// How [`gc`] runs.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Objects younger than this are kept whatever the histories say.
    pub min_age: Duration,
    /// List what would be deleted; delete nothing.
    pub dry_run: bool,
    /// The namespaces in scope; `None`: every namespace an object's key names.
    pub namespaces: Option<Vec<String>>,
    /// Tuning of the history scans.
    pub scan: ScanOptions,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(24 * 3600),
            dry_run: true,
            namespaces: None,
            scan: ScanOptions::default(),
        }
    }
}

/// What [`gc`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Nothing was deleted on purpose.
    pub dry_run: bool,
    /// Every object was listed and every history in scope read; otherwise nothing was
    /// deleted.
    pub complete: bool,
    /// The namespaces whose histories were read.
    pub namespaces: Vec<String>,
    /// Runs read.
    pub executions: u64,
    /// Distinct objects the histories reference.
    pub referenced_claims: u64,
    /// Objects listed.
    pub objects: u64,
    /// Kept: referenced.
    pub referenced: u64,
    /// Kept: younger than `min_age`.
    pub young: u64,
    /// Kept: the key names no namespace, or one out of scope.
    pub out_of_scope: u64,
    /// Unreferenced objects: deleted, or to delete on a dry run.
    pub unreferenced: u64,
    /// Their bytes.
    pub unreferenced_bytes: u64,
    /// Up to 1,000 of their keys.
    pub unreferenced_keys: Vec<String>,
    /// Deleted.
    pub deleted: u64,
    /// Deletions that failed.
    pub failed: Vec<Failure>,
    /// Why the run is incomplete.
    pub errors: Vec<String>,
}

impl GcReport {
    /// `0` done, `1` some deletion failed, `3` incomplete (nothing deleted).
    pub fn exit_code(&self) -> u8 {
        if !self.complete {
            3
        } else if !self.failed.is_empty() {
            1
        } else {
            0
        }
    }
}

/// Collects garbage in `driver`'s store: objects that no history of their namespace (read
/// through `temporal`, whose namespace is replaced by each one in scope) references.
pub async fn gc(
    driver: &ObjectStoreDriver,
    temporal: &TemporalSource,
    options: &GcOptions,
) -> GcReport {
    let mut report = GcReport {
        dry_run: options.dry_run,
        ..GcReport::default()
    };
    let objects = match driver.list_objects().await {
        Ok(o) => o,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    report.objects = objects.len() as u64;
    let prefix = driver.key_prefix();
    let scope: BTreeSet<String> = match &options.namespaces {
        Some(list) => list.iter().cloned().collect(),
        None => objects
            .iter()
            .filter_map(|o| key_namespace(prefix, &o.key))
            .collect(),
    };
    let mut claimed: HashSet<String> = HashSet::new();
    for namespace in &scope {
        let scan = references(&temporal.with_namespace(namespace), &options.scan).await;
        report.executions += scan.executions;
        report.errors.extend(scan.errors);
        claimed.extend(
            scan.claims
                .into_iter()
                .filter(|(bucket, _)| bucket == driver.bucket())
                .map(|(_, key)| canonical_key(&key)),
        );
    }
    report.namespaces = scope.iter().cloned().collect();
    report.referenced_claims = claimed.len() as u64;
    report.complete = report.errors.is_empty();
    if !report.complete {
        return report;
    }
    let now = SystemTime::now();
    for object in objects {
        let in_scope = key_namespace(prefix, &object.key).is_some_and(|ns| scope.contains(&ns));
        if !in_scope {
            report.out_of_scope += 1;
        } else if claimed.contains(&canonical_key(&object.key)) {
            report.referenced += 1;
        } else if now
            .duration_since(object.last_modified)
            .unwrap_or(Duration::ZERO)
            < options.min_age
        {
            report.young += 1;
        } else {
            report.unreferenced += 1;
            report.unreferenced_bytes += object.size;
            if report.unreferenced_keys.len() < LISTED {
                report.unreferenced_keys.push(object.key.clone());
            }
            if !options.dry_run {
                match driver.delete_object(&object.key).await {
                    Ok(()) => report.deleted += 1,
                    Err(e) => report.failed.push(Failure {
                        object: object.key,
                        error: e.to_string(),
                    }),
                }
            }
        }
    }
    report
}
