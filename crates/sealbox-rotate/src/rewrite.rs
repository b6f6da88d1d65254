//! `sealbox rotate rewrap|reencrypt`: rewrite the envelopes of a store under each
//! namespace's active KEK — verified before every replace, conditional, resumable.
//!
//! For each envelope (the keys of one shard, page by page, `concurrency` at a time):
//!
//! 1. its namespace comes from its own header's context; the policy gives that namespace's
//!    key-ring, whose active KEK is the target;
//! 2. **rewrap** skips envelopes already on the active KEK's current version; otherwise the
//!    data key is wrapped again (native rewrap when the active KEK owns the old wrapped key,
//!    else unwrap + wrap) — once per distinct wrapped key, however many envelopes share it —
//!    and only the key section of the envelope changes. **reencrypt** seals the plaintext
//!    again under a fresh data key;
//! 3. **verify before replace**: the new envelope is opened and its plaintext's SHA-256
//!    compared with the old one's; any failure leaves the object untouched;
//! 4. a **conditional replace** stores it only if the object is still the version read, so a
//!    concurrent writer's version is never overwritten (reported as a conflict).
//!
//! With a checkpoint, the position is saved after every page; a killed run restarted with
//! the same checkpoint resumes after the last finished page (objects done since are seen
//! again: rewrap skips them, reencrypt re-encrypts them — correct either way).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota};
use moka::future::Cache;
use sealbox_core::format::replace_wrapped_key;
use sealbox_core::{EncryptionContext, EnvelopeHeader, WrappedKey};
use sealbox_keyring::Keyring;
use sealbox_policy::PolicyKeyrings;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::classify::{Item, classify};
use crate::report::{Failure, Report};
use crate::shard::Shard;
use crate::store::{Object, Store, StoreError};
use crate::walk::{PAGE_SIZE, Pages};

/// What a run does to each envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Wrap the data key with the active KEK's current version; the body is untouched.
    Rewrap,
    /// Seal the plaintext again under a fresh data key (for a suspected data-key leak).
    Reencrypt,
}

impl Mode {
    /// `rewrapped` / `reencrypted`.
    pub fn done_word(self) -> &'static str {
        match self {
            Mode::Rewrap => "rewrapped",
            Mode::Reencrypt => "reencrypted",
        }
    }
}

/// Reports progress (a progress bar); called after every page.
pub trait Progress: Send + Sync {
    /// The counts so far.
    fn update(&self, report: &Report);

    /// Where the run stands after a page: a run given it as [`RunOptions::resume`] goes on
    /// from there (a Temporal activity heartbeats it).
    fn position(&self, _position: &Position) {}
}

/// Where a run stands: every key up to and including `after` is done, with the counts so
/// far. Resuming from it sees the objects done after it again (rewrap skips them).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The last key of the last finished page.
    pub after: Option<String>,
    /// The counts so far.
    pub report: Report,
}

/// How to run.
#[derive(Clone)]
#[non_exhaustive]
pub struct RunOptions {
    /// Rewrap or reencrypt.
    pub mode: Mode,
    /// Change nothing; count what would change.
    pub dry_run: bool,
    /// Save and resume the position here (not used by a dry run).
    pub checkpoint: Option<PathBuf>,
    /// Only these keys.
    pub shard: Shard,
    /// Objects in flight at once (at least 1).
    pub concurrency: usize,
    /// At most this many KMS calls per second, charged before each step that may call the
    /// KMS.
    pub kms_rate: Option<NonZeroU32>,
    /// Objects per store `list` call.
    pub page_size: usize,
    /// Progress reporting.
    pub progress: Option<Arc<dyn Progress>>,
    /// Go on from this position (when there is no checkpoint file, or it is new).
    pub resume: Option<Position>,
}

impl RunOptions {
    /// Defaults: no dry run, no checkpoint, every key, 16 in flight, no KMS rate limit.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            dry_run: false,
            checkpoint: None,
            shard: Shard::ALL,
            concurrency: 16,
            kms_rate: None,
            page_size: PAGE_SIZE,
            progress: None,
            resume: None,
        }
    }
}

/// Why a run stopped before the end (per-object problems are in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be listed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The checkpoint could not be used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// What happened to one object.
enum Outcome {
    Gone,
    Changed,
    WouldChange,
    Skipped,
    NotEnvelope,
    External,
    Conflict(String),
    Failed(Failure),
}

/// Shared state of one run.
struct Job<'a> {
    policy: &'a PolicyKeyrings,
    store: &'a dyn Store,
    options: &'a RunOptions,
    limiter: Option<DefaultDirectRateLimiter>,
    /// Distinct old wrapped key (+ context) → its rewrapped form, computed once.
    rewrapped: Cache<[u8; 32], WrappedKey>,
    /// Active KEK's current version per key-ring (index in `policy.keyrings()`).
    versions: Cache<usize, Option<String>>,
    /// `describe` calls made for `versions` (not counted by the key-rings).
    describes: std::sync::atomic::AtomicU64,
}

/// Runs a rewrap or reencrypt over `store`. Per-object failures and conflicts are in the
/// report; an error means the walk itself could not go on (its progress is checkpointed).
pub async fn run(
    policy: &PolicyKeyrings,
    store: &dyn Store,
    options: &RunOptions,
) -> Result<Report, RunError> {
    let run_id = format!(
        "{} {} shard {}",
        options.mode.done_word(),
        store.describe(),
        options.shard
    );
    let checkpoint_path = options.checkpoint.as_ref().filter(|_| !options.dry_run);
    let mut checkpoint = match checkpoint_path {
        Some(path) => Checkpoint::load(path, &run_id)?,
        None => Checkpoint {
            run: run_id,
            after: None,
            finished: false,
            report: Report::default(),
        },
    };
    if checkpoint.finished {
        return Ok(checkpoint.report);
    }
    if let (None, Some(resume)) = (&checkpoint.after, &options.resume) {
        checkpoint.after = resume.after.clone();
        checkpoint.report = resume.report.clone();
    }
    let job = Job {
        policy,
        store,
        options,
        limiter: options
            .kms_rate
            .map(|n| DefaultDirectRateLimiter::direct(Quota::per_second(n))),
        rewrapped: Cache::new(100_000),
        versions: Cache::new(1_000),
        describes: std::sync::atomic::AtomicU64::new(0),
    };
    let kms_before = kms_calls(policy);
    let kms_earlier = checkpoint.report.kms_calls;
    let mut pages = Pages::new(
        store,
        options.shard,
        checkpoint.after.clone(),
        options.page_size,
    );
    while let Some(page) = pages.next().await {
        let page = page?;
        let outcomes: Vec<Outcome> = futures::stream::iter(page.objects)
            .map(|meta| job.object(meta.key))
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
        let report = &mut checkpoint.report;
        for outcome in outcomes {
            report.scanned += u64::from(!matches!(outcome, Outcome::Gone));
            match outcome {
                Outcome::Gone => {}
                Outcome::Changed => report.changed += 1,
                Outcome::WouldChange => report.would_change += 1,
                Outcome::Skipped => report.skipped += 1,
                Outcome::NotEnvelope => report.not_envelopes += 1,
                Outcome::External => report.external_objects += 1,
                Outcome::Conflict(key) => report.conflicts.push(key),
                Outcome::Failed(f) => report.failed.push(f),
            }
        }
        report.kms_calls = kms_earlier
            + (kms_calls(policy) - kms_before)
            + job.describes.load(std::sync::atomic::Ordering::Relaxed);
        checkpoint.after = Some(page.last_key);
        if let Some(path) = checkpoint_path {
            checkpoint.save(path)?;
        }
        if let Some(p) = &options.progress {
            p.update(&checkpoint.report);
            p.position(&Position {
                after: checkpoint.after.clone(),
                report: checkpoint.report.clone(),
            });
        }
    }
    checkpoint.finished = true;
    if let Some(path) = checkpoint_path {
        checkpoint.save(path)?;
    }
    Ok(checkpoint.report)
}

fn kms_calls(policy: &PolicyKeyrings) -> u64 {
    policy
        .keyrings()
        .iter()
        .map(|k| k.stats().kms_calls())
        .sum()
}

fn fingerprint(wrapped: &WrappedKey, context: &EncryptionContext) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        wrapped.kek().provider().as_bytes(),
        wrapped.kek().key_id().as_bytes(),
        wrapped.kek().key_version().unwrap_or("").as_bytes(),
        wrapped.ciphertext(),
        &context.encode(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl Job<'_> {
    async fn object(&self, key: String) -> Outcome {
        let object = match self.store.read(&key).await {
            Ok(o) => o,
            Err(StoreError::NotFound { .. }) => return Outcome::Gone,
            Err(e) => return fail(key, format!("read: {e}")),
        };
        let header = match classify(&object.bytes) {
            Item::Envelope(h) => h,
            Item::External(_) => return Outcome::External,
            Item::NotEnvelope => return Outcome::NotEnvelope,
            Item::Damaged(e) => return fail(key, e),
        };
        match self.envelope(&key, object, &header).await {
            Ok(outcome) => outcome,
            Err(e) => fail(key, e),
        }
    }

    async fn envelope(
        &self,
        key: &str,
        object: Object,
        header: &EnvelopeHeader,
    ) -> Result<Outcome, String> {
        let namespace = header
            .context
            .get("namespace")
            .ok_or("the envelope's context names no namespace, so no policy applies to it")?;
        let (index, keyring) = self.keyring_for(namespace)?;
        let context = &header.context;
        if self.options.mode == Mode::Rewrap && self.is_current(index, keyring, header).await? {
            return Ok(Outcome::Skipped);
        }
        if self.options.dry_run {
            return Ok(Outcome::WouldChange);
        }
        self.charge(keyring.pending_unwraps(&[(context, &object.bytes)]))
            .await;
        let old = Zeroizing::new(
            keyring
                .open(context, &object.bytes)
                .await
                .map_err(|e| format!("open: {e}"))?,
        );
        let new = match self.options.mode {
            Mode::Rewrap => {
                let old_wrapped = &header.wrapped_key;
                let id = fingerprint(old_wrapped, context);
                let new_wrapped = self
                    .rewrapped
                    .try_get_with(id, async {
                        self.charge(1).await;
                        keyring.rewrap_key(context, old_wrapped).await
                    })
                    .await
                    .map_err(|e| format!("rewrap: {e}"))?;
                replace_wrapped_key(&object.bytes, &new_wrapped)
                    .map_err(|e| format!("rewrap: {e}"))?
            }
            Mode::Reencrypt => {
                if keyring.seal_needs_kms(context, old.len() as u64).await {
                    self.charge(1).await;
                }
                keyring
                    .seal(context, &old)
                    .await
                    .map_err(|e| format!("seal: {e}"))?
            }
        };
        // Verify before replace: the new envelope opens to the same plaintext.
        self.charge(keyring.pending_unwraps(&[(context, &new)]))
            .await;
        let check = Zeroizing::new(
            keyring
                .open(context, &new)
                .await
                .map_err(|e| format!("verify: the new envelope does not open: {e}"))?,
        );
        if Sha256::digest(&*check) != Sha256::digest(&*old) {
            return Err("verify: the new envelope opens to other data; nothing stored".into());
        }
        match self.store.replace(key, &object.version, new).await {
            Ok(_) => Ok(Outcome::Changed),
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                Ok(Outcome::Conflict(key.to_owned()))
            }
            Err(e) => Err(format!("replace: {e}")),
        }
    }

    fn keyring_for(&self, namespace: &str) -> Result<(usize, &Keyring), String> {
        let tenant = self
            .policy
            .tenant(namespace)
            .map_err(|e| format!("namespace `{namespace}`: {e}"))?;
        let index = self
            .policy
            .keyrings()
            .iter()
            .position(|k| std::ptr::eq(k, tenant.keyring))
            .ok_or("the namespace's key-ring is not in the policy")?;
        Ok((index, tenant.keyring))
    }

    /// Whether the envelope is already on the key-ring's active KEK and its current version.
    async fn is_current(
        &self,
        index: usize,
        keyring: &Keyring,
        header: &EnvelopeHeader,
    ) -> Result<bool, String> {
        let active = keyring.active();
        if !active.owns(header.kek()) {
            return Ok(false);
        }
        let current = self
            .versions
            .try_get_with(index, async {
                self.charge(1).await;
                self.describes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                active
                    .describe()
                    .await
                    .map(|d| d.kek.key_version().map(str::to_owned))
            })
            .await
            .map_err(|e| format!("describe the active KEK: {e}"))?;
        Ok(current.is_none() || current.as_deref() == header.kek().key_version())
    }

    /// Waits for `calls` KMS calls' worth of the rate limit.
    async fn charge(&self, calls: usize) {
        if let Some(limiter) = &self.limiter {
            for _ in 0..calls {
                limiter.until_ready().await;
            }
        }
    }
}

fn fail(object: String, error: String) -> Outcome {
    Outcome::Failed(Failure { object, error })
}
