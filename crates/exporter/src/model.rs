//! The domain types every layer shares: jobs, their kinds and statuses, why a poll failed, what a
//! datastore is. A leaf: it imports nothing of ours.
//!
//! Everything past the AWS client module speaks these types, never the SDK's, so that state,
//! metrics and tests do not change when the SDK does, and export and import jobs share one model.

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

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
    /// HealthLake's `Message` (why a job failed, what went wrong in one that completed with
    /// errors), for the log line of a job seen finishing; bounded and on one line. A listing keeps
    /// it only for jobs that have ended, and State keeps none ([`RecentJob`] has no message).
    pub message: Option<Box<str>>,
}

impl Job {
    /// A job still running (or waiting): not in a terminal status and without an end time.
    pub fn is_active(&self) -> bool {
        is_active(&self.status, self.ended)
    }

    /// End − submit for a job that ended; time since submit (as of `now`) for an active one; `None`
    /// for a job that says it is finished but carries no end time (its duration is unknowable).
    pub fn duration_seconds(&self, now: f64) -> Option<f64> {
        duration_seconds(&self.status, self.submitted, self.ended, now)
    }
}

/// The one rule of [`Job::is_active`], for every shape of a job.
fn is_active(status: &JobStatus, ended: Option<f64>) -> bool {
    !status.is_terminal() && ended.is_none()
}

/// The one rule of [`Job::duration_seconds`], for every shape of a job.
fn duration_seconds(
    status: &JobStatus,
    submitted: f64,
    ended: Option<f64>,
    now: f64,
) -> Option<f64> {
    match ended {
        Some(ended) => Some((ended - submitted).max(0.0)),
        None if is_active(status, ended) => Some((now - submitted).max(0.0)),
        None => None,
    }
}

/// One of a job feed's newest jobs (up to `polling.job_series_limit`), kept for its series: the
/// same data as [`Job`] in less memory. At 1,000 datastores × `job_series_limit` 100 there are
/// 100,000 of these; one allocation holds the id and the name (instead of two `String`s), which
/// takes each from ~180 to ~120 bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RecentJob {
    /// The id, then the name (when there is one).
    text: Box<str>,
    /// Where the id ends in `text`; `u32::MAX` when the job has no name.
    id_end: u32,
    pub status: JobStatus,
    pub submitted: f64,
    pub ended: Option<f64>,
    pub progress: Option<Box<ImportProgress>>,
}

impl RecentJob {
    pub fn id(&self) -> &str {
        let end = (self.id_end as usize).min(self.text.len());
        self.text.get(..end).unwrap_or_default()
    }

    pub fn name(&self) -> Option<&str> {
        (self.id_end != u32::MAX).then(|| self.text.get(self.id_end as usize..).unwrap_or_default())
    }

    /// See [`Job::is_active`].
    pub fn is_active(&self) -> bool {
        is_active(&self.status, self.ended)
    }

    /// See [`Job::duration_seconds`].
    pub fn duration_seconds(&self, now: f64) -> Option<f64> {
        duration_seconds(&self.status, self.submitted, self.ended, now)
    }
}

impl From<&Job> for RecentJob {
    fn from(job: &Job) -> RecentJob {
        let (text, id_end) = match &job.name {
            // Ids and names are short (HealthLake: 32 and at most 64 characters); one that does
            // not fit the index is kept whole as the id, without its name.
            Some(name) if u32::try_from(job.id.len()).is_ok_and(|n| n < u32::MAX) => {
                let mut text = String::with_capacity(job.id.len() + name.len());
                text.push_str(&job.id);
                text.push_str(name);
                (text.into_boxed_str(), job.id.len() as u32)
            }
            _ => (job.id.as_str().into(), u32::MAX),
        };
        RecentJob {
            text,
            id_end,
            status: job.status.clone(),
            submitted: job.submitted,
            ended: job.ended,
            progress: job.progress.clone(),
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

/// Why a poll failed: the `reason` label of `healthlake_feed_errors_total`. The set is closed so
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
    /// The poll was cut short by the exporter itself: a reload changed this datastore's polling
    /// settings (or removed it) while the poll was in flight.
    Interrupted,
    /// No poll succeeded for 2 × interval + timeout, whatever held it up (counted once each time
    /// the feed goes stale, not per poll).
    Stale,
    Other,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 11] = [
        ErrorReason::Throttled,
        ErrorReason::AccessDenied,
        ErrorReason::NotFound,
        ErrorReason::Validation,
        ErrorReason::ServerError,
        ErrorReason::Timeout,
        ErrorReason::Network,
        ErrorReason::Credentials,
        ErrorReason::Interrupted,
        ErrorReason::Stale,
        ErrorReason::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Throttled => "throttled",
            ErrorReason::AccessDenied => "access_denied",
            ErrorReason::NotFound => "not_found",
            ErrorReason::Validation => "validation",
            ErrorReason::ServerError => "server_error",
            ErrorReason::Timeout => "timeout",
            ErrorReason::Network => "network",
            ErrorReason::Credentials => "credentials",
            ErrorReason::Interrupted => "interrupted",
            ErrorReason::Stale => "stale",
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

/// Why a string is not a HealthLake datastore id. The message never repeats the id (it may come
/// from a file whose line the caller names, or from a hostile listing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDatastoreId {
    #[error("has {0} characters; a HealthLake datastore id has 1 to 32")]
    Length(usize),
    /// The 1-based position of the first character outside the pattern.
    #[error("character {0} is one HealthLake does not allow in a datastore id (letters, digits, spaces and _ . : / = + - % @)")]
    Character(usize),
}

/// Checks `id` against the API model's `DatastoreId`: 1 to 32 characters of
/// `[\p{L}\p{Z}\p{N}_.:/=+\-%@]`. The configuration's ids are checked with it, and the ids a
/// listing finds, since a listing may carry anything (a broken or hostile endpoint): an id that
/// fails is never polled.
pub fn check_datastore_id(id: &str) -> Result<(), InvalidDatastoreId> {
    let length = id.chars().count();
    if !(1..=32).contains(&length) {
        return Err(InvalidDatastoreId::Length(length));
    }
    let allowed = |c: char| {
        c.is_alphanumeric()
            || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '%' | '@')
            || (c.is_whitespace() && !c.is_control())
    };
    match id.chars().position(|c| !allowed(c)) {
        Some(at) => Err(InvalidDatastoreId::Character(at + 1)),
        None => Ok(()),
    }
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

/// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3): a hash fixed forever,
/// for what must not change across versions or processes (which replica owns a datastore, the
/// phase of its follow-ups).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

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
    fn kept_jobs_keep_id_name_and_times() {
        let mut job = Job {
            id: "0123456789abcdef0123456789abcdef".into(),
            name: Some("export-000001".into()),
            status: JobStatus::InProgress,
            submitted: 1000.0,
            ended: None,
            progress: None,
            message: Some("kept only until logged".into()),
        };
        let kept = RecentJob::from(&job);
        assert_eq!(kept.id(), job.id);
        assert_eq!(kept.name(), Some("export-000001"));
        assert_eq!(kept.duration_seconds(1500.0), Some(500.0));
        job.name = Some(String::new());
        assert_eq!(RecentJob::from(&job).name(), Some(""));
        job.name = None;
        job.id = "ids-are-not-always-hex".into();
        let kept = RecentJob::from(&job);
        assert_eq!((kept.id(), kept.name()), ("ids-are-not-always-hex", None));
        assert!(std::mem::size_of::<RecentJob>() < std::mem::size_of::<Job>());
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
            message: None,
        };
        assert_eq!(job.duration_seconds(1600.5), Some(600.5));
        job.status = JobStatus::Completed;
        job.ended = Some(1300.25);
        assert_eq!(job.duration_seconds(99999.0), Some(300.25));
        job.ended = None;
        assert_eq!(job.duration_seconds(99999.0), None);
    }

    #[test]
    fn datastore_ids_follow_the_api_pattern() {
        for id in [
            "0123456789abcdef0123456789abcdef",
            "d-prod-a",
            "a b",
            "é_.:/=+-%@",
            "x",
        ] {
            assert_eq!(check_datastore_id(id), Ok(()), "{id}");
        }
        let long = "a".repeat(33);
        for (id, why) in [
            ("", InvalidDatastoreId::Length(0)),
            (long.as_str(), InvalidDatastoreId::Length(33)),
            ("ds#1", InvalidDatastoreId::Character(3)),
            ("bad\nid", InvalidDatastoreId::Character(4)),
            ("esc\u{1b}[31m", InvalidDatastoreId::Character(4)),
            ("…", InvalidDatastoreId::Character(1)),
        ] {
            assert_eq!(check_datastore_id(id), Err(why), "{id:?}");
        }
        assert_eq!(
            check_datastore_id(&"é".repeat(32)),
            Ok(()),
            "characters, not bytes"
        );
    }

    #[test]
    fn every_reason_has_a_distinct_label() {
        let labels: std::collections::HashSet<_> =
            ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), ErrorReason::ALL.len());
    }
}

// ---- label bounds ----

/// Label values from the API (job ids, names, statuses, ARNs) longer than this many bytes are
/// truncated: a 200 KB job name must not become a 200 KB label on every scrape.
pub const MAX_LABEL_BYTES: usize = 128;
/// Per datastore and job kind, at most this many statuses outside the API model get their own
/// `status` series; the others are counted together under [`OTHER_STATUS`].
pub const MAX_UNKNOWN_STATUSES: usize = 10;
/// The `status` of jobs in unknown statuses beyond [`MAX_UNKNOWN_STATUSES`].
pub const OTHER_STATUS: &str = "OTHER_UNKNOWN";

/// `value`, or, when longer than [`MAX_LABEL_BYTES`], its first bytes (on a character boundary)
/// followed by `…[truncated:` and 8 hex digits of its SHA-256 `]`, so that two long values that
/// share a prefix stay distinct.
pub fn bound_label(value: &str) -> Cow<'_, str> {
    if value.len() <= MAX_LABEL_BYTES {
        return Cow::Borrowed(value);
    }
    let mut end = MAX_LABEL_BYTES - 32;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let digest = Sha256::digest(value.as_bytes());
    Cow::Owned(format!(
        "{}…[truncated:{:02x}{:02x}{:02x}{:02x}]",
        &value[..end],
        digest[0],
        digest[1],
        digest[2],
        digest[3]
    ))
}

/// How job names appear in the `job_name` label (`polling.job_name_label`). Job names are free
/// text chosen by whoever starts a job and may carry patient or project identifiers, while the
/// monitoring stack often sits outside the HIPAA boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobNameLabel {
    /// The name as HealthLake lists it (bounded by [`MAX_LABEL_BYTES`]).
    #[default]
    Keep,
    /// `sha256:` and the first 16 hex digits of the name's SHA-256: jobs stay tellable apart and
    /// a known name can be looked up, but the label does not carry the text. A short or guessable
    /// name can be recovered by trying candidates: use `drop` when that matters.
    Hash,
    /// An empty `job_name` (Prometheus treats an empty label as absent).
    Drop,
}

impl JobNameLabel {
    pub fn parse(text: &str) -> Option<JobNameLabel> {
        match text {
            "keep" => Some(JobNameLabel::Keep),
            "hash" => Some(JobNameLabel::Hash),
            "drop" => Some(JobNameLabel::Drop),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobNameLabel::Keep => "keep",
            JobNameLabel::Hash => "hash",
            JobNameLabel::Drop => "drop",
        }
    }

    /// The `job_name` label value for a job named `name`.
    pub fn label(self, name: Option<&str>) -> Cow<'_, str> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Cow::Borrowed("");
        };
        match self {
            JobNameLabel::Keep => bound_label(name),
            JobNameLabel::Drop => Cow::Borrowed(""),
            JobNameLabel::Hash => {
                let digest = Sha256::digest(name.as_bytes());
                let mut out = String::from("sha256:");
                for byte in &digest[..8] {
                    out.push_str(&format!("{byte:02x}"));
                }
                Cow::Owned(out)
            }
        }
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn long_values_are_truncated_with_a_marker_and_stay_distinct() {
        assert_eq!(bound_label("short"), "short");
        let a = "é".repeat(100_000);
        let b = format!("{}x", "é".repeat(100_000));
        let (ta, tb) = (bound_label(&a), bound_label(&b));
        assert!(ta.len() <= MAX_LABEL_BYTES, "{}", ta.len());
        assert!(ta.contains("…[truncated:"), "{ta}");
        assert_ne!(ta, tb);
    }

    #[test]
    fn job_names_are_kept_hashed_or_dropped() {
        let name = Some("patient-1234-export");
        assert_eq!(JobNameLabel::Keep.label(name), "patient-1234-export");
        assert_eq!(JobNameLabel::Drop.label(name), "");
        let hashed = JobNameLabel::Hash.label(name);
        assert!(
            hashed.starts_with("sha256:") && hashed.len() == 7 + 16,
            "{hashed}"
        );
        assert!(!hashed.contains("1234"));
        assert_eq!(JobNameLabel::Hash.label(None), "");
    }
}
