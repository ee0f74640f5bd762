//! One job list of a datastore (exports or imports, the same code): merging listings into counts
//! per status, the newest jobs, the recently ended jobs and the finished counters, and the
//! settled history that lets a poll list only the jobs that can still change (see [`PollPlan`]):
//! finished old jobs as counts, old unfinished ones by id, followed by filtered listings.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::health::Health;
use crate::model::{Job, JobNameLabel, JobStatus, KeptJob, MAX_UNKNOWN_STATUSES, OTHER_STATUS};

/// What one job list (exports or imports) of a datastore shows.
#[derive(Debug, Default)]
pub struct JobTrack {
    /// `None` until the first successful poll: before it we know nothing about the jobs.
    pub jobs: Option<JobsView>,
    /// Jobs seen entering each terminal status while the exporter runs, each job id at most once
    /// per status (all terminal statuses present, at 0, from the first successful poll).
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

    /// Whether `id` is an old unfinished job, one that only a follow-up listing sees (an event
    /// naming one makes its refresh follow them).
    pub fn is_straggler(&self, id: &str) -> bool {
        self.history.stragglers.contains_key(id)
    }
}

/// The bookkeeping that lets a poll list only what can still change.
///
/// The history is cut at `settled`: jobs submitted after it (the *window*) are listed by every
/// poll; jobs at or before it are never listed again until the next full listing. Finished jobs
/// there live on only as counts; unfinished ones (*stragglers*: a stuck job, a queue of old jobs)
/// are kept by id and followed by a few filtered listings every [`FOLLOW_EVERY`] polls, so an old
/// unfinished job no longer holds the cut back (which made every poll list the whole history).
#[derive(Debug, Default)]
struct History {
    /// Jobs submitted after `settled`: every job that the incremental listing returns.
    /// Only what merging needs of each (their series live in `recent`).
    window: HashMap<Box<str>, Seen>,
    /// Unfinished jobs submitted at or before `settled`, followed by filtered listings: only
    /// what following needs (their series, if they are among the newest, live in `recent`).
    stragglers: HashMap<Box<str>, Seen>,
    /// Finished jobs of the window that a listing stopped returning: remembered (status and
    /// submit time) until they settle, so a job that comes back is not counted twice.
    gone: HashMap<Box<str>, (JobStatus, f64)>,
    /// Per status, the finished jobs submitted at or before `settled` (stragglers excluded).
    settled_counts: BTreeMap<JobStatus, u64>,
    /// Per status, the settled jobs already accounted for by the finished counter (counted, or
    /// finished before the first poll): a full listing counts only settled jobs beyond these, so
    /// a settled job missing from one full listing and back in the next is not counted again.
    /// Never decreases.
    settled_known: BTreeMap<JobStatus, u64>,
    /// Jobs submitted at or before this time are settled. Only moves forward.
    settled: Option<f64>,
    /// When the last full listing was merged.
    last_full: Option<Instant>,
    /// Incremental polls since the stragglers were last followed (or listed in full).
    polls_since_follow: u32,
}

/// A job of the window or a straggler, as much of it as merging and following need: its
/// series, if it is among the newest, are a [`KeptJob`] in `recent`.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    status: JobStatus,
    submitted: f64,
    /// See [`Job::is_active`].
    active: bool,
}

impl From<&Job> for Seen {
    fn from(job: &Job) -> Seen {
        Seen {
            status: job.status.clone(),
            submitted: job.submitted,
            active: job.is_active(),
        }
    }
}

/// How much of a datastore's history a poll lists.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Listing {
    /// Every job: the first poll, and now and then to catch anything an incremental poll missed.
    Full,
    /// Only jobs submitted after this Unix time: every job that is not settled.
    SubmittedAfter(f64),
}

/// What one poll of a job list asks HealthLake for.
#[derive(Clone, Debug, PartialEq)]
pub struct PollPlan {
    pub listing: Listing,
    /// Follow the old unfinished jobs in this poll as well.
    pub follow: Option<Follow>,
    /// After a full listing: polls counted as done towards the first follow-up. Datastores get
    /// different offsets, so they follow their old jobs in different polls, not all in the same
    /// one (a burst of listings, and of memory, every `FOLLOW_EVERY` polls).
    pub follow_offset: u32,
}

impl PollPlan {
    /// A full listing.
    pub const FULL: PollPlan = PollPlan {
        listing: Listing::Full,
        follow: None,
        follow_offset: 0,
    };
}

/// How a poll follows the stragglers: one listing per status they are in, of jobs submitted
/// before `before` (`JobStatus` + `SubmittedBefore`), then, for stragglers none of those listings
/// returned (their status changed), one listing of the submit-time range they span.
#[derive(Clone, Debug, PartialEq)]
pub struct Follow {
    /// The settled point: every straggler was submitted at or before it.
    pub before: f64,
    /// The distinct statuses of the stragglers, in order.
    pub statuses: Vec<JobStatus>,
    /// Each straggler's id and submit time.
    pub stragglers: Vec<(String, f64)>,
}

impl Follow {
    /// The submit-time range (first, last) of the stragglers that none of `found` is, if any.
    pub fn missing_range(&self, found: &[Job]) -> Option<(f64, f64)> {
        let ids: std::collections::HashSet<&str> = found.iter().map(|j| j.id.as_str()).collect();
        self.stragglers
            .iter()
            .filter(|(id, _)| !ids.contains(id.as_str()))
            .map(|(_, submitted)| *submitted)
            .fold(None, |range, t| match range {
                None => Some((t, t)),
                Some((lo, hi)) => Some((f64::min(lo, t), f64::max(hi, t))),
            })
    }
}

/// How far behind the newest job a listing still looks, for jobs that HealthLake lists a little
/// after jobs submitted later than them. A job that appears later still is caught by the next full
/// listing (`polling.full_resync_interval`).
pub const LATE_JOB_WINDOW: f64 = 15.0 * 60.0;

/// At most this many of the newest jobs stay in the late-job window: a burst of submissions
/// settles as soon as newer ones follow it, so its pages are listed once, not for 15 minutes (the
/// incremental listing stays one page of 500).
pub const LATE_JOB_LIMIT: usize = 250;

/// Stragglers are followed every this many polls: a weeks-old job's transition shows within this
/// many intervals, for a few calls per datastore every this many polls.
pub const FOLLOW_EVERY: u32 = 8;

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

/// A job that ended recently in one of [`ALERTED_STATUSES`]: the end-timestamp series.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedJob {
    pub id: String,
    pub name: Option<String>,
    pub status: JobStatus,
    /// EndTime as listed; without one, when the exporter first saw the job finished.
    pub ended: f64,
}

/// The job data of the last successful poll.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobsView {
    /// Jobs per status: the ten known statuses always (0 when none), unknown ones when seen.
    pub counts: BTreeMap<JobStatus, u64>,
    /// The most recently submitted jobs (up to `job_series_limit`), newest first.
    pub recent: Vec<KeptJob>,
    /// Submit time of the oldest job still running, if any.
    pub oldest_active_submitted: Option<f64>,
    /// Jobs that ended in an alerted status within `polling.ended_job_window`, most recent first.
    pub ended: Vec<EndedJob>,
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
    /// Moves the jobs that the incremental listing no longer needs out of the window: those
    /// submitted more than [`LATE_JOB_WINDOW`] before the newest job, or behind the
    /// [`LATE_JOB_LIMIT`] newest. Finished ones become counts, unfinished ones stragglers.
    fn settle(&mut self) {
        let mut times: Vec<f64> = self.window.values().map(|j| j.submitted).collect();
        times.sort_unstable_by(|a, b| b.total_cmp(a));
        let Some(&newest) = times.first() else {
            self.prune_gone();
            return;
        };
        let mut candidate = newest - LATE_JOB_WINDOW;
        if let Some(&cut) = times.get(LATE_JOB_LIMIT) {
            candidate = candidate.max(cut);
        }
        let settled = self.settled.map_or(candidate, |s| s.max(candidate));
        self.settled = Some(settled);
        let (settled_counts, settled_known, stragglers) = (
            &mut self.settled_counts,
            &mut self.settled_known,
            &mut self.stragglers,
        );
        self.window.retain(|id, job| {
            if job.submitted > settled {
                return true;
            }
            if job.status.is_terminal() {
                *settled_counts.entry(job.status.clone()).or_insert(0) += 1;
                *settled_known.entry(job.status.clone()).or_insert(0) += 1;
            } else {
                stragglers.insert(id.clone(), job.clone());
            }
            false
        });
        self.prune_gone();
        // After a full listing the window held the whole history: give that memory back.
        self.window.shrink_to_fit();
        self.stragglers.shrink_to_fit();
    }

    /// Forgets vanished jobs that have settled: they stay accounted for in `settled_known`.
    fn prune_gone(&mut self) {
        let Some(settled) = self.settled else { return };
        let known = &mut self.settled_known;
        self.gone.retain(|_, (status, submitted)| {
            if *submitted > settled {
                return true;
            }
            *known.entry(status.clone()).or_insert(0) += 1;
            false
        });
        self.gone.shrink_to_fit();
    }

    /// The status this history last knew for job `id`, if it knows the job by id.
    fn known_status(&self, id: &str) -> Option<&JobStatus> {
        self.window
            .get(id)
            .map(|j| &j.status)
            .or_else(|| self.stragglers.get(id).map(|s| &s.status))
            .or_else(|| self.gone.get(id).map(|(status, _)| status))
    }
}

/// One copy per job id: a listing whose pages shifted while it was read may return a job twice
/// (in different statuses if it changed meanwhile). A finished copy wins over an unfinished one.
fn dedup(jobs: Vec<Job>) -> Vec<Job> {
    let mut keep = vec![true; jobs.len()];
    let mut at: HashMap<&str, usize> = HashMap::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        match at.get(job.id.as_str()).copied() {
            Some(first) => {
                let first_terminal = jobs.get(first).is_some_and(|j| j.status.is_terminal());
                if job.status.is_terminal() && !first_terminal {
                    keep[first] = false;
                    at.insert(&job.id, i);
                } else {
                    keep[i] = false;
                }
            }
            None => {
                at.insert(&job.id, i);
            }
        }
    }
    drop(at);
    if keep.iter().all(|k| *k) {
        return jobs;
    }
    jobs.into_iter()
        .zip(keep)
        .filter_map(|(job, keep)| keep.then_some(job))
        .collect()
}

impl JobTrack {
    /// See [`Datastore::next_poll`](super::Datastore::next_poll); `spread` is a number fixed per
    /// datastore that sets its follow-up phase.
    pub(crate) fn next_poll(
        &self,
        full_resync: Duration,
        follow_every: u32,
        spread: u32,
    ) -> PollPlan {
        let track = self;
        let full = PollPlan {
            follow_offset: spread % follow_every.max(1),
            ..PollPlan::FULL
        };
        let history = &track.history;
        match (history.settled, history.last_full) {
            (Some(settled), Some(last_full))
                if track.jobs.is_some() && last_full.elapsed() < full_resync =>
            {
                let due = history.polls_since_follow.saturating_add(1) >= follow_every;
                let follow = (due && !history.stragglers.is_empty()).then(|| {
                    let statuses: std::collections::BTreeSet<&JobStatus> =
                        history.stragglers.values().map(|s| &s.status).collect();
                    Follow {
                        before: settled,
                        statuses: statuses.into_iter().cloned().collect(),
                        stragglers: history
                            .stragglers
                            .iter()
                            .map(|(id, s)| (id.to_string(), s.submitted))
                            .collect(),
                    }
                });
                PollPlan {
                    listing: Listing::SubmittedAfter(settled),
                    follow,
                    follow_offset: 0,
                }
            }
            _ => full,
        }
    }

    /// Drops the end-timestamp series of jobs that ended longer ago than `ended_window` seconds,
    /// as of `now`. Returns whether any went.
    pub(crate) fn expire_ended(&mut self, now: f64, ended_window: f64) -> bool {
        let horizon = now - ended_window;
        let Some(view) = self.jobs.as_mut() else {
            return false;
        };
        let before = view.ended.len();
        view.ended.retain(|e| e.ended > horizon);
        view.ended.len() != before
    }
}

/// Whether `job`, last known in status `before` (if known at all), is to be counted as having
/// entered its terminal status now: at most once per id and terminal status.
fn counts_as_finished(job: &Job, before: Option<&JobStatus>, first_success: bool) -> bool {
    job.status.is_terminal() && before != Some(&job.status) && !first_success
}

/// What one merge finds about finished jobs: those counted as finished now, and the recently
/// ended jobs being rebuilt.
struct Outcomes {
    finished: Vec<(String, JobStatus)>,
    by_id: HashMap<String, EndedJob>,
    horizon: f64,
    now: f64,
    first_success: bool,
}

impl Outcomes {
    /// Notes a listed job, `counted` if it entered its terminal status now.
    fn saw(&mut self, job: &Job, counted: bool) {
        if counted {
            self.finished.push((job.id.clone(), job.status.clone()));
        }
        self.note(job, counted);
    }

    /// Notes a listed job: one in an alerted status that ended after the horizon gets (or keeps)
    /// its series. Its end is its EndTime; without one, the time the exporter first saw it
    /// finished (`now` when `counted` says that is this poll); at the first poll, when that time
    /// is unknown, its SubmitTime, so that a fresh start does not page for old failures.
    fn note(&mut self, job: &Job, counted: bool) {
        if !ALERTED_STATUSES.contains(&job.status) {
            return;
        }
        let known = self
            .by_id
            .get(&job.id)
            .filter(|e| e.status == job.status)
            .map(|e| e.ended);
        let ended = job.ended.or(known).or(if counted {
            Some(self.now)
        } else if self.first_success {
            Some(job.submitted)
        } else {
            None
        });
        match ended {
            Some(ended) if ended > self.horizon => {
                self.by_id.insert(
                    job.id.clone(),
                    EndedJob {
                        id: job.id.clone(),
                        name: job.name.clone(),
                        status: job.status.clone(),
                        ended,
                    },
                );
            }
            _ => {}
        }
    }

    /// The jobs counted as finished, and the ended jobs within the window, most recent first.
    fn finish(self) -> (Vec<(String, JobStatus)>, Vec<EndedJob>) {
        let horizon = self.horizon;
        let mut ended: Vec<EndedJob> = self
            .by_id
            .into_values()
            .filter(|e| e.ended > horizon)
            .collect();
        ended.sort_unstable_by(|a, b| b.ended.total_cmp(&a.ended).then_with(|| a.id.cmp(&b.id)));
        ended.truncate(MAX_ENDED_JOBS);
        ended.shrink_to_fit();
        (self.finished, ended)
    }
}

impl JobTrack {
    pub(crate) fn merge(
        &mut self,
        plan: &PollPlan,
        jobs: Vec<Job>,
        followed: Option<Vec<Job>>,
        retention: Retention,
        poll_seconds: f64,
        now: f64,
    ) -> PollOutcome {
        let first_success = self.jobs.is_none();
        let recovered = !self.health.up;
        if first_success {
            for status in JobStatus::TERMINAL {
                self.finished.entry(status).or_insert(0);
            }
        }
        let job_series_limit = retention.job_series_limit;
        let jobs = dedup(jobs);
        let (old_recent, old_ended) = self
            .jobs
            .take()
            .map(|v| (v.recent, v.ended))
            .unwrap_or_default();
        let mut outcomes = Outcomes {
            finished: Vec::new(),
            by_id: old_ended.into_iter().map(|e| (e.id.clone(), e)).collect(),
            horizon: now - retention.ended_window,
            now,
            first_success,
        };
        let history = &mut self.history;
        let old_window = std::mem::take(&mut history.window);
        let old_stragglers = std::mem::take(&mut history.stragglers);
        // Finished jobs counted by number only (settled jobs seen in a full listing), by status.
        let mut unnamed: BTreeMap<JobStatus, u64> = BTreeMap::new();
        let before_of = |history: &History, id: &str| -> Option<JobStatus> {
            old_window
                .get(id)
                .map(|j| j.status.clone())
                .or_else(|| old_stragglers.get(id).map(|s| s.status.clone()))
                .or_else(|| history.known_status(id).cloned())
        };

        let mut recent: Vec<KeptJob>;
        match plan.listing {
            Listing::Full => {
                // Only the newest `job_series_limit` jobs are kept for their series: sort
                // references and copy those, not the whole history.
                let mut newest: Vec<&Job> = jobs.iter().collect();
                newest.sort_unstable_by(|a, b| {
                    newest_first((a.submitted, &a.id), (b.submitted, &b.id))
                });
                newest.truncate(job_series_limit);
                recent = newest.into_iter().map(KeptJob::from).collect();

                let settled = history.settled;
                let mut settled_seen: BTreeMap<JobStatus, u64> = BTreeMap::new();
                let mut window = HashMap::new();
                let mut stragglers = HashMap::new();
                for job in jobs {
                    let before = before_of(history, &job.id);
                    if before.is_some() {
                        history.gone.remove(job.id.as_str());
                    }
                    if settled.is_some_and(|s| job.submitted <= s) {
                        if !job.status.is_terminal() {
                            stragglers.insert(job.id.as_str().into(), Seen::from(&job));
                            continue;
                        }
                        // A straggler that finished is counted by id; any other settled job
                        // only as a number beyond those already accounted for.
                        let counted = before.is_some()
                            && counts_as_finished(&job, before.as_ref(), first_success);
                        if before.is_some() {
                            *history.settled_known.entry(job.status.clone()).or_insert(0) += 1;
                        }
                        outcomes.saw(&job, counted);
                        *settled_seen.entry(job.status.clone()).or_insert(0) += 1;
                    } else {
                        let counted = counts_as_finished(&job, before.as_ref(), first_success);
                        outcomes.saw(&job, counted);
                        window.insert(job.id.as_str().into(), Seen::from(&job));
                    }
                }
                for (status, seen) in &settled_seen {
                    let known = history.settled_known.entry(status.clone()).or_insert(0);
                    if *seen > *known {
                        if !first_success {
                            *unnamed.entry(status.clone()).or_insert(0) += seen - *known;
                        }
                        *known = *seen;
                    }
                }
                history.settled_counts = settled_seen;
                history.window = window;
                history.stragglers = stragglers;
                history.last_full = Some(Instant::now());
                history.polls_since_follow = plan.follow_offset;
            }
            Listing::SubmittedAfter(after) => {
                let mut window = HashMap::with_capacity(jobs.len());
                let mut listed = Vec::with_capacity(jobs.len());
                // A server may include the boundary (or we asked a little early): settled jobs
                // are already counted.
                for job in jobs.into_iter().filter(|j| j.submitted > after) {
                    let before = before_of(history, &job.id);
                    history.gone.remove(job.id.as_str());
                    let counted = counts_as_finished(&job, before.as_ref(), first_success);
                    outcomes.saw(&job, counted);
                    window.insert(job.id.as_str().into(), Seen::from(&job));
                    listed.push(KeptJob::from(&job));
                }
                // The followed jobs as listed now (finished or not): their series replace the old.
                let mut refreshed: Vec<KeptJob> = Vec::new();
                // After following, the stragglers as they were: their old series go (a straggler
                // that no listing returned has vanished from HealthLake).
                let mut retired: HashMap<Box<str>, Seen> = HashMap::new();
                let stragglers = match (&plan.follow, followed) {
                    (Some(follow), Some(found)) => {
                        let mut kept: HashMap<Box<str>, Seen> = HashMap::new();
                        for job in dedup(found)
                            .into_iter()
                            .filter(|j| j.submitted <= follow.before)
                        {
                            match old_stragglers.get(job.id.as_str()) {
                                Some(before) if job.status.is_terminal() => {
                                    let counted = counts_as_finished(
                                        &job,
                                        Some(&before.status),
                                        first_success,
                                    );
                                    outcomes.saw(&job, counted);
                                    for counts in
                                        [&mut history.settled_counts, &mut history.settled_known]
                                    {
                                        *counts.entry(job.status.clone()).or_insert(0) += 1;
                                    }
                                    refreshed.push(KeptJob::from(&job));
                                }
                                // Still unfinished, or unfinished and listed late: followed.
                                _ if !job.status.is_terminal() => {
                                    refreshed.push(KeptJob::from(&job));
                                    kept.insert(job.id.as_str().into(), Seen::from(&job));
                                }
                                // Settled history, already counted.
                                _ => {}
                            }
                        }
                        // A straggler no listing returned any more has vanished from HealthLake.
                        history.polls_since_follow = 0;
                        retired = old_stragglers;
                        kept
                    }
                    _ => {
                        history.polls_since_follow = history.polls_since_follow.saturating_add(1);
                        old_stragglers
                    }
                };
                // The newest jobs: settled ones from before, plus the window and the stragglers as
                // known now.
                recent = old_recent
                    .into_iter()
                    .filter(|j| {
                        let id = j.id();
                        !old_window.contains_key(id)
                            && !window.contains_key(id)
                            && !retired.contains_key(id)
                    })
                    .collect();
                recent.extend(listed);
                recent.extend(refreshed);
                history.window = window;
                history.stragglers = stragglers;
            }
        }
        // Finished jobs of the old window that no listing returns now: remembered until they
        // settle, so that one coming back is not counted again.
        for (id, job) in &old_window {
            if job.status.is_terminal() && !history.window.contains_key(id) {
                history
                    .gone
                    .insert(id.clone(), (job.status.clone(), job.submitted));
            }
        }
        let (finished, ended) = outcomes.finish();
        for (_, status) in &finished {
            *self.finished.entry(status.clone()).or_insert(0) += 1;
        }
        for (status, n) in unnamed {
            *self.finished.entry(status).or_insert(0) += n;
        }

        history.settle();
        let oldest_active = history
            .window
            .values()
            .filter(|j| j.active)
            .map(|j| j.submitted)
            .chain(history.stragglers.values().map(|s| s.submitted))
            .min_by(f64::total_cmp);
        let mut counts: BTreeMap<JobStatus, u64> =
            JobStatus::KNOWN.iter().map(|s| (s.clone(), 0)).collect();
        for (status, n) in &history.settled_counts {
            *counts.entry(status.clone()).or_insert(0) += n;
        }
        let statuses = history.window.values().map(|j| &j.status);
        for status in statuses.chain(history.stragglers.values().map(|s| &s.status)) {
            *counts.entry(status.clone()).or_insert(0) += 1;
        }
        counts.retain(|status, n| *n > 0 || !matches!(status, JobStatus::Unknown(_)));
        fold_unknown_statuses(&mut counts);

        recent.sort_unstable_by(|a, b| newest_first((a.submitted, a.id()), (b.submitted, b.id())));
        recent.truncate(job_series_limit);
        recent.shrink_to_fit();

        self.jobs = Some(JobsView {
            counts,
            recent,
            oldest_active_submitted: oldest_active,
            ended,
        });
        self.health.succeeded(poll_seconds, now);
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
