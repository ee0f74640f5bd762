//! Soak benchmark (not a test): the release exporter, as its own process, polls a fake HealthLake
//! (export and import jobs, datastore health, incremental listings with a full resync every
//! minute) whose faults switch on and off and whose job history churns, while a client scrapes `/metrics`
//! continuously. Prints the exporter's memory at the start and end (and every report interval) and
//! scrape latency percentiles. Memory must not grow with time.
//!
//! ```sh
//! cargo build --release && cargo run --release --example soak -- --minutes 30
//! ```
//! Options: `--minutes N` (default 30), `--datastores N` (20), `--jobs N` (500 per datastore),
//! `--exporter PATH` (target/release/healthlake-exporter), `--report-minutes N` (5).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use healthlake_fake::{FakeHealthLake, FakeJob, Fault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    minutes: f64,
    datastores: usize,
    jobs: usize,
    exporter: String,
    report_minutes: f64,
}

fn parse_args() -> Args {
    let mut args = Args {
        minutes: 30.0,
        datastores: 20,
        jobs: 500,
        exporter: "target/release/healthlake-exporter".into(),
        report_minutes: 5.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--minutes" => args.minutes = value.parse().expect("--minutes N"),
            "--datastores" => args.datastores = value.parse().expect("--datastores N"),
            "--jobs" => args.jobs = value.parse().expect("--jobs N"),
            "--exporter" => args.exporter = value,
            "--report-minutes" => args.report_minutes = value.parse().expect("--report-minutes N"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Kills the exporter when the benchmark ends, however it ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

async fn scrape(addr: SocketAddr) -> Option<usize> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await.ok()?;
    body.starts_with(b"HTTP/1.1 200").then_some(body.len())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn faults() -> Vec<Fault> {
    vec![
        Fault::Throttling,
        Fault::InternalError,
        Fault::AccessDenied,
        Fault::NotFound,
        Fault::MalformedJson,
        Fault::ConnectionReset,
        Fault::Delay(Duration::from_secs(4)),
        Fault::NextTokenLoop,
        Fault::ExpiredToken,
        Fault::Oversized(20 * 1024 * 1024),
    ]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let fake = FakeHealthLake::new();
    let server = fake
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("fake starts");
    let now = healthlake_exporter::model::unix_now();
    let ids: Vec<String> = (0..args.datastores)
        .map(|i| format!("{:032x}", 0x5eed_0000 + i))
        .collect();
    for id in &ids {
        for n in 0..args.jobs {
            let submitted = now - 86_400.0 + n as f64;
            fake.add_job(
                id,
                FakeJob::new(format!("j{n:08}"), "COMPLETED", submitted).ended(submitted + 600.0),
            );
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config = format!(
        "[server]\nlisten_address = \"{addr}\"\n[polling]\ninterval = \"2s\"\ntimeout = \"3s\"\nconcurrency = 8\nmax_attempts = 2\njobs = [\"export\", \"import\"]\ndatastore_health = true\ndatastore_interval = \"5s\"\nfull_resync_interval = \"1m\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        server.endpoint_url()
    );
    for id in &ids {
        config.push_str(&format!("[[datastores]]\nid = \"{id}\"\n"));
    }
    let config_path = std::env::temp_dir().join(format!("hle-soak-{}.toml", std::process::id()));
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(&args.exporter)
        .args(["--config", config_path.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "AKIDSOAK")
        .env("AWS_SECRET_ACCESS_KEY", "soak-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (run cargo build --release first)",
                args.exporter
            )
        });
    let child = ChildGuard(child);
    let pid = child.0.id();

    // Churn: every second one datastore gets a new job and loses its oldest, a running job
    // finishes (some FAIL); every 20 s the faults move to other datastores.
    let churn_fake = fake.clone();
    let churn_ids = ids.clone();
    let churn = tokio::spawn(async move {
        let kinds = faults();
        let mut tick: usize = 0;
        let mut counter: u64 = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tick += 1;
            let id = &churn_ids[tick % churn_ids.len()];
            let jobs = churn_fake.jobs(id);
            if let Some(oldest) = jobs
                .iter()
                .min_by(|a, b| a.submit_time.total_cmp(&b.submit_time))
            {
                churn_fake.remove_job(id, &oldest.id);
            }
            for running in jobs.iter().filter(|j| j.status == "IN_PROGRESS") {
                let status = if counter % 5 == 0 {
                    "FAILED"
                } else {
                    "COMPLETED"
                };
                churn_fake.set_job_status(
                    id,
                    &running.id,
                    status,
                    Some(healthlake_exporter::model::unix_now()),
                );
            }
            counter += 1;
            churn_fake.add_job(
                id,
                FakeJob::new(
                    format!("n{counter:08}"),
                    "IN_PROGRESS",
                    healthlake_exporter::model::unix_now(),
                ),
            );
            if tick % 20 == 0 {
                for (i, ds) in churn_ids.iter().enumerate() {
                    let on = (i + tick / 20) % 3 == 0;
                    let fault = on.then(|| kinds[(i + tick / 20) % kinds.len()].clone());
                    churn_fake.set_fault(ds, fault);
                }
            }
        }
    });

    // Warm up: wait until the exporter answers, then a minute of polling.
    let started = Instant::now();
    while scrape(addr).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the exporter did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "soak: {} datastores x {} jobs, interval 2s, faults switching every 20 s; warming up 60 s",
        args.datastores, args.jobs
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    let rss_start = status_kib(pid, "VmRSS:");
    let cpu_start = cpu_seconds(pid);
    println!("start: VmRSS {rss_start} KiB");

    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let report_every = Duration::from_secs_f64(args.report_minutes * 60.0);
    let soak_start = Instant::now();
    let mut next_report = soak_start + report_every;
    let mut latencies: Vec<f64> = Vec::new();
    let mut window: Vec<f64> = Vec::new();
    let mut failures = 0u64;
    let mut bytes = 0usize;
    while soak_start.elapsed() < total {
        let t = Instant::now();
        match scrape(addr).await {
            Some(n) => {
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                latencies.push(ms);
                window.push(ms);
                bytes = n;
            }
            None => failures += 1,
        }
        if Instant::now() >= next_report {
            window.sort_by(f64::total_cmp);
            println!(
                "{:>5.1} min: VmRSS {} KiB, scrapes {} (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms), failed scrapes {failures}, payload {bytes} B",
                soak_start.elapsed().as_secs_f64() / 60.0,
                status_kib(pid, "VmRSS:"),
                window.len(),
                percentile(&window, 0.5),
                percentile(&window, 0.99),
                window.last().copied().unwrap_or(f64::NAN),
            );
            window.clear();
            next_report += report_every;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_end = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    let cpu = cpu_seconds(pid) - cpu_start;
    latencies.sort_by(f64::total_cmp);
    churn.abort();
    println!("---");
    println!(
        "duration            {:.1} min",
        soak_start.elapsed().as_secs_f64() / 60.0
    );
    println!("memory start/end    VmRSS {rss_start} KiB -> {rss_end} KiB (peak VmHWM {hwm} KiB)");
    println!(
        "exporter CPU        {:.2} s per minute",
        cpu / (soak_start.elapsed().as_secs_f64() / 60.0)
    );
    println!(
        "scrape latency      p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} scrapes",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        latencies.len()
    );
    println!("failed scrapes      {failures}");
    drop(child);
    server.shutdown();
    let _ = std::fs::remove_file(config_path);
}
