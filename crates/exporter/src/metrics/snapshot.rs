//! The snapshot: what the families read, copied out of State at one moment.
//!
//! Each datastore's part is copied under its record lock, which is then released: encoding (the
//! slow part) never holds a lock a poll waits for, and every family of one datastore shows the
//! same poll. The reference encoding copies every datastore, the cache one changed datastore at a
//! time; both encode the same type, so they cannot read State differently. The copy holds only
//! what the families show (counts, the newest jobs, the recently ended ones, health), never a
//! datastore's listing history.

use std::collections::BTreeMap;

use super::process::ProcessStats;
use crate::aws::{api_usage, OPERATIONS, RESULTS};
use crate::model::{DatastoreInfo, ErrorReason, JobKind, JobNameLabel, JobStatus};
use crate::state::{self, DiscoveryStatus, EventStats, Health, JobFeed, JobSummary, State};

/// State as the families read it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// In configuration order (one, for a cached piece; none, for headers or exporter values).
    pub(super) datastores: Vec<Datastore>,
    /// `None` where only datastores are encoded (a cached piece).
    pub(super) exporter: Option<Exporter>,
    /// This process's resources, read from `/proc` at the scrape (`None`: not served).
    pub(super) process: Option<ProcessStats>,
}

/// One datastore: its labels, and a part per feed its configuration polls (`None`: not polled,
/// and its families have no sample for the datastore).
#[derive(Debug)]
pub(super) struct Datastore {
    pub(super) id: String,
    pub(super) name: String,
    /// The record version copied ([`state::Record::version`]).
    pub(super) version: u64,
    pub(super) exports: Option<JobList>,
    pub(super) imports: Option<JobList>,
    pub(super) description: Option<Description>,
}

/// One job kind's list of a datastore: what its last successful listing showed, the jobs seen
/// finishing, and the health of its feed.
#[derive(Debug)]
pub(super) struct JobList {
    /// `None` until the first successful listing.
    pub(super) shown: Option<JobSummary>,
    pub(super) finished: BTreeMap<JobStatus, u64>,
    pub(super) health: Health,
    pub(super) job_name_label: JobNameLabel,
}

/// The datastore as `DescribeFHIRDatastore` last described it, and the health of that feed.
#[derive(Debug)]
pub(super) struct Description {
    pub(super) info: Option<DatastoreInfo>,
    pub(super) health: Health,
}

/// The exporter-wide values: discovery, configuration, certificate, API use, the event queue.
#[derive(Debug)]
pub(super) struct Exporter {
    pub(super) discovery: Vec<DiscoveryStatus>,
    pub(super) reload_successful: bool,
    pub(super) reload_success_time: f64,
    /// [`State::first_polls_pending`].
    pub(super) first_polls_pending: usize,
    /// With `[events]` only.
    pub(super) events: Option<EventQueue>,
    /// With `[server.tls]` only.
    pub(super) certificate_loaded: Option<bool>,
    /// Per operation (in [`OPERATIONS`] order), calls by result (in [`RESULTS`] order).
    pub(super) api_requests: [[u64; RESULTS.len()]; OPERATIONS.len()],
    pub(super) api_wait_seconds: f64,
}

/// What the event consumer has done (`[events]`), read once so its families agree.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct EventQueue {
    pub(super) received: u64,
    pub(super) redelivered: u64,
    pub(super) applied: u64,
    pub(super) ignored: u64,
    pub(super) malformed: u64,
    pub(super) refreshes: u64,
    pub(super) newest_applied: Option<f64>,
    pub(super) unannounced: u64,
    /// The event feed's health: its `ReceiveMessage` calls, and the failures of every SQS call.
    pub(super) health: Health,
}

/// What the exporter-wide values were read from: when it changes, they may have.
#[derive(Debug, PartialEq)]
pub(super) struct ExporterKey {
    reload: (bool, u64),
    discovery_version: u64,
    /// Read once per scrape: the values are made from this copy.
    pub(super) events: Option<EventQueue>,
    certificate_loaded: Option<bool>,
    api_usage_version: u64,
    first_polls_pending: usize,
}

/// One feed's health, as the feed families read it.
pub(super) struct FeedHealth<'a> {
    /// The `feed` label.
    pub(super) name: &'static str,
    pub(super) health: &'a Health,
}

impl<'a> FeedHealth<'a> {
    pub(super) fn discovery(health: &'a Health) -> FeedHealth<'a> {
        FeedHealth {
            name: feed_name::DISCOVERY,
            health,
        }
    }

    pub(super) fn events(health: &'a Health) -> FeedHealth<'a> {
        FeedHealth {
            name: feed_name::EVENTS,
            health,
        }
    }
}

/// The `feed` label of each feed.
pub(super) mod feed_name {
    pub(in super::super) const EXPORT: &str = "export";
    pub(in super::super) const IMPORT: &str = "import";
    pub(in super::super) const DESCRIBE: &str = "describe";
    pub(in super::super) const DISCOVERY: &str = "discovery";
    pub(in super::super) const EVENTS: &str = "events";
}

impl Snapshot {
    /// Every datastore of `state` and the exporter-wide values (the reference encoding).
    pub(super) fn of_state(state: &State) -> Snapshot {
        Snapshot {
            datastores: state
                .datastores()
                .iter()
                .map(|ds| Datastore::of(ds))
                .collect(),
            exporter: Some(Exporter::of(state, EventQueue::of_state(state))),
            process: None,
        }
    }

    /// One datastore (a cached piece).
    pub(super) fn of_datastore(datastore: &state::Datastore) -> Snapshot {
        Snapshot {
            datastores: vec![Datastore::of(datastore)],
            exporter: None,
            process: None,
        }
    }

    /// The exporter-wide values alone (the cache's exporter-wide pieces).
    pub(super) fn of_exporter(exporter: Exporter) -> Snapshot {
        Snapshot {
            datastores: Vec::new(),
            exporter: Some(exporter),
            process: None,
        }
    }
}

impl Datastore {
    fn of(datastore: &state::Datastore) -> Datastore {
        let record = datastore.record();
        Datastore {
            id: datastore.id.clone(),
            name: datastore.name.clone(),
            version: record.version,
            exports: record.exports.as_ref().map(JobList::of),
            imports: record.imports.as_ref().map(JobList::of),
            description: record.datastore.as_ref().map(|d| Description {
                info: d.info.clone(),
                health: d.health.clone(),
            }),
        }
    }

    /// The labels every sample about this datastore starts with.
    pub(super) fn scope(&self) -> [(&'static str, &str); 2] {
        [("datastore_id", &self.id), ("datastore_name", &self.name)]
    }

    /// The datastore's feeds: its job listings, then its description.
    pub(super) fn feeds(&self) -> impl Iterator<Item = FeedHealth<'_>> {
        let feed = |name, health| FeedHealth { name, health };
        [
            self.exports
                .as_ref()
                .map(|j| feed(feed_name::EXPORT, &j.health)),
            self.imports
                .as_ref()
                .map(|j| feed(feed_name::IMPORT, &j.health)),
            self.description
                .as_ref()
                .map(|d| feed(feed_name::DESCRIBE, &d.health)),
        ]
        .into_iter()
        .flatten()
    }

    pub(super) fn jobs(&self, kind: JobKind) -> Option<&JobList> {
        match kind {
            JobKind::Export => self.exports.as_ref(),
            JobKind::Import => self.imports.as_ref(),
        }
    }
}

impl JobList {
    fn of(track: &JobFeed) -> JobList {
        JobList {
            shown: track.jobs.clone(),
            finished: track.finished.clone(),
            health: track.health.clone(),
            job_name_label: track.job_name_label,
        }
    }
}

impl Exporter {
    /// The exporter-wide values of `state`, with the event queue's as read by the caller (the cache
    /// reads them once, for its key and its values).
    pub(super) fn of(state: &State, events: Option<EventQueue>) -> Exporter {
        let reload = state.reload_status();
        let usage = api_usage();
        Exporter {
            discovery: state.discovery(),
            reload_successful: reload.last_successful(),
            reload_success_time: reload.last_success_time(),
            first_polls_pending: state.first_polls_pending(),
            events,
            certificate_loaded: state.certificate_status().get(),
            api_requests: usage.requests(),
            api_wait_seconds: usage.wait_seconds(),
        }
    }

    /// What changes whenever these values may have, with the event queue's values (read
    /// without copying the rest).
    pub(super) fn key(state: &State) -> ExporterKey {
        let reload = state.reload_status();
        ExporterKey {
            reload: (
                reload.last_successful(),
                reload.last_success_time().to_bits(),
            ),
            discovery_version: state.discovery_version(),
            events: EventQueue::of_state(state),
            certificate_loaded: state.certificate_status().get(),
            api_usage_version: api_usage().version(),
            first_polls_pending: state.first_polls_pending(),
        }
    }
}

impl EventQueue {
    /// The event consumer's values, when `[events]` is configured.
    pub(super) fn of_state(state: &State) -> Option<EventQueue> {
        state.event_stats().map(|stats| EventQueue::of(&stats))
    }

    pub(super) fn of(stats: &EventStats) -> EventQueue {
        use std::sync::atomic::Ordering::Relaxed;
        let times = stats.receive_times();
        let errors = stats.errors();
        let health = Health {
            up: stats.up.load(Relaxed),
            last_poll_seconds: times.last_seconds,
            last_success: times.last_success,
            errors: ErrorReason::ALL
                .iter()
                .map(|r| (*r, errors.get(r).copied().unwrap_or(0)))
                .collect(),
            ..Health::default()
        };
        EventQueue {
            received: stats.received.load(Relaxed),
            redelivered: stats.redelivered.load(Relaxed),
            applied: stats.applied.load(Relaxed),
            ignored: stats.ignored.load(Relaxed),
            malformed: stats.malformed.load(Relaxed),
            refreshes: stats.refreshes.load(Relaxed),
            newest_applied: stats.newest_applied(),
            unannounced: stats.unannounced_changes.load(Relaxed),
            health,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn the_event_feed_has_the_health_of_every_feed() {
        let stats = EventStats::default();
        let before = EventQueue::of(&stats);
        assert!(!before.health.up);
        assert_eq!(before.health.last_poll_seconds, None);
        assert_eq!(
            before.health.errors.len(),
            ErrorReason::ALL.len(),
            "all reasons at 0"
        );

        stats.up.store(true, Ordering::Relaxed);
        stats.receive_ended(20.5, Some(1_750_000_000.0));
        stats.receive_ended(0.25, None);
        stats.error(ErrorReason::Throttled);
        let after = EventQueue::of(&stats);
        assert_eq!(
            after.health.last_poll_seconds,
            Some(0.25),
            "the last call's time"
        );
        assert_eq!(
            after.health.last_success,
            Some(1_750_000_000.0),
            "the last success's end"
        );
        assert_eq!(after.health.errors.get(&ErrorReason::Throttled), Some(&1));
        assert!(after.health.up);
        assert_ne!(after, before, "a cache keyed on the values sees the change");
    }
}
