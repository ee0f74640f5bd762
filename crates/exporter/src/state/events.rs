//! What the event consumer has done (`[events]`): counters and health of the event path, kept
//! with the rest of the state so that metrics stay a pure view of it. The consumer writes them;
//! the poller adds the job changes it found that no event had announced.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::ErrorReason;

/// How far ahead of this process's clock an event's `time` may be and still count: EventBridge
/// stamps events with AWS's clock, so a few seconds of skew are normal, but a time hours or
/// years ahead (a forged or broken message) would pin the newest-applied timestamp for good.
pub const MAX_EVENT_TIME_AHEAD: Duration = Duration::from_secs(5 * 60);

/// `time` unless it is more than [`MAX_EVENT_TIME_AHEAD`] after `now`: such a time is ignored
/// (the event still applies), never clamped, so the newest-applied timestamp only ever shows a
/// time some event really claimed.
pub fn plausible_event_time(time: SystemTime, now: SystemTime) -> Option<SystemTime> {
    (time <= now + MAX_EVENT_TIME_AHEAD).then_some(time)
}

/// What the consumer counts, read by the metrics encoder. Counters only grow.
#[derive(Debug, Default)]
pub struct EventStats {
    pub received: AtomicU64,
    /// Received messages SQS had delivered before (`ApproximateReceiveCount` above 1).
    pub redelivered: AtomicU64,
    /// Messages whose refreshes (or discovery) finished.
    pub applied: AtomicU64,
    /// HealthLake events naming no datastore this process follows.
    pub ignored: AtomicU64,
    /// Not an EventBridge event, or one from another source.
    pub malformed: AtomicU64,
    /// Messages deleted (after handling).
    pub deleted: AtomicU64,
    /// Refreshes run (one per datastore and coalesced group of events).
    pub refreshes: AtomicU64,
    /// The last `ReceiveMessage` succeeded.
    pub up: AtomicBool,
    /// `time` of the newest applied event, Unix seconds as `f64` bits (0: none yet).
    newest_applied: AtomicU64,
    /// Failed queue calls by reason.
    errors: Mutex<BTreeMap<ErrorReason, u64>>,
    /// Job changes a scheduled poll found that no event had announced (counted by the poller).
    pub unannounced_changes: AtomicU64,
    /// The wall time of the last `ReceiveMessage` and when the last successful one ended.
    receives: Mutex<ReceiveTimes>,
}

/// The event feed's poll times, as every feed's health has them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReceiveTimes {
    /// Wall time of the last `ReceiveMessage` (a long poll: up to its wait time while the queue
    /// is empty), successful or not.
    pub last_seconds: Option<f64>,
    /// Unix time at which the last successful `ReceiveMessage` ended.
    pub last_success: Option<f64>,
}

impl EventStats {
    pub fn errors(&self) -> BTreeMap<ErrorReason, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts a failed queue call.
    pub fn error(&self, reason: ErrorReason) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_insert(0) += 1;
    }

    /// Notes a `ReceiveMessage` that took `seconds` and, when it succeeded, ended at `success_at`
    /// (Unix seconds).
    pub fn receive_ended(&self, seconds: f64, success_at: Option<f64>) {
        let mut times = self.receives.lock().unwrap_or_else(|p| p.into_inner());
        times.last_seconds = Some(seconds);
        if success_at.is_some() {
            times.last_success = success_at;
        }
    }

    pub fn receive_times(&self) -> ReceiveTimes {
        *self.receives.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `time` of the newest applied event (Unix seconds), if any.
    pub fn newest_applied(&self) -> Option<f64> {
        let bits = self.newest_applied.load(Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }

    /// Notes an applied event's `time`; the newest one is kept. A time too far in the future
    /// (see [`plausible_event_time`]) is ignored.
    pub fn applied_event_at(&self, time: SystemTime) {
        let Some(time) = plausible_event_time(time, SystemTime::now()) else {
            return;
        };
        let secs = time
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let _ = self
            .newest_applied
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (secs > f64::from_bits(old)).then_some(secs.to_bits())
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_far_in_the_future_are_ignored() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ahead = |secs| now + Duration::from_secs(secs);
        assert_eq!(plausible_event_time(now, now), Some(now));
        assert_eq!(plausible_event_time(ahead(300), now), Some(ahead(300)));
        assert_eq!(plausible_event_time(ahead(301), now), None);

        let stats = EventStats::default();
        let real = SystemTime::now() - Duration::from_secs(10);
        stats.applied_event_at(real);
        // 9999-12-31: would pin the gauge for good.
        stats.applied_event_at(UNIX_EPOCH + Duration::from_secs(253_402_214_400));
        let newest = stats.newest_applied().expect("the real time");
        let expected = real.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((newest - expected).abs() < 1e-3, "{newest} vs {expected}");
        // A later real event still moves it.
        stats.applied_event_at(SystemTime::now());
        assert!(stats.newest_applied().unwrap() > expected);
    }
}
