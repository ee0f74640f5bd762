//! The exporter against the fake HealthLake, over loopback HTTP through the real SDK client:
//! the numbers a user alerts on, exactly.

mod common;

use healthlake_exporter::state::Feed;

use std::time::Duration;

use common::*;
use healthlake_fake::{FakeJob, Fault};

const WAIT: Duration = Duration::from_secs(20);

const STATUSES: [&str; 10] = [
    "SUBMITTED",
    "QUEUED",
    "IN_PROGRESS",
    "COMPLETED_WITH_ERRORS",
    "COMPLETED",
    "FAILED",
    "CANCEL_SUBMITTED",
    "CANCEL_IN_PROGRESS",
    "CANCEL_COMPLETED",
    "CANCEL_FAILED",
];

#[tokio::test]
async fn counts_every_status_across_pages_with_exact_values() {
    let (fake, server) = start_fake().await;
    let t0 = now() - 100_000.0;
    // 1,234 jobs: 3 pages of up to 500. Status i gets (i+1)*10 jobs; the rest are COMPLETED.
    let mut expected = [0u64; 10];
    for n in 0..1234 {
        let mut status_index = 4; // COMPLETED
        let mut budget = n;
        for (i, slot) in expected.iter().enumerate() {
            if budget < (i + 1) * 10 && *slot < ((i + 1) * 10) as u64 {
                status_index = i;
                break;
            }
            budget = budget.saturating_sub((i + 1) * 10);
        }
        expected[status_index] += 1;
        let status = STATUSES[status_index];
        let mut job = FakeJob::new(format!("job-{n:05}"), status, t0 + n as f64);
        if matches!(
            status,
            "COMPLETED" | "COMPLETED_WITH_ERRORS" | "FAILED" | "CANCEL_COMPLETED" | "CANCEL_FAILED"
        ) {
            job = job.ended(t0 + n as f64 + 60.0);
        }
        fake.add_job("bigstore", job);
    }
    fake.add_job("bigstore", FakeJob::new("job-new-status", "ARCHIVED", t0));
    let exporter = start_exporter(&config_text(
        &server.endpoint_url(),
        "",
        &[("bigstore", "big")],
    ))
    .await;
    polled(&exporter, "bigstore", Feed::EXPORTS, 1).await;

    let metrics = scrape(exporter.local_addr()).await;
    let mut total = 0.0;
    for (i, status) in STATUSES.iter().enumerate() {
        let value = metrics.value(&key(
            "healthlake_export_jobs",
            "bigstore",
            "big",
            &format!("status=\"{status}\""),
        ));
        assert_eq!(value, expected[i] as f64, "status {status}");
        total += value;
    }
    let archived = metrics.value(&key(
        "healthlake_export_jobs",
        "bigstore",
        "big",
        "status=\"ARCHIVED\"",
    ));
    assert_eq!(
        archived, 1.0,
        "an unknown status is counted under its own string"
    );
    assert_eq!(total + archived, 1235.0);
    assert_eq!(metrics.series("healthlake_export_jobs", &[]).len(), 11);
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_up",
            "bigstore",
            "big",
            "feed=\"export\""
        )),
        1.0
    );

    // The first poll listed 1,235 jobs in 3 pages of MaxResults=500.
    let requests: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.datastore_id.as_deref() == Some("bigstore"))
        .collect();
    assert!(requests.len() >= 3);
    assert!(requests.iter().all(|r| r.max_results == Some(500)));
    assert_eq!(requests[0].next_token, None);
    assert!(requests[1].next_token.is_some() && requests[2].next_token.is_some());
    exporter.shutdown().await;
}

#[tokio::test]
async fn durations_oldest_age_and_the_series_limit() {
    let (fake, server) = start_fake().await;
    let t = now();
    fake.add_job(
        "ds",
        FakeJob::new("done", "COMPLETED", t - 5000.0)
            .named("nightly")
            .ended(t - 5000.0 + 1234.5),
    );
    fake.add_job(
        "ds",
        FakeJob::new("running", "IN_PROGRESS", t - 600.0).named("adhoc"),
    );
    fake.add_job("ds", FakeJob::new("queued", "QUEUED", t - 60.0));
    fake.add_job(
        "ds",
        FakeJob::new("ancient", "FAILED", t - 90_000.0).ended(t - 89_000.0),
    );
    let exporter = start_exporter(&config_text(
        &server.endpoint_url(),
        "job_series_limit = 3",
        &[("ds", "main")],
    ))
    .await;
    polled(&exporter, "ds", Feed::EXPORTS, 1).await;
    let metrics = scrape(exporter.local_addr()).await;
    let name = "healthlake_export_job_duration_seconds";

    let done = metrics.value(&key(
        name,
        "ds",
        "main",
        "job_id=\"done\",job_name=\"nightly\",status=\"COMPLETED\"",
    ));
    assert_eq!(done, 1234.5);
    let running = metrics.value(&key(
        name,
        "ds",
        "main",
        "job_id=\"running\",job_name=\"adhoc\",status=\"IN_PROGRESS\"",
    ));
    assert!(
        (600.0..610.0).contains(&running),
        "running for ~600 s, got {running}"
    );
    let queued = metrics.value(&key(
        name,
        "ds",
        "main",
        "job_id=\"queued\",job_name=\"\",status=\"QUEUED\"",
    ));
    assert!(
        (60.0..70.0).contains(&queued),
        "queued for ~60 s, got {queued}"
    );
    // The limit is 3: the oldest-submitted job has no duration series.
    assert_eq!(metrics.series(name, &[]).len(), 3);
    assert!(metrics.series(name, &[("job_id", "ancient")]).is_empty());
    let age = metrics.value(&key(
        "healthlake_export_oldest_active_job_age_seconds",
        "ds",
        "main",
        "",
    ));
    assert!(
        (600.0..610.0).contains(&age),
        "oldest active job is ~600 s old, got {age}"
    );

    // A newer job pushes the oldest of the three out of the duration series.
    fake.add_job("ds", FakeJob::new("newest", "SUBMITTED", now()));
    let attempts = attempts(&exporter, "ds", Feed::EXPORTS);
    polled(&exporter, "ds", Feed::EXPORTS, attempts + 1).await;
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(metrics.series(name, &[]).len(), 3);
    assert!(metrics.series(name, &[("job_id", "done")]).is_empty());
    assert_eq!(metrics.series(name, &[("job_id", "newest")]).len(), 1);
    exporter.shutdown().await;
}

#[tokio::test]
async fn finished_counter_ignores_history_and_counts_new_failures() {
    let (fake, server) = start_fake().await;
    let t = now();
    fake.add_job(
        "ds",
        FakeJob::new("failed-before-start", "FAILED", t - 7200.0).ended(t - 7000.0),
    );
    fake.add_job(
        "ds",
        FakeJob::new("done-before-start", "COMPLETED", t - 3600.0).ended(t - 3000.0),
    );
    fake.add_job("ds", FakeJob::new("will-fail", "IN_PROGRESS", t - 300.0));
    let exporter =
        start_exporter(&config_text(&server.endpoint_url(), "", &[("ds", "main")])).await;
    polled(&exporter, "ds", Feed::EXPORTS, 1).await;
    let finished = |status: &str| {
        key(
            "healthlake_export_jobs_finished_total",
            "ds",
            "main",
            &format!("status=\"{status}\""),
        )
    };

    let metrics = scrape(exporter.local_addr()).await;
    for status in [
        "COMPLETED",
        "COMPLETED_WITH_ERRORS",
        "FAILED",
        "CANCEL_COMPLETED",
        "CANCEL_FAILED",
    ] {
        assert_eq!(
            metrics.value(&finished(status)),
            0.0,
            "{status} starts at 0"
        );
    }
    assert_eq!(
        metrics
            .series("healthlake_export_jobs_finished_total", &[])
            .len(),
        5
    );

    assert!(fake.set_job_status("ds", "will-fail", "FAILED", Some(now())));
    // A job first seen already terminal, after the first poll, counts too.
    fake.add_job(
        "ds",
        FakeJob::new("late-arrival", "COMPLETED_WITH_ERRORS", t - 100.0).ended(t - 50.0),
    );
    let metrics = eventually(WAIT, "the failure to be counted", || async {
        let metrics = scrape(exporter.local_addr()).await;
        (metrics.value(&finished("FAILED")) == 1.0).then_some(metrics)
    })
    .await;
    assert_eq!(metrics.value(&finished("COMPLETED_WITH_ERRORS")), 1.0);
    assert_eq!(metrics.value(&finished("COMPLETED")), 0.0);
    assert_eq!(
        metrics.value(&key(
            "healthlake_export_jobs",
            "ds",
            "main",
            "status=\"FAILED\""
        )),
        2.0
    );
    assert_eq!(
        metrics.value(&key(
            "healthlake_export_oldest_active_job_age_seconds",
            "ds",
            "main",
            ""
        )),
        0.0
    );

    // Further polls of the same history do not count it again.
    let attempts = attempts(&exporter, "ds", Feed::EXPORTS);
    polled(&exporter, "ds", Feed::EXPORTS, attempts + 2).await;
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(metrics.value(&finished("FAILED")), 1.0);
    exporter.shutdown().await;
}

#[tokio::test]
async fn each_datastore_is_signed_for_its_own_region() {
    let (fake, server) = start_fake().await;
    fake.add_datastore("east");
    fake.add_datastore("west");
    let text = format!(
        "{}[[datastores]]\nid = \"west\"\nregion = \"eu-west-1\"\n",
        config_text(&server.endpoint_url(), "", &[("east", "east")])
    );
    let exporter = start_exporter(&text).await;
    polled(&exporter, "east", Feed::EXPORTS, 1).await;
    polled(&exporter, "west", Feed::EXPORTS, 1).await;
    let regions = |id: &str| -> Vec<String> {
        fake.requests()
            .into_iter()
            .filter(|r| r.datastore_id.as_deref() == Some(id))
            .map(|r| r.region.unwrap_or_default())
            .collect()
    };
    assert!(!regions("east").is_empty());
    assert!(
        regions("east").iter().all(|r| r == "us-east-1"),
        "{:?}",
        regions("east")
    );
    assert!(!regions("west").is_empty());
    assert!(
        regions("west").iter().all(|r| r == "eu-west-1"),
        "{:?}",
        regions("west")
    );
    let metrics = scrape(exporter.local_addr()).await;
    // The name defaults to the id.
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_up",
            "west",
            "west",
            "feed=\"export\""
        )),
        1.0
    );
    exporter.shutdown().await;
}

/// One datastore per fault beside a healthy one: every reason classified, the healthy datastore
/// untouched, and the scrape prompt throughout.
#[tokio::test]
async fn every_error_reason_is_classified_and_isolated() {
    let (fake, server) = start_fake().await;
    let cases: &[(&str, Option<Fault>, &str)] = &[
        ("throttled", Some(Fault::Throttling), "throttled"),
        ("denied", Some(Fault::AccessDenied), "access_denied"),
        ("missing", Some(Fault::NotFound), "not_found"),
        ("invalid", Some(Fault::Validation), "validation"),
        ("broken", Some(Fault::InternalError), "server_error"),
        (
            "slow",
            Some(Fault::Delay(Duration::from_secs(30))),
            "timeout",
        ),
        ("expired", Some(Fault::ExpiredToken), "credentials"),
        ("garbled", Some(Fault::MalformedJson), "server_error"),
        ("reset", Some(Fault::ConnectionReset), "network"),
        ("newcode", Some(Fault::UnknownError), "other"),
        ("deleted", None, "not_found"), // never added to the fake: a real 404
    ];
    fake.add_job(
        "healthy",
        FakeJob::new("ok-1", "COMPLETED", now() - 100.0).ended(now() - 50.0),
    );
    for (id, fault, _) in cases {
        if *id != "deleted" {
            fake.add_datastore(id);
            fake.set_fault(id, fault.clone());
        }
    }
    let mut datastores = vec![("healthy", "healthy")];
    datastores.extend(cases.iter().map(|(id, _, _)| (*id, *id)));
    let mut text = config_text(&server.endpoint_url(), "concurrency = 16", &datastores);
    text = text.replace("timeout = \"5s\"", "timeout = \"2s\"");
    let exporter = start_exporter(&text).await;

    for (id, _) in &datastores {
        polled(&exporter, id, Feed::EXPORTS, 1).await;
    }
    // Coarse, so that a loaded CI machine cannot fail it: it catches a scrape that blocks, not a
    // slow one. Scrape latency is measured and printed by `examples/soak.rs` (percentiles, with
    // faults switching on and off); `a_slow_datastore_never_delays_a_healthy_one` scrapes while a
    // poll hangs.
    let started = std::time::Instant::now();
    let metrics = scrape(exporter.local_addr()).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "scrape is prompt"
    );
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_up",
            "healthy",
            "healthy",
            "feed=\"export\""
        )),
        1.0
    );
    assert_eq!(
        metrics.value(&key(
            "healthlake_export_jobs",
            "healthy",
            "healthy",
            "status=\"COMPLETED\""
        )),
        1.0
    );
    for (id, _, reason) in cases {
        assert_eq!(
            metrics.value(&key("healthlake_feed_up", id, id, "feed=\"export\"")),
            0.0,
            "{id} is down"
        );
        let errors = metrics.value(&key(
            "healthlake_feed_errors_total",
            id,
            id,
            &format!("feed=\"export\",reason=\"{reason}\""),
        ));
        assert!(
            errors >= 1.0,
            "{id} counted under reason {reason}:\n{}",
            metrics.text
        );
        let all: f64 = metrics
            .series(
                "healthlake_feed_errors_total",
                &[("feed", "export"), ("datastore_id", id)],
            )
            .iter()
            .map(|(_, v)| v)
            .sum();
        assert_eq!(all, errors, "{id}: no error under any other reason");
        assert_eq!(
            metrics
                .series(
                    "healthlake_feed_errors_total",
                    &[("feed", "export"), ("datastore_id", id)]
                )
                .len(),
            healthlake_exporter::model::ErrorReason::ALL.len()
        );
        // Never polled successfully: no job series yet, rather than made-up zeros.
        assert!(metrics
            .series("healthlake_export_jobs", &[("datastore_id", id)])
            .is_empty());
    }
    exporter.shutdown().await;
}

#[tokio::test]
async fn last_known_values_stay_while_polls_fail_and_recover() {
    let (fake, server) = start_fake().await;
    let t = now();
    fake.add_job(
        "ds",
        FakeJob::new("a", "COMPLETED", t - 500.0).ended(t - 400.0),
    );
    fake.add_job("ds", FakeJob::new("b", "IN_PROGRESS", t - 300.0));
    let exporter =
        start_exporter(&config_text(&server.endpoint_url(), "", &[("ds", "main")])).await;
    polled(&exporter, "ds", Feed::EXPORTS, 1).await;
    let good = scrape(exporter.local_addr()).await;
    let success_time = good.value(&key(
        "healthlake_feed_last_success_timestamp_seconds",
        "ds",
        "main",
        "feed=\"export\"",
    ));
    assert!((success_time - now()).abs() < 10.0);

    fake.set_fault("ds", Some(Fault::Throttling));
    let attempts = attempts(&exporter, "ds", Feed::EXPORTS);
    polled(&exporter, "ds", Feed::EXPORTS, attempts + 2).await;
    let bad = scrape(exporter.local_addr()).await;
    assert_eq!(
        bad.value(&key("healthlake_feed_up", "ds", "main", "feed=\"export\"")),
        0.0
    );
    assert!(
        bad.value(&key(
            "healthlake_feed_errors_total",
            "ds",
            "main",
            "feed=\"export\",reason=\"throttled\""
        )) >= 2.0
    );
    for status in STATUSES {
        let k = key(
            "healthlake_export_jobs",
            "ds",
            "main",
            &format!("status=\"{status}\""),
        );
        assert_eq!(
            bad.value(&k),
            good.value(&k),
            "{status} kept its last-known value"
        );
    }
    assert_eq!(
        bad.value(&key(
            "healthlake_feed_last_success_timestamp_seconds",
            "ds",
            "main",
            "feed=\"export\""
        )),
        success_time
    );
    assert_eq!(
        bad.series("healthlake_export_job_duration_seconds", &[])
            .len(),
        good.series("healthlake_export_job_duration_seconds", &[])
            .len()
    );

    fake.set_fault("ds", None);
    fake.set_job_status("ds", "b", "COMPLETED", Some(now()));
    let recovered = eventually(WAIT, "recovery", || async {
        let m = scrape(exporter.local_addr()).await;
        (m.value(&key("healthlake_feed_up", "ds", "main", "feed=\"export\"")) == 1.0).then_some(m)
    })
    .await;
    assert_eq!(
        recovered.value(&key(
            "healthlake_export_jobs",
            "ds",
            "main",
            "status=\"COMPLETED\""
        )),
        2.0
    );
    assert_eq!(
        recovered.value(&key(
            "healthlake_export_jobs_finished_total",
            "ds",
            "main",
            "status=\"COMPLETED\""
        )),
        1.0
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_slow_datastore_never_delays_a_healthy_one() {
    let (fake, server) = start_fake().await;
    fake.add_datastore("slow");
    fake.set_fault("slow", Some(Fault::Hang));
    fake.add_job(
        "fast",
        FakeJob::new("j", "COMPLETED", now() - 10.0).ended(now()),
    );
    // The hung datastore's first poll lasts until its attempt times out (5 s of a 10 s budget);
    // meanwhile the healthy one is polled every second.
    let text = config_text(
        &server.endpoint_url(),
        "concurrency = 2",
        &[("slow", "slow"), ("fast", "fast")],
    )
    .replace("timeout = \"5s\"", "timeout = \"10s\"");
    let exporter = start_exporter(&text).await;
    polled(&exporter, "fast", Feed::EXPORTS, 3).await; // three fast polls while the slow one is still stuck in its first
    assert_eq!(attempts(&exporter, "slow", Feed::EXPORTS), 0);
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_up",
            "fast",
            "fast",
            "feed=\"export\""
        )),
        1.0
    );
    polled(&exporter, "slow", Feed::EXPORTS, 1).await;
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_errors_total",
            "slow",
            "slow",
            "feed=\"export\",reason=\"timeout\""
        )),
        1.0
    );
    exporter.shutdown().await;
}
