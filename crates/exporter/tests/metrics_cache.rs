//! The cached `/metrics` encoder against the reference: for random-ish States, after polls,
//! failures, reloads (datastores added, removed, renamed, reordered) and as time passes, the cache
//! serves exactly the bytes a fresh prometheus-client encoding of State writes, in both formats,
//! plain and gzip. Also over HTTP: headers, `Accept-Encoding` negotiation and HEAD.
//!
//! Every body is also read by independent parsers (`exposition_parsers`: Python's
//! prometheus_client in both formats, promtool for text): each test collects its bodies in a
//! [`Bodies`] and has them parsed at its end, in one Python process. The plain and gzip bodies of
//! one scrape are asserted equal to the reference first, so each distinct text is parsed once.

mod common;
mod exposition_parsers;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flate2::read::{GzDecoder, MultiGzDecoder};
use healthlake_exporter::config::Config;
use healthlake_exporter::metrics::{render_uncached, Format, MetricsCache, FAMILY_NAMES};
use healthlake_exporter::model::{ErrorReason, PollError};
use healthlake_exporter::model::{Job, JobKind, JobStatus};
use healthlake_exporter::state::{Feed, State};
use healthlake_exporter::web::{self, HttpContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FORMATS: [Format; 2] = [Format::Prometheus, Format::OpenMetrics];

fn config(datastores: &[(String, String)]) -> Config {
    let mut text = String::from("[aws]\nregion = \"us-east-1\"\n");
    for (id, name) in datastores {
        text.push_str(&format!(
            "[[datastores]]\nid = \"{id}\"\nname = {}\n",
            toml_string(name)
        ));
        // Some datastores poll import jobs only: they have no export series.
        if name.ends_with("-imports") {
            text.push_str("jobs = [\"import\"]\n");
        }
    }
    Config::parse(&text, Path::new("t.toml")).expect("valid config")
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Names that exercise escaping: quotes, backslashes, newlines, `#`, non-ASCII.
const NAMES: [&str; 6] = [
    "prod",
    "a\"b\\c",
    "line\nbreak",
    "# not a comment",
    "données",
    "",
];

fn random_jobs(rng: &mut fastrand::Rng, now: f64) -> Vec<Job> {
    let statuses = [
        "COMPLETED",
        "FAILED",
        "IN_PROGRESS",
        "SUBMITTED",
        "QUEUED",
        "COMPLETED_WITH_ERRORS",
        "CANCEL_COMPLETED",
        "ARCHIVED",
    ];
    (0..rng.usize(0..40))
        .map(|k| {
            let status = JobStatus::parse(statuses[rng.usize(..statuses.len())]);
            let submitted = now - rng.f64() * 90_000.0 + if rng.u8(..10) == 0 { 1e3 } else { 0.0 };
            let ended = match (status.is_terminal(), rng.u8(..8)) {
                // A terminal job without an end time: no duration series.
                (true, 0) => None,
                (true, _) => Some(submitted + rng.f64() * 5000.0),
                (false, 0) => Some(submitted + 12.5),
                (false, _) => None,
            };
            Job {
                id: format!("job-{k}-{}", rng.u32(..)),
                name: match rng.u8(..4) {
                    0 => None,
                    1 => Some(NAMES[rng.usize(..NAMES.len())].to_owned()),
                    _ => Some(format!("export-{k}")),
                },
                status,
                submitted,
                ended,
                progress: None,
                message: None,
            }
        })
        .collect()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut single = String::new();
    GzDecoder::new(bytes)
        .read_to_string(&mut single)
        .expect("a single-member gzip decoder reads the body");
    let mut multi = String::new();
    MultiGzDecoder::new(bytes)
        .read_to_string(&mut multi)
        .expect("a multi-member gzip decoder reads the body");
    assert_eq!(single, multi);
    single
}

/// The bodies a test served, each with the datastores (id, name) its State had, for the
/// independent parsers.
#[derive(Default)]
struct Bodies(Vec<Served>);

/// A body, its format, the datastores (id, name) of its State, and what the test was doing.
type Served = (Format, String, BTreeSet<(String, String)>, String);

impl Bodies {
    fn add(&mut self, state: &State, format: Format, body: &str, what: &str) {
        let datastores = state
            .datastores()
            .iter()
            .map(|ds| (ds.id.clone(), ds.name.clone()))
            .collect();
        self.0
            .push((format, body.to_owned(), datastores, what.to_owned()));
    }

    /// Parses every body with prometheus_client (and the text ones with promtool, which must count
    /// the same series): each holds every family of State (the event path's are off here), and
    /// exactly the datastores of its State, their names read back unescaped (quotes,
    /// backslashes, newlines, `#`, non-ASCII).
    fn parse_independently(self) {
        let bodies: Vec<(Format, &str)> =
            self.0.iter().map(|(f, b, _, _)| (*f, b.as_str())).collect();
        let Some(parsed) = exposition_parsers::parse_independently(&bodies) else {
            return;
        };
        let mut families: Vec<&str> = FAMILY_NAMES
            .iter()
            .copied()
            .filter(|name| !name.starts_with("healthlake_events_"))
            .collect();
        families.sort_unstable();
        for ((format, _, datastores, what), parsed) in self.0.iter().zip(&parsed) {
            let mut read: Vec<&str> = parsed
                .order
                .iter()
                .map(String::as_str)
                .filter(|name| !name.starts_with("process_"))
                .collect();
            read.sort_unstable();
            assert_eq!(read, families, "{what} {format:?}: families");
            assert_eq!(
                &parsed.datastores(),
                datastores,
                "{what} {format:?}: datastores"
            );
        }
    }
}

/// Scrapes `state` through `cache` at `now`, in every format and encoding, and compares each with
/// the reference.
fn check(cache: &MetricsCache, state: &Arc<State>, now: f64, what: &str, bodies: &mut Bodies) {
    for format in FORMATS {
        let reference = render_uncached(state, now, format);
        let plain = cache
            .render(state, now, format, false)
            .expect("cache renders");
        let plain = String::from_utf8(plain).expect("utf-8");
        if plain != reference {
            let line = plain
                .lines()
                .zip(reference.lines())
                .position(|(a, b)| a != b);
            panic!("{what} {format:?}: cached output differs from the reference at line {line:?}\n--- cached\n{plain}\n--- reference\n{reference}");
        }
        let gzip = cache
            .render(state, now, format, true)
            .expect("cache renders");
        assert_eq!(gunzip(&gzip), reference, "{what} {format:?} gzip");
        bodies.add(state, format, &reference, what);
    }
}

fn datastore_list(rng: &mut fastrand::Rng, universe: usize) -> Vec<(String, String)> {
    let mut ids: Vec<usize> = (0..universe).filter(|_| rng.u8(..4) != 0).collect();
    rng.shuffle(&mut ids);
    ids.into_iter()
        .map(|i| {
            let name = if rng.u8(..7) == 0 {
                format!("store-{i}-imports")
            } else if rng.u8(..5) == 0 {
                // Names must not be empty in the config.
                format!("{}{i}", NAMES[rng.usize(..NAMES.len())])
            } else {
                format!("store-{i}")
            };
            (format!("ds{i}"), name)
        })
        .collect()
}

#[test]
fn cached_output_equals_a_fresh_encoding_through_changes_failures_and_reloads() {
    let mut bodies = Bodies::default();
    for seed in 1..=6 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut now = 1_700_000_000.0 + rng.f64() * 1000.0;
        let state = Arc::new(State::new(&config(&datastore_list(&mut rng, 8)), now));
        let cache = MetricsCache::new();
        check(&cache, &state, now, "never polled", &mut bodies);
        for round in 0..25 {
            let what = format!("seed {seed} round {round}");
            for ds in state.datastores().iter() {
                match rng.u8(..6) {
                    0 | 1 => {
                        let limit = rng.usize(0..25);
                        ds.record_success(random_jobs(&mut rng, now), limit, rng.f64(), now);
                    }
                    2 => {
                        let reason = ErrorReason::ALL[rng.usize(..ErrorReason::ALL.len())];
                        let feed = match rng.u8(..3) {
                            0 => Feed::Jobs(JobKind::Import),
                            _ => Feed::Jobs(JobKind::Export),
                        };
                        let error = PollError::new(reason, "boom");
                        ds.record_failure(feed, &error, rng.f64() * 30.0);
                    }
                    _ => {}
                }
            }
            match rng.u8(..8) {
                0 => state.apply(&config(&datastore_list(&mut rng, 10))),
                1 => state.reload_status().record(rng.bool(), now),
                _ => {}
            }
            check(&cache, &state, now, &what, &mut bodies);
            // Time passes without a change: only the running jobs' values move.
            now += rng.f64() * 100.0;
            check(&cache, &state, now, &format!("{what}, later"), &mut bodies);
            assert_eq!(cache.stats().datastores, state.datastores().len(), "{what}");
        }
    }
    bodies.parse_independently();
}

#[test]
fn an_unchanged_state_is_not_encoded_again() {
    let names: Vec<(String, String)> = (0..3)
        .map(|i| (format!("ds{i}"), format!("n{i}")))
        .collect();
    let state = Arc::new(State::new(&config(&names), 0.0));
    let mut rng = fastrand::Rng::with_seed(9);
    for ds in state.datastores().iter() {
        ds.record_success(random_jobs(&mut rng, 1000.0), 10, 0.5, 1000.0);
    }
    let cache = MetricsCache::new();
    let mut bodies = Bodies::default();
    check(&cache, &state, 1000.0, "first", &mut bodies);
    let after_first = cache.stats().encodes;
    assert_eq!(after_first, 6, "three datastores, two formats");
    check(&cache, &state, 2000.0, "later", &mut bodies);
    assert_eq!(cache.stats().encodes, after_first, "nothing changed");

    let datastores = state.datastores();
    let export = Feed::Jobs(JobKind::Export);
    datastores[1].record_failure(export, &PollError::new(ErrorReason::Throttled, "slow"), 1.0);
    check(&cache, &state, 2500.0, "after a failure", &mut bodies);
    assert_eq!(
        cache.stats().encodes,
        after_first + 2,
        "one datastore, two formats"
    );

    // A reload that drops two datastores and renames the third drops their entries.
    state.apply(&config(&[("ds2".into(), "renamed".into())]));
    check(&cache, &state, 3000.0, "after a reload", &mut bodies);
    assert_eq!(cache.stats().datastores, 1);
    assert!(
        render_uncached(&state, 3000.0, Format::Prometheus).contains("datastore_name=\"renamed\"")
    );
    bodies.parse_independently();
}

#[test]
fn a_large_state_compresses_well() {
    let names: Vec<(String, String)> = (0..50)
        .map(|i| (format!("{i:032x}"), format!("bench-{i:04}")))
        .collect();
    let now = 1_800_000_000.0;
    let state = Arc::new(State::new(&config(&names), 0.0));
    for ds in state.datastores().iter() {
        let jobs = (0..300)
            .map(|k| Job {
                id: format!("{:032x}", k * 7919 + ds.id.len()),
                name: Some(format!("export-{k:06}")),
                status: if k == 299 {
                    JobStatus::InProgress
                } else {
                    JobStatus::Completed
                },
                submitted: now - (300 - k) as f64 * 3600.0,
                ended: (k != 299).then_some(now - (300 - k) as f64 * 3600.0 + 900.0),
                progress: None,
                message: None,
            })
            .collect();
        ds.record_success(jobs, 100, 0.1, now);
    }
    let cache = MetricsCache::new();
    let mut bodies = Bodies::default();
    check(&cache, &state, now + 5.0, "50 datastores", &mut bodies);
    bodies.parse_independently();
    let plain = cache
        .render(&state, now + 5.0, Format::OpenMetrics, false)
        .unwrap();
    let gzip = cache
        .render(&state, now + 5.0, Format::OpenMetrics, true)
        .unwrap();
    assert!(
        gzip.len() * 5 < plain.len(),
        "gzip {} of {} bytes",
        gzip.len(),
        plain.len()
    );
}

// ---- over HTTP ----

/// A raw HTTP/1.1 exchange: (status, lowercase head, body bytes).
async fn request(
    addr: SocketAddr,
    method: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut text = format!("{method} /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head, response[split + 4..].to_vec())
}

/// A served body less its `process_*` families, which are read at each scrape (so two bodies
/// differ there); checks first that all seven are there, each with one sample.
fn without_process_families(body: &str) -> String {
    let is_process = |line: &str| {
        let name = ["# HELP ", "# TYPE ", "# UNIT "]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .unwrap_or(line);
        name.starts_with("process_")
    };
    let samples: Vec<&str> = body
        .lines()
        .filter(|l| is_process(l) && !l.starts_with('#'))
        .collect();
    let names = [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_virtual_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        "process_threads ",
    ];
    assert_eq!(samples.len(), names.len(), "{samples:?}");
    for name in names {
        let value: f64 = samples
            .iter()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name}missing: {samples:?}"))
            .parse()
            .expect("a number");
        assert!(
            value > 0.0 || name.starts_with("process_cpu"),
            "{name}{value}"
        );
    }
    body.split_inclusive('\n')
        .filter(|l| !is_process(l))
        .collect()
}

#[tokio::test]
async fn metrics_over_http_are_gzipped_only_when_accepted() {
    let config = config(&[("ds1".into(), "one".into()), ("ds2".into(), "two".into())]);
    let state = Arc::new(State::new(&config, 10.0));
    // Only ended jobs: the body does not depend on the scrape time, so scrapes compare exactly.
    for ds in state.datastores().iter() {
        let jobs = (0..20)
            .map(|k| Job {
                id: format!("{}-{k}", ds.id),
                name: Some(format!("job {k}")),
                status: JobStatus::Completed,
                submitted: 1000.0 + k as f64,
                ended: Some(2000.0 + k as f64),
                progress: None,
                message: None,
            })
            .collect();
        ds.record_success(jobs, 100, 0.25, 3000.0);
    }
    let context = Arc::new(HttpContext::new(Arc::clone(&state), &config.server).unwrap());
    let listener = web::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web::serve(listener, context, async {
        let _ = stopped.await;
    }));

    let mut bodies = Bodies::default();
    let (status, head, plain) = request(addr, "GET", &[]).await;
    assert_eq!(status, 200);
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(head.contains("vary: accept, accept-encoding"), "{head}");
    let served = String::from_utf8(plain).unwrap();
    bodies.add(&state, Format::Prometheus, &served, "served plain");
    let plain = without_process_families(&served);
    assert_eq!(plain, render_uncached(&state, 0.0, Format::Prometheus));

    let (status, head, body) = request(addr, "GET", &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("vary: accept, accept-encoding"), "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(without_process_families(&gunzip(&body)), plain);

    // As Prometheus asks: OpenMetrics, gzip.
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (_, head, body) = request(
        addr,
        "GET",
        &[("Accept", accept), ("Accept-Encoding", "gzip")],
    )
    .await;
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let served = gunzip(&body);
    bodies.add(
        &state,
        Format::OpenMetrics,
        &served,
        "served gzip OpenMetrics",
    );
    let openmetrics = without_process_families(&served);
    assert_eq!(
        openmetrics,
        render_uncached(&state, 0.0, Format::OpenMetrics)
    );
    assert!(openmetrics.ends_with("# EOF\n"));

    let (_, head, body) = request(addr, "GET", &[("Accept-Encoding", "gzip;q=0, deflate")]).await;
    assert!(!head.contains("content-encoding"), "{head}");
    assert_eq!(
        without_process_families(&String::from_utf8(body).unwrap()),
        plain
    );

    let (status, head, body) = request(addr, "HEAD", &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(body.is_empty());

    let _ = stop.send(());
    server.await.unwrap();
    bodies.parse_independently();
}

/// One scrape of `state` through `cache`, compared with the reference.
fn check_one(
    cache: &MetricsCache,
    state: &Arc<State>,
    (now, format, gzip): (f64, Format, bool),
    bodies: &mut Bodies,
) {
    let reference = render_uncached(state, now, format);
    let stream = cache.body(state, now, format, gzip).expect("cache renders");
    let announced = stream.len();
    let mut body = Vec::new();
    for chunk in stream {
        let chunk = chunk.expect("every chunk renders");
        assert!(!chunk.is_empty());
        body.extend_from_slice(&chunk);
    }
    assert_eq!(
        body.len() as u64,
        announced,
        "the announced length is exact"
    );
    let body = if gzip {
        gunzip(&body)
    } else {
        String::from_utf8(body).expect("utf-8")
    };
    assert_eq!(body, reference, "{format:?} gzip={gzip} at {now}");
    bodies.add(state, format, &body, &format!("gzip={gzip} at {now}"));
}

#[test]
fn plain_and_gzip_scrapes_in_any_order_equal_a_fresh_encoding() {
    let mut bodies = Bodies::default();
    for seed in 1..=6 {
        let mut rng = fastrand::Rng::with_seed(seed * 101);
        let mut now = 1_700_000_000.0 + rng.f64() * 1000.0;
        let state = Arc::new(State::new(&config(&datastore_list(&mut rng, 8)), now));
        let cache = MetricsCache::new();
        // Gzip-only scrapes first: the cache never holds a format's text; then a plain one.
        for round in 0..30 {
            for ds in state.datastores().iter() {
                match rng.u8(..5) {
                    0 => {
                        let limit = rng.usize(0..25);
                        ds.record_success(random_jobs(&mut rng, now), limit, rng.f64(), now);
                    }
                    1 => {
                        let error = PollError::new(ErrorReason::Throttled, "slow");
                        ds.record_failure(Feed::Jobs(JobKind::Export), &error, 1.0);
                    }
                    _ => {}
                }
            }
            if rng.u8(..10) == 0 {
                state.apply(&config(&datastore_list(&mut rng, 10)));
            }
            let scrapes = if round < 5 { 2 } else { rng.usize(1..4) };
            for _ in 0..scrapes {
                let format = FORMATS[rng.usize(..FORMATS.len())];
                let gzip = round < 5 || rng.u8(..3) != 0;
                check_one(&cache, &state, (now, format, gzip), &mut bodies);
            }
            if round == 5 {
                for format in FORMATS {
                    check_one(&cache, &state, (now, format, false), &mut bodies);
                }
            }
            now += rng.f64() * 100.0;
        }
    }
    bodies.parse_independently();
}

/// Concurrent scrapes of what changed encode it once and share it; each streams the same bytes.
#[test]
fn concurrent_scrapes_share_one_encoding() {
    let names: Vec<(String, String)> = (0..20)
        .map(|i| (format!("{i:032x}"), format!("store-{i}")))
        .collect();
    let state = Arc::new(State::new(&config(&names), 0.0));
    let mut rng = fastrand::Rng::with_seed(3);
    for ds in state.datastores().iter() {
        ds.record_success(random_jobs(&mut rng, 5000.0), 50, 0.5, 5000.0);
    }
    let cache = Arc::new(MetricsCache::new());
    let reference = render_uncached(&state, 6000.0, Format::OpenMetrics);
    // Open every body first (all encoding happens then), read them afterwards.
    let bodies: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (cache, state) = (Arc::clone(&cache), Arc::clone(&state));
                scope.spawn(move || {
                    cache
                        .body(&state, 6000.0, Format::OpenMetrics, i % 2 == 0)
                        .expect("cache renders")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(cache.stats().encodes, 20, "each datastore encoded once");
    let cached = cache.stats().bytes;
    assert!(
        cached > 0 && cached < reference.len(),
        "{cached} bytes cached"
    );
    for (i, body) in bodies.into_iter().enumerate() {
        let mut bytes = Vec::new();
        for chunk in body {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        let text = if i % 2 == 0 {
            gunzip(&bytes)
        } else {
            String::from_utf8(bytes).unwrap()
        };
        assert_eq!(text, reference, "scrape {i}");
    }
    // Every body equals the reference: parsed once.
    let mut parsed = Bodies::default();
    parsed.add(
        &state,
        Format::OpenMetrics,
        &reference,
        "16 concurrent scrapes",
    );
    parsed.parse_independently();
}
