//! The polling tasks: one per datastore and feed on its interval, all sharing one concurrency
//! bound, started and stopped as the configuration changes, and a watchdog that shows a feed down
//! once its data is stale. One poll itself is `super::poll_jobs` or `super::poll_description`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{
    backoff, log_finished, poll_description, poll_jobs, PollFailure, PollSettings, Trigger,
};
use crate::aws::Clients;
use crate::config::{Config, DatastoreConfig};
use crate::model::{unix_now, ErrorReason, JobKind, JobKinds, PollError};
use crate::state::{Datastore, EventStats, Feed, Health, State};

/// The first polls after start are spread over at most this long (or half the interval), so that
/// a hundred datastores do not all call at once, yet the first data arrives within seconds.
const MAX_START_SPREAD: Duration = Duration::from_secs(5);

/// How long after its task starts a feed polled every `interval` makes its first poll, at most:
/// half the interval, and never more than `MAX_START_SPREAD` whatever the number of datastores.
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
    tasks: HashMap<(String, Feed), (TaskSettings, JoinHandle<()>)>,
    semaphore: Arc<Semaphore>,
    concurrency: usize,
    /// Read at every poll, so a reload that rebuilds the SDK clients restarts no task.
    clients: Arc<RwLock<Arc<Clients>>>,
    watchdog: Option<JoinHandle<()>>,
}

/// What a polling task runs with: a change restarts it.
#[derive(Clone, Debug, PartialEq)]
struct TaskSettings {
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
        let wanted = task_settings(config);
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
                    .any(|(k, task)| *k == key && *task == self.tasks[&key].0);
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
        for ((id, feed), wanted) in task_settings(config) {
            if self.tasks.contains_key(&(id.clone(), feed)) {
                continue;
            }
            let Some(datastore) = datastores.iter().find(|d| d.id == id) else {
                continue;
            };
            let task = FeedTask {
                config: wanted.config.clone(),
                feed,
                interval: wanted.interval,
                settings: wanted.settings.clone(),
                clients: Arc::clone(&self.clients),
                datastore: Arc::clone(datastore),
                semaphore: Arc::clone(&self.semaphore),
                events: Some(state.event_counters()),
            };
            self.tasks
                .insert((id, feed), (wanted, tokio::spawn(task.run())));
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
fn task_settings(config: &Config) -> Vec<((String, Feed), TaskSettings)> {
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
            let task = TaskSettings {
                config: DatastoreConfig {
                    jobs: JobKinds::default(),
                    ..ds.clone()
                },
                interval,
                settings: settings.clone(),
            };
            out.push(((ds.id.clone(), feed), task));
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
                // Boxed: a poll's future (the SDK calls' state included) is ~13 KiB, and a task
                // holds the largest of its states for good, so a thousand idle feeds would keep
                // 13 MiB; boxed, only the polls in flight (`polling.concurrency`) hold it.
                Box::pin(self.poll_once()).await;
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
        let Some(client) = clients.for_target(&ds.target) else {
            // Clients are built for every configured target; this cannot happen, but must not panic.
            let error = PollError::new(ErrorReason::Other, "no client for this datastore");
            self.datastore.record_failure(self.feed, &error, 0.0);
            return;
        };
        let result = match self.feed {
            Feed::Jobs(kind) => poll_jobs(client, &self.datastore, kind, &self.settings)
                .await
                .map(|outcome| {
                    if let Some(events) = &self.events {
                        events
                            .unannounced_changes
                            .fetch_add(outcome.finished.len() as u64, Ordering::Relaxed);
                    }
                    let names = self.settings.job_name_label;
                    log_finished(&self.datastore, kind, &outcome, Trigger::Schedule, names);
                    outcome.recovered
                }),
            Feed::Datastore => poll_description(client, &self.datastore, &self.settings).await,
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
