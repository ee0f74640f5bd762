//! Faults and reloads: the exporter keeps serving the truth it last knew, says what is wrong, and
//! recovers alone. Everything over loopback against the fake, through the real SDK client.

mod common;

use healthlake_exporter::state::Feed;

use std::time::{Duration, Instant};

use common::*;
use healthlake_exporter::aws::ClientOptions;
use healthlake_exporter::Exporter;
use healthlake_fake::{FakeJob, Fault};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_nexttoken_loop_and_too_many_pages_end_the_poll_keeping_last_values() {
    let (fake, server) = start_fake().await;
    for n in 0..1234 {
        fake.add_job(
            "paged",
            FakeJob::new(format!("j{n}"), "COMPLETED", 1000.0 + n as f64).ended(2000.0 + n as f64),
        );
    }
    fake.add_job(
        "looping",
        FakeJob::new("j", "COMPLETED", 1000.0).ended(2000.0),
    );
    let text = config_text(
        &server.endpoint_url(),
        "max_pages = 2",
        &[("paged", "paged"), ("looping", "looping")],
    );
    let exporter = start_exporter(&text).await;
    polled(&exporter, "paged", Feed::EXPORTS, 1).await;
    polled(&exporter, "looping", Feed::EXPORTS, 1).await;
    let metrics = scrape(exporter.local_addr()).await;
    // 1,234 jobs need 3 pages of 500: more than max_pages = 2.
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_up",
            "paged",
            "paged",
            "feed=\"export\""
        )),
        0.0
    );
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_errors_total",
            "paged",
            "paged",
            "feed=\"export\",reason=\"server_error\""
        )),
        1.0
    );
    assert_eq!(
        fake.request_count("paged"),
        2,
        "stopped after max_pages requests"
    );
    let message = last_error(&exporter, "paged", Feed::EXPORTS);
    assert!(message.contains("polling.max_pages (2)"), "{message}");

    // A good poll first, then a token loop: the loop is an error and the good values stay.
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_up",
            "looping",
            "looping",
            "feed=\"export\""
        )),
        1.0
    );
    fake.set_fault("looping", Some(Fault::NextTokenLoop));
    let before = attempts(&exporter, "looping", Feed::EXPORTS);
    polled(&exporter, "looping", Feed::EXPORTS, before + 1).await;
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_up",
            "looping",
            "looping",
            "feed=\"export\""
        )),
        0.0
    );
    assert_eq!(
        metrics.value(&key(
            "healthlake_export_jobs",
            "looping",
            "looping",
            "status=\"COMPLETED\""
        )),
        1.0
    );
    let message = last_error(&exporter, "looping", Feed::EXPORTS);
    assert!(message.contains("pagination loop"), "{message}");
    exporter.shutdown().await;
}

#[tokio::test]
async fn an_oversized_response_is_refused_not_buffered() {
    let (fake, server) = start_fake().await;
    fake.add_datastore("huge");
    fake.set_fault("huge", Some(Fault::Oversized(40 * 1024 * 1024)));
    let exporter = start_exporter(&config_text(
        &server.endpoint_url(),
        "",
        &[("huge", "huge")],
    ))
    .await;
    polled(&exporter, "huge", Feed::EXPORTS, 1).await;
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_errors_total",
            "huge",
            "huge",
            "feed=\"export\",reason=\"server_error\""
        )),
        1.0
    );
    let message = last_error(&exporter, "huge", Feed::EXPORTS);
    assert!(message.contains("oversized response"), "{message}");
    exporter.shutdown().await;
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_and_counted_once_per_poll() {
    let (fake, server) = start_fake().await;
    fake.add_datastore("throttled");
    fake.set_fault("throttled", Some(Fault::Throttling));
    // A long interval: exactly one poll happens during the test.
    let text = config_text(
        &server.endpoint_url(),
        "max_attempts = 3",
        &[("throttled", "t")],
    )
    .replace("interval = \"1s\"", "interval = \"1h\"");
    let config =
        healthlake_exporter::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let options = ClientOptions {
        max_attempts: None,
        ..test_options()
    };
    let exporter = Exporter::start(config, options).await.unwrap();
    polled(&exporter, "throttled", Feed::EXPORTS, 1).await;
    assert_eq!(
        fake.request_count("throttled"),
        3,
        "one poll = three attempts"
    );
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_errors_total",
            "throttled",
            "t",
            "feed=\"export\",reason=\"throttled\""
        )),
        1.0,
        "one error per poll, not per retry"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_failing_datastore_backs_off_while_a_healthy_one_keeps_its_interval() {
    let (fake, server) = start_fake().await;
    fake.add_datastore("throttled");
    fake.set_fault("throttled", Some(Fault::Throttling));
    fake.add_job(
        "healthy",
        FakeJob::new("j", "COMPLETED", 1000.0).ended(2000.0),
    );
    let text = config_text(
        &server.endpoint_url(),
        "",
        &[("throttled", "t"), ("healthy", "h")],
    );
    let exporter = start_exporter(&text).await;
    polled(&exporter, "throttled", Feed::EXPORTS, 1).await;
    // While the healthy datastore is polled six more times (every second), the throttled one
    // backs off: after its first failure it waits 1 s, then 2 s, 4 s, 8 s... (each ±10 %), so
    // in T seconds it is polled at most log2(T / 0.9 + 1) more times, however loaded the machine
    // (a wait can only run long), where without backoff it would be polled six times too.
    let started = Instant::now();
    let healthy_before = attempts(&exporter, "healthy", Feed::EXPORTS);
    let throttled_before = attempts(&exporter, "throttled", Feed::EXPORTS);
    polled(&exporter, "healthy", Feed::EXPORTS, healthy_before + 6).await;
    let throttled = attempts(&exporter, "throttled", Feed::EXPORTS) - throttled_before;
    // (+1 s: from its first poll to `started`, the moment the test saw that poll.)
    let elapsed = started.elapsed().as_secs_f64() + 1.0;
    let most = (elapsed / 0.9 + 1.0).log2().floor() as u64;
    assert!(
        throttled <= most,
        "throttled polled {throttled} times in {elapsed:.1} s; its backoff allows {most}"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn the_request_budget_paces_pages() {
    let (fake, server) = start_fake().await;
    for n in 0..1234 {
        fake.add_job(
            "paced",
            FakeJob::new(format!("j{n}"), "COMPLETED", 1000.0 + n as f64).ended(2000.0 + n as f64),
        );
    }
    let text = config_text(
        &server.endpoint_url(),
        "max_requests_per_second = 2",
        &[("paced", "p")],
    );
    let exporter = start_exporter(&text).await;
    polled(&exporter, "paced", Feed::EXPORTS, 1).await;
    let metrics = scrape(exporter.local_addr()).await;
    // Three pages at two requests per second: the third waits a full second after the first.
    let seconds = metrics.value(&key(
        "healthlake_feed_last_poll_duration_seconds",
        "paced",
        "p",
        "feed=\"export\"",
    ));
    assert!(
        seconds >= 0.95,
        "three pages at 2 requests/s took {seconds} s"
    );
    assert_eq!(
        metrics.value(&key(
            "healthlake_export_jobs",
            "paced",
            "p",
            "status=\"COMPLETED\""
        )),
        1234.0
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn reload_applies_a_good_file_and_rejects_a_bad_one() {
    let (fake, server) = start_fake().await;
    let t = now();
    fake.add_job("keep", FakeJob::new("k1", "IN_PROGRESS", t - 100.0));
    fake.add_job(
        "drop",
        FakeJob::new("d1", "COMPLETED", t - 100.0).ended(t - 50.0),
    );
    fake.add_job(
        "added",
        FakeJob::new("a1", "FAILED", t - 100.0).ended(t - 50.0),
    );
    let endpoint = server.endpoint_url();
    let dir = TestDir::new("reliability");
    let path = dir.write(
        "reload.toml",
        config_text(&endpoint, "", &[("keep", "keep"), ("drop", "drop")]),
    );
    let exporter =
        Exporter::start_from_file(&path, Some("127.0.0.1:0".parse().unwrap()), test_options())
            .await
            .unwrap();
    polled(&exporter, "keep", Feed::EXPORTS, 1).await;
    polled(&exporter, "drop", Feed::EXPORTS, 1).await;
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value("healthlake_exporter_config_last_reload_successful"),
        1.0
    );
    let loaded_at =
        metrics.value("healthlake_exporter_config_last_reload_success_timestamp_seconds");
    fake.set_job_status("keep", "k1", "FAILED", Some(now()));
    eventually(WAIT, "the failure to be counted", || async {
        let m = scrape(exporter.local_addr()).await;
        (m.value(&key(
            "healthlake_export_jobs_finished_total",
            "keep",
            "keep",
            "status=\"FAILED\"",
        )) == 1.0)
            .then_some(())
    })
    .await;

    // A good file: one datastore renamed, one removed, one added, a new interval.
    std::fs::write(
        &path,
        config_text(&endpoint, "", &[("keep", "kept"), ("added", "added")])
            .replace("interval = \"1s\"", "interval = \"2s\""),
    )
    .unwrap();
    exporter
        .reload_handle()
        .reload()
        .await
        .expect("a valid file reloads");
    polled(&exporter, "added", Feed::EXPORTS, 1).await;
    let metrics = scrape(exporter.local_addr()).await;
    assert!(
        metrics
            .series(
                "healthlake_feed_up",
                &[("feed", "export"), ("datastore_id", "drop")]
            )
            .is_empty(),
        "removed datastore's series are gone"
    );
    assert!(metrics
        .series("healthlake_export_jobs", &[("datastore_id", "drop")])
        .is_empty());
    assert!(
        metrics
            .series("healthlake_export_jobs", &[("datastore_name", "keep")])
            .is_empty(),
        "old name gone"
    );
    // The kept datastore keeps its counters under its new name; the new one starts at 0.
    assert_eq!(
        metrics.value(&key(
            "healthlake_export_jobs_finished_total",
            "keep",
            "kept",
            "status=\"FAILED\""
        )),
        1.0
    );
    assert_eq!(
        metrics.value(&key(
            "healthlake_export_jobs_finished_total",
            "added",
            "added",
            "status=\"FAILED\""
        )),
        0.0
    );
    assert_eq!(
        metrics.value(&key(
            "healthlake_export_jobs",
            "added",
            "added",
            "status=\"FAILED\""
        )),
        1.0
    );
    assert_eq!(
        metrics.value("healthlake_exporter_config_last_reload_successful"),
        1.0
    );
    assert!(
        metrics.value("healthlake_exporter_config_last_reload_success_timestamp_seconds")
            >= loaded_at
    );

    // A bad file: rejected with a message naming the problem; the running config stays.
    std::fs::write(&path, "[polling]\nintervall = \"5s\"\n").unwrap();
    let error = exporter
        .reload_handle()
        .reload()
        .await
        .expect_err("a typo is rejected")
        .to_string();
    assert!(
        error.contains("reload.toml:2:1: unknown field `intervall`"),
        "{error}"
    );
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value("healthlake_exporter_config_last_reload_successful"),
        0.0
    );
    let before = attempts(&exporter, "added", Feed::EXPORTS);
    polled(&exporter, "added", Feed::EXPORTS, before + 1).await;
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_up",
            "keep",
            "kept",
            "feed=\"export\""
        )),
        1.0
    );

    // Over HTTP, reloading is off unless the running configuration enables it.
    let fixed = config_text(&endpoint, "", &[("keep", "kept")])
        .replace("[server]\n", "[server]\nenable_reload = true\n");
    std::fs::write(&path, &fixed).unwrap();
    let (status, _, body) = post_reload(exporter.local_addr()).await;
    assert_eq!(status, 403);
    assert!(
        body.contains("set server.enable_reload = true, or send SIGHUP"),
        "{body}"
    );
    // Fixing the file (and enabling HTTP reloads) by the reload handle, as SIGHUP does...
    exporter
        .reload_handle()
        .reload()
        .await
        .expect("the fixed file loads");
    // ... then asking over HTTP, as Prometheus users do: POST only.
    let (status, head, _) = http_request(exporter.local_addr(), "GET", "/-/reload", &[]).await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: post"), "{head}");
    let (status, _, _) = http_request(exporter.local_addr(), "PUT", "/-/reload", &[]).await;
    assert_eq!(status, 405);
    let (status, _, body) = post_reload(exporter.local_addr()).await;
    assert_eq!((status, body.as_str()), (200, "configuration reloaded\n"));
    // A browser on another site cannot reload.
    let (status, _, _) = http_request(
        exporter.local_addr(),
        "POST",
        "/-/reload",
        &[("Content-Length", "0"), ("Origin", "https://evil.example")],
    )
    .await;
    assert_eq!(status, 403);
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value("healthlake_exporter_config_last_reload_successful"),
        1.0
    );
    assert!(metrics
        .series(
            "healthlake_feed_up",
            &[("feed", "export"), ("datastore_id", "added")]
        )
        .is_empty());

    // A bad file over HTTP: 500 with the reason.
    std::fs::write(&path, "[[datastores]]\nid = \"\"\n").unwrap();
    let (status, _, body) = post_reload(exporter.local_addr()).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("reload.toml:2:6: datastores[0].id: has 0 characters"),
        "{body}"
    );
    // Finding 9 (issue 18): the body names the key and the line, never the value.
    std::fs::write(
        &path,
        "[aws]\nrole_arn = \"arn:aws:iam::hunter2:role/x\"\n[[datastores]]\nid = \"x\"\n",
    )
    .unwrap();
    let (status, _, body) = post_reload(exporter.local_addr()).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("reload.toml:2:12: aws.role_arn: is not an IAM role ARN")
            && !body.contains("hunter2"),
        "{body}"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn recovery_is_automatic_once_a_fault_clears() {
    let (fake, server) = start_fake().await;
    let kinds = [
        Fault::InternalError,
        Fault::AccessDenied,
        Fault::MalformedJson,
        Fault::ConnectionReset,
        Fault::ExpiredToken,
    ];
    let ids: Vec<String> = (0..kinds.len()).map(|i| format!("ds{i}")).collect();
    for (id, fault) in ids.iter().zip(kinds) {
        fake.add_job(id, FakeJob::new("j", "COMPLETED", 1000.0).ended(2000.0));
        fake.set_fault(id, Some(fault));
    }
    let pairs: Vec<(&str, &str)> = ids.iter().map(|i| (i.as_str(), i.as_str())).collect();
    let exporter = start_exporter(&config_text(&server.endpoint_url(), "", &pairs)).await;
    for id in &ids {
        polled(&exporter, id, Feed::EXPORTS, 1).await;
    }
    for id in &ids {
        fake.set_fault(id, None);
    }
    let metrics = eventually(WAIT, "every datastore up again", || async {
        let m = scrape(exporter.local_addr()).await;
        ids.iter()
            .all(|id| m.value(&key("healthlake_feed_up", id, id, "feed=\"export\"")) == 1.0)
            .then_some(m)
    })
    .await;
    for id in &ids {
        assert_eq!(
            metrics.value(&key(
                "healthlake_export_jobs",
                id,
                id,
                "status=\"COMPLETED\""
            )),
            1.0
        );
    }
    exporter.shutdown().await;
}
