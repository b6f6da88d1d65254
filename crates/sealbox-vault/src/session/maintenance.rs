//! The token-maintenance task: renewal at two thirds of the TTL, proactive re-login, and
//! the backoff after failures.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sealbox_core::transport::Backoff;
use sealbox_core::{ProviderError, ProviderErrorKind};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use super::{Lease, LeaseTiming, Session, renew_self};
use crate::error::map_error;

/// What the maintenance task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Renew,
    Login,
}

/// When the maintenance task acts next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to do until a re-login changes the token.
    Wait,
    /// Act after this delay.
    After(Duration, Action),
}

/// The shortest sleep of the maintenance task, so that a tiny TTL cannot make it spin.
const MIN_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between retries of a failed renewal or login.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Plans the next renewal or login: at two thirds of the TTL; after `failures` failed attempts,
/// again after an exponential backoff (1 s, 2 s, … 30 s).
pub(crate) fn plan(
    timing: LeaseTiming,
    dead: bool,
    can_login: bool,
    elapsed: Duration,
    failures: u32,
) -> Step {
    if dead || timing.ttl.is_zero() {
        return Step::Wait;
    }
    let action = if timing.renewable && !timing.capped {
        Action::Renew
    } else if can_login {
        Action::Login
    } else {
        return Step::Wait;
    };
    let delay = if failures > 0 {
        Backoff::new(Duration::from_secs(1), MAX_BACKOFF).delay(failures)
    } else {
        (timing.ttl * 2 / 3).saturating_sub(elapsed)
    };
    Step::After(delay.max(MIN_DELAY), action)
}

impl Session {
    /// Renews the token (renew-self) and swaps in its new lease. The caller holds `refresh`.
    async fn renew_locked(&self, current: &Lease) -> Result<(), ProviderError> {
        let auth = vaultrs::api::auth(&current.client.0, renew_self())
            .await
            .map_err(|e| map_error(&self.key_id, "token renew-self", e))?;
        drop(Zeroizing::new(auth.client_token));
        let ttl = Duration::from_secs(auth.lease_duration);
        let capped = ttl < current.timing.base_ttl;
        if capped && !current.timing.capped {
            if self.login.is_some() {
                tracing::info!(
                    key_id = %self.key_id,
                    ttl_secs = ttl.as_secs(),
                    "the Vault token reached its maximum TTL: logging in again before it expires"
                );
            } else {
                tracing::warn!(
                    key_id = %self.key_id,
                    ttl_secs = ttl.as_secs(),
                    "the Vault token reached its maximum TTL and cannot be renewed further: calls will fail once it expires (use AppRole / Kubernetes auth or a periodic token)"
                );
            }
        }
        self.lease.store(Arc::new(current.renewed(LeaseTiming {
            ttl,
            base_ttl: current.timing.base_ttl,
            renewable: auth.renewable,
            capped,
        })));
        self.counters.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The next step of the maintenance task.
    fn next_step(&self, failures: u32) -> (Step, u64) {
        let lease = self.lease.load();
        let step = plan(
            lease.timing,
            lease.dead,
            self.login.is_some(),
            lease.obtained.elapsed(),
            failures,
        );
        (step, lease.token_generation)
    }

    /// Performs `action` unless the token changed since it was planned.
    async fn maintain_once(&self, action: Action, planned_for: u64) -> Result<(), ProviderError> {
        let _guard = self.refresh.lock().await;
        let current = self.lease.load_full();
        if current.token_generation != planned_for {
            return Ok(());
        }
        if action == Action::Renew {
            match self.renew_locked(&current).await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ProviderErrorKind::PermissionDenied => {
                    if self.login.is_none() {
                        self.lease.store(Arc::new(Lease {
                            client: current.client.clone(),
                            token_generation: current.token_generation,
                            obtained: current.obtained,
                            timing: current.timing,
                            dead: true,
                        }));
                        return Err(e);
                    }
                    // Expired or revoked: log in instead.
                }
                Err(e) => return Err(e),
            }
        }
        self.login_locked(&current).await
    }
}

/// Starts the maintenance task (renewal at two thirds of the TTL, proactive re-login) on the
/// current Tokio runtime. It holds only a weak reference to the session, and the provider
/// aborts it when dropped. Without a Tokio runtime there is no renewal (logged); re-login on
/// a 403 still works.
pub(crate) fn spawn_maintenance(session: &Arc<Session>) -> Option<tokio::task::AbortHandle> {
    if !session.needs_maintenance() {
        return None;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            key_id = %session.key_id,
            "no Tokio runtime: the Vault token will not be renewed in the background"
        );
        return None;
    };
    let task = runtime.spawn(maintain(Arc::downgrade(session), session.wake.clone()));
    Some(task.abort_handle())
}

async fn maintain(session: Weak<Session>, wake: Arc<Notify>) {
    let mut failures = 0u32;
    loop {
        let Some((step, generation)) = session.upgrade().map(|s| s.next_step(failures)) else {
            return;
        };
        let woken = match step {
            Step::Wait => {
                wake.notified().await;
                true
            }
            Step::After(delay, _) => tokio::time::timeout(delay, wake.notified()).await.is_ok(),
        };
        if woken {
            // The token changed under us: plan again from the new lease.
            failures = 0;
            continue;
        }
        let Step::After(_, action) = step else {
            continue;
        };
        let Some(s) = session.upgrade() else {
            return;
        };
        match s.maintain_once(action, generation).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                s.counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    key_id = %s.key_id,
                    action = ?action,
                    failures,
                    error = %e,
                    "Vault token maintenance failed"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(ttl: u64, renewable: bool, capped: bool) -> LeaseTiming {
        LeaseTiming {
            ttl: Duration::from_secs(ttl),
            base_ttl: Duration::from_secs(ttl),
            renewable,
            capped,
        }
    }

    /// Each case: the token's timing, whether it is dead, whether auth can log in, the time
    /// since the token was issued (seconds), and the planned step (after no failure).
    fn assert_plans(cases: &[(LeaseTiming, bool, bool, u64, Step)]) {
        for (i, &(timing, dead, can_login, elapsed, want)) in cases.iter().enumerate() {
            let got = plan(timing, dead, can_login, Duration::from_secs(elapsed), 0);
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn renewal_is_planned_at_two_thirds_of_the_ttl() {
        let s = Duration::from_secs;
        let renew = |after| Step::After(after, Action::Renew);
        assert_plans(&[
            (timing(30, true, false), false, false, 0, renew(s(20))),
            (timing(30, true, false), false, false, 5, renew(s(15))),
            // Overdue: act at once (after the minimum delay).
            (timing(30, true, false), false, true, 40, renew(MIN_DELAY)),
            // A token that never expires, or a dead one, needs nothing.
            (timing(0, true, false), false, true, 0, Step::Wait),
            (timing(30, true, false), true, false, 0, Step::Wait),
        ]);
    }

    #[test]
    fn capped_or_non_renewable_tokens_are_replaced_by_a_login_when_possible() {
        let login = |after| Step::After(Duration::from_secs(after), Action::Login);
        assert_plans(&[
            (timing(3, true, true), false, true, 0, login(2)),
            (timing(30, false, false), false, true, 0, login(20)),
            // Token auth cannot log in: nothing to do but let it expire.
            (timing(3, true, true), false, false, 0, Step::Wait),
            (timing(30, false, false), false, false, 0, Step::Wait),
        ]);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_thirty_seconds() {
        let s = Duration::from_secs;
        let t = timing(3600, true, false);
        let delays: Vec<Step> = (1..=8).map(|f| plan(t, false, true, s(0), f)).collect();
        let want: Vec<Step> = [1, 2, 4, 8, 16, 30, 30, 30]
            .iter()
            .map(|d| Step::After(s(*d), Action::Renew))
            .collect();
        assert_eq!(delays, want);
    }
}
