//! The exporter's own use of the HealthLake API: calls by operation and result, and the time spent
//! waiting for request budget slots. Users share the account's quota with their own tools, so the
//! exporter shows what it spends of it (`healthlake_api_requests_total`,
//! `healthlake_api_budget_wait_seconds_total`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::model::{ErrorReason, PollError};

/// The exporter's own use of the HealthLake API, for `healthlake_api_requests_total` and
/// `healthlake_api_budget_wait_seconds_total`: users share the quota with their own tools and
/// should see what the exporter spends of it. Process-wide (like a process's CPU counters): every
/// client and budget of the process adds to the one [`api_usage`].
#[derive(Debug, Default)]
pub struct ApiUsage {
    /// Calls by operation and result ("success" or an [`ErrorReason`]).
    requests: Mutex<HashMap<(&'static str, &'static str), u64>>,
    /// Seconds spent waiting for a request budget slot, as f64 bits.
    wait_seconds: AtomicU64,
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
    /// Notes one call of `operation` and how it ended.
    pub fn record<T>(&self, operation: &'static str, result: &Result<T, PollError>) {
        let result = match result {
            Ok(_) => "success",
            Err(error) => error.reason.as_str(),
        };
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((operation, result))
            .or_insert(0) += 1;
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn waited(&self, seconds: f64) {
        let mut current = self.wait_seconds.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + seconds).to_bits();
            match self.wait_seconds.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of `operation` that ended with `result` ("success" or a reason) so far.
    pub fn requests(&self, operation: &str, result: &str) -> u64 {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|((o, r), _)| *o == operation && *r == result)
            .map_or(0, |(_, n)| *n)
    }

    /// Seconds spent waiting for request budget slots so far.
    pub fn wait_seconds(&self) -> f64 {
        f64::from_bits(self.wait_seconds.load(Ordering::Relaxed))
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
