//! How polling one feed is going: up or not, attempts, the last poll's duration and success time,
//! failures by reason. A failed poll changes only this, never the data.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::model::{ErrorReason, PollError};

/// How polling a datastore is going.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// The last poll succeeded.
    pub up: bool,
    /// Polls attempted, successful or not.
    pub attempts: u64,
    /// Wall time of the last poll, successful or not.
    pub last_poll_seconds: Option<f64>,
    /// Unix time at which the last successful poll ended.
    pub last_success: Option<f64>,
    /// Failed polls by reason (every reason present from the start).
    pub errors: BTreeMap<ErrorReason, u64>,
    /// The error of the last poll, when it failed.
    pub last_error: Option<PollError>,
    /// Failed polls since the last success: how far the poller backs off.
    pub consecutive_failures: u32,
    /// When the last poll started: a reloaded config keeps each datastore's rhythm.
    pub last_attempt: Option<Instant>,
}

impl Health {
    /// A health with every error reason present at 0, so `increase()` works on the first error.
    pub(crate) fn new() -> Health {
        Health {
            errors: ErrorReason::ALL.iter().map(|r| (*r, 0)).collect(),
            ..Health::default()
        }
    }
}

impl Health {
    pub(crate) fn succeeded(&mut self, poll_seconds: f64, now: f64) {
        self.up = true;
        self.attempts += 1;
        self.last_poll_seconds = Some(poll_seconds);
        self.last_success = Some(now);
        self.last_error = None;
        self.consecutive_failures = 0;
    }

    pub(crate) fn failed(&mut self, error: &PollError, poll_seconds: f64) -> bool {
        let news = self.up
            || self.attempts == 0
            || self.last_error.as_ref().map(|e| e.reason) != Some(error.reason);
        self.up = false;
        self.attempts += 1;
        self.last_poll_seconds = Some(poll_seconds);
        *self.errors.entry(error.reason).or_insert(0) += 1;
        self.last_error = Some(error.clone());
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        news
    }
}
