//! Incremental polling is proven equal to a full re-listing: two states follow the same scripted
//! fake history, one listing everything every time, one listing only unsettled jobs, and every
//! series they export is compared after every step.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use healthlake_exporter::aws::{Clients, Target};
use healthlake_exporter::config::Config;
use healthlake_exporter::metrics::{self, Format};
use healthlake_exporter::poll::{poll_datastore, PollSettings};
use healthlake_exporter::state::State;
use healthlake_fake::{FakeHealthLake, FakeJob};

const DS: &str = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4";

/// Series that depend on when a poll ran, not on what it found.
fn comparable(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with("healthlake_poll_duration_seconds"))
        .filter(|l| !l.starts_with("healthlake_last_successful_poll_timestamp_seconds"))
        .map(str::to_owned)
        .collect()
}

struct Pair {
    fake: FakeHealthLake,
    target: Target,
    full: Arc<State>,
    incremental: Arc<State>,
    full_settings: PollSettings,
    incremental_settings: PollSettings,
}

impl Pair {
    /// Polls both states once; returns the comparable series of each and the requests the
    /// incremental poll made.
    async fn poll_both(&self, what: &str) -> (Vec<String>, Vec<String>, usize) {
        poll_datastore(
            &self.target,
            &self.full.datastores()[0],
            &self.full_settings,
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: full poll failed: {e:?}"));
        let before = self.fake.request_count(DS);
        poll_datastore(
            &self.target,
            &self.incremental.datastores()[0],
            &self.incremental_settings,
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: incremental poll failed: {e:?}"));
        let requests = self.fake.request_count(DS) - before;
        let at = now();
        let full = metrics::render_uncached(&self.full, at, Format::Prometheus);
        let incremental = metrics::render_uncached(&self.incremental, at, Format::Prometheus);
        (comparable(&full), comparable(&incremental), requests)
    }

    /// Polls both states once and asserts equal output; returns the incremental poll's requests.
    async fn step(&self, what: &str) -> usize {
        let (full, incremental, requests) = self.poll_both(what).await;
        assert_eq!(incremental, full, "after {what}");
        requests
    }
}

fn value(series: &[String], prefix: &str) -> f64 {
    series
        .iter()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {prefix}"))
}

async fn pair(fake: FakeHealthLake, endpoint: &str, job_series_limit: usize) -> Pair {
    let text = format!(
        "[polling]\njob_series_limit = {job_series_limit}\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n[[datastores]]\nid = \"{DS}\"\nname = \"main\"\n"
    );
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    let clients = Clients::build(&config, &test_options()).await.unwrap();
    let target = clients
        .for_target(&config.datastores[0].target)
        .unwrap()
        .clone();
    let settings = PollSettings::of(&config);
    Pair {
        fake,
        target,
        full: Arc::new(State::new(&config, 0.0)),
        incremental: Arc::new(State::new(&config, 0.0)),
        full_settings: PollSettings {
            full_resync_interval: Duration::ZERO,
            ..settings.clone()
        },
        incremental_settings: settings,
    }
}

#[tokio::test]
async fn incremental_polling_exports_exactly_what_a_full_listing_does() {
    let (fake, server) = start_fake().await;
    let t = now();
    // 1,200 finished jobs over the last 50 days (3 pages), one running, one queued.
    for n in 0..1200 {
        let submitted = t - 50.0 * 86_400.0 + n as f64 * 3600.0;
        let status = match n % 40 {
            0 => "FAILED",
            1 => "COMPLETED_WITH_ERRORS",
            2 => "CANCEL_COMPLETED",
            _ => "COMPLETED",
        };
        fake.add_job(
            DS,
            FakeJob::new(format!("old{n:05}"), status, submitted)
                .named(format!("nightly-{n}"))
                .ended(submitted + 1800.0),
        );
    }
    fake.add_job(
        DS,
        FakeJob::new("running", "IN_PROGRESS", t - 7200.0).named("big"),
    );
    fake.add_job(DS, FakeJob::new("queued", "QUEUED", t - 600.0));
    let pair = pair(fake.clone(), &server.endpoint_url(), 5).await;

    let first = pair.step("the first poll").await;
    assert_eq!(
        first, 3,
        "the first poll lists everything: 1,202 jobs in 3 pages"
    );
    assert_eq!(
        pair.step("a poll with no change").await,
        1,
        "steady state: one call"
    );

    fake.set_job_status(DS, "running", "COMPLETED", Some(now()));
    fake.set_job_status(DS, "queued", "IN_PROGRESS", None);
    fake.add_job(DS, FakeJob::new("new1", "SUBMITTED", now()).named("adhoc"));
    assert_eq!(pair.step("jobs finishing and a new one").await, 1);

    fake.set_job_status(DS, "queued", "FAILED", Some(now()));
    fake.set_job_status(DS, "new1", "QUEUED", None);
    // A job that HealthLake lists late: submitted before the newest job seen so far.
    fake.add_job(
        DS,
        FakeJob::new("late1", "COMPLETED", now() - 300.0).ended(now() - 10.0),
    );
    pair.step("a failure and a late-appearing job").await;

    fake.set_job_status(DS, "new1", "CANCEL_SUBMITTED", None);
    fake.add_job(DS, FakeJob::new("new2", "ARCHIVED", now()));
    pair.step("a cancel request and a status from a newer API")
        .await;

    fake.set_job_status(DS, "new1", "CANCEL_COMPLETED", Some(now()));
    fake.set_job_status(DS, "new2", "COMPLETED", Some(now()));
    for n in 0..7 {
        fake.add_job(
            DS,
            FakeJob::new(format!("burst{n}"), "COMPLETED", now() + n as f64).ended(now() + 60.0),
        );
    }
    pair.step("a burst of new jobs pushing old ones out of the duration series")
        .await;
    assert_eq!(pair.step("steady again").await, 1);

    // Nothing is running now; a job listed late, submitted a minute before the newest one.
    let newest = fake
        .jobs(DS)
        .iter()
        .map(|j| j.submit_time)
        .fold(f64::MIN, f64::max);
    fake.add_job(
        DS,
        FakeJob::new("late2", "FAILED", newest - 60.0).ended(newest),
    );
    assert_eq!(pair.step("a late job while nothing runs").await, 1);

    let counter = |state: &Arc<State>| {
        metrics::render_uncached(state, now(), Format::Prometheus)
            .lines()
            .find(|l| {
                l.starts_with("healthlake_export_jobs_finished_total")
                    && l.contains("status=\"FAILED\"")
            })
            .map(str::to_owned)
    };
    assert!(
        counter(&pair.incremental).unwrap().ends_with(" 2"),
        "the queued job's failure and the late failed job, each counted once"
    );
}

/// A job that appears only after it has settled (later than the late-job window) is invisible to
/// incremental polls; the next full listing catches it, counts it as finished, and both agree again.
#[tokio::test]
async fn a_full_resync_catches_what_incremental_polls_cannot_see() {
    let (fake, server) = start_fake().await;
    let t = now();
    for n in 0..50 {
        let submitted = t - 86_400.0 + n as f64;
        fake.add_job(
            DS,
            FakeJob::new(format!("j{n}"), "COMPLETED", submitted).ended(submitted + 60.0),
        );
    }
    let mut pair = pair(fake.clone(), &server.endpoint_url(), 100).await;
    pair.step("the first poll").await;
    pair.step("a steady poll").await;

    // Listed only now, though submitted hours before every other job: long settled.
    fake.add_job(
        DS,
        FakeJob::new("very-late", "FAILED", t - 100_000.0).ended(t - 99_000.0),
    );
    let failed = "healthlake_export_jobs{datastore_id=\"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4\",datastore_name=\"main\",status=\"FAILED\"}";
    let counted = "healthlake_export_jobs_finished_total{datastore_id=\"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4\",datastore_name=\"main\",status=\"FAILED\"}";
    let (full, incremental, requests) = pair.poll_both("a very late job").await;
    assert_eq!(requests, 1);
    assert_eq!(value(&full, failed), 1.0);
    assert_eq!(value(&full, counted), 1.0);
    assert_eq!(
        value(&incremental, failed),
        0.0,
        "an incremental poll cannot see a settled job"
    );

    // The periodic full listing (forced here) catches up: counts and counter agree again.
    pair.incremental_settings.full_resync_interval = Duration::ZERO;
    pair.step("a full resync").await;
    pair.incremental_settings.full_resync_interval = Duration::from_secs(3600);
    assert_eq!(pair.step("back to incremental").await, 1);
}
