//! Hostile-input figures (not a test), loopback only: the exporter, as its own process, discovers
//! a datastore whose name is 3 MB (issue 18, finding 5; before the bound: a 99 MB `/metrics`,
//! 86 MiB RSS, a 3 MB log line) next to ones with ids the API does not allow, while an API error
//! message of 200 KB with a forged log line in it (finding 8) fails another datastore's polls.
//! Prints the `/metrics` size and longest line, the exporter's peak RSS (VmHWM) and the longest
//! stderr line, and whether any stderr byte was a raw ESC.
//!
//! ```sh
//! cargo build --release -p healthlake-exporter && cargo run --release --example hostile_names
//! ```
//! Options: `--seconds N` to keep it running (default 10), `--name-bytes N` (3000000),
//! `--exporter PATH` (target/release/healthlake-exporter).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use healthlake_fake::{FakeDatastore, FakeHealthLake, Fault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    seconds: u64,
    name_bytes: usize,
    exporter: String,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 10,
        name_bytes: 3_000_000,
        exporter: "target/release/healthlake-exporter".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value.parse().expect("--seconds N"),
            "--name-bytes" => args.name_bytes = value.parse().expect("--name-bytes N"),
            "--exporter" => args.exporter = value,
            other => panic!("unknown option {other}"),
        }
    }
    args
}

/// The exporter process, killed however the program ends.
struct Exporter(Child);

impl Drop for Exporter {
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

async fn metrics(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let answer = String::from_utf8_lossy(&answer);
    Some(answer.split_once("\r\n\r\n")?.1.to_owned())
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let fake = FakeHealthLake::new();
    let huge = format!("prod-{}", "n".repeat(args.name_bytes));
    fake.set_datastore("d-huge", FakeDatastore::new(huge));
    fake.set_datastore("ds#1", FakeDatastore::new("prod-bad-id"));
    fake.set_datastore("d-denied", FakeDatastore::new("prod-denied"));
    let denied = format!(
        "denied\n2026-01-01T00:00:00Z ERROR forged\x1b[31m{}",
        "z".repeat(200_000)
    );
    fake.set_fault("d-denied", Some(Fault::AccessDeniedWith(denied)));
    let server = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = format!(
        "[server]\nlisten_address = \"{addr}\"\n[polling]\ninterval = \"1s\"\ndatastore_health = true\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[[discovery]]\nname_prefix = \"prod-\"\ninterval = \"2s\"\n",
        server.endpoint_url()
    );
    let file = std::env::temp_dir().join(format!("hle-hostile-{}.toml", std::process::id()));
    std::fs::write(&file, config).unwrap();
    let mut child = Exporter(
        Command::new(&args.exporter)
            .arg("--config")
            .arg(&file)
            .env("AWS_ACCESS_KEY_ID", "AKIDHOSTILE")
            .env("AWS_SECRET_ACCESS_KEY", "hostile-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (build it first)", args.exporter)),
    );
    let pid = child.0.id();
    let longest_log = Arc::new(AtomicUsize::new(0));
    let raw_esc = Arc::new(AtomicBool::new(false));
    let stderr = child.0.stderr.take().unwrap();
    {
        let (longest_log, raw_esc) = (Arc::clone(&longest_log), Arc::clone(&raw_esc));
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                longest_log.fetch_max(line.len(), Ordering::Relaxed);
                if line.contains(&0x1b) {
                    raw_esc.store(true, Ordering::Relaxed);
                }
                line.clear();
            }
        });
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds.max(1));
    let (mut largest, mut longest_line, mut polled_at) = (0usize, 0usize, None);
    while Instant::now() < deadline {
        if let Some(body) = metrics(addr).await {
            largest = largest.max(body.len());
            longest_line = longest_line.max(body.lines().map(str::len).max().unwrap_or(0));
            if polled_at.is_none() && body.contains("healthlake_feed_up{datastore_id=\"d-huge\"") {
                polled_at = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let hwm = status_kib(pid, "VmHWM:");
    drop(child);
    println!("name bytes             {}", args.name_bytes);
    match polled_at {
        Some(at) => println!("d-huge exported after  {:.1} s", at.as_secs_f64()),
        None => println!("d-huge exported after  never (within {} s)", args.seconds),
    }
    println!("/metrics largest       {largest} bytes (longest line {longest_line} bytes)");
    println!("exporter peak RSS      {} KiB (VmHWM)", hwm);
    println!("ds#1 requests          {}", fake.request_count("ds#1"));
    println!(
        "stderr longest line    {} bytes; raw ESC byte: {}",
        longest_log.load(Ordering::Relaxed),
        raw_esc.load(Ordering::Relaxed)
    );
    server.shutdown();
}
