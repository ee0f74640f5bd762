//! Scheduling: when each datastore is polled, how many at once, and for how long at most.
//!
//! One task per datastore and feed (export jobs, import jobs, the datastore's description) on its
//! interval, with a semaphore bounding how many poll at once,
//! a timeout bounding each whole poll, jitter so datastores do not hit the API in lockstep, and a
//! capped backoff for a datastore that keeps failing. A slow or failing datastore only ever delays
//! itself. Results go into State; the scrape path never waits on a poll.
//!
//! This module makes one poll of one feed (`poll_jobs`: a listing merged page by page;
//! `poll_description`); `tasks` runs them on schedule and watches for stale feeds; `discovery`
//! runs the `[[discovery]]` listings that add datastores (and so feeds) at run time; `backoff`
//! says how long a feed waits; `memory` hands freed listing memory back to the system.

pub mod backoff;
pub(crate) mod discovery;
pub mod memory;
mod tasks;

use std::time::{Duration, Instant};

use tracing::field::display;

pub use backoff::backoff;
pub use tasks::{longest_start_spread, stale_after, start_spread, PollerChanges, Pollers};

use crate::aws::{describe_datastore, list_jobs, JobFilter, PacedClient};
use crate::config::Config;
use crate::model::{unix_now, ErrorReason, JobKind, JobNameLabel, JobStatus, PollError};
use crate::state::{Datastore, Feed, Listing, ListingMerge, PollOutcome, Retention, FOLLOW_EVERY};

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

/// What one poll needs to know from `[polling]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PollSettings {
    pub timeout: Duration,
    pub job_name_label: JobNameLabel,
    /// What a merge keeps: `polling.job_series_limit` and `polling.ended_job_window`.
    pub retention: Retention,
    pub max_pages: usize,
    pub full_resync_interval: Duration,
    /// Old unfinished jobs are followed every this many polls ([`FOLLOW_EVERY`]; tests use 1).
    pub follow_every: u32,
}

impl PollSettings {
    pub fn of(config: &Config) -> PollSettings {
        PollSettings {
            timeout: config.polling.timeout,
            job_name_label: config.polling.job_name_label,
            retention: Retention::new(
                config.polling.job_series_limit,
                config.polling.ended_job_window.as_secs_f64(),
            ),
            max_pages: config.polling.max_pages,
            full_resync_interval: config.polling.full_resync_interval,
            follow_every: FOLLOW_EVERY,
        }
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
/// within `settings.timeout`, merging each page into its record as it arrives and committing the
/// merge once the listing is complete. A failure is recorded as such (the staged pages are
/// dropped: the feed keeps its last-known values) and returned.
pub(crate) async fn poll_jobs(
    client: &PacedClient,
    datastore: &Datastore,
    kind: JobKind,
    settings: &PollSettings,
) -> Result<PollOutcome, PollFailure> {
    let feed = Feed::Jobs(kind);
    let _listing = datastore.feed_lock(feed).lock().await;
    let in_flight = InFlight::start(datastore, feed);
    let started = Instant::now();
    let plan = datastore.next_poll(kind, settings.full_resync_interval, settings.follow_every);
    let mut merge = datastore.start_listing(kind, plan, settings.retention, unix_now());
    let listed = within(
        settings.timeout,
        "the poll",
        list_planned(client, datastore, &mut merge, settings.max_pages),
    )
    .await;
    in_flight.done();
    let poll_seconds = started.elapsed().as_secs_f64();
    match listed {
        Ok(()) => {
            datastore.set_job_name_label(kind, settings.job_name_label);
            let outcome = datastore.commit_listing(merge, poll_seconds, unix_now());
            // A listing (the whole history, for a full one) just went through memory: hand what
            // it took back to the system (rate-limited, so this stays cheap in steady state).
            memory::release_freed();
            Ok(outcome)
        }
        Err(error) => {
            drop(merge);
            let news = datastore.record_failure(feed, &error, poll_seconds);
            datastore.expire_ended(kind, unix_now(), settings.retention.ended_window);
            Err(PollFailure { error, news })
        }
    }
}

/// The listings of one poll, each page staged into `merge` as it arrives: the main one
/// (everything, or jobs submitted after the settled point) and, when the plan follows the
/// stragglers, one per status they are in (submitted before the settled point) and one of the
/// submit-time range of those that changed status.
async fn list_planned(
    client: &PacedClient,
    datastore: &Datastore,
    merge: &mut ListingMerge,
    max_pages: usize,
) -> Result<(), PollError> {
    let (kind, id) = (merge.kind(), datastore.id.as_str());
    let main = JobFilter {
        submitted_after: match merge.plan().listing {
            Listing::Full => None,
            Listing::SubmittedAfter(after) => Some(after),
        },
        ..JobFilter::default()
    };
    list_jobs(client, kind, id, &main, max_pages, |page| {
        datastore.stage_page(merge, page);
    })
    .await?;
    let Some(follow) = merge.plan().follow.clone() else {
        return Ok(());
    };
    merge.start_follow_up();
    let by_status = follow.statuses.iter().map(|status| JobFilter {
        submitted_before: Some(follow.before),
        status: Some(status.clone()),
        ..JobFilter::default()
    });
    for filter in by_status {
        list_jobs(client, kind, id, &filter, max_pages, |page| {
            datastore.stage_follow_up_page(merge, page);
        })
        .await?;
    }
    if let Some((first, last)) = merge.missing_range() {
        let filter = JobFilter {
            submitted_after: Some(first - 1.0),
            submitted_before: Some(last + 1.0),
            status: None,
        };
        list_jobs(client, kind, id, &filter, max_pages, |page| {
            datastore.stage_follow_up_page(merge, page);
        })
        .await?;
    }
    Ok(())
}

/// One poll of export jobs (see [`poll_jobs`]).
#[cfg(any(test, feature = "test-support"))]
pub async fn poll_datastore(
    client: &PacedClient,
    datastore: &Datastore,
    settings: &PollSettings,
) -> Result<PollOutcome, PollFailure> {
    poll_jobs(client, datastore, JobKind::Export, settings).await
}

/// One `DescribeFHIRDatastore`; returns whether the feed recovered.
pub(crate) async fn poll_description(
    client: &PacedClient,
    datastore: &Datastore,
    settings: &PollSettings,
) -> Result<bool, PollFailure> {
    let _listing = datastore.feed_lock(Feed::Datastore).lock().await;
    let in_flight = InFlight::start(datastore, Feed::Datastore);
    let started = Instant::now();
    let described = within(
        settings.timeout,
        "the poll",
        describe_datastore(client, &datastore.id),
    )
    .await;
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

/// Bounds a whole poll (all pages, all retries) by `timeout`: `what` names it in the error.
pub(crate) async fn within<T>(
    timeout: Duration,
    what: &str,
    poll: impl std::future::Future<Output = Result<T, PollError>>,
) -> Result<T, PollError> {
    tokio::time::timeout(timeout, poll)
        .await
        .unwrap_or_else(|_| {
            Err(PollError::new(
                ErrorReason::Timeout,
                format!(
                    "{what} took longer than polling.timeout ({})",
                    humantime::format_duration(timeout)
                ),
            ))
        })
}

/// What made a poll: its schedule, or an event (`[events]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    Schedule,
    Event,
}

/// Logs the jobs a poll of `datastore`'s `kind` jobs counted as finishing: FAILED as a warning,
/// the other terminal statuses as information. Each line names the job (its id, and its name as
/// `job_names` (`polling.job_name_label`) shows it in the `job_name` label: as listed, hashed, or
/// not at all) and says what HealthLake said about it (`job_message`, bounded and on one line).
pub(crate) fn log_finished(
    datastore: &Datastore,
    kind: JobKind,
    outcome: &PollOutcome,
    trigger: Trigger,
    job_names: JobNameLabel,
) {
    let cause = match trigger {
        Trigger::Schedule => "",
        Trigger::Event => " (event)",
    };
    let (id, name, kind) = (&datastore.id, &datastore.name, kind.as_str());
    for job in &outcome.finished {
        let label = job_names.label(job.name.as_deref());
        let job_name = (!label.is_empty()).then_some(display(&label));
        let job_message = job.message.as_deref().map(display);
        let (job_id, status) = (&job.id, &job.status);
        if *status == JobStatus::Failed {
            tracing::warn!(datastore_id = %id, datastore_name = %name, job_id = %job_id, job_name, status = %status, job_message, "{kind} job failed{cause}");
        } else {
            tracing::info!(datastore_id = %id, datastore_name = %name, job_id = %job_id, job_name, status = %status, job_message, "{kind} job finished{cause}");
        }
    }
}
