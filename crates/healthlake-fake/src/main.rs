//! A standalone fake HealthLake for benchmarks (issue #5): seeds D datastores × J jobs of history,
//! writes an exporter config pointing at itself, and serves a tiny stats endpoint with the number of
//! `ListFHIRExportJobs` calls received so far.
//!
//! ```sh
//! cargo run --release -p healthlake-fake -- \
//!     --listen 127.0.0.1:19470 --datastores 50 --jobs 2000 \
//!     --config-out /tmp/bench.toml --exporter-listen 127.0.0.1:19469 \
//!     --stats-listen 127.0.0.1:19471 [--churn] [--seed 1] [--max-requests-per-second 1000]
//! curl -s 127.0.0.1:19471/        # {"list_calls": …, "first_page_calls": …, …}
//! curl -s 127.0.0.1:19471/calls   # just the total number of ListFHIRExportJobs calls
//! ```
//!
//! The config file uses only keys that both healthlake-exporter and
//! `../shared/bench/baseline_exporter.py` read, so both can be pointed at the same fake; the one
//! exception, `polling.max_requests_per_second` (only with `--max-requests-per-second`), is the
//! exporter's request budget, which the baseline ignores (it has no pacing).
//! When the fake is ready it prints one line starting with `READY` (with the bound addresses) on
//! stdout; `bench/scale.py` waits for it. Everything listens on the addresses given (use loopback).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use healthlake_fake::{FakeHealthLake, FakeJob, RecordedRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(about = "Fake Amazon HealthLake seeded with a synthetic export history, for benchmarks")]
struct Args {
    /// Where the fake HealthLake API listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Number of datastores (32-hex ids).
    #[arg(long, default_value_t = 50)]
    datastores: usize,
    /// Export jobs of history per datastore (the newest `--running` ones unfinished).
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// Seed for ids and statuses (same seed, same history).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write an exporter config (TOML) pointing at this fake to this file.
    #[arg(long)]
    config_out: Option<PathBuf>,
    /// `server.listen_address` written into the config.
    #[arg(long, default_value = "127.0.0.1:9469")]
    exporter_listen: SocketAddr,
    /// `polling.interval` written into the config.
    #[arg(long, default_value = "15s")]
    interval: String,
    /// `polling.timeout` written into the config.
    #[arg(long, default_value = "30s")]
    timeout: String,
    /// `polling.concurrency` written into the config.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// `polling.job_series_limit` written into the config.
    #[arg(long, default_value_t = 100)]
    job_series_limit: usize,
    /// `polling.max_requests_per_second` written into the config (the exporter's shared request
    /// budget per account and region; its default is 5, HealthLake's real quota 10). Not written
    /// when absent, so the exporter's default applies. The fake has no quota: `bench/scale.py`
    /// passes 1000 (effectively no pacing) so that it measures the exporter, not the budget.
    #[arg(long)]
    max_requests_per_second: Option<f64>,
    /// `aws.region` written into the config.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Stats endpoint (any GET answers JSON); port 0: any free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    stats_listen: SocketAddr,
    /// Also print the stats line on stdout every this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    print_every: u64,
    /// Once a minute per datastore (spread over the minute), finish the running job (COMPLETED,
    /// every 10th FAILED) and start a new IN_PROGRESS one, so steady-state figures include changes.
    #[arg(long)]
    churn: bool,
    /// The newest this many jobs of each datastore are unfinished (IN_PROGRESS, then QUEUED), as
    /// when a few exports are queued behind a running one.
    #[arg(long, default_value_t = 1)]
    running: usize,
    /// Also leave this percentage of the older jobs unfinished (IN_PROGRESS without an end time),
    /// spread over the whole history: stuck jobs, the shape that keeps a long history unsettled.
    #[arg(long, default_value_t = 0)]
    unfinished_percent: u64,
    /// The shape of each datastore's history (issue 10's benchmark shapes): `plain` (one job an
    /// hour, all finished but the newest); `stuck` (one job every 864 s, i.e. 2,000 over 20 days,
    /// all finished but the newest and the oldest, IN_PROGRESS since 19 days: it holds almost the
    /// whole history unsettled for an exporter that waits for it); `unfinished` (one job every
    /// 864 s, every fifth one SUBMITTED,
    /// QUEUED or IN_PROGRESS); `bursty` (plain, but the newest 600 jobs were submitted within the
    /// last minute, all finished).
    #[arg(long, value_enum, default_value_t = History::Plain)]
    history: History,
}

/// See `Args::history`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum History {
    Plain,
    Stuck,
    Unfinished,
    Bursty,
}

/// Counters kept by this example on top of the fake's own.
#[derive(Default)]
struct Stats {
    churn_events: AtomicU64,
    /// Classification of the requests seen in the fake's (capped) request log.
    classes: Mutex<Classes>,
}

#[derive(Default, Clone, Copy)]
struct Classes {
    /// Total `request_count` already classified.
    seen_total: u64,
    classified: u64,
    /// Calls that could not be classified (more than the log keeps arrived between two looks).
    unclassified: u64,
    first_page: u64,
    next_page: u64,
    with_submitted_after: u64,
    with_job_status: u64,
}

/// SplitMix64: a tiny deterministic generator for ids and statuses.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hex32(a: u64, b: u64) -> String {
    format!("{:016x}{:016x}", mix(a), mix(b))
}

fn datastore_id(seed: u64, d: usize) -> String {
    hex32(
        seed ^ 0xd5d5_0000 ^ ((d as u64) << 20),
        seed.wrapping_add(d as u64),
    )
}

fn job_id(seed: u64, d: usize, k: u64) -> String {
    hex32(
        mix(seed ^ ((d as u64) << 32)) ^ k,
        mix(k ^ 0x0b0b).wrapping_add(d as u64),
    )
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// D datastores × J jobs: one job every `spacing` seconds back in time, mostly COMPLETED, ~2%
/// FAILED, ~1% COMPLETED_WITH_ERRORS, the newest `--running` unfinished (and `--unfinished-percent`
/// of the others), shaped by `args.history`. Returns ids and running job ids.
fn seed_history(fake: &FakeHealthLake, args: &Args, now: f64) -> Vec<(String, Option<String>)> {
    let spacing = match args.history {
        History::Unfinished | History::Stuck => 864.0,
        _ => 3600.0,
    };
    let burst = 600.min(args.jobs.saturating_sub(1)) as u64;
    let mut out = Vec::with_capacity(args.datastores);
    for d in 0..args.datastores {
        let id = datastore_id(args.seed, d);
        fake.add_datastore(&id);
        let mut jobs = Vec::with_capacity(args.jobs);
        let mut running = None;
        for k in 0..args.jobs as u64 {
            let jid = job_id(args.seed, d, k);
            let back = args.jobs as u64 - k;
            let age = match args.history {
                // The newest `burst` jobs: 0.1 s apart, within the last minute.
                History::Bursty if back <= burst => 5.0 + back as f64 * 0.09,
                History::Bursty => (back - burst) as f64 * spacing + 60.0,
                _ => back as f64 * spacing,
            };
            let submitted = now - age + (d % 60) as f64;
            let roll = mix(args.seed ^ k.wrapping_mul(31) ^ ((d as u64) << 40)) % 100;
            let name = format!("export-{k:06}");
            let from_newest = args.jobs as u64 - k;
            let unfinished = ["SUBMITTED", "QUEUED", "IN_PROGRESS"];
            let job = if from_newest <= args.running as u64 {
                let status = if from_newest == 1 {
                    running = Some(jid.clone());
                    "IN_PROGRESS"
                } else {
                    "QUEUED"
                };
                FakeJob::new(jid, status, now - 300.0 - from_newest as f64)
            } else if args.history == History::Stuck && k == 0 {
                FakeJob::new(jid, "IN_PROGRESS", now - 19.0 * 86_400.0)
            } else if args.history == History::Unfinished && k % 5 == 0 {
                FakeJob::new(jid, unfinished[(k / 5 % 3) as usize], submitted)
            } else if mix(args.seed ^ k.wrapping_mul(77) ^ ((d as u64) << 32)) % 100
                < args.unfinished_percent
            {
                FakeJob::new(jid, "IN_PROGRESS", submitted)
            } else {
                let duration = 600.0 + (roll * 17) as f64;
                let status = match roll {
                    0..=1 => "FAILED",
                    2 => "COMPLETED_WITH_ERRORS",
                    _ => "COMPLETED",
                };
                FakeJob::new(jid, status, submitted).ended(submitted + duration)
            };
            // A few unnamed jobs, like ad-hoc exports started from the console.
            jobs.push(if roll == 99 { job } else { job.named(name) });
        }
        healthlake_fake::sort_in_listing_order(&mut jobs);
        for job in jobs {
            fake.add_job(&id, job);
        }
        out.push((id, running));
    }
    out
}

fn config_toml(args: &Args, endpoint_url: &str, ids: &[(String, Option<String>)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Generated by healthlake-fake ({} datastores x {} jobs, seed {}).\n\
         # Readable by healthlake-exporter and by ../shared/bench/baseline_exporter.py.\n",
        args.datastores, args.jobs, args.seed
    );
    let _ = writeln!(
        s,
        "[server]\nlisten_address = \"{}\"\n",
        args.exporter_listen
    );
    let _ = write!(
        s,
        "[polling]\ninterval = \"{}\"\ntimeout = \"{}\"\nconcurrency = {}\njob_series_limit = {}\n",
        args.interval, args.timeout, args.concurrency, args.job_series_limit
    );
    if let Some(rate) = args.max_requests_per_second {
        // `{:?}` keeps a decimal point (1000.0), which TOML reads as a float like the exporter wants.
        let _ = writeln!(s, "max_requests_per_second = {rate:?}");
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "[aws]\nregion = \"{}\"\nendpoint_url = \"{endpoint_url}\"\n",
        args.region
    );
    for (d, (id, _)) in ids.iter().enumerate() {
        let _ = writeln!(
            s,
            "[[datastores]]\nid = \"{id}\"\nname = \"bench-{:04}\"\n",
            d + 1
        );
    }
    s
}

fn total_calls(fake: &FakeHealthLake, ids: &[String]) -> (u64, u64, u64) {
    let mut total = 0u64;
    let mut min = u64::MAX;
    let mut max = 0u64;
    for id in ids {
        let n = fake.request_count(id) as u64;
        total += n;
        min = min.min(n);
        max = max.max(n);
    }
    (total, if ids.is_empty() { 0 } else { min }, max)
}

/// Classifies the calls that arrived since the last look, from the tail of the fake's request
/// log. Only when no call arrived while the log was copied (else the tail is ambiguous; retried on
/// the next tick). Calls beyond what the log keeps are counted as unclassified.
fn classify(fake: &FakeHealthLake, ids: &[String], stats: &Stats) {
    let (before, _, _) = total_calls(fake, ids);
    let mut classes = *stats.classes.lock().unwrap_or_else(|e| e.into_inner());
    if before == classes.seen_total {
        return;
    }
    let log: Vec<RecordedRequest> = fake.requests();
    let (after, _, _) = total_calls(fake, ids);
    if after != before {
        return;
    }
    let new = before - classes.seen_total;
    let take = (new as usize).min(log.len());
    for r in &log[log.len() - take..] {
        classes.classified += 1;
        if r.next_token.is_some() {
            classes.next_page += 1;
        } else {
            classes.first_page += 1;
        }
        if r.submitted_after.is_some() {
            classes.with_submitted_after += 1;
        }
        if r.job_status.is_some() {
            classes.with_job_status += 1;
        }
    }
    classes.unclassified += new - take as u64;
    classes.seen_total = before;
    *stats.classes.lock().unwrap_or_else(|e| e.into_inner()) = classes;
}

fn stats_json(
    fake: &FakeHealthLake,
    ids: &[String],
    stats: &Stats,
    args: &Args,
    started: Instant,
) -> String {
    let (total, min, max) = total_calls(fake, ids);
    let c = *stats.classes.lock().unwrap_or_else(|e| e.into_inner());
    serde_json::json!({
        "list_calls": total,
        "list_calls_per_datastore_min": min,
        "list_calls_per_datastore_max": max,
        "datastores": args.datastores,
        "jobs_per_datastore": args.jobs,
        "churn_events": stats.churn_events.load(Ordering::Relaxed),
        "uptime_seconds": started.elapsed().as_secs_f64(),
        "classified_calls": c.classified,
        "unclassified_calls": c.unclassified,
        "first_page_calls": c.first_page,
        "next_page_calls": c.next_page,
        "calls_with_submitted_after": c.with_submitted_after,
        "calls_with_job_status": c.with_job_status,
    })
    .to_string()
}

async fn churn(
    fake: FakeHealthLake,
    mut datastores: Vec<(String, Option<String>)>,
    seed: u64,
    stats: Arc<Stats>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut second: u64 = 0;
    loop {
        tick.tick().await;
        second += 1;
        let now = unix_now();
        for (d, (id, running)) in datastores.iter_mut().enumerate() {
            if d as u64 % 60 != second % 60 {
                continue;
            }
            let n = stats.churn_events.fetch_add(1, Ordering::Relaxed);
            if let Some(job) = running.take() {
                let status = if n % 10 == 9 { "FAILED" } else { "COMPLETED" };
                fake.set_job_status(id, &job, status, Some(now));
            }
            let jid = job_id(seed ^ 0xc4c4, d, 1_000_000 + second);
            fake.add_job(
                id,
                FakeJob::new(jid.clone(), "IN_PROGRESS", now).named(format!("churn-{second:06}")),
            );
            *running = Some(jid);
        }
    }
}

async fn serve_stats(
    listener: TcpListener,
    fake: FakeHealthLake,
    ids: Arc<Vec<String>>,
    stats: Arc<Stats>,
    args: Arc<Args>,
    started: Instant,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let (fake, ids, stats, args) = (fake.clone(), ids.clone(), stats.clone(), args.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            // One read is enough for a GET from curl or urllib; the request itself is ignored.
            let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
                .await
                .map_or(0, |r| r.unwrap_or(0));
            // `GET /calls`: just the total, cheap enough to poll several times a second.
            let body = if buf[..n].starts_with(b"GET /calls") {
                total_calls(&fake, &ids).0.to_string()
            } else {
                classify(&fake, &ids, &stats);
                stats_json(&fake, &ids, &stats, &args, started)
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Arc::new(Args::parse());
    let started = Instant::now();
    let fake = FakeHealthLake::new();
    let seed_start = Instant::now();
    let datastores = seed_history(&fake, &args, unix_now());
    let seed_seconds = seed_start.elapsed().as_secs_f64();
    let server = fake.serve(args.listen).await?;
    let stats_listener = TcpListener::bind(args.stats_listen).await?;
    let stats_addr = stats_listener.local_addr()?;
    if let Some(path) = &args.config_out {
        std::fs::write(
            path,
            config_toml(&args, &server.endpoint_url(), &datastores),
        )?;
    }
    let ids: Arc<Vec<String>> = Arc::new(datastores.iter().map(|(id, _)| id.clone()).collect());
    let stats = Arc::new(Stats::default());

    // Keep the request classification up to date between stats requests.
    {
        let (fake, ids, stats) = (fake.clone(), ids.clone(), stats.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                classify(&fake, &ids, &stats);
            }
        });
    }
    if args.churn {
        tokio::spawn(churn(
            fake.clone(),
            datastores.clone(),
            args.seed,
            stats.clone(),
        ));
    }
    if args.print_every > 0 {
        let (fake, ids, stats, args) = (fake.clone(), ids.clone(), stats.clone(), args.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(args.print_every));
            tick.tick().await;
            loop {
                tick.tick().await;
                println!("STATS {}", stats_json(&fake, &ids, &stats, &args, started));
            }
        });
    }
    tokio::spawn(serve_stats(
        stats_listener,
        fake.clone(),
        ids,
        stats,
        args.clone(),
        started,
    ));
    println!(
        "READY endpoint={} stats=http://{stats_addr}/ datastores={} jobs={} seed_seconds={seed_seconds:.2} config={}",
        server.endpoint_url(),
        args.datastores,
        args.jobs,
        args.config_out
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
    );
    termination_signal().await;
    server.shutdown();
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): `bench/scale.py` stops the fake with SIGTERM.
async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
