//! End-to-end check of the shipped alert rules with a real Prometheus server.
//!
//! The fake HealthLake runs in-process; the real exporter binary polls it; a real `prometheus`
//! (Debian package `prometheus`) scrapes the exporter every second and evaluates
//! `deploy/prometheus/alerts.yml` every second. Through Prometheus' HTTP API the tests assert what
//! a user relies on: a failure older than the ended-job window pages nothing at first start; a job
//! that FAILs while the exporter is stopped fires `HealthLakeExportJobFailed`, naming the job,
//! after the restart; a job listed twice pages (and counts) once; and a failure whose datastore
//! moves to another replica when the shard count goes from 1 to 2 stays one firing alert.
//!
//! Everything listens on 127.0.0.1 only. Without a `prometheus` binary the test prints a SKIP line
//! with the install hint, or fails under HEALTHLAKE_EXPORTER_REQUIRE_TOOLS=1 (as in CI).

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
    /// Taken (kept on disk) only when a test fails, for its logs.
    dir: Option<tempfile::TempDir>,
    procs: Vec<(&'static str, Child, PathBuf)>,
}

impl Children {
    fn new(dir: tempfile::TempDir) -> Self {
        Children {
            dir: Some(dir),
            procs: Vec::new(),
        }
    }

    /// The scratch directory: configs, Prometheus' data, the logs.
    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("scratch directory").path()
    }

    /// Spawns `cmd` with stdout and stderr going to `<dir>/<name>.log`.
    fn spawn(&mut self, name: &'static str, cmd: &mut Command) {
        let log = self.dir().join(format!("{name}.log"));
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

    /// Stops the child `name` (SIGKILL, as a crash or an evicted pod would) and reaps it; its log
    /// stays for the panic report.
    fn kill(&mut self, name: &str) {
        for (n, child, _) in &mut self.procs {
            if *n == name {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.procs.retain(|(n, _, log)| {
            if *n == name {
                eprintln!("stopped {name} (log {})", log.display());
            }
            *n != name
        });
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
            if let Some(dir) = self.dir.take() {
                eprintln!("(scratch directory kept: {})", dir.keep().display());
            }
        }
    }
}

/// A loopback port that was free a moment ago, for a child process to listen on. Taken below the
/// kernel's ephemeral range (32768 and up by default), which a port picked by binding to port 0
/// lies in: there, between releasing it and the child binding it, the port can become the local
/// end of one of the many outgoing loopback connections the tests make (it did: "bind: address
/// already in use" on a loaded machine). Below the range only an explicit bind can take it.
fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = fastrand::u16(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000..32000");
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

fn prometheus_config(exporters: &[SocketAddr], rules: &Path) -> String {
    let targets: Vec<String> = exporters.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules:?}\n\
         scrape_configs:\n  - job_name: {SCRAPE_JOB}\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

/// The exporter binary, polling the fake every second, listening on `addr`.
fn spawn_exporter(
    children: &mut Children,
    name: &'static str,
    config: &Path,
    addr: SocketAddr,
    shard: &str,
) {
    children.spawn(
        name,
        Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("--listen-address")
            .arg(addr.to_string())
            .arg("--shard")
            .arg(shard)
            .env("AWS_ACCESS_KEY_ID", "AKIDPROMETHEUSTEST")
            .env("AWS_SECRET_ACCESS_KEY", "prometheus-test-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ROLE_ARN")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .env("RUST_LOG", "info"),
    );
}

/// Prometheus, on its own port (never the system service's :9090), with the shipped rules,
/// scraping `exporters`; returns its address once it is ready.
async fn spawn_prometheus(
    children: &mut Children,
    prometheus_bin: &Path,
    dir: &Path,
    exporters: &[SocketAddr],
) -> SocketAddr {
    let rules = repo_root().join("deploy/prometheus/alerts.yml");
    assert!(rules.is_file(), "{} missing", rules.display());
    let prometheus_yml = dir.join("prometheus.yml");
    std::fs::write(&prometheus_yml, prometheus_config(exporters, &rules))
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
            .current_dir(dir),
    );
    wait_for(children, START_LIMIT, "Prometheus /-/ready", || async {
        let (status, _) = get(prometheus, "/-/ready").await?;
        Ok((status == 200).then_some(()))
    })
    .await;
    prometheus
}

/// Waits until `exporter` has polled `datastore` and Prometheus has scraped that.
async fn wait_scraped(
    children: &mut Children,
    prometheus: SocketAddr,
    exporter: SocketAddr,
    datastore: &str,
) {
    let up =
        format!("healthlake_feed_up{{instance=\"{exporter}\",datastore_id=\"{datastore}\",feed=\"export\"}}");
    wait_for(children, START_LIMIT, &format!("{up} == 1"), || async {
        let result = query(prometheus, &up).await?;
        Ok((result.len() == 1 && result[0].1 == 1.0).then_some(()))
    })
    .await;
}

/// Waits for `evaluations` more evaluations of the rule groups, asserting at each look that no
/// alert fires but those `allowed` (by alert name and job id).
async fn quiet_for(
    children: &mut Children,
    prometheus: SocketAddr,
    evaluations: u64,
    allowed: &[(&str, &str)],
    what: &str,
) {
    let baseline = wait_for(children, START_LIMIT, "rule group iterations", || async {
        rule_group_iterations(prometheus).await.map(Some)
    })
    .await;
    wait_for(
        children,
        START_LIMIT,
        &format!("{evaluations} more rule evaluations ({what})"),
        || async {
            let active = alerts(prometheus).await?;
            for alert in firing(&active) {
                let name = alert["labels"]["alertname"].as_str().unwrap_or_default();
                let job = alert["labels"]["job_id"].as_str().unwrap_or_default();
                assert!(
                    allowed.contains(&(name, job)),
                    "{what}: unexpected alert firing: {alert:#}"
                );
            }
            let iterations = rule_group_iterations(prometheus).await?;
            Ok((iterations >= baseline + evaluations).then_some(()))
        },
    )
    .await;
}

/// The firing `alertname` alerts for job `job_id` (waits until there is at least one).
async fn wait_firing(
    children: &mut Children,
    prometheus: SocketAddr,
    alertname: &str,
    job_id: &str,
) -> Vec<Value> {
    wait_for(
        children,
        FIRE_LIMIT,
        &format!("{alertname} to fire for job {job_id}"),
        || async {
            let active = alerts(prometheus).await?;
            let found: Vec<Value> = firing(&active)
                .into_iter()
                .filter(|a| {
                    a["labels"]["alertname"] == alertname && a["labels"]["job_id"] == job_id
                })
                .cloned()
                .collect();
            Ok((!found.is_empty()).then_some(found))
        },
    )
    .await
}

/// The labels and annotations a user relies on for a FAILED export job.
fn assert_names_the_job(alert: &Value, job_id: &str, job_name: &str) {
    let labels = &alert["labels"];
    assert_eq!(labels["datastore_id"], DATASTORE_ID, "{alert:#}");
    assert_eq!(labels["datastore_name"], DATASTORE_NAME, "{alert:#}");
    assert_eq!(labels["job_id"], job_id, "{alert:#}");
    assert_eq!(labels["job_name"], job_name, "{alert:#}");
    assert_eq!(labels["severity"], "critical", "{alert:#}");
    assert!(
        labels.get("instance").is_none(),
        "instance is aggregated away: {alert:#}"
    );
    let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
    let description = alert["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        summary.contains(job_id) && summary.contains(job_name) && summary.contains(DATASTORE_NAME),
        "summary must name the job and datastore: {summary:?}"
    );
    assert!(
        description.contains(DATASTORE_ID)
            && description.contains(&format!("--job-id {job_id}"))
            && !description.contains("{{"),
        "description must name the job and say how to look at it: {description:?}"
    );
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("deploy/mixin/runbook.md#healthlakeexportjobfailed")),
        "{alert:#}"
    );
}

const OLD_FAILURE: &str = "00000000000000000000000000000001";
const RESTART_FAILURE: &str = "00000000000000000000000000000002";
const DUPLICATED_FAILURE: &str = "00000000000000000000000000000003";

// Multi-threaded: the fake HealthLake answers the exporter on this runtime while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_page_once_per_job_across_a_restart_and_duplicated_listings() {
    let Some(prometheus_bin) = require_tool("prometheus", PROMETHEUS_HINT) else {
        return;
    };
    let test_started = Instant::now();

    // The fake: a job that FAILED two hours before the exporter starts (older than the 1h
    // window), and two running ones.
    let (fake, server) = start_fake().await;
    let t = now();
    fake.add_job(
        DATASTORE_ID,
        FakeJob::new(OLD_FAILURE, "FAILED", t - 7200.0)
            .named("nightly-export-yesterday")
            .ended(t - 6000.0)
            .with_message("Access denied to the output S3 bucket"),
    );
    for (id, name) in [
        (RESTART_FAILURE, "nightly-export-today"),
        (DUPLICATED_FAILURE, "adhoc-export"),
    ] {
        fake.add_job(
            DATASTORE_ID,
            FakeJob::new(id, "IN_PROGRESS", t - 600.0).named(name),
        );
    }

    let mut children = Children::new(scratch_dir("prometheus-alerts"));
    let dir = children.dir().to_owned();
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
    spawn_exporter(
        &mut children,
        "healthlake-exporter",
        &config_path,
        exporter,
        "0/1",
    );
    let prometheus = spawn_prometheus(&mut children, &prometheus_bin, &dir, &[exporter]).await;

    // 1. A fresh deployment with only an old failure: nothing fires.
    wait_scraped(&mut children, prometheus, exporter, DATASTORE_ID).await;
    quiet_for(
        &mut children,
        prometheus,
        QUIET_EVALUATIONS,
        &[],
        "an old failure at first start",
    )
    .await;

    // 2. The exporter is stopped; meanwhile a running job FAILs; it starts again.
    children.kill("healthlake-exporter");
    assert!(fake.set_job_status(DATASTORE_ID, RESTART_FAILURE, "FAILED", Some(now())));
    // Prometheus has seen the exporter down (a failed scrape) before it starts again.
    let down = format!("up{{instance=\"{exporter}\"}}");
    wait_for(
        &mut children,
        START_LIMIT,
        &format!("{down} == 0"),
        || async {
            let result = query(prometheus, &down).await?;
            Ok((result.len() == 1 && result[0].1 == 0.0).then_some(()))
        },
    )
    .await;
    let restarted_at = Instant::now();
    spawn_exporter(
        &mut children,
        "healthlake-exporter",
        &config_path,
        exporter,
        "0/1",
    );
    let fired = wait_firing(
        &mut children,
        prometheus,
        "HealthLakeExportJobFailed",
        RESTART_FAILURE,
    )
    .await;
    eprintln!(
        "HealthLakeExportJobFailed fired {:?} after the restart for the job that failed meanwhile",
        restarted_at.elapsed()
    );
    assert_eq!(fired.len(), 1, "one alert for the job: {fired:#?}");
    assert_names_the_job(&fired[0], RESTART_FAILURE, "nightly-export-today");

    // 3. Every listing page now repeats a job (pages shifting under the listing); the other
    //    running job FAILs: it pages once, and is counted once.
    fake.set_fault(DATASTORE_ID, Some(healthlake_fake::Fault::DuplicateJobs));
    assert!(fake.set_job_status(DATASTORE_ID, DUPLICATED_FAILURE, "FAILED", Some(now())));
    let fired = wait_firing(
        &mut children,
        prometheus,
        "HealthLakeExportJobFailed",
        DUPLICATED_FAILURE,
    )
    .await;
    assert_eq!(fired.len(), 1, "one alert for the job: {fired:#?}");
    assert_names_the_job(&fired[0], DUPLICATED_FAILURE, "adhoc-export");
    quiet_for(
        &mut children,
        prometheus,
        QUIET_EVALUATIONS,
        &[
            ("HealthLakeExportJobFailed", RESTART_FAILURE),
            ("HealthLakeExportJobFailed", DUPLICATED_FAILURE),
        ],
        "after the duplicated listing",
    )
    .await;
    let active = alerts(prometheus).await.expect("alerts");
    let failed: Vec<&Value> = firing(&active)
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "HealthLakeExportJobFailed")
        .collect();
    assert_eq!(failed.len(), 2, "one alert per failed job: {failed:#?}");
    let counted = format!(
        "healthlake_export_jobs_finished_total{{job=\"{SCRAPE_JOB}\",datastore_id=\"{DATASTORE_ID}\",status=\"FAILED\"}}"
    );
    let result = query(prometheus, &counted).await.expect("query");
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(
        result[0].1, 1.0,
        "the duplicated job counted once (the one that failed during the restart was terminal at the first poll)"
    );
    let listed = format!(
        "healthlake_export_jobs{{job=\"{SCRAPE_JOB}\",datastore_id=\"{DATASTORE_ID}\",status=\"FAILED\"}}"
    );
    let result = query(prometheus, &listed).await.expect("query");
    assert_eq!(
        result[0].1, 3.0,
        "three FAILED jobs, none twice: {result:?}"
    );

    eprintln!("test took {:?}", test_started.elapsed());
    drop(children);
    drop(server);
}

/// A datastore owned by replica 1 of 2 (replica 0 of 1 owns everything).
fn datastore_of_shard_1_of_2() -> String {
    (0u32..)
        .map(|n| format!("{n:032x}"))
        .find(|id| healthlake_exporter::config::shard::owner(id, 2) == 1)
        .expect("some id hashes to shard 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_stays_one_alert_when_its_datastore_moves_to_another_replica() {
    let Some(prometheus_bin) = require_tool("prometheus", PROMETHEUS_HINT) else {
        return;
    };
    let datastore = datastore_of_shard_1_of_2();
    let (fake, server) = start_fake().await;
    let t = now();
    // Failed a minute ago: within the window, so the first poll of any replica shows it.
    fake.add_job(
        &datastore,
        FakeJob::new(RESTART_FAILURE, "FAILED", t - 900.0)
            .named("nightly-export-today")
            .ended(t - 60.0),
    );

    let mut children = Children::new(scratch_dir("prometheus-alerts-shard"));
    let dir = children.dir().to_owned();
    let config_path = dir.join("exporter.toml");
    std::fs::write(
        &config_path,
        common::config_text(&server.endpoint_url(), "", &[(&datastore, DATASTORE_NAME)]),
    )
    .expect("write exporter config");
    let replica0: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let replica1: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    spawn_exporter(&mut children, "replica-0", &config_path, replica0, "0/1");
    let prometheus =
        spawn_prometheus(&mut children, &prometheus_bin, &dir, &[replica0, replica1]).await;
    wait_scraped(&mut children, prometheus, replica0, &datastore).await;
    let fired = wait_firing(
        &mut children,
        prometheus,
        "HealthLakeExportJobFailed",
        RESTART_FAILURE,
    )
    .await;
    assert_eq!(fired.len(), 1, "{fired:#?}");
    let active_at = fired[0]["activeAt"].clone();

    // Two replicas now: replica 0 restarts with --shard 0/2, replica 1 starts with 1/2 and owns
    // the datastore.
    children.kill("replica-0");
    spawn_exporter(&mut children, "replica-0", &config_path, replica0, "0/2");
    spawn_exporter(&mut children, "replica-1", &config_path, replica1, "1/2");
    wait_scraped(&mut children, prometheus, replica1, &datastore).await;
    let moved =
        format!("healthlake_export_job_end_timestamp_seconds{{job_id=\"{RESTART_FAILURE}\"}}");
    wait_for(
        &mut children,
        START_LIMIT,
        "the failure's series from replica 1 only",
        || async {
            let result = query(prometheus, &moved).await?;
            let instances: Vec<&str> = result
                .iter()
                .filter_map(|(m, _)| m["instance"].as_str())
                .collect();
            Ok((instances == [replica1.to_string().as_str()]).then_some(()))
        },
    )
    .await;
    quiet_for(
        &mut children,
        prometheus,
        QUIET_EVALUATIONS,
        &[("HealthLakeExportJobFailed", RESTART_FAILURE)],
        "after the shard move",
    )
    .await;
    let active = alerts(prometheus).await.expect("alerts");
    let failed: Vec<&Value> = firing(&active)
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "HealthLakeExportJobFailed")
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "the moved failure is one alert: {failed:#?}"
    );
    assert_eq!(
        failed[0]["labels"]["datastore_id"].as_str(),
        Some(datastore.as_str())
    );
    assert_eq!(
        failed[0]["activeAt"], active_at,
        "the alert kept firing through the move (never resolved and fired again)"
    );
    drop(children);
    drop(server);
}
