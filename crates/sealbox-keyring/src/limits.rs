//! Lease and cache limits of a key-ring.

use std::time::Duration;

use sealbox_core::Error;

/// When a data-key lease must be replaced by a fresh one (one more KMS call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseLimits {
    /// Oldest a lease may be. 1 s to 7 days.
    pub max_age: Duration,
    /// Most payloads sealed under one lease. 1 to 2^32.
    pub max_payloads: u64,
    /// Most plaintext bytes sealed under one lease. At least 1. A single payload larger than
    /// this gets a lease of its own.
    pub max_bytes: u64,
    /// How long before `max_age` a lease is renewed in the background (at most half of
    /// `max_age`; zero turns renewal ahead of expiry off). A lease 90% through its
    /// `max_payloads` (when that is at least 100) is renewed ahead the same way. Sealing goes
    /// on with the current lease meanwhile, so a rollover adds no KMS round trip to any seal.
    pub renew_before: Duration,
}

impl Default for LeaseLimits {
    /// 5 minutes, 100 000 payloads, 4 GiB, renewed 30 s before expiry.
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(300),
            max_payloads: 100_000,
            max_bytes: 4 << 30,
            renew_before: Duration::from_secs(30),
        }
    }
}

impl LeaseLimits {
    /// One payload per lease: every payload gets its own KMS-wrapped data key.
    pub fn one_payload_per_key() -> Self {
        Self {
            max_payloads: 1,
            ..Self::default()
        }
    }

    /// The age at which a background renewal starts (`None`: renewal ahead is off).
    pub(crate) fn renew_at(&self) -> Option<Duration> {
        (!self.renew_before.is_zero())
            .then(|| self.max_age - self.renew_before.min(self.max_age / 2))
    }

    /// Checks the limits are in range (1 s – 7 days, 1 – 2^32 payloads, ≥ 1 byte); the error
    /// names the field and the range.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_age < Duration::from_secs(1)
            || self.max_age > Duration::from_secs(7 * 24 * 3600)
        {
            return Err(Error::Config(format!(
                "lease max_age {:?} is out of range (1s to 7 days)",
                self.max_age
            )));
        }
        if self.max_payloads == 0 || self.max_payloads > 1 << 32 {
            return Err(Error::Config(format!(
                "lease max_payloads {} is out of range (1 to 2^32)",
                self.max_payloads
            )));
        }
        if self.max_bytes == 0 {
            return Err(Error::Config("lease max_bytes must be at least 1".into()));
        }
        Ok(())
    }
}

/// Size and lifetime of the key-ring's caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most unwrapped data keys kept for decryption.
    pub unwrap_capacity: u64,
    /// How long an unwrapped data key stays cached after it was unwrapped.
    pub unwrap_ttl: Duration,
    /// Most concurrent lease slots (distinct KEK and context pairs).
    pub lease_capacity: u64,
    /// How long a wrapped key that the KMS refused as invalid (wrong context, corrupted,
    /// unknown or disabled key, permission denied) is refused again without asking the KMS,
    /// per (wrapped key, context). Transient failures (throttling, outages, timeouts) are
    /// never cached.
    pub negative_ttl: Duration,
}

impl Default for CacheLimits {
    /// 10 000 unwrapped keys for 10 minutes, 10 000 lease slots, failures remembered 30 s.
    fn default() -> Self {
        Self {
            unwrap_capacity: 10_000,
            unwrap_ttl: Duration::from_secs(600),
            lease_capacity: 10_000,
            negative_ttl: Duration::from_secs(30),
        }
    }
}

impl CacheLimits {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.unwrap_capacity == 0 || self.lease_capacity == 0 {
            return Err(Error::Config("cache capacities must be at least 1".into()));
        }
        const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
        if self.unwrap_ttl.is_zero() || self.negative_ttl.is_zero() {
            return Err(Error::Config(
                "unwrap_ttl and negative_ttl must be positive".into(),
            ));
        }
        if self.unwrap_ttl > MAX_TTL || self.negative_ttl > MAX_TTL {
            return Err(Error::Config(
                "unwrap_ttl and negative_ttl must be at most 7 days".into(),
            ));
        }
        Ok(())
    }
}
