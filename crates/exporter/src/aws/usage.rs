//! The exporter's own use of the HealthLake API: calls by operation and result, and the time spent
//! waiting for request budget slots. Users share the account's quota with their own tools, so the
//! exporter shows what it spends of it (`healthlake_api_requests_total`,
//! `healthlake_api_budget_wait_seconds_total`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::model::{ErrorReason, PollError};

/// The exporter's own use of the HealthLake API, for `healthlake_api_requests_total` and
/// `healthlake_api_budget_wait_seconds_total`: users share the quota with their own tools and
/// should see what the exporter spends of it. Process-wide (like a process's CPU counters): every
/// client and budget of the process adds to the one [`api_usage`]. Plain atomics: recording a call
/// never waits, and a scrape reads a fixed table.
#[derive(Debug, Default)]
pub struct ApiUsage {
    /// Calls per operation ([`OPERATIONS`] order) and result ([`RESULTS`] order).
    requests: [[AtomicU64; RESULTS.len()]; OPERATIONS.len()],
    /// Nanoseconds spent waiting for a request budget slot.
    wait_nanos: AtomicU64,
    /// Bumped on every change: lets the metrics cache reuse what it encoded.
    version: AtomicU64,
}

/// Every operation the exporter calls, in the order `healthlake_api_requests_total` lists them.
pub const OPERATIONS: [&str; 4] = [
    "ListFHIRExportJobs",
    "ListFHIRImportJobs",
    "DescribeFHIRDatastore",
    "ListFHIRDatastores",
];

/// The `result` label values of `healthlake_api_requests_total`, in order: "success", then every
/// reason a call can fail with (not `interrupted` or `stale`: those describe polls, not calls).
pub const RESULTS: [&str; 10] = [
    "success",
    ErrorReason::Throttled.as_str(),
    ErrorReason::AccessDenied.as_str(),
    ErrorReason::NotFound.as_str(),
    ErrorReason::Validation.as_str(),
    ErrorReason::ServerError.as_str(),
    ErrorReason::Timeout.as_str(),
    ErrorReason::Network.as_str(),
    ErrorReason::Credentials.as_str(),
    ErrorReason::Other.as_str(),
];

impl ApiUsage {
    /// Notes one call of `operation` (one of [`OPERATIONS`]) and how it ended. A reason that is
    /// not a call's (never returned by a call) counts as `other`.
    pub fn record<T>(&self, operation: &'static str, result: &Result<T, PollError>) {
        let result = match result {
            Ok(_) => "success",
            Err(error) => error.reason.as_str(),
        };
        let column = RESULTS
            .iter()
            .position(|r| *r == result)
            .unwrap_or(RESULTS.len() - 1);
        let row = OPERATIONS.iter().position(|o| *o == operation);
        if let Some(counter) = row
            .and_then(|row| self.requests.get(row))
            .and_then(|row| row.get(column))
        {
            counter.fetch_add(1, Ordering::Relaxed);
            self.version.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn waited(&self, wait: Duration) {
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls so far, per operation ([`OPERATIONS`] order) and result ([`RESULTS`] order).
    pub fn requests(&self) -> [[u64; RESULTS.len()]; OPERATIONS.len()] {
        self.requests
            .each_ref()
            .map(|row| row.each_ref().map(|n| n.load(Ordering::Relaxed)))
    }

    /// Seconds spent waiting for request budget slots so far.
    pub fn wait_seconds(&self) -> f64 {
        Duration::from_nanos(self.wait_nanos.load(Ordering::Relaxed)).as_secs_f64()
    }

    /// Changes whenever a count changes.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }
}

/// The process's API usage.
pub fn api_usage() -> &'static ApiUsage {
    static USAGE: OnceLock<ApiUsage> = OnceLock::new();
    USAGE.get_or_init(ApiUsage::default)
}
