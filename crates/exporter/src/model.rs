//! The domain types every layer shares: jobs, their kinds and statuses, why a poll failed, what a
//! datastore is. A leaf: it imports nothing of ours.
//!
//! Everything past the AWS client module speaks these types, never the SDK's, so that state,
//! metrics and tests do not change when the SDK does, and export and import jobs share one model.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A job's status as HealthLake reports it. Keeps status strings this version does not know, so a
/// newer API value is counted under its own name instead of being dropped.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobStatus {
    Submitted,
    Queued,
    InProgress,
    CompletedWithErrors,
    Completed,
    Failed,
    CancelSubmitted,
    CancelInProgress,
    CancelCompleted,
    CancelFailed,
    /// A status string that is not in the API model this exporter was built against.
    Unknown(String),
}

impl JobStatus {
    /// Every status in the API model, in the model's order: each is always exported, 0 when empty.
    pub const KNOWN: [JobStatus; 10] = [
        JobStatus::Submitted,
        JobStatus::Queued,
        JobStatus::InProgress,
        JobStatus::CompletedWithErrors,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::CancelSubmitted,
        JobStatus::CancelInProgress,
        JobStatus::CancelCompleted,
        JobStatus::CancelFailed,
    ];

    /// The statuses a job never leaves: reaching one of them is what the finished counter counts.
    pub const TERMINAL: [JobStatus; 5] = [
        JobStatus::Completed,
        JobStatus::CompletedWithErrors,
        JobStatus::Failed,
        JobStatus::CancelCompleted,
        JobStatus::CancelFailed,
    ];

    pub fn parse(text: &str) -> JobStatus {
        match text {
            "SUBMITTED" => JobStatus::Submitted,
            "QUEUED" => JobStatus::Queued,
            "IN_PROGRESS" => JobStatus::InProgress,
            "COMPLETED_WITH_ERRORS" => JobStatus::CompletedWithErrors,
            "COMPLETED" => JobStatus::Completed,
            "FAILED" => JobStatus::Failed,
            "CANCEL_SUBMITTED" => JobStatus::CancelSubmitted,
            "CANCEL_IN_PROGRESS" => JobStatus::CancelInProgress,
            "CANCEL_COMPLETED" => JobStatus::CancelCompleted,
            "CANCEL_FAILED" => JobStatus::CancelFailed,
            other => JobStatus::Unknown(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::Submitted => "SUBMITTED",
            JobStatus::Queued => "QUEUED",
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::CompletedWithErrors => "COMPLETED_WITH_ERRORS",
            JobStatus::Completed => "COMPLETED",
            JobStatus::Failed => "FAILED",
            JobStatus::CancelSubmitted => "CANCEL_SUBMITTED",
            JobStatus::CancelInProgress => "CANCEL_IN_PROGRESS",
            JobStatus::CancelCompleted => "CANCEL_COMPLETED",
            JobStatus::CancelFailed => "CANCEL_FAILED",
            JobStatus::Unknown(text) => text,
        }
    }

    /// True for the five statuses a job never leaves. Unknown statuses are not terminal: we cannot
    /// know, and counting them as finished could fire a false alert.
    pub fn is_terminal(&self) -> bool {
        Self::TERMINAL.contains(self)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two job lists HealthLake keeps per datastore; they share every piece of state and metrics
/// code, under their own metric names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Export,
    Import,
}

impl JobKind {
    /// The word in metric names (`healthlake_export_jobs`, `healthlake_import_jobs`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Export => "export",
            JobKind::Import => "import",
        }
    }

    /// The API operation that lists this kind.
    pub fn operation(self) -> &'static str {
        match self {
            JobKind::Export => "ListFHIRExportJobs",
            JobKind::Import => "ListFHIRImportJobs",
        }
    }
}

/// An import job's `JobProgressReport`, in base units.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportProgress {
    pub files_scanned: f64,
    pub scanned_bytes: f64,
    pub files_imported: f64,
    pub resources_scanned: f64,
    pub resources_imported: f64,
    /// Resources that failed because of the input (HealthLake's "customer error").
    pub resources_failed: f64,
    pub files_failed: f64,
}

/// One HealthLake job as listed. Times are Unix epoch seconds, as on the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: String,
    pub name: Option<String>,
    pub status: JobStatus,
    pub submitted: f64,
    pub ended: Option<f64>,
    /// Import jobs only, when HealthLake reports it.
    pub progress: Option<Box<ImportProgress>>,
}

impl Job {
    /// A job still running (or waiting): not in a terminal status and without an end time.
    pub fn is_active(&self) -> bool {
        !self.status.is_terminal() && self.ended.is_none()
    }

    /// End − submit for a job that ended; time since submit (as of `now`) for an active one; `None`
    /// for a job that says it is finished but carries no end time (its duration is unknowable).
    pub fn duration_seconds(&self, now: f64) -> Option<f64> {
        match self.ended {
            Some(ended) => Some((ended - self.submitted).max(0.0)),
            None if self.is_active() => Some((now - self.submitted).max(0.0)),
            None => None,
        }
    }
}

/// Which job lists a datastore's polls cover (`jobs = ["export", "import"]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobKinds {
    pub export: bool,
    pub import: bool,
}

impl Default for JobKinds {
    /// Export jobs only: import polling needs `healthlake:ListFHIRImportJobs` and is opt-in.
    fn default() -> Self {
        JobKinds {
            export: true,
            import: false,
        }
    }
}

/// Why a poll failed: the `reason` label of `healthlake_poll_errors_total`. The set is closed so
/// that every reason can be exported at 0 from the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorReason {
    Throttled,
    AccessDenied,
    NotFound,
    Validation,
    ServerError,
    Timeout,
    Network,
    Credentials,
    Other,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 9] = [
        ErrorReason::Throttled,
        ErrorReason::AccessDenied,
        ErrorReason::NotFound,
        ErrorReason::Validation,
        ErrorReason::ServerError,
        ErrorReason::Timeout,
        ErrorReason::Network,
        ErrorReason::Credentials,
        ErrorReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Throttled => "throttled",
            ErrorReason::AccessDenied => "access_denied",
            ErrorReason::NotFound => "not_found",
            ErrorReason::Validation => "validation",
            ErrorReason::ServerError => "server_error",
            ErrorReason::Timeout => "timeout",
            ErrorReason::Network => "network",
            ErrorReason::Credentials => "credentials",
            ErrorReason::Other => "other",
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed poll: the classified reason and a one-line message for logs (never credentials).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct PollError {
    pub reason: ErrorReason,
    pub message: String,
}

impl PollError {
    pub fn new(reason: ErrorReason, message: impl Into<String>) -> Self {
        PollError {
            reason,
            message: message.into(),
        }
    }
}

/// A datastore as `DescribeFHIRDatastore` or `ListFHIRDatastores` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct DatastoreInfo {
    pub id: String,
    pub name: Option<String>,
    /// As HealthLake spells it (a newer API's value is kept as is).
    pub status: String,
    pub arn: String,
    pub fhir_version: String,
}

/// The DatastoreStatus values of the API model.
pub const DATASTORE_STATUSES: [&str; 7] = [
    "CREATING",
    "ACTIVE",
    "DELETING",
    "DELETED",
    "CREATE_FAILED",
    "UPDATING",
    "UPDATE_FAILED",
];

/// The current Unix time in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_status_round_trips_and_unknown_keeps_its_text() {
        for status in JobStatus::KNOWN {
            assert_eq!(JobStatus::parse(status.as_str()), status);
        }
        let newer = JobStatus::parse("ARCHIVED");
        assert_eq!(newer, JobStatus::Unknown("ARCHIVED".into()));
        assert_eq!(newer.as_str(), "ARCHIVED");
        assert!(!newer.is_terminal());
    }

    #[test]
    fn durations_for_ended_active_and_inconsistent_jobs() {
        let mut job = Job {
            id: "j".into(),
            name: None,
            status: JobStatus::InProgress,
            submitted: 1000.0,
            ended: None,
            progress: None,
        };
        assert_eq!(job.duration_seconds(1600.5), Some(600.5));
        job.status = JobStatus::Completed;
        job.ended = Some(1300.25);
        assert_eq!(job.duration_seconds(99999.0), Some(300.25));
        job.ended = None;
        assert_eq!(job.duration_seconds(99999.0), None);
    }

    #[test]
    fn every_reason_has_a_distinct_label() {
        let labels: std::collections::HashSet<_> =
            ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), ErrorReason::ALL.len());
    }
}
