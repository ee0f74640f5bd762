//! Scheduling: when each datastore is polled, how many at once, and for how long at most.
//!
//! One task per datastore and feed (export jobs, import jobs, the datastore's description) on its
//! interval, with a semaphore bounding how many poll at once,
//! a timeout bounding each whole poll, jitter so datastores do not hit the API in lockstep, and a
//! capped backoff for a datastore that keeps failing. A slow or failing datastore only ever delays
//! itself. Results go into State; the scrape path never waits on a poll.
//!
//! `discovery` runs the `[[discovery]]` listings that add datastores (and so feeds) at run time;
//! `backoff` says how long a feed waits; `memory` hands freed listing memory back to the system.

pub mod backoff;
pub(crate) mod discovery;
pub mod memory;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use backoff::backoff;

use crate::aws::{describe_datastore, list_jobs, Clients, JobFilter, Target};
use crate::config::{Config, DatastoreConfig};
use crate::model::{
    bound_label, unix_now, ErrorReason, Job, JobKind, JobKinds, JobNameLabel, JobStatus, PollError,
};
use crate::state::{
    Datastore, EventStats, Feed, Health, Listed, Listing, PollOutcome, PollPlan, Retention, State,
    FOLLOW_EVERY,
};

/// Records a poll in flight as failed (`interrupted`) if it is dropped before it finishes: a
/// task stopped by a reload must not lose a poll silently.
struct InFlight<'a> {
    datastore: &'a Datastore,
    feed: Feed,
    started: Instant,
    armed: bool,
}

impl<'a> InFlight<'a> {
    fn start(datastore: &'a Datastore, feed: Feed) -> InFlight<'a> {
        datastore.record_attempt_start(feed);
        InFlight {
            datastore,
            feed,
            started: Instant::now(),
            armed: true,
        }
    }

    fn done(mut self) {
        self.armed = false;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let error = PollError::new(
            ErrorReason::Interrupted,
            "the exporter stopped this poll while it was in flight (a configuration reload or discovery change altered or removed this datastore's polling)",
        );
        self.datastore
            .record_failure(self.feed, &error, self.started.elapsed().as_secs_f64());
        tracing::info!(
            datastore_id = %self.datastore.id,
            operation = self.feed.operation(),
            reason = %error.reason,
            "poll stopped in flight by a configuration change; counted as a failed poll"
        );
    }
}

/// The first polls after start are spread over at most this long (or half the interval), so that
/// a hundred datastores do not all call at once, yet the first data arrives within seconds.
const MAX_START_SPREAD: Duration = Duration::from_secs(5);

/// How long after its task starts a feed polled every `interval` makes its first poll, at most:
/// half the interval, and never more than [`MAX_START_SPREAD`] whatever the number of datastores.
pub fn start_spread(interval: Duration) -> Duration {
    (interval / 2).min(MAX_START_SPREAD)
}

/// The longest any feed of `config` waits before its first poll starts (see [`start_spread`]).
pub fn longest_start_spread(config: &Config) -> Duration {
    let datastore = if config.polling.datastore_health {
        start_spread(config.polling.datastore_interval)
    } else {
        Duration::ZERO
    };
    start_spread(config.polling.interval).max(datastore)
}

/// The polling tasks: one per datastore and feed (export jobs, import jobs, the datastore's
/// description), all sharing one concurrency bound, each remembered with the settings it runs
/// with, and a watchdog that marks feeds down when their data goes stale. A reload restarts only
/// the tasks whose settings changed; the others, and their polls in flight, carry on. Dropping
/// the set stops every task.
pub struct Pollers {
    tasks: HashMap<(String, Feed), (Spec, JoinHandle<()>)>,
    semaphore: Arc<Semaphore>,
    concurrency: usize,
    /// Read at every poll, so a reload that rebuilds the SDK clients restarts no task.
    clients: Arc<RwLock<Arc<Clients>>>,
    watchdog: Option<JoinHandle<()>>,
}

/// What a polling task runs with: a change restarts it.
#[derive(Clone, Debug, PartialEq)]
struct Spec {
    /// The datastore's settings, `jobs` left out (each feed is its own task).
    config: DatastoreConfig,
    interval: Duration,
    settings: PollSettings,
}

/// How many polling tasks an update kept, started and stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollerChanges {
    pub kept: usize,
    pub started: usize,
    pub stopped: usize,
}

impl Drop for Pollers {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
        if let Some(watchdog) = &self.watchdog {
            watchdog.abort();
        }
    }
}

impl Pollers {
    /// Starts polling what `config` asks for; `state` must already hold `config`'s datastores.
    pub fn start(config: &Config, clients: Arc<Clients>, state: &Arc<State>) -> Pollers {
        let mut pollers = Pollers {
            tasks: HashMap::new(),
            semaphore: Arc::new(Semaphore::new(config.polling.concurrency)),
            concurrency: config.polling.concurrency,
            clients: Arc::new(RwLock::new(clients)),
            watchdog: None,
        };
        pollers.spawn_missing(config, state);
        pollers
    }

    /// Switches State and the polling tasks to `config`: tasks whose settings did not change keep
    /// running (a poll in flight finishes); changed and removed ones are stopped, and a poll they
    /// had in flight is recorded as failed with reason `interrupted` before State moves on.
    pub async fn update(
        &mut self,
        config: &Config,
        clients: Arc<Clients>,
        state: &Arc<State>,
    ) -> PollerChanges {
        *self.clients.write().unwrap_or_else(PoisonError::into_inner) = clients;
        let wanted = specs(config);
        // A new concurrency bound applies to everyone: every task restarts under it.
        let restart_all = config.polling.concurrency != self.concurrency;
        if restart_all {
            self.concurrency = config.polling.concurrency;
            self.semaphore = Arc::new(Semaphore::new(self.concurrency));
        }
        let mut changes = PollerChanges::default();
        let mut stopping = Vec::new();
        let keys: Vec<(String, Feed)> = self.tasks.keys().cloned().collect();
        for key in keys {
            let keep = !restart_all
                && !self.tasks[&key].1.is_finished()
                && wanted
                    .iter()
                    .any(|(k, spec)| *k == key && *spec == self.tasks[&key].0);
            if keep {
                changes.kept += 1;
            } else if let Some((_, task)) = self.tasks.remove(&key) {
                task.abort();
                stopping.push(task);
                changes.stopped += 1;
            }
        }
        // Let the stopped tasks record their interrupted polls while their records are in place.
        for task in stopping {
            let _ = task.await;
        }
        state.apply(config);
        changes.started = self.spawn_missing(config, state);
        changes
    }

    /// Stops every task, waiting for them to finish.
    pub async fn shutdown(mut self) {
        let tasks: Vec<_> = self.tasks.drain().map(|(_, (_, task))| task).collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Starts the tasks `config` asks for that are not running, and a new watchdog. Returns how
    /// many tasks it started.
    fn spawn_missing(&mut self, config: &Config, state: &Arc<State>) -> usize {
        let datastores = state.datastores();
        let mut started = 0;
        for ((id, feed), spec) in specs(config) {
            if self.tasks.contains_key(&(id.clone(), feed)) {
                continue;
            }
            let Some(datastore) = datastores.iter().find(|d| d.id == id) else {
                continue;
            };
            let task = FeedTask {
                config: spec.config.clone(),
                feed,
                interval: spec.interval,
                settings: spec.settings.clone(),
                clients: Arc::clone(&self.clients),
                datastore: Arc::clone(datastore),
                semaphore: Arc::clone(&self.semaphore),
                events: Some(state.event_counters()),
            };
            self.tasks
                .insert((id, feed), (spec, tokio::spawn(task.run())));
            started += 1;
        }
        if let Some(old) = self.watchdog.take() {
            old.abort();
        }
        self.watchdog = Some(tokio::spawn(watchdog(
            Arc::clone(state),
            config.polling.interval,
            config.polling.datastore_interval,
            config.polling.timeout,
        )));
        started
    }
}

/// Every task `config` asks for, with its settings.
fn specs(config: &Config) -> Vec<((String, Feed), Spec)> {
    let settings = PollSettings::of(config);
    let mut out = Vec::new();
    for ds in &config.datastores {
        let mut feeds = Vec::new();
        if ds.jobs.export {
            feeds.push((Feed::Jobs(JobKind::Export), config.polling.interval));
        }
        if ds.jobs.import {
            feeds.push((Feed::Jobs(JobKind::Import), config.polling.interval));
        }
        if config.polling.datastore_health {
            feeds.push((Feed::Datastore, config.polling.datastore_interval));
        }
        for (feed, interval) in feeds {
            let spec = Spec {
                config: DatastoreConfig {
                    jobs: JobKinds::default(),
                    ..ds.clone()
                },
                interval,
                settings: settings.clone(),
            };
            out.push(((ds.id.clone(), feed), spec));
        }
    }
    out
}

/// A feed whose last success is older than this is shown down: two polls missed, plus the
/// longest a poll may take.
pub fn stale_after(interval: Duration, timeout: Duration) -> Duration {
    interval.saturating_mul(2).saturating_add(timeout)
}

/// How often the watchdog looks for stale feeds.
const WATCHDOG_PERIOD: Duration = Duration::from_secs(1);

/// Marks feeds down (`healthlake_feed_up` 0) once their data is stale, whatever
/// held their polls up: a reload storm, a hung API, too low a `polling.concurrency`.
async fn watchdog(
    state: Arc<State>,
    interval: Duration,
    datastore_interval: Duration,
    timeout: Duration,
) {
    loop {
        tokio::time::sleep(WATCHDOG_PERIOD).await;
        let now = unix_now();
        for ds in state.datastores().iter() {
            for (feed, every) in [
                (Feed::EXPORTS, interval),
                (Feed::IMPORTS, interval),
                (Feed::Datastore, datastore_interval),
            ] {
                let limit = stale_after(every, timeout);
                if ds.check_stale(feed, limit, now) {
                    tracing::warn!(
                        datastore_id = %ds.id,
                        operation = feed.operation(),
                        reason = "stale",
                        "no successful poll for {}: showing the datastore as down",
                        humantime::format_duration(limit)
                    );
                }
            }
        }
    }
}

/// What one poll needs to know from `[polling]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PollSettings {
    pub timeout: Duration,
    pub job_name_label: JobNameLabel,
    pub job_series_limit: usize,
    pub max_pages: usize,
    pub full_resync_interval: Duration,
    /// `polling.ended_job_window`.
    pub ended_job_window: Duration,
    /// Old unfinished jobs are followed every this many polls ([`FOLLOW_EVERY`]; tests use 1).
    pub follow_every: u32,
}

impl PollSettings {
    pub fn of(config: &Config) -> PollSettings {
        PollSettings {
            timeout: config.polling.timeout,
            job_name_label: config.polling.job_name_label,
            job_series_limit: config.polling.job_series_limit,
            max_pages: config.polling.max_pages,
            full_resync_interval: config.polling.full_resync_interval,
            ended_job_window: config.polling.ended_job_window,
            follow_every: FOLLOW_EVERY,
        }
    }

    /// What a merge keeps.
    pub fn retention(&self) -> Retention {
        Retention::new(self.job_series_limit, self.ended_job_window.as_secs_f64())
    }
}

/// A failed poll, as recorded.
#[derive(Debug)]
pub struct PollFailure {
    pub error: PollError,
    /// The feed was up, never polled, or failing for another reason: worth a log line.
    pub news: bool,
}

/// One poll of one datastore's `kind` jobs: lists them (all, or only the unsettled ones when a
/// full listing is not due, plus the old unfinished ones when they are due to be followed),
/// within `settings.timeout`, and merges them into its record. A failure is recorded as such and
/// returned.
pub(crate) async fn poll_jobs(
    target: &Target,
    datastore: &Datastore,
    kind: JobKind,
    settings: &PollSettings,
) -> Result<PollOutcome, PollFailure> {
    let feed = Feed::Jobs(kind);
    let _listing = datastore.feed_lock(feed).lock().await;
    let in_flight = InFlight::start(datastore, feed);
    let started = Instant::now();
    let plan = datastore.next_poll(kind, settings.full_resync_interval, settings.follow_every);
    let listed = within(
        settings.timeout,
        list_planned(target, kind, &datastore.id, &plan, settings.max_pages),
    )
    .await;
    in_flight.done();
    let poll_seconds = started.elapsed().as_secs_f64();
    match listed {
        Ok((mut jobs, mut followed)) => {
            bound_labels(&mut jobs);
            if let Some(followed) = followed.as_mut() {
                bound_labels(followed);
            }
            datastore.set_job_name_label(kind, settings.job_name_label);
            let outcome = datastore.record_listing(
                kind,
                &plan,
                Listed { jobs, followed },
                settings.retention(),
                poll_seconds,
                unix_now(),
            );
            // A listing (the whole history, for a full one) was just in memory: hand what it
            // took back to the system (rate-limited, so this stays cheap in steady state).
            memory::release_freed();
            Ok(outcome)
        }
        Err(error) => {
            let news = datastore.record_failure(feed, &error, poll_seconds);
            datastore.expire_ended(kind, unix_now(), settings.retention().ended_window);
            Err(PollFailure { error, news })
        }
    }
}

/// The listings of one poll: the main one (everything, or jobs submitted after the settled point)
/// and, when `plan` follows the stragglers, one per status they are in (submitted before the
/// settled point) and one of the submit-time range of those that changed status.
async fn list_planned(
    target: &Target,
    kind: JobKind,
    datastore_id: &str,
    plan: &PollPlan,
    max_pages: usize,
) -> Result<(Vec<Job>, Option<Vec<Job>>), PollError> {
    let main = JobFilter {
        submitted_after: match plan.listing {
            Listing::Full => None,
            Listing::SubmittedAfter(after) => Some(after),
        },
        ..JobFilter::default()
    };
    let jobs = list_jobs(target, kind, datastore_id, &main, max_pages).await?;
    let Some(follow) = &plan.follow else {
        return Ok((jobs, None));
    };
    let mut found = Vec::new();
    for status in &follow.statuses {
        let filter = JobFilter {
            submitted_before: Some(follow.before),
            status: Some(status.clone()),
            ..JobFilter::default()
        };
        found.extend(list_jobs(target, kind, datastore_id, &filter, max_pages).await?);
    }
    if let Some((first, last)) = follow.missing_range(&found) {
        let filter = JobFilter {
            submitted_after: Some(first - 1.0),
            submitted_before: Some(last + 1.0),
            status: None,
        };
        found.extend(list_jobs(target, kind, datastore_id, &filter, max_pages).await?);
    }
    Ok((jobs, Some(found)))
}

/// One poll of export jobs (see [`poll_jobs`]).
pub async fn poll_datastore(
    target: &Target,
    datastore: &Datastore,
    settings: &PollSettings,
) -> Result<PollOutcome, PollFailure> {
    poll_jobs(target, datastore, JobKind::Export, settings).await
}

/// One `DescribeFHIRDatastore`; returns whether the feed recovered.
pub(crate) async fn poll_description(
    target: &Target,
    datastore: &Datastore,
    settings: &PollSettings,
) -> Result<bool, PollFailure> {
    let _listing = datastore.feed_lock(Feed::Datastore).lock().await;
    let in_flight = InFlight::start(datastore, Feed::Datastore);
    let started = Instant::now();
    let described = within(settings.timeout, describe_datastore(target, &datastore.id)).await;
    in_flight.done();
    let poll_seconds = started.elapsed().as_secs_f64();
    match described {
        // Its strings are bounded already (`aws::describe_datastore`).
        Ok(info) => Ok(datastore.record_description(info, poll_seconds, unix_now())),
        Err(error) => {
            let news = datastore.record_failure(Feed::Datastore, &error, poll_seconds);
            Err(PollFailure { error, news })
        }
    }
}

/// Truncates over-long ids, names and unknown statuses as listed (see [`bound_label`]), before
/// they are kept or become labels.
fn bound_labels(jobs: &mut [crate::model::Job]) {
    for job in jobs {
        if let std::borrow::Cow::Owned(id) = bound_label(&job.id) {
            job.id = id;
        }
        if let Some(name) = &job.name {
            if let std::borrow::Cow::Owned(bounded) = bound_label(name) {
                job.name = Some(bounded);
            }
        }
        if let JobStatus::Unknown(status) = &job.status {
            if let std::borrow::Cow::Owned(bounded) = bound_label(status) {
                job.status = JobStatus::Unknown(bounded);
            }
        }
    }
}

/// Bounds a whole poll (all pages, all retries) by `timeout`.
async fn within<T>(
    timeout: Duration,
    poll: impl std::future::Future<Output = Result<T, PollError>>,
) -> Result<T, PollError> {
    tokio::time::timeout(timeout, poll)
        .await
        .unwrap_or_else(|_| {
            Err(PollError::new(
                ErrorReason::Timeout,
                format!(
                    "the poll took longer than polling.timeout ({})",
                    humantime::format_duration(timeout)
                ),
            ))
        })
}

struct FeedTask {
    config: DatastoreConfig,
    feed: Feed,
    interval: Duration,
    settings: PollSettings,
    clients: Arc<RwLock<Arc<Clients>>>,
    datastore: Arc<Datastore>,
    semaphore: Arc<Semaphore>,
    /// With `[events]`: job changes a scheduled poll finds were not announced by an event.
    events: Option<Arc<EventStats>>,
}

impl FeedTask {
    async fn run(self) {
        // A datastore carried over by a config reload keeps its rhythm; a new one starts soon.
        let last_attempt = self.health(|h| h.last_attempt).flatten();
        let first = match last_attempt {
            Some(at) => at + self.wait_after_poll(),
            None => Instant::now() + start_spread(self.interval).mul_f64(fastrand::f64()),
        };
        tokio::time::sleep_until(first.into()).await;
        loop {
            let started = Instant::now();
            {
                // The semaphore is never closed, so acquiring only waits for a free slot.
                let Ok(_permit) = self.semaphore.acquire().await else {
                    return;
                };
                self.poll_once().await;
            }
            tokio::time::sleep_until((started + self.wait_after_poll()).into()).await;
        }
    }

    fn health<T>(&self, read: impl FnOnce(&Health) -> T) -> Option<T> {
        self.datastore.record().health(self.feed).map(read)
    }

    fn wait_after_poll(&self) -> Duration {
        let failures = self.health(|h| h.consecutive_failures).unwrap_or(0);
        backoff::with_jitter(self.interval, failures)
    }

    async fn poll_once(&self) {
        let ds = &self.config;
        let region = ds.target.region.as_deref().unwrap_or("default");
        let operation = self.feed.operation();
        let clients = Arc::clone(&self.clients.read().unwrap_or_else(PoisonError::into_inner));
        let Some(target) = clients.for_target(&ds.target) else {
            // Clients are built for every configured target; this cannot happen, but must not panic.
            let error = PollError::new(ErrorReason::Other, "no client for this datastore");
            self.datastore.record_failure(self.feed, &error, 0.0);
            return;
        };
        let result = match self.feed {
            Feed::Jobs(kind) => poll_jobs(target, &self.datastore, kind, &self.settings)
                .await
                .map(|outcome| {
                    if let Some(events) = &self.events {
                        events
                            .unannounced_changes
                            .fetch_add(outcome.finished.len() as u64, Ordering::Relaxed);
                    }
                    for (job_id, status) in &outcome.finished {
                        if *status == JobStatus::Failed {
                            tracing::warn!(datastore_id = %ds.id, datastore_name = %ds.name, job_id = %job_id, status = %status, "{} job failed", kind.as_str());
                        } else {
                            tracing::info!(datastore_id = %ds.id, datastore_name = %ds.name, job_id = %job_id, status = %status, "{} job finished", kind.as_str());
                        }
                    }
                    outcome.recovered
                }),
            Feed::Datastore => {
                poll_description(target, &self.datastore, &self.settings).await
            }
        };
        match result {
            Ok(true) => {
                tracing::info!(datastore_id = %ds.id, datastore_name = %ds.name, region, operation, "datastore polled successfully");
            }
            Ok(false) => tracing::debug!(datastore_id = %ds.id, operation, "datastore polled"),
            Err(PollFailure { error, news: true }) => {
                tracing::warn!(datastore_id = %ds.id, datastore_name = %ds.name, region, operation, reason = %error.reason, error = %error.message, "poll failed; keeping last-known values");
            }
            Err(PollFailure { error, news: false }) => {
                tracing::debug!(datastore_id = %ds.id, operation, reason = %error.reason, error = %error.message, "poll failed again");
            }
        }
    }
}
