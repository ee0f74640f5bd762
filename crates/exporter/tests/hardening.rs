//! The security review's findings, retried: label bounds under hostile listings, a reload storm
//! against a slow API, a connect flood from one address with probes from another, secrets in
//! config errors (terminal, log, `/-/reload` body), and `[server]` changes applied on reload.
//! Loopback only; mechanisms are checked, not timings.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::run_to_end;
use common::*;
use healthlake_exporter::state::Feed;
use healthlake_exporter::Exporter;
use healthlake_fake::{FakeJob, Fault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const WAIT: Duration = Duration::from_secs(20);

// ---- bounded labels ----

#[tokio::test]
async fn three_thousand_unknown_statuses_and_a_huge_name_give_bounded_series() {
    let (fake, server) = start_fake().await;
    let t = now() - 10_000.0;
    for n in 0..3000 {
        fake.add_job(
            "ds",
            FakeJob::new(
                format!("job{n:05}"),
                &format!("NEW_STATUS_{n:05}"),
                t + n as f64,
            ),
        );
    }
    let huge = "PATIENT-4711-".repeat(16_000); // ~200 KB
    fake.add_job(
        "ds",
        FakeJob::new("named", "COMPLETED", t + 5000.0)
            .ended(t + 5001.0)
            .named(huge.clone()),
    );
    let dir = TestDir::new("hardening");
    let path = dir.write(
        "labels.toml",
        config_text(&server.endpoint_url(), "", &[("ds", "ds")]),
    );
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    let metrics = eventually(WAIT, "the first poll", || async {
        let m = scrape(exporter.local_addr()).await;
        (!m.series("healthlake_export_jobs", &[("datastore_id", "ds")])
            .is_empty())
        .then_some(m)
    })
    .await;
    let series = metrics.series("healthlake_export_jobs", &[("datastore_id", "ds")]);
    // 10 known statuses + 10 unknown ones + the fold.
    assert_eq!(series.len(), 21, "{series:?}");
    assert_eq!(
        metrics.value(&key(
            "healthlake_export_jobs",
            "ds",
            "ds",
            "status=\"OTHER_UNKNOWN\""
        )),
        2990.0
    );
    let total: f64 = series.iter().map(|(_, v)| v).sum();
    assert_eq!(total, 3001.0, "every job still counted");
    // The 200 KB name became a bounded label with a marker.
    let line = metrics
        .text
        .lines()
        .find(|l| l.contains("job_id=\"named\""))
        .expect("the named job has a duration series");
    assert!(line.len() < 400, "{} bytes", line.len());
    assert!(line.contains("…[truncated:"), "{line}");
    println!(
        "series under 3,000 unknown statuses: healthlake_export_jobs {} (of {} lines in total)",
        series.len(),
        metrics.samples.len()
    );

    // PHI-aware names: `drop` by reload; the name is gone after the next poll.
    let before = attempts(&exporter, "ds", Feed::EXPORTS);
    std::fs::write(
        &path,
        config_text(
            &server.endpoint_url(),
            "job_name_label = \"drop\"",
            &[("ds", "ds")],
        ),
    )
    .unwrap();
    exporter.reload_handle().reload().await.unwrap();
    eventually(WAIT, "a poll after the reload", || async {
        (attempts(&exporter, "ds", Feed::EXPORTS) > before + 1).then_some(())
    })
    .await;
    let metrics = scrape(exporter.local_addr()).await;
    assert!(!metrics.text.contains("PATIENT-4711"), "job names dropped");
    assert!(metrics.text.contains("job_id=\"named\",job_name=\"\""));
    exporter.shutdown().await;
}

// ---- reload storm ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_against_a_slow_api_is_counted_and_shown_down_and_unchanged_reloads_are_no_ops(
) {
    let (fake, server) = start_fake().await;
    fake.add_job(
        "slow",
        FakeJob::new("j1", "COMPLETED", now() - 100.0).ended(now() - 50.0),
    );
    let endpoint = server.endpoint_url();
    let text = |limit: usize| {
        config_text(
            &endpoint,
            &format!("job_series_limit = {limit}"),
            &[("slow", "slow")],
        )
    };
    let dir = TestDir::new("hardening");
    let path = dir.write("storm.toml", text(50));
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    let addr = exporter.local_addr();
    eventually(WAIT, "the first successful poll", || async {
        let m = scrape(addr).await;
        (m.get(&key(
            "healthlake_feed_up",
            "slow",
            "slow",
            "feed=\"export\"",
        )) == Some(1.0))
        .then_some(())
    })
    .await;

    // Every poll now takes 1.5 s; a reload that changes this datastore's polling every 0.3 s
    // stops each poll in flight. Each one is counted, and the datastore shows down.
    fake.set_fault("slow", Some(Fault::Delay(Duration::from_millis(1500))));
    let interrupted = |m: &Metrics| {
        m.value(&key(
            "healthlake_feed_errors_total",
            "slow",
            "slow",
            "feed=\"export\",reason=\"interrupted\"",
        ))
    };
    let deadline = Instant::now() + WAIT;
    let mut flip = false;
    let metrics = loop {
        flip = !flip;
        std::fs::write(&path, text(if flip { 51 } else { 50 })).unwrap();
        exporter.reload_handle().reload().await.unwrap();
        // The storm's rhythm (the behaviour under test), not a wait for anything.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = scrape(addr).await;
        if interrupted(&m) >= 3.0 {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 3 polls interrupted by the storm in {WAIT:?}:\n{}",
            m.text
        );
    };
    let interrupted_by_storm = interrupted(&metrics);
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_up",
            "slow",
            "slow",
            "feed=\"export\""
        )),
        0.0,
        "no poll could finish: the datastore is shown down"
    );

    // The same file again and again: nothing restarts, polls finish, the datastore comes back.
    let last_success = |m: &Metrics| {
        m.value(&key(
            "healthlake_feed_last_success_timestamp_seconds",
            "slow",
            "slow",
            "feed=\"export\"",
        ))
    };
    let frozen = last_success(&metrics);
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        exporter.reload_handle().reload().await.unwrap();
        // The rhythm of the unchanged reloads, as above.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = scrape(addr).await;
        if last_success(&m) > frozen {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no poll finished within {WAIT:?} of unchanged reloads:\n{}",
            m.text
        );
    };
    assert_eq!(
        metrics.value(&key(
            "healthlake_feed_up",
            "slow",
            "slow",
            "feed=\"export\""
        )),
        1.0
    );
    assert_eq!(
        interrupted(&metrics),
        interrupted_by_storm,
        "unchanged reloads interrupt nothing"
    );
    exporter.shutdown().await;
}

// ---- connect flood ----

/// A GET from `source` (a loopback address of our choosing): the status code, or None when
/// refused, closed, or not answered within 10 s (coarse, so that a loaded CI machine cannot fail
/// a probe that the server does answer).
async fn get_from(source: &str, addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    const LIMIT: Duration = Duration::from_secs(10);
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(format!("{source}:0").parse().unwrap()).ok()?;
    let mut stream = tokio::time::timeout(LIMIT, socket.connect(addr))
        .await
        .ok()?
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_connect_flood_from_one_address_leaves_room_for_probes_from_another() {
    let (_fake, server) = start_fake().await;
    let text = config_text(&server.endpoint_url(), "", &[("ds", "ds")]).replace(
        "[server]\n",
        "[server]\nmax_connections = 16\nmax_connections_per_ip = 4\n",
    );
    let exporter = start_exporter(&text).await;
    let addr = exporter.local_addr();
    // 64 connections from 127.0.0.1 that never send a request: four are held, the others are
    // closed at once.
    let mut flood = Vec::new();
    for _ in 0..64 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        flood.push(socket.connect(addr).await.unwrap());
    }
    // Looks at every connection (a short read each) until 60 are closed.
    let mut closed = vec![false; flood.len()];
    let deadline = Instant::now() + WAIT;
    while closed.iter().filter(|c| **c).count() < 60 {
        assert!(
            Instant::now() < deadline,
            "only {} flood connections closed after {WAIT:?}",
            closed.iter().filter(|c| **c).count()
        );
        for (stream, closed) in flood.iter_mut().zip(closed.iter_mut()) {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(5), stream.read(&mut byte));
            *closed |= matches!(read.await, Ok(Ok(0) | Err(_)));
        }
    }
    assert_eq!(
        closed.iter().filter(|c| **c).count(),
        60,
        "all but max_connections_per_ip flood connections closed"
    );
    // Probes from another address all get through.
    for round in 0..20 {
        assert_eq!(
            get_from("127.0.0.2", addr, "/healthz").await,
            Some(200),
            "probe {round}"
        );
    }
    drop(flood);
    exporter.shutdown().await;
}

// ---- secrets in config errors ----

const SECRET: &str = "S3cretPaste-9f2";

/// A cost-4 bcrypt hash of "x": its text must not appear in any message either.
fn bcrypt_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("x", 4).unwrap()).clone()
}

/// Config texts, each wrong in a way that once printed a secret.
fn secret_cases() -> Vec<(&'static str, String)> {
    let hash = bcrypt_hash();
    let tail = "[[datastores]]\nid = \"ds\"\n";
    vec![
        (
            "user name with a colon",
            format!("[server.basic_auth]\nusers = {{ \"alice:{SECRET}\" = \"{hash}\" }}\n{tail}"),
        ),
        (
            "duplicate key",
            format!("[server.basic_auth.users]\nalice = \"{hash}\"\nalice = \"{SECRET}\"\n{tail}"),
        ),
        (
            "missing comma",
            format!(
                "[server.basic_auth]\nusers = {{ alice = \"{SECRET}\" bob = \"{hash}\" }}\n{tail}"
            ),
        ),
        (
            "plain password as hash",
            format!("[server.basic_auth.users]\nalice = \"{SECRET}\"\n{tail}"),
        ),
        (
            "users as a string",
            format!("[server.basic_auth]\nusers = \"alice:{SECRET}\"\n{tail}"),
        ),
        (
            "password in the endpoint URL",
            format!("[aws]\nendpoint_url = \"https://AKIDX:{SECRET}@healthlake.example\"\n{tail}"),
        ),
        (
            "password in a list",
            format!("[server.basic_auth]\nusers = {{ alice = [\"{SECRET}\"] }}\n{tail}"),
        ),
    ]
}

fn assert_clean(case: &str, where_: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "{case}: the secret leaked into {where_}:\n{text}"
    );
    let hash = bcrypt_hash();
    assert!(
        !text.contains(&hash[7..]),
        "{case}: the bcrypt hash leaked into {where_}:\n{text}"
    );
}

#[test]
fn no_secret_in_check_config_output_or_the_startup_log() {
    for (case, text) in secret_cases() {
        let dir = TestDir::new("hardening");
        let path = dir.write("secret.toml", &text);
        for args in [vec!["--check-config"], vec![]] {
            let output = run_to_end(
                Command::new(EXPORTER_BIN)
                    .arg("--config")
                    .arg(&path)
                    .args(&args)
                    .args(["--listen-address", "127.0.0.1:0"])
                    .env("AWS_EC2_METADATA_DISABLED", "true"),
                Duration::from_secs(60),
            );
            assert!(!output.status.success(), "{case} {args:?} must fail");
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(all.contains("secret.toml"), "{case}: names the file: {all}");
            assert_clean(case, &format!("{args:?} output"), &all);
        }
    }
}

#[tokio::test]
async fn no_secret_in_the_reload_response() {
    let (_fake, server) = start_fake().await;
    let good = config_text(&server.endpoint_url(), "", &[("ds", "ds")])
        .replace("[server]\n", "[server]\nenable_reload = true\n");
    let dir = TestDir::new("hardening");
    let path = dir.write("reload-secret.toml", &good);
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    for (case, text) in secret_cases() {
        std::fs::write(&path, &text).unwrap();
        let (status, _, body) = post_reload(exporter.local_addr()).await;
        assert_eq!(status, 500, "{case}: {body}");
        assert_clean(case, "the /-/reload body", &body);
        // The log line carries the same message as the body.
        let error = exporter
            .reload_handle()
            .reload()
            .await
            .unwrap_err()
            .to_string();
        assert_clean(case, "the reload error (logged)", &error);
    }
    exporter.shutdown().await;
}

// ---- [server] on reload ----

#[tokio::test]
async fn basic_auth_added_by_reload_takes_effect_and_a_listen_address_change_is_refused() {
    let (_fake, server) = start_fake().await;
    let base = config_text(&server.endpoint_url(), "", &[("ds", "ds")]);
    let dir = TestDir::new("hardening");
    let path = dir.write("auth-reload.toml", &base);
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    let addr = exporter.local_addr();
    let (status, _, _) = http_request(addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);

    let hash = bcrypt_hash();
    std::fs::write(
        &path,
        base.replace(
            "[polling]",
            &format!("[server.basic_auth.users]\nalice = \"{hash}\"\n[polling]"),
        ),
    )
    .unwrap();
    exporter.reload_handle().reload().await.unwrap();
    let (status, _, _) = http_request(addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 401, "auth added by a reload applies at once");
    let (status, _, _) = http_request(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", "Basic YWxpY2U6eA==")],
    )
    .await;
    assert_eq!(status, 200, "alice:x");
    let (status, _, _) = http_request(addr, "GET", "/healthz", &[]).await;
    assert_eq!(status, 200, "probes stay open");

    // A listen address change needs a restart: refused visibly, nothing else applied.
    std::fs::write(&path, base.replace("127.0.0.1:0", "127.0.0.1:1")).unwrap();
    let error = exporter
        .reload_handle()
        .reload()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("server.listen_address changed: this takes a restart"),
        "{error}"
    );
    let metrics = {
        let (_, _, body) = http_request(
            addr,
            "GET",
            "/metrics",
            &[("Authorization", "Basic YWxpY2U6eA==")],
        )
        .await;
        Metrics::parse(&body)
    };
    assert_eq!(
        metrics.value("healthlake_exporter_config_last_reload_successful"),
        0.0
    );
    exporter.shutdown().await;
}
