//! Scheduling: when each datastore is polled, how many at once, and for how long at most.
//!
//! One task per datastore, each on the shared interval, with a semaphore bounding how many poll at
//! once and a timeout bounding each whole poll. A slow or failing datastore only ever delays
//! itself. Results go into State; the scrape path never waits on a poll.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Config, DatastoreConfig};
use crate::healthlake::{list_export_jobs, Clients, ErrorReason, PollError};
use crate::job::JobStatus;
use crate::state::{Datastore, State};

/// Upper bound of the random delay added to each wait, so that datastores drift apart instead of
/// hitting the API in lockstep.
const MAX_JITTER: Duration = Duration::from_secs(5);

/// Starts one polling task per datastore. Dropping (or aborting) the returned set stops polling.
pub fn spawn(config: &Config, clients: Arc<Clients>, state: Arc<State>) -> JoinSet<()> {
    let semaphore = Arc::new(Semaphore::new(config.polling.concurrency));
    let mut tasks = JoinSet::new();
    for (index, ds_config) in config.datastores.iter().enumerate() {
        let target = DatastoreTask {
            config: ds_config.clone(),
            interval: config.polling.interval,
            timeout: config.polling.timeout,
            job_series_limit: config.polling.job_series_limit,
            clients: Arc::clone(&clients),
            state: Arc::clone(&state),
            index,
            semaphore: Arc::clone(&semaphore),
        };
        tasks.spawn(target.run());
    }
    tasks
}

struct DatastoreTask {
    config: DatastoreConfig,
    interval: Duration,
    timeout: Duration,
    job_series_limit: usize,
    clients: Arc<Clients>,
    state: Arc<State>,
    index: usize,
    semaphore: Arc<Semaphore>,
}

impl DatastoreTask {
    async fn run(self) {
        let jitter_cap = (self.interval / 10).min(MAX_JITTER);
        loop {
            let cycle_start = Instant::now();
            {
                // The semaphore is never closed, so acquiring only waits for a free slot.
                let Ok(_permit) = self.semaphore.acquire().await else {
                    return;
                };
                self.poll_once().await;
            }
            let jitter = jitter_cap.mul_f64(fastrand::f64());
            tokio::time::sleep_until((cycle_start + self.interval + jitter).into()).await;
        }
    }

    fn datastore(&self) -> &Datastore {
        &self.state.datastores()[self.index]
    }

    async fn poll_once(&self) {
        let ds = &self.config;
        let region = ds.target.region.as_deref().unwrap_or("default");
        let started = Instant::now();
        let result = match self.clients.for_target(&ds.target) {
            Some(client) => tokio::time::timeout(self.timeout, list_export_jobs(client, &ds.id))
                .await
                .unwrap_or_else(|_| {
                    Err(PollError::new(
                        ErrorReason::Timeout,
                        format!(
                            "the poll took longer than polling.timeout ({})",
                            humantime::format_duration(self.timeout)
                        ),
                    ))
                }),
            None => Err(PollError::new(
                ErrorReason::Other,
                "no client for this datastore",
            )),
        };
        let poll_seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(jobs) => {
                let count = jobs.len();
                let outcome = self.datastore().record_success(
                    jobs,
                    self.job_series_limit,
                    poll_seconds,
                    unix_now(),
                );
                if outcome.recovered {
                    tracing::info!(datastore_id = %ds.id, datastore_name = %ds.name, region, jobs = count, poll_seconds, "datastore polled successfully");
                } else {
                    tracing::debug!(datastore_id = %ds.id, jobs = count, poll_seconds, "datastore polled");
                }
                for (job_id, status) in outcome.finished {
                    if status == JobStatus::Failed {
                        tracing::warn!(datastore_id = %ds.id, datastore_name = %ds.name, job_id = %job_id, status = %status, "export job failed");
                    } else {
                        tracing::info!(datastore_id = %ds.id, datastore_name = %ds.name, job_id = %job_id, status = %status, "export job finished");
                    }
                }
            }
            Err(error) => {
                if self.datastore().record_failure(&error, poll_seconds) {
                    tracing::warn!(datastore_id = %ds.id, datastore_name = %ds.name, region, reason = %error.reason, error = %error.message, "poll failed; keeping last-known values");
                } else {
                    tracing::debug!(datastore_id = %ds.id, reason = %error.reason, error = %error.message, "poll failed again");
                }
            }
        }
    }
}

/// The current Unix time in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
