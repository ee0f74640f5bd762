//! The endpoint under the floods of the second security review (issue 18), against the real
//! server on loopback, with clients on several 127.0.0.x source addresses: a wrong-password flood
//! while the scraper's credentials are not cached, clients that stop reading a large `/metrics`,
//! half-sent requests behind a service mesh (one address for everyone), DNS rebinding against
//! `/-/reload`, and the bcrypt cost rules. Assertions are coarse (shares of requests, generous
//! deadlines): the precise figures come from `examples/flood.rs`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http_server::{basic, serve_with};
use common::*;
use healthlake_exporter::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

// ---- clients on chosen loopback addresses ----

async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// One request on a new connection from `source`: the status and the body, or None when no
/// answer came within `limit`.
async fn request_from(
    source: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    limit: Duration,
) -> Option<(u16, String)> {
    let attempt = async {
        let mut stream = connect_from(source, addr).await.ok()?;
        let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request.push_str(&format!("Host: {addr}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer).to_string();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        Some((status, body))
    };
    tokio::time::timeout(limit, attempt).await.ok().flatten()
}

fn plain_config(server: &str, datastores: usize) -> String {
    let mut text = format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\n{server}\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:9\"\n"
    );
    // Long names make a large /metrics from few datastores.
    let long = "x".repeat(100);
    for n in 0..datastores {
        text.push_str(&format!(
            "[[datastores]]\nid = \"ds{n:05}\"\nname = \"datastore-{n:05}-{long}\"\n"
        ));
    }
    text
}

// ---- finding 2: a wrong-password flood must not lock out the scraper ----

/// Clients on 12 addresses (127.0.0.10 to .21), three each, sending ever-new wrong passwords
/// until `stop`; returns how many answers of each status they got.
fn wrong_password_flood(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    (0..36)
        .map(|i| {
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            let source = format!("127.0.0.{}", 10 + i % 12);
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let wrong = basic("scraper0", &format!("wrong-{i}-{n}"));
                    let headers = [("Authorization", wrong.as_str())];
                    let limit = Duration::from_secs(10);
                    if let Some((status, _)) =
                        request_from(&source, addr, "GET", "/metrics", &headers, limit).await
                    {
                        statuses.push(status);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
                statuses
            })
        })
        .collect()
}

fn users_config(hashes: &[String]) -> String {
    let mut text = plain_config("", 1);
    text.push_str("[server.basic_auth.users]\n");
    for (n, hash) in hashes.iter().enumerate() {
        text.push_str(&format!("scraper{n} = \"{hash}\"\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_flood_from_other_addresses_never_locks_out_an_uncached_scraper() {
    // Twenty users with the same password: each scrape as a new user is a first check (as at
    // start, after a reload or after the cache expired), so none is answered from the cache.
    // Cost 6 keeps the test quick; the flood keeps the bcrypt slot busy all the same.
    let hash = bcrypt::hash("right", 6).unwrap();
    let dir = TestDir::new("http-floods");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, users_config(&vec![hash.clone(); 20])).unwrap();
    let exporter = healthlake_exporter::Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    let addr = exporter.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let flood = wrong_password_flood(addr, Arc::clone(&stop), Arc::clone(&answered));
    eventually(Duration::from_secs(30), "the flood in full swing", || {
        let answered = answered.load(Ordering::SeqCst);
        async move { (answered >= 36).then_some(()) }
    })
    .await;

    let mut scrapes = Vec::new();
    for n in 0..20 {
        let right = basic(&format!("scraper{n}"), "right");
        let headers = [("Authorization", right.as_str())];
        let limit = Duration::from_secs(10);
        let answer = request_from("127.0.0.2", addr, "GET", "/metrics", &headers, limit).await;
        scrapes.push(answer.map(|(status, _)| status));
    }
    // Right after a [server.basic_auth] change (a rotated password), under the same flood.
    let rotated = bcrypt::hash("rotated", 6).unwrap();
    let mut hashes = vec![hash; 20];
    hashes[0] = rotated;
    std::fs::write(&path, users_config(&hashes)).unwrap();
    exporter.reload_handle().reload().await.unwrap();
    let right = basic("scraper0", "rotated");
    let headers = [("Authorization", right.as_str())];
    let limit = Duration::from_secs(10);
    let after_reload = request_from("127.0.0.2", addr, "GET", "/metrics", &headers, limit).await;

    stop.store(true, Ordering::SeqCst);
    let mut flood_statuses = Vec::new();
    for task in flood {
        flood_statuses.extend(task.await.unwrap());
    }
    exporter.shutdown().await;

    let ok = scrapes.iter().filter(|s| **s == Some(200)).count();
    assert!(
        scrapes.iter().all(|s| *s != Some(429)),
        "the scraper got 429 behind the flood: {scrapes:?}"
    );
    assert!(
        ok >= 16,
        "{ok} of 20 first-time scrapes succeeded: {scrapes:?}"
    );
    assert_eq!(
        after_reload.map(|(status, _)| status),
        Some(200),
        "the rotated password right after the reload"
    );
    assert!(
        flood_statuses.iter().all(|s| *s == 401 || *s == 429),
        "the flood was only refused"
    );
    assert!(
        flood_statuses.contains(&401),
        "the flood's passwords were checked"
    );
}

// ---- finding 12: one bcrypt cost, bounded ----

#[test]
fn basic_auth_users_need_one_bounded_bcrypt_cost() {
    let dir = TestDir::new("http-floods");
    let path = dir.path().join("config.toml");
    let cost = |c: u32| {
        bcrypt::hash("x", 4)
            .unwrap()
            .replacen("$04$", &format!("${c:02}$"), 1)
    };
    let cases = [
        (
            format!("alice = \"{}\"\nbob = \"{}\"\n", cost(4), cost(5)),
            "server.basic_auth.users.bob: has bcrypt cost 5 while other users have 4; give every user the same cost",
        ),
        (
            format!("alice = \"{}\"\n", cost(13)),
            "server.basic_auth.users.alice: has bcrypt cost 13; use a cost from 04 to 12",
        ),
        (
            format!("alice = \"{}\"\n", cost(31)),
            "server.basic_auth.users.alice: has bcrypt cost 31",
        ),
    ];
    for (users, expected) in &cases {
        let text = format!("{}[server.basic_auth.users]\n{users}", plain_config("", 1));
        std::fs::write(&path, &text).unwrap();
        let message = Config::load(&path).expect_err(&text).to_string();
        assert!(
            message.contains(expected),
            "expected: {expected}\ngot: {message}"
        );
        assert!(!message.contains("$2b$"), "a hash was echoed: {message}");
    }
    let text = format!(
        "{}[server.basic_auth.users]\nalice = \"{}\"\nbob = \"{}\"\n",
        plain_config("", 1),
        cost(12),
        cost(12)
    );
    std::fs::write(&path, &text).unwrap();
    assert!(Config::load(&path).is_ok());
}

// ---- finding 12: DNS rebinding against /-/reload ----

#[tokio::test]
async fn reload_is_refused_for_a_host_name_that_is_not_allowed() {
    let dir = TestDir::new("http-floods");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, plain_config("enable_reload = true", 1)).unwrap();
    let exporter = healthlake_exporter::Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    let addr = exporter.local_addr();
    let port = addr.port();
    let reload = |host: String| async move {
        let headers = [("Host", host.as_str()), ("Content-Length", "0")];
        let limit = Duration::from_secs(10);
        request_from("127.0.0.1", addr, "POST", "/-/reload", &headers, limit)
            .await
            .expect("an answer")
    };
    // A page on attacker.example, its DNS name rebound to this address: same-origin for the
    // browser, but the Host header gives it away.
    let (status, body) = reload(format!("attacker.example:{port}")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("server.reload_allowed_hosts"), "{body}");
    let (status, _) = reload(format!("exporter.monitoring.svc:{port}")).await;
    assert_eq!(status, 403, "a name not listed yet");
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "[::1]".to_owned(),
    ] {
        let (status, body) = reload(host.clone()).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "configuration reloaded\n"),
            "{host}"
        );
    }
    // Listing the name admits it.
    std::fs::write(
        &path,
        plain_config(
            "enable_reload = true\nreload_allowed_hosts = [\"Exporter.Monitoring.svc\"]",
            1,
        ),
    )
    .unwrap();
    let (status, _) = reload(format!("localhost:{port}")).await;
    assert_eq!(status, 200);
    let (status, _) = reload(format!("exporter.monitoring.svc:{port}")).await;
    assert_eq!(status, 200);
    let (status, _) = reload(format!("attacker.example:{port}")).await;
    assert_eq!(status, 403);
    exporter.shutdown().await;

    // A listed value that is not a host name is refused by validation, without echoing it.
    std::fs::write(
        &path,
        plain_config(
            "reload_allowed_hosts = [\"ok.example\", \"https://x.example/\"]",
            1,
        ),
    )
    .unwrap();
    let message = Config::load(&path).unwrap_err().to_string();
    assert!(
        message.contains("server.reload_allowed_hosts[1]: is not a host name"),
        "{message}"
    );
    assert!(!message.contains("x.example"), "{message}");
}

// ---- finding 7: clients that stop reading a large /metrics ----

/// Connections from `source` that request `/metrics`, read the response head, then never read
/// again (with a small receive buffer, so the server's writes stall at once). Returns the held
/// streams; connections the server closed at once (over the per-address cap) are left out.
async fn stalled_readers(source: &str, addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let Ok(mut stream) = socket.connect(addr).await else {
            continue;
        };
        let request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        if stream.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        let mut head = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut head)).await;
        if let Ok(Ok(n)) = read {
            if n > 0 && head.starts_with(b"HTTP/1.1 200") {
                held.push(stream);
            }
        }
    }
    held
}

/// `count` `/healthz` probes from `source`, one after the other: how many answered 200 within
/// `limit`.
async fn probes(source: &str, addr: SocketAddr, count: usize, limit: Duration) -> usize {
    let mut ok = 0;
    for _ in 0..count {
        let answer = request_from(source, addr, "GET", "/healthz", &[], limit).await;
        if answer.is_some_and(|(status, body)| status == 200 && body == "ok\n") {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_metrics_leave_room_for_probes() {
    // The review's shape at a quarter of the scale: 16 connections (its 64), two addresses
    // opening half of them each, a /metrics far larger than the kernel buffers (a small send
    // buffer stands in for its 17.7 MB), and a write timeout long enough that only the caps and
    // the order at the cap decide.
    let config = plain_config("max_connections = 16", 200);
    let server = serve_with(&config, Some(16 * 1024), |l| {
        l.write_timeout = Duration::from_secs(120);
    })
    .await;
    let addr = server.addr;
    let limit = Duration::from_secs(30);
    let (status, body) = request_from("127.0.0.3", addr, "GET", "/metrics", &[], limit)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.len() > 400_000,
        "/metrics is only {} bytes",
        body.len()
    );

    let mut held = stalled_readers("127.0.0.1", addr, 8).await;
    held.extend(stalled_readers("127.0.0.2", addr, 8).await);
    assert!(
        held.len() >= 4,
        "the stalled readers got their responses started"
    );
    // Each probe within 10 s: coarse for a loaded CI machine, far below the 120 s write timeout
    // that would free a slot otherwise.
    let ok = probes("127.0.0.3", addr, 20, Duration::from_secs(10)).await;
    assert!(ok >= 16, "{ok} of 20 probes from a third address answered");

    // More addresses than the per-address cap keeps apart: every slot serves a client that
    // stopped reading, and those give their slots up at the cap.
    for source in ["127.0.0.4", "127.0.0.5", "127.0.0.6"] {
        held.extend(stalled_readers(source, addr, 4).await);
    }
    let ok = probes("127.0.0.7", addr, 20, Duration::from_secs(10)).await;
    assert!(
        ok >= 16,
        "{ok} of 20 probes answered with every slot held by clients that stopped reading"
    );
    drop(held);
    server.shutdown().await;
}

// ---- finding 13: one address for everyone (a service mesh), half-sent requests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_behind_a_mesh_do_not_hold_up_scrapes() {
    // As docs/security.md advises behind a mesh: no per-address limit; every client on 127.0.0.1. A
    // long header timeout, so that a scrape answered within 10 s got through the half-sent requests
    // rather than waiting for them to time out.
    let server = serve_with(&plain_config("max_connections_per_ip = 0", 1), None, |l| {
        l.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    // 600 connections that send half a request head and wait; closed, they come back.
    let mut flood = Vec::new();
    for _ in 0..600 {
        let Ok(mut stream) = connect_from("127.0.0.1", addr).await else {
            continue;
        };
        let _ = stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await;
        let stop = Arc::clone(&stop);
        flood.push(tokio::spawn(async move {
            let mut byte = [0u8; 1];
            loop {
                let _ = stream.read(&mut byte).await;
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                // The flood's pace of coming back: the behaviour under test, not a wait.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Ok(again) = connect_from("127.0.0.1", addr).await else {
                    continue;
                };
                stream = again;
                let _ = stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    .await;
            }
        }));
    }
    let mut fast = 0;
    let mut answered = 0;
    for _ in 0..20 {
        let started = Instant::now();
        let answer = request_from(
            "127.0.0.1",
            addr,
            "GET",
            "/metrics",
            &[],
            Duration::from_secs(30),
        )
        .await;
        if answer.is_some_and(|(status, body)| status == 200 && body.contains("healthlake_")) {
            answered += 1;
            // Coarse, for a loaded CI machine; the figures are `examples/flood.rs`'s.
            if started.elapsed() < Duration::from_secs(10) {
                fast += 1;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    server.shutdown().await;
    for task in flood {
        task.abort();
    }
    assert!(answered >= 18, "{answered} of 20 scrapes answered");
    assert!(fast >= 16, "{fast} of 20 scrapes answered within 10 s");
}
