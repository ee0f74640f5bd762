//! Criterion benchmarks of the exporter's hot pure paths (issue #5), through the public API only:
//!
//! - `record_success`: merging one poll's listing (2,000 jobs) into a datastore's State, both the
//!   first poll and the steady state (the same listing again, as every cycle today).
//! - `render`: encoding `/metrics` for 50 datastores × 2,000 jobs with `job_series_limit` 100, in
//!   both exposition formats: `uncached_*` is prometheus-client over all of State (what every
//!   scrape cost before the cache, kept as the reference); `cached_*` is what `/metrics` serves
//!   (`MetricsCache`): steady state (nothing changed since the last scrape), plain and gzip; one
//!   datastore changed since the last scrape; and a cold cache (every datastore changed, as after
//!   the first poll), which bounds the slowest scrape.
//!
//! Kept short (small samples, 3 s per benchmark) so `cargo bench` ends in about a minute on
//! 2 cores. Run: `cargo bench --bench hot_paths` (add `-- render` to run one group).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use healthlake_exporter::config::Config;
use healthlake_exporter::metrics::{self, Format, MetricsCache};
use healthlake_exporter::model::{ErrorReason, PollError};
use healthlake_exporter::model::{Job, JobKind, JobStatus};
use healthlake_exporter::state::{Feed, State};

const NOW: f64 = 1_800_000_000.0;
const JOBS: usize = 2_000;
const DATASTORES: usize = 50;
const JOB_SERIES_LIMIT: usize = 100;

fn hex32(a: u64, b: u64) -> String {
    format!(
        "{:016x}{:016x}",
        a.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        b.wrapping_mul(0xbf58_476d_1ce4_e5b9)
    )
}

/// A config naming `n` datastores with 32-hex ids, as the scale benchmark's fake writes.
fn config(n: usize) -> Config {
    let mut text = String::from("[aws]\nregion = \"us-east-1\"\n");
    for d in 0..n {
        text.push_str(&format!(
            "[[datastores]]\nid = \"{}\"\nname = \"bench-{:04}\"\n",
            hex32(d as u64 + 1, 7),
            d + 1
        ));
    }
    Config::parse(&text, Path::new("bench.toml")).expect("valid bench config")
}

/// One datastore's listing: hourly jobs, mostly COMPLETED, ~2% FAILED, the newest IN_PROGRESS,
/// in an order unrelated to submission (as the API returns them).
fn listing(d: usize, n: usize) -> Vec<Job> {
    let mut jobs: Vec<Job> = (0..n)
        .map(|k| {
            let submitted = NOW - (n - k) as f64 * 3600.0;
            let status = if k + 1 == n {
                JobStatus::InProgress
            } else if k % 50 == 7 {
                JobStatus::Failed
            } else {
                JobStatus::Completed
            };
            let ended = status.is_terminal().then_some(submitted + 900.0);
            Job {
                id: hex32(d as u64 + 1, k as u64 + 1),
                name: Some(format!("export-{k:06}")),
                status,
                submitted,
                ended,
                progress: None,
                message: None,
            }
        })
        .collect();
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    jobs
}

fn record_success(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_success");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(JOBS as u64));
    let jobs = listing(0, JOBS);

    group.bench_function("2000_jobs_first_poll", |b| {
        b.iter_batched(
            || (State::new(&config(1), 0.0), jobs.clone()),
            |(state, jobs)| {
                black_box(state.datastores()[0].record_success(jobs, JOB_SERIES_LIMIT, 0.1, NOW));
                state
            },
            BatchSize::LargeInput,
        );
    });

    let state = State::new(&config(1), 0.0);
    state.datastores()[0].record_success(jobs.clone(), JOB_SERIES_LIMIT, 0.1, NOW);
    group.bench_function("2000_jobs_steady_same_listing", |b| {
        b.iter_batched(
            || jobs.clone(),
            |jobs| {
                black_box(state.datastores()[0].record_success(jobs, JOB_SERIES_LIMIT, 0.1, NOW))
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn render(c: &mut Criterion) {
    let state = Arc::new(State::new(&config(DATASTORES), 0.0));
    for (d, ds) in state.datastores().iter().enumerate() {
        ds.record_success(listing(d, JOBS), JOB_SERIES_LIMIT, 0.1, NOW);
    }
    let mut group = c.benchmark_group("render");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (label, format) in [
        ("prometheus", Format::Prometheus),
        ("openmetrics", Format::OpenMetrics),
    ] {
        let bytes = metrics::render_uncached(&state, NOW, format).len();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(format!("50_datastores_limit_100_{label}"), |b| {
            b.iter(|| black_box(metrics::render_uncached(&state, black_box(NOW), format)));
        });
    }
    group.finish();
    cached_render(&state);
}

/// The `/metrics` path as served, on the same State as `render`.
fn cached_render(state: &Arc<State>) {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let mut group = c.benchmark_group("render");
    let throttled = PollError::new(ErrorReason::Throttled, "bench");
    let export = Feed::Jobs(JobKind::Export);
    for (label, format) in [
        ("prometheus", Format::Prometheus),
        ("openmetrics", Format::OpenMetrics),
    ] {
        let cache = MetricsCache::new();
        let scrape = |gzip| match cache.render(state, black_box(NOW + 30.0), format, gzip) {
            Ok(body) => body,
            Err(error) => panic!("cached render failed: {error}"),
        };
        let plain = scrape(false).len();
        let gzip = scrape(true).len();
        println!(
            "render/{label}: {plain} bytes, gzip {gzip} bytes (ratio {:.1})",
            plain as f64 / gzip as f64
        );
        for (encoding, gzip) in [("plain", false), ("gzip", true)] {
            group.throughput(Throughput::Bytes(plain as u64));
            group.bench_function(
                format!("cached_50_datastores_limit_100_{label}_{encoding}"),
                |b| b.iter(|| black_box(scrape(gzip))),
            );
            group.bench_function(
                format!("cached_one_changed_50_datastores_limit_100_{label}_{encoding}"),
                |b| {
                    b.iter(|| {
                        state.datastores()[7].record_failure(export, &throttled, 0.1);
                        black_box(scrape(gzip))
                    })
                },
            );
            group.bench_function(
                format!("cached_cold_50_datastores_limit_100_{label}_{encoding}"),
                |b| {
                    b.iter_batched(
                        MetricsCache::new,
                        |cold| {
                            cold.render(state, NOW + 30.0, format, gzip)
                                .map(|b| b.len())
                        },
                        BatchSize::PerIteration,
                    )
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, record_success, render);
criterion_main!(benches);
