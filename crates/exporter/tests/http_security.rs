//! Endpoint hardening: slow-loris and idle connections beyond the cap, header/idle timeouts, TLS
//! (with mutual TLS and certificate rotation) and basic auth. Loopback only; certificates are made
//! at test time with rcgen.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs::{ca, leaf, tls_client, Leaf};
use common::http_server::{basic, serve_with};
use common::*;
use healthlake_exporter::config::Config;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous, for a loaded machine: each wait ends as soon as its condition holds.
const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

// ---- certificates ----

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// The served certificate's DER holds its subject's common name and its serial as plain bytes.
fn assert_served(served: &[u8], expected: &Leaf, common_name: &str, serial: u64) {
    assert!(
        served == expected.der.as_slice(),
        "the server presented another certificate than {common_name}"
    );
    // The serial as a DER INTEGER: tag 2, length, minimal big-endian bytes.
    let bytes = serial.to_be_bytes();
    let minimal: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut integer = vec![2, minimal.len() as u8];
    integer.extend_from_slice(&minimal);
    assert!(
        served.windows(integer.len()).any(|w| w == integer),
        "serial {serial:#x} not in the served certificate"
    );
    assert!(served
        .windows(common_name.len())
        .any(|w| w == common_name.as_bytes()));
}

// ---- clients ----

/// A response, or why none came.
struct Answer {
    status: u16,
    head: String,
    body: String,
    /// The server certificate the TLS client saw.
    server_cert: Vec<u8>,
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String, String), String> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| "no response within 10 s".to_string())?;
    if let Err(e) = read {
        if response.is_empty() {
            return Err(format!("read: {e}"));
        }
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
    Ok((status, head.to_lowercase(), body.to_string()))
}

async fn tls_get(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let server_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let (status, head, body) = exchange(&mut stream, path, headers).await?;
    Ok(Answer {
        status,
        head,
        body,
        server_cert,
    })
}

fn plain_config(server: &str) -> String {
    format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\n{server}\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:9\"\n[[datastores]]\nid = \"ds1\"\n"
    )
}

/// Reads until the server closes the connection; returns what it sent and how long that took.
async fn wait_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, started.elapsed()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the server has closed `stream` (without waiting).
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_millis(20), stream.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
    }
}

// ---- limits ----

#[tokio::test]
async fn idle_and_slow_loris_connections_beyond_the_cap_never_delay_a_scrape() {
    // A long header timeout: scrapes must get through because idle holders are closed to make
    // room, not because the holders time out.
    // All from one address: no per-address limit here, and a short grace period for new
    // connections that send no request (the idle and slow-loris holders).
    let server = serve_with(
        &plain_config("max_connections = 8\nmax_connections_per_ip = 0"),
        None,
        |l| {
            l.header_read_timeout = Duration::from_secs(60);
            l.eviction_grace = Duration::from_millis(100);
        },
    )
    .await;
    let addr = server.addr;

    // 8 idle connections and 8 slow-loris ones (a header byte every 100 ms): twice the cap.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut loris = Vec::new();
    for i in 0..8 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        loris.push(tokio::spawn(async move {
            let head = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ");
            let mut sent = 0usize;
            for byte in head.bytes().chain(std::iter::repeat(b'a')).take(600) {
                if stream.write_all(&[byte]).await.is_err() {
                    return sent;
                }
                sent += 1;
                // A slow loris's pace: the behaviour under test.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent
        }));
    }
    // The cap is full: a slow loris got its slot by closing the longest-idle connection, the
    // first to go.
    let deadline = Instant::now() + WAIT;
    while !is_closed(&mut idle[0]).await {
        assert!(
            Instant::now() < deadline,
            "no holder was closed to make room within {WAIT:?}"
        );
    }

    for round in 0..10 {
        let started = Instant::now();
        let (status, _, body) = http_request(addr, "GET", "/metrics", &[]).await;
        assert_eq!(status, 200, "scrape {round}");
        assert!(body.contains("healthlake_exporter_build_info{version=\""));
        // Coarse (a loaded CI machine can stall a scrape for seconds), and still far below the
        // 60 s header timeout the holders would otherwise keep their slots for.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "scrape {round} took {:?} with the connection cap full of idle clients",
            started.elapsed()
        );
    }

    // The oldest holders were closed to make room: at most `max_connections` remain open.
    let mut open = 0;
    for stream in &mut idle {
        if !is_closed(stream).await {
            open += 1;
        }
    }
    let mut loris_open = 0;
    for task in &loris {
        if !task.is_finished() {
            loris_open += 1;
        }
    }
    assert!(
        open + loris_open <= 8,
        "{open} idle and {loris_open} slow-loris connections still held; the cap is 8"
    );
    for task in loris {
        task.abort();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn idle_slow_and_kept_alive_connections_are_closed_after_the_header_timeout() {
    let server = serve_with(&plain_config(""), None, |l| {
        l.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = server.addr;

    // A connection that sends nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A slow loris: it keeps sending, one header byte every 50 ms, but never finishes the head.
    let dribble = {
        let mut writer = TcpStream::connect(addr).await.unwrap();
        tokio::spawn(async move {
            let _ = writer.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").await;
            for _ in 0..200 {
                if writer.write_all(b"a").await.is_err() {
                    return true;
                }
                // A slow loris's pace: the behaviour under test.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        })
    };
    let (sent, elapsed) = wait_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed too early: {elapsed:?}"
    );
    assert!(sent.is_empty() || sent.starts_with(b"HTTP/1.1 408"));
    assert!(
        tokio::time::timeout(Duration::from_secs(5), dribble)
            .await
            .expect("the slow loris was cut off within 5 s")
            .unwrap(),
        "the slow loris was cut off while still sending"
    );

    // A kept-alive connection: one request answered, then silence until the timeout closes it.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
    assert!(first.ends_with("ok\n"), "{first}");
    let (rest, elapsed) = wait_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"));
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");

    server.shutdown().await;
}

#[tokio::test]
async fn a_request_body_is_never_waited_for() {
    // A long header timeout: the connection must close because the answer does not wait for the
    // body, not because a timeout ran out. Coarse (10 s, for a loaded CI machine), and still far
    // below the 60 s a wait would take.
    let server = serve_with(&plain_config(""), None, |l| {
        l.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut post = TcpStream::connect(server.addr).await.unwrap();
    post.write_all(
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\npartial",
    )
    .await
    .unwrap();
    let (answer, _) = wait_closed(&mut post, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    server.shutdown().await;
}

// ---- TLS ----

fn tls_config(dir: &Path, extra: &str) -> String {
    plain_config(&format!(
        "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}",
        dir.join("tls.crt").display(),
        dir.join("tls.key").display()
    ))
}

#[tokio::test]
async fn tls_serves_a_client_that_trusts_the_ca_and_refuses_plain_http() {
    let scratch = TestDir::new("http-security");
    let dir = scratch.path();
    let authority = ca("test CA");
    let server_cert = leaf(&authority, "exporter one", 0x0101, true);
    write(&dir.join("tls.crt"), &server_cert.cert_pem);
    write(&dir.join("tls.key"), &server_cert.key_pem);
    let config = Config::parse(&tls_config(dir, ""), Path::new("test.toml")).unwrap();
    let exporter = healthlake_exporter::Exporter::start(config, test_options())
        .await
        .unwrap();
    let addr = exporter.local_addr();

    let answer = tls_get(
        addr,
        tls_client(&authority, None, rustls::DEFAULT_VERSIONS),
        "/metrics",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer
        .head
        .contains("content-type: text/plain; version=0.0.4"));
    assert!(answer.body.contains("healthlake_exporter_build_info"));
    assert_served(&answer.server_cert, &server_cert, "exporter one", 0x0101);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    let result = exchange(&mut plain, "/metrics", &[]).await;
    assert!(
        result.is_err(),
        "plain HTTP was answered: {:?}",
        result.ok()
    );

    // A client that trusts another CA refuses the server.
    let other = ca("other CA");
    let refused = tls_get(
        addr,
        tls_client(&other, None, rustls::DEFAULT_VERSIONS),
        "/metrics",
        &[],
    )
    .await;
    assert!(refused.is_err());
    exporter.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    let scratch = TestDir::new("http-security");
    let dir = scratch.path();
    let authority = ca("server CA");
    let clients = ca("client CA");
    let stranger_ca = ca("stranger CA");
    let server_cert = leaf(&authority, "exporter", 7, true);
    write(&dir.join("tls.crt"), &server_cert.cert_pem);
    write(&dir.join("tls.key"), &server_cert.key_pem);
    write(&dir.join("clients.pem"), &clients.cert.pem());
    let extra = format!(
        "client_ca_file = \"{}\"\n",
        dir.join("clients.pem").display()
    );
    let config = Config::parse(&tls_config(dir, &extra), Path::new("test.toml")).unwrap();
    let exporter = healthlake_exporter::Exporter::start(config, test_options())
        .await
        .unwrap();
    let addr = exporter.local_addr();

    let good = leaf(&clients, "prometheus", 11, false);
    let answer = tls_get(
        addr,
        tls_client(&authority, Some(&good), rustls::DEFAULT_VERSIONS),
        "/metrics",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("healthlake_exporter_build_info"));

    // Without a certificate: refused on everything but the probes.
    let anonymous = tls_client(&authority, None, rustls::DEFAULT_VERSIONS);
    let answer = tls_get(addr, Arc::clone(&anonymous), "/metrics", &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 403);
    assert!(answer.body.contains("client certificate"));
    assert_eq!(
        tls_get(addr, Arc::clone(&anonymous), "/", &[])
            .await
            .unwrap()
            .status,
        403
    );
    let probe = tls_get(addr, Arc::clone(&anonymous), "/healthz", &[])
        .await
        .unwrap();
    assert_eq!((probe.status, probe.body.as_str()), (200, "ok\n"));

    // A certificate from another CA: the handshake fails, nothing is served.
    let stranger = leaf(&stranger_ca, "intruder", 13, false);
    let refused = tls_get(
        addr,
        tls_client(&authority, Some(&stranger), rustls::DEFAULT_VERSIONS),
        "/healthz",
        &[],
    )
    .await;
    let error = refused.err().expect("a stranger's certificate is refused");
    assert!(
        error.contains("UnknownCA") || error.contains("unknown") || error.contains("read"),
        "{error}"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_reload_during_a_certificate_rotation_applies_the_other_changes() {
    let scratch = TestDir::new("http-security");
    let dir = scratch.path();
    let authority = ca("reload CA");
    let first = leaf(&authority, "first", 11, true);
    write(&dir.join("tls.crt"), &first.cert_pem);
    write(&dir.join("tls.key"), &first.key_pem);
    let path = dir.join("config.toml");
    let config = |limit: usize| {
        tls_config(dir, "").replace(
            "[aws]",
            &format!("[polling]\njob_series_limit = {limit}\n[aws]"),
        )
    };
    write(&path, &config(100));
    let exporter = healthlake_exporter::Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    let addr = exporter.local_addr();
    let client = tls_client(&authority, None, rustls::DEFAULT_VERSIONS);
    let gauge = |body: &str| {
        Metrics::parse(body).value("healthlake_exporter_tls_certificate_last_load_successful")
    };
    let answer = tls_get(addr, Arc::clone(&client), "/metrics", &[])
        .await
        .unwrap();
    assert_eq!(gauge(&answer.body), 1.0);

    // cert-manager has written the new certificate but not yet its key, and the operator reloads
    // an unrelated change at that moment: the reload succeeds, the old pair stays in service,
    // and the gauge says the files cannot be used.
    let second = leaf(&authority, "second", 12, true);
    write(&dir.join("tls.crt"), &second.cert_pem);
    write(&path, &config(7));
    exporter
        .reload_handle()
        .reload()
        .await
        .expect("the unrelated change applies");
    let answer = tls_get(addr, Arc::clone(&client), "/metrics", &[])
        .await
        .unwrap();
    assert_served(&answer.server_cert, &first, "first", 11);
    let metrics = Metrics::parse(&answer.body);
    assert_eq!(
        metrics.value("healthlake_exporter_config_last_reload_successful"),
        1.0
    );
    assert_eq!(gauge(&answer.body), 0.0);

    // The key arrives: the next reload (even of an unchanged file) or handshake picks it up.
    write(&dir.join("tls.key"), &second.key_pem);
    exporter.reload_handle().reload().await.unwrap();
    let answer = tls_get(addr, Arc::clone(&client), "/metrics", &[])
        .await
        .unwrap();
    assert_served(&answer.server_cert, &second, "second", 12);
    assert_eq!(gauge(&answer.body), 1.0);
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_rotated_certificate_is_served_and_a_broken_one_is_not() {
    let scratch = TestDir::new("http-security");
    let dir = scratch.path();
    let authority = ca("rotation CA");
    let first = leaf(&authority, "first issuance", 1, true);
    write(&dir.join("tls.crt"), &first.cert_pem);
    write(&dir.join("tls.key"), &first.key_pem);
    let server = serve_with(&tls_config(dir, ""), None, |l| {
        l.cert_check_interval = Duration::from_millis(100);
        l.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = server.addr;
    let client = tls_client(&authority, None, rustls::DEFAULT_VERSIONS);
    let answer = tls_get(addr, Arc::clone(&client), "/metrics", &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_served(&answer.server_cert, &first, "first issuance", 1);

    // cert-manager renews: both files are replaced.
    let second = leaf(&authority, "second issuance", 2, true);
    write(&dir.join("tls.crt"), &second.cert_pem);
    write(&dir.join("tls.key"), &second.key_pem);
    let answer = eventually(Duration::from_secs(10), "the new certificate", || {
        let client = Arc::clone(&client);
        let second = second.der.clone();
        async move {
            let answer = tls_get(addr, client, "/metrics", &[]).await.ok()?;
            (answer.server_cert == second).then_some(answer)
        }
    })
    .await;
    assert_eq!(answer.status, 200);
    assert_served(&answer.server_cert, &second, "second issuance", 2);

    // A broken rotation (garbage cert, then a key of another cert): the last good one stays.
    // A handshake looks at the files once the check interval has passed, and the gauge in the
    // answer says what that look found.
    let looked = |loaded: f64| {
        let client = Arc::clone(&client);
        async move {
            let answer = tls_get(addr, client, "/metrics", &[]).await.ok()?;
            let gauge = Metrics::parse(&answer.body)
                .value("healthlake_exporter_tls_certificate_last_load_successful");
            (gauge == loaded).then_some(answer)
        }
    };
    write(
        &dir.join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    );
    let answer = eventually(WAIT, "the garbage certificate seen", || looked(0.0)).await;
    assert_served(&answer.server_cert, &second, "second issuance", 2);
    // The pair in service back in the files: seen as good again.
    write(&dir.join("tls.crt"), &second.cert_pem);
    eventually(WAIT, "the served pair seen again", || looked(1.0)).await;
    let third = leaf(&authority, "third issuance", 3, true);
    write(&dir.join("tls.crt"), &third.cert_pem);
    let answer = eventually(WAIT, "the mismatched pair seen", || looked(0.0)).await;
    assert_served(&answer.server_cert, &second, "second issuance", 2);
    // The matching key arrives: the third certificate is served.
    write(&dir.join("tls.key"), &third.key_pem);
    let answer = eventually(Duration::from_secs(10), "the third certificate", || {
        let client = Arc::clone(&client);
        let third = third.der.clone();
        async move {
            let answer = tls_get(addr, client, "/healthz", &[]).await.ok()?;
            (answer.server_cert == third).then_some(answer)
        }
    })
    .await;
    assert_eq!(answer.status, 200);

    // A TCP connection that never starts the handshake is closed by the handshake timeout.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let (_, elapsed) = wait_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    server.shutdown().await;
}

// ---- basic auth ----

#[tokio::test]
async fn basic_auth_admits_the_right_password_and_leaves_the_probes_open() {
    // Cost 4 keeps the test fast; production hashes use 10-12.
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    let other = bcrypt::hash("other", 4).unwrap();
    let text = plain_config(&format!(
        "[server.basic_auth]\nusers = {{ alice = \"{hash}\", bob = \"{other}\" }}\n"
    ));
    let exporter = start_exporter(&text).await;
    let addr = exporter.local_addr();
    let challenge = "www-authenticate: basic realm=\"healthlake-exporter\"";

    let right = basic("alice", "correct horse");
    for _ in 0..2 {
        // The second time comes from the cache; the answer must be the same.
        let (status, head, body) =
            http_request(addr, "GET", "/metrics", &[("Authorization", &right)]).await;
        assert_eq!(status, 200);
        assert!(!head.contains("www-authenticate"));
        assert!(body.contains("healthlake_exporter_build_info"));
    }
    let (status, _, body) = http_request(addr, "GET", "/", &[("Authorization", &right)]).await;
    assert_eq!(status, 200);
    assert!(body.contains("<td>ds1</td>"));

    let refused: &[(&str, Vec<(&str, String)>)] = &[
        ("no header", vec![]),
        (
            "wrong password",
            vec![("Authorization", basic("alice", "wrong"))],
        ),
        (
            "another user's password",
            vec![("Authorization", basic("alice", "other"))],
        ),
        (
            "unknown user",
            vec![("Authorization", basic("mallory", "correct horse"))],
        ),
        (
            "another scheme",
            vec![("Authorization", "Bearer abc".to_string())],
        ),
        (
            "not base64",
            vec![("Authorization", "Basic %%%".to_string())],
        ),
    ];
    for (what, headers) in refused {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for path in ["/metrics", "/", "/nope"] {
            let (status, head, body) = http_request(addr, "GET", path, &headers).await;
            assert_eq!(status, 401, "{what} on {path}");
            assert!(head.contains(challenge), "{what} on {path}: {head}");
            assert!(!body.contains("healthlake_"), "{what} on {path}");
        }
    }

    // The probes need no credentials.
    let (status, _, body) = http_request(addr, "GET", "/healthz", &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, head, _) = http_request(addr, "GET", "/readyz", &[]).await;
    assert!(status == 200 || status == 503, "{status}");
    assert!(!head.contains("www-authenticate"));
    exporter.shutdown().await;
}

// ---- config validation ----

#[test]
fn server_config_errors_name_the_key_and_the_file() {
    let scratch = TestDir::new("http-security");
    let dir = scratch.path();
    let authority = ca("validation CA");
    let good = leaf(&authority, "good", 5, true);
    let other = leaf(&authority, "other", 6, true);
    write(&dir.join("good.crt"), &good.cert_pem);
    write(&dir.join("good.key"), &good.key_pem);
    write(&dir.join("other.key"), &other.key_pem);
    write(&dir.join("garbage.pem"), "this is not PEM\n");
    write(
        &dir.join("damaged.crt"),
        "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n",
    );
    let config_file = dir.join("config.toml");
    let tls = |cert: &str, key: &str, extra: &str| {
        plain_config(&format!(
            "[server.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n{extra}"
        ))
    };
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            tls("missing.crt", "good.key", ""),
            vec![
                format!("{}:4:13: server.tls.cert_file: cannot read {}", config_file.display(), dir.join("missing.crt").display()),
                "No such file".into(),
            ],
        ),
        (
            tls("garbage.pem", "good.key", ""),
            vec![format!(
                "server.tls.cert_file: {} holds no PEM certificate",
                dir.join("garbage.pem").display()
            )],
        ),
        (
            tls("damaged.crt", "good.key", ""),
            vec![
                "server.tls.cert_file".into(),
                "damaged.crt holds no PEM certificate".into(),
                "the PEM is damaged".into(),
            ],
        ),
        (
            tls("good.crt", "garbage.pem", ""),
            vec![format!(
                "{}:5:12: server.tls.key_file: {} holds no PEM private key",
                config_file.display(),
                dir.join("garbage.pem").display()
            )],
        ),
        (
            tls("good.crt", "other.key", ""),
            vec![format!(
                "server.tls.key_file: the private key in {} does not belong to the certificate in {}",
                dir.join("other.key").display(),
                dir.join("good.crt").display()
            )],
        ),
        (
            tls("good.crt", "good.key", "client_ca_file = \"garbage.pem\"\n"),
            vec!["server.tls.client_ca_file:".into(), "holds no PEM certificate".into()],
        ),
        (
            tls("good.crt", "", ""),
            vec!["server.tls.key_file: must not be empty".into()],
        ),
        (
            plain_config("[server.tls]\ncert_file = \"good.crt\"\n"),
            vec!["missing field `key_file`".into()],
        ),
        (
            plain_config("[server.basic_auth]\nusers = { alice = \"hunter2\" }\n"),
            vec![
                format!("{}:4:", config_file.display()),
                "server.basic_auth.users.alice: is not a bcrypt hash: it must start with $2a$, $2b$ or $2y$".into(),
                "htpasswd -nBC 10".into(),
            ],
        ),
        (
            plain_config("[server.basic_auth]\nusers = { alice = \"$2y$10$tooshort\" }\n"),
            vec!["server.basic_auth.users.alice: is not a well-formed bcrypt hash".into()],
        ),
        (
            plain_config("[server.basic_auth]\nusers = {}\n"),
            vec!["server.basic_auth.users: no users".into()],
        ),
        (
            plain_config("max_connections = 0\n"),
            vec!["server.max_connections: out of range; use a whole number from 1 to 10000".into()],
        ),
        (
            plain_config("[server.tls]\ncert_file = \"good.crt\"\nkey_file = \"good.key\"\nca_file = \"x\"\n"),
            vec!["unknown field `ca_file`".into()],
        ),
    ];
    for (text, expected) in &cases {
        write(&config_file, text);
        let message = Config::load(&config_file).expect_err(text).to_string();
        for part in expected {
            assert!(
                message.contains(part.as_str()),
                "config:\n{text}\nexpected to contain: {part}\ngot: {message}"
            );
        }
        assert!(
            !message.contains("hunter2"),
            "a password-like value was echoed: {message}"
        );
    }

    // Relative paths are taken from the config file's directory; a good pair loads.
    write(&config_file, &tls("good.crt", "good.key", ""));
    let config = Config::load(&config_file).unwrap();
    let tls = config.server.tls.expect("TLS configured");
    assert_eq!(tls.cert_file, dir.join("good.crt"));
    assert_eq!(config.server.max_connections, 64);
}
