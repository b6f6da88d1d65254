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
//! are counted on their own; they are **not resolved**: the objects they point to live in
//! another store (check that store too, e.g. `s3://…`).
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

use std::collections::{BTreeMap, HashMap, HashSet};
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

/// Tuning of a history scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    /// Histories read at once.
    pub concurrency: usize,
    /// Executions per `ListWorkflowExecutions` page.
    pub list_page_size: i32,
    /// Events per `GetWorkflowExecutionHistory` page.
    pub history_page_size: i32,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            list_page_size: 100,
            history_page_size: 1000,
        }
    }
}

/// What a namespace's histories hold: [`Inventory`] over payloads, plus Temporal's own
/// counts. In `inventory`, `total` counts payloads (the sum of `by_kek` counts,
/// `not_envelopes` and `damaged`), `bytes` are envelope sizes, and `external_objects` is
/// always 0 (objects in external storage are not in history).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryInventory {
    /// The payloads, counted as a store's objects are.
    #[serde(flatten)]
    pub inventory: Inventory,
    /// Payloads that are external-storage references (also counted above: a plain one in
    /// `not_envelopes`, one the codec sealed in `by_kek`). Not resolved.
    pub external_references: u64,
    /// Runs whose history was read.
    pub executions: u64,
    /// Events read.
    pub events: u64,
}

/// The answer of [`check`] for a namespace. In `report`, `scanned` counts payloads,
/// `unreadable` runs whose history could not be read, and `examples` name payloads as
/// `workflow_id/run_id#event_id`. The scan is complete only if the executions were listed
/// to the end and every listed run's history was read to its last event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryCheck {
    /// The verdict, as for a store.
    #[serde(flatten)]
    pub report: CheckReport,
    /// Payloads that are external-storage references: the objects they point to are not in
    /// history and are not checked here (check their store), so a namespace with any is
    /// never proven free (exit 3 at best).
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
    by_kek.sort_by(|a, b| {
        (&a.provider, &a.key_id, &a.version).cmp(&(&b.provider, &b.key_id, &b.version))
    });
    Ok(HistoryInventory {
        inventory: Inventory {
            total: t.total,
            by_kek,
            not_envelopes: t.not_envelopes,
            damaged: t.damaged,
            external_objects: 0,
        },
        external_references: t.references,
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
    let mut errors: Vec<String> = scan.list_error.iter().map(ToString::to_string).collect();
    errors.extend(scan.unread.iter().map(ToString::to_string));
    if t.references > 0 {
        // The objects they point to may name the KEK: unproven, so never "free".
        errors.push(format!(
            "{} external-storage reference(s) point to objects outside history, not checked \
             here: check their store too",
            t.references
        ));
    }
    errors.truncate(ERRORS);
    let mut examples = t.examples;
    examples.sort();
    examples.truncate(EXAMPLES);
    HistoryCheck {
        report: CheckReport {
            scanned: t.scanned,
            in_use: t.in_use,
            external_in_use: 0,
            examples,
            damaged: t.damaged,
            unreadable: scan.unread.len() as u64,
            complete: scan.list_error.is_none()
                && scan.unread.is_empty()
                && t.damaged == 0
                && t.references == 0,
        },
        external_references: t.references,
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
