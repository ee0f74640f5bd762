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
pub mod discovery;
pub mod memory;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use backoff::{backoff, MAX_BACKOFF};

use crate::aws::{describe_datastore, list_jobs, Clients, JobFilter, Target};
use crate::config::{Config, DatastoreConfig};
use crate::model::{unix_now, ErrorReason, Job, JobKind, JobStatus, PollError};
use crate::state::{
    Datastore, Feed, Health, Listed, Listing, PollOutcome, PollPlan, Retention, State, FOLLOW_EVERY,
};

/// The first polls after start are spread over at most this long (or half the interval), so that
/// a hundred datastores do not all call at once, yet the first data arrives within seconds.
const MAX_START_SPREAD: Duration = Duration::from_secs(5);

/// Starts one polling task per datastore and feed (export jobs, import jobs, the datastore's
/// description) that `config` asks for, all sharing one concurrency bound. Dropping or aborting
/// the returned set stops polling.
pub fn spawn(config: &Config, clients: Arc<Clients>, state: &State) -> JoinSet<()> {
    let semaphore = Arc::new(Semaphore::new(config.polling.concurrency));
    let mut tasks = JoinSet::new();
    let datastores = state.datastores();
    for (ds_config, datastore) in config.datastores.iter().zip(datastores.iter()) {
        debug_assert_eq!(ds_config.id, datastore.id);
        let mut feeds = Vec::new();
        if ds_config.jobs.export {
            feeds.push((Feed::Jobs(JobKind::Export), config.polling.interval));
        }
        if ds_config.jobs.import {
            feeds.push((Feed::Jobs(JobKind::Import), config.polling.interval));
        }
        if config.polling.datastore_health {
            feeds.push((Feed::Datastore, config.polling.datastore_interval));
        }
        for (feed, interval) in feeds {
            let task = FeedTask {
                config: ds_config.clone(),
                feed,
                interval,
                settings: PollSettings::of(config),
                clients: Arc::clone(&clients),
                datastore: Arc::clone(datastore),
                semaphore: Arc::clone(&semaphore),
            };
            tasks.spawn(task.run());
        }
    }
    tasks
}

/// What one poll needs to know from `[polling]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PollSettings {
    pub timeout: Duration,
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
pub async fn poll_jobs(
    target: &Target,
    datastore: &Datastore,
    kind: JobKind,
    settings: &PollSettings,
) -> Result<PollOutcome, PollFailure> {
    let feed = Feed::Jobs(kind);
    datastore.record_attempt_start(feed);
    let started = Instant::now();
    let plan = datastore.next_poll(kind, settings.full_resync_interval, settings.follow_every);
    let listed = within(
        settings.timeout,
        list_planned(target, kind, &datastore.id, &plan, settings.max_pages),
    )
    .await;
    let poll_seconds = started.elapsed().as_secs_f64();
    match listed {
        Ok((jobs, followed)) => {
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
            datastore.expire_ended(kind, unix_now());
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
pub async fn poll_description(
    target: &Target,
    datastore: &Datastore,
    settings: &PollSettings,
) -> Result<bool, PollFailure> {
    datastore.record_attempt_start(Feed::Datastore);
    let started = Instant::now();
    let described = within(settings.timeout, describe_datastore(target, &datastore.id)).await;
    let poll_seconds = started.elapsed().as_secs_f64();
    match described {
        Ok(info) => Ok(datastore.record_description(info, poll_seconds, unix_now())),
        Err(error) => {
            let news = datastore.record_failure(Feed::Datastore, &error, poll_seconds);
            Err(PollFailure { error, news })
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
    clients: Arc<Clients>,
    datastore: Arc<Datastore>,
    semaphore: Arc<Semaphore>,
}

impl FeedTask {
    async fn run(self) {
        // A datastore carried over by a config reload keeps its rhythm; a new one starts soon.
        let last_attempt = self.health(|h| h.last_attempt).flatten();
        let first = match last_attempt {
            Some(at) => at + self.wait_after_poll(),
            None => {
                Instant::now()
                    + (self.interval / 2)
                        .min(MAX_START_SPREAD)
                        .mul_f64(fastrand::f64())
            }
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
        let Some(target) = self.clients.for_target(&ds.target) else {
            // Clients are built for every configured target; this cannot happen, but must not panic.
            let error = PollError::new(ErrorReason::Other, "no client for this datastore");
            self.datastore.record_failure(self.feed, &error, 0.0);
            return;
        };
        let result = match self.feed {
            Feed::Jobs(kind) => poll_jobs(target, &self.datastore, kind, &self.settings)
                .await
                .map(|outcome| {
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
