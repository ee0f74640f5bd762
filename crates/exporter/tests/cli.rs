//! The binary as a user runs it: exit codes, messages, `--check-config`, SIGTERM and `--demo`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_healthlake-exporter");

fn temp_config(name: &str, text: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hle-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("HEALTHLAKE_EXPORTER_CONFIG")
        .output()
        .unwrap();
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
    for (name, text, expected) in &cases {
        let path = temp_config(name, text);
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

/// Reads until a line contains `needle`, returning everything read (that line last).
fn read_until(reader: &mut impl BufRead, needle: &str) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(
            n > 0,
            "process ended before printing {needle:?}; it printed:\n{all}"
        );
        all.push_str(&line);
        if line.contains(needle) {
            return all;
        }
    }
}

/// Reads the child's output until a line contains `needle`, returning that line.
fn wait_for_line(reader: &mut impl BufRead, needle: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "process ended before printing {needle:?}");
        if line.contains(needle) {
            return line;
        }
    }
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

// Multi-threaded: this test blocks on the child's output while the fake answers on the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_within_5_seconds_and_logs_no_secrets() {
    let (fake, server) = common::start_fake().await;
    fake.add_datastore("ds1");
    let text = common::config_text(&server.endpoint_url(), "", &[("ds1", "one")]);
    let path = temp_config("sigterm.toml", text.as_bytes());
    let mut child = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "--log-format", "json"])
        .env("AWS_ACCESS_KEY_ID", "AKIDSIGTERMTEST")
        .env("AWS_SECRET_ACCESS_KEY", "super-secret-value")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let started = wait_for_line(&mut stderr, "healthlake-exporter started");
    assert!(
        started.contains("\"listen_address\":\"127.0.0.1:"),
        "{started}"
    );
    let line = wait_for_line(&mut stderr, "datastore polled successfully");
    assert!(line.contains("\"datastore_id\":\"ds1\""), "{line}");

    sigterm(child.id());
    let sent = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(0));
    assert!(rest.contains("shutting down"));
    let all = format!("{started}{line}{rest}");
    assert!(!all.contains("super-secret-value"));
    assert!(!all.contains("Signature="));
}

#[test]
fn demo_serves_live_metrics_without_aws() {
    let mut child = Command::new(BIN)
        .args(["--demo", "--listen-address", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let line = wait_for_line(&mut stdout, "metrics at http://");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap();
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
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
    sigterm(child.id());
    assert_eq!(child.wait().unwrap().code(), Some(0));
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
    let path = temp_config("sighup.toml", text.as_bytes());
    let mut child = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "--log-format", "json"])
        .env("AWS_ACCESS_KEY_ID", "AKIDSIGHUPTEST")
        .env("AWS_SECRET_ACCESS_KEY", "sighup-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let started = wait_for_line(&mut stderr, "healthlake-exporter started");
    let address = started
        .split("\"listen_address\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let address: std::net::SocketAddr = address.parse().unwrap();
    wait_for_line(&mut stderr, "poll failed");
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
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let before_reload = read_until(&mut stderr, "configuration reloaded");
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

    sigterm(child.id());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let failures = rest.matches("poll failed").count();
    assert_eq!(
        failures, 0,
        "repeated failures are not logged again:\n{rest}"
    );
    assert!(!rest.contains("sighup-secret"));
}
