//! Admission limits that are not per-request rates: failed authentications per address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failed authentications per client address in fixed one-minute windows; an address
/// over the limit is refused (429) until its window ends, so a token or password cannot be
/// guessed at the server's full request rate.
pub(crate) struct AuthFailures {
    max: u32,
    window: Duration,
    by_peer: Mutex<HashMap<String, (Instant, u32)>>,
}

impl AuthFailures {
    pub(crate) fn new(max_per_minute: u32) -> Self {
        Self {
            max: max_per_minute,
            window: Duration::from_secs(60),
            by_peer: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds until the window ends)` when `peer` is over the limit.
    pub(crate) fn blocked(&self, peer: &str) -> Option<u64> {
        if self.max == 0 {
            return None;
        }
        let map = self.by_peer.lock().ok()?;
        let (start, count) = map.get(peer)?;
        let elapsed = start.elapsed();
        (*count >= self.max && elapsed < self.window)
            .then(|| (self.window - elapsed).as_secs().max(1))
    }

    /// Records one failed authentication from `peer`.
    pub(crate) fn record(&self, peer: &str) {
        if self.max == 0 {
            return;
        }
        let Ok(mut map) = self.by_peer.lock() else {
            return;
        };
        if map.len() > 10_000 {
            // Forget finished windows so the table cannot grow without bound.
            let window = self.window;
            map.retain(|_, (start, _)| start.elapsed() < window);
        }
        let entry = map.entry(peer.to_owned()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_and_others_are_not() {
        let f = AuthFailures::new(3);
        for _ in 0..2 {
            f.record("10.0.0.1");
        }
        assert!(f.blocked("10.0.0.1").is_none(), "under the limit");
        f.record("10.0.0.1");
        let wait = f.blocked("10.0.0.1").expect("over the limit");
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(f.blocked("10.0.0.2").is_none(), "per address");
        let off = AuthFailures::new(0);
        for _ in 0..100 {
            off.record("x");
        }
        assert!(off.blocked("x").is_none(), "0 = unlimited");
    }
}
