//! Time sources for lease limits. Tests drive a [`ManualClock`] instead of sleeping.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A monotonic clock: `now` is the time elapsed since an arbitrary fixed origin.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time since the clock's origin; never decreases.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock ([`Instant`]).
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to, for testing time-based limits without sleeping.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.saturating_add(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}
