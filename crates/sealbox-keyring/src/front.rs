//! A small direct-mapped front for the key-ring's `moka` caches, for the hot path of a warm
//! key-ring: one atomic load, a key comparison and a clock read, where a `moka` lookup costs
//! ≈ 200–300 ns (it hashes with SipHash and records every read for its eviction policy).
//!
//! The front never decides anything the cache behind it would not: it holds only entries the
//! caller copied from that cache, each with the time it stops being valid there (an unwrapped
//! key's TTL, a lease slot's idle time), and a lookup past that time is a miss. A slot holds
//! one entry; two keys that map to the same slot take turns, and a lookup that finds another
//! key is a miss, so an attacker who chooses keys can at worst send lookups to the cache
//! behind (what every lookup cost before the front existed). Expired entries are dropped when
//! a lookup finds them, by a sweep of all slots at most once per [`SWEEP_EVERY`] when an entry
//! is stored, and with the key-ring.

use std::borrow::Borrow;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

/// The least time between two sweeps of a front's expired entries.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Entry<K, V> {
    key: K,
    value: V,
    until: Instant,
}

/// `SLOTS` direct-mapped slots of (key, value, valid until).
pub(crate) struct Front<K, V> {
    slots: Box<[ArcSwapOption<Entry<K, V>>]>,
    next_sweep: Mutex<Instant>,
}

impl<K, V: Clone> Front<K, V> {
    /// A front of `slots` slots (at least 1).
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots.max(1)).map(|_| ArcSwapOption::empty()).collect(),
            next_sweep: Mutex::new(Instant::now() + SWEEP_EVERY),
        }
    }

    fn slot(&self, hash: u64) -> &ArcSwapOption<Entry<K, V>> {
        &self.slots[(hash % self.slots.len() as u64) as usize]
    }

    /// The value stored for `key`, if its slot holds `key` and it is still valid at `now`.
    pub(crate) fn get<Q>(&self, hash: u64, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slot = self.slot(hash);
        let guard = slot.load();
        let entry = guard.as_ref()?;
        let stored: &Q = entry.key.borrow();
        if stored != key {
            return None;
        }
        if now >= entry.until {
            // Expired: drop it now (unless the slot changed meanwhile).
            slot.compare_and_swap(&guard, None);
            return None;
        }
        Some(entry.value.clone())
    }

    /// Stores `value` for `key` until `until`, replacing whatever the slot held.
    pub(crate) fn put(&self, hash: u64, key: K, value: V, until: Instant) {
        let now = Instant::now();
        if until > now {
            self.slot(hash)
                .store(Some(std::sync::Arc::new(Entry { key, value, until })));
        }
        self.sweep(now);
    }

    /// Drops every expired entry, at most once per [`SWEEP_EVERY`].
    fn sweep(&self, now: Instant) {
        {
            let Ok(mut next) = self.next_sweep.try_lock() else {
                return; // another thread is sweeping
            };
            if now < *next {
                return;
            }
            *next = now + SWEEP_EVERY;
        }
        for slot in self.slots.iter() {
            let guard = slot.load();
            if guard.as_ref().is_some_and(|e| now >= e.until) {
                slot.compare_and_swap(&guard, None);
            }
        }
    }
}

/// A fast, unkeyed 64-bit hash to pick a slot (FxHash's multiply-rotate over 8-byte words).
/// Not collision resistant, and it need not be: a slot is only a place to look, and every hit
/// compares the whole key.
pub(crate) fn slot_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0;
    let mut mix = |word: u64| h = (h.rotate_left(5) ^ word).wrapping_mul(K);
    for part in parts {
        let mut chunks = part.chunks_exact(8);
        for c in &mut chunks {
            mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        mix(u64::from_le_bytes(last) ^ ((part.len() as u64) << 56));
    }
    h
}
