//! How long a feed waits between polls: its interval, stretched by jitter so datastores drift
//! apart, and doubled while it keeps failing (capped), so a failing datastore or discovery entry
//! costs little of the API quota.

use std::time::Duration;

/// Each wait is stretched or shrunk by up to this fraction, so datastores drift apart over time.
const JITTER_FRACTION: f64 = 0.1;
/// A datastore that keeps failing is polled at most this rarely (or at the interval, if longer).
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// No wait is longer, whatever the interval: validation keeps intervals within a day, and this
/// keeps `Instant + wait` (and the jitter's product) far from overflowing for any other value.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 86_400);

/// How long to wait after a poll that left `consecutive_failures` failures in a row: the interval,
/// doubling from the second failure on, capped at `MAX_BACKOFF` (or the interval, if longer).
pub fn backoff(interval: Duration, consecutive_failures: u32) -> Duration {
    let interval = interval.min(LONGEST_WAIT);
    if consecutive_failures <= 1 {
        return interval;
    }
    let factor = 2u32.saturating_pow(consecutive_failures.min(16) - 1);
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

/// `backoff` with jitter: what a feed actually waits after a poll.
pub(crate) fn with_jitter(interval: Duration, consecutive_failures: u32) -> Duration {
    let jitter = 1.0 + JITTER_FRACTION * (2.0 * fastrand::f64() - 1.0);
    backoff(interval, consecutive_failures).mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_second_failure_and_is_capped() {
        let minute = Duration::from_secs(60);
        assert_eq!(backoff(minute, 0), minute);
        assert_eq!(backoff(minute, 1), minute);
        assert_eq!(backoff(minute, 2), 2 * minute);
        assert_eq!(backoff(minute, 3), 4 * minute);
        assert_eq!(backoff(minute, 4), MAX_BACKOFF);
        assert_eq!(backoff(minute, u32::MAX), MAX_BACKOFF);
        // An interval longer than the cap is never shortened.
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(hour, 9), hour);
    }
}
