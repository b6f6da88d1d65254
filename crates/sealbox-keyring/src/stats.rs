//! KMS call accounting, so tests and benchmarks can assert how many calls were made.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) generate: AtomicU64,
    pub(crate) wrap: AtomicU64,
    pub(crate) unwrap: AtomicU64,
    pub(crate) rewrap: AtomicU64,
    pub(crate) describe: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) seals: AtomicU64,
    pub(crate) opens: AtomicU64,
    pub(crate) leases_created: AtomicU64,
    pub(crate) batch_unwraps: AtomicU64,
    pub(crate) batch_unwrapped_keys: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) seal_waits: AtomicU64,
    pub(crate) leases_renewed_ahead: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> KeyStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        KeyStats {
            generate_calls: get(&self.generate),
            wrap_calls: get(&self.wrap),
            unwrap_calls: get(&self.unwrap),
            rewrap_calls: get(&self.rewrap),
            describe_calls: get(&self.describe),
            failed_calls: get(&self.failures),
            seals: get(&self.seals),
            opens: get(&self.opens),
            leases_created: get(&self.leases_created),
            batch_unwrap_calls: get(&self.batch_unwraps),
            batch_unwrapped_keys: get(&self.batch_unwrapped_keys),
            negative_cache_hits: get(&self.negative_hits),
            seal_waits: get(&self.seal_waits),
            leases_renewed_ahead: get(&self.leases_renewed_ahead),
        }
    }
}

/// A snapshot of a key-ring's counters. Provider calls are counted when they are made,
/// whether they succeed or fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStats {
    /// `generate_data_key` calls.
    pub generate_calls: u64,
    /// `wrap` calls.
    pub wrap_calls: u64,
    /// `unwrap` calls (cache misses on open, plus rewrap verification).
    pub unwrap_calls: u64,
    /// `rewrap` calls.
    pub rewrap_calls: u64,
    /// `describe` calls.
    pub describe_calls: u64,
    /// Provider calls that returned an error.
    pub failed_calls: u64,
    /// `seal` calls.
    pub seals: u64,
    /// `open` calls.
    pub opens: u64,
    /// Data-key leases created (each is one `generate_data_key` call that succeeded).
    pub leases_created: u64,
    /// `unwrap_many` calls made by `open_many` (one per KEK with uncached keys).
    pub batch_unwrap_calls: u64,
    /// Wrapped keys unwrapped through those batch calls.
    pub batch_unwrapped_keys: u64,
    /// Opens refused from the negative cache: the same wrapped key (in the same context)
    /// had just failed to unwrap as invalid, so the KMS was not asked again.
    pub negative_cache_hits: u64,
    /// Seals that waited for a KMS call: there was no usable lease for their context (the
    /// first seal of a context, a lease spent while background renewal was failing, or
    /// limits too small to renew ahead), so a lease was created in the seal's path — by it,
    /// or by a seal it queued behind. With steady traffic this stays flat across lease
    /// rollovers.
    pub seal_waits: u64,
    /// Leases replaced ahead of expiry by a background renewal (also counted in
    /// `leases_created`).
    pub leases_renewed_ahead: u64,
}

impl std::ops::AddAssign for KeyStats {
    /// Adds another key-ring's counters (for totals over several key-rings).
    fn add_assign(&mut self, o: Self) {
        let Self {
            generate_calls,
            wrap_calls,
            unwrap_calls,
            rewrap_calls,
            describe_calls,
            failed_calls,
            seals,
            opens,
            leases_created,
            batch_unwrap_calls,
            batch_unwrapped_keys,
            negative_cache_hits,
            seal_waits,
            leases_renewed_ahead,
        } = self;
        for (total, add) in [
            (generate_calls, o.generate_calls),
            (wrap_calls, o.wrap_calls),
            (unwrap_calls, o.unwrap_calls),
            (rewrap_calls, o.rewrap_calls),
            (describe_calls, o.describe_calls),
            (failed_calls, o.failed_calls),
            (seals, o.seals),
            (opens, o.opens),
            (leases_created, o.leases_created),
            (batch_unwrap_calls, o.batch_unwrap_calls),
            (batch_unwrapped_keys, o.batch_unwrapped_keys),
            (negative_cache_hits, o.negative_cache_hits),
            (seal_waits, o.seal_waits),
            (leases_renewed_ahead, o.leases_renewed_ahead),
        ] {
            *total += add;
        }
    }
}

impl KeyStats {
    /// All provider (KMS) calls; a batch unwrap counts as one.
    pub fn kms_calls(&self) -> u64 {
        self.generate_calls
            + self.wrap_calls
            + self.unwrap_calls
            + self.rewrap_calls
            + self.describe_calls
            + self.batch_unwrap_calls
    }
}
