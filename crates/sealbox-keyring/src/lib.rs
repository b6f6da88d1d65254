//! # sealbox-keyring
//!
//! The cached key-ring that keeps KMS calls rare:
//!
//! - **Encrypt side**: one data-key *lease* per (KEK, encryption context), renewed when it
//!   reaches its age, payload-count or byte limit ([`LeaseLimits`]). Each payload still gets
//!   its own key (HKDF from the lease key and a per-payload salt), so a lease is one KMS call
//!   for many payloads, and a lease of one payload gives one wrapped data key per payload.
//!   A lease is renewed in the background before it is spent
//!   ([`LeaseLimits::renew_before`]), so with steady traffic no seal waits for the KMS
//!   ([`KeyStats::seal_waits`]).
//! - **Decrypt side**: unwrapped data keys cached by (wrapped key, KEK, context), with a TTL
//!   and a capacity ([`CacheLimits`]).
//! - **Single flight**: concurrent misses for the same lease or the same wrapped key make
//!   exactly one provider call; the others wait for its result.
//!
//! Both caches are `moka` caches, each with a small direct-mapped front that serves a warm
//! key-ring's lookups without `moka`'s per-read bookkeeping (it holds only what its cache
//! holds, never past the cache's TTL). Data keys are held in `secrecy` boxes and zeroized
//! when dropped. Caches are per key-ring and partitioned by context, so a key leased or
//! unwrapped for one namespace is never used for another: the unwrap cache is keyed by the
//! envelope's bytes naming the wrapped key, its KEK and its context
//! ([`sealbox_core::format::encode_key_binding`]), compared whole on every hit.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
mod front;
mod lease;
mod limits;
mod stats;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use sealbox_core::crypto::{
    check_context, check_context_encoding, open_view, open_with_data_key, seal_with_suite,
    verify_commitment,
};
use sealbox_core::format::{
    EnvelopeView, MAX_PLAINTEXT_LEN, ParsedEnvelope, encode_key_binding, parse, parse_view,
    replace_wrapped_key,
};
use sealbox_core::{
    DataKey, EncryptionContext, Error, KekRef, KeyProvider, ProviderError, ProviderErrorKind,
    Suite, WrappedKey,
};

pub use clock::{Clock, ManualClock, SystemClock};
use front::{Front, slot_hash};
use lease::LeaseSlot;
pub use limits::{CacheLimits, LeaseLimits};
pub use stats::KeyStats;
use stats::{Counters, bump};

/// The unwrap cache's key: a wrapped key, its KEK and its context, as
/// [`encode_key_binding`] writes them (and as every envelope holds them at
/// [`sealbox_core::ParsedEnvelope::key_binding`], so a lookup borrows the envelope's bytes).
type Binding = Vec<u8>;

/// Slots in the unwrap cache's front (see [`front`]).
const UNWRAP_FRONT_SLOTS: usize = 256;
/// Slots in the lease cache's front.
const LEASE_FRONT_SLOTS: usize = 64;

/// An unwrapped data key and the time its unwrap-cache entry expires.
#[derive(Clone)]
struct Unwrapped {
    key: Arc<DataKey>,
    until: Instant,
}

struct Inner {
    active: Arc<dyn KeyProvider>,
    decrypt_only: Vec<Arc<dyn KeyProvider>>,
    limits: LeaseLimits,
    /// The suite new envelopes are written with.
    suite: Suite,
    /// Lease slots by context. The active KEK is fixed for the key-ring's lifetime, so the
    /// context alone identifies the (KEK, context) lease; a policy change builds a new key-ring.
    leases: Cache<EncryptionContext, Arc<LeaseSlot>>,
    /// Lease slots recently found in `leases`, until they would go idle there.
    lease_front: Front<EncryptionContext, Arc<LeaseSlot>>,
    unwrapped: Cache<Binding, Unwrapped>,
    /// Keys recently found in `unwrapped`, until their entry there expires.
    unwrap_front: Front<Binding, Arc<DataKey>>,
    unwrap_ttl: Duration,
    /// Wrapped keys the KMS just refused as invalid (see [`CacheLimits::negative_ttl`]).
    refused: Cache<Binding, ProviderError>,
    /// Wrapped keys a batch unwrap ([`Keyring::open_many`]) is fetching right now, with a
    /// future that completes when that batch is done: concurrent callers wait for it instead
    /// of asking the KMS again (a cold-cache storm makes one call per distinct key).
    in_flight: std::sync::Mutex<std::collections::HashMap<Binding, BatchDone>>,
    clock: Arc<dyn Clock>,
    counters: Counters,
}

/// A wrapped key a batch must unwrap: (provider index, item index, the item's header).
type Pending<'a> = (usize, usize, ParsedEnvelope<'a>);

/// Completes when a batch unwrap is done (its results are cached or refused by then).
type BatchDone = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// The keys a batch announced as in flight: withdrawn, and their waiters released, when the
/// batch is done or dropped (a cancelled caller never leaves others waiting).
struct Release<'a> {
    inner: &'a Inner,
    keys: Vec<&'a [u8]>,
    done: Option<futures::channel::oneshot::Sender<()>>,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            in_flight.remove(*key);
        }
        drop(in_flight);
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

/// Seals and opens envelopes with one active KEK (for new data) and any number of
/// decrypt-only KEKs (for old data). Cheap to clone; clones share caches and counters.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.inner.active)
            .field("decrypt_only", &self.inner.decrypt_only)
            .field("limits", &self.inner.limits)
            .field("suite", &self.inner.suite)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Keyring`].
#[must_use]
pub struct KeyringBuilder {
    active: Arc<dyn KeyProvider>,
    decrypt_only: Vec<Arc<dyn KeyProvider>>,
    limits: LeaseLimits,
    cache: CacheLimits,
    suite: Suite,
    clock: Arc<dyn Clock>,
}

impl KeyringBuilder {
    /// Sets the suite new envelopes are written with (default [`Suite::DEFAULT`], `0x0001`).
    /// Every suite is read whatever this says. Readers built before a suite existed refuse
    /// its envelopes, so switch writers only once every reader is upgraded.
    pub fn suite(mut self, suite: Suite) -> Self {
        self.suite = suite;
        self
    }

    /// Adds a KEK that may unwrap (old data) but never wraps new data keys.
    pub fn decrypt_only(mut self, provider: Arc<dyn KeyProvider>) -> Self {
        self.decrypt_only.push(provider);
        self
    }

    /// Sets the data-key lease limits.
    pub fn lease_limits(mut self, limits: LeaseLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the cache limits.
    pub fn cache_limits(mut self, cache: CacheLimits) -> Self {
        self.cache = cache;
        self
    }

    /// Sets the clock used for lease ages (tests use [`ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the configuration and builds the key-ring.
    pub fn build(self) -> Result<Keyring, Error> {
        self.limits.validate()?;
        self.cache.validate()?;
        let mut seen: Vec<(&str, &str)> = vec![(self.active.provider_id(), self.active.key_id())];
        for p in &self.decrypt_only {
            let id = (p.provider_id(), p.key_id());
            if seen.contains(&id) {
                return Err(Error::Config(format!(
                    "{} key `{}` is listed twice (a KEK is either active or decrypt-only, once)",
                    id.0, id.1
                )));
            }
            seen.push(id);
        }
        let leases = Cache::builder()
            .max_capacity(self.cache.lease_capacity)
            .time_to_idle(self.limits.max_age)
            .build();
        let unwrapped = Cache::builder()
            .max_capacity(self.cache.unwrap_capacity)
            .time_to_live(self.cache.unwrap_ttl)
            .build();
        let refused = Cache::builder()
            .max_capacity(self.cache.unwrap_capacity)
            .time_to_live(self.cache.negative_ttl)
            .build();
        Ok(Keyring {
            inner: Arc::new(Inner {
                active: self.active,
                decrypt_only: self.decrypt_only,
                limits: self.limits,
                suite: self.suite,
                leases,
                lease_front: Front::new(LEASE_FRONT_SLOTS),
                unwrapped,
                unwrap_front: Front::new(UNWRAP_FRONT_SLOTS),
                unwrap_ttl: self.cache.unwrap_ttl,
                refused,
                in_flight: std::sync::Mutex::new(std::collections::HashMap::new()),
                clock: self.clock,
                counters: Counters::default(),
            }),
        })
    }
}

impl Keyring {
    /// A builder whose active KEK (the one wrapping new data keys) is `active`.
    pub fn builder(active: Arc<dyn KeyProvider>) -> KeyringBuilder {
        KeyringBuilder {
            active,
            decrypt_only: Vec::new(),
            limits: LeaseLimits::default(),
            cache: CacheLimits::default(),
            suite: Suite::DEFAULT,
            clock: Arc::new(SystemClock::new()),
        }
    }

    /// The active KEK's provider.
    pub fn active(&self) -> &Arc<dyn KeyProvider> {
        &self.inner.active
    }

    /// The lease limits in force.
    pub fn lease_limits(&self) -> LeaseLimits {
        self.inner.limits
    }

    /// The suite new envelopes are written with.
    pub fn suite(&self) -> Suite {
        self.inner.suite
    }

    /// Counters of provider calls, seals and opens so far.
    pub fn stats(&self) -> KeyStats {
        self.inner.counters.snapshot()
    }

    /// Seals `plaintext` under `context` with a key derived from the current lease for
    /// (active KEK, context), creating or renewing the lease as its limits require. Returns
    /// the envelope, or an error — never the plaintext.
    pub async fn seal(
        &self,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        bump(&self.inner.counters.seals);
        let len = plaintext.len() as u64;
        if len > MAX_PLAINTEXT_LEN {
            return Err(Error::PlaintextTooLarge {
                len,
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let keys = self.lease(context, len).await?;
        seal_with_suite(
            self.inner.suite,
            &keys.data_key,
            &keys.wrapped,
            context,
            plaintext,
        )
    }

    /// Opens an envelope that must have been sealed under exactly `context` by a KEK this
    /// key-ring knows (active or decrypt-only). Checks, in order: format, context, KEK,
    /// unwrap (cached, single-flight), key commitment, AES-GCM authentication.
    pub async fn open(
        &self,
        context: &EncryptionContext,
        envelope: &[u8],
    ) -> Result<Vec<u8>, Error> {
        bump(&self.inner.counters.opens);
        let view = parse_view(envelope)?;
        check_context_encoding(view.context_encoding(), context)?;
        self.open_checked(&view, context).await
    }

    /// Opens an envelope whose format and context are checked. A cached key opens it
    /// without copying any part of the header (only keys unwrapped for a KEK of this
    /// key-ring are ever cached); otherwise the header is decoded, its KEK must be one of
    /// this key-ring's, and the key is unwrapped (single flight) and cached.
    async fn open_checked(
        &self,
        view: &EnvelopeView<'_>,
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, Error> {
        let binding = view.key_binding();
        if let Some(key) = self.cached(binding).await {
            return open_view(&key, view, context);
        }
        let parsed = view.to_parsed()?;
        let provider = self.provider_for(parsed.header.kek())?;
        let key = self
            .unwrap_cached(provider, &parsed.header.wrapped_key, context, binding)
            .await?;
        open_with_data_key(&key, &parsed, context)
    }

    /// Rewraps an envelope's data key under the active KEK's current version, leaving the
    /// body untouched. Uses the provider's native rewrap when the envelope is already under
    /// the active KEK (an older version) and the provider has one; otherwise unwraps with the
    /// old KEK (through the cache) and wraps with the active one. The new wrapped key is
    /// unwrapped again and checked against the envelope's key commitment before the new
    /// envelope is returned, so a caller that stores the result only after this returns `Ok`
    /// never replaces data with something unreadable.
    pub async fn rewrap(
        &self,
        context: &EncryptionContext,
        envelope: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let parsed = parse(envelope)?;
        check_context(&parsed.header.context, context)?;
        let new_wrapped = self.rewrap_key(context, &parsed.header.wrapped_key).await?;
        let check = self
            .call(
                &self.inner.counters.unwrap,
                self.inner.active.unwrap(&new_wrapped, context),
            )
            .await?;
        verify_commitment(&check, &parsed.header)?;
        Ok(replace_wrapped_key(envelope, &new_wrapped)?)
    }

    /// The key half of [`Keyring::rewrap`]: `wrapped` (bound to `context`) wrapped again by
    /// the active KEK's current version — the provider's native rewrap when the active KEK
    /// owns it and has one ([`KeyProvider::native_rewrap`]), else an unwrap (through the
    /// cache) and a wrap. **Not verified**: a caller must open the envelope carrying the
    /// result before storing it (the rotation job does, and compares plaintexts), or use
    /// [`Keyring::rewrap`], which checks the key commitment.
    pub async fn rewrap_key(
        &self,
        context: &EncryptionContext,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, Error> {
        let active = &self.inner.active;
        let new_wrapped = if active.owns(wrapped.kek()) && active.native_rewrap() {
            self.call(&self.inner.counters.rewrap, active.rewrap(wrapped, context))
                .await?
        } else {
            let provider = self.provider_for(wrapped.kek())?;
            let binding = encode_key_binding(wrapped, context);
            let key = self
                .unwrap_cached(provider, wrapped, context, &binding)
                .await?;
            self.call(&self.inner.counters.wrap, active.wrap(&key, context))
                .await?
        };
        self.check_owned(&new_wrapped)?;
        Ok(new_wrapped)
    }

    /// Opens many envelopes at once, results in input order. Wrapped keys not yet cached are
    /// deduplicated and unwrapped with one [`KeyProvider::unwrap_many`] call per KEK (one
    /// HTTP request for providers with a batch API, such as Transit), then cached. Each item
    /// fails or succeeds on its own, with the same checks as [`Keyring::open`].
    pub async fn open_many(
        &self,
        items: &[(&EncryptionContext, &[u8])],
    ) -> Vec<Result<Vec<u8>, Error>> {
        let counters = &self.inner.counters;
        let mut views = Vec::with_capacity(items.len());
        // (provider index, item index, decoded header) of every distinct wrapped key that is
        // not cached yet.
        let mut pending: Vec<Pending<'_>> = Vec::new();
        let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        for (i, (context, envelope)) in items.iter().enumerate() {
            bump(&counters.opens);
            let mut item = parse_view(envelope).map_err(Error::from).and_then(|v| {
                check_context_encoding(v.context_encoding(), context)?;
                Ok(v)
            });
            if let Ok(view) = &item {
                let binding = view.key_binding();
                if !self.is_cached_or_refused(binding) && seen.insert(binding) {
                    let resolved = view.to_parsed().map_err(Error::from).and_then(|p| {
                        let index = self.provider_index(p.header.kek())?;
                        Ok((index, p))
                    });
                    match resolved {
                        Ok((index, p)) => pending.push((index, i, p)),
                        Err(e) => item = Err(e),
                    }
                }
            }
            views.push(item);
        }
        let binding_of = |i: usize| match &views[i] {
            Ok(v) => v.key_binding(),
            Err(_) => &[][..],
        };
        // Single flight across callers: a key another batch is fetching is waited for, not
        // fetched again; the keys this batch fetches are announced until it is done.
        let mut waits: Vec<BatchDone> = Vec::new();
        let (done, announced) = futures::channel::oneshot::channel::<()>();
        let mut release = Release {
            inner: &self.inner,
            keys: Vec::new(),
            done: Some(done),
        };
        {
            use futures::FutureExt;
            let announced: BatchDone = announced.map(|_| ()).boxed().shared();
            let mut in_flight = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pending.retain(|(_, i, _)| match in_flight.get(binding_of(*i)) {
                Some(other) => {
                    waits.push(other.clone());
                    false
                }
                // A batch that finished since the check above cached (or refused) the key
                // before withdrawing it: asking again would be a second KMS call.
                None if self.is_cached_or_refused(binding_of(*i)) => false,
                None => {
                    in_flight.insert(binding_of(*i).to_vec(), announced.clone());
                    release.keys.push(binding_of(*i));
                    true
                }
            });
        }
        let mut failed: std::collections::HashMap<&[u8], ProviderError> =
            std::collections::HashMap::new();
        let mut by_provider: Vec<usize> = pending.iter().map(|(p, _, _)| *p).collect();
        by_provider.sort_unstable();
        by_provider.dedup();
        // One batch per KEK; the batches of different KEKs run concurrently.
        let batches: Vec<(usize, Vec<&Pending<'_>>)> = by_provider
            .into_iter()
            .map(|provider| {
                let keys = pending.iter().filter(|(p, _, _)| *p == provider).collect();
                (provider, keys)
            })
            .collect();
        let calls = batches.iter().map(|(provider, keys)| {
            let provider = self.provider_at(*provider);
            bump(&counters.batch_unwraps);
            counters
                .batch_unwrapped_keys
                .fetch_add(keys.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let requests: Vec<(&WrappedKey, &EncryptionContext)> = keys
                .iter()
                .map(|(_, i, p)| (&p.header.wrapped_key, items[*i].0))
                .collect();
            async move { provider.unwrap_many(&requests).await }
        });
        let all_results = futures::future::join_all(calls).await;
        for ((_, keys), results) in batches.iter().zip(all_results) {
            for ((_, i, _), result) in keys.iter().zip(results) {
                let binding = binding_of(*i);
                match result {
                    Ok(data_key) => {
                        self.inner
                            .unwrapped
                            .insert(binding.to_vec(), self.fresh(data_key))
                            .await
                    }
                    Err(e) => {
                        bump(&counters.failures);
                        tracing::warn!(provider = e.provider(), key_id = e.key_id(), kind = ?e.kind(), "batch unwrap item failed: {e}");
                        self.remember_refusal(binding, &e).await;
                        failed.insert(binding, e);
                    }
                }
            }
        }
        // This batch is done: its keys are cached (or refused); release their waiters.
        drop(release);
        futures::future::join_all(waits).await;
        let mut out = Vec::with_capacity(items.len());
        for ((context, _), item) in items.iter().zip(&views) {
            out.push(match item {
                Err(e) => Err(e.clone()),
                Ok(view) => match failed.get(view.key_binding()) {
                    Some(e) => Err(Error::Provider(e.clone())),
                    // Normally cached by now; a key evicted meanwhile is unwrapped singly.
                    None => self.open_checked(view, context).await,
                },
            });
        }
        out
    }

    /// The cached data key of `binding`: from the unwrap cache's front, else from the cache
    /// (and then kept in the front until the cache entry expires).
    async fn cached(&self, binding: &[u8]) -> Option<Arc<DataKey>> {
        let hash = slot_hash([binding]);
        if let Some(k) = self.inner.unwrap_front.get(hash, binding, Instant::now()) {
            return Some(k);
        }
        let u = self.inner.unwrapped.get(binding).await?;
        self.inner
            .unwrap_front
            .put(hash, binding.to_vec(), u.key.clone(), u.until);
        Some(u.key)
    }

    /// Whether the unwrap cache holds `binding`'s key or the negative cache its refusal.
    fn is_cached_or_refused(&self, binding: &[u8]) -> bool {
        let front = &self.inner.unwrap_front;
        front
            .get(slot_hash([binding]), binding, Instant::now())
            .is_some()
            || self.inner.unwrapped.contains_key(binding)
            || self.inner.refused.contains_key(binding)
    }

    /// A just-unwrapped key's cache entry, expiring after the unwrap TTL.
    fn fresh(&self, key: DataKey) -> Unwrapped {
        Unwrapped {
            key: Arc::new(key),
            until: Instant::now() + self.inner.unwrap_ttl,
        }
    }

    fn provider_index(&self, kek: &KekRef) -> Result<usize, Error> {
        std::iter::once(&self.inner.active)
            .chain(self.inner.decrypt_only.iter())
            .position(|p| p.owns(kek))
            .ok_or_else(|| Error::UnknownKek {
                provider: kek.provider().to_owned(),
                key_id: kek.key_id().to_owned(),
            })
    }

    fn provider_at(&self, index: usize) -> &Arc<dyn KeyProvider> {
        if index == 0 {
            &self.inner.active
        } else {
            &self.inner.decrypt_only[index - 1]
        }
    }

    fn provider_for(&self, kek: &KekRef) -> Result<&Arc<dyn KeyProvider>, Error> {
        self.provider_index(kek).map(|i| self.provider_at(i))
    }

    fn check_owned(&self, wrapped: &WrappedKey) -> Result<(), Error> {
        if self.inner.active.owns(wrapped.kek()) {
            Ok(())
        } else {
            let active = &self.inner.active;
            Err(Error::Provider(ProviderError::new(
                active.provider_id(),
                active.key_id(),
                ProviderErrorKind::Protocol,
                format!(
                    "provider returned a key wrapped by {}, not by its own KEK",
                    wrapped.kek()
                ),
            )))
        }
    }

    async fn call<T>(
        &self,
        counter: &std::sync::atomic::AtomicU64,
        fut: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        bump(counter);
        let out = fut.await;
        if let Err(e) = &out {
            bump(&self.inner.counters.failures);
            tracing::warn!(
                provider = e.provider(),
                key_id = e.key_id(),
                kind = ?e.kind(),
                retryable = e.is_retryable(),
                "key provider call failed: {e}"
            );
        }
        out
    }

    /// The data key of `wrapped` (bound to `context`; `binding` is the two encoded, see
    /// [`Binding`]): from the cache's front, the cache, or one provider call shared by
    /// concurrent callers, then cached.
    async fn unwrap_cached(
        &self,
        provider: &Arc<dyn KeyProvider>,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
        binding: &[u8],
    ) -> Result<Arc<DataKey>, Error> {
        // The hot path: the front, then the cache. A wrapped key the KMS just refused is
        // never in either, so the negative cache is asked only on a miss.
        if let Some(k) = self.cached(binding).await {
            return Ok(k);
        }
        if let Some(e) = self.inner.refused.get(binding).await {
            bump(&self.inner.counters.negative_hits);
            return Err(Error::Provider(e));
        }
        let result = self
            .inner
            .unwrapped
            .try_get_with_by_ref(binding, async {
                self.call(
                    &self.inner.counters.unwrap,
                    provider.unwrap(wrapped, context),
                )
                .await
                .map(|k| self.fresh(k))
            })
            .await;
        match result {
            Ok(u) => {
                self.inner.unwrap_front.put(
                    slot_hash([binding]),
                    binding.to_vec(),
                    u.key.clone(),
                    u.until,
                );
                Ok(u.key)
            }
            Err(e) => {
                self.remember_refusal(binding, &e).await;
                Err(Error::Provider((*e).clone()))
            }
        }
    }

    /// Remembers a refusal that asking again would only repeat (see
    /// [`CacheLimits::negative_ttl`]), so a caller replaying a bad wrapped key cannot make
    /// one KMS call per request.
    async fn remember_refusal(&self, binding: &[u8], e: &ProviderError) {
        if matches!(
            e.kind(),
            ProviderErrorKind::InvalidWrappedKey
                | ProviderErrorKind::NotFound
                | ProviderErrorKind::KeyDisabled
                | ProviderErrorKind::PermissionDenied
        ) {
            self.inner.refused.insert(binding.to_vec(), e.clone()).await;
        }
    }

    /// How many KMS unwraps opening `items` would make now: the distinct (wrapped key,
    /// context) pairs that parse, belong to a KEK of this key-ring, and are neither cached
    /// nor recently refused. Envelopes that fail to parse or name an unknown KEK cost
    /// nothing (they fail without a KMS call). Lets a server refuse or rate-limit a request
    /// by the KMS work it would cause before any of it happens.
    pub fn pending_unwraps(&self, items: &[(&EncryptionContext, &[u8])]) -> usize {
        let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        for (context, envelope) in items {
            let Ok(view) = parse_view(envelope) else {
                continue;
            };
            let binding = view.key_binding();
            if check_context_encoding(view.context_encoding(), context).is_err()
                || self.is_cached_or_refused(binding)
                || seen.contains(binding)
            {
                continue;
            }
            let known = view
                .to_parsed()
                .is_ok_and(|p| self.provider_index(p.header.kek()).is_ok());
            if known {
                seen.insert(binding);
            }
        }
        seen.len()
    }
}
