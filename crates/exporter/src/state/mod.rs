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

mod health;
mod history;
mod readiness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crate::model::{DatastoreInfo, ErrorReason, Job, JobKind, JobKinds, JobNameLabel, PollError};

pub use health::Health;
use readiness::Readiness;
mod events;
pub use events::{plausible_event_time, EventStats, ReceiveTimes, MAX_EVENT_TIME_AHEAD};
pub use history::{
    EndedJob, Follow, JobTrack, JobsView, Listing, PollOutcome, PollPlan, Retention,
    ALERTED_STATUSES, FOLLOW_EVERY, LATE_JOB_LIMIT, LATE_JOB_WINDOW, MAX_ENDED_JOBS,
};

/// What one poll of a job list returned: the main listing and, when the poll followed the old
/// unfinished jobs, what those listings returned.
#[derive(Debug, Default)]
pub struct Listed {
    pub jobs: Vec<Job>,
    pub followed: Option<Vec<Job>>,
}

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
    /// The event path's counters, created once and kept across `[events]` reloads (pollers hold
    /// them); shown while `events_enabled`.
    events: RwLock<Option<Arc<EventStats>>>,
    /// `[events]` is configured: the `healthlake_events_…` families are written.
    events_enabled: AtomicBool,
    certificate: CertificateStatus,
    /// `/readyz`: a latch that closes once (see [`Readiness`]).
    readiness: Readiness,
}

/// Whether the last load of the TLS certificate files worked (absent without TLS).
#[derive(Debug, Default)]
pub struct CertificateStatus {
    /// 0: no TLS; 1: the last load failed (the previous certificate stays in service); 2: it worked.
    value: std::sync::atomic::AtomicU8,
}

impl CertificateStatus {
    pub fn set(&self, loaded: Option<bool>) {
        let value = match loaded {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        self.value.store(value, Ordering::Relaxed);
    }

    /// `None` without TLS, else whether the last load of the files worked.
    pub fn get(&self) -> Option<bool> {
        match self.value.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v == 2),
        }
    }
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
    /// One listing of a feed at a time: a scheduled poll and an event's refresh of the same feed
    /// wait for each other, so an older listing can never be recorded over a newer one.
    feeds: [tokio::sync::Mutex<()>; 3],
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
    /// Export jobs: `feed="export"` in the `healthlake_feed_…` families.
    pub const EXPORTS: Feed = Feed::Jobs(JobKind::Export);
    pub const IMPORTS: Feed = Feed::Jobs(JobKind::Import);

    pub fn operation(self) -> &'static str {
        match self {
            Feed::Jobs(kind) => kind.operation(),
            Feed::Datastore => "DescribeFHIRDatastore",
        }
    }
}

/// What State keeps records for: the datastores and what is polled of each, and the discovery
/// entries. The config module builds it from a `Config` (`impl From<&Config>`), so State never reads
/// the configuration itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// In config order: (id, name, job lists polled).
    pub datastores: Vec<(String, String, JobKinds)>,
    /// `polling.datastore_health`: every datastore's description is polled too.
    pub datastore_health: bool,
    /// Per `[[discovery]]` entry, its region (the `region` label), or "default".
    pub discovery_regions: Vec<String>,
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

    /// The feeds this record polls (job lists, description) that have not had a poll attempted.
    fn first_polls_pending(&self) -> usize {
        let jobs = [&self.exports, &self.imports]
            .into_iter()
            .flatten()
            .filter(|track| track.health.attempts == 0)
            .count();
        let datastore = self
            .datastore
            .as_ref()
            .is_some_and(|d| d.health.attempts == 0);
        jobs + usize::from(datastore)
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

impl State {
    /// The state for a config first loaded at `now` (Unix seconds).
    pub fn new(plan: impl Into<Plan>, now: f64) -> State {
        let plan = plan.into();
        let state = State {
            datastores: RwLock::new(build_datastores(&plan, &[])),
            reload: ReloadStatus::loaded_at(now),
            discovery: Mutex::new(Vec::new()),
            discovery_version: AtomicU64::new(0),
            events: RwLock::new(None),
            events_enabled: AtomicBool::new(false),
            certificate: CertificateStatus::default(),
            readiness: Readiness::default(),
        };
        state.follow_discovery(&plan, false);
        state
    }

    /// Sizes the discovery statuses to `plan`'s entries; entries unchanged since `keep` keep
    /// their status.
    pub(crate) fn follow_discovery(&self, plan: &Plan, keep: bool) {
        // Entries added now must not hold readiness back (see `apply`).
        self.ready();
        let mut statuses = self.discovery.lock().unwrap_or_else(|p| p.into_inner());
        let next = plan
            .discovery_regions
            .iter()
            .enumerate()
            .map(|(index, region)| match statuses.get(index) {
                Some(old) if keep && old.region == *region => old.clone(),
                _ => DiscoveryStatus {
                    index,
                    region: region.clone(),
                    found: 0,
                    health: Health::new(),
                },
            })
            .collect();
        *statuses = next;
        self.discovery_version.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes whenever a discovery status changes.
    pub(crate) fn discovery_version(&self) -> u64 {
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

    /// Switches to a reloaded plan (a `&Config` is one): datastores still listed keep their record (job data,
    /// counters, health), under their new name if it changed; removed ones are dropped with their
    /// series; new ones start empty.
    pub fn apply(&self, plan: impl Into<Plan>) {
        let plan = plan.into();
        // Closes the readiness latch first if every first poll so far was attempted: datastores
        // added from here on only count in `first_polls_pending`, never against readiness.
        self.ready();
        let mut datastores = self.datastores.write().unwrap_or_else(|p| p.into_inner());
        let next = build_datastores(&plan, &datastores);
        *datastores = next;
    }

    pub fn reload_status(&self) -> &ReloadStatus {
        &self.reload
    }

    /// Turns the event path's counters on (idempotent) and returns them. Job changes the pollers
    /// counted while `[events]` was off were announced by no event because there were none: the
    /// count starts from 0 when the families appear.
    pub fn enable_events(&self) -> Arc<EventStats> {
        let stats = self.event_counters();
        if !self.events_enabled.swap(true, Ordering::AcqRel) {
            stats.unannounced_changes.store(0, Ordering::Relaxed);
        }
        stats
    }

    /// Hides the event path's families (a reload removed `[events]`); the counters are kept, and
    /// go on from where they were should `[events]` come back.
    pub fn disable_events(&self) {
        self.events_enabled.store(false, Ordering::Release);
    }

    /// The event path's counters, when `[events]` is configured.
    pub fn event_stats(&self) -> Option<Arc<EventStats>> {
        self.events_enabled
            .load(Ordering::Acquire)
            .then(|| self.event_counters())
    }

    /// The event path's counters, whether `[events]` is configured or not (the pollers count the
    /// job changes no event announced into them from the start, so that `[events]` added by a
    /// reload needs no poller restarted).
    pub fn event_counters(&self) -> Arc<EventStats> {
        if let Some(stats) = &*self.events.read().unwrap_or_else(|p| p.into_inner()) {
            return Arc::clone(stats);
        }
        let mut events = self.events.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(events.get_or_insert_with(Default::default))
    }

    pub fn certificate_status(&self) -> &CertificateStatus {
        &self.certificate
    }

    /// The datastores as of now (a reload may replace the list afterwards).
    pub fn datastores(&self) -> Arc<[Arc<Datastore>]> {
        Arc::clone(&self.datastores.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Makes readiness close `within` from now at the latest, whatever the first polls do (the
    /// supervisor calls it at start with `polling.timeout` + the start spread + 2 s).
    pub fn arm_readiness(&self, within: Duration) {
        self.readiness.arm(within);
    }

    /// `/readyz`: true once every first poll so far was attempted (whatever its outcome) or the
    /// deadline of [`State::arm_readiness`] has passed, and from then on for good. It never
    /// depends on AWS, and nothing after start (reloads, discovery, outages) reopens it, because a
    /// sidecar's readiness gates its whole pod.
    pub fn ready(&self) -> bool {
        self.readiness
            .check(|| self.first_polls_pending(), Instant::now())
    }

    /// How long until readiness closes at the latest (`None`: ready, or no deadline).
    pub fn ready_within(&self) -> Option<Duration> {
        self.readiness.remaining(Instant::now())
    }

    /// First polls not attempted yet: each datastore's feeds (export jobs, import jobs, its
    /// description) and each `[[discovery]]` entry's listing, whatever was added when.
    pub fn first_polls_pending(&self) -> usize {
        let discovery = self
            .discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|d| d.health.attempts == 0)
            .count();
        discovery
            + self
                .datastores()
                .iter()
                .map(|ds| ds.record().first_polls_pending())
                .sum::<usize>()
    }
}

fn build_datastores(plan: &Plan, previous: &[Arc<Datastore>]) -> Arc<[Arc<Datastore>]> {
    let mut old: HashMap<&str, &Arc<Datastore>> =
        previous.iter().map(|d| (d.id.as_str(), d)).collect();
    plan.datastores
        .iter()
        .map(|(id, name, jobs)| {
            let datastore = match old.remove(id.as_str()) {
                Some(kept) if kept.name == *name => Arc::clone(kept),
                Some(renamed) => Arc::new(Datastore {
                    id: id.clone(),
                    name: name.clone(),
                    record: Mutex::new(std::mem::take(&mut *renamed.record())),
                    feeds: Default::default(),
                }),
                None => Arc::new(Datastore {
                    id: id.clone(),
                    name: name.clone(),
                    record: Mutex::new(Record::default()),
                    feeds: Default::default(),
                }),
            };
            datastore.record().follow(*jobs, plan.datastore_health);
            datastore
        })
        .collect()
}

impl Datastore {
    /// Held while `feed` is listed (see the field).
    pub fn feed_lock(&self, feed: Feed) -> &tokio::sync::Mutex<()> {
        &self.feeds[match feed {
            Feed::Jobs(JobKind::Export) => 0,
            Feed::Jobs(JobKind::Import) => 1,
            Feed::Datastore => 2,
        }]
    }

    /// Locks the record. A poisoned lock (a panic elsewhere while holding it) still yields the data:
    /// a scrape must keep answering.
    pub fn record(&self) -> MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that a poll of `feed` starts now.
    pub(crate) fn record_attempt_start(&self, feed: Feed) {
        self.record().health_mut(feed).last_attempt = Some(Instant::now());
    }

    /// What the next poll of `kind` should list: everything on the first poll and once
    /// `full_resync` has passed since the last full listing, otherwise only unsettled jobs; and,
    /// every `follow_every` polls, the old unfinished jobs too.
    pub fn next_poll(&self, kind: JobKind, full_resync: Duration, follow_every: u32) -> PollPlan {
        // FNV-1a of the id: a phase that differs between datastores and stays across restarts.
        let spread = self.id.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        let record = self.record();
        record.track(kind).map_or(PollPlan::FULL, |track| {
            track.next_poll(full_resync, follow_every, spread)
        })
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
            Listed {
                jobs,
                followed: None,
            },
            Retention::new(job_series_limit, Retention::DEFAULT_ENDED_WINDOW),
            poll_seconds,
            now,
        )
    }

    /// Merges a successful poll of `kind` jobs made after `plan`, taken `poll_seconds` long and
    /// ending at `now` (Unix seconds). The result is the same as if every job had been listed:
    /// settled jobs are counted from the settled counts, the others from the listings.
    pub fn record_listing(
        &self,
        kind: JobKind,
        plan: &PollPlan,
        listed: Listed,
        retention: Retention,
        poll_seconds: f64,
        now: f64,
    ) -> PollOutcome {
        let mut record = self.record();
        record.version += 1;
        record.track_mut(kind).merge(
            plan,
            listed.jobs,
            listed.followed,
            retention,
            poll_seconds,
            now,
        )
    }

    /// Drops the end-timestamp series of `kind` jobs that ended longer ago than `ended_window`
    /// seconds (`polling.ended_job_window`), as of `now`: called when a poll fails, so a failing
    /// datastore's old failures still expire.
    pub fn expire_ended(&self, kind: JobKind, now: f64, ended_window: f64) {
        let mut record = self.record();
        let expired = match kind {
            JobKind::Export => record.exports.as_mut(),
            JobKind::Import => record.imports.as_mut(),
        }
        .is_some_and(|track| track.expire_ended(now, ended_window));
        if expired {
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

    /// Marks `feed` down when it is up but its last success is older than `stale_after` before
    /// `now` (Unix seconds): data is stale only if the exporter says so. (A feed that never
    /// succeeded is down already.) Returns whether it just went stale.
    pub fn check_stale(&self, feed: Feed, stale_after: Duration, now: f64) -> bool {
        let mut record = self.record();
        let Some(health) = record.health(feed) else {
            return false;
        };
        let Some(last) = health.last_success else {
            return false;
        };
        if !health.up || now - last <= stale_after.as_secs_f64() {
            return false;
        }
        record.version += 1;
        let health = record.health_mut(feed);
        health.up = false;
        *health.errors.entry(ErrorReason::Stale).or_insert(0) += 1;
        health.last_error = Some(PollError::new(
            ErrorReason::Stale,
            format!(
                "no successful poll for {} (2 x interval + timeout)",
                humantime::format_duration(Duration::from_secs(stale_after.as_secs()))
            ),
        ));
        true
    }

    /// Sets what the `job_name` label of `kind` jobs carries, before a listing is merged (so that
    /// no scrape ever sees names under the wrong setting).
    pub fn set_job_name_label(&self, kind: JobKind, label: JobNameLabel) {
        let mut record = self.record();
        if record
            .track(kind)
            .is_some_and(|t| t.job_name_label != label)
        {
            record.version += 1;
            record.track_mut(kind).job_name_label = label;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::{ErrorReason, JobStatus};
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
    fn a_feed_without_a_success_for_too_long_goes_down_once() {
        let state = state();
        let datastores = state.datastores();
        let ds = &datastores[0];
        let limit = Duration::from_secs(150);
        ds.record_success(vec![job("a", "COMPLETED", 1.0)], 100, 0.1, 1000.0);
        assert!(!ds.check_stale(Feed::EXPORTS, limit, 1150.0), "not yet");
        assert!(ds.record().health(Feed::EXPORTS).unwrap().up);
        let version = ds.record().version;
        assert!(ds.check_stale(Feed::EXPORTS, limit, 1150.5));
        assert!(
            !ds.check_stale(Feed::EXPORTS, limit, 1200.0),
            "counted once"
        );
        let record = ds.record();
        let health = record.health(Feed::EXPORTS).unwrap();
        assert!(!health.up);
        assert_eq!(health.errors[&ErrorReason::Stale], 1);
        assert_eq!(
            health.last_error.as_ref().unwrap().reason,
            ErrorReason::Stale
        );
        assert!(
            record.version > version,
            "the metrics cache sees the change"
        );
        assert!(record.exports.as_ref().unwrap().jobs.is_some(), "data kept");
        drop(record);
        // Not polled at all: nothing to mark.
        assert!(!ds.check_stale(Feed::IMPORTS, limit, 99_999.0));
    }

    #[test]
    fn unknown_statuses_beyond_ten_fold_into_one() {
        let state = state();
        let datastores = state.datastores();
        let ds = &datastores[0];
        let jobs = (0..25)
            .map(|n| job(&format!("j{n}"), &format!("NEW_{n:02}"), f64::from(n)))
            .collect();
        ds.record_success(jobs, 100, 0.1, 10.0);
        let record = ds.record();
        let counts = &record
            .exports
            .as_ref()
            .unwrap()
            .jobs
            .as_ref()
            .unwrap()
            .counts;
        let unknown: Vec<&str> = counts
            .keys()
            .filter(|s| matches!(s, JobStatus::Unknown(_)))
            .map(JobStatus::as_str)
            .collect();
        assert_eq!(unknown.len(), 11, "{unknown:?}");
        assert_eq!(counts[&JobStatus::Unknown("OTHER_UNKNOWN".into())], 15);
        assert_eq!(counts[&JobStatus::Unknown("NEW_00".into())], 1);
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
            [
                ("run".to_string(), now + 60.0),
                ("no-end-new".to_string(), now - 60.0)
            ]
        );
        // A failed poll expires them too.
        ds.expire_ended(JobKind::Export, now + 3700.0, 3600.0);
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
        assert!(ds
            .record_success(vec![], 100, 0.1, 30.0)
            .finished
            .is_empty());
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
            .map(|j| j.id().to_owned())
            .collect();
        assert_eq!(ids, ["j9", "j8", "j7"]);
    }

    /// `[events]` removed by a reload hides the event families; added again, the same counters
    /// show, with the job changes counted while it was off forgotten.
    #[test]
    fn event_counters_survive_events_being_switched_off_and_on() {
        let state = state();
        assert!(state.event_stats().is_none());
        state
            .event_counters()
            .unannounced_changes
            .fetch_add(5, Ordering::Relaxed);
        let stats = state.enable_events();
        assert_eq!(stats.unannounced_changes.load(Ordering::Relaxed), 0);
        stats.received.fetch_add(3, Ordering::Relaxed);
        state.disable_events();
        assert!(state.event_stats().is_none());
        let again = state.enable_events();
        assert!(Arc::ptr_eq(&stats, &again));
        assert_eq!(again.received.load(Ordering::Relaxed), 3);
        assert!(state.event_stats().is_some());
    }

    /// Datastores added after every first poll was attempted never reopen readiness, even when
    /// nobody asked `/readyz` in between; they count as pending first polls until polled.
    #[test]
    fn readiness_latches_before_a_plan_adds_datastores() {
        let state = state();
        state.arm_readiness(Duration::from_secs(3600));
        state.datastores()[0].record_success(Vec::new(), 100, 0.1, 10.0);
        let plan = |n: usize| Plan {
            datastores: (0..n)
                .map(|i| (format!("ds{i}"), format!("ds{i}"), JobKinds::default()))
                .collect(),
            datastore_health: true,
            discovery_regions: vec!["default".to_owned()],
        };
        state.apply(plan(51));
        state.follow_discovery(&plan(51), true);
        assert_eq!(state.first_polls_pending(), 51 * 2 + 1);
        assert!(state.ready());
        assert_eq!(state.ready_within(), None);
    }

    #[test]
    fn a_failure_keeps_job_data_and_reports_news_once_per_change() {
        let state = state();
        let datastores = state.datastores();
        let ds = &datastores[0];
        assert!(!state.ready());
        assert_eq!(state.first_polls_pending(), 1);
        ds.record_success(vec![job("a", "COMPLETED", 1.0)], 100, 0.1, 10.0);
        assert_eq!(state.first_polls_pending(), 0);
        assert!(state.ready());
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

    /// Datastores follow their old unfinished jobs in different polls (a phase from their id), each
    /// within `FOLLOW_EVERY` polls of its full listing and every `FOLLOW_EVERY` polls after.
    #[test]
    fn follow_ups_are_spread_over_the_polls_by_datastore() {
        let text: String = (0..16)
            .map(|n| format!("[[datastores]]\nid = \"datastore-{n}\"\n"))
            .collect();
        let config = Config::parse(&text, Path::new("t.toml")).unwrap();
        let state = State::new(&config, 0.0);
        let newest = job("newest", "COMPLETED", 100_000.0);
        let retention = Retention::new(100, 3600.0);
        let hour = Duration::from_secs(3600);
        let mut first_follow_ups = std::collections::BTreeSet::new();
        for ds in state.datastores().iter() {
            let plan = ds.next_poll(JobKind::Export, hour, FOLLOW_EVERY);
            assert_eq!(plan.listing, Listing::Full);
            let jobs = vec![job("stuck", "IN_PROGRESS", 1.0), newest.clone()];
            ds.record_listing(
                JobKind::Export,
                &plan,
                Listed {
                    jobs,
                    followed: None,
                },
                retention,
                0.1,
                1e5,
            );
            let mut follow_ups = Vec::new();
            for poll in 1..=20 {
                let plan = ds.next_poll(JobKind::Export, hour, FOLLOW_EVERY);
                assert!(matches!(plan.listing, Listing::SubmittedAfter(_)));
                let followed = plan.follow.as_ref().map(|_| {
                    follow_ups.push(poll);
                    vec![job("stuck", "IN_PROGRESS", 1.0)]
                });
                let listed = Listed {
                    jobs: vec![newest.clone()],
                    followed,
                };
                ds.record_listing(JobKind::Export, &plan, listed, retention, 0.1, 1e5);
            }
            let first = follow_ups[0];
            assert!(
                (1..=FOLLOW_EVERY).contains(&first),
                "{}: {follow_ups:?}",
                ds.id
            );
            assert!(
                follow_ups.windows(2).all(|w| w[1] - w[0] == FOLLOW_EVERY),
                "{follow_ups:?}"
            );
            first_follow_ups.insert(first);
        }
        assert!(
            first_follow_ups.len() >= 4,
            "16 datastores in {first_follow_ups:?}"
        );
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;
    use crate::config::Config;
    use crate::model::ErrorReason;
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
