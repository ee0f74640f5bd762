//! Flood benchmark (not a test), loopback only and bounded in time: the exporter, as its own
//! process, against two floods from the security review.
//!
//! 1. **Connect flood**: clients on 127.0.0.1 open connections as fast as they can (half close at
//!    once, half hold their connection without sending a request), while a "kubelet" on
//!    127.0.0.2 probes `/healthz` every 50 ms. Prints the probe success rate.
//! 2. **Wrong-password flood**: with basic auth (bcrypt cost 10), clients on 127.0.0.1 send
//!    requests with ever-new wrong passwords, while a scraper on 127.0.0.2 with the right password
//!    scrapes `/metrics` every 200 ms (it logged in before the flood began, as a running
//!    Prometheus has). Prints the scraper's latency, the flood's answers (401 / 429) and the
//!    exporter's CPU use.
//!
//! ```sh
//! cargo build --release -p healthlake-exporter && cargo run --release --example flood
//! ```
//! Options: `--seconds N` per phase (default 10), `--exporter PATH`
//! (target/release/healthlake-exporter), `--flooders N` (default 8).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
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
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 10,
        exporter: "target/release/healthlake-exporter".into(),
        flooders: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value.parse().expect("--seconds N"),
            "--exporter" => args.exporter = value,
            "--flooders" => args.flooders = value.parse().expect("--flooders N"),
            other => panic!("unknown option {other}"),
        }
    }
    args
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_exporter(path: &str, config: &str) -> Child {
    let file = std::env::temp_dir().join(format!("hle-flood-{}.toml", std::process::id()));
    std::fs::write(&file, config).unwrap();
    Command::new(path)
        .arg("--config")
        .arg(&file)
        .env("AWS_ACCESS_KEY_ID", "AKIDFLOOD")
        .env("AWS_SECRET_ACCESS_KEY", "flood-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path}: {e} (build it first)"))
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// One request on a new connection from `source`: the status, or None on any failure.
async fn get(source: &str, addr: SocketAddr, path: &str, auth: Option<&str>) -> Option<u16> {
    let attempt = async {
        let mut stream = connect_from(source, addr).await.ok()?;
        let auth = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        String::from_utf8_lossy(&answer)
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .ok()
        .flatten()
}

async fn wait_up(addr: SocketAddr) {
    for _ in 0..200 {
        if get("127.0.0.2", addr, "/healthz", None).await == Some(200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the exporter did not come up on {addr}");
}

fn basic(credentials: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(credentials)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let phase = Duration::from_secs(args.seconds);
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

    // ---- 1. connect flood ----
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = start_exporter(
        &args.exporter,
        &format!("[server]\nlisten_address = \"{addr}\"\n{tail}"),
    );
    wait_up(addr).await;
    let connects = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + phase;
    let mut flood = Vec::new();
    for i in 0..args.flooders {
        let connects = Arc::clone(&connects);
        flood.push(tokio::spawn(async move {
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
        }));
    }
    let (mut ok, mut probes) = (0u32, 0u32);
    while Instant::now() < deadline {
        probes += 1;
        if get("127.0.0.2", addr, "/healthz", None).await == Some(200) {
            ok += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for task in flood {
        let _ = task.await;
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "connect flood: {} connects/s from 127.0.0.1 ({} flooders, max_connections 64, max_connections_per_ip 32); /healthz probes from 127.0.0.2: {ok}/{probes} = {:.1} % succeeded",
        connects.load(Ordering::Relaxed) / args.seconds.max(1),
        args.flooders,
        100.0 * f64::from(ok) / f64::from(probes.max(1)),
    );

    // ---- 2. wrong-password flood ----
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let hash = bcrypt::hash("right", 10).unwrap();
    let mut child = start_exporter(
        &args.exporter,
        &format!(
            "[server]\nlisten_address = \"{addr}\"\nmax_connections_per_ip = 0\n[server.basic_auth.users]\nscraper = \"{hash}\"\n{tail}"
        ),
    );
    wait_up(addr).await;
    let good = basic("scraper:right");
    // Prometheus was scraping before the flood began: its credentials are verified (and cached).
    let login = Instant::now();
    assert_eq!(
        get("127.0.0.2", addr, "/metrics", Some(&good)).await,
        Some(200)
    );
    let first_login = login.elapsed();
    let cpu_before = cpu_seconds(child.id());
    let started = Instant::now();
    let deadline = started + phase;
    let answers = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let mut flood = Vec::new();
    for i in 0..args.flooders {
        let answers = Arc::clone(&answers);
        flood.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let wrong = basic(&format!("scraper:wrong-{i}-{n}"));
                let slot = match get("127.0.0.1", addr, "/metrics", Some(&wrong)).await {
                    Some(401) => 0,
                    Some(429) => 1,
                    _ => 2,
                };
                answers[slot].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::new();
    let mut failed = 0;
    while Instant::now() < deadline {
        let t = Instant::now();
        if get("127.0.0.2", addr, "/metrics", Some(&good)).await == Some(200) {
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        } else {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for task in flood {
        let _ = task.await;
    }
    let cores = (cpu_seconds(child.id()) - cpu_before) / started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    latencies.sort_by(f64::total_cmp);
    println!(
        "wrong-password flood: {} flooders on 127.0.0.1 answered 401 x{}, 429 x{}, other x{}; exporter CPU {:.2} cores",
        args.flooders,
        answers[0].load(Ordering::Relaxed),
        answers[1].load(Ordering::Relaxed),
        answers[2].load(Ordering::Relaxed),
        cores,
    );
    println!(
        "valid scraper on 127.0.0.2 (logged in before the flood, {:.0} ms): {} scrapes under the flood OK, {failed} failed; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        first_login.as_secs_f64() * 1000.0,
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
}
