//! What the exporter knows about each datastore: the single source of truth for `/metrics`.
//!
//! The poller writes a datastore's entry after each poll; the metrics encoder only reads. A failed
//! poll changes a datastore's health, never its job data: last-known values stay until a later poll
//! succeeds, so a flaky API never blanks a series or flaps an alert.
//!
//! Memory follows what is shown, not the history: per datastore the counts per status, the jobs
//! submitted inside a short window (the only ones a listing can still change) and the
//! `job_series_limit` newest jobs. Jobs older than the window are finished for good and live on
//! only as counts, which is also what lets the poller list just the window (see [`PollPlan`]), and
//! a listing is merged page by page ([`ListingMerge`]), so no poll holds a whole listing.
//!
//! The parts: `datastore` (a datastore's [`Record`], one entry per [`Feed`]), `feed` (a job feed:
//! its [`JobSummary`], finished counters, health), `history` (the settled history and the
//! [`PollPlan`]), `merge` (a listing staged page by page and committed), `health` (how polling a
//! feed goes), `events` (the event path's counters), `readiness` (the `/readyz` latch),
//! `certificate` (the TLS files' last load).

mod certificate;
mod datastore;
mod events;
mod feed;
mod finished;
mod health;
mod history;
mod merge;
#[cfg(test)]
mod merge_equivalence;
mod readiness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::model::{JobKinds, PollError};

pub use certificate::CertificateStatus;
#[cfg(any(test, feature = "test-support"))]
pub use datastore::Listed;
pub use datastore::{Datastore, DatastoreFeed, Feed, Record};
pub use events::{plausible_event_time, EventStats, ReceiveTimes, MAX_EVENT_TIME_AHEAD};
pub use feed::{
    EndedJob, FinishedJob, JobFeed, JobSummary, PollOutcome, Retention, ALERTED_STATUSES,
    MAX_ENDED_JOBS,
};
pub use health::Health;
pub use history::{
    Follow, History, Listing, PollPlan, FOLLOW_EVERY, LATE_JOB_LIMIT, LATE_JOB_WINDOW,
};
pub use merge::ListingMerge;
use readiness::Readiness;

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

/// What State keeps records for: the datastores and the feeds polled of each, and the discovery
/// entries. The config module builds it from a `Config` (`impl From<&Config>`), so that State
/// never reads the configuration itself (and the configuration may import `web` without a cycle).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Roster {
    /// In config order: (id, name, job lists polled).
    pub datastores: Vec<(String, String, JobKinds)>,
    /// `polling.datastore_health`: every datastore's description is polled too.
    pub datastore_health: bool,
    /// Per `[[discovery]]` entry, its region (the `region` label), or "default".
    pub discovery_regions: Vec<String>,
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

impl State {
    /// The state for a config first loaded at `now` (Unix seconds).
    pub fn new(roster: impl Into<Roster>, now: f64) -> State {
        let roster = roster.into();
        let state = State {
            datastores: RwLock::new(build_datastores(&roster, &[])),
            reload: ReloadStatus::loaded_at(now),
            discovery: Mutex::new(Vec::new()),
            discovery_version: AtomicU64::new(0),
            events: RwLock::new(None),
            events_enabled: AtomicBool::new(false),
            certificate: CertificateStatus::default(),
            readiness: Readiness::default(),
        };
        state.follow_discovery(&roster, false);
        state
    }

    /// Sizes the discovery statuses to `roster`'s entries; entries unchanged since `keep` keep
    /// their status.
    pub(crate) fn follow_discovery(&self, roster: &Roster, keep: bool) {
        // Entries added now must not hold readiness back (see `apply`).
        self.ready();
        let mut statuses = self.discovery.lock().unwrap_or_else(|p| p.into_inner());
        let next = roster
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

    /// Switches to a reloaded roster (a `&Config` gives one): datastores still listed keep their record (job data,
    /// counters, health), under their new name if it changed; removed ones are dropped with their
    /// series; new ones start empty.
    pub fn apply(&self, roster: impl Into<Roster>) {
        let roster = roster.into();
        // Closes the readiness latch first if every first poll so far was attempted: datastores
        // added from here on only count in `first_polls_pending`, never against readiness.
        self.ready();
        let mut datastores = self.datastores.write().unwrap_or_else(|p| p.into_inner());
        let next = build_datastores(&roster, &datastores);
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
    #[cfg(any(test, feature = "test-support"))]
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

fn build_datastores(roster: &Roster, previous: &[Arc<Datastore>]) -> Arc<[Arc<Datastore>]> {
    let mut old: HashMap<&str, &Arc<Datastore>> =
        previous.iter().map(|d| (d.id.as_str(), d)).collect();
    roster
        .datastores
        .iter()
        .map(|(id, name, jobs)| {
            let datastore = match old.remove(id.as_str()) {
                Some(kept) if kept.name == *name => Arc::clone(kept),
                Some(renamed) => Arc::new(Datastore::new(
                    id.clone(),
                    name.clone(),
                    std::mem::take(&mut *renamed.record()),
                )),
                None => Arc::new(Datastore::new(id.clone(), name.clone(), Record::default())),
            };
            datastore.record().follow(*jobs, roster.datastore_health);
            datastore
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn state() -> State {
        let config = Config::parse("[[datastores]]\nid = \"ds\"\n", Path::new("t.toml")).unwrap();
        State::new(&config, 0.0)
    }

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
    fn readiness_latches_before_a_roster_adds_datastores() {
        let state = state();
        state.arm_readiness(Duration::from_secs(3600));
        state.datastores()[0].record_success(Vec::new(), 100, 0.1, 10.0);
        let roster = |n: usize| Roster {
            datastores: (0..n)
                .map(|i| (format!("ds{i}"), format!("ds{i}"), JobKinds::default()))
                .collect(),
            datastore_health: true,
            discovery_regions: vec!["default".to_owned()],
        };
        state.apply(roster(51));
        state.follow_discovery(&roster(51), true);
        assert_eq!(state.first_polls_pending(), 51 * 2 + 1);
        assert!(state.ready());
        assert_eq!(state.ready_within(), None);
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
