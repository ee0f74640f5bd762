//! The binary as a user runs it: exit codes, messages, `--check-config`, SIGTERM and `--demo`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{run_to_end, Spawned};
use common::{TestDir, EXPORTER_BIN as BIN};

/// How long a run of the binary that should end at once may take on a loaded machine.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long a started exporter may take to log what a test waits for.
const LOG_LIMIT: Duration = Duration::from_secs(30);

fn run(args: &[&str]) -> (i32, String, String) {
    let output = run_to_end(
        Command::new(BIN)
            .args(args)
            .env_remove("HEALTHLAKE_EXPORTER_CONFIG"),
        RUN_LIMIT,
    );
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config.example.toml");
    let (code, stdout, stderr) = run(&["--check-config", "--config", example]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("config.example.toml is valid"), "{stdout}");
    assert!(stdout.contains("datastores       2"), "{stdout}");
    assert!(stdout.contains("listen_address   0.0.0.0:9469"), "{stdout}");
}

/// Every kind of bad file a user can write: a non-zero exit (2) and a message naming the problem.
#[test]
fn check_config_rejects_bad_files_with_exit_code_2_and_a_message() {
    const ID: &str = "[[datastores]]\nid = \"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4\"\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("syntax.toml", b"[polling\ninterval = \"60s\"\n".to_vec(), "syntax.toml:1:"),
        ("typo.toml", format!("[polling]\nintervall = \"60s\"\n{ID}").into_bytes(), "typo.toml:2:1: unknown field `intervall`"),
        ("type.toml", format!("[polling]\nconcurrency = \"eight\"\n{ID}").into_bytes(), "type.toml:2:15: key `polling.concurrency`: invalid type: a string (value not shown)"),
        ("dup.toml", format!("{ID}{ID}").into_bytes(), "dup.toml:4:6: datastores[1].id: this datastore id is listed twice (first on line 2)"),
        ("badid.toml", b"[[datastores]]\nid = \"prod/ds#1\"\n".to_vec(), "badid.toml:2:6: datastores[0].id: character 8 is one HealthLake does not allow"),
        ("duration.toml", format!("[polling]\ninterval = \"often\"\n{ID}").into_bytes(), "duration.toml:2:12: polling.interval: not a duration"),
        ("zero.toml", format!("[polling]\ntimeout = \"0s\"\n{ID}").into_bytes(), "zero.toml:2:11: polling.timeout: out of range; use a duration from 1s to 10m"),
        ("url.toml", format!("[aws]\nendpoint_url = \"healthlake.local\"\n{ID}").into_bytes(), "url.toml:2:16: aws.endpoint_url: must start with http:// or https://"),
        ("arn.toml", format!("[aws]\nrole_arn = \"arn:aws:iam::12345:role/x\"\n{ID}").into_bytes(), "arn.toml:2:12: aws.role_arn: is not an IAM role ARN"),
        ("listen.toml", format!("[server]\nlisten_address = \"9469\"\n{ID}").into_bytes(), "listen.toml:2:18: server.listen_address: is not an IP address and port"),
        // Finding 11: values that used to pass and then panic the pollers.
        ("huge.toml", format!("[polling]\ntimeout = \"500000000000y\"\n{ID}").into_bytes(), "huge.toml:2:11: polling.timeout: out of range; use a duration from 1s to 10m"),
        ("interval.toml", format!("[polling]\ndatastore_interval = \"99999999999d\"\n{ID}").into_bytes(), "interval.toml:2:22: polling.datastore_interval: out of range; use a duration from 1s to 1day"),
        // Finding 9: a queue URL with user-info is refused, and never repeated.
        ("queue.toml", format!("{ID}[events]\nqueue_url = \"https://me:hunter2@sqs.us-east-1.amazonaws.com/123456789012/q\"\n").into_bytes(), "queue.toml:4:13: events.queue_url: must not contain a user name or password"),
        ("latin1.toml", b"[[datastores]]\nid = \"caf\xe9\"\n".to_vec(), "latin1.toml: the file is not valid UTF-8"),
        ("empty.toml", Vec::new(), "empty.toml: datastores: no datastores configured"),
    ];
    let dir = TestDir::new("cli");
    for (name, text, expected) in &cases {
        let path = dir.write(name, text);
        let (code, stdout, stderr) = run(&["--check-config", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stdout.is_empty());
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"));
        assert!(
            !stderr.contains("hunter2"),
            "{name}: the password is repeated: {stderr}"
        );
        // Starting the daemon with the same file fails the same way, before binding anything.
        let (code, _, stderr) = run(&[
            "--config",
            path.to_str().unwrap(),
            "--listen-address",
            "127.0.0.1:0",
        ]);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
    }
    let (code, _, stderr) = run(&["--check-config", "--config", "/nonexistent/healthlake.toml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read config file /nonexistent/healthlake.toml"));
}

#[test]
fn usage_errors_and_version() {
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("healthlake-exporter {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, _, stderr) = run(&["--log-format", "xml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("possible values: text, json"), "{stderr}");
    let (code, _, stderr) = run(&["--listen-address", "localhost", "--check-config"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is not an IP address and port"), "{stderr}");
}

/// The daemon on `config`, logging JSON at `log_level` to a piped stderr, with static keys (whose
/// secret must never reach the log) and no instance metadata.
fn daemon(config: &std::path::Path, (key_id, secret): (&str, &str), log_level: &str) -> Spawned {
    Spawned::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", log_level)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
}

// Multi-threaded: this test blocks on the child's output while the fake answers on the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_within_5_seconds_and_logs_no_secrets() {
    let (fake, server) = common::start_fake().await;
    fake.add_datastore("ds1");
    let text = common::config_text(&server.endpoint_url(), "", &[("ds1", "one")]);
    let dir = TestDir::new("cli");
    let path = dir.write("sigterm.toml", text);
    let mut child = daemon(&path, ("AKIDSIGTERMTEST", "super-secret-value"), "trace");
    let started = child
        .stderr()
        .line_with("healthlake-exporter started", LOG_LIMIT);
    assert!(
        started.contains("\"listen_address\":\"127.0.0.1:"),
        "{started}"
    );
    let line = child
        .stderr()
        .line_with("datastore polled successfully", LOG_LIMIT);
    assert!(line.contains("\"datastore_id\":\"ds1\""), "{line}");

    child.signal(libc::SIGTERM);
    let sent = Instant::now();
    let rest = child.stderr().rest(LOG_LIMIT);
    let status = child.wait(LOG_LIMIT);
    // The behaviour under test: well within a pod's termination grace period (30 s by default);
    // coarse, so that a loaded CI machine cannot fail it.
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(0));
    assert!(rest.contains("shutting down"));
    let all = format!("{started}{line}{rest}");
    assert!(!all.contains("super-secret-value"));
    assert!(!all.contains("Signature="));
}

/// Starts `--demo` on a free port; returns it with the address it announced.
fn start_demo() -> (Spawned, std::net::SocketAddr) {
    let mut child = Spawned::spawn(
        Command::new(BIN)
            .args(["--demo", "--listen-address", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let line = child.stdout().line_with("metrics at http://", LOG_LIMIT);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    (child, addr)
}

#[test]
fn demo_serves_live_metrics_without_aws() {
    let (mut child, addr) = start_demo();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = runtime.block_on(common::eventually(
        Duration::from_secs(20),
        "demo metrics",
        || async {
            let m = common::scrape(addr).await;
            let up: Vec<_> = m
                .series("healthlake_feed_up", &[("feed", "export")])
                .into_iter()
                .filter(|(_, v)| *v == 1.0)
                .collect();
            (up.len() == 3).then_some(m)
        },
    ));
    assert_eq!(
        metrics
            .series("healthlake_export_jobs", &[("status", "FAILED")])
            .len(),
        3
    );
    let failed: f64 = metrics
        .series("healthlake_export_jobs", &[("status", "FAILED")])
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert!(failed >= 1.0, "the demo history has a failed job");
    // The demo runs on HealthLake events: its job changes arrive through the fake's SQS queue.
    let events = runtime.block_on(common::eventually(
        Duration::from_secs(20),
        "demo events applied",
        || async {
            let m = common::scrape(addr).await;
            (m.get("healthlake_events_applied_total").unwrap_or(0.0) >= 1.0).then_some(m)
        },
    ));
    assert_eq!(events.value("healthlake_feed_up{feed=\"events\"}"), 1.0);
    assert_eq!(events.value("healthlake_events_malformed_total"), 0.0);
    child.signal(libc::SIGTERM);
    assert_eq!(child.wait(LOG_LIMIT).code(), Some(0));
}

/// The `HealthLakeExportJobFailed` rule's expression as shipped in deploy/prometheus/alerts.yml:
/// the window `N` of `max by (…) (healthlake_export_job_end_timestamp_seconds{status="FAILED"}) >
/// time() - N`. A rule of another shape fails here, so that this evaluation is updated with it.
fn export_failed_alert_window() -> f64 {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/alerts.yml"
    ))
    .expect("deploy/prometheus/alerts.yml");
    let rule = rules
        .split("- alert: ")
        .find(|r| r.starts_with("HealthLakeExportJobFailed\n"))
        .expect("the HealthLakeExportJobFailed rule");
    let expr = rule.split_once("expr: >-").expect("a folded expr").1;
    let expr: Vec<&str> = expr
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("for:"))
        .filter(|l| !l.is_empty())
        .collect();
    let expr = expr.join(" ");
    let window = expr
        .strip_prefix("max by (datastore_id, datastore_name, job_id, job_name) (healthlake_export_job_end_timestamp_seconds{status=\"FAILED\"}) > time() - ")
        .unwrap_or_else(|| panic!("the rule changed shape; update this evaluation: {expr}"));
    window.parse().expect("a window in seconds")
}

/// The value of `label` in a series key (`name{a="x",b="y"}`); the demo's values hold no quotes.
fn label_value<'k>(key: &'k str, label: &str) -> Option<&'k str> {
    let start = key.find(&format!("{label}=\""))? + label.len() + 2;
    key[start..].split('"').next()
}

/// Finding (issue 20): the demo showed the failure alert's series only after ~2 minutes. Now the
/// first scrape after readiness has an export that FAILED within the ended-job window, and the
/// shipped alert's expression, evaluated on it, names that job.
#[test]
fn demo_shows_the_failure_alert_from_the_first_scrape() {
    let (mut child, addr) = start_demo();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(common::eventually(
        Duration::from_secs(30),
        "/readyz 200",
        || async {
            let (status, _, _) = common::http_request(addr, "GET", "/readyz", &[]).await;
            (status == 200).then_some(())
        },
    ));
    let first = runtime.block_on(common::scrape(addr));
    let scraped_at = common::now();
    let failed = first.series(
        "healthlake_export_job_end_timestamp_seconds",
        &[("status", "FAILED")],
    );
    assert!(!failed.is_empty(), "no FAILED series:\n{}", first.text);
    // The alert's expression: per job, the EndTime of a FAILED export, where it is within the
    // window (the labels of `max by` are the series' own: one series per job).
    let window = export_failed_alert_window();
    let firing: Vec<&(&str, f64)> = failed
        .iter()
        .filter(|(_, ended)| *ended > scraped_at - window)
        .collect();
    assert_eq!(firing.len(), 1, "{failed:?}");
    let (key, ended) = firing[0];
    assert_eq!(
        label_value(key, "datastore_name"),
        Some("patient-records-prod"),
        "{key}"
    );
    assert_eq!(label_value(key, "job_name"), Some("cohort-export"), "{key}");
    assert_eq!(label_value(key, "status"), Some("FAILED"), "{key}");
    // Seeded 240 s before the start: a few minutes old, however slow the start was.
    let age = scraped_at - ended;
    assert!((240.0..240.0 + 120.0).contains(&age), "ended {age} s ago");
    child.signal(libc::SIGTERM);
    assert_eq!(child.wait(LOG_LIMIT).code(), Some(0));
}

/// SIGHUP re-reads the file; each poll failure is logged once per change of state, not per poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_failures_are_logged_once_per_change() {
    let (fake, server) = common::start_fake().await;
    fake.add_datastore("first");
    fake.add_datastore("second");
    fake.set_fault("first", Some(healthlake_fake::Fault::AccessDenied));
    let endpoint = server.endpoint_url();
    let text = common::config_text(&endpoint, "", &[("first", "one")]);
    let dir = TestDir::new("cli");
    let path = dir.write("sighup.toml", text);
    let mut child = daemon(&path, ("AKIDSIGHUPTEST", "sighup-secret"), "info");
    let started = child
        .stderr()
        .line_with("healthlake-exporter started", LOG_LIMIT);
    let address = started
        .split("\"listen_address\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let address: std::net::SocketAddr = address.parse().unwrap();
    child.stderr().line_with("poll failed", LOG_LIMIT);
    // Three more failed polls (1 s, 2 s, 4 s apart with backoff): no more log lines about them.
    common::eventually(Duration::from_secs(20), "3 more polls", || async {
        (fake.request_count("first") >= 4).then_some(())
    })
    .await;

    std::fs::write(
        &path,
        common::config_text(&endpoint, "", &[("first", "one"), ("second", "two")]),
    )
    .unwrap();
    child.signal(libc::SIGHUP);
    let before_reload = child.stderr().until("configuration reloaded", LOG_LIMIT);
    assert_eq!(
        before_reload.matches("poll failed").count(),
        0,
        "one line per change:\n{before_reload}"
    );
    let reloaded = before_reload.lines().last().unwrap();
    assert!(reloaded.contains("\"added\":1"), "{reloaded}");
    let metrics = common::eventually(Duration::from_secs(20), "the added datastore", || async {
        let m = common::scrape(address).await;
        (m.get(&common::key(
            "healthlake_feed_up",
            "second",
            "two",
            "feed=\"export\"",
        )) == Some(1.0))
        .then_some(m)
    })
    .await;
    assert_eq!(
        metrics.value("healthlake_exporter_config_last_reload_successful"),
        1.0
    );

    child.signal(libc::SIGTERM);
    let rest = child.stderr().rest(LOG_LIMIT);
    assert_eq!(child.wait(LOG_LIMIT).code(), Some(0));
    let failures = rest.matches("poll failed").count();
    assert_eq!(
        failures, 0,
        "repeated failures are not logged again:\n{rest}"
    );
    assert!(!rest.contains("sighup-secret"));
}
