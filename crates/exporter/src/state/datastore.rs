//! One datastore in State: its fixed labels, its [`Record`] (one entry per feed, locked briefly
//! by the poller and by scrapes) and the locks that keep its feeds' listings one at a time; and
//! how a poll's result is recorded: a listing merged page by page ([`ListingMerge`]), a
//! description, a failure (health only), staleness.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::feed::{JobFeed, PollOutcome, Retention};
use super::health::Health;
use super::history::PollPlan;
use super::merge::ListingMerge;
use crate::model::{
    fnv1a64, DatastoreInfo, ErrorReason, Job, JobKind, JobKinds, JobNameLabel, PollError,
};

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

/// The mutable part of a datastore's state: one entry per feed. An entry is `None` when the
/// configuration does not poll that feed for this datastore.
#[derive(Debug, Default)]
pub struct Record {
    pub exports: Option<JobFeed>,
    pub imports: Option<JobFeed>,
    /// `DescribeFHIRDatastore` results (`polling.datastore_health`).
    pub datastore: Option<DatastoreFeed>,
    /// Bumped on every change of this record: lets the metrics encoder reuse what it encoded
    /// before when nothing changed.
    pub version: u64,
}

/// The datastore's description feed: the datastore as `DescribeFHIRDatastore` last described it.
#[derive(Debug, Default)]
pub struct DatastoreFeed {
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

/// A listing of a test's jobs (`Datastore::record_listing`): the main listing and, when the poll
/// followed the old unfinished jobs, what those listings returned.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Default)]
pub struct Listed {
    pub jobs: Vec<Job>,
    pub followed: Option<Vec<Job>>,
}

impl Record {
    /// The job feed of `kind`, when it is polled.
    pub fn track(&self, kind: JobKind) -> Option<&JobFeed> {
        match kind {
            JobKind::Export => self.exports.as_ref(),
            JobKind::Import => self.imports.as_ref(),
        }
    }

    fn track_mut_if_polled(&mut self, kind: JobKind) -> Option<&mut JobFeed> {
        match kind {
            JobKind::Export => self.exports.as_mut(),
            JobKind::Import => self.imports.as_mut(),
        }
    }

    fn track_mut(&mut self, kind: JobKind) -> &mut JobFeed {
        let track = match kind {
            JobKind::Export => &mut self.exports,
            JobKind::Import => &mut self.imports,
        };
        track.get_or_insert_with(JobFeed::new)
    }

    /// The feeds this record polls (job lists, description) that have not had a poll attempted.
    pub(super) fn first_polls_pending(&self) -> usize {
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
    #[cfg(any(test, feature = "test-support"))]
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
            Feed::Datastore => &mut self.datastore.get_or_insert_with(DatastoreFeed::new).health,
        }
    }

    /// Makes the record poll what the configuration says for this datastore: feeds switched off
    /// are dropped (with their series), feeds switched on start empty, the others are kept.
    pub(super) fn follow(&mut self, jobs: JobKinds, datastore_health: bool) {
        fn keep<T>(feed: &mut Option<T>, on: bool, new: fn() -> T) {
            match (on, feed.is_some()) {
                (true, false) => *feed = Some(new()),
                (false, true) => *feed = None,
                _ => {}
            }
        }
        keep(&mut self.exports, jobs.export, JobFeed::new);
        keep(&mut self.imports, jobs.import, JobFeed::new);
        keep(&mut self.datastore, datastore_health, DatastoreFeed::new);
        self.version += 1;
    }
}

impl DatastoreFeed {
    fn new() -> DatastoreFeed {
        DatastoreFeed {
            info: None,
            health: Health::new(),
        }
    }
}

impl Datastore {
    pub(super) fn new(id: String, name: String, record: Record) -> Datastore {
        Datastore {
            id,
            name,
            record: Mutex::new(record),
            feeds: Default::default(),
        }
    }

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
        // A phase that differs between datastores and stays across restarts.
        let spread = fnv1a64(self.id.as_bytes()) as u32;
        let record = self.record();
        record.track(kind).map_or(PollPlan::FULL, |track| {
            track.next_poll(full_resync, follow_every, spread)
        })
    }

    /// Starts merging a listing of `kind` jobs made after `plan` (see [`ListingMerge`]); `now`
    /// (Unix seconds) is when it starts. Hand it each page with [`Datastore::stage_page`] (and
    /// [`Datastore::stage_follow_up_page`]), then [`Datastore::commit_listing`]; drop it to leave
    /// the feed as it is.
    pub fn start_listing(
        &self,
        kind: JobKind,
        plan: PollPlan,
        retention: Retention,
        now: f64,
    ) -> ListingMerge {
        ListingMerge::start(kind, self.record().track(kind), plan, retention, now)
    }

    /// Stages one page of a listing's main listing.
    pub fn stage_page(&self, merge: &mut ListingMerge, page: Vec<Job>) {
        merge.stage_page(self.record().track(merge.kind()), page);
    }

    /// Stages one page of a listing's follow-up of the old unfinished jobs.
    pub fn stage_follow_up_page(&self, merge: &mut ListingMerge, page: Vec<Job>) {
        merge.stage_follow_up_page(self.record().track(merge.kind()), page);
    }

    /// Commits a staged listing, taken `poll_seconds` long and ending at `now` (Unix seconds): the
    /// result is the same as if every job had been listed (settled jobs are counted from the
    /// settled counts, the others from the listings). A listing staged against a feed that a
    /// reload has replaced since changes nothing.
    pub fn commit_listing(&self, merge: ListingMerge, poll_seconds: f64, now: f64) -> PollOutcome {
        let mut record = self.record();
        let kind = merge.kind();
        // A feed a reload switched off while it was listed stays off.
        let feed = match merge.started_on_a_feed() {
            true => record.track_mut_if_polled(kind),
            false => Some(record.track_mut(kind)),
        };
        match feed.and_then(|feed| merge.commit(feed, poll_seconds, now)) {
            Some(outcome) => {
                record.version += 1;
                outcome
            }
            None => PollOutcome::default(),
        }
    }

    /// Merges a whole listing of `kind` jobs made after `plan` at once (see
    /// [`Datastore::start_listing`]), taken `poll_seconds` long and ending at `now`.
    #[cfg(any(test, feature = "test-support"))]
    pub fn record_listing(
        &self,
        kind: JobKind,
        plan: &PollPlan,
        listed: Listed,
        retention: Retention,
        poll_seconds: f64,
        now: f64,
    ) -> PollOutcome {
        let mut merge = self.start_listing(kind, plan.clone(), retention, now);
        self.stage_page(&mut merge, listed.jobs);
        if let Some(followed) = listed.followed {
            merge.start_follow_up();
            self.stage_follow_up_page(&mut merge, followed);
        }
        self.commit_listing(merge, poll_seconds, now)
    }

    /// Merges a full listing of export jobs (see [`Datastore::record_listing`]), with the
    /// default ended-job window.
    #[cfg(any(test, feature = "test-support"))]
    pub fn record_success(
        &self,
        jobs: Vec<Job>,
        job_series_limit: usize,
        poll_seconds: f64,
        now: f64,
    ) -> PollOutcome {
        let listed = Listed {
            jobs,
            followed: None,
        };
        let retention = Retention::new(job_series_limit, Retention::DEFAULT_ENDED_WINDOW);
        self.record_listing(
            JobKind::Export,
            &PollPlan::FULL,
            listed,
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
        let expired = record
            .track_mut_if_polled(kind)
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
    use crate::state::{FinishedJob, Listing, State, FOLLOW_EVERY};
    use std::path::Path;

    fn ids_and_statuses(finished: &[FinishedJob]) -> Vec<(String, JobStatus)> {
        finished
            .iter()
            .map(|j| (j.id.clone(), j.status.clone()))
            .collect()
    }

    fn state() -> State {
        let config = Config::parse("[[datastores]]\nid = \"ds\"\n", Path::new("t.toml")).unwrap();
        State::new(&config, 0.0)
    }

    /// The one datastore of [`state`].
    fn datastore() -> std::sync::Arc<Datastore> {
        std::sync::Arc::clone(&state().datastores()[0])
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
            message: None,
        }
    }

    #[test]
    fn a_feed_without_a_success_for_too_long_goes_down_once() {
        let ds = &datastore();
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
        let ds = &datastore();
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
        let ds = &datastore();
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
        let ds = &datastore();
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

        let listing = || {
            vec![
                job("old-fail", "FAILED", 1.0),
                job("run", "FAILED", 2.0),
                job("late", "COMPLETED", 0.5),
            ]
        };
        let second = ds.record_success(listing(), 100, 0.1, 20.0);
        assert!(!second.recovered);
        assert_eq!(
            ids_and_statuses(&second.finished),
            vec![
                ("run".to_string(), JobStatus::Failed),
                ("late".to_string(), JobStatus::Completed)
            ]
        );
        // The same listing again changes nothing.
        let third = ds.record_success(listing(), 100, 0.1, 30.0);
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
        let ds = &datastore();
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
        let ds = &datastore();
        ds.record_success(vec![job("a", "IN_PROGRESS", 1.0)], 100, 0.1, 10.0);
        let failed = ds.record_success(
            vec![job("a", "IN_PROGRESS", 1.0), job("a", "FAILED", 1.0)],
            100,
            0.1,
            20.0,
        );
        assert_eq!(
            ids_and_statuses(&failed.finished),
            [("a".to_string(), JobStatus::Failed)]
        );
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
        let ds = &datastore();
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
