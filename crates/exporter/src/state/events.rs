//! What the event consumer has done (`[events]`): counters and health of the event path, kept
//! with the rest of the state so that metrics stay a pure view of it. The consumer writes them;
//! the poller adds the job changes it found that no event had announced.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::ErrorReason;

/// What the consumer counts, read by the metrics encoder. Counters only grow.
#[derive(Debug, Default)]
pub struct EventStats {
    pub received: AtomicU64,
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

    /// `time` of the newest applied event (Unix seconds), if any.
    pub fn newest_applied(&self) -> Option<f64> {
        let bits = self.newest_applied.load(Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }

    /// Notes an applied event's `time`; the newest one is kept.
    pub fn applied_event_at(&self, time: SystemTime) {
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
