//! Event-path benchmark (issue 12): how long a FAILED job takes to show in `/metrics`, and how
//! many `ListFHIRExportJobs` calls each datastore costs, with HealthLake events + a 10-minute
//! reconciliation versus plain polling every 60 s. The exporter runs in-process against the fake
//! (HealthLake and SQS on one loopback port) through the real SDK clients; a watcher scrapes
//! `/metrics` every 10 ms, the way a user would see the change.
//!
//! ```sh
//! cargo run -p healthlake-exporter --example events_latency -- [--datastores 50]
//! ```
//! Each datastore gets one job that goes from IN_PROGRESS to FAILED once, at a random moment
//! (spread over 10 s with events, over 90 s with polling so that the failures fall at every
//! phase of the 60 s poll cycle). Latency = failure → first scrape showing it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use healthlake_exporter::aws::ClientOptions;
use healthlake_exporter::config::Config;
use healthlake_exporter::model::unix_now;
use healthlake_exporter::Exporter;
use healthlake_fake::{FakeHealthLake, FakeJob};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

const QUEUE: &str = "healthlake-events";

#[derive(Clone, Copy, Debug)]
enum Mode {
    Events,
    Polling,
}

struct Outcome {
    latencies: Vec<Duration>,
    list_calls: usize,
    window: Duration,
}

async fn scrape(addr: SocketAddr) -> String {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = Vec::new();
    let _ = stream.read_to_end(&mut body).await;
    String::from_utf8_lossy(&body).into_owned()
}

fn failed_count(text: &str, id: &str) -> bool {
    let key = format!("healthlake_export_jobs{{datastore_id=\"{id}\",datastore_name=\"{id}\",status=\"FAILED\"}} 1");
    text.contains(&key)
}

async fn run(mode: Mode, datastores: usize) -> Outcome {
    let fake = FakeHealthLake::new();
    let server = fake
        .serve("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("fake starts");
    let endpoint = server.endpoint_url();
    let ids: Vec<String> = (0..datastores).map(|i| format!("{:032x}", i + 1)).collect();
    for id in &ids {
        fake.add_datastore(id);
        fake.add_job(id, FakeJob::new("job", "IN_PROGRESS", unix_now() - 60.0));
    }
    let interval = match mode {
        Mode::Events => "10m",
        Mode::Polling => "60s",
    };
    let mut text = format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\n[polling]\ninterval = \"{interval}\"\ntimeout = \"10s\"\nmax_requests_per_second = 1000\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n"
    );
    if let Mode::Events = mode {
        fake.set_event_queues(&[QUEUE]);
        text.push_str(&format!(
            "[events]\nqueue_url = \"{endpoint}/123456789012/{QUEUE}\"\nendpoint_url = \"{endpoint}\"\n"
        ));
    }
    for id in &ids {
        text.push_str(&format!("[[datastores]]\nid = \"{id}\"\n"));
    }
    let config = Config::parse(&text, Path::new("bench.toml")).expect("valid config");
    let options = ClientOptions {
        credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            "AKIDBENCH",
            "bench-secret",
            None,
            None,
            "bench",
        ))),
        max_attempts: None,
    };
    let exporter = Exporter::start(config, options)
        .await
        .expect("exporter starts");
    let addr = exporter.local_addr();
    // Every datastore polled once (the jobs show IN_PROGRESS) before the clock starts.
    loop {
        let text = scrape(addr).await;
        let polled = ids
            .iter()
            .filter(|id| {
                text.contains(&format!(
                    "healthlake_export_jobs{{datastore_id=\"{id}\",datastore_name=\"{id}\",status=\"IN_PROGRESS\"}} 1"
                ))
            })
            .count();
        if polled == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fake.clear_requests();
    let spread = match mode {
        Mode::Events => Duration::from_secs(10),
        Mode::Polling => Duration::from_secs(90),
    };
    let started = Instant::now();
    let failed_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut schedule: Vec<(Duration, String)> = ids
        .iter()
        .map(|id| (spread.mul_f64(fastrand::f64()), id.clone()))
        .collect();
    schedule.sort();
    let failer = {
        let fake = fake.clone();
        let failed_at = Arc::clone(&failed_at);
        tokio::spawn(async move {
            for (at, id) in schedule {
                tokio::time::sleep_until((started + at).into()).await;
                let now = Instant::now();
                fake.set_job_status(&id, "job", "FAILED", Some(unix_now()));
                failed_at.lock().await.insert(id, now);
            }
        })
    };
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let deadline = started + spread + Duration::from_secs(120);
    while seen.len() < ids.len() && Instant::now() < deadline {
        let text = scrape(addr).await;
        let now = Instant::now();
        let failed = failed_at.lock().await.clone();
        for id in failed.keys() {
            if !seen.contains_key(id) && failed_count(&text, id) {
                seen.insert(id.clone(), now);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let window = started.elapsed();
    let _ = failer.await;
    let failed = failed_at.lock().await.clone();
    let mut latencies: Vec<Duration> = seen
        .iter()
        .filter_map(|(id, at)| failed.get(id).map(|f| at.saturating_duration_since(*f)))
        .collect();
    latencies.sort();
    let list_calls = ids.iter().map(|id| fake.request_count(id)).sum();
    exporter.shutdown().await;
    Outcome {
        latencies,
        list_calls,
        window,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let mut datastores = 50usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--datastores", Some(n)) => datastores = n.parse().expect("--datastores N"),
            _ => panic!("usage: events_latency [--datastores N]"),
        }
    }
    println!("{datastores} datastores, one job each going IN_PROGRESS -> FAILED once");
    for mode in [Mode::Events, Mode::Polling] {
        let outcome = run(mode, datastores).await;
        let l = &outcome.latencies;
        let hours = outcome.window.as_secs_f64() / 3600.0;
        let calls_per_event = outcome.list_calls as f64 / datastores as f64;
        let (label, reconciliation_per_hour) = match mode {
            Mode::Events => ("events + 10m reconciliation", 6.0),
            Mode::Polling => ("polling every 60s          ", 60.0),
        };
        println!(
            "{label}: detected {}/{} failures; latency median {:.3} s, p99 {:.3} s, max {:.3} s",
            l.len(),
            datastores,
            percentile(l, 50.0).as_secs_f64(),
            percentile(l, 99.0).as_secs_f64(),
            l.last().copied().unwrap_or_default().as_secs_f64(),
        );
        match mode {
            Mode::Events => println!(
                "  list calls during the run: {} ({calls_per_event:.2} per failure event); per datastore per hour: {reconciliation_per_hour} (reconciliation) + {calls_per_event:.2} x job-status events",
                outcome.list_calls
            ),
            Mode::Polling => println!(
                "  list calls during the run: {} in {:.0} s = {:.1} per datastore per hour",
                outcome.list_calls,
                outcome.window.as_secs_f64(),
                outcome.list_calls as f64 / datastores as f64 / hours
            ),
        }
    }
}
