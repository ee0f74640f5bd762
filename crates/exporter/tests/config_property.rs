//! Issue 18, finding 11: no configuration that `--check-config` accepts may panic the exporter.
//!
//! Random files, with random values and units for every numeric and duration key (huge, zero,
//! negative, NaN, malformed, of the wrong type), go through validation; those that validate are
//! started against the fake HealthLake on loopback, run until their first polls are done, scraped
//! and shut down. A panic anywhere (a poller task included: tokio would only log it) fails the
//! test. A last test builds configurations in code, past validation, with the largest values a
//! `Duration` or an `f64` holds: the arithmetic on them saturates instead of panicking.
//!
//! The case counts are small so that the file runs in seconds; `PROPTEST_CASES` raises them and
//! `PROPTEST_RNG_SEED` replays a run.

mod common;

use std::path::Path;
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use healthlake_exporter::config::Config;
use healthlake_exporter::state::Feed;
use healthlake_exporter::Exporter;
use healthlake_fake::{FakeHealthLake, FakeServer};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

use common::{http_request, start_fake, test_options, within};

/// The queue `[events]` reads, on the fake's own SQS (one per shard: a sharded replica refuses
/// to start on a queue shared with other replicas).
const QUEUE: &str = "property-events-{shard}";

/// Every panic message seen by this test binary (its tests never panic on purpose).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(info.to_string());
            default(info);
        }));
    });
}

/// The tests of this file share the panic record: one at a time, each starting with it empty.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    record_panics();
    PANICS.lock().unwrap_or_else(|p| p.into_inner()).clear();
    guard
}

fn panics() -> Vec<String> {
    PANICS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// One runtime and one fake for every case of every test in this file.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

fn fake() -> &'static (FakeHealthLake, FakeServer) {
    static FAKE: OnceLock<(FakeHealthLake, FakeServer)> = OnceLock::new();
    FAKE.get_or_init(|| {
        let (fake, server) = runtime().block_on(start_fake());
        for shard in 1..1000 {
            fake.create_queue(&format!("property-events-{shard}"));
        }
        // Shard 0's queue (every unsharded replica's) also gets the fake's events.
        fake.set_event_queues(&["property-events-0"]);
        (fake, server)
    })
}

fn quoted(value: String) -> String {
    format!("\"{value}\"")
}

/// `seconds` written in the largest unit that divides it, or in seconds.
fn in_some_unit(seconds: u64, largest: usize) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let (size, unit) = units[3 - largest.min(3)..]
        .iter()
        .find(|(size, _)| seconds.is_multiple_of(*size))
        .copied()
        .unwrap_or((1, "s"));
    quoted(format!("{}{unit}", seconds / size))
}

/// A duration key's value: mostly within `lo..=hi` seconds (the key's bounds), often exactly at a
/// bound or just past one, sometimes anything at all.
fn duration_value(lo: u64, hi: u64) -> BoxedStrategy<String> {
    let units = [
        "ns", "us", "ms", "s", "m", "h", "d", "w", "M", "y", "", " s", "sec", "days", "x", "µs",
    ];
    prop_oneof![
        16 => (lo..=hi, 0usize..4).prop_map(|(n, largest)| in_some_unit(n, largest)),
        2 => prop::sample::select(vec![lo, hi]).prop_map(|n| quoted(format!("{n}s"))),
        1 => prop::sample::select(vec![lo.saturating_sub(1), hi + 1])
            .prop_map(|n| quoted(format!("{n}s"))),
        1 => (any::<u64>(), prop::sample::select(units.to_vec()))
            .prop_map(|(n, unit)| quoted(format!("{n}{unit}"))),
        // Durations that parse but overflow the clock: what made tasks panic before.
        2 => prop_oneof![
            (1u64 << 62..=u64::MAX).prop_map(|n| quoted(format!("{n}s"))),
            (300_000_000_000u64..600_000_000_000).prop_map(|n| quoted(format!("{n}y"))),
            (107_000_000_000_000u64..213_503_982_334_601).prop_map(|n| quoted(format!("{n}d"))),
        ],
        1 => (0u64..100_000, prop::sample::select(units.to_vec()))
            .prop_map(|(n, unit)| quoted(format!("{n}{unit}"))),
        1 => prop::sample::select(vec![
            "\"999ms\"", "\"0s\"", "\"1ns\"", "\"7d\"", "\"500000000000y\"", "\"584942417355y\"",
            "\"18446744073709551615s\"", "\"18446744073709551616s\"", "\"18446744073709551615ns\"",
            "\"1h 30m\"", "\"\"", "\" \"", "\"-5s\"", "\"1.5s\"", "\"NaN\"", "\"inf s\"",
            "\"5s 3\"", "\"s\"", "\"\\u0000\"", "\"1e3s\"", "5", "-1", "1.5e308", "nan", "inf",
            "true", "[]", "{}", "1979-05-27",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// An integer key's value: mostly within `lo..=hi` (the key's bounds), often at or just past a
/// bound, sometimes anything at all.
fn integer_value(lo: i64, hi: i64) -> BoxedStrategy<String> {
    prop_oneof![
        16 => (lo..=hi).prop_map(|n| n.to_string()),
        2 => prop::sample::select(vec![lo, hi]).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![lo - 1, hi + 1]).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "9223372036854775807", "-9223372036854775808", "\"8\"", "1.5", "nan", "-inf", "true",
            "\"\"", "[1]",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// A TOML float as text (Rust prints NaN and infinities in a way TOML does not read).
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{f:?}")
    }
}

/// `polling.max_requests_per_second`.
fn rate_value() -> BoxedStrategy<String> {
    prop_oneof![
        16 => (0.01f64..=1000.0).prop_map(float_text),
        2 => (1i64..=1000).prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(float_text),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        2 => prop::sample::select(vec![
            "nan", "+inf", "-inf", "0.0", "-0.0", "1e-300", "5e-324", "0.01", "0.0099999",
            "1000.0", "1000.0000001", "1e308", "1000", "0", "\"fast\"",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

fn shard_value() -> BoxedStrategy<String> {
    prop_oneof![
        4 => Just("\"0/1\"".to_owned()),
        2 => (0u32..4, 1u32..4).prop_map(|(i, n)| quoted(format!("{i}/{n}"))),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(i, n)| quoted(format!("{i}/{n}"))),
        1 => prop::sample::select(vec![
            "\"/\"", "\"1\"", "\"0/0\"", "\"999/1000\"", "\"0/1001\"", "1", "\"-1/2\"",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

fn bool_value() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<bool>().prop_map(|b| b.to_string()),
        1 => Just("\"yes\"".to_owned()),
    ]
    .boxed()
}

/// Where a key goes: `[polling]`, `[server]`, `[[discovery]]` or `[events]`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Polling,
    Server,
    Discovery,
    Events,
}

fn keys() -> Vec<(Section, &'static str, BoxedStrategy<String>)> {
    use Section::*;
    const DAY: u64 = 86_400;
    vec![
        (Polling, "interval", duration_value(1, DAY)),
        (Polling, "timeout", duration_value(1, 600)),
        (Polling, "full_resync_interval", duration_value(1, DAY)),
        (Polling, "ended_job_window", duration_value(60, DAY)),
        (Polling, "datastore_interval", duration_value(1, DAY)),
        (Polling, "concurrency", integer_value(1, 256)),
        (Polling, "job_series_limit", integer_value(0, 10_000)),
        (Polling, "max_attempts", integer_value(1, 10)),
        (Polling, "max_pages", integer_value(1, 100_000)),
        (Polling, "max_requests_per_second", rate_value()),
        (Polling, "shard", shard_value()),
        (Polling, "datastore_health", bool_value()),
        (Server, "max_connections", integer_value(1, 10_000)),
        (Server, "max_connections_per_ip", integer_value(0, 10_000)),
        (Discovery, "interval", duration_value(1, DAY)),
        (Events, "wait_time", duration_value(1, 20)),
    ]
}

/// A random file: each key present or not, with a random value; `[[discovery]]` and `[events]`
/// present or not. The datastore id is filled in per case (`{id}`).
#[derive(Clone, Debug)]
struct RandomFile {
    values: Vec<Option<String>>,
    discovery: bool,
    events: bool,
}

fn random_file() -> impl Strategy<Value = RandomFile> {
    let values: Vec<BoxedStrategy<Option<String>>> = keys()
        .into_iter()
        .map(|(_, _, value)| prop::option::weighted(0.4, value).boxed())
        .collect();
    (values, any::<bool>(), any::<bool>()).prop_map(|(values, discovery, events)| RandomFile {
        values,
        discovery,
        events,
    })
}

impl RandomFile {
    fn text(&self, endpoint: &str, id: &str) -> String {
        let keys = keys();
        let section = |wanted: Section| -> String {
            keys.iter()
                .zip(&self.values)
                .filter(|((section, _, _), value)| *section == wanted && value.is_some())
                .map(|((_, key, _), value)| format!("{key} = {}\n", value.as_deref().unwrap_or("")))
                .collect()
        };
        let mut text = format!(
            "[server]\nlisten_address = \"127.0.0.1:0\"\n{}[polling]\n{}[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n[[datastores]]\nid = \"{id}\"\n",
            section(Section::Server),
            section(Section::Polling),
        );
        if self.discovery {
            text.push_str(&format!(
                "[[discovery]]\nname_prefix = \"property-\"\n{}",
                section(Section::Discovery)
            ));
        }
        if self.events {
            text.push_str(&format!(
                "[events]\nqueue_url = \"{endpoint}/123456789012/{QUEUE}\"\nendpoint_url = \"{endpoint}\"\n{}",
                section(Section::Events)
            ));
        }
        text
    }
}

/// What validation promised: every duration and number within its documented bounds.
fn assert_within_bounds(config: &Config) {
    let p = &config.polling;
    let (second, day) = (Duration::from_secs(1), Duration::from_secs(86_400));
    for (key, value) in [
        ("interval", p.interval),
        ("full_resync_interval", p.full_resync_interval),
        ("datastore_interval", p.datastore_interval),
    ] {
        assert!((second..=day).contains(&value), "polling.{key} = {value:?}");
    }
    assert!((second..=Duration::from_secs(600)).contains(&p.timeout));
    assert!((Duration::from_secs(60)..=day).contains(&p.ended_job_window));
    assert!((1..=256).contains(&p.concurrency));
    assert!(p.job_series_limit <= 10_000);
    assert!((1..=10).contains(&p.max_attempts));
    assert!((1..=100_000).contains(&p.max_pages));
    let rate = p.max_requests_per_second;
    assert!(
        rate.is_finite() && (0.01..=1000.0).contains(&rate),
        "{rate}"
    );
    assert!((1..=10_000).contains(&config.server.max_connections));
    assert!(config.server.max_connections_per_ip <= 10_000);
    for entry in &config.discovery {
        assert!((second..=day).contains(&entry.interval));
    }
    if let Some(events) = &config.events {
        assert!((second..=Duration::from_secs(20)).contains(&events.wait_time));
    }
}

/// Thousands of random files through validation: each is refused with a located message or
/// accepted within the documented bounds, and nothing panics.
#[test]
fn random_files_are_refused_with_a_location_or_accepted_within_bounds() {
    let _serial = serial();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 2000,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let accepted = std::cell::Cell::new(0u32);
    runner
        .run(&random_file(), |file| {
            let text = file.text("http://127.0.0.1:1", "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4");
            match Config::parse(&text, Path::new("random.toml")) {
                Ok(config) => {
                    assert_within_bounds(&config);
                    accepted.set(accepted.get() + 1);
                }
                Err(error) => {
                    let message = error.to_string();
                    prop_assert!(message.starts_with("random.toml:"), "{message}");
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!("{} of 2000 random files validated", accepted.get());
    // The generator is tuned so that a good share validates (and the next test has work).
    assert!(
        accepted.get() >= 300,
        "only {} of 2000 files validated",
        accepted.get()
    );
    assert_eq!(panics(), Vec::<String>::new());
}

/// Whether a poll of any feed of any datastore has finished, successfully or not.
fn polled(exporter: &Exporter) -> bool {
    exporter.state().datastores().iter().any(|datastore| {
        let record = datastore.record();
        [Feed::EXPORTS, Feed::IMPORTS, Feed::Datastore]
            .into_iter()
            .any(|feed| {
                record
                    .health(feed)
                    .is_some_and(|h| h.last_poll_seconds.is_some())
            })
    })
}

/// Starts `config`, waits (up to 20 s) until a first poll is done when this replica owns a
/// datastore, scrapes `/metrics` and shuts down.
async fn start_poll_stop(config: Config) -> Result<(), String> {
    let owns = config.polling.shard.owns(&config.datastores[0].id);
    let exporter = Exporter::start(config, test_options())
        .await
        .map_err(|e| format!("did not start: {e}"))?;
    let first_poll = within(Duration::from_secs(20), || async {
        (!owns || polled(&exporter)).then_some(())
    });
    if first_poll.await.is_none() {
        return Err("no poll finished within 20 s".to_owned());
    }
    let (status, _, _) = http_request(exporter.local_addr(), "GET", "/metrics", &[]).await;
    exporter.shutdown().await;
    (status == 200)
        .then_some(())
        .ok_or_else(|| format!("/metrics answered {status}"))
}

/// Files that validate are started, polled, scraped and stopped, several at once per case (each
/// with its own datastore and port), without a panic anywhere.
#[test]
fn random_valid_files_start_poll_and_stop_without_a_panic() {
    let _serial = serial();
    let (fake, server) = fake();
    let endpoint = server.endpoint_url();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 3,
        failure_persistence: None,
        max_shrink_iters: 16,
        ..RunnerConfig::default()
    });
    let case = std::cell::Cell::new(0u32);
    let started = std::cell::Cell::new(0u32);
    runner
        .run(&prop::collection::vec(random_file(), 24), |files| {
            case.set(case.get() + 1);
            let mut configs = Vec::new();
            for (i, file) in files.iter().enumerate() {
                let id = format!("property-{:02}-{i:02}", case.get());
                let text = file.text(&endpoint, &id);
                if let Ok(config) = Config::parse(&text, Path::new("random.toml")) {
                    fake.add_datastore(&id);
                    configs.push((text, config));
                }
            }
            started.set(started.get() + configs.len() as u32);
            let results = runtime().block_on(async {
                let runs = configs
                    .into_iter()
                    .map(|(text, config)| async move { (text, start_poll_stop(config).await) });
                spawn_and_join_all(runs).await
            });
            for (text, result) in results {
                if let Err(problem) = result {
                    return Err(TestCaseError::fail(format!("{problem}\n{text}")));
                }
            }
            let seen = panics();
            prop_assert!(seen.is_empty(), "panics: {seen:#?}");
            Ok(())
        })
        .unwrap();
    eprintln!("{} random files validated and were started", started.get());
    assert!(started.get() >= 6, "only {} files validated", started.get());
}

/// Runs the futures at once, each as its own task, and returns their outputs in order.
async fn spawn_and_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("a start-up task panicked"));
    }
    out
}

/// The second line of defence: a configuration built in code, past validation, with the largest
/// (or smallest) times and rates the types hold. Every sum and product of times the exporter
/// computes saturates, so it starts, polls, serves and stops without a panic.
#[test]
fn times_past_every_bound_saturate_instead_of_panicking() {
    let _serial = serial();
    let (fake, server) = fake();
    let endpoint = server.endpoint_url();
    let extremes = [
        (Duration::MAX, f64::MIN_POSITIVE),
        (Duration::MAX, f64::NAN),
        (Duration::ZERO, f64::MAX),
        (Duration::from_nanos(1), f64::INFINITY),
        (Duration::from_secs(u64::MAX / 2), 0.0),
        (Duration::from_secs(1), -1.0),
    ];
    let runs = extremes.iter().enumerate().map(|(i, &(time, rate))| {
        let id = format!("extreme-{i}");
        fake.add_datastore(&id);
        // A rate that is no rate becomes the slowest one (a request every 100 s): without
        // discovery, which would take the first request, a poll still comes first.
        let discovery = if rate >= 1.0 {
            "[[discovery]]\nname_prefix = \"extreme-\"\n"
        } else {
            ""
        };
        let text = format!(
            "[server]\nlisten_address = \"127.0.0.1:0\"\n[polling]\njobs = [\"export\", \"import\"]\ndatastore_health = true\n\
             [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n[[datastores]]\nid = \"{id}\"\n\
             [events]\nqueue_url = \"{endpoint}/123456789012/{QUEUE}\"\nendpoint_url = \"{endpoint}\"\n{discovery}"
        );
        let mut config = Config::parse(&text, Path::new("extreme.toml")).expect("a valid base");
        let p = &mut config.polling;
        p.interval = time;
        p.timeout = time;
        p.full_resync_interval = time;
        p.ended_job_window = time;
        p.datastore_interval = time;
        p.max_requests_per_second = rate;
        for entry in &mut config.discovery {
            entry.interval = time;
        }
        if let Some(events) = config.events.as_mut() {
            events.wait_time = time;
        }
        async move { (format!("{time:?}, {rate}"), start_poll_stop(config).await) }
    });
    let results = runtime().block_on(spawn_and_join_all(runs.collect::<Vec<_>>()));
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|(what, result)| result.err().map(|e| format!("{what}: {e}")))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(panics(), Vec::<String>::new());
}
