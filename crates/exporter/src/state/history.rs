//! One job list of a datastore (exports or imports, the same code): merging a listing into counts
//! per status, the newest jobs and the finished counters, and the settled history that lets a poll
//! list only the jobs that can still change (see [`Listing`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::health::Health;
use crate::model::{Job, JobNameLabel, JobStatus, KeptJob, MAX_UNKNOWN_STATUSES, OTHER_STATUS};

/// What one job list (exports or imports) of a datastore shows.
#[derive(Debug, Default)]
pub struct JobTrack {
    /// `None` until the first successful poll: before it we know nothing about the jobs.
    pub jobs: Option<JobsView>,
    /// Jobs seen entering each terminal status while the exporter runs (all terminal statuses
    /// present, at 0, from the first successful poll).
    pub finished: BTreeMap<JobStatus, u64>,
    pub health: Health,
    /// What the `job_name` label of this track's jobs carries (`polling.job_name_label`).
    pub job_name_label: JobNameLabel,
    history: History,
}

impl JobTrack {
    pub(crate) fn new() -> JobTrack {
        JobTrack {
            health: Health::new(),
            ..JobTrack::default()
        }
    }
}

/// The bookkeeping that lets a poll list only what can still change.
#[derive(Debug, Default)]
struct History {
    /// Jobs submitted after `settled`: every job that a later listing can still change.
    window: HashMap<String, Job>,
    /// Per status, the jobs submitted at or before `settled`: all finished, never listed again
    /// until the next full listing.
    settled_counts: BTreeMap<JobStatus, u64>,
    /// Jobs submitted at or before this time are settled. Only moves forward.
    settled: Option<f64>,
    /// When the last full listing was merged.
    last_full: Option<Instant>,
}

/// How much of a datastore's history a poll lists.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Listing {
    /// Every job: the first poll, and now and then to catch anything an incremental poll missed.
    Full,
    /// Only jobs submitted after this Unix time: every job that is not settled.
    SubmittedAfter(f64),
}

/// How far behind the newest job a listing still looks, for jobs that HealthLake lists a little
/// after jobs submitted later than them. A job that appears later still is caught by the next full
/// listing (`polling.full_resync_interval`).
pub(crate) const LATE_JOB_WINDOW: f64 = 15.0 * 60.0;

/// The job data of the last successful poll.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobsView {
    /// Jobs per status: the ten known statuses always (0 when none), unknown ones when seen.
    pub counts: BTreeMap<JobStatus, u64>,
    /// The most recently submitted jobs (up to `job_series_limit`), newest first.
    pub recent: Vec<KeptJob>,
    /// Submit time of the oldest job still running, if any.
    pub oldest_active_submitted: Option<f64>,
}

/// What changed in a successful poll, for the poller's log lines.
#[derive(Debug, Default, PartialEq)]
pub struct PollOutcome {
    /// The datastore was down (or never polled) and now answers.
    pub recovered: bool,
    /// Jobs that entered a terminal status in this poll.
    pub finished: Vec<(String, JobStatus)>,
}

/// Newest submitted first; ties by id, so the order is stable.
fn newest_first(
    (a_submitted, a_id): (f64, &str),
    (b_submitted, b_id): (f64, &str),
) -> std::cmp::Ordering {
    b_submitted
        .total_cmp(&a_submitted)
        .then_with(|| a_id.cmp(b_id))
}

impl History {
    /// Moves the jobs that can no longer change out of the window into the settled counts: those
    /// submitted before both the oldest unfinished job and the late-job window behind the newest.
    fn settle(&mut self) {
        let newest = self
            .window
            .values()
            .map(|j| j.submitted)
            .max_by(f64::total_cmp);
        let oldest_active = self
            .window
            .values()
            .filter(|j| !j.status.is_terminal())
            .map(|j| j.submitted)
            .min_by(f64::total_cmp);
        let Some(newest) = newest else { return };
        // Strictly before the oldest unfinished job every job is terminal (a second of margin
        // keeps a job at exactly that time, or a rounded one, out); only move forward.
        let candidate = oldest_active.map_or(newest - LATE_JOB_WINDOW, |o| {
            (o - 1.0).min(newest - LATE_JOB_WINDOW)
        });
        let settled = self.settled.map_or(candidate, |s| s.max(candidate));
        self.settled = Some(settled);
        let settled_counts = &mut self.settled_counts;
        self.window.retain(|_, job| {
            if job.submitted <= settled {
                *settled_counts.entry(job.status.clone()).or_insert(0) += 1;
                false
            } else {
                true
            }
        });
        // After a full listing the window held the whole history: give that memory back.
        self.window.shrink_to_fit();
    }
}

impl JobTrack {
    /// See [`Datastore::next_listing`](super::Datastore::next_listing).
    pub(crate) fn next_listing(&self, full_resync: Duration) -> Listing {
        let history = &self.history;
        match (history.settled, history.last_full) {
            (Some(settled), Some(last_full))
                if self.jobs.is_some() && last_full.elapsed() < full_resync =>
            {
                Listing::SubmittedAfter(settled)
            }
            _ => Listing::Full,
        }
    }

    pub(crate) fn merge(
        &mut self,
        listing: Listing,
        jobs: Vec<Job>,
        job_series_limit: usize,
        poll_seconds: f64,
        now: f64,
    ) -> PollOutcome {
        let record = self;
        let first_success = record.jobs.is_none();
        let recovered = !record.health.up;
        if first_success {
            for status in JobStatus::TERMINAL {
                record.finished.entry(status).or_insert(0);
            }
        }
        let history = &mut record.history;
        let old_window = std::mem::take(&mut history.window);
        let old_recent = record.jobs.take().map(|v| v.recent).unwrap_or_default();
        let mut finished = Vec::new();
        let mut newly_seen = |job: &Job, before: Option<&Job>| {
            let was_terminal = before.is_some_and(|b| b.status.is_terminal());
            if job.status.is_terminal() && !was_terminal && !first_success {
                finished.push((job.id.clone(), job.status.clone()));
            }
        };

        let mut recent: Vec<KeptJob>;
        match listing {
            Listing::Full => {
                // Settled jobs are known only as counts: a settled job listed now that was not
                // counted before (it appeared late) shows as a surplus in its status.
                let mut settled_seen: BTreeMap<JobStatus, u64> = BTreeMap::new();
                for job in &jobs {
                    match old_window.get(&job.id) {
                        Some(before) => newly_seen(job, Some(before)),
                        None if history.settled.is_some_and(|s| job.submitted <= s) => {
                            *settled_seen.entry(job.status.clone()).or_insert(0) += 1;
                        }
                        None => newly_seen(job, None),
                    }
                }
                // They have no id on record, so they are counted, not named.
                if !first_success {
                    for (status, seen) in settled_seen {
                        let before = history.settled_counts.get(&status).copied().unwrap_or(0);
                        if status.is_terminal() && seen > before {
                            *record.finished.entry(status).or_insert(0) += seen - before;
                        }
                    }
                }
                history.settled_counts.clear();
                history.settled = None;
                history.last_full = Some(Instant::now());
                // Only the newest `job_series_limit` jobs are kept for their series: sort
                // references and copy those, not the whole history.
                let mut newest: Vec<&Job> = jobs.iter().collect();
                newest.sort_unstable_by(|a, b| {
                    newest_first((a.submitted, &a.id), (b.submitted, &b.id))
                });
                newest.truncate(job_series_limit);
                recent = newest.into_iter().map(KeptJob::from).collect();
                history.window = jobs.into_iter().map(|j| (j.id.clone(), j)).collect();
            }
            Listing::SubmittedAfter(after) => {
                let mut window = HashMap::with_capacity(jobs.len());
                // A server may include the boundary (or we asked a little early): settled jobs
                // are already counted.
                for job in jobs.into_iter().filter(|j| j.submitted > after) {
                    newly_seen(&job, old_window.get(&job.id));
                    window.insert(job.id.clone(), job);
                }
                // Jobs of the old window missing now vanished from HealthLake: drop them.
                // The newest jobs: settled ones from before, plus the window as listed now.
                recent = old_recent
                    .into_iter()
                    .filter(|j| !old_window.contains_key(j.id()) && !window.contains_key(j.id()))
                    .collect();
                recent.extend(window.values().map(KeptJob::from));
                history.window = window;
            }
        }
        for (_, status) in &finished {
            *record.finished.entry(status.clone()).or_insert(0) += 1;
        }

        history.settle();
        let oldest_active = history
            .window
            .values()
            .filter(|j| j.is_active())
            .map(|j| j.submitted)
            .min_by(f64::total_cmp);
        let mut counts: BTreeMap<JobStatus, u64> =
            JobStatus::KNOWN.iter().map(|s| (s.clone(), 0)).collect();
        for (status, n) in &history.settled_counts {
            *counts.entry(status.clone()).or_insert(0) += n;
        }
        for job in history.window.values() {
            *counts.entry(job.status.clone()).or_insert(0) += 1;
        }
        counts.retain(|status, n| *n > 0 || !matches!(status, JobStatus::Unknown(_)));
        fold_unknown_statuses(&mut counts);

        recent.sort_unstable_by(|a, b| newest_first((a.submitted, a.id()), (b.submitted, b.id())));
        recent.truncate(job_series_limit);
        recent.shrink_to_fit();

        record.jobs = Some(JobsView {
            counts,
            recent,
            oldest_active_submitted: oldest_active,
        });
        record.health.succeeded(poll_seconds, now);
        PollOutcome {
            recovered,
            finished,
        }
    }
}

/// Keeps the first [`MAX_UNKNOWN_STATUSES`] statuses outside the API model (in name order, so the
/// choice is stable) and counts the jobs of any further ones under [`OTHER_STATUS`]: however
/// many statuses a listing holds, a datastore has a bounded number of `status` series.
fn fold_unknown_statuses(counts: &mut BTreeMap<JobStatus, u64>) {
    let extra: Vec<JobStatus> = counts
        .keys()
        .filter(|s| matches!(s, JobStatus::Unknown(_)))
        .skip(MAX_UNKNOWN_STATUSES)
        .cloned()
        .collect();
    if extra.is_empty() {
        return;
    }
    let mut folded = 0;
    for status in extra {
        folded += counts.remove(&status).unwrap_or(0);
    }
    *counts
        .entry(JobStatus::Unknown(OTHER_STATUS.to_owned()))
        .or_insert(0) += folded;
}
