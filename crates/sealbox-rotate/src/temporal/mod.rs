//! `temporal://HOST:PORT/NAMESPACE`: inventory and check over a namespace's workflow
//! histories (read-only — histories are immutable, so there is nothing to rewrap).
//!
//! A scan lists the namespace's executions through the WorkflowService
//! (`ListWorkflowExecutions`, paged; open executions first, then closed ones, within
//! retention), reads each run's history (`GetWorkflowExecutionHistory`, paged, to its last
//! event) and looks at **every payload of every event**: workflow, activity, child-workflow,
//! Nexus and signal inputs, results, headers, memos (also upserted ones), markers' details,
//! failures' `encoded_attributes` and details (with their nested causes), update requests and
//! outcomes, continue-as-new inputs and last results, termination and cancellation details,
//! user metadata (summary and details). Search attributes are not codec payloads and are
//! skipped.
//!
//! Payloads are found by the SDK's own walk (`temporalio_common::payload_visitor`, generated
//! from the protobuf descriptors for every message that holds a payload — the fields a
//! payload codec is applied to), not by a hand-written list of events and fields.
//!
//! Each payload is classified like a stored object (see [`crate::inventory`]): a Sealbox
//! envelope (what `sealbox-temporal`'s codec writes: metadata `sealbox-format =
//! sealbox-envelope/1`, data = the envelope; or data that is itself an envelope) is counted
//! per KEK and version from its header (no key is used); a payload marked as an envelope
//! whose header does not parse is *damaged*; anything else is *not an envelope*.
//! External-storage references (`json/protobuf` of
//! `temporal.api.sdk.v1.ExternalStorageReference`, the legacy
//! `json/external-storage-reference`, or metadata `__temporal_external_storage_reference`)
//! are counted on their own. With [`ScanOptions::storage`] (the policy's `[storage]`), the
//! object of each plain reference is read — checked as the codec checks it: bucket,
//! namespace, SHA-256 — and its envelope counted per KEK (as `external`); codec-encoded and
//! legacy references cannot be read without the codec and stay unresolved.
//!
//! ## The URL
//!
//! `temporal://HOST[:PORT]/NAMESPACE[?tls=true&ca=PATH&cert=PATH&key=PATH&server_name=NAME]`
//! (port 7233 by default). Without query parameters the same settings come from the
//! variables the `temporal` CLI reads: `TEMPORAL_TLS`, `TEMPORAL_TLS_CA_PATH`,
//! `TEMPORAL_TLS_CERT_PATH`, `TEMPORAL_TLS_KEY_PATH`, `TEMPORAL_TLS_SERVER_NAME`; the URL
//! wins. An API key is read only from `TEMPORAL_API_KEY` — never from the URL — is sent as
//! `Authorization: Bearer …`, turns TLS on (unless `tls=false` on a loopback host) and is
//! never printed. Plain (non-TLS) connections are for loopback and private networks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use sealbox_core::{EnvelopeHeader, KekRef, inspect};
use sealbox_temporal::{FORMAT_ENVELOPE_V1, METADATA_ENCODING, METADATA_FORMAT, Payload};
use serde::Serialize;
use temporalio_client::tonic::{Code, IntoRequest};
use temporalio_client::{
    ClientTlsOptions, Connection, ConnectionOptions, TlsOptions, grpc::WorkflowService,
};
use temporalio_common::data_converters::PayloadConversionError;
use temporalio_common::payload_visitor::{
    AsyncPayloadVisitor, PayloadField, PayloadFieldData, PayloadVisitable,
};
use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
use temporalio_common::protos::temporal::api::enums::v1::HistoryEventFilterType;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    GetWorkflowExecutionHistoryRequest, ListWorkflowExecutionsRequest,
};

use crate::check::{CheckReport, Retire};
use crate::classify::{Item, classify};
use crate::inventory::{Inventory, KekCount};

/// The default frontend port.
const DEFAULT_PORT: u16 = 7233;
/// The legacy encoding of an external-storage reference, still read by the SDKs.
const ENCODING_LEGACY_REFERENCE: &str = "json/external-storage-reference";
/// At most this many example payloads are listed (as for a store).
const EXAMPLES: usize = 10;
/// At most this many error messages are kept in a [`HistoryCheck`].
const ERRORS: usize = 10;
/// Visibility queries, in this order: an open execution that closes while the scan runs
/// leaves the open list and is found in the closed list, which is read after it.
const QUERIES: [&str; 2] = [
    "ExecutionStatus = 'Running'",
    "ExecutionStatus != 'Running'",
];

/// Why a Temporal namespace could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    /// A bad `temporal://` URL or connection setting (a usage error); never contains the
    /// API key.
    #[error("{0}")]
    InvalidUrl(String),
    /// The frontend could not be reached.
    #[error("cannot connect to Temporal at {address}: {message}")]
    Connect {
        /// `host:port`.
        address: String,
        /// Why.
        message: String,
    },
    /// `ListWorkflowExecutions` failed: not every execution was seen.
    #[error("listing the executions of namespace `{namespace}` failed: {message}")]
    List {
        /// The namespace.
        namespace: String,
        /// Why.
        message: String,
    },
    /// A run's history could not be read to its end.
    #[error("the history of {execution} could not be read: {message}")]
    History {
        /// `workflow_id/run_id`.
        execution: String,
        /// Why.
        message: String,
    },
}

mod source;
mod walk;

pub use source::{TemporalSource, is_temporal_url};
use walk::*;

/// Tuning of a history scan, and where its external-storage references point.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Histories read at once (and referenced objects read at once).
    pub concurrency: usize,
    /// Executions per `ListWorkflowExecutions` page.
    pub list_page_size: i32,
    /// Events per `GetWorkflowExecutionHistory` page.
    pub history_page_size: i32,
    /// The external store (the policy's `[storage]`) whose objects the histories' plain
    /// references point to: each referenced object is read (its SHA-256 and namespace checked)
    /// and counted per KEK. Without it, references are counted but not resolved.
    pub storage: Option<std::sync::Arc<sealbox_temporal::storage::ObjectStoreDriver>>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            list_page_size: 100,
            history_page_size: 1000,
            storage: None,
        }
    }
}

/// The objects behind a scan's references: each one's envelope header, size and key; and
/// why the others could not be read.
#[derive(Default)]
struct Resolved {
    objects: Vec<(EnvelopeHeader, u64, String)>,
    unresolved: Vec<String>,
}

/// Reads the object of each claim from `options.storage` (checked as the codec checks it:
/// bucket, namespace, SHA-256, size) and inspects its envelope header (no key is used).
async fn resolve(
    options: &ScanOptions,
    namespace: &str,
    claims: &BTreeSet<BTreeMap<String, String>>,
) -> Resolved {
    use sealbox_temporal::storage::{StorageClaim, StorageContext, StorageDriver};
    let mut out = Resolved::default();
    let Some(driver) = &options.storage else {
        if !claims.is_empty() {
            out.unresolved.push(format!(
                "{} external-storage reference(s) not resolved: no external store given \
                 ([storage] in the policy), so the objects they point to are not checked",
                claims.len()
            ));
        }
        return out;
    };
    let context = StorageContext {
        namespace: namespace.to_owned(),
    };
    let results: Vec<(String, Result<Vec<Payload>, _>)> = futures::stream::iter(claims)
        .map(|claim| {
            let context = &context;
            async move {
                let key = claim.get("key").cloned().unwrap_or_default();
                let claim = StorageClaim {
                    claim_data: claim.clone(),
                };
                (
                    key,
                    driver.retrieve(context, std::slice::from_ref(&claim)).await,
                )
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    for (key, result) in results {
        match result.map(|mut p| p.pop()) {
            Ok(Some(p)) => match sealbox_temporal::sealbox_envelope(&p).map(inspect) {
                Some(Ok(header)) => out.objects.push((header, p.data.len() as u64, key)),
                _ => out.unresolved.push(format!(
                    "`{key}`: the stored object is not a Sealbox envelope"
                )),
            },
            Ok(None) => out.unresolved.push(format!("`{key}`: nothing retrieved")),
            Err(e) => out.unresolved.push(e.to_string()),
        }
    }
    out
}

/// What a namespace's histories hold: [`Inventory`] over payloads, plus Temporal's own
/// counts. In `inventory`, `total` counts payloads in history; `by_kek` also counts the
/// objects their references point to (as `external`), when [`ScanOptions::storage`] is given;
/// `external_objects` is the number of those objects; `bytes` are envelope sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryInventory {
    /// The payloads, counted as a store's objects are.
    #[serde(flatten)]
    pub inventory: Inventory,
    /// Payloads that are external-storage references (also counted above: a plain one in
    /// `not_envelopes`, one the codec sealed in `by_kek`).
    pub external_references: u64,
    /// References whose objects were not counted: codec-encoded or legacy ones (their claim
    /// needs the codec), and objects that could not be read, failed their checks or are not
    /// envelopes (or every one, without a store).
    pub unresolved_references: u64,
    /// Runs whose history was read.
    pub executions: u64,
    /// Events read.
    pub events: u64,
}

/// The answer of [`check`] for a namespace. In `report`, `scanned` counts payloads and the
/// objects their references point to, `unreadable` runs whose history could not be read, and
/// `examples` name payloads as `workflow_id/run_id#event_id` (referenced objects as
/// `external:KEY`). The scan is complete only if the executions were listed to the end,
/// every listed run's history was read to its last event, and every reference's object was
/// read from [`ScanOptions::storage`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryCheck {
    /// The verdict, as for a store.
    #[serde(flatten)]
    pub report: CheckReport,
    /// Payloads that are external-storage references: their objects are read from
    /// [`ScanOptions::storage`] and checked too; without it, or if any cannot be read, the
    /// namespace is never proven free (exit 3 at best).
    pub external_references: u64,
    /// Runs whose history was read to the end.
    pub executions: u64,
    /// Up to 10 reasons why the scan is incomplete.
    pub errors: Vec<String>,
}

impl HistoryCheck {
    /// `0` proven free, `1` still in use, `3` incomplete scan (never `0` then).
    pub fn exit_code(&self) -> u8 {
        self.report.exit_code()
    }
}

/// Counts the payloads in every history of `source`'s namespace per KEK and version. `name`
/// gives a KEK's display name (the policy's URI where it names the KEK), as for
/// [`crate::inventory`]. Any history that cannot be read fails the inventory.
pub async fn inventory(
    source: &TemporalSource,
    options: &ScanOptions,
    name: &(dyn Fn(&KekRef) -> String + Sync),
) -> Result<HistoryInventory, TemporalError> {
    let connection = source.connect().await?;
    let scan: Scan<InventoryTally> = scan(&connection, source.namespace(), options, &()).await;
    if let Some(e) = scan.list_error {
        return Err(e);
    }
    if let Some(e) = scan.unread.into_iter().next() {
        return Err(e);
    }
    let t = scan.tally;
    let resolved = resolve(options, source.namespace(), &t.refs.claims).await;
    let mut by_kek: Vec<KekCount> = t
        .groups
        .into_values()
        .map(|(kek, count, bytes)| KekCount {
            kek: name(&kek),
            provider: kek.provider().to_owned(),
            key_id: kek.key_id().to_owned(),
            version: kek.key_version().map(str::to_owned),
            count,
            bytes,
            external: 0,
        })
        .collect();
    // The referenced objects, counted per KEK as external-storage objects.
    for (header, size, _) in &resolved.objects {
        let kek = header.kek();
        let version = kek.key_version().map(str::to_owned);
        let at = by_kek.iter().position(|k| {
            k.provider == kek.provider() && k.key_id == kek.key_id() && k.version == version
        });
        let entry = match at {
            Some(i) => &mut by_kek[i],
            None => {
                by_kek.push(KekCount {
                    kek: name(kek),
                    provider: kek.provider().to_owned(),
                    key_id: kek.key_id().to_owned(),
                    version,
                    count: 0,
                    bytes: 0,
                    external: 0,
                });
                by_kek.last_mut().expect("just pushed")
            }
        };
        entry.count += 1;
        entry.bytes += size;
        entry.external += 1;
    }
    by_kek.sort_by(|a, b| {
        (&a.provider, &a.key_id, &a.version).cmp(&(&b.provider, &b.key_id, &b.version))
    });
    Ok(HistoryInventory {
        inventory: Inventory {
            total: t.total,
            by_kek,
            not_envelopes: t.not_envelopes,
            damaged: t.damaged,
            external_objects: resolved.objects.len() as u64,
        },
        external_references: t.refs.count,
        unresolved_references: t.refs.opaque + resolved.unresolved.len() as u64,
        executions: scan.executions,
        events: scan.events,
    })
}

/// Scans every history of `source`'s namespace for payloads whose KEK `retire` matches
/// (and `version`, if given). Never fails: a connection, listing or history error makes the
/// answer incomplete (exit 3 unless the KEK was found).
pub async fn check(
    source: &TemporalSource,
    retire: &Retire,
    version: Option<&str>,
    options: &ScanOptions,
) -> HistoryCheck {
    let incomplete = |e: TemporalError| HistoryCheck {
        errors: vec![e.to_string()],
        ..HistoryCheck::default()
    };
    let connection = match source.connect().await {
        Ok(c) => c,
        Err(e) => return incomplete(e),
    };
    let ctx = (retire, version);
    let scan: Scan<CheckTally> = scan(&connection, source.namespace(), options, &ctx).await;
    let t = scan.tally;
    let resolved = resolve(options, source.namespace(), &t.refs.claims).await;
    let mut errors: Vec<String> = scan.list_error.iter().map(ToString::to_string).collect();
    errors.extend(scan.unread.iter().map(ToString::to_string));
    if t.refs.opaque > 0 {
        // The objects they point to may name the KEK: unproven, so never "free".
        errors.push(format!(
            "{} external-storage reference(s) cannot be read without the codec (codec-encoded \
             or legacy): the objects they point to are not checked",
            t.refs.opaque
        ));
    }
    errors.extend(resolved.unresolved.iter().cloned());
    errors.truncate(ERRORS);
    let mut examples = t.examples;
    let mut external_in_use = 0;
    for (header, _, key) in &resolved.objects {
        let kek = header.kek();
        if retire.matches(kek) && version.is_none_or(|v| kek.key_version() == Some(v)) {
            external_in_use += 1;
            examples.push(format!("external:{key}"));
        }
    }
    examples.sort();
    examples.truncate(EXAMPLES);
    HistoryCheck {
        report: CheckReport {
            scanned: t.scanned + resolved.objects.len() as u64,
            in_use: t.in_use + external_in_use,
            external_in_use,
            examples,
            damaged: t.damaged,
            unreadable: scan.unread.len() as u64,
            complete: scan.list_error.is_none()
                && scan.unread.is_empty()
                && t.damaged == 0
                && t.refs.opaque == 0
                && resolved.unresolved.is_empty(),
        },
        external_references: t.refs.count,
        executions: scan.executions,
        errors,
    }
}

/// The external-storage objects a namespace's histories reference (see [`references`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceScan {
    /// `(bucket, key)` of every plain reference, as the claim names it.
    pub claims: HashSet<(String, String)>,
    /// References seen (each occurrence).
    pub references: u64,
    /// Runs whose history was read to the end.
    pub executions: u64,
    /// Why the scan is incomplete — listing or history errors, references whose claim cannot
    /// be read without the codec (codec-encoded or legacy ones) — empty when complete.
    pub errors: Vec<String>,
}

impl ReferenceScan {
    /// Whether every reference in every history within retention was read.
    pub fn complete(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Reads every history of `source`'s namespace and collects the claims of its
/// external-storage references (for `sealbox storage gc`). Never fails: errors make the scan
/// incomplete.
pub async fn references(source: &TemporalSource, options: &ScanOptions) -> ReferenceScan {
    let connection = match source.connect().await {
        Ok(c) => c,
        Err(e) => {
            return ReferenceScan {
                errors: vec![e.to_string()],
                ..ReferenceScan::default()
            };
        }
    };
    let scan: Scan<ReferenceTally> = scan(&connection, source.namespace(), options, &()).await;
    let t = scan.tally;
    let mut errors: Vec<String> = scan.list_error.iter().map(ToString::to_string).collect();
    errors.extend(scan.unread.iter().map(ToString::to_string));
    if t.unresolved > 0 {
        errors.push(format!(
            "{} external-storage reference(s) in namespace `{}` cannot be read without the \
             codec (codec-encoded or legacy): the objects they point to are unknown",
            t.unresolved,
            source.namespace()
        ));
    }
    errors.truncate(ERRORS);
    ReferenceScan {
        claims: t.claims,
        references: t.references,
        executions: scan.executions,
        errors,
    }
}

#[cfg(test)]
mod tests;
