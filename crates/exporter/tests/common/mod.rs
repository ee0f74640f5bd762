//! Shared test setup: a fake HealthLake on loopback, an exporter pointed at it through the real
//! SDK client, a minimal HTTP client, a parser for the exposition text, waiting on a condition
//! with a deadline (never a fixed sleep), temporary directories removed however a test ends, and
//! child processes killed however it ends (`process`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use healthlake_exporter::aws::ClientOptions;
use healthlake_exporter::config::Config;
use healthlake_exporter::state::Feed;
use healthlake_exporter::Exporter;
use healthlake_fake::{FakeHealthLake, FakeServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn now() -> f64 {
    healthlake_exporter::model::unix_now()
}

pub async fn start_fake() -> (FakeHealthLake, FakeServer) {
    let fake = FakeHealthLake::new();
    let server = fake
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("fake HealthLake starts");
    (fake, server)
}

/// Static test keys: never the default chain, which could reach outside loopback (IMDS).
pub fn test_options() -> ClientOptions {
    ClientOptions {
        credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            "AKIDTEST",
            "test-secret",
            None,
            None,
            "tests",
        ))),
        max_attempts: Some(1),
    }
}

/// A config file text for datastores at `endpoint`; `extra` goes into `[polling]`.
pub fn config_text(endpoint: &str, polling: &str, datastores: &[(&str, &str)]) -> String {
    let mut text = format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\n[polling]\ninterval = \"1s\"\ntimeout = \"5s\"\n{polling}\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n"
    );
    for (id, name) in datastores {
        text.push_str(&format!(
            "[[datastores]]\nid = \"{id}\"\nname = \"{name}\"\n"
        ));
    }
    text
}

pub async fn start_exporter(config_text: &str) -> Exporter {
    let config = Config::parse(config_text, Path::new("test.toml")).expect("valid test config");
    Exporter::start(config, test_options())
        .await
        .expect("exporter starts")
}

/// A plain HTTP/1.1 request; returns (status, headers as lowercase "name: value" lines, body).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response within 10 s")
        .expect("read");
    let response = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, head.to_lowercase(), body.to_string())
}

/// `POST /-/reload` (with no body); returns what [`http_request`] does.
pub async fn post_reload(addr: SocketAddr) -> (u16, String, String) {
    http_request(addr, "POST", "/-/reload", &[("Content-Length", "0")]).await
}

pub async fn scrape(addr: SocketAddr) -> Metrics {
    let (status, _, body) = http_request(addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    Metrics::parse(&body)
}

/// Samples by their series key as written (`name{label="value",...}`).
#[derive(Debug, Default)]
pub struct Metrics {
    pub samples: BTreeMap<String, f64>,
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect("sample line has a value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            assert!(
                samples.insert(key.to_string(), value).is_none(),
                "duplicate series {key}"
            );
        }
        Metrics {
            samples,
            text: text.to_string(),
        }
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.samples.get(key).copied()
    }

    /// The value of a series that must exist.
    pub fn value(&self, key: &str) -> f64 {
        self.get(key)
            .unwrap_or_else(|| panic!("series {key} missing; have:\n{}", self.text))
    }

    /// Series of one family (exact name) whose labels contain every `label="value"` given.
    pub fn series(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(&str, f64)> {
        self.samples
            .iter()
            .filter(|(key, _)| key.split('{').next() == Some(name))
            .filter(|(key, _)| {
                labels
                    .iter()
                    .all(|(k, v)| key.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

/// Polls of `feed` attempted (ended, successfully or not) for the datastore `id`; 0 while the
/// exporter does not follow it.
pub fn attempts(exporter: &Exporter, id: &str, feed: Feed) -> u64 {
    exporter
        .state()
        .datastores()
        .iter()
        .find(|d| d.id == id)
        .map_or(0, |d| d.record().attempts(feed))
}

/// Waits until the datastore `id` has had `polls` polls of `feed` attempted.
pub async fn polled(exporter: &Exporter, id: &str, feed: Feed, polls: u64) {
    let what = format!("{polls} {feed:?} polls of {id}");
    eventually(Duration::from_secs(30), &what, || async {
        (attempts(exporter, id, feed) >= polls).then_some(())
    })
    .await
}

/// Waits until the exporter's first datastore (in a sharded replica: the first it owns) has had
/// its first export poll.
pub async fn first_poll(exporter: &Exporter) {
    eventually(Duration::from_secs(30), "the first poll", || async {
        let datastores = exporter.state().datastores();
        let polls = datastores.first()?.record().attempts(Feed::EXPORTS);
        (polls >= 1).then_some(())
    })
    .await
}

/// The message of the last error of the datastore `id`'s `feed`.
pub fn last_error(exporter: &Exporter, id: &str, feed: Feed) -> String {
    let datastores = exporter.state().datastores();
    let datastore = datastores
        .iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("no datastore {id}"));
    let record = datastore.record();
    let health = record.health(feed).expect("a feed followed");
    health.last_error.clone().expect("an error").message
}

/// `name{datastore_id="ID",datastore_name="NAME"<,extra>}`.
pub fn key(name: &str, id: &str, ds_name: &str, extra: &str) -> String {
    if extra.is_empty() {
        format!("{name}{{datastore_id=\"{id}\",datastore_name=\"{ds_name}\"}}")
    } else {
        format!("{name}{{datastore_id=\"{id}\",datastore_name=\"{ds_name}\",{extra}}}")
    }
}

/// Waiting on a condition with a deadline: one definition for the tests of both crates.
#[allow(unused_imports)] // each test file uses some of them
pub use healthlake_fake::wait::{eventually, eventually_blocking, within};

/// The exporter binary of this build.
pub const EXPORTER_BIN: &str = env!("CARGO_BIN_EXE_healthlake-exporter");

/// A temporary directory for one test's files, removed when dropped: also when the test fails.
pub struct TestDir(tempfile::TempDir);

/// The directory's path, so that a `TestDir` is used where a `&Path` is.
impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.path()
    }
}

impl TestDir {
    /// A new, empty directory named after `tag` (and unique).
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("hle-{tag}-"))
            .tempdir()
            .expect("create a temporary directory");
        TestDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `contents` to the file `name` in the directory; returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

/// Test certificates and a TLS client that trusts them.
pub mod certs;
/// The exporter's HTTP server alone, with limits chosen by the test.
pub mod http_server;
/// Child processes killed and reaped however a test ends; output read with a deadline.
pub mod process;
/// Ecosystem tool helpers (promtool, kubectl, ...) and the exporter metric list; see tools.rs.
pub mod tools;
