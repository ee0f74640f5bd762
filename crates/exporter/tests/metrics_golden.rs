//! The metrics output for one scripted State, byte for byte, in both formats: export and import
//! jobs (unknown statuses, running jobs with progress, a terminal job without an end time), failed
//! polls of every feed, datastore health, discovery, the event path and a failed reload, followed
//! by the `process_*` families as `/metrics` serves them. The golden files under `tests/golden/`
//! are the exposition a user's dashboards and alerts see; a change to them is a change of the
//! exporter's output and must be deliberate. `UPDATE_GOLDEN=1` rewrites them.
//!
//! The `process_*` values are read from `/proc` at each scrape, so they cannot be pinned: the test
//! checks each is a number (and positive where it must be), then writes it as `0.0` (see
//! [`masked_process_values`]). Their names, types, help and (empty) label sets are still compared
//! byte for byte.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

mod common;
mod exposition_parsers;

use exposition_parsers::{parse_independently, Parsed};
use healthlake_exporter::config::Config;
use healthlake_exporter::metrics::{render_uncached, Format, MetricsCache};
use healthlake_exporter::metrics::{FAMILY_NAMES, PROCESS_FAMILY_NAMES};
use healthlake_exporter::model::{DatastoreInfo, ErrorReason, PollError};
use healthlake_exporter::model::{ImportProgress, Job, JobKind, JobStatus};
use healthlake_exporter::state::{Feed, Listed, PollPlan, Retention, State};

const T0: f64 = 1_750_000_000.0;

const CONFIG: &str = r#"
[aws]
region = "us-east-1"
[polling]
datastore_health = true
job_series_limit = 3
[[datastores]]
id = "ds-both"
name = "prod \"main\""
jobs = ["export", "import"]
[[datastores]]
id = "ds-export"
name = "exports-only"
[[datastores]]
id = "ds-import"
name = "imports-only"
jobs = ["import"]
[[datastores]]
id = "ds-never"
name = "never-polled"
[[discovery]]
region = "eu-west-1"
[[discovery]]
"#;

fn job(id: &str, status: &str, submitted: f64, ended: Option<f64>) -> Job {
    Job {
        id: id.to_owned(),
        name: Some(format!("name-{id}")),
        status: JobStatus::parse(status),
        submitted,
        ended,
        progress: None,
        message: None,
    }
}

fn progress(scale: f64) -> ImportProgress {
    ImportProgress {
        files_scanned: 10.0 * scale,
        scanned_bytes: 1.5e6 * scale,
        files_imported: 9.0 * scale,
        resources_scanned: 1000.0 * scale,
        resources_imported: 990.0 * scale,
        resources_failed: 10.0 * scale,
        files_failed: scale,
    }
}

fn scripted_state() -> Arc<State> {
    let config = Config::parse(CONFIG, Path::new("golden.toml")).expect("valid config");
    let state = Arc::new(State::new(&config, T0));
    let datastores = state.datastores();
    let (both, export_only, import_only) = (&datastores[0], &datastores[1], &datastores[2]);

    // Exports: every known status, an unknown one, a job listed twice, an old unfinished one and a
    // terminal job without an end time; then a second poll that finishes two of them.
    let exports = vec![
        job("e1", "COMPLETED", T0 - 7200.0, Some(T0 - 6000.0)),
        job("e2", "FAILED", T0 - 3600.0, Some(T0 - 3500.5)),
        job("e3", "IN_PROGRESS", T0 - 600.0, None),
        job("e3", "IN_PROGRESS", T0 - 600.0, None),
        job("e4", "SUBMITTED", T0 - 30.0, None),
        job("e5", "ARCHIVED_SOMEHOW", T0 - 900.0, None),
        job("e6", "CANCEL_COMPLETED", T0 - 100_000.0, None),
        job("e7", "QUEUED", T0 - 86_400.0 * 3.0, None),
        job("e8", "COMPLETED_WITH_ERRORS", T0 - 500.0, Some(T0 - 100.0)),
    ];
    both.record_listing(
        JobKind::Export,
        &PollPlan::FULL,
        Listed {
            jobs: exports.clone(),
            followed: None,
        },
        Retention::new(3, 3600.0),
        0.25,
        T0,
    );
    let mut later = exports;
    later[2] = job("e3", "COMPLETED", T0 - 600.0, Some(T0 + 50.0));
    later[3] = later[2].clone();
    later[4] = job("e4", "FAILED", T0 - 30.0, Some(T0 + 60.0));
    both.record_listing(
        JobKind::Export,
        &PollPlan::FULL,
        Listed {
            jobs: later,
            followed: None,
        },
        Retention::new(3, 3600.0),
        0.5,
        T0 + 60.0,
    );
    let export = Feed::Jobs(JobKind::Export);
    both.record_failure(
        export,
        &PollError::new(ErrorReason::Throttled, "slow down"),
        2.0,
    );
    both.record_failure(
        export,
        &PollError::new(ErrorReason::Throttled, "slow down"),
        2.5,
    );

    // Imports: running jobs with progress, one without, an unknown status.
    let mut running = job("i1", "IN_PROGRESS", T0 - 1200.0, None);
    running.progress = Some(Box::new(progress(1.0)));
    let mut queued = job("i2", "SUBMITTED", T0 - 60.0, None);
    queued.progress = Some(Box::new(progress(0.0)));
    let imports = vec![
        running,
        queued,
        job("i3", "COMPLETED", T0 - 5000.0, Some(T0 - 4000.0)),
        job("i4", "REVERTING", T0 - 300.0, None),
        job("i5", "FAILED", T0 - 200.0, Some(T0 - 150.25)),
    ];
    both.record_listing(
        JobKind::Import,
        &PollPlan::FULL,
        Listed {
            jobs: imports,
            followed: None,
        },
        Retention::new(3, 3600.0),
        0.125,
        T0 + 10.0,
    );
    both.record_description(
        DatastoreInfo {
            id: "ds-both".into(),
            name: Some("prod \"main\"".into()),
            status: "ACTIVE".into(),
            arn: "arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/ds-both".into(),
            fhir_version: "R4".into(),
        },
        0.05,
        T0 + 5.0,
    );

    // Exports only: one success then a failure (data kept, up = 0); its datastore description
    // never succeeded (access denied).
    export_only.record_listing(
        JobKind::Export,
        &PollPlan::FULL,
        Listed {
            jobs: vec![job("x1", "COMPLETED", T0 - 50.0, Some(T0 - 10.0))],
            followed: None,
        },
        Retention::new(3, 3600.0),
        1.0,
        T0,
    );
    export_only.record_failure(
        export,
        &PollError::new(ErrorReason::Network, "connection reset"),
        5.0,
    );
    export_only.record_failure(
        Feed::Datastore,
        &PollError::new(ErrorReason::AccessDenied, "no DescribeFHIRDatastore"),
        0.5,
    );

    // Imports only: every poll failed; its description says the datastore is being deleted.
    import_only.record_failure(
        Feed::Jobs(JobKind::Import),
        &PollError::new(ErrorReason::NotFound, "gone"),
        0.75,
    );
    import_only.record_description(
        DatastoreInfo {
            id: "ds-import".into(),
            name: None,
            status: "SOMETHING_NEW".into(),
            arn: "arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/ds-import".into(),
            fhir_version: "R4".into(),
        },
        0.02,
        T0 + 1.0,
    );

    // Discovery: the first entry found two datastores, then failed; the second never answered.
    state.record_discovery(0, Ok(2), 0.3, T0 + 2.0);
    state.record_discovery(
        0,
        Err(&PollError::new(ErrorReason::Timeout, "timed out")),
        30.0,
        T0 + 600.0,
    );
    state.reload_status().record(false, T0 + 700.0);

    // The event path: a consumer that receives, with two throttled calls behind it.
    let events = state.enable_events();
    events.up.store(true, Ordering::Relaxed);
    for (counter, value) in [
        (&events.received, 12),
        (&events.redelivered, 1),
        (&events.applied, 9),
        (&events.ignored, 2),
        (&events.malformed, 1),
        (&events.refreshes, 7),
        (&events.unannounced_changes, 3),
    ] {
        counter.store(value, Ordering::Relaxed);
    }
    events.error(ErrorReason::Throttled);
    events.error(ErrorReason::Throttled);
    events.applied_event_at(UNIX_EPOCH + Duration::from_secs_f64(T0 + 800.5));
    events.receive_ended(20.0, Some(T0 + 850.0));
    state
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// The build facts that change with every commit and toolchain, written as placeholders so the
/// golden files stay put: `revision="REVISION"`, `rustc_version="RUSTC"`.
fn without_build_facts(text: &str) -> String {
    let mut text = text.to_owned();
    for (label, placeholder) in [("revision", "REVISION"), ("rustc_version", "RUSTC")] {
        let open = format!("{label}=\"");
        let Some(start) = text.find(&open).map(|at| at + open.len()) else {
            panic!("build_info has no {label} label:\n{text}");
        };
        let end = start + text[start..].find('"').expect("a closing quote");
        assert!(end > start, "build_info's {label} label is empty");
        text.replace_range(start..end, placeholder);
    }
    text
}

/// The `process_*` families' values written as `0.0`, after checking each is a number (positive
/// but for the CPU time, which may still be 0); every other line as it is.
fn masked_process_values(text: &str) -> String {
    let mut seen = 0;
    let masked = text
        .split_inclusive('\n')
        .map(|line| {
            if !line.starts_with("process_") {
                return line.to_owned();
            }
            let (series, value) = line.trim_end().rsplit_once(' ').expect("a sample line");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("{line:?}: not a number: {e}"));
            assert!(
                value > 0.0 || series.starts_with("process_cpu_seconds"),
                "{line:?}"
            );
            seen += 1;
            format!("{series} 0.0\n")
        })
        .collect();
    assert_eq!(seen, 7, "seven process families, one sample each:\n{text}");
    masked
}

fn check(name: &str, actual: &str) {
    let actual = without_build_facts(actual);
    let path = golden(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write the golden file");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b);
        panic!(
            "{name}: output differs from {} at line {line:?}\n--- actual\n{actual}",
            path.display()
        );
    }
}

#[test]
fn metrics_of_a_scripted_state_match_the_golden_files() {
    let state = scripted_state();
    let now = T0 + 900.0;
    let cases = [
        (Format::Prometheus, "metrics.txt"),
        (Format::OpenMetrics, "metrics.openmetrics.txt"),
    ];
    let cache = MetricsCache::new();
    let served = MetricsCache::with_process_metrics();
    for (format, name) in cases {
        let reference = render_uncached(&state, now, format);
        let cached = cache.render(&state, now, format, false).expect("renders");
        assert_eq!(
            String::from_utf8(cached).unwrap(),
            reference,
            "{name} cached"
        );
        // What `/metrics` serves: the same, then the process families (before OpenMetrics' EOF).
        let served = served.render(&state, now, format, false).expect("renders");
        let served = String::from_utf8(served).unwrap();
        let families = reference.strip_suffix("# EOF\n").unwrap_or(&reference);
        assert!(served.starts_with(families), "{name}: served\n{served}");
        check(name, &masked_process_values(&served));
    }
}

/// The golden files as independent parsers read them: every family the exporter declares, with
/// its type and unit, the same samples in both formats, label values unescaped, values as meant.
#[test]
fn the_golden_files_read_the_same_with_independent_parsers() {
    let text = std::fs::read_to_string(golden("metrics.txt")).expect("golden text");
    let openmetrics = std::fs::read_to_string(golden("metrics.openmetrics.txt")).expect("golden");
    let Some(parsed) = parse_independently(&[
        (Format::Prometheus, &text),
        (Format::OpenMetrics, &openmetrics),
    ]) else {
        return;
    };
    let (text, openmetrics) = (&parsed[0], &parsed[1]);
    let mut declared: Vec<&str> = FAMILY_NAMES
        .iter()
        .chain(&PROCESS_FAMILY_NAMES)
        .copied()
        .collect();
    let mut read: Vec<&str> = text.order.iter().map(String::as_str).collect();
    declared.sort_unstable();
    read.sort_unstable();
    assert_eq!(
        read, declared,
        "the families written are the families declared"
    );
    assert_eq!(
        text.order, openmetrics.order,
        "one family order in both formats"
    );
    for (name, family) in &openmetrics.families {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        assert_eq!(family.kind, kind, "{name}");
        let base = name.strip_suffix("_total").unwrap_or(name);
        let unit = ["seconds", "bytes"]
            .into_iter()
            .find(|unit| base.ends_with(&format!("_{unit}")))
            .unwrap_or_default();
        assert_eq!(family.unit, unit, "{name}: OpenMetrics UNIT");
        let in_text = text.family(name);
        assert_eq!(
            (&in_text.kind, &in_text.help, &in_text.samples),
            (&family.kind, &family.help, &family.samples),
            "{name}: the formats differ"
        );
    }
    assert_values(text);
}

/// A few values a user reads, as prometheus_client reads them.
fn assert_values(m: &Parsed) {
    let both = [
        ("datastore_id", "ds-both"),
        ("datastore_name", "prod \"main\""),
    ];
    let with = |extra: (&'static str, &'static str)| [both[0], both[1], extra];
    assert_eq!(
        m.value("healthlake_export_jobs", &with(("status", "FAILED"))),
        2.0
    );
    assert_eq!(
        m.value(
            "healthlake_export_jobs",
            &with(("status", "ARCHIVED_SOMEHOW"))
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "healthlake_export_job_duration_seconds",
            &with(("job_id", "e3"))
        ),
        650.0
    );
    assert_eq!(
        m.value(
            "healthlake_export_job_end_timestamp_seconds",
            &with(("job_id", "e2"))
        ),
        T0 - 3500.5
    );
    assert_eq!(
        m.value(
            "healthlake_import_job_scanned_bytes",
            &with(("job_id", "i2"))
        ),
        0.0
    );
    assert_eq!(
        m.value(
            "healthlake_datastore_status",
            &[("datastore_id", "ds-import"), ("status", "SOMETHING_NEW")]
        ),
        1.0
    );
    assert_eq!(
        m.value("healthlake_discovery_datastores", &[("discovery", "0")]),
        2.0
    );
    assert_eq!(m.value("healthlake_events_received_total", &[]), 12.0);
    assert_eq!(
        m.value(
            "healthlake_events_newest_applied_event_timestamp_seconds",
            &[]
        ),
        T0 + 800.5
    );
    assert_eq!(
        m.value("healthlake_exporter_config_last_reload_successful", &[]),
        0.0
    );
    assert!(m
        .family("healthlake_exporter_tls_certificate_last_load_successful")
        .samples
        .is_empty());
    assert_eq!(m.family("process_cpu_seconds_total").samples.len(), 1);
    assert_feed_values(m);
}

/// The feeds' health as prometheus_client reads it: one family per figure, a `feed` label.
fn assert_feed_values(m: &Parsed) {
    let (up, errors) = ("healthlake_feed_up", "healthlake_feed_errors_total");
    let export_only = ("datastore_id", "ds-export");
    let both = ("datastore_id", "ds-both");
    let feed = |name| ("feed", name);
    assert_eq!(m.value(up, &[export_only, feed("export")]), 0.0);
    assert_eq!(
        m.value(
            errors,
            &[export_only, feed("export"), ("reason", "network")]
        ),
        1.0
    );
    assert_eq!(m.value(up, &[both, feed("import")]), 1.0);
    assert_eq!(
        m.value(
            "healthlake_feed_last_success_timestamp_seconds",
            &[both, feed("import")]
        ),
        T0 + 10.0
    );
    assert_eq!(
        m.value(
            "healthlake_feed_last_poll_duration_seconds",
            &[both, feed("export")]
        ),
        2.5
    );
    assert_eq!(m.value(up, &[export_only, feed("describe")]), 0.0);
    let never = [("datastore_id", "ds-never"), feed("describe")];
    assert!(
        m.family(up)
            .samples
            .iter()
            .all(|s| !never
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))),
        "a description's up appears with its first call"
    );
    assert_eq!(
        m.value(
            errors,
            &[("discovery", "0"), feed("discovery"), ("reason", "timeout")]
        ),
        1.0
    );
    assert_eq!(m.value(up, &[("discovery", "1"), feed("discovery")]), 0.0);
    assert_eq!(
        m.value(errors, &[feed("events"), ("reason", "throttled")]),
        2.0
    );
    assert_eq!(
        m.value(
            "healthlake_feed_last_success_timestamp_seconds",
            &[feed("events")]
        ),
        T0 + 850.0
    );
    // Every feed's up, errors by every reason: one query or alert for all of them.
    let feeds: std::collections::BTreeSet<&str> = m
        .family(up)
        .samples
        .iter()
        .map(|s| s.labels["feed"].as_str())
        .collect();
    assert_eq!(
        feeds.into_iter().collect::<Vec<_>>(),
        ["describe", "discovery", "events", "export", "import"]
    );
    // ds-both: 3 feeds, the three others 2 each, two discovery entries, the event consumer.
    assert_eq!(
        m.family(errors).samples.len(),
        12 * 11,
        "12 feeds × 11 reasons"
    );
}
