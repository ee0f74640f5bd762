//! End-to-end check of the shipped alert rules with a real Prometheus server.
//!
//! The fake HealthLake runs in-process; the real exporter binary polls it; a real `prometheus`
//! (Debian package `prometheus`) scrapes the exporter every second and evaluates
//! `deploy/prometheus/alerts.yml` every second. Through Prometheus' HTTP API the test asserts that
//! nothing fires while a job that had FAILED before the exporter started is present, and that
//! `HealthLakeExportJobFailed` fires, with the datastore's labels and annotations, once a running
//! job FAILs.
//!
//! Everything listens on 127.0.0.1 only. A missing `prometheus` binary fails the test with an
//! install hint, or skips it with HEALTHLAKE_EXPORTER_SKIP_TOOL_TESTS=1.

mod common;

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tools::{repo_root, require_tool, scratch_dir};
use common::{now, start_fake};
use healthlake_fake::FakeJob;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_healthlake-exporter");
const PROMETHEUS_HINT: &str = "apt-get install prometheus   (Debian's package brings the server)";

/// At most 32 characters, like a real datastore id.
const DATASTORE_ID: &str = "0123456789abcdef0123456789abcdef";
const DATASTORE_NAME: &str = "patients-prod";
const SCRAPE_JOB: &str = "healthlake-exporter";

/// Generous bounds for a loaded 2-core CI machine; the happy path takes a few seconds each.
const START_LIMIT: Duration = Duration::from_secs(30);
const FIRE_LIMIT: Duration = Duration::from_secs(60);
/// Rule evaluations that must pass, with the data in place, before "nothing fires" is believed.
const QUIET_EVALUATIONS: u64 = 4;

/// The child processes and their scratch directory. Dropping it kills and reaps both children;
/// when dropped during a panic it prints their logs.
struct Children {
    dir: PathBuf,
    procs: Vec<(&'static str, Child, PathBuf)>,
}

impl Children {
    fn new(dir: PathBuf) -> Self {
        Children {
            dir,
            procs: Vec::new(),
        }
    }

    /// Spawns `cmd` with stdout and stderr going to `<dir>/<name>.log`.
    fn spawn(&mut self, name: &'static str, cmd: &mut Command) {
        let log = self.dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name} ({cmd:?}): {e}"));
        self.procs.push((name, child, log));
    }

    /// Panics (with the logs, via Drop) if a child has exited.
    fn assert_running(&mut self) {
        for (name, child, _) in &mut self.procs {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited early with {status}");
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for (name, _, log) in &self.procs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                eprintln!("----- {name} output ({}) -----\n{text}", log.display());
            }
            eprintln!("(scratch directory kept: {})", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A loopback port that was free a moment ago (bind to port 0, read it, release it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Percent-encodes a query parameter value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line without CRLF")?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// GET over HTTP/1.1 (`Connection: close`). Errors instead of panicking, so callers can poll a
/// server that is still starting.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("GET http://{addr}{path}: no response within 10 s"))??;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response without header end")?;
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status code in {head:?}"))?;
    let raw = &response[split + 4..];
    let body = if head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"))
    {
        dechunk(raw)?
    } else {
        raw.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Prometheus' HTTP API, `data` of a successful answer.
async fn api(prometheus: SocketAddr, path: &str) -> Result<Value, String> {
    let (status, body) = get(prometheus, path).await?;
    let json: Value = serde_json::from_str(&body)
        .map_err(|e| format!("GET {path}: HTTP {status}, not JSON ({e}): {body}"))?;
    if status != 200 || json["status"] != "success" {
        return Err(format!("GET {path}: HTTP {status}: {body}"));
    }
    Ok(json["data"].clone())
}

/// Values of an instant query's result vector, with their labels.
async fn query(prometheus: SocketAddr, promql: &str) -> Result<Vec<(Value, f64)>, String> {
    let data = api(
        prometheus,
        &format!("/api/v1/query?query={}", encode(promql)),
    )
    .await?;
    let result = data["result"]
        .as_array()
        .ok_or_else(|| format!("{promql}: no result vector in {data}"))?;
    Ok(result
        .iter()
        .map(|sample| {
            let value = sample["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            (sample["metric"].clone(), value)
        })
        .collect())
}

/// Active alerts (pending and firing).
async fn alerts(prometheus: SocketAddr) -> Result<Vec<Value>, String> {
    let data = api(prometheus, "/api/v1/alerts").await?;
    data["alerts"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("no alerts array in {data}"))
}

fn firing(alerts: &[Value]) -> Vec<&Value> {
    alerts.iter().filter(|a| a["state"] == "firing").collect()
}

/// Completed evaluations of our rule group, from Prometheus' own /metrics.
async fn rule_group_iterations(prometheus: SocketAddr) -> Result<u64, String> {
    let (status, body) = get(prometheus, "/metrics").await?;
    if status != 200 {
        return Err(format!("Prometheus /metrics: HTTP {status}"));
    }
    body.lines()
        .filter(|l| l.starts_with("prometheus_rule_group_iterations_total{"))
        .find(|l| l.contains(";healthlake-exporter\""))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| "no prometheus_rule_group_iterations_total for our group yet".into())
}

/// Polls `check` every 250 ms until it returns `Ok(Some(_))`; panics after `limit`, with the last
/// error or value seen. Also fails early if a child process died.
async fn wait_for<T, F, Fut>(
    children: &mut Children,
    limit: Duration,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(Some(value)) => return value,
            Ok(None) => "condition not met yet".to_string(),
            Err(e) => e,
        };
        children.assert_running();
        if started.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn prometheus_config(exporter: SocketAddr, rules: &Path) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules:?}\n\
         scrape_configs:\n  - job_name: {SCRAPE_JOB}\n    static_configs:\n      - targets: [\"{exporter}\"]\n"
    )
}

// Multi-threaded: the fake HealthLake answers the exporter on this runtime while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_export_job_fires_the_shipped_alert_in_a_real_prometheus() {
    let Some(prometheus_bin) = require_tool("prometheus", PROMETHEUS_HINT) else {
        return;
    };
    let rules = repo_root().join("deploy/prometheus/alerts.yml");
    assert!(rules.is_file(), "{} missing", rules.display());
    let test_started = Instant::now();

    // The fake: one datastore with a job that FAILED long before the exporter starts, and one
    // that is still running.
    let (fake, server) = start_fake().await;
    let t = now();
    fake.add_job(
        DATASTORE_ID,
        FakeJob::new("00000000000000000000000000000001", "FAILED", t - 7200.0)
            .named("nightly-export-yesterday")
            .ended(t - 6000.0)
            .with_message("Access denied to the output S3 bucket"),
    );
    fake.add_job(
        DATASTORE_ID,
        FakeJob::new("00000000000000000000000000000002", "IN_PROGRESS", t - 600.0)
            .named("nightly-export-today"),
    );

    let dir = scratch_dir("prometheus-alerts");
    let mut children = Children::new(dir.clone());

    // The exporter binary, polling the fake every second.
    let config_path = dir.join("exporter.toml");
    std::fs::write(
        &config_path,
        common::config_text(
            &server.endpoint_url(),
            "",
            &[(DATASTORE_ID, DATASTORE_NAME)],
        ),
    )
    .expect("write exporter config");
    let exporter: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    children.spawn(
        "healthlake-exporter",
        Command::new(BIN)
            .arg("--config")
            .arg(&config_path)
            .arg("--listen-address")
            .arg(exporter.to_string())
            .env("AWS_ACCESS_KEY_ID", "AKIDPROMETHEUSTEST")
            .env("AWS_SECRET_ACCESS_KEY", "prometheus-test-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ROLE_ARN")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .env("RUST_LOG", "info"),
    );

    // Prometheus, on its own port (never the system service's :9090), with the shipped rules.
    let prometheus_yml = dir.join("prometheus.yml");
    std::fs::write(&prometheus_yml, prometheus_config(exporter, &rules))
        .expect("write prometheus.yml");
    let prometheus: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    children.spawn(
        "prometheus",
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", prometheus_yml.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus}"))
            .arg("--log.level=info")
            .current_dir(&dir),
    );

    // 1. Everything up: the exporter polled the fake, Prometheus is ready and scrapes it.
    wait_for(
        &mut children,
        START_LIMIT,
        "the exporter's /metrics",
        || async {
            let (status, body) = get(exporter, "/metrics").await?;
            if status != 200 {
                return Err(format!("exporter /metrics: HTTP {status}"));
            }
            let up = common::key("healthlake_datastore_up", DATASTORE_ID, DATASTORE_NAME, "");
            Ok((common::Metrics::parse(&body).get(&up) == Some(1.0)).then_some(()))
        },
    )
    .await;
    wait_for(
        &mut children,
        START_LIMIT,
        "Prometheus /-/ready",
        || async {
            let (status, _) = get(prometheus, "/-/ready").await?;
            Ok((status == 200).then_some(()))
        },
    )
    .await;
    let up = format!("up{{job=\"{SCRAPE_JOB}\"}}");
    wait_for(
        &mut children,
        START_LIMIT,
        &format!("{up} == 1"),
        || async {
            let result = query(prometheus, &up).await?;
            Ok((result.len() == 1 && result[0].1 == 1.0).then_some(()))
        },
    )
    .await;
    let failed_counter = format!(
        "healthlake_export_jobs_finished_total{{job=\"{SCRAPE_JOB}\",datastore_id=\"{DATASTORE_ID}\",status=\"FAILED\"}}"
    );
    wait_for(
        &mut children,
        START_LIMIT,
        &format!("{failed_counter} in Prometheus"),
        || async {
            let result = query(prometheus, &failed_counter).await?;
            match result.as_slice() {
                [] => Ok(None),
                [(_, value)] => {
                    assert_eq!(
                        *value, 0.0,
                        "the job that FAILED before the exporter started must not be counted"
                    );
                    Ok(Some(()))
                }
                more => Err(format!("expected one series, got {more:?}")),
            }
        },
    )
    .await;

    // 2. With that data in place, several rule evaluations pass and nothing fires.
    let baseline = wait_for(
        &mut children,
        START_LIMIT,
        "rule group iterations",
        || async { rule_group_iterations(prometheus).await.map(Some) },
    )
    .await;
    let quiet_started = Instant::now();
    wait_for(
        &mut children,
        START_LIMIT,
        &format!("{QUIET_EVALUATIONS} more rule evaluations"),
        || async {
            let active = alerts(prometheus).await?;
            let firing = firing(&active);
            assert!(
                firing.is_empty(),
                "no alert may fire before a job FAILs while the exporter runs; firing: {firing:#?}"
            );
            let iterations = rule_group_iterations(prometheus).await?;
            Ok((iterations >= baseline + QUIET_EVALUATIONS).then_some(()))
        },
    )
    .await;
    let result = query(prometheus, &failed_counter).await.expect("query");
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0].1, 0.0, "FAILED counter before the failure");
    let result = query(prometheus, &up).await.expect("query up");
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0].1, 1.0, "exporter still scraped");
    eprintln!(
        "quiet phase: {} evaluations without a firing alert in {:?}",
        QUIET_EVALUATIONS,
        quiet_started.elapsed()
    );

    // 3. The running job FAILs: HealthLakeExportJobFailed fires for that datastore.
    assert!(fake.set_job_status(
        DATASTORE_ID,
        "00000000000000000000000000000002",
        "FAILED",
        Some(now()),
    ));
    let failed_at = Instant::now();
    let alert = wait_for(
        &mut children,
        FIRE_LIMIT,
        "HealthLakeExportJobFailed to fire",
        || async {
            let active = alerts(prometheus).await?;
            Ok(firing(&active)
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "HealthLakeExportJobFailed")
                .cloned())
        },
    )
    .await;
    eprintln!(
        "HealthLakeExportJobFailed fired {:?} after the job FAILed at the fake",
        failed_at.elapsed()
    );

    let labels = &alert["labels"];
    assert_eq!(labels["datastore_id"], DATASTORE_ID, "{alert:#}");
    assert_eq!(labels["datastore_name"], DATASTORE_NAME, "{alert:#}");
    assert_eq!(labels["severity"], "critical", "{alert:#}");
    assert_eq!(labels["status"], "FAILED", "{alert:#}");
    assert_eq!(labels["job"], SCRAPE_JOB, "{alert:#}");
    let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
    let description = alert["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        summary.contains(DATASTORE_NAME) && summary.contains("FAILED"),
        "summary must name the datastore: {summary:?}"
    );
    assert!(
        description.contains(DATASTORE_NAME) && description.contains(DATASTORE_ID),
        "description must name the datastore and its id: {description:?}"
    );
    assert!(
        !summary.contains("{{") && !description.contains("{{"),
        "templates must be expanded: {alert:#}"
    );

    // Only that alert fires: the counter went up by exactly the one new failure.
    let active = alerts(prometheus).await.expect("alerts");
    let names: Vec<&str> = firing(&active)
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    assert_eq!(names, ["HealthLakeExportJobFailed"], "firing: {active:#?}");
    let result = query(prometheus, &failed_counter).await.expect("query");
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0].1, 1.0, "FAILED counter after the failure");

    eprintln!("test took {:?}", test_started.elapsed());
    drop(children);
    drop(server);
}
