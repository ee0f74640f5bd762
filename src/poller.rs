//! Scheduling: when each datastore is polled, how many at once, and for how long at most.
//!
//! One task per datastore on the shared interval, with a semaphore bounding how many poll at once,
//! a timeout bounding each whole poll, jitter so datastores do not hit the API in lockstep, and a
//! capped backoff for a datastore that keeps failing. A slow or failing datastore only ever delays
//! itself. Results go into State; the scrape path never waits on a poll.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Config, DatastoreConfig};
use crate::healthlake::{list_export_jobs, Clients, ErrorReason, PollError, Target};
use crate::job::JobStatus;
use crate::state::{Datastore, Listing, PollOutcome, State};

/// The first polls after start are spread over at most this long (or half the interval), so that
/// a hundred datastores do not all call at once, yet the first data arrives within seconds.
const MAX_START_SPREAD: Duration = Duration::from_secs(5);
/// Each wait is stretched or shrunk by up to this fraction, so datastores drift apart over time.
const JITTER_FRACTION: f64 = 0.1;
/// A datastore that keeps failing is polled at most this rarely (or at the interval, if longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Starts one polling task per datastore of `state` (which follows `config`). Dropping or
/// aborting the returned set stops polling.
pub fn spawn(config: &Config, clients: Arc<Clients>, state: &State) -> JoinSet<()> {
    let semaphore = Arc::new(Semaphore::new(config.polling.concurrency));
    let mut tasks = JoinSet::new();
    let datastores = state.datastores();
    for (ds_config, datastore) in config.datastores.iter().zip(datastores.iter()) {
        debug_assert_eq!(ds_config.id, datastore.id);
        let task = DatastoreTask {
            config: ds_config.clone(),
            interval: config.polling.interval,
            settings: PollSettings::of(config),
            clients: Arc::clone(&clients),
            datastore: Arc::clone(datastore),
            semaphore: Arc::clone(&semaphore),
        };
        tasks.spawn(task.run());
    }
    tasks
}

/// How long to wait after a poll that left `consecutive_failures` failures in a row: the interval,
/// doubling from the second failure on, capped at `MAX_BACKOFF` (or the interval, if longer).
pub fn backoff(interval: Duration, consecutive_failures: u32) -> Duration {
    if consecutive_failures <= 1 {
        return interval;
    }
    let factor = 2u32.saturating_pow(consecutive_failures.min(16) - 1);
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

/// What one poll needs to know from `[polling]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PollSettings {
    pub timeout: Duration,
    pub job_series_limit: usize,
    pub max_pages: usize,
    pub full_resync_interval: Duration,
}

impl PollSettings {
    pub fn of(config: &Config) -> PollSettings {
        PollSettings {
            timeout: config.polling.timeout,
            job_series_limit: config.polling.job_series_limit,
            max_pages: config.polling.max_pages,
            full_resync_interval: config.polling.full_resync_interval,
        }
    }
}

/// A failed poll, as recorded.
#[derive(Debug)]
pub struct PollFailure {
    pub error: PollError,
    /// The datastore was up, never polled, or failing for another reason: worth a log line.
    pub news: bool,
}

/// One poll of one datastore: lists its jobs (all of them, or only the unsettled ones when a full
/// listing is not due), within `settings.timeout`, and merges them into its record. A failure is
/// recorded as such and returned.
pub async fn poll_datastore(
    target: &Target,
    datastore: &Datastore,
    settings: &PollSettings,
) -> Result<PollOutcome, PollFailure> {
    datastore.record_attempt_start();
    let started = Instant::now();
    let listing = datastore.next_listing(settings.full_resync_interval);
    let submitted_after = match listing {
        Listing::Full => None,
        Listing::SubmittedAfter(after) => Some(after),
    };
    let listed = tokio::time::timeout(
        settings.timeout,
        list_export_jobs(target, &datastore.id, submitted_after, settings.max_pages),
    )
    .await
    .unwrap_or_else(|_| {
        Err(PollError::new(
            ErrorReason::Timeout,
            format!(
                "the poll took longer than polling.timeout ({})",
                humantime::format_duration(settings.timeout)
            ),
        ))
    });
    let poll_seconds = started.elapsed().as_secs_f64();
    match listed {
        Ok(jobs) => Ok(datastore.record_listing(
            listing,
            jobs,
            settings.job_series_limit,
            poll_seconds,
            unix_now(),
        )),
        Err(error) => {
            let news = datastore.record_failure(&error, poll_seconds);
            Err(PollFailure { error, news })
        }
    }
}

struct DatastoreTask {
    config: DatastoreConfig,
    interval: Duration,
    settings: PollSettings,
    clients: Arc<Clients>,
    datastore: Arc<Datastore>,
    semaphore: Arc<Semaphore>,
}

impl DatastoreTask {
    async fn run(self) {
        // A datastore carried over by a config reload keeps its rhythm; a new one starts soon.
        let last_attempt = self.datastore().record().health.last_attempt;
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

    fn wait_after_poll(&self) -> Duration {
        let failures = self.datastore().record().health.consecutive_failures;
        let jitter = 1.0 + JITTER_FRACTION * (2.0 * fastrand::f64() - 1.0);
        backoff(self.interval, failures).mul_f64(jitter)
    }

    fn datastore(&self) -> &Datastore {
        &self.datastore
    }

    async fn poll_once(&self) {
        let ds = &self.config;
        let region = ds.target.region.as_deref().unwrap_or("default");
        let Some(target) = self.clients.for_target(&ds.target) else {
            // Clients are built for every configured target; this cannot happen, but must not panic.
            let error = PollError::new(ErrorReason::Other, "no client for this datastore");
            self.datastore().record_failure(&error, 0.0);
            return;
        };
        match poll_datastore(target, self.datastore(), &self.settings).await {
            Ok(outcome) => {
                if outcome.recovered {
                    tracing::info!(datastore_id = %ds.id, datastore_name = %ds.name, region, "datastore polled successfully");
                } else {
                    tracing::debug!(datastore_id = %ds.id, "datastore polled");
                }
                for (job_id, status) in outcome.finished {
                    if status == JobStatus::Failed {
                        tracing::warn!(datastore_id = %ds.id, datastore_name = %ds.name, job_id = %job_id, status = %status, "export job failed");
                    } else {
                        tracing::info!(datastore_id = %ds.id, datastore_name = %ds.name, job_id = %job_id, status = %status, "export job finished");
                    }
                }
            }
            Err(PollFailure { error, news: true }) => {
                tracing::warn!(datastore_id = %ds.id, datastore_name = %ds.name, region, reason = %error.reason, error = %error.message, "poll failed; keeping last-known values");
            }
            Err(PollFailure { error, news: false }) => {
                tracing::debug!(datastore_id = %ds.id, reason = %error.reason, error = %error.message, "poll failed again");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_second_failure_and_is_capped() {
        let minute = Duration::from_secs(60);
        assert_eq!(backoff(minute, 0), minute);
        assert_eq!(backoff(minute, 1), minute);
        assert_eq!(backoff(minute, 2), 2 * minute);
        assert_eq!(backoff(minute, 3), 4 * minute);
        assert_eq!(backoff(minute, 4), MAX_BACKOFF);
        assert_eq!(backoff(minute, u32::MAX), MAX_BACKOFF);
        // An interval longer than the cap is never shortened.
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(hour, 9), hour);
    }
}
