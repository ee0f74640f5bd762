//! What the exporter knows about each datastore: the single source of truth for `/metrics`.
//!
//! The poller writes a datastore's entry after each poll; the metrics encoder only reads. A failed
//! poll changes a datastore's health, never its job data: last-known values stay until a later poll
//! succeeds, so a flaky API never blanks a series or flaps an alert.
//!
//! Memory follows what is shown, not the history: per datastore the counts per status, the jobs
//! submitted inside a short window (the only ones a listing can still change) and the
//! `job_series_limit` newest jobs. Jobs older than the window are finished for good and live on
//! only as counts, which is also what lets the poller list just the window (see [`Listing`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crate::config::{Config, JobKinds};
use crate::healthlake::{DatastoreInfo, ErrorReason, PollError};
use crate::job::{Job, JobKind, JobStatus};

/// Every datastore the config names, in config order, and how the last config reload went.
/// A reload swaps the list; readers take a snapshot of it and never block a poll for long.
#[derive(Debug)]
pub struct State {
    datastores: RwLock<Arc<[Arc<Datastore>]>>,
    reload: ReloadStatus,
    /// One entry per `[[discovery]]` table, in config order.
    discovery: Mutex<Vec<DiscoveryStatus>>,
    /// Bumped on every change of `discovery`, like `Record::version`.
    discovery_version: AtomicU64,
}

/// How one `[[discovery]]` entry is doing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiscoveryStatus {
    /// The entry's position in the file: the `discovery` label.
    pub index: usize,
    /// The entry's region (the `region` label), or "default" for the SDK's region chain.
    pub region: String,
    /// Datastores the last successful listing found.
    pub found: usize,
    pub health: Health,
}

/// The outcome of the last config reload.
#[derive(Debug)]
pub struct ReloadStatus {
    successful: AtomicBool,
    /// Unix time of the last successful load, as f64 bits.
    success_time: AtomicU64,
}

impl ReloadStatus {
    /// A status for a config first loaded successfully at `now`.
    pub fn loaded_at(now: f64) -> ReloadStatus {
        ReloadStatus {
            successful: AtomicBool::new(true),
            success_time: AtomicU64::new(now.to_bits()),
        }
    }

    pub fn record(&self, successful: bool, now: f64) {
        self.successful.store(successful, Ordering::Relaxed);
        if successful {
            self.success_time.store(now.to_bits(), Ordering::Relaxed);
        }
    }

    pub fn last_successful(&self) -> bool {
        self.successful.load(Ordering::Relaxed)
    }

    pub fn last_success_time(&self) -> f64 {
        f64::from_bits(self.success_time.load(Ordering::Relaxed))
    }
}

/// One datastore: its fixed labels and its mutable record (locked briefly by poller and scrapes).
#[derive(Debug)]
pub struct Datastore {
    pub id: String,
    pub name: String,
    record: Mutex<Record>,
}

/// The mutable part of a datastore's state: one track per thing polled. A track is `None` when
/// the configuration does not poll it for this datastore.
#[derive(Debug, Default)]
pub struct Record {
    pub exports: Option<JobTrack>,
    pub imports: Option<JobTrack>,
    /// `DescribeFHIRDatastore` results (`polling.datastore_health`).
    pub datastore: Option<DatastoreTrack>,
    /// Bumped on every change of this record: lets the metrics encoder reuse what it encoded
    /// before when nothing changed.
    pub version: u64,
}

/// What one job list (exports or imports) of a datastore shows.
#[derive(Debug, Default)]
pub struct JobTrack {
    /// `None` until the first successful poll: before it we know nothing about the jobs.
    pub jobs: Option<JobsView>,
    /// Jobs seen entering each terminal status while the exporter runs (all terminal statuses
    /// present, at 0, from the first successful poll).
    pub finished: BTreeMap<JobStatus, u64>,
    pub health: Health,
    history: History,
    /// `polling.ended_job_window` of the last merge, in seconds.
    ended_window: f64,
}

/// The datastore itself, as `DescribeFHIRDatastore` last described it.
#[derive(Debug, Default)]
pub struct DatastoreTrack {
    pub info: Option<DatastoreInfo>,
    pub health: Health,
}

/// What a poll asks HealthLake for: one of the job lists, or the datastore's own description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feed {
    Jobs(JobKind),
    Datastore,
}

impl Feed {
    /// Export jobs: the feed of `healthlake_datastore_up` and `healthlake_poll_errors_total`.
    pub const EXPORTS: Feed = Feed::Jobs(JobKind::Export);
    pub const IMPORTS: Feed = Feed::Jobs(JobKind::Import);

    pub fn operation(self) -> &'static str {
        match self {
            Feed::Jobs(kind) => kind.operation(),
            Feed::Datastore => "DescribeFHIRDatastore",
        }
    }
}

impl Health {
    /// A health with every error reason present at 0, so `increase()` works on the first error.
    fn new() -> Health {
        Health {
            errors: ErrorReason::ALL.iter().map(|r| (*r, 0)).collect(),
            ..Health::default()
        }
    }
}

impl JobTrack {
    fn new() -> JobTrack {
        JobTrack {
            health: Health::new(),
            ended_window: Retention::DEFAULT_ENDED_WINDOW,
            ..JobTrack::default()
        }
    }
}

impl Record {
    pub fn track(&self, kind: JobKind) -> Option<&JobTrack> {
        match kind {
            JobKind::Export => self.exports.as_ref(),
            JobKind::Import => self.imports.as_ref(),
        }
    }

    fn track_mut(&mut self, kind: JobKind) -> &mut JobTrack {
        let track = match kind {
            JobKind::Export => &mut self.exports,
            JobKind::Import => &mut self.imports,
        };
        track.get_or_insert_with(JobTrack::new)
    }

    /// Every job list this record polls has had a poll attempted.
    fn jobs_attempted(&self) -> bool {
        [&self.exports, &self.imports]
            .into_iter()
            .flatten()
            .all(|track| track.health.attempts > 0)
    }

    /// Polls of `feed` attempted so far (0 when the feed is not polled).
    pub fn attempts(&self, feed: Feed) -> u64 {
        self.health(feed).map_or(0, |h| h.attempts)
    }

    pub fn health(&self, feed: Feed) -> Option<&Health> {
        match feed {
            Feed::Jobs(kind) => self.track(kind).map(|t| &t.health),
            Feed::Datastore => self.datastore.as_ref().map(|d| &d.health),
        }
    }

    fn health_mut(&mut self, feed: Feed) -> &mut Health {
        match feed {
            Feed::Jobs(kind) => &mut self.track_mut(kind).health,
            Feed::Datastore => {
                &mut self
                    .datastore
                    .get_or_insert_with(|| DatastoreTrack {
                        info: None,
                        health: Health::new(),
                    })
                    .health
            }
        }
    }

    /// Makes the record poll what `config` says for this datastore: tracks switched off are dropped
    /// (with their series), tracks switched on start empty, the others are kept.
    fn follow(&mut self, jobs: JobKinds, datastore_health: bool) {
        fn keep(track: &mut Option<JobTrack>, on: bool) {
            match (on, track.is_some()) {
                (true, false) => *track = Some(JobTrack::new()),
                (false, true) => *track = None,
                _ => {}
            }
        }
        keep(&mut self.exports, jobs.export);
        keep(&mut self.imports, jobs.import);
        match (datastore_health, self.datastore.is_some()) {
            (true, false) => {
                self.datastore = Some(DatastoreTrack {
                    info: None,
                    health: Health::new(),
                })
            }
            (false, true) => self.datastore = None,
            _ => {}
        }
        self.version += 1;
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
    window: HashMap<String, Job>,
    /// Unfinished jobs submitted at or before `settled`, followed by filtered listings.
    stragglers: HashMap<String, Job>,
    /// Finished jobs of the window that a listing stopped returning: remembered (status and
    /// submit time) until they settle, so a job that comes back is not counted twice.
    gone: HashMap<String, (JobStatus, f64)>,
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
}

impl PollPlan {
    /// A full listing.
    pub const FULL: PollPlan = PollPlan {
        listing: Listing::Full,
        follow: None,
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
    pub recent: Vec<Job>,
    /// Submit time of the oldest job still running, if any.
    pub oldest_active_submitted: Option<f64>,
    /// Jobs that ended in an alerted status within `polling.ended_job_window`, most recent first.
    pub ended: Vec<EndedJob>,
}

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

/// What changed in a successful poll, for the poller's log lines.
#[derive(Debug, Default, PartialEq)]
pub struct PollOutcome {
    /// The datastore was down (or never polled) and now answers.
    pub recovered: bool,
    /// Jobs that entered a terminal status in this poll.
    pub finished: Vec<(String, JobStatus)>,
}

impl State {
    /// The state for a config first loaded at `now` (Unix seconds).
    pub fn new(config: &Config, now: f64) -> State {
        let state = State {
            datastores: RwLock::new(build_datastores(config, &[])),
            reload: ReloadStatus::loaded_at(now),
            discovery: Mutex::new(Vec::new()),
            discovery_version: AtomicU64::new(0),
        };
        state.follow_discovery(config, false);
        state
    }

    /// Sizes the discovery statuses to `config`'s entries; entries unchanged since `keep` keep
    /// their status.
    pub fn follow_discovery(&self, config: &Config, keep: bool) {
        let mut statuses = self.discovery.lock().unwrap_or_else(|p| p.into_inner());
        let next = config
            .discovery
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let region = entry
                    .target
                    .region
                    .clone()
                    .unwrap_or_else(|| "default".to_owned());
                match statuses.get(index) {
                    Some(old) if keep && old.region == region => old.clone(),
                    _ => DiscoveryStatus {
                        index,
                        region,
                        found: 0,
                        health: Health::new(),
                    },
                }
            })
            .collect();
        *statuses = next;
        self.discovery_version.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes whenever a discovery status changes.
    pub fn discovery_version(&self) -> u64 {
        self.discovery_version.load(Ordering::Relaxed)
    }

    /// Records the outcome of one discovery listing; returns whether a failure is news.
    pub fn record_discovery(
        &self,
        index: usize,
        outcome: Result<usize, &PollError>,
        poll_seconds: f64,
        now: f64,
    ) -> bool {
        let mut statuses = self.discovery.lock().unwrap_or_else(|p| p.into_inner());
        let Some(status) = statuses.get_mut(index) else {
            return false;
        };
        self.discovery_version.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(found) => {
                let recovered = !status.health.up;
                status.found = found;
                status.health.succeeded(poll_seconds, now);
                recovered
            }
            Err(error) => status.health.failed(error, poll_seconds),
        }
    }

    /// The discovery entries' statuses, copied.
    pub fn discovery(&self) -> Vec<DiscoveryStatus> {
        self.discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Switches to a reloaded `config`: datastores still listed keep their record (job data,
    /// counters, health), under their new name if it changed; removed ones are dropped with their
    /// series; new ones start empty.
    pub fn apply(&self, config: &Config) {
        let mut datastores = self.datastores.write().unwrap_or_else(|p| p.into_inner());
        let next = build_datastores(config, &datastores);
        *datastores = next;
    }

    pub fn reload_status(&self) -> &ReloadStatus {
        &self.reload
    }

    /// The datastores as of now (a reload may replace the list afterwards).
    pub fn datastores(&self) -> Arc<[Arc<Datastore>]> {
        Arc::clone(&self.datastores.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Ready once every datastore has had its first poll attempted, whatever its outcome: readiness
    /// must never depend on AWS, because a sidecar's readiness gates its whole pod.
    pub fn first_cycle_attempted(&self) -> bool {
        let discovered = self
            .discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .all(|d| d.health.attempts > 0);
        discovered
            && self
                .datastores()
                .iter()
                .all(|ds| ds.record().jobs_attempted())
    }
}

fn build_datastores(config: &Config, previous: &[Arc<Datastore>]) -> Arc<[Arc<Datastore>]> {
    let mut old: HashMap<&str, &Arc<Datastore>> =
        previous.iter().map(|d| (d.id.as_str(), d)).collect();
    let datastore_health = config.polling.datastore_health;
    config
        .datastores
        .iter()
        .map(|ds| {
            let datastore = match old.remove(ds.id.as_str()) {
                Some(kept) if kept.name == ds.name => Arc::clone(kept),
                Some(renamed) => Arc::new(Datastore {
                    id: ds.id.clone(),
                    name: ds.name.clone(),
                    record: Mutex::new(std::mem::take(&mut *renamed.record())),
                }),
                None => Arc::new(Datastore {
                    id: ds.id.clone(),
                    name: ds.name.clone(),
                    record: Mutex::new(Record::default()),
                }),
            };
            datastore.record().follow(ds.jobs, datastore_health);
            datastore
        })
        .collect()
}

/// Newest submitted first; ties by id, so the order is stable.
fn newest_first(a: &Job, b: &Job) -> std::cmp::Ordering {
    b.submitted
        .total_cmp(&a.submitted)
        .then_with(|| a.id.cmp(&b.id))
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
            .or_else(|| self.stragglers.get(id))
            .map(|j| &j.status)
            .or_else(|| self.gone.get(id).map(|(status, _)| status))
    }
}

/// One copy per job id: a listing whose pages shifted while it was read may return a job twice
/// (in different statuses if it changed meanwhile). A finished copy wins over an unfinished one.
fn dedup(jobs: Vec<Job>) -> Vec<Job> {
    let mut at: HashMap<String, usize> = HashMap::with_capacity(jobs.len());
    let mut out: Vec<Job> = Vec::with_capacity(jobs.len());
    for job in jobs {
        match at.get(&job.id) {
            Some(&i) => {
                if job.status.is_terminal() && !out[i].status.is_terminal() {
                    out[i] = job;
                }
            }
            None => {
                at.insert(job.id.clone(), out.len());
                out.push(job);
            }
        }
    }
    out
}

impl Datastore {
    /// Locks the record. A poisoned lock (a panic elsewhere while holding it) still yields the data:
    /// a scrape must keep answering.
    pub fn record(&self) -> MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that a poll of `feed` starts now.
    pub fn record_attempt_start(&self, feed: Feed) {
        self.record().health_mut(feed).last_attempt = Some(Instant::now());
    }

    /// What the next poll of `kind` should list: everything on the first poll and once
    /// `full_resync` has passed since the last full listing, otherwise only unsettled jobs; and,
    /// every `follow_every` polls, the old unfinished jobs too.
    pub fn next_poll(&self, kind: JobKind, full_resync: Duration, follow_every: u32) -> PollPlan {
        let record = self.record();
        let full = PollPlan {
            listing: Listing::Full,
            follow: None,
        };
        let Some(track) = record.track(kind) else {
            return full;
        };
        let history = &track.history;
        match (history.settled, history.last_full) {
            (Some(settled), Some(last_full))
                if track.jobs.is_some() && last_full.elapsed() < full_resync =>
            {
                let due = history.polls_since_follow.saturating_add(1) >= follow_every;
                let follow = (due && !history.stragglers.is_empty()).then(|| {
                    let statuses: std::collections::BTreeSet<&JobStatus> =
                        history.stragglers.values().map(|j| &j.status).collect();
                    Follow {
                        before: settled,
                        statuses: statuses.into_iter().cloned().collect(),
                        stragglers: history
                            .stragglers
                            .values()
                            .map(|j| (j.id.clone(), j.submitted))
                            .collect(),
                    }
                });
                PollPlan {
                    listing: Listing::SubmittedAfter(settled),
                    follow,
                }
            }
            _ => full,
        }
    }

    /// Merges a full listing of export jobs (see [`Datastore::record_listing`]), with the
    /// default ended-job window.
    pub fn record_success(
        &self,
        jobs: Vec<Job>,
        job_series_limit: usize,
        poll_seconds: f64,
        now: f64,
    ) -> PollOutcome {
        self.record_listing(
            JobKind::Export,
            &PollPlan::FULL,
            jobs,
            None,
            Retention::new(job_series_limit, Retention::DEFAULT_ENDED_WINDOW),
            poll_seconds,
            now,
        )
    }

    /// Merges a successful poll of `kind` jobs made after `plan`: `jobs` from its listing and,
    /// when the plan followed the stragglers, `followed` from those listings. Taken
    /// `poll_seconds` long and ending at `now` (Unix seconds). The result is the same as if every
    /// job had been listed: settled jobs are counted from `settled_counts`, the others from the
    /// listings.
    #[allow(clippy::too_many_arguments)]
    pub fn record_listing(
        &self,
        kind: JobKind,
        plan: &PollPlan,
        jobs: Vec<Job>,
        followed: Option<Vec<Job>>,
        retention: Retention,
        poll_seconds: f64,
        now: f64,
    ) -> PollOutcome {
        let mut record = self.record();
        record.version += 1;
        record
            .track_mut(kind)
            .merge(plan, jobs, followed, retention, poll_seconds, now)
    }

    /// Drops the end-timestamp series of jobs that ended longer ago than the ended-job window, as
    /// of `now`: called when a poll fails, so a failing datastore's old failures still expire.
    pub fn expire_ended(&self, kind: JobKind, now: f64) {
        let mut record = self.record();
        let Some(track) = (match kind {
            JobKind::Export => record.exports.as_mut(),
            JobKind::Import => record.imports.as_mut(),
        }) else {
            return;
        };
        let horizon = now - track.ended_window;
        let Some(view) = track.jobs.as_mut() else {
            return;
        };
        let before = view.ended.len();
        view.ended.retain(|e| e.ended > horizon);
        if view.ended.len() != before {
            record.version += 1;
        }
    }

    /// Records a successful `DescribeFHIRDatastore`. Returns whether the datastore was not up.
    pub fn record_description(&self, info: DatastoreInfo, poll_seconds: f64, now: f64) -> bool {
        let mut record = self.record();
        record.version += 1;
        let health = record.health_mut(Feed::Datastore);
        let recovered = !health.up;
        health.succeeded(poll_seconds, now);
        if let Some(track) = record.datastore.as_mut() {
            track.info = Some(info);
        }
        recovered
    }

    /// Records a failed poll of `feed`: health only, data untouched. Returns whether this is news
    /// (the feed was up, never polled, or failing for another reason) so the poller logs once per
    /// change rather than once per poll.
    pub fn record_failure(&self, feed: Feed, error: &PollError, poll_seconds: f64) -> bool {
        let mut record = self.record();
        record.version += 1;
        record.health_mut(feed).failed(error, poll_seconds)
    }
}

impl Health {
    fn succeeded(&mut self, poll_seconds: f64, now: f64) {
        self.up = true;
        self.attempts += 1;
        self.last_poll_seconds = Some(poll_seconds);
        self.last_success = Some(now);
        self.last_error = None;
        self.consecutive_failures = 0;
    }

    fn failed(&mut self, error: &PollError, poll_seconds: f64) -> bool {
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

/// Whether `job`, last known in status `before` (if known at all), is to be counted as having
/// entered its terminal status now: at most once per id and terminal status.
fn counts_as_finished(job: &Job, before: Option<&JobStatus>, first_success: bool) -> bool {
    job.status.is_terminal() && before != Some(&job.status) && !first_success
}

/// The recently ended jobs being rebuilt by one merge.
struct EndedUpdate {
    by_id: HashMap<String, EndedJob>,
    horizon: f64,
    now: f64,
    first_success: bool,
}

impl EndedUpdate {
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

    fn finish(self) -> Vec<EndedJob> {
        let horizon = self.horizon;
        let mut ended: Vec<EndedJob> = self
            .by_id
            .into_values()
            .filter(|e| e.ended > horizon)
            .collect();
        ended.sort_unstable_by(|a, b| b.ended.total_cmp(&a.ended).then_with(|| a.id.cmp(&b.id)));
        ended.truncate(MAX_ENDED_JOBS);
        ended.shrink_to_fit();
        ended
    }
}

impl JobTrack {
    fn merge(
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
        self.ended_window = retention.ended_window;
        let job_series_limit = retention.job_series_limit;
        let jobs = dedup(jobs);
        let (old_recent, old_ended) = self
            .jobs
            .take()
            .map(|v| (v.recent, v.ended))
            .unwrap_or_default();
        let mut ended = EndedUpdate {
            by_id: old_ended.into_iter().map(|e| (e.id.clone(), e)).collect(),
            horizon: now - retention.ended_window,
            now,
            first_success,
        };
        let history = &mut self.history;
        let old_window = std::mem::take(&mut history.window);
        let old_stragglers = std::mem::take(&mut history.stragglers);
        let mut finished: Vec<(String, JobStatus)> = Vec::new();
        // Finished jobs counted by number only (settled jobs seen in a full listing), by status.
        let mut unnamed: BTreeMap<JobStatus, u64> = BTreeMap::new();
        let before_of = |history: &History, id: &str| -> Option<JobStatus> {
            old_window
                .get(id)
                .or_else(|| old_stragglers.get(id))
                .map(|j| j.status.clone())
                .or_else(|| history.known_status(id).cloned())
        };

        let mut recent: Vec<Job>;
        match plan.listing {
            Listing::Full => {
                // Only the newest `job_series_limit` jobs are kept for their series: sort
                // references and copy those, not the whole history.
                let mut newest: Vec<&Job> = jobs.iter().collect();
                newest.sort_unstable_by(|a, b| newest_first(a, b));
                newest.truncate(job_series_limit);
                recent = newest.into_iter().cloned().collect();

                let settled = history.settled;
                let mut settled_seen: BTreeMap<JobStatus, u64> = BTreeMap::new();
                let mut window = HashMap::new();
                let mut stragglers = HashMap::new();
                for job in jobs {
                    let before = before_of(history, &job.id);
                    if before.is_some() {
                        history.gone.remove(&job.id);
                    }
                    if settled.is_some_and(|s| job.submitted <= s) {
                        if !job.status.is_terminal() {
                            stragglers.insert(job.id.clone(), job);
                            continue;
                        }
                        // A straggler that finished is counted by id; any other settled job
                        // only as a number beyond those already accounted for.
                        let counted = before.is_some()
                            && counts_as_finished(&job, before.as_ref(), first_success);
                        if counted {
                            finished.push((job.id.clone(), job.status.clone()));
                        }
                        if before.is_some() {
                            *history.settled_known.entry(job.status.clone()).or_insert(0) += 1;
                        }
                        ended.note(&job, counted);
                        *settled_seen.entry(job.status.clone()).or_insert(0) += 1;
                    } else {
                        let counted = counts_as_finished(&job, before.as_ref(), first_success);
                        if counted {
                            finished.push((job.id.clone(), job.status.clone()));
                        }
                        ended.note(&job, counted);
                        window.insert(job.id.clone(), job);
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
                for (id, job) in &old_window {
                    if job.status.is_terminal() && !window.contains_key(id) {
                        history
                            .gone
                            .insert(id.clone(), (job.status.clone(), job.submitted));
                    }
                }
                history.window = window;
                history.stragglers = stragglers;
                history.last_full = Some(Instant::now());
                history.polls_since_follow = 0;
            }
            Listing::SubmittedAfter(after) => {
                let mut window = HashMap::with_capacity(jobs.len());
                // A server may include the boundary (or we asked a little early): settled jobs
                // are already counted.
                for job in jobs.into_iter().filter(|j| j.submitted > after) {
                    let before = before_of(history, &job.id);
                    history.gone.remove(&job.id);
                    let counted = counts_as_finished(&job, before.as_ref(), first_success);
                    if counted {
                        finished.push((job.id.clone(), job.status.clone()));
                    }
                    ended.note(&job, counted);
                    window.insert(job.id.clone(), job);
                }
                // Finished jobs of the old window missing now: remembered until they settle.
                for (id, job) in &old_window {
                    if job.status.is_terminal() && !window.contains_key(id) {
                        history
                            .gone
                            .insert(id.clone(), (job.status.clone(), job.submitted));
                    }
                }
                let mut stragglers_done: Vec<Job> = Vec::new();
                let stragglers = match (&plan.follow, followed) {
                    (Some(follow), Some(found)) => {
                        let mut kept: HashMap<String, Job> = HashMap::new();
                        for job in dedup(found)
                            .into_iter()
                            .filter(|j| j.submitted <= follow.before)
                        {
                            match old_stragglers.get(&job.id) {
                                Some(before) if job.status.is_terminal() => {
                                    let counted = counts_as_finished(
                                        &job,
                                        Some(&before.status),
                                        first_success,
                                    );
                                    if counted {
                                        finished.push((job.id.clone(), job.status.clone()));
                                    }
                                    ended.note(&job, counted);
                                    for counts in
                                        [&mut history.settled_counts, &mut history.settled_known]
                                    {
                                        *counts.entry(job.status.clone()).or_insert(0) += 1;
                                    }
                                    stragglers_done.push(job);
                                }
                                // Still unfinished, or unfinished and listed late: followed.
                                _ if !job.status.is_terminal() => {
                                    kept.insert(job.id.clone(), job);
                                }
                                // Settled history, already counted.
                                _ => {}
                            }
                        }
                        // A straggler no listing returned any more has vanished from HealthLake.
                        history.polls_since_follow = 0;
                        kept
                    }
                    _ => {
                        history.polls_since_follow = history.polls_since_follow.saturating_add(1);
                        old_stragglers.clone()
                    }
                };
                // The newest jobs: settled ones from before, plus the window and the stragglers as
                // known now.
                recent = old_recent
                    .into_iter()
                    .filter(|j| {
                        !old_window.contains_key(&j.id)
                            && !window.contains_key(&j.id)
                            && !old_stragglers.contains_key(&j.id)
                            && !stragglers.contains_key(&j.id)
                    })
                    .collect();
                recent.extend(window.values().cloned());
                recent.extend(stragglers.values().cloned());
                recent.extend(stragglers_done);
                history.window = window;
                history.stragglers = stragglers;
            }
        }
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
            .chain(history.stragglers.values())
            .filter(|j| j.is_active())
            .map(|j| j.submitted)
            .min_by(f64::total_cmp);
        let mut counts: BTreeMap<JobStatus, u64> =
            JobStatus::KNOWN.iter().map(|s| (s.clone(), 0)).collect();
        for (status, n) in &history.settled_counts {
            *counts.entry(status.clone()).or_insert(0) += n;
        }
        for job in history.window.values().chain(history.stragglers.values()) {
            *counts.entry(job.status.clone()).or_insert(0) += 1;
        }
        counts.retain(|status, n| *n > 0 || !matches!(status, JobStatus::Unknown(_)));

        recent.sort_unstable_by(newest_first);
        recent.truncate(job_series_limit);
        recent.shrink_to_fit();

        self.jobs = Some(JobsView {
            counts,
            recent,
            oldest_active_submitted: oldest_active,
            ended: ended.finish(),
        });
        self.health.succeeded(poll_seconds, now);
        PollOutcome {
            recovered,
            finished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn state() -> State {
        let config = Config::parse("[[datastores]]\nid = \"ds\"\n", Path::new("t.toml")).unwrap();
        State::new(&config, 0.0)
    }

    fn job(id: &str, status: &str, submitted: f64) -> Job {
        let status = JobStatus::parse(status);
        let ended = status.is_terminal().then_some(submitted + 10.0);
        Job {
            id: id.into(),
            name: None,
            status,
            submitted,
            ended,
            progress: None,
        }
    }

    #[test]
    fn counts_every_known_status_and_keeps_unknown_ones() {
        let state = state();
        let datastores = state.datastores();
        let ds = &datastores[0];
        ds.record_success(
            vec![
                job("a", "COMPLETED", 1.0),
                job("b", "COMPLETED", 2.0),
                job("c", "ARCHIVED", 3.0),
                job("d", "IN_PROGRESS", 4.0),
            ],
            100,
            0.1,
            50.0,
        );
        let record = ds.record();
        let view = record.exports.as_ref().unwrap().jobs.as_ref().unwrap();
        assert_eq!(view.counts.len(), 11);
        assert_eq!(view.counts[&JobStatus::Completed], 2);
        assert_eq!(view.counts[&JobStatus::Failed], 0);
        assert_eq!(view.counts[&JobStatus::Unknown("ARCHIVED".into())], 1);
        // ARCHIVED has no end time and is not terminal, so it counts as active: the oldest.
        assert_eq!(view.oldest_active_submitted, Some(3.0));
    }

    #[test]
    fn finished_counts_only_transitions_after_the_first_success() {
        let state = state();
        let datastores = state.datastores();
        let ds = &datastores[0];
        let first = ds.record_success(
            vec![
                job("old-fail", "FAILED", 1.0),
                job("run", "IN_PROGRESS", 2.0),
            ],
            100,
            0.1,
            10.0,
        );
        assert!(first.recovered);
        assert!(first.finished.is_empty());
        assert_eq!(
            ds.record().exports.as_ref().unwrap().finished[&JobStatus::Failed],
            0
        );
        assert_eq!(ds.record().exports.as_ref().unwrap().finished.len(), 5);

        let second = ds.record_success(
            vec![
                job("old-fail", "FAILED", 1.0),
                job("run", "FAILED", 2.0),
                job("late", "COMPLETED", 0.5),
            ],
            100,
            0.1,
            20.0,
        );
        assert!(!second.recovered);
        assert_eq!(
            second.finished,
            vec![
                ("run".to_string(), JobStatus::Failed),
                ("late".to_string(), JobStatus::Completed)
            ]
        );
        // The same listing again changes nothing.
        let third = ds.record_success(
            vec![
                job("old-fail", "FAILED", 1.0),
                job("run", "FAILED", 2.0),
                job("late", "COMPLETED", 0.5),
            ],
            100,
            0.1,
            30.0,
        );
        assert!(third.finished.is_empty());
        let record = ds.record();
        assert_eq!(
            record.exports.as_ref().unwrap().finished[&JobStatus::Failed],
            1
        );
        assert_eq!(
            record.exports.as_ref().unwrap().finished[&JobStatus::Completed],
            1
        );
        assert_eq!(
            record
                .exports
                .as_ref()
                .unwrap()
                .jobs
                .as_ref()
                .unwrap()
                .oldest_active_submitted,
            None
        );
    }

    fn ended_ids(ds: &Datastore) -> Vec<(String, f64)> {
        let record = ds.record();
        let view = record.exports.as_ref().unwrap().jobs.as_ref().unwrap();
        view.ended.iter().map(|e| (e.id.clone(), e.ended)).collect()
    }

    #[test]
    fn ended_series_follow_end_time_within_the_window() {
        let state = state();
        let datastores = state.datastores();
        let ds = &datastores[0];
        let now = 100_000.0;
        let mut no_end = job("no-end-old", "FAILED", now - 7200.0);
        no_end.ended = None;
        let mut no_end_new = job("no-end-new", "FAILED", now - 60.0);
        no_end_new.ended = None;
        // At the first poll: only failures that ended within the hour; without EndTime, the
        // submit time stands in, so an old one pages nothing.
        ds.record_success(
            vec![
                job("old-fail", "FAILED", now - 7200.0),
                job("recent-fail", "FAILED", now - 600.0),
                job("recent-ok", "COMPLETED", now - 600.0),
                job("cwe", "COMPLETED_WITH_ERRORS", now - 300.0),
                no_end,
                no_end_new,
                job("run", "IN_PROGRESS", now - 100.0),
            ],
            100,
            0.1,
            now,
        );
        assert_eq!(
            ended_ids(ds),
            [
                ("no-end-new".to_string(), now - 60.0),
                ("cwe".to_string(), now - 290.0),
                ("recent-fail".to_string(), now - 590.0)
            ]
        );
        // `run` fails without an EndTime: it ended when first seen so.
        let mut failed = job("run", "FAILED", now - 100.0);
        failed.ended = None;
        ds.record_success(vec![failed.clone()], 100, 0.1, now + 60.0);
        assert!(ended_ids(ds).contains(&("run".to_string(), now + 60.0)));
        // Listed again later, it keeps that time; the others expire an hour after their end.
        ds.record_success(vec![failed], 100, 0.1, now + 3400.0);
        assert_eq!(
            ended_ids(ds),
            [("run".to_string(), now + 60.0), ("no-end-new".to_string(), now - 60.0)]
        );
        // A failed poll expires them too.
        ds.expire_ended(JobKind::Export, now + 3700.0);
        assert!(ended_ids(ds).is_empty());
    }

    #[test]
    fn a_job_listed_twice_or_missing_once_is_counted_once() {
        let state = state();
        let datastores = state.datastores();
        let ds = &datastores[0];
        ds.record_success(vec![job("a", "IN_PROGRESS", 1.0)], 100, 0.1, 10.0);
        let failed = ds.record_success(
            vec![job("a", "IN_PROGRESS", 1.0), job("a", "FAILED", 1.0)],
            100,
            0.1,
            20.0,
        );
        assert_eq!(failed.finished, [("a".to_string(), JobStatus::Failed)]);
        assert!(ds.record_success(vec![], 100, 0.1, 30.0).finished.is_empty());
        let back = ds.record_success(vec![job("a", "FAILED", 1.0)], 100, 0.1, 40.0);
        assert!(back.finished.is_empty(), "{back:?}");
        let record = ds.record();
        let track = record.exports.as_ref().unwrap();
        assert_eq!(track.finished[&JobStatus::Failed], 1);
        assert_eq!(track.jobs.as_ref().unwrap().counts[&JobStatus::Failed], 1);
    }

    #[test]
    fn recent_keeps_the_newest_jobs_up_to_the_limit() {
        let state = state();
        let datastores = state.datastores();
        let ds = &datastores[0];
        let jobs = (0..10)
            .map(|i| job(&format!("j{i}"), "COMPLETED", i as f64))
            .collect();
        ds.record_success(jobs, 3, 0.1, 10.0);
        let ids: Vec<String> = ds
            .record()
            .exports
            .as_ref()
            .unwrap()
            .jobs
            .as_ref()
            .unwrap()
            .recent
            .iter()
            .map(|j| j.id.clone())
            .collect();
        assert_eq!(ids, ["j9", "j8", "j7"]);
    }

    #[test]
    fn a_failure_keeps_job_data_and_reports_news_once_per_change() {
        let state = state();
        let datastores = state.datastores();
        let ds = &datastores[0];
        assert!(!state.first_cycle_attempted());
        ds.record_success(vec![job("a", "COMPLETED", 1.0)], 100, 0.1, 10.0);
        assert!(state.first_cycle_attempted());
        let before = ds.record().exports.as_ref().unwrap().jobs.clone();

        let throttled = PollError::new(ErrorReason::Throttled, "slow down");
        assert!(ds.record_failure(Feed::EXPORTS, &throttled, 0.2));
        assert!(!ds.record_failure(Feed::EXPORTS, &throttled, 0.2));
        assert!(ds.record_failure(
            Feed::EXPORTS,
            &PollError::new(ErrorReason::Timeout, "t"),
            30.0
        ));
        let guard = ds.record();
        let record = guard.exports.as_ref().unwrap();
        assert_eq!(record.jobs, before);
        assert!(!record.health.up);
        assert_eq!(record.health.errors[&ErrorReason::Throttled], 2);
        assert_eq!(record.health.errors[&ErrorReason::Timeout], 1);
        assert_eq!(record.health.errors[&ErrorReason::Network], 0);
        assert_eq!(record.health.last_success, Some(10.0));
        assert_eq!(record.health.consecutive_failures, 3);
        drop(guard);
        assert!(ds.record_success(vec![], 100, 0.1, 40.0).recovered);
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_reload_keeps_records_of_kept_datastores_and_drops_removed_ones() {
        let first = Config::parse(
            "[[datastores]]\nid = \"keep\"\n[[datastores]]\nid = \"drop\"\n[[datastores]]\nid = \"same\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let state = State::new(&first, 1.0);
        for ds in state.datastores().iter() {
            ds.record_success(Vec::new(), 10, 0.1, 5.0);
        }
        let same_before = Arc::clone(&state.datastores()[2]);

        let second = Config::parse(
            "[[datastores]]\nid = \"new\"\n[[datastores]]\nid = \"keep\"\nname = \"renamed\"\n[[datastores]]\nid = \"same\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        state.apply(&second);
        let now = state.datastores();
        let ids: Vec<&str> = now.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["new", "keep", "same"]);
        assert_eq!(now[1].name, "renamed");
        assert_eq!(
            now[1].record().health(Feed::EXPORTS).unwrap().last_success,
            Some(5.0)
        );
        assert!(
            Arc::ptr_eq(&now[2], &same_before),
            "an unchanged datastore is the same entry"
        );
        assert_eq!(now[0].record().attempts(Feed::EXPORTS), 0);
        assert_eq!(
            now[0].record().health(Feed::EXPORTS).unwrap().errors.len(),
            ErrorReason::ALL.len()
        );
    }
}
