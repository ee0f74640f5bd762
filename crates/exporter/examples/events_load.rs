//! The event consumer under load (issue 18, findings 3, 4 and 5), in-process against the fake
//! (HealthLake and SQS on one loopback port) through the real SDK clients. Three scenarios, each
//! on a fresh fake and exporter, with the issue's numbers:
//!
//! 1. **load**: 40 datastores (each with weeks-old unfinished jobs in 3 statuses), a 4 s API,
//!    `polling.timeout` 5 s, a queue visibility timeout of 10 s (dead-letter after 5 receives),
//!    one event each; watched for 50 s. Prints receives, redeliveries, deletes with stale receipt
//!    handles, messages deleted, the highest receive count, and list calls per event.
//! 2. **flood**: 40 events/s on one datastore for 35 s, while 9 others each get one failure at a
//!    random moment. Prints the flooded datastore's listings, the API request rate and the time
//!    spent waiting on the request budget, and how long the others' failures took to show.
//! 3. **oversized**: `events.endpoint_url` answers `ReceiveMessage` with 200 MiB bodies for 20 s.
//!    Prints the peak RSS of the process (exporter and fake; the fake streams its padding from a
//!    static buffer), the error counter and `healthlake_feed_up{feed="events"}`.
//!
//! ```sh
//! cargo run --release -p healthlake-exporter --example events_load -- [--scenario load|flood|oversized]
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use healthlake_exporter::aws::ClientOptions;
use healthlake_exporter::config::Config;
use healthlake_exporter::model::unix_now;
use healthlake_exporter::Exporter;
use healthlake_fake::{FakeHealthLake, FakeJob, FakeQueue, FakeServer, Fault, SqsOperation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The event feed's health series.
const EVENTS_UP: &str = "healthlake_feed_up{feed=\"events\"}";

const QUEUE: &str = "healthlake-events";
const DLQ: &str = "healthlake-events-dlq";

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

/// The value of one series (its exact name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn failed_series(id: &str) -> String {
    format!(
        "healthlake_export_jobs{{datastore_id=\"{id}\",datastore_name=\"{id}\",status=\"FAILED\"}}"
    )
}

/// `n` datastores with a recent job in progress and, with `old_jobs`, three weeks-old unfinished
/// ones; a template-like queue (visibility 10 s, dead-letter after 5 receives).
fn seed(fake: &FakeHealthLake, n: usize, old_jobs: bool) -> Vec<String> {
    let t = unix_now();
    let ids: Vec<String> = (0..n).map(|i| format!("{:032x}", i + 1)).collect();
    for id in &ids {
        fake.add_datastore(id);
        fake.add_job(id, FakeJob::new("job", "IN_PROGRESS", t - 60.0));
        if old_jobs {
            for (job, status) in [("s", "SUBMITTED"), ("q", "QUEUED"), ("p", "IN_PROGRESS")] {
                fake.add_job(id, FakeJob::new(job, status, t - 19.0 * 86_400.0));
            }
        }
    }
    fake.create_queue(DLQ);
    fake.create_queue_with(
        QUEUE,
        FakeQueue {
            visibility_timeout: Duration::from_secs(10),
            dead_letter: Some((DLQ.into(), 5)),
        },
    );
    fake.set_event_queues(&[QUEUE]);
    ids
}

async fn start(fake: &FakeHealthLake, ids: &[String]) -> (FakeServer, Exporter) {
    let server = fake
        .serve("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("fake starts");
    let endpoint = server.endpoint_url();
    let mut text = format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\n[polling]\ninterval = \"10m\"\ntimeout = \"5s\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n[events]\nqueue_url = \"{endpoint}/123456789012/{QUEUE}\"\nendpoint_url = \"{endpoint}\"\n"
    );
    for id in ids {
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
    (server, exporter)
}

/// Waits until every datastore's first poll listed its jobs.
async fn first_polls(addr: SocketAddr, ids: &[String]) {
    loop {
        let text = scrape(addr).await;
        let polled = ids.iter().all(|id| {
            text.contains(&format!(
                "healthlake_export_jobs{{datastore_id=\"{id}\",datastore_name=\"{id}\",status=\"IN_PROGRESS\"}}"
            ))
        });
        if polled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn list_calls(fake: &FakeHealthLake, ids: &[String]) -> usize {
    ids.iter().map(|id| fake.request_count(id)).sum()
}

async fn load() {
    const N: usize = 40;
    let fake = FakeHealthLake::new();
    let ids = seed(&fake, N, true);
    let (_server, exporter) = start(&fake, &ids).await;
    first_polls(exporter.local_addr(), &ids).await;
    let first = list_calls(&fake, &ids);
    for id in &ids {
        fake.set_fault(id, Some(Fault::Delay(Duration::from_secs(4))));
    }
    let started = Instant::now();
    for id in &ids {
        fake.set_job_status(id, "job", "FAILED", Some(unix_now()));
    }
    let mut all_deleted = None;
    while started.elapsed() < Duration::from_secs(50) {
        if all_deleted.is_none() && fake.queue_stats(QUEUE).deleted >= N as u64 {
            all_deleted = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = fake.queue_stats(QUEUE);
    let calls = list_calls(&fake, &ids) - first;
    let text = scrape(exporter.local_addr()).await;
    let timed_out: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("healthlake_feed_errors_total{")
                && l.contains("feed=\"export\"")
                && l.contains("reason=\"timeout\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    println!("load: {N} datastores (old jobs in 3 statuses), 4 s API, timeout 5 s, visibility 10 s, one event each, 50 s");
    println!(
        "  receives {}, redeliveries {}, stale-handle deletes {}, deleted {}/{N} (all by {}), max receive count {}, dead-lettered {}",
        s.deliveries,
        s.redeliveries,
        s.stale_deletes,
        s.deleted,
        all_deleted.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
        s.max_receive_count,
        s.dead_lettered,
    );
    println!(
        "  visibility extensions {} ({} refused); list calls: {first} first polls + {calls} for {N} events = {:.2} per event (bound: events + datastores = {})",
        s.visibility_changes,
        s.failed_visibility_changes,
        calls as f64 / N as f64,
        2 * N
    );
    println!(
        "  refreshes {} ({timed_out} timed out: each SDK attempt gets half of polling.timeout, 2.5 s, and the SDK retries once within it; a failed refresh still deletes its messages)",
        value(&text, "healthlake_events_refreshes_total").unwrap_or(f64::NAN),
    );
    exporter.shutdown().await;
}

async fn flood() {
    const SECONDS: u64 = 35;
    let fake = FakeHealthLake::new();
    let ids = seed(&fake, 10, false);
    let (_server, exporter) = start(&fake, &ids).await;
    let addr = exporter.local_addr();
    first_polls(addr, &ids).await;
    fake.clear_requests();
    let before = scrape(addr).await;
    let (flooded, others) = (&ids[0], &ids[1..]);
    let event = healthlake_fake::events::job_event(
        healthlake_fake::events::EventJobKind::Export,
        "us-east-1",
        flooded,
        "job",
        "IN_PROGRESS",
        unix_now() - 60.0,
    )
    .expect("an event");
    let started = Instant::now();
    let mut fail_at: Vec<(Duration, &String)> = others
        .iter()
        .map(|id| {
            (
                Duration::from_secs(SECONDS - 5).mul_f64(fastrand::f64()),
                id,
            )
        })
        .collect();
    fail_at.sort();
    let mut failed: HashMap<&String, Instant> = HashMap::new();
    let mut shown: HashMap<&String, Duration> = HashMap::new();
    let mut sent = 0u64;
    let mut tick = 0u32;
    while started.elapsed() < Duration::from_secs(SECONDS) {
        fake.send_message(QUEUE, event.clone());
        sent += 1;
        for (at, id) in &fail_at {
            if started.elapsed() >= *at && !failed.contains_key(id) {
                fake.set_job_status(id, "job", "FAILED", Some(unix_now()));
                failed.insert(id, Instant::now());
            }
        }
        tick += 1;
        if tick.is_multiple_of(4) {
            let text = scrape(addr).await;
            for (id, at) in &failed {
                if !shown.contains_key(id) && value(&text, &failed_series(id)) == Some(1.0) {
                    shown.insert(id, at.elapsed());
                }
            }
        }
        tokio::time::sleep_until((started + Duration::from_millis(25) * tick).into()).await;
    }
    let window = started.elapsed().as_secs_f64();
    let after = scrape(addr).await;
    let wait = |t: &str| value(t, "healthlake_api_budget_wait_seconds_total").unwrap_or(0.0);
    let requests = list_calls(&fake, &ids);
    let mut latencies: Vec<Duration> = shown.values().copied().collect();
    latencies.sort();
    println!("flood: 40 events/s on one datastore for {SECONDS} s ({sent} events), 9 others fail once each; timeout 5 s");
    println!(
        "  flooded datastore: {} listings ({:.2}/s; at most one per timeout = {:.2}/s)",
        fake.request_count(flooded),
        fake.request_count(flooded) as f64 / window,
        1.0 / 5.0
    );
    println!(
        "  API requests {:.2}/s of the 5/s budget; budget wait {:.1} s; others: {}/{} shown, latency max {:.2} s",
        requests as f64 / window,
        wait(&after) - wait(&before),
        latencies.len(),
        others.len(),
        latencies.last().copied().unwrap_or_default().as_secs_f64()
    );
    exporter.shutdown().await;
}

/// Peak resident set of this process since the last reset, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak resident set (Linux: `5` to `/proc/self/clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn oversized() {
    const SECONDS: u64 = 20;
    let fake = FakeHealthLake::new();
    let ids = seed(&fake, 1, false);
    fake.set_sqs_fault_for(
        SqsOperation::ReceiveMessage,
        Some(Fault::Oversized(200 << 20)),
    );
    reset_peak_rss();
    let (_server, exporter) = start(&fake, &ids).await;
    let addr = exporter.local_addr();
    let mut up_ever = false;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(SECONDS) {
        up_ever |= value(&scrape(addr).await, EVENTS_UP) == Some(1.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = scrape(addr).await;
    println!("oversized: ReceiveMessage answers 200 MiB bodies for {SECONDS} s");
    println!(
        "  peak RSS {:.0} MiB; {} ReceiveMessage calls; errors{{reason=\"server_error\"}} {}; healthlake_feed_up{{feed=\"events\"}} {} (ever 1: {up_ever})",
        peak_rss_mib().unwrap_or(f64::NAN),
        fake.sqs_request_count(SqsOperation::ReceiveMessage),
        value(&text, "healthlake_feed_errors_total{feed=\"events\",reason=\"server_error\"}").unwrap_or(f64::NAN),
        value(&text, EVENTS_UP).unwrap_or(f64::NAN),
    );
    exporter.shutdown().await;
}

#[tokio::main]
async fn main() {
    let mut scenario = "all".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--scenario", Some(s)) => scenario = s,
            _ => panic!("usage: events_load [--scenario all|load|flood|oversized]"),
        }
    }
    // The oversized scenario first: its peak RSS is the process's so far.
    if matches!(scenario.as_str(), "all" | "oversized") {
        oversized().await;
    }
    if matches!(scenario.as_str(), "all" | "load") {
        load().await;
    }
    if matches!(scenario.as_str(), "all" | "flood") {
        flood().await;
    }
}
