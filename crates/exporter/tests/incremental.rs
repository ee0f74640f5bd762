//! Incremental polling is proven equal to a full re-listing: two states follow the same scripted
//! fake history, one listing everything every time, one listing only unsettled jobs (and following
//! old unfinished jobs with filtered listings), and every series they export is compared. The
//! histories include a weeks-old stuck job, 20 % of the jobs unfinished over 20 days, a burst of
//! submissions, duplicated listings and a job missing from one listing; the API calls of the
//! incremental state are counted against the budget (≤ 1.1, 1.2, 1.5 calls per poll).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use healthlake_exporter::aws::{Clients, PacedClient};
use healthlake_exporter::config::Config;
use healthlake_exporter::metrics::{self, Format};
use healthlake_exporter::poll::{poll_datastore, PollSettings};
use healthlake_exporter::state::{State, FOLLOW_EVERY};
use healthlake_fake::{FakeHealthLake, FakeJob, Fault};

const DS: &str = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4";

/// Series that depend on when a poll ran, not on what it found.
fn comparable(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with("healthlake_feed_last_poll_duration_seconds"))
        .filter(|l| !l.starts_with("healthlake_feed_last_success_timestamp_seconds"))
        // The process's API usage: both states' calls, and other tests' running meanwhile.
        .filter(|l| !l.starts_with("healthlake_api_"))
        .map(str::to_owned)
        .collect()
}

struct Pair {
    fake: FakeHealthLake,
    target: PacedClient,
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
        assert_same(&incremental, &full, what);
        requests
    }
}

/// Asserts equal series, showing only the lines that differ.
fn assert_same(incremental: &[String], full: &[String], what: &str) {
    if incremental != full {
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter().filter(|l| !b.contains(l)).cloned().collect()
        };
        panic!(
            "after {what}: the incremental state differs\nonly incremental: {:#?}\nonly full: {:#?}",
            only(incremental, full),
            only(full, incremental)
        );
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
        // Old unfinished jobs followed on every poll, so that both states agree after every
        // step; the tests of the call budget use the default.
        incremental_settings: PollSettings {
            follow_every: 1,
            ..settings
        },
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
        2,
        "steady state: one call for the window, one for the old running job's status"
    );

    fake.set_job_status(DS, "running", "COMPLETED", Some(now()));
    fake.set_job_status(DS, "queued", "IN_PROGRESS", None);
    fake.add_job(DS, FakeJob::new("new1", "SUBMITTED", now()).named("adhoc"));
    assert_eq!(
        pair.step("jobs finishing and a new one").await,
        3,
        "the old running job left IN_PROGRESS: one more listing finds its new status"
    );

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

/// Name of a series as the tests look it up: `family{datastore labels,extra}`.
fn series(family: &str, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!("{family}{{datastore_id=\"{DS}\",datastore_name=\"main\"{sep}{extra}}}")
}

/// 2,000 finished jobs, one an hour back from three hours ago (~83 days), 2 % FAILED.
fn seed_finished_history(fake: &FakeHealthLake, t: f64) {
    for n in 0..2000 {
        let submitted = t - 3.0 * 3600.0 - n as f64 * 3600.0;
        let status = if n % 50 == 0 { "FAILED" } else { "COMPLETED" };
        fake.add_job(
            DS,
            FakeJob::new(format!("h{n:05}"), status, submitted)
                .named(format!("nightly-{n}"))
                .ended(submitted + 900.0),
        );
    }
}

/// Polls both states `polls` times; the incremental one with the default follow rhythm. Compares
/// them after every poll that followed the old unfinished jobs; returns the incremental calls.
async fn steady_polls(pair: &Pair, polls: u32, what: &str) -> usize {
    let mut calls = 0;
    for n in 1..=polls {
        let (full, incremental, requests) = pair.poll_both(what).await;
        calls += requests;
        if n % FOLLOW_EVERY == 0 {
            assert_same(
                &incremental,
                &full,
                &format!("{what}: poll {n}, which followed"),
            );
        }
    }
    calls
}

async fn default_pair(fake: &FakeHealthLake, endpoint: &str) -> Pair {
    let mut pair = pair(fake.clone(), endpoint, 100).await;
    pair.incremental_settings.follow_every = FOLLOW_EVERY;
    pair
}

#[tokio::test]
async fn plain_history_costs_one_call_per_poll() {
    let (fake, server) = start_fake().await;
    let t = now();
    seed_finished_history(&fake, t);
    fake.add_job(DS, FakeJob::new("today", "IN_PROGRESS", t - 300.0));
    let pair = default_pair(&fake, &server.endpoint_url()).await;
    assert_eq!(pair.step("the first poll").await, 5, "2,001 jobs: 5 pages");
    let calls = steady_polls(&pair, 2 * FOLLOW_EVERY, "plain history").await;
    assert_eq!(calls, 2 * FOLLOW_EVERY as usize, "one call per poll");
}

/// One export stuck IN_PROGRESS for 19 days: it no longer pins the incremental listing to the
/// whole history; it is followed with one `JobStatus` listing every FOLLOW_EVERY polls, and its
/// failure shows (counted once, with its end-timestamp series) within FOLLOW_EVERY polls.
#[tokio::test]
async fn a_weeks_old_stuck_job_costs_one_call_in_eight_polls() {
    let (fake, server) = start_fake().await;
    let t = now();
    seed_finished_history(&fake, t);
    fake.add_job(
        DS,
        FakeJob::new("stuck", "IN_PROGRESS", t - 19.0 * 86_400.0).named("stuck-export"),
    );
    fake.add_job(DS, FakeJob::new("today", "IN_PROGRESS", t - 300.0));
    let pair = default_pair(&fake, &server.endpoint_url()).await;
    pair.step("the first poll").await;
    let polls = 2 * FOLLOW_EVERY;
    let calls = steady_polls(&pair, polls, "a stuck job").await;
    assert_eq!(
        calls,
        polls as usize + 2,
        "one call per poll, one more per follow"
    );
    assert!(calls as f64 / polls as f64 <= 1.2);
    let (_, incremental, _) = pair.poll_both("a stuck job").await;
    assert!(
        value(
            &incremental,
            &series("healthlake_export_oldest_active_job_age_seconds", "")
        ) > 18.0 * 86_400.0,
        "the stuck job is still the oldest active one"
    );

    // It fails: within FOLLOW_EVERY polls the incremental state counts it, once.
    fake.set_job_status(DS, "stuck", "FAILED", Some(now()));
    let counted = series("healthlake_export_jobs_finished_total", "status=\"FAILED\"");
    let end = series(
        "healthlake_export_job_end_timestamp_seconds",
        "job_id=\"stuck\",job_name=\"stuck-export\",status=\"FAILED\"",
    );
    let mut polls_until_seen = None;
    for n in 1..=FOLLOW_EVERY {
        let (full, incremental, _) = pair.poll_both("the stuck job failed").await;
        assert_eq!(value(&full, &counted), 1.0);
        if value(&incremental, &counted) == 1.0 {
            assert_same(&incremental, &full, "the follow that saw the failure");
            assert!(incremental.iter().any(|l| l.starts_with(&end)), "{end}");
            polls_until_seen = Some(n);
            break;
        }
    }
    assert!(
        polls_until_seen.is_some(),
        "the failure of a weeks-old job shows within {FOLLOW_EVERY} polls"
    );
    // Nothing old is unfinished any more: one call per poll.
    assert_eq!(
        steady_polls(&pair, FOLLOW_EVERY, "after the failure").await,
        8
    );
}

/// A fifth of 2,000 jobs unfinished (SUBMITTED, QUEUED, IN_PROGRESS), spread over 20 days.
#[tokio::test]
async fn a_fifth_of_the_jobs_unfinished_over_twenty_days() {
    let (fake, server) = start_fake().await;
    let t = now();
    let statuses = ["SUBMITTED", "QUEUED", "IN_PROGRESS"];
    for n in 0..2000 {
        let submitted = t - 600.0 - n as f64 * 864.0;
        let job = if n % 5 == 0 {
            FakeJob::new(format!("u{n:05}"), statuses[(n / 5) % 3], submitted)
        } else {
            FakeJob::new(format!("u{n:05}"), "COMPLETED", submitted).ended(submitted + 300.0)
        };
        fake.add_job(DS, job);
    }
    let pair = default_pair(&fake, &server.endpoint_url()).await;
    pair.step("the first poll").await;
    let polls = 2 * FOLLOW_EVERY;
    let calls = steady_polls(&pair, polls, "400 unfinished jobs").await;
    assert_eq!(
        calls,
        polls as usize + 2 * 3,
        "one call per poll, three status listings per follow"
    );
    assert!(calls as f64 / polls as f64 <= 1.5);

    // Some of them move on (one finishes, one is cancelled): seen at the next follow.
    fake.set_job_status(DS, "u01000", "COMPLETED", Some(now()));
    fake.set_job_status(DS, "u01005", "CANCEL_SUBMITTED", None);
    fake.set_job_status(DS, "u01010", "FAILED", Some(now()));
    steady_polls(&pair, FOLLOW_EVERY, "transitions of old jobs").await;
    let (_, incremental, _) = pair.poll_both("after transitions").await;
    assert_eq!(
        value(
            &incremental,
            &series("healthlake_export_jobs_finished_total", "status=\"FAILED\"")
        ),
        1.0
    );
    assert_eq!(
        value(
            &incremental,
            &series("healthlake_export_jobs", "status=\"CANCEL_SUBMITTED\"")
        ),
        1.0
    );
}

/// 1,200 jobs submitted within one interval cost their three pages once: the late-job window
/// then holds only the newest ones, and the listing is one page again.
#[tokio::test]
async fn a_burst_costs_its_pages_once() {
    let (fake, server) = start_fake().await;
    let t = now();
    seed_finished_history(&fake, t);
    let pair = default_pair(&fake, &server.endpoint_url()).await;
    pair.step("the first poll").await;
    assert_eq!(pair.step("steady").await, 1);
    for n in 0..1200 {
        let submitted = now() - 60.0 + n as f64 * 0.05;
        let job = FakeJob::new(format!("burst{n:05}"), "COMPLETED", submitted).ended(now());
        fake.add_job(DS, job);
    }
    assert_eq!(pair.step("the burst").await, 3, "1,200 new jobs: 3 pages");
    for n in 0..5 {
        assert_eq!(pair.step(&format!("after the burst ({n})")).await, 1);
    }
    // A burst of unfinished jobs: the ones behind the newest 250 are followed by status.
    let newest = fake
        .jobs(DS)
        .iter()
        .map(|j| j.submit_time)
        .fold(f64::MIN, f64::max);
    for n in 0..1200 {
        let submitted = newest + 1.0 + n as f64 * 0.02;
        fake.add_job(
            DS,
            FakeJob::new(format!("queued{n:05}"), "QUEUED", submitted),
        );
    }
    assert_eq!(pair.step("an unfinished burst").await, 3);
    let calls = steady_polls(&pair, FOLLOW_EVERY, "an unfinished burst").await;
    // 950 QUEUED jobs behind the newest 250 take two pages; the listings' one-second margins
    // (50 jobs a second here) may add a third.
    assert!(
        (FOLLOW_EVERY as usize + 2..=FOLLOW_EVERY as usize + 3).contains(&calls),
        "one call per poll, two or three pages of QUEUED jobs per follow: {calls}"
    );
}

/// A job listed twice in one listing, or missing from one listing and back in the next, is one
/// job: counted once by both states, whatever the listing order.
#[tokio::test]
async fn duplicated_and_missing_jobs_are_counted_once() {
    let (fake, server) = start_fake().await;
    let t = now();
    for n in 0..30 {
        fake.add_job(
            DS,
            FakeJob::new(format!("j{n:02}"), "IN_PROGRESS", t - 600.0 + n as f64),
        );
    }
    let pair = pair(fake.clone(), &server.endpoint_url(), 100).await;
    pair.step("the first poll").await;
    let failed = series("healthlake_export_jobs_finished_total", "status=\"FAILED\"");
    let in_progress = series("healthlake_export_jobs", "status=\"IN_PROGRESS\"");

    fake.set_fault(DS, Some(Fault::DuplicateJobs));
    for id in ["j00", "j01", "j02"] {
        fake.set_job_status(DS, id, "FAILED", Some(now()));
    }
    let (full, incremental, _) = pair.poll_both("duplicated listing").await;
    assert_same(&incremental, &full, "duplicated listing");
    assert_eq!(value(&full, &failed), 3.0, "each failed job counted once");
    assert_eq!(value(&full, &in_progress), 27.0, "no job counted twice");
    pair.step("duplicated listing again").await;
    fake.set_fault(DS, None);

    // A failed job missing from one listing and back in the next is not counted again.
    let gone = fake.jobs(DS).into_iter().find(|j| j.id == "j00").unwrap();
    assert!(fake.remove_job(DS, "j00"));
    pair.step("a failed job missing").await;
    fake.add_job(DS, gone);
    let (full, incremental, _) = pair.poll_both("the failed job back").await;
    assert_same(&incremental, &full, "the failed job back");
    assert_eq!(
        value(&full, &failed),
        3.0,
        "a job that came back is not counted again"
    );
}
