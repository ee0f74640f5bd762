//! What the per-datastore families read: a view of one datastore's record, whether borrowed under
//! its lock (the reference encoding) or copied out of it first (a snapshot, encoded after the lock
//! is released, for the cache); and the exporter-wide values (discovery, the last reload).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::events::EventsSnapshot;
use crate::aws::{api_usage, OPERATIONS, RESULTS};
use crate::model::{DatastoreInfo, JobKind, JobNameLabel, JobStatus};
use crate::state::{Datastore, DiscoveryStatus, Health, JobFeed, JobSummary, Record, State};

/// Label sets are arrays of (name, value) pairs: borrowed, so encoding copies no strings.
pub(super) type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

pub(super) type Fmt = Result<(), std::fmt::Error>;

/// What the per-datastore families read of one job track, however it is held.
#[derive(Clone, Copy)]
pub(super) struct TrackView<'a> {
    pub(super) jobs: Option<&'a JobSummary>,
    pub(super) finished: &'a BTreeMap<JobStatus, u64>,
    pub(super) health: &'a Health,
    pub(super) job_name_label: JobNameLabel,
}

/// What the per-datastore families read: one datastore's record, however it is held. A part the
/// configuration does not poll is `None`, and its families have no sample for the datastore.
pub(super) struct View<'a> {
    pub(super) exports: Option<TrackView<'a>>,
    pub(super) imports: Option<TrackView<'a>>,
    pub(super) datastore: Option<(Option<&'a DatastoreInfo>, &'a Health)>,
}

impl<'a> View<'a> {
    pub(super) fn of(record: &'a Record) -> View<'a> {
        View {
            exports: record.exports.as_ref().map(TrackView::of),
            imports: record.imports.as_ref().map(TrackView::of),
            datastore: record
                .datastore
                .as_ref()
                .map(|d| (d.info.as_ref(), &d.health)),
        }
    }

    pub(super) fn track(&self, kind: JobKind) -> Option<TrackView<'a>> {
        match kind {
            JobKind::Export => self.exports,
            JobKind::Import => self.imports,
        }
    }
}

impl<'a> TrackView<'a> {
    pub(super) fn of(track: &'a JobFeed) -> TrackView<'a> {
        TrackView {
            jobs: track.jobs.as_ref(),
            finished: &track.finished,
            health: &track.health,
            job_name_label: track.job_name_label,
        }
    }
}

/// A copy of what the metrics show of one datastore, taken under its record lock and encoded after
/// the lock is released, so a poll never waits on encoding.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) version: u64,
    pub(super) exports: Option<TrackCopy>,
    pub(super) imports: Option<TrackCopy>,
    pub(super) datastore: Option<(Option<DatastoreInfo>, Health)>,
}

#[derive(Debug)]
pub(super) struct TrackCopy {
    pub(super) jobs: Option<JobSummary>,
    pub(super) finished: BTreeMap<JobStatus, u64>,
    pub(super) health: Health,
    pub(super) job_name_label: JobNameLabel,
}

impl TrackCopy {
    pub(super) fn of(view: TrackView<'_>) -> TrackCopy {
        TrackCopy {
            jobs: view.jobs.cloned(),
            finished: view.finished.clone(),
            health: view.health.clone(),
            job_name_label: view.job_name_label,
        }
    }

    pub(super) fn view(&self) -> TrackView<'_> {
        TrackView {
            jobs: self.jobs.as_ref(),
            finished: &self.finished,
            health: &self.health,
            job_name_label: self.job_name_label,
        }
    }
}

impl Snapshot {
    pub(super) fn take(ds: &Datastore) -> Snapshot {
        let record = ds.record();
        let view = View::of(&record);
        Snapshot {
            id: ds.id.clone(),
            name: ds.name.clone(),
            version: record.version,
            exports: view.exports.map(TrackCopy::of),
            imports: view.imports.map(TrackCopy::of),
            datastore: view
                .datastore
                .map(|(info, health)| (info.cloned(), health.clone())),
        }
    }
}

/// Where the per-datastore families get their datastores from.
#[derive(Debug)]
pub(super) enum Source {
    /// Every datastore of State, each record locked briefly per family (the reference path).
    State(Arc<State>),
    /// One datastore, copied (a cached piece).
    One(Box<Snapshot>),
    /// None: the families' headers only.
    Nothing,
}

impl Source {
    pub(super) fn each(&self, f: &mut dyn FnMut(Labels<'_, 2>, &View<'_>) -> Fmt) -> Fmt {
        match self {
            Source::State(state) => {
                for ds in state.datastores().iter() {
                    let record = ds.record();
                    f(
                        [("datastore_id", &ds.id), ("datastore_name", &ds.name)],
                        &View::of(&record),
                    )?;
                }
                Ok(())
            }
            Source::One(snapshot) => {
                let view = View {
                    exports: snapshot.exports.as_ref().map(TrackCopy::view),
                    imports: snapshot.imports.as_ref().map(TrackCopy::view),
                    datastore: snapshot
                        .datastore
                        .as_ref()
                        .map(|(info, health)| (info.as_ref(), health)),
                };
                f(
                    [
                        ("datastore_id", &snapshot.id),
                        ("datastore_name", &snapshot.name),
                    ],
                    &view,
                )
            }
            Source::Nothing => Ok(()),
        }
    }
}

/// The exporter-wide families' values: discovery and the last config reload.
#[derive(Debug)]
pub(super) struct ExporterValues {
    pub(super) discovery: Vec<DiscoveryStatus>,
    pub(super) reload_successful: bool,
    pub(super) reload_success_time: f64,
    /// [`State::first_polls_pending`].
    pub(super) first_polls_pending: usize,
    /// With `[events]`: the event path's values.
    pub(super) events: Option<EventsSnapshot>,
    pub(super) certificate_loaded: Option<bool>,
    /// Per operation (in [`OPERATIONS`] order), calls by result (in [`RESULTS`] order).
    pub(super) api_requests: [[u64; RESULTS.len()]; OPERATIONS.len()],
    pub(super) api_wait_seconds: f64,
}

impl ExporterValues {
    pub(super) fn of(state: &State) -> ExporterValues {
        let reload = state.reload_status();
        let usage = api_usage();
        ExporterValues {
            discovery: state.discovery(),
            reload_successful: reload.last_successful(),
            reload_success_time: reload.last_success_time(),
            first_polls_pending: state.first_polls_pending(),
            events: state.event_stats().map(|s| EventsSnapshot::of(&s)),
            certificate_loaded: state.certificate_status().get(),
            api_requests: usage.requests(),
            api_wait_seconds: usage.wait_seconds(),
        }
    }
}
