//! Data-key leases: one per (active KEK, context), created on first use, renewed in the
//! background before it is spent so that sealing does not wait for the KMS.
//!
//! A lease is *usable* until its age, payload count or byte count reaches its limit
//! ([`LeaseLimits`]). Once it is *due* — within [`LeaseLimits::renew_before`] of its maximum
//! age, or 90% through its payload budget — the seal that notices starts one background
//! renewal and goes on with the current lease; when the renewal lands, later seals use the
//! new lease. A seal waits for the KMS only when there is no usable lease at all: the first
//! seal for a context, a lease that ran out while the KMS was failing, or a lease spent by
//! payload count when `max_payloads` is under 100 (too few to renew ahead by count, which
//! would fetch keys that are never used). Those seals are counted
//! ([`KeyStats::seal_waits`](crate::KeyStats::seal_waits)).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sealbox_core::{DataKey, EncryptionContext, Error, GeneratedKey, WrappedKey};
use tokio::sync::Mutex;

use crate::front::slot_hash;
use crate::stats::bump;
use crate::{Keyring, LeaseLimits, Unwrapped, encode_key_binding};

/// How long a failed background renewal waits before the next one is tried (the current
/// lease stays in use meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A lease's key material: the plaintext data key and its wrapped form.
pub(crate) struct LeaseKeys {
    pub(crate) data_key: Arc<DataKey>,
    pub(crate) wrapped: WrappedKey,
}

/// A lease in use, with its usage so far.
struct LeaseState {
    keys: Arc<LeaseKeys>,
    created: Duration,
    payloads: u64,
    bytes: u64,
    /// No background renewal before this time (set after one failed).
    retry_at: Duration,
}

impl LeaseState {
    fn usable(&self, limits: &LeaseLimits, now: Duration, len: u64) -> bool {
        now.saturating_sub(self.created) < limits.max_age
            && self.payloads < limits.max_payloads
            && self.bytes.saturating_add(len) <= limits.max_bytes
    }

    /// Whether a background renewal should start now (the lease is still usable).
    fn due(&self, limits: &LeaseLimits, now: Duration) -> bool {
        if now < self.retry_at {
            return false;
        }
        let by_age = limits
            .renew_at()
            .is_some_and(|at| now.saturating_sub(self.created) >= at);
        let by_count = limits.max_payloads >= 100
            && self.payloads >= limits.max_payloads - limits.max_payloads / 10;
        by_age || by_count
    }
}

/// One lease per (KEK, context). The mutex guards the lease; a renewal in the request's path
/// holds it across the KMS call (concurrent sealers wait for that one call), a background
/// renewal only to swap the result in.
#[derive(Default)]
pub(crate) struct LeaseSlot {
    state: Mutex<Option<LeaseState>>,
    /// A background renewal is running.
    renewing: AtomicBool,
    /// A seal holds the lock while it waits for the KMS.
    waiting: AtomicBool,
}

impl Keyring {
    /// The lease key to seal `len` bytes under `context` with, counting the payload against
    /// the lease's limits.
    pub(crate) async fn lease(
        &self,
        context: &EncryptionContext,
        len: u64,
    ) -> Result<Arc<LeaseKeys>, Error> {
        let slot = self.lease_slot(context).await;
        let mut state = match slot.state.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                if slot.waiting.load(Ordering::Acquire) {
                    bump(&self.inner.counters.seal_waits);
                }
                slot.state.lock().await
            }
        };
        let now = self.inner.clock.now();
        let limits = self.inner.limits;
        if let Some(s) = state.as_mut()
            && s.usable(&limits, now, len)
        {
            s.payloads += 1;
            s.bytes += len;
            if s.due(&limits, now) && !slot.renewing.swap(true, Ordering::AcqRel) {
                self.renew_in_background(slot.clone(), context.clone());
            }
            return Ok(s.keys.clone());
        }
        // No usable lease: this seal (and any that queue behind it) waits for the KMS.
        bump(&self.inner.counters.seal_waits);
        slot.waiting.store(true, Ordering::Release);
        let generated = self.generate(context).await;
        slot.waiting.store(false, Ordering::Release);
        let keys = self.remember(context, generated?).await;
        *state = Some(LeaseState {
            keys: keys.clone(),
            created: now,
            payloads: 1,
            bytes: len,
            retry_at: Duration::ZERO,
        });
        Ok(keys)
    }

    /// The lease slot of `context`: from the lease cache's front, else from the cache (created
    /// there if new). The cache drops a slot that has not been read for `max_age`; the front
    /// keeps one for half of that, so a steady sealer reads the cache at least every
    /// `max_age / 2` and its slot (with a lease renewed ahead in it) is never dropped.
    async fn lease_slot(&self, context: &EncryptionContext) -> Arc<LeaseSlot> {
        let hash = context_hash(context);
        let now = Instant::now();
        if let Some(slot) = self.inner.lease_front.get(hash, context, now) {
            return slot;
        }
        let slot = self
            .inner
            .leases
            .get_with_by_ref(context, async { Arc::new(LeaseSlot::default()) })
            .await;
        self.inner.lease_front.put(
            hash,
            context.clone(),
            slot.clone(),
            now + self.inner.limits.max_age / 2,
        );
        slot
    }

    /// Starts one renewal of `slot`'s lease on the current tokio runtime. Without a runtime
    /// there is no background: the lease is renewed in the request's path once it is spent.
    fn renew_in_background(&self, slot: Arc<LeaseSlot>, context: EncryptionContext) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            slot.renewing.store(false, Ordering::Release);
            return;
        };
        let keyring = self.clone();
        runtime.spawn(async move {
            match keyring.generate(&context).await {
                Ok(generated) => {
                    let keys = keyring.remember(&context, generated).await;
                    bump(&keyring.inner.counters.leases_renewed_ahead);
                    *slot.state.lock().await = Some(LeaseState {
                        keys,
                        created: keyring.inner.clock.now(),
                        payloads: 0,
                        bytes: 0,
                        retry_at: Duration::ZERO,
                    });
                }
                Err(e) => {
                    tracing::warn!(
                        "background data-key lease renewal failed (the current lease stays in \
                         use until it is spent): {e}"
                    );
                    if let Some(s) = slot.state.lock().await.as_mut() {
                        s.retry_at = keyring.inner.clock.now() + RETRY_AFTER;
                    }
                }
            }
            slot.renewing.store(false, Ordering::Release);
        });
    }

    /// One `generate_data_key` call to the active KEK, checked to be wrapped by it.
    async fn generate(&self, context: &EncryptionContext) -> Result<GeneratedKey, Error> {
        let generated = self
            .call(
                &self.inner.counters.generate,
                self.inner.active.generate_data_key(context),
            )
            .await?;
        self.check_owned(&generated.wrapped)?;
        Ok(generated)
    }

    /// Records a new lease key: counted, and primed in the unwrap cache (this process knows
    /// the wrapped key's plaintext already, so opening what it sealed needs no KMS call).
    async fn remember(
        &self,
        context: &EncryptionContext,
        generated: GeneratedKey,
    ) -> Arc<LeaseKeys> {
        bump(&self.inner.counters.leases_created);
        tracing::debug!(kek = %generated.wrapped.kek(), "new data-key lease");
        let keys = Arc::new(LeaseKeys {
            data_key: Arc::new(generated.data_key),
            wrapped: generated.wrapped,
        });
        self.inner
            .unwrapped
            .insert(
                encode_key_binding(&keys.wrapped, context),
                Unwrapped {
                    key: keys.data_key.clone(),
                    until: Instant::now() + self.inner.unwrap_ttl,
                },
            )
            .await;
        keys
    }

    /// Whether sealing `len` bytes under `context` now would need a KMS call (no lease yet,
    /// or the current one is spent). A concurrent seal may change the answer; it is an
    /// estimate for admission control, not a guarantee.
    pub async fn seal_needs_kms(&self, context: &EncryptionContext, len: u64) -> bool {
        let hash = context_hash(context);
        let slot = match self.inner.lease_front.get(hash, context, Instant::now()) {
            Some(slot) => slot,
            None => match self.inner.leases.get(context).await {
                Some(slot) => slot,
                None => return true,
            },
        };
        let Ok(state) = slot.state.try_lock() else {
            return false; // someone is sealing (or renewing) right now; we would share it
        };
        match state.as_ref() {
            Some(s) => !s.usable(&self.inner.limits, self.inner.clock.now(), len),
            None => true,
        }
    }
}

/// The lease front's slot hash of a context (its pairs' bytes).
fn context_hash(context: &EncryptionContext) -> u64 {
    slot_hash(
        context
            .iter()
            .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()]),
    )
}
