//! Readiness as a latch. A pod is Ready only when every container is, so a sidecar's readiness
//! gates its whole pod: once `/readyz` has said 200 it must never say 503 again, whatever a reload,
//! a discovery run, an AWS outage or a flood does. The latch closes when every first poll has been
//! attempted or at a deadline set at start, whichever comes first; first polls still pending after
//! that (datastores a reload or discovery added, or polls held up by a hanging API) only show in
//! `healthlake_exporter_first_polls_pending`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Ready or not yet, and when at the latest.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
    /// `None`: no deadline (not armed, or too far away to represent): only the first polls close
    /// the latch.
    deadline: Mutex<Option<Instant>>,
}

impl Readiness {
    /// The latch closes `within` from now at the latest.
    pub(super) fn arm(&self, within: Duration) {
        let deadline = Instant::now().checked_add(within);
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = deadline;
    }

    /// Whether the latch has closed, without closing it.
    pub(super) fn latched(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// How long until the deadline closes the latch (`None`: no deadline, or latched).
    pub(super) fn remaining(&self, now: Instant) -> Option<Duration> {
        if self.latched() {
            return None;
        }
        let deadline = *self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        deadline.map(|d| d.saturating_duration_since(now))
    }

    /// Closes the latch when no first poll is `pending` or the deadline has passed at `now`;
    /// returns whether the exporter is ready. `pending` is only counted while the latch is open.
    pub(super) fn check(&self, pending: impl FnOnce() -> usize, now: Instant) -> bool {
        if self.latched() {
            return true;
        }
        let pending = pending();
        let overdue = self.remaining(now).is_some_and(|left| left.is_zero());
        if pending > 0 && !overdue {
            return false;
        }
        if !self.ready.swap(true, Ordering::AcqRel) {
            if pending == 0 {
                tracing::info!(
                    "ready: every first poll has been attempted; /readyz stays 200 from now on"
                );
            } else {
                tracing::info!(
                    pending,
                    "ready: the readiness deadline (polling.timeout + start spread + 2s) has passed with first polls still pending; /readyz stays 200 from now on"
                );
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_on_the_first_polls_or_the_deadline_and_never_reopens() {
        let readiness = Readiness::default();
        assert!(
            !readiness.check(|| 3, Instant::now()),
            "not armed: waits for the polls"
        );
        readiness.arm(Duration::from_secs(10));
        let now = Instant::now();
        assert!(!readiness.check(|| 3, now));
        assert!(readiness.remaining(now).unwrap() <= Duration::from_secs(10));
        assert!(
            readiness.check(|| 3, now + Duration::from_secs(11)),
            "the deadline closes it with polls pending"
        );
        assert!(readiness.check(|| 10_000, now), "and it stays closed");
        assert_eq!(readiness.remaining(now), None);

        let readiness = Readiness::default();
        readiness.arm(Duration::from_secs(3600));
        assert!(readiness.check(|| 0, now), "every first poll attempted");
        assert!(readiness.check(|| 50, now));
    }

    #[test]
    fn a_deadline_too_far_to_represent_leaves_only_the_polls() {
        let readiness = Readiness::default();
        readiness.arm(Duration::MAX);
        let now = Instant::now();
        assert_eq!(readiness.remaining(now), None);
        assert!(!readiness.check(|| 1, now));
        assert!(readiness.check(|| 0, now));
    }
}
