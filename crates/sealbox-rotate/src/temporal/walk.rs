//! The scan: listing executions, reading histories, classifying their payloads.

use super::*;

/// Where a payload is.
pub(super) struct Site<'a> {
    pub(super) workflow_id: &'a str,
    pub(super) run_id: &'a str,
    pub(super) event_id: i64,
}

/// What a payload is.
pub(super) enum Seen {
    Envelope(Box<EnvelopeHeader>),
    Damaged,
    NotEnvelope,
}

/// A classified payload.
pub(super) struct Classified {
    pub(super) seen: Seen,
    /// An external-storage reference.
    pub(super) reference: bool,
    /// A plain reference's claim; `None` for other payloads and for references whose claim
    /// cannot be read without the codec (marked, legacy) or does not parse.
    pub(super) claim: Option<BTreeMap<String, String>>,
    /// Size of its data.
    pub(super) bytes: u64,
}

/// Classifies a history payload by its metadata and header alone.
pub(super) fn classify_payload(p: &Payload) -> Classified {
    let marked =
        p.metadata.get(METADATA_FORMAT).map(Vec::as_slice) == Some(FORMAT_ENVELOPE_V1.as_bytes());
    let seen = if marked {
        match inspect(&p.data) {
            Ok(h) => Seen::Envelope(Box::new(h)),
            Err(_) => Seen::Damaged,
        }
    } else {
        match classify(&p.data) {
            Item::Envelope(h) | Item::External(h) => Seen::Envelope(h),
            Item::Damaged(_) => Seen::Damaged,
            Item::NotEnvelope => Seen::NotEnvelope,
        }
    };
    let claim = sealbox_temporal::storage::ExternalStorageReference::from_payload(p)
        .and_then(Result::ok)
        .map(|r| r.claim_data);
    Classified {
        seen,
        reference: is_external_reference(p),
        claim,
        bytes: p.data.len() as u64,
    }
}

/// Whether `p` is an external-storage (claim check) reference.
pub(super) fn is_external_reference(p: &Payload) -> bool {
    sealbox_temporal::storage::is_plain_reference(p)
        || sealbox_temporal::storage::is_marked_reference(p)
        || p.metadata.get(METADATA_ENCODING).map(Vec::as_slice)
            == Some(ENCODING_LEGACY_REFERENCE.as_bytes())
}

/// Accumulates what a scan saw; one per run, merged.
/// `C` is what every run's tally needs to know.
pub(super) trait Tally<C: ?Sized>: Default {
    fn add(&mut self, ctx: &C, site: &Site<'_>, item: Classified);
    fn merge(&mut self, other: Self);
}

/// Provider, key ID, version.
type GroupKey = (String, String, Option<String>);

/// The external-storage references a scan saw.
#[derive(Default)]
pub(super) struct References {
    /// References seen (each occurrence).
    pub(super) count: u64,
    /// Claims of plain references (resolved after the scan when a store is given).
    pub(super) claims: BTreeSet<BTreeMap<String, String>>,
    /// References whose claim cannot be read (codec-encoded, legacy, malformed).
    pub(super) opaque: u64,
}

impl References {
    fn add(&mut self, item: &Classified) {
        if !item.reference {
            return;
        }
        self.count += 1;
        match &item.claim {
            Some(claim) => {
                self.claims.insert(claim.clone());
            }
            None => self.opaque += 1,
        }
    }

    fn merge(&mut self, other: Self) {
        self.count += other.count;
        self.claims.extend(other.claims);
        self.opaque += other.opaque;
    }
}

#[derive(Default)]
pub(super) struct InventoryTally {
    pub(super) total: u64,
    /// KEK, count, bytes.
    pub(super) groups: BTreeMap<GroupKey, (KekRef, u64, u64)>,
    pub(super) not_envelopes: u64,
    pub(super) damaged: u64,
    pub(super) refs: References,
}

impl Tally<()> for InventoryTally {
    fn add(&mut self, _: &(), _: &Site<'_>, item: Classified) {
        self.total += 1;
        self.refs.add(&item);
        match item.seen {
            Seen::Envelope(h) => {
                let kek = h.kek();
                let group = self
                    .groups
                    .entry((
                        kek.provider().to_owned(),
                        kek.key_id().to_owned(),
                        kek.key_version().map(str::to_owned),
                    ))
                    .or_insert_with(|| (kek.clone(), 0, 0));
                group.1 += 1;
                group.2 += item.bytes;
            }
            Seen::Damaged => self.damaged += 1,
            Seen::NotEnvelope => self.not_envelopes += 1,
        }
    }

    fn merge(&mut self, other: Self) {
        self.total += other.total;
        self.not_envelopes += other.not_envelopes;
        self.damaged += other.damaged;
        self.refs.merge(other.refs);
        for (k, (kek, count, bytes)) in other.groups {
            let group = self.groups.entry(k).or_insert((kek, 0, 0));
            group.1 += count;
            group.2 += bytes;
        }
    }
}

#[derive(Default)]
pub(super) struct CheckTally {
    pub(super) scanned: u64,
    pub(super) in_use: u64,
    pub(super) examples: Vec<String>,
    pub(super) damaged: u64,
    pub(super) refs: References,
}

impl Tally<(&Retire, Option<&str>)> for CheckTally {
    fn add(
        &mut self,
        (retire, version): &(&Retire, Option<&str>),
        site: &Site<'_>,
        item: Classified,
    ) {
        self.scanned += 1;
        self.refs.add(&item);
        match item.seen {
            Seen::Envelope(h) => {
                let kek = h.kek();
                if retire.matches(kek) && version.is_none_or(|v| kek.key_version() == Some(v)) {
                    self.in_use += 1;
                    if self.examples.len() < EXAMPLES {
                        self.examples.push(format!(
                            "{}/{}#{}",
                            site.workflow_id, site.run_id, site.event_id
                        ));
                    }
                }
            }
            Seen::Damaged => self.damaged += 1,
            Seen::NotEnvelope => {}
        }
    }

    fn merge(&mut self, other: Self) {
        self.scanned += other.scanned;
        self.in_use += other.in_use;
        self.damaged += other.damaged;
        self.refs.merge(other.refs);
        self.examples.extend(other.examples);
        self.examples.sort();
        self.examples.truncate(EXAMPLES);
    }
}

/// The objects that references point to.
#[derive(Default)]
pub(super) struct ReferenceTally {
    /// `(bucket, key)` of plain references.
    pub(super) claims: HashSet<(String, String)>,
    /// References whose claim could not be read.
    pub(super) unresolved: u64,
    /// References seen.
    pub(super) references: u64,
}

impl Tally<()> for ReferenceTally {
    fn add(&mut self, _: &(), _: &Site<'_>, item: Classified) {
        if !item.reference {
            return;
        }
        self.references += 1;
        match item
            .claim
            .and_then(|c| Some((c.get("bucket")?.clone(), c.get("key")?.clone())))
        {
            Some(claim) => {
                self.claims.insert(claim);
            }
            None => self.unresolved += 1,
        }
    }

    fn merge(&mut self, other: Self) {
        self.claims.extend(other.claims);
        self.unresolved += other.unresolved;
        self.references += other.references;
    }
}

/// What a scan saw, and what it could not see.
pub(super) struct Scan<T> {
    pub(super) tally: T,
    pub(super) executions: u64,
    pub(super) events: u64,
    /// Listing stopped early.
    pub(super) list_error: Option<TemporalError>,
    /// Runs whose history could not be read.
    pub(super) unread: Vec<TemporalError>,
}

/// Lists the namespace's executions (open, then closed) and reads every run's history.
pub(super) async fn scan<C: ?Sized + Sync, T: Tally<C>>(
    connection: &Connection,
    namespace: &str,
    options: &ScanOptions,
    ctx: &C,
) -> Scan<T> {
    let mut out = Scan {
        tally: T::default(),
        executions: 0,
        events: 0,
        list_error: None,
        unread: Vec::new(),
    };
    let mut seen_runs: HashSet<String> = HashSet::new();
    'queries: for query in QUERIES {
        let mut token = Vec::new();
        loop {
            let request = ListWorkflowExecutionsRequest {
                namespace: namespace.to_owned(),
                page_size: options.list_page_size.max(1),
                next_page_token: std::mem::take(&mut token),
                query: query.to_owned(),
            };
            let mut client = connection.clone();
            let page = match client
                .list_workflow_executions(request.into_request())
                .await
            {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    out.list_error = Some(TemporalError::List {
                        namespace: namespace.to_owned(),
                        message: status_message(&status),
                    });
                    break 'queries;
                }
            };
            let runs: Vec<WorkflowExecution> = page
                .executions
                .into_iter()
                .filter_map(|info| info.execution)
                .filter(|e| seen_runs.insert(e.run_id.clone()))
                .collect();
            let read: Vec<_> = futures::stream::iter(runs)
                .map(|run| read_run::<C, T>(connection, namespace, run, options, ctx))
                .buffer_unordered(options.concurrency.max(1))
                .collect()
                .await;
            for result in read {
                match result {
                    Ok(Some((tally, events))) => {
                        out.tally.merge(tally);
                        out.executions += 1;
                        out.events += events;
                    }
                    // Deleted since it was listed (retention): it needs no key any more.
                    Ok(None) => {}
                    Err(e) => out.unread.push(e),
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
    }
    out
}

/// Reads one run's history to its last event: its tally and event count, or `None` when the
/// run no longer exists.
pub(super) async fn read_run<C: ?Sized + Sync, T: Tally<C>>(
    connection: &Connection,
    namespace: &str,
    run: WorkflowExecution,
    options: &ScanOptions,
    ctx: &C,
) -> Result<Option<(T, u64)>, TemporalError> {
    let failed = |message: String| TemporalError::History {
        execution: format!("{}/{}", run.workflow_id, run.run_id),
        message,
    };
    let mut client = connection.clone();
    let mut tally = T::default();
    let mut events = 0u64;
    let mut token = Vec::new();
    loop {
        let request = GetWorkflowExecutionHistoryRequest {
            namespace: namespace.to_owned(),
            execution: Some(run.clone()),
            maximum_page_size: options.history_page_size.max(1),
            next_page_token: std::mem::take(&mut token),
            wait_new_event: false,
            history_event_filter_type: HistoryEventFilterType::AllEvent as i32,
            skip_archival: true,
        };
        let page = match client
            .get_workflow_execution_history(request.into_request())
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(failed(status_message(&status))),
        };
        if !page.raw_history.is_empty() {
            return Err(failed(
                "the frontend sent raw history blobs, which this tool does not read".into(),
            ));
        }
        for event in page.history.map(|h| h.events).unwrap_or_default() {
            events += 1;
            let site = Site {
                workflow_id: &run.workflow_id,
                run_id: &run.run_id,
                event_id: event.event_id,
            };
            let payloads = event_payloads(event)
                .await
                .map_err(|e| failed(format!("event {}: {e}", site.event_id)))?;
            for p in &payloads {
                tally.add(ctx, &site, classify_payload(p));
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(Some((tally, events)));
        }
        token = page.next_page_token;
    }
}

pub(super) fn status_message(status: &temporalio_client::tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

// ---------------------------------------------------------------------------------------
// Finding the payloads of an event.

/// Every codec payload in `event` (search attributes excluded), taken out of it. The walk is
/// the SDK's own (`PayloadVisitable`, generated from the protobuf descriptors for every
/// message that holds a payload): exactly the fields a payload codec is applied to.
pub(super) async fn event_payloads(
    mut event: HistoryEvent,
) -> Result<Vec<Payload>, PayloadConversionError> {
    let mut collect = Collect::default();
    event.visit_payloads_mut(&mut collect).await?;
    Ok(collect.found)
}

/// Takes the payloads it visits, except search attributes (server-readable, never encoded).
#[derive(Default)]
pub(super) struct Collect {
    pub(super) found: Vec<Payload>,
}

impl AsyncPayloadVisitor for Collect {
    fn visit<'a>(
        &'a mut self,
        field: PayloadField<'a>,
    ) -> BoxFuture<'a, Result<(), PayloadConversionError>> {
        // The same test as the SDK's encoder uses to leave search attributes alone.
        if !field.path.contains("SearchAttributes.indexed_fields") {
            match field.data {
                PayloadFieldData::Single(p) => self.found.push(std::mem::take(p)),
                PayloadFieldData::Repeated(ps) => self.found.append(ps),
                PayloadFieldData::Payloads(ps) => self.found.append(&mut ps.payloads),
            }
        }
        Box::pin(async { Ok(()) })
    }
}
