//! Flood benchmark (not a test), loopback only and bounded in time: the exporter, as its own
//! process, against the floods of the security reviews, with clients on several 127.0.0.x source
//! addresses. Each phase prints success rates, latencies and the exporter's CPU.
//!
//! 1. **Connect flood**: clients on 127.0.0.1 open connections as fast as they can (half close at
//!    once, half hold theirs without a request); a "kubelet" on 127.0.0.2 probes `/healthz`.
//! 2. **Wrong-password flood, scraper cached**: clients on 127.0.0.1 send ever-new wrong passwords
//!    (bcrypt cost 10); a scraper on 127.0.0.2 that logged in before scrapes `/metrics`.
//! 3. **Wrong-password flood, scraper not cached** (issue 18, finding 2): clients on 16 addresses
//!    (127.0.0.10 and up, two each) send ever-new wrong passwords from the exporter's start. The
//!    scraper on 127.0.0.2 scrapes at once and then every 200 ms as a user it never used before:
//!    every scrape is a first check, as at start or after the success cache expired.
//! 4. **The same flood, right after `[server.basic_auth]` changes**: every second the scraper's
//!    password is rotated in the file and `POST /-/reload` applies it; the scraper then scrapes
//!    with the new password at once.
//! 5. **Clients that stop reading** (finding 7): two addresses open 32 connections each,
//!    request a ~17 MB `/metrics`, read its head and stop reading, reopening every 9.5 s; probes
//!    from a third address (1 s timeout). Then the same from six addresses.
//! 6. **Half-sent requests behind a mesh** (finding 13): everything from 127.0.0.1 with
//!    `max_connections_per_ip = 0`; 600 connections send half a request head (reopened when
//!    closed), a scraper from the same address scrapes `/metrics` every 200 ms.
//!
//! ```sh
//! cargo build --release -p healthlake-exporter && cargo run --release --example flood
//! ```
//! Options: `--seconds N` per phase (default 10), `--exporter PATH`
//! (target/release/healthlake-exporter), `--flooders N` (phases 1-2, default 8),
//! `--flood-addresses N` (phases 3-4, default 16), `--phases 3,5` (default all).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use healthlake_fake::{FakeHealthLake, FakeJob};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

struct Args {
    seconds: u64,
    exporter: String,
    flooders: usize,
    flood_addresses: usize,
    phases: Vec<u32>,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 10,
        exporter: "target/release/healthlake-exporter".into(),
        flooders: 8,
        flood_addresses: 16,
        phases: (1..=6).collect(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value.parse().expect("--seconds N"),
            "--exporter" => args.exporter = value,
            "--flooders" => args.flooders = value.parse().expect("--flooders N"),
            "--flood-addresses" => {
                args.flood_addresses = value.parse().expect("--flood-addresses N");
                assert!((1..=200).contains(&args.flood_addresses));
            }
            "--phases" => {
                args.phases = value
                    .split(',')
                    .map(|p| p.trim().parse().expect("--phases 1,3,5"))
                    .collect();
            }
            other => panic!("unknown option {other}"),
        }
    }
    args
}

// ---- the exporter process ----

/// The exporter, its address and its config file (rewritten for reloads).
struct Exporter {
    child: Child,
    addr: SocketAddr,
    config: PathBuf,
}

impl Exporter {
    async fn start(path: &str, server: &str, tail: &str) -> Exporter {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = std::env::temp_dir().join(format!("hle-flood-{}.toml", std::process::id()));
        std::fs::write(&config, config_text(addr, server, tail)).unwrap();
        let child = Command::new(path)
            .arg("--config")
            .arg(&config)
            .env("AWS_ACCESS_KEY_ID", "AKIDFLOOD")
            .env("AWS_SECRET_ACCESS_KEY", "flood-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {path}: {e} (build it first)"));
        let exporter = Exporter {
            child,
            addr,
            config,
        };
        exporter.wait_up().await;
        exporter
    }

    fn rewrite(&self, server: &str, tail: &str) {
        std::fs::write(&self.config, config_text(self.addr, server, tail)).unwrap();
    }

    async fn wait_up(&self) {
        for _ in 0..400 {
            if get("127.0.0.250", self.addr, "/healthz", None, SECOND)
                .await
                .0
                == Some(200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the exporter did not come up on {}", self.addr);
    }

    /// CPU seconds (user + system) the process has used.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
            .sum();
        ticks / 100.0
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn config_text(addr: SocketAddr, server: &str, tail: &str) -> String {
    format!("[server]\nlisten_address = \"{addr}\"\n{server}\n{tail}")
}

/// Measures the exporter's CPU over a phase.
struct CpuMeter {
    cpu: f64,
    started: Instant,
}

impl CpuMeter {
    fn start(exporter: &Exporter) -> CpuMeter {
        CpuMeter {
            cpu: exporter.cpu_seconds(),
            started: Instant::now(),
        }
    }

    /// Cores used on average since `start`.
    fn cores(&self, exporter: &Exporter) -> f64 {
        (exporter.cpu_seconds() - self.cpu) / self.started.elapsed().as_secs_f64()
    }
}

// ---- clients ----

const SECOND: Duration = Duration::from_secs(1);

async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// One request on a new connection from `source`: the status (None on failure or after
/// `limit`) and how long it took.
async fn get(
    source: &str,
    addr: SocketAddr,
    path: &str,
    auth: Option<&str>,
    limit: Duration,
) -> (Option<u16>, Duration) {
    request(source, addr, "GET", path, auth, limit).await
}

async fn request(
    source: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    limit: Duration,
) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let attempt = async {
        let mut stream = connect_from(source, addr).await.ok()?;
        let auth = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        String::from_utf8_lossy(&answer)
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    };
    let status = tokio::time::timeout(limit, attempt).await.ok().flatten();
    (status, started.elapsed())
}

fn basic(credentials: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(credentials)
}

/// Outcomes of one client's requests: successes' latencies, failures by kind.
#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    too_many: u32,
    failed: u32,
}

impl Tally {
    fn add(&mut self, (status, took): (Option<u16>, Duration)) {
        match status {
            Some(200) => self.latencies_ms.push(took.as_secs_f64() * 1000.0),
            Some(429) => self.too_many += 1,
            _ => self.failed += 1,
        }
    }

    fn summary(&mut self, limit_ms: f64) -> String {
        let ok = self.latencies_ms.len() as u32;
        let total = ok + self.too_many + self.failed;
        self.latencies_ms.sort_by(f64::total_cmp);
        let slow = self.latencies_ms.iter().filter(|l| **l > limit_ms).count();
        let pick = |p: f64| {
            let sorted = &self.latencies_ms;
            if sorted.is_empty() {
                return f64::NAN;
            }
            sorted[((sorted.len() - 1) as f64 * p).round() as usize]
        };
        format!(
            "{ok}/{total} = {:.1} % OK ({} x 429, {} failed or timed out, {slow} slower than {limit_ms:.0} ms); latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            100.0 * f64::from(ok) / f64::from(total.max(1)),
            self.too_many,
            self.failed,
            pick(0.5),
            pick(0.99),
            self.latencies_ms.last().copied().unwrap_or(f64::NAN),
        )
    }
}

// ---- floods ----

/// Clients on `sources`, `per_source` each, sending ever-new wrong passwords for `user` until
/// `stop`; answers counted as [401, 429, other].
fn wrong_password_flood(
    addr: SocketAddr,
    sources: Vec<String>,
    per_source: usize,
    user: &str,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinSet<()>, Arc<[AtomicU64; 3]>) {
    let answers = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, source) in sources.iter().flat_map(|s| vec![s; per_source]).enumerate() {
        let (answers, stop) = (Arc::clone(&answers), Arc::clone(&stop));
        let (source, user) = (source.clone(), user.to_owned());
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let wrong = basic(&format!("{user}:wrong-{i}-{n}"));
                let limit = Duration::from_secs(5);
                let slot = match get(&source, addr, "/metrics", Some(&wrong), limit).await.0 {
                    Some(401) => 0,
                    Some(429) => 1,
                    _ => 2,
                };
                answers[slot].fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    (tasks, answers)
}

fn flood_summary(answers: &[AtomicU64; 3]) -> String {
    format!(
        "401 x{}, 429 x{}, other x{}",
        answers[0].load(Ordering::Relaxed),
        answers[1].load(Ordering::Relaxed),
        answers[2].load(Ordering::Relaxed)
    )
}

/// `count` connections from `source` that request `/metrics`, read the response head and stop
/// reading; each is closed and reopened every 9.5 s (just before the write timeout would).
fn stalled_readers(
    addr: SocketAddr,
    source: String,
    count: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (source, stop) = (source.clone(), Arc::clone(&stop));
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut stream) = connect_from(&source, addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
                let mut buf = [0u8; 1024];
                if stream.write_all(head).await.is_err() || stream.read(&mut buf).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(9500)).await;
            }
        });
    }
    tasks
}

/// `count` connections from 127.0.0.1 that send half a request head and wait; a connection the
/// server closes is opened again at once. Counts the connections opened.
fn half_sent_requests(
    addr: SocketAddr,
    count: usize,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut stream) = connect_from("127.0.0.1", addr).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let _ = stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    .await;
                let mut byte = [0u8; 1];
                let wait = stream.read(&mut byte);
                let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
            }
        });
    }
    tasks
}

async fn stop_all(stop: &AtomicBool, tasks: Vec<tokio::task::JoinSet<()>>) {
    stop.store(true, Ordering::Relaxed);
    for mut set in tasks {
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
}

// ---- phases ----

fn datastores_tail(endpoint: &str, count: usize, name_length: usize) -> String {
    let mut tail = format!("[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n");
    let filler = "n".repeat(name_length);
    for n in 0..count {
        tail.push_str(&format!(
            "[[datastores]]\nid = \"ds{n:05}\"\nname = \"{filler}-{n:05}\"\n"
        ));
    }
    tail
}

async fn connect_flood(args: &Args, tail: &str) {
    let exporter = Exporter::start(&args.exporter, "", tail).await;
    let addr = exporter.addr;
    let connects = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..args.flooders {
        let connects = Arc::clone(&connects);
        flood.spawn(async move {
            let mut held = Vec::new();
            while Instant::now() < deadline {
                if let Ok(stream) = connect_from("127.0.0.1", addr).await {
                    connects.fetch_add(1, Ordering::Relaxed);
                    if i % 2 == 1 {
                        held.push(stream);
                        if held.len() > 200 {
                            held.remove(0);
                        }
                    }
                }
            }
        });
    }
    let meter = CpuMeter::start(&exporter);
    let mut probes = Tally::default();
    while Instant::now() < deadline {
        probes.add(get("127.0.0.2", addr, "/healthz", None, SECOND).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while flood.join_next().await.is_some() {}
    println!(
        "1. connect flood: {} connects/s from 127.0.0.1 ({} flooders, defaults); exporter CPU {:.2} cores\n   /healthz probes from 127.0.0.2 (1 s timeout): {}",
        connects.load(Ordering::Relaxed) / args.seconds.max(1),
        args.flooders,
        meter.cores(&exporter),
        probes.summary(1000.0),
    );
    exporter.stop();
}

async fn password_flood_cached(args: &Args, tail: &str) {
    let hash = bcrypt::hash("right", 10).unwrap();
    let server = format!("[server.basic_auth.users]\nscraper = \"{hash}\"\n");
    let exporter = Exporter::start(&args.exporter, &server, tail).await;
    let addr = exporter.addr;
    let good = basic("scraper:right");
    // Prometheus was scraping before the flood began: its credentials are verified (and cached).
    let (status, first_login) = get("127.0.0.2", addr, "/metrics", Some(&good), SECOND * 5).await;
    assert_eq!(status, Some(200));
    let stop = Arc::new(AtomicBool::new(false));
    let sources = vec!["127.0.0.1".to_owned()];
    let (flood, answers) =
        wrong_password_flood(addr, sources, args.flooders, "scraper", Arc::clone(&stop));
    let meter = CpuMeter::start(&exporter);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut scrapes = Tally::default();
    while Instant::now() < deadline {
        scrapes.add(get("127.0.0.2", addr, "/metrics", Some(&good), SECOND * 5).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cores = meter.cores(&exporter);
    stop_all(&stop, vec![flood]).await;
    println!(
        "2. wrong-password flood, {} clients on 127.0.0.1 ({}); exporter CPU {cores:.2} cores\n   scraper on 127.0.0.2, cached (first login {:.0} ms): {}",
        args.flooders,
        flood_summary(&answers),
        first_login.as_secs_f64() * 1000.0,
        scrapes.summary(1000.0),
    );
    exporter.stop();
}

fn flood_sources(count: usize) -> Vec<String> {
    (0..count)
        .map(|n| format!("127.0.{}.{}", n / 200, 10 + n % 200))
        .collect()
}

/// `[server]` with `users` scrapers sharing `hash`, an admin and reloads on.
fn users_section(users: usize, hash: &str, admin: &str) -> String {
    let mut section =
        format!("enable_reload = true\n[server.basic_auth.users]\nadmin = \"{admin}\"\n");
    for n in 0..users {
        section.push_str(&format!("scraper{n} = \"{hash}\"\n"));
    }
    section
}

async fn password_flood_uncached(args: &Args, tail: &str) {
    let hash = bcrypt::hash("right", 10).unwrap();
    let users = (args.seconds * 5 + 10) as usize;
    let server = users_section(users, &hash, &hash);
    let exporter = Exporter::start(&args.exporter, &server, tail).await;
    let addr = exporter.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let sources = flood_sources(args.flood_addresses);
    let (flood, answers) = wrong_password_flood(addr, sources, 2, "scraper0", Arc::clone(&stop));
    let meter = CpuMeter::start(&exporter);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut scrapes = Tally::default();
    let mut n = 0;
    while Instant::now() < deadline && n < users {
        let fresh = basic(&format!("scraper{n}:right"));
        n += 1;
        scrapes.add(get("127.0.0.2", addr, "/metrics", Some(&fresh), SECOND * 5).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cores = meter.cores(&exporter);
    stop_all(&stop, vec![flood]).await;
    println!(
        "3. wrong-password flood from the start, {} addresses x 2 clients ({}); exporter CPU {cores:.2} cores\n   scraper on 127.0.0.2, every scrape a first check (at start, then as after a cache expiry): {}",
        args.flood_addresses,
        flood_summary(&answers),
        scrapes.summary(1000.0),
    );
    exporter.stop();
}

async fn password_flood_reloads(args: &Args, tail: &str) {
    let admin = bcrypt::hash("admin", 10).unwrap();
    let exporter = Exporter::start(
        &args.exporter,
        &users_section(1, &bcrypt::hash("p0", 10).unwrap(), &admin),
        tail,
    )
    .await;
    let addr = exporter.addr;
    let admin_auth = basic("admin:admin");
    let (status, _) = get("127.0.0.3", addr, "/metrics", Some(&admin_auth), SECOND * 5).await;
    assert_eq!(status, Some(200), "the admin logs in before the flood");
    let stop = Arc::new(AtomicBool::new(false));
    let sources = flood_sources(args.flood_addresses);
    let (flood, answers) = wrong_password_flood(addr, sources, 2, "scraper0", Arc::clone(&stop));
    let meter = CpuMeter::start(&exporter);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let (mut scrapes, mut reloads) = (Tally::default(), Tally::default());
    let mut round = 0;
    while Instant::now() < deadline {
        round += 1;
        let password = format!("p{round}");
        let hash = bcrypt::hash(&password, 10).unwrap();
        exporter.rewrite(&users_section(1, &hash, &admin), tail);
        let reload = request(
            "127.0.0.3",
            addr,
            "POST",
            "/-/reload",
            Some(&admin_auth),
            SECOND * 5,
        );
        reloads.add(reload.await);
        let fresh = basic(&format!("scraper0:{password}"));
        scrapes.add(get("127.0.0.2", addr, "/metrics", Some(&fresh), SECOND * 5).await);
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let cores = meter.cores(&exporter);
    stop_all(&stop, vec![flood]).await;
    println!(
        "4. the same flood ({}); exporter CPU {cores:.2} cores\n   POST /-/reload rotating the scraper's password: {}\n   scraper's first scrape right after each reload: {}",
        flood_summary(&answers),
        reloads.summary(1000.0),
        scrapes.summary(1000.0),
    );
    exporter.stop();
}

async fn slow_readers(args: &Args, tail: &str, addresses: usize) {
    let exporter = Exporter::start(&args.exporter, "", tail).await;
    let addr = exporter.addr;
    let (status, took) = get("127.0.0.250", addr, "/metrics", None, SECOND * 30).await;
    assert_eq!(status, Some(200));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..addresses)
        .map(|n| stalled_readers(addr, format!("127.0.1.{}", n + 1), 32, Arc::clone(&stop)))
        .collect();
    let meter = CpuMeter::start(&exporter);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut probes = Tally::default();
    while Instant::now() < deadline {
        probes.add(get("127.0.0.3", addr, "/healthz", None, SECOND).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cores = meter.cores(&exporter);
    stop_all(&stop, readers).await;
    println!(
        "5. {addresses} addresses x 32 connections stop reading /metrics (read in {:.0} ms by a reader), reopened every 9.5 s; exporter CPU {cores:.2} cores\n   /healthz probes from a third address (1 s timeout): {}",
        took.as_secs_f64() * 1000.0,
        probes.summary(1000.0),
    );
    exporter.stop();
}

async fn mesh_half_sent(args: &Args, tail: &str) {
    let exporter = Exporter::start(&args.exporter, "max_connections_per_ip = 0", tail).await;
    let addr = exporter.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let flood = half_sent_requests(addr, 600, Arc::clone(&stop), Arc::clone(&opened));
    let meter = CpuMeter::start(&exporter);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut scrapes = Tally::default();
    while Instant::now() < deadline {
        scrapes.add(get("127.0.0.1", addr, "/metrics", None, SECOND * 10).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cores = meter.cores(&exporter);
    let rate = opened.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop_all(&stop, vec![flood]).await;
    println!(
        "6. mesh (one address, max_connections_per_ip = 0): 600 half-sent requests, reopened when closed ({rate:.0} connects/s); exporter CPU {cores:.2} cores\n   scraper from the same address: {}",
        scrapes.summary(1000.0),
    );
    exporter.stop();
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let fake = FakeHealthLake::new();
    for n in 0..50 {
        fake.add_job(
            "ds",
            FakeJob::new(format!("j{n}"), "COMPLETED", 1_700_000_000.0 + n as f64)
                .ended(1_700_000_100.0 + n as f64),
        );
    }
    let server = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let endpoint = server.endpoint_url();
    let tail = format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n[[datastores]]\nid = \"ds\"\n"
    );
    let phase = |n| args.phases.contains(&n);
    if phase(1) {
        connect_flood(&args, &tail).await;
    }
    if phase(2) {
        password_flood_cached(&args, &tail).await;
    }
    if phase(3) {
        password_flood_uncached(&args, &tail).await;
    }
    if phase(4) {
        password_flood_reloads(&args, &tail).await;
    }
    if phase(5) {
        // About 17 MB of /metrics: many datastores with long names (never answered: the
        // endpoint is a closed port, so their polls fail fast and their series stay).
        let big = datastores_tail("http://127.0.0.1:9", 5000, 100);
        slow_readers(&args, &big, 2).await;
        // Beyond what the per-address cap keeps apart: every slot is taken.
        slow_readers(&args, &big, 6).await;
    }
    if phase(6) {
        mesh_half_sent(&args, &tail).await;
    }
}
