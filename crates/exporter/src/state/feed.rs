//! One job feed of a datastore (its export jobs or its import jobs, the same code): what its
//! metrics show (a [`JobSummary`] of the last successful listing, the finished counters, its
//! health) and the settled history that lets a poll list only what can still change.

use std::collections::BTreeMap;
use std::time::Duration;

use super::health::Health;
use super::history::{History, PollPlan};
use crate::model::{Job, JobNameLabel, JobStatus, RecentJob};

/// What one job feed (export or import jobs) of a datastore shows and remembers.
#[derive(Debug, Default)]
pub struct JobFeed {
    /// `None` until the first successful poll: before it we know nothing about the jobs.
    pub jobs: Option<JobSummary>,
    /// Jobs seen entering each terminal status while the exporter runs, each job id at most once
    /// per status (all terminal statuses present, at 0, from the first successful poll).
    pub finished: BTreeMap<JobStatus, u64>,
    pub health: Health,
    /// What the `job_name` label of this feed's jobs carries (`polling.job_name_label`).
    pub job_name_label: JobNameLabel,
    history: History,
    /// Listings committed so far (see [`ListingMerge`](super::ListingMerge)).
    commits: u64,
}

/// The job data of a feed's last successful listing: what its metrics show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobSummary {
    /// Jobs per status: the ten known statuses always (0 when none), unknown ones when seen.
    pub counts: BTreeMap<JobStatus, u64>,
    /// The most recently submitted jobs (up to `job_series_limit`), newest first.
    pub recent: Vec<RecentJob>,
    /// Submit time of the oldest job still running, if any.
    pub oldest_active_submitted: Option<f64>,
    /// Jobs that ended in an alerted status within `polling.ended_job_window`, most recent first.
    pub ended: Vec<EndedJob>,
}

/// A job that ended recently in one of [`ALERTED_STATUSES`]: the end-timestamp series.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedJob {
    pub id: String,
    pub name: Option<String>,
    pub status: JobStatus,
    /// EndTime as listed; without one, when the exporter first saw the job finished.
    pub ended: f64,
}

/// The terminal statuses that get a per-job end-timestamp series: the ones worth an alert.
pub const ALERTED_STATUSES: [JobStatus; 3] = [
    JobStatus::Failed,
    JobStatus::CompletedWithErrors,
    JobStatus::CancelFailed,
];

/// At most this many recently ended jobs per datastore and job kind keep their end-timestamp
/// series (the most recently ended first), whatever `polling.ended_job_window` says.
pub const MAX_ENDED_JOBS: usize = 1000;

/// What a merge keeps, from `[polling]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retention {
    /// `polling.job_series_limit`: the newest jobs that get a duration series.
    pub job_series_limit: usize,
    /// `polling.ended_job_window` in seconds: how long an ended job keeps its end-timestamp series.
    pub ended_window: f64,
}

impl Retention {
    /// The default ended-job window: an hour.
    pub const DEFAULT_ENDED_WINDOW: f64 = 3600.0;

    pub fn new(job_series_limit: usize, ended_window: f64) -> Retention {
        Retention {
            job_series_limit,
            ended_window,
        }
    }
}

/// What changed in a successful poll, for the poller's log lines.
#[derive(Debug, Default, PartialEq)]
pub struct PollOutcome {
    /// The datastore was down (or never polled) and now answers.
    pub recovered: bool,
    /// Jobs that entered a terminal status in this poll.
    pub finished: Vec<FinishedJob>,
}

/// A job a poll saw entering a terminal status: what its log line says. Held only from the
/// listing to the log line; the feed keeps none of it (but the count).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FinishedJob {
    pub id: String,
    pub status: JobStatus,
    /// As listed (bounded like a label); logged as `polling.job_name_label` allows.
    pub name: Option<String>,
    /// HealthLake's `Message`, bounded and on one line (see [`Job::message`]).
    pub message: Option<Box<str>>,
}

impl From<&Job> for FinishedJob {
    fn from(job: &Job) -> FinishedJob {
        FinishedJob {
            id: job.id.clone(),
            status: job.status.clone(),
            name: job.name.clone(),
            message: job.message.clone(),
        }
    }
}

impl JobFeed {
    pub(crate) fn new() -> JobFeed {
        JobFeed {
            health: Health::new(),
            ..JobFeed::default()
        }
    }

    /// Whether `id` is an old unfinished job, one that only a follow-up listing sees (an event
    /// naming one makes its refresh follow them).
    pub fn is_straggler(&self, id: &str) -> bool {
        self.history.stragglers.contains_key(id)
    }

    pub(super) fn history(&self) -> &History {
        &self.history
    }

    pub(super) fn history_mut(&mut self) -> &mut History {
        &mut self.history
    }

    pub(super) fn commits(&self) -> u64 {
        self.commits
    }

    /// See [`Datastore::next_poll`](super::Datastore::next_poll); `spread` is a number fixed per
    /// datastore that sets its follow-up phase.
    pub(crate) fn next_poll(
        &self,
        full_resync: Duration,
        follow_every: u32,
        spread: u32,
    ) -> PollPlan {
        self.history
            .next_poll(self.jobs.is_some(), full_resync, follow_every, spread)
    }

    /// Adds the jobs a listing counted as finishing, by id (`finished`) and by number only
    /// (`unnamed`, per status). From the first successful poll on, every terminal status shows.
    pub(super) fn count_finished(
        &mut self,
        finished: &[FinishedJob],
        unnamed: BTreeMap<JobStatus, u64>,
        first_success: bool,
    ) {
        if first_success {
            for status in JobStatus::TERMINAL {
                self.finished.entry(status).or_insert(0);
            }
        }
        for job in finished {
            *self.finished.entry(job.status.clone()).or_insert(0) += 1;
        }
        for (status, n) in unnamed {
            *self.finished.entry(status).or_insert(0) += n;
        }
    }

    /// Shows a committed listing: its summary, and a successful poll `poll_seconds` long that
    /// ended at `now`.
    pub(super) fn set_summary(&mut self, summary: JobSummary, poll_seconds: f64, now: f64) {
        self.jobs = Some(summary);
        self.health.succeeded(poll_seconds, now);
        self.commits += 1;
    }

    /// Drops the end-timestamp series of jobs that ended longer ago than `ended_window` seconds,
    /// as of `now`. Returns whether any went.
    pub(crate) fn expire_ended(&mut self, now: f64, ended_window: f64) -> bool {
        let horizon = now - ended_window;
        let Some(summary) = self.jobs.as_mut() else {
            return false;
        };
        let before = summary.ended.len();
        summary.ended.retain(|e| e.ended > horizon);
        summary.ended.len() != before
    }
}
