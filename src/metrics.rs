//! The metric families and how State is written out in the exposition formats.
//!
//! Metrics are a pure view of State: nothing here talks to AWS or invents values, so the output can
//! be tested without HTTP or AWS. Values that depend on the scrape time (durations of running jobs,
//! the oldest running job's age) are computed from the scrape's `now`.
//!
//! Two paths write the same bytes:
//! - [`render_uncached`] encodes all of State with prometheus-client on every call. It is the
//!   reference: simple, obviously right, and what the cache is tested against.
//! - [`MetricsCache`] is what `/metrics` serves. A scrape of 50 datastores × 100 job series is
//!   ~7,000 series and ~1.5 MB; encoding them all each time costs milliseconds of CPU per scrape,
//!   while State changes once per poll interval. So each datastore's samples are encoded once per
//!   change of its record ([`Record::version`]) and kept; a scrape only concatenates them and
//!   formats the few values that depend on `now`. The exposition requires each family's samples to
//!   be contiguous, so the cache holds, per datastore and format, one piece per family; a scrape
//!   writes, for each family, its header and then that family's piece of every datastore in order.
//!
//! The cached pieces are produced by prometheus-client itself, encoding a view of one datastore,
//! then split into families: escaping, float formatting, `_total`/`UNIT` rules stay the library's,
//! and a test proves the result byte-identical to [`render_uncached`]. A sample whose value depends
//! on `now` is cut at its value: the piece keeps the text before it plus the submit time, and the
//! scrape writes `now − submitted` with the library's float formatter (`dtoa`).
//!
//! gzip: compressing ~1.5 MB on every scrape would cost more than everything else together. Each
//! static piece is instead compressed once, on the first gzip scrape after it changed, into a raw
//! DEFLATE stream ended by a sync flush (byte-aligned, not final). Such streams concatenate into one
//! valid DEFLATE stream (as pigz does), so a gzip scrape is: a gzip header, the cached compressed
//! pieces with the few dynamic values between them as stored (uncompressed) blocks, a final empty
//! block, and the CRC-32 of the uncompressed bytes. The result is one ordinary gzip member that any
//! decoder reads, not a multi-member stream that some (curl) stop reading after the first member.
//!
//! Memory: once a gzip scrape needed a datastore's pieces, only their compressed form is kept, with
//! each piece's CRC-32 and length; the trailer's CRC is combined from those (one multiplication
//! modulo the CRC polynomial per piece, as zlib's `crc32_combine`) and the dynamic values' bytes,
//! without the text. (At 1,000 datastores × 100 job series: 24 MB of text, ~4 MB compressed.) Text
//! is kept only for formats that plain scrapes alone asked for; a plain scrape of a format kept
//! compressed (rare: probes, curl) is answered by [`render_uncached`].

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use flate2::{Compress, Compression, FlushCompress};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::config::DATASTORE_STATUSES;
use crate::healthlake::{api_usage, DatastoreInfo, ErrorReason, OPERATIONS};
use crate::job::{ImportProgress, JobKind, JobStatus};
use crate::state::{Datastore, DiscoveryStatus, Health, JobTrack, JobsView, Record, State};

/// The exposition format a scraper asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The classic Prometheus text format (0.0.4): the default.
    Prometheus,
    /// OpenMetrics 1.0 text, when the `Accept` header asks for it (Prometheus does by default).
    OpenMetrics,
}

impl Format {
    /// Picks the format from an `Accept` header: OpenMetrics when it is listed, else Prometheus text.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    fn index(self) -> usize {
        match self {
            Format::Prometheus => 0,
            Format::OpenMetrics => 1,
        }
    }
}

/// Every metric family name this exporter can emit (as scraped, with suffixes).
pub const FAMILY_NAMES: [&str; 35] = [
    "healthlake_export_jobs",
    "healthlake_export_job_duration_seconds",
    "healthlake_export_job_end_timestamp_seconds",
    "healthlake_export_jobs_finished_total",
    "healthlake_export_oldest_active_job_age_seconds",
    "healthlake_datastore_up",
    "healthlake_poll_duration_seconds",
    "healthlake_last_successful_poll_timestamp_seconds",
    "healthlake_poll_errors_total",
    "healthlake_import_jobs",
    "healthlake_import_job_duration_seconds",
    "healthlake_import_job_end_timestamp_seconds",
    "healthlake_import_jobs_finished_total",
    "healthlake_import_oldest_active_job_age_seconds",
    "healthlake_import_up",
    "healthlake_import_poll_errors_total",
    "healthlake_import_job_scanned_files",
    "healthlake_import_job_scanned_bytes",
    "healthlake_import_job_imported_files",
    "healthlake_import_job_scanned_resources",
    "healthlake_import_job_imported_resources",
    "healthlake_import_job_failed_resources",
    "healthlake_import_job_failed_files",
    "healthlake_datastore_status",
    "healthlake_datastore_info",
    "healthlake_datastore_describe_up",
    "healthlake_datastore_describe_errors_total",
    "healthlake_discovery_up",
    "healthlake_discovery_datastores",
    "healthlake_discovery_errors_total",
    "healthlake_api_requests_total",
    "healthlake_api_budget_wait_seconds_total",
    "healthlake_exporter_build_info",
    "healthlake_exporter_config_last_reload_successful",
    "healthlake_exporter_config_last_reload_success_timestamp_seconds",
];

/// The families with samples per datastore, written first: exports (9), imports (7 + 7 progress),
/// the datastore itself (4).
const DATASTORE_FAMILIES: usize = 27;

const SOURCE: &str = "from the exporter's own polling of HealthLake ListFHIRExportJobs";
const IMPORT_SOURCE: &str = "from the exporter's own polling of HealthLake ListFHIRImportJobs";

/// The import progress families: name (unit appended), what it counts, unit, value.
type ProgressValue = fn(&ImportProgress) -> f64;
const PROGRESS: [(&str, &str, Option<Unit>, ProgressValue); 7] = [
    (
        "healthlake_import_job_scanned_files",
        "Files scanned",
        None,
        |p| p.files_scanned,
    ),
    (
        "healthlake_import_job_scanned",
        "Size of the files scanned (from TotalSizeOfScannedFilesInMB, 1 MB = 10^6 bytes)",
        Some(Unit::Bytes),
        |p| p.scanned_bytes,
    ),
    (
        "healthlake_import_job_imported_files",
        "Files imported",
        None,
        |p| p.files_imported,
    ),
    (
        "healthlake_import_job_scanned_resources",
        "FHIR resources scanned",
        None,
        |p| p.resources_scanned,
    ),
    (
        "healthlake_import_job_imported_resources",
        "FHIR resources imported",
        None,
        |p| p.resources_imported,
    ),
    (
        "healthlake_import_job_failed_resources",
        "FHIR resources that failed because of their input (customer error)",
        None,
        |p| p.resources_failed,
    ),
    (
        "healthlake_import_job_failed_files",
        "Files that could not be read because of their input (customer error)",
        None,
        |p| p.files_failed,
    ),
];

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Every reason of a feed's error counter, 0 included.
fn errors(m: &mut Sink<'_, '_>, ds: Labels<'_, 2>, health: &Health) -> Fmt {
    for reason in ErrorReason::ALL {
        let count = health.errors.get(&reason).copied().unwrap_or(0);
        m.counter(&(ds, [("reason", reason.as_str())]), count)?;
    }
    Ok(())
}

/// Encodes all of `state` as of `now` (Unix seconds) with prometheus-client, from scratch.
///
/// The reference implementation: `/metrics` serves [`MetricsCache::render`], which must produce
/// the same bytes.
pub fn render_uncached(state: &Arc<State>, now: f64, format: Format) -> String {
    let collector = StateCollector {
        source: Source::State(Arc::clone(state)),
        now,
        datastore_families: true,
        tail: Some(Tail::of(state)),
        marks: None,
    };
    // Writing to a String cannot fail, and our collector returns only the writer's errors.
    let result = encode(collector, format);
    debug_assert!(result.is_ok());
    result.unwrap_or_default()
}

/// Why the cache could not render a scrape (a bug, not an input problem): the caller falls back
/// to [`render_uncached`].
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("encoding metrics failed: {0}")]
    Encode(#[from] std::fmt::Error),
    #[error("the encoder's output did not have the expected shape: {0}")]
    Shape(&'static str),
}

// ---- the families, shared by both paths ----

/// Label sets are arrays of (name, value) pairs: borrowed, so encoding copies no strings.
type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

type Fmt = Result<(), std::fmt::Error>;

/// What the per-datastore families read of one job track, however it is held.
#[derive(Clone, Copy)]
struct TrackView<'a> {
    jobs: Option<&'a JobsView>,
    finished: &'a BTreeMap<JobStatus, u64>,
    health: &'a Health,
}

/// What the per-datastore families read: one datastore's record, however it is held. A part the
/// configuration does not poll is `None`, and its families have no sample for the datastore.
struct View<'a> {
    exports: Option<TrackView<'a>>,
    imports: Option<TrackView<'a>>,
    datastore: Option<(Option<&'a DatastoreInfo>, &'a Health)>,
}

impl<'a> View<'a> {
    fn of(record: &'a Record) -> View<'a> {
        View {
            exports: record.exports.as_ref().map(TrackView::of),
            imports: record.imports.as_ref().map(TrackView::of),
            datastore: record
                .datastore
                .as_ref()
                .map(|d| (d.info.as_ref(), &d.health)),
        }
    }

    fn track(&self, kind: JobKind) -> Option<TrackView<'a>> {
        match kind {
            JobKind::Export => self.exports,
            JobKind::Import => self.imports,
        }
    }
}

impl<'a> TrackView<'a> {
    fn of(track: &'a JobTrack) -> TrackView<'a> {
        TrackView {
            jobs: track.jobs.as_ref(),
            finished: &track.finished,
            health: &track.health,
        }
    }
}

/// A copy of what the metrics show of one datastore, taken under its record lock and encoded after
/// the lock is released, so a poll never waits on encoding.
#[derive(Debug)]
struct Snapshot {
    id: String,
    name: String,
    version: u64,
    exports: Option<TrackCopy>,
    imports: Option<TrackCopy>,
    datastore: Option<(Option<DatastoreInfo>, Health)>,
}

#[derive(Debug)]
struct TrackCopy {
    jobs: Option<JobsView>,
    finished: BTreeMap<JobStatus, u64>,
    health: Health,
}

impl TrackCopy {
    fn of(view: TrackView<'_>) -> TrackCopy {
        TrackCopy {
            jobs: view.jobs.cloned(),
            finished: view.finished.clone(),
            health: view.health.clone(),
        }
    }

    fn view(&self) -> TrackView<'_> {
        TrackView {
            jobs: self.jobs.as_ref(),
            finished: &self.finished,
            health: &self.health,
        }
    }
}

impl Snapshot {
    fn take(ds: &Datastore) -> Snapshot {
        let record = ds.record();
        let view = View::of(&record);
        Snapshot {
            id: ds.id.clone(),
            name: ds.name.clone(),
            version: record.version,
            exports: view.exports.map(TrackCopy::of),
            imports: view.imports.map(TrackCopy::of),
            datastore: view
                .datastore
                .map(|(info, health)| (info.cloned(), health.clone())),
        }
    }
}

/// Where the per-datastore families get their datastores from.
#[derive(Debug)]
enum Source {
    /// Every datastore of State, each record locked briefly per family (the reference path).
    State(Arc<State>),
    /// One datastore, copied (a cached piece).
    One(Box<Snapshot>),
    /// None: the families' headers only.
    Nothing,
}

impl Source {
    fn each(&self, f: &mut dyn FnMut(Labels<'_, 2>, &View<'_>) -> Fmt) -> Fmt {
        match self {
            Source::State(state) => {
                for ds in state.datastores().iter() {
                    let record = ds.record();
                    f(
                        [("datastore_id", &ds.id), ("datastore_name", &ds.name)],
                        &View::of(&record),
                    )?;
                }
                Ok(())
            }
            Source::One(snapshot) => {
                let view = View {
                    exports: snapshot.exports.as_ref().map(TrackCopy::view),
                    imports: snapshot.imports.as_ref().map(TrackCopy::view),
                    datastore: snapshot
                        .datastore
                        .as_ref()
                        .map(|(info, health)| (info.as_ref(), health)),
                };
                f(
                    [
                        ("datastore_id", &snapshot.id),
                        ("datastore_name", &snapshot.name),
                    ],
                    &view,
                )
            }
            Source::Nothing => Ok(()),
        }
    }
}

/// Per family, per sample in order: `Some(submitted)` when the value is `now − submitted` (it
/// depends on the scrape time), `None` when it does not.
type Marks = Vec<Vec<Option<f64>>>;

/// Writes samples of one family, noting which ones depend on `now` when asked to.
struct Sink<'m, 'e> {
    metric: &'m mut MetricEncoder<'e>,
    marks: Option<&'m mut Vec<Option<f64>>>,
}

impl Sink<'_, '_> {
    fn sample<L: EncodeLabelSet>(&mut self, labels: &L, value: f64, since: Option<f64>) -> Fmt {
        self.metric.encode_family(labels)?.encode_gauge(&value)?;
        if let Some(marks) = &mut self.marks {
            marks.push(since);
        }
        Ok(())
    }

    fn gauge<L: EncodeLabelSet>(&mut self, labels: &L, value: f64) -> Fmt {
        self.sample(labels, value, None)
    }

    /// A gauge whose value is `now − since` (`value`, computed by the caller for this `now`).
    fn elapsed<L: EncodeLabelSet>(&mut self, labels: &L, since: f64, value: f64) -> Fmt {
        self.sample(labels, value, Some(since))
    }

    fn counter<L: EncodeLabelSet>(&mut self, labels: &L, value: u64) -> Fmt {
        self.metric
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, f64>(&value, None)?;
        if let Some(marks) = &mut self.marks {
            marks.push(None);
        }
        Ok(())
    }
}

/// The time-dependent value of a sample marked with `since`, exactly as the families compute it.
fn elapsed_value(now: f64, since: f64) -> f64 {
    (now - since).max(0.0)
}

/// The exporter-wide families' values: discovery and the last config reload.
#[derive(Debug)]
struct Tail {
    discovery: Vec<DiscoveryStatus>,
    reload_successful: bool,
    reload_success_time: f64,
    /// Per operation (in [`OPERATIONS`] order), calls by result: "success", then every reason.
    api_requests: Vec<[u64; 1 + ErrorReason::ALL.len()]>,
    api_wait_seconds: f64,
}

impl Tail {
    fn of(state: &State) -> Tail {
        let reload = state.reload_status();
        let usage = api_usage();
        Tail {
            discovery: state.discovery(),
            reload_successful: reload.last_successful(),
            reload_success_time: reload.last_success_time(),
            api_requests: OPERATIONS
                .iter()
                .map(|op| {
                    let mut row = [0; 1 + ErrorReason::ALL.len()];
                    row[0] = usage.requests(op, "success");
                    for (n, reason) in ErrorReason::ALL.iter().enumerate() {
                        row[n + 1] = usage.requests(op, reason.as_str());
                    }
                    row
                })
                .collect(),
            api_wait_seconds: usage.wait_seconds(),
        }
    }
}

/// Encodes families of a [`Source`] (and the exporter-wide `tail`) for one encoding pass.
#[derive(Debug)]
struct StateCollector {
    source: Source,
    /// Fixed per pass so every series agrees on the time.
    now: f64,
    /// Write the eight per-datastore families (headers even with no datastore).
    datastore_families: bool,
    /// Write the exporter-wide families: the last reload's success and time, and build info.
    tail: Option<Tail>,
    /// Where to note which samples depend on `now` (cached pieces only).
    marks: Option<Arc<Mutex<Marks>>>,
}

impl StateCollector {
    /// Writes one family: a descriptor, then each datastore's samples via `samples`.
    fn family(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        metric_type: MetricType,
        mut samples: impl FnMut(&mut Sink<'_, '_>, Labels<'_, 2>, &View<'_>) -> Fmt,
    ) -> Fmt {
        let mut metric = encoder.encode_descriptor(name, help, unit, metric_type)?;
        let mut marks = Vec::new();
        let mut sink = Sink {
            metric: &mut metric,
            marks: self.marks.is_some().then_some(&mut marks),
        };
        self.source
            .each(&mut |labels, view| samples(&mut sink, labels, view))?;
        if let Some(all) = &self.marks {
            all.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(marks);
        }
        Ok(())
    }

    fn datastore_families(&self, e: &mut DescriptorEncoder) -> Fmt {
        self.job_families(e, JobKind::Export)?;

        self.family(
            e,
            "healthlake_datastore_up",
            "1 if the exporter's last poll of this datastore's export jobs succeeded, else 0.",
            None,
            MetricType::Gauge,
            |m, ds, view| match view.exports {
                Some(t) => m.gauge(&ds, if t.health.up { 1.0 } else { 0.0 }),
                None => Ok(()),
            },
        )?;

        self.family(
            e,
            "healthlake_poll_duration",
            "Wall time of the exporter's last poll of this datastore's export jobs (all pages, retries included).",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            |m, ds, view| match view.exports.and_then(|t| t.health.last_poll_seconds) {
                Some(seconds) => m.gauge(&ds, seconds),
                None => Ok(()),
            },
        )?;

        self.family(
            e,
            "healthlake_last_successful_poll_timestamp",
            "Unix time at which the exporter's last successful poll of this datastore's export jobs ended.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            |m, ds, view| match view.exports.and_then(|t| t.health.last_success) {
                Some(at) => m.gauge(&ds, at),
                None => Ok(()),
            },
        )?;

        self.family(
            e,
            "healthlake_poll_errors",
            "Failed polls of this datastore's export jobs by reason (one per poll, not per retry).",
            None,
            MetricType::Counter,
            |m, ds, view| match view.exports {
                Some(t) => errors(m, ds, t.health),
                None => Ok(()),
            },
        )?;

        self.job_families(e, JobKind::Import)?;

        self.family(
            e,
            "healthlake_import_up",
            "1 if the exporter's last poll of this datastore's import jobs succeeded, else 0 (only when import jobs are polled).",
            None,
            MetricType::Gauge,
            |m, ds, view| match view.imports {
                Some(t) => m.gauge(&ds, if t.health.up { 1.0 } else { 0.0 }),
                None => Ok(()),
            },
        )?;

        self.family(
            e,
            "healthlake_import_poll_errors",
            "Failed polls of this datastore's import jobs by reason (one per poll, not per retry).",
            None,
            MetricType::Counter,
            |m, ds, view| match view.imports {
                Some(t) => errors(m, ds, t.health),
                None => Ok(()),
            },
        )?;

        for (name, help, unit, value) in PROGRESS {
            self.family(
                e,
                name,
                &format!("{help} of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); {IMPORT_SOURCE}."),
                unit.as_ref(),
                MetricType::Gauge,
                |m, ds, view| {
                    let Some(jobs) = view.imports.and_then(|t| t.jobs) else {
                        return Ok(());
                    };
                    for job in jobs.recent.iter().filter(|j| j.is_active()) {
                        let Some(progress) = &job.progress else { continue };
                        let labels = [
                            ("job_id", job.id.as_str()),
                            ("job_name", job.name.as_deref().unwrap_or("")),
                        ];
                        m.gauge(&(ds, labels), value(progress))?;
                    }
                    Ok(())
                },
            )?;
        }

        self.family(
            e,
            "healthlake_datastore_status",
            "1 for the datastore's status as DescribeFHIRDatastore last reported it, 0 for every other status (only with polling.datastore_health).",
            None,
            MetricType::Gauge,
            |m, ds, view| {
                let Some((Some(info), _)) = view.datastore else {
                    return Ok(());
                };
                for status in DATASTORE_STATUSES {
                    let value = if info.status == status { 1.0 } else { 0.0 };
                    m.gauge(&(ds, [("status", status)]), value)?;
                }
                if !DATASTORE_STATUSES.contains(&info.status.as_str()) {
                    m.gauge(&(ds, [("status", info.status.as_str())]), 1.0)?;
                }
                Ok(())
            },
        )?;

        self.family(
            e,
            "healthlake_datastore_info",
            "Always 1; the labels say the datastore's FHIR version and ARN (only with polling.datastore_health).",
            None,
            MetricType::Gauge,
            |m, ds, view| {
                let Some((Some(info), _)) = view.datastore else {
                    return Ok(());
                };
                let labels = [
                    ("fhir_version", info.fhir_version.as_str()),
                    ("arn", info.arn.as_str()),
                ];
                m.gauge(&(ds, labels), 1.0)
            },
        )?;

        self.family(
            e,
            "healthlake_datastore_describe_up",
            "1 if the exporter's last DescribeFHIRDatastore of this datastore succeeded, else 0.",
            None,
            MetricType::Gauge,
            |m, ds, view| match view.datastore {
                Some((_, health)) if health.attempts > 0 => {
                    m.gauge(&ds, if health.up { 1.0 } else { 0.0 })
                }
                _ => Ok(()),
            },
        )?;

        self.family(
            e,
            "healthlake_datastore_describe_errors",
            "Failed DescribeFHIRDatastore calls for this datastore by reason.",
            None,
            MetricType::Counter,
            |m, ds, view| match view.datastore {
                Some((_, health)) => errors(m, ds, health),
                None => Ok(()),
            },
        )
    }

    /// The four job families of `kind`: counts, durations, finished counter, oldest active age.
    fn job_families(&self, e: &mut DescriptorEncoder, kind: JobKind) -> Fmt {
        let now = self.now;
        let (word, source) = match kind {
            JobKind::Export => ("export", SOURCE),
            JobKind::Import => ("import", IMPORT_SOURCE),
        };

        self.family(
            e,
            &format!("healthlake_{word}_jobs"),
            &format!(
                "{} jobs in each status, as last listed; {source}.",
                capitalized(word)
            ),
            None,
            MetricType::Gauge,
            |m, ds, view| {
                let Some(jobs) = view.track(kind).and_then(|t| t.jobs) else {
                    return Ok(());
                };
                for (status, count) in &jobs.counts {
                    let status = [("status", status.as_str())];
                    m.gauge(&(ds, status), *count as f64)?;
                }
                Ok(())
            },
        )?;

        self.family(
            e,
            &format!("healthlake_{word}_job_duration"),
            &format!(
                "EndTime - SubmitTime of ended {word} jobs; time since SubmitTime of unfinished ones, as of the scrape. Only the most recently submitted jobs (polling.job_series_limit); {source}."
            ),
            Some(&Unit::Seconds),
            MetricType::Gauge,
            |m, ds, view| {
                let Some(jobs) = view.track(kind).and_then(|t| t.jobs) else {
                    return Ok(());
                };
                for job in &jobs.recent {
                    let Some(seconds) = job.duration_seconds(now) else { continue };
                    let job_labels = [
                        ("job_id", job.id.as_str()),
                        ("job_name", job.name.as_deref().unwrap_or("")),
                        ("status", job.status.as_str()),
                    ];
                    // A job without an end time that has a duration is running: its value is
                    // the time since it was submitted (`Job::duration_seconds`).
                    if job.ended.is_none() {
                        m.elapsed(&(ds, job_labels), job.submitted, seconds)?;
                    } else {
                        m.gauge(&(ds, job_labels), seconds)?;
                    }
                }
                Ok(())
            },
        )?;

        self.family(
            e,
            &format!("healthlake_{word}_job_end_timestamp"),
            &format!(
                "EndTime (Unix seconds) of each {word} job that ended FAILED, COMPLETED_WITH_ERRORS or CANCEL_FAILED within polling.ended_job_window (without an EndTime: when the exporter first saw it ended); {source}."
            ),
            Some(&Unit::Seconds),
            MetricType::Gauge,
            |m, ds, view| {
                let Some(jobs) = view.track(kind).and_then(|t| t.jobs) else {
                    return Ok(());
                };
                for job in &jobs.ended {
                    let job_labels = [
                        ("job_id", job.id.as_str()),
                        ("job_name", job.name.as_deref().unwrap_or("")),
                        ("status", job.status.as_str()),
                    ];
                    m.gauge(&(ds, job_labels), job.ended)?;
                }
                Ok(())
            },
        )?;

        self.family(
            e,
            &format!("healthlake_{word}_jobs_finished"),
            &format!(
                "{} jobs seen entering a terminal status while the exporter runs, each job id at most once per status (jobs already finished at its first poll are not counted); {source}.",
                capitalized(word)
            ),
            None,
            MetricType::Counter,
            |m, ds, view| {
                let Some(track) = view.track(kind) else {
                    return Ok(());
                };
                for (status, count) in track.finished {
                    m.counter(&(ds, [("status", status.as_str())]), *count)?;
                }
                Ok(())
            },
        )?;

        self.family(
            e,
            &format!("healthlake_{word}_oldest_active_job_age"),
            &format!("Seconds since the oldest unfinished {word} job was submitted, as of the scrape; 0 when none is running; {source}."),
            Some(&Unit::Seconds),
            MetricType::Gauge,
            |m, ds, view| {
                let Some(jobs) = view.track(kind).and_then(|t| t.jobs) else {
                    return Ok(());
                };
                match jobs.oldest_active_submitted {
                    Some(submitted) => m.elapsed(&ds, submitted, elapsed_value(now, submitted)),
                    None => m.gauge(&ds, 0.0),
                }
            },
        )
    }

    fn tail_families(e: &mut DescriptorEncoder, tail: &Tail) -> Fmt {
        let mut metric = e.encode_descriptor(
            "healthlake_discovery_up",
            "1 if the last ListFHIRDatastores of this [[discovery]] entry succeeded, else 0.",
            None,
            MetricType::Gauge,
        )?;
        let labels = |d: &DiscoveryStatus| (d.index.to_string(), d.region.clone());
        for d in &tail.discovery {
            let (index, region) = labels(d);
            metric
                .encode_family(&[("discovery", index.as_str()), ("region", region.as_str())])?
                .encode_gauge(&if d.health.up { 1.0 } else { 0.0 })?;
        }
        let mut metric = e.encode_descriptor(
            "healthlake_discovery_datastores",
            "Datastores the last successful ListFHIRDatastores of this [[discovery]] entry found.",
            None,
            MetricType::Gauge,
        )?;
        for d in &tail.discovery {
            let (index, region) = labels(d);
            metric
                .encode_family(&[("discovery", index.as_str()), ("region", region.as_str())])?
                .encode_gauge(&(d.found as f64))?;
        }
        let mut metric = e.encode_descriptor(
            "healthlake_discovery_errors",
            "Failed ListFHIRDatastores calls of this [[discovery]] entry by reason.",
            None,
            MetricType::Counter,
        )?;
        for d in &tail.discovery {
            let (index, region) = labels(d);
            for reason in ErrorReason::ALL {
                let count = d.health.errors.get(&reason).copied().unwrap_or(0);
                metric
                    .encode_family(&[
                        ("discovery", index.as_str()),
                        ("region", region.as_str()),
                        ("reason", reason.as_str()),
                    ])?
                    .encode_counter::<NoLabelSet, _, f64>(&count, None)?;
            }
        }
        let (successful, success_time) = (tail.reload_successful, tail.reload_success_time);
        let mut metric = e.encode_descriptor(
            "healthlake_exporter_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded, 0 if it failed and the previous configuration is still in use.",
            None,
            MetricType::Gauge,
        )?;
        metric.encode_gauge(&if successful { 1.0 } else { 0.0 })?;
        let mut metric = e.encode_descriptor(
            "healthlake_exporter_config_last_reload_success_timestamp",
            "Unix time of the last successful configuration (re)load.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        metric.encode_gauge(&success_time)?;

        let mut metric = e.encode_descriptor(
            "healthlake_api_requests",
            "HealthLake API calls the exporter made, by operation and result (success or the error reason; one per call, SDK retries inside a call included in it). They share the account's quota with your own tools.",
            None,
            MetricType::Counter,
        )?;
        for (operation, row) in OPERATIONS.iter().zip(&tail.api_requests) {
            let results = std::iter::once("success").chain(ErrorReason::ALL.iter().map(|r| r.as_str()));
            for (result, count) in results.zip(row) {
                metric
                    .encode_family(&[("operation", *operation), ("result", result)])?
                    .encode_counter::<NoLabelSet, _, f64>(count, None)?;
            }
        }
        let mut metric = e.encode_descriptor(
            "healthlake_api_budget_wait",
            "Seconds API calls waited for a slot of the request budget (polling.max_requests_per_second), all accounts and regions together.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        metric.encode_counter::<NoLabelSet, _, f64>(&tail.api_wait_seconds, None)?;

        let mut build = e.encode_descriptor(
            "healthlake_exporter_build_info",
            "Always 1; the version label says which healthlake-exporter is running.",
            None,
            MetricType::Gauge,
        )?;
        build
            .encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?
            .encode_gauge(&1.0)
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        if self.datastore_families {
            self.datastore_families(&mut encoder)?;
        }
        if let Some(tail) = &self.tail {
            Self::tail_families(&mut encoder, tail)?;
        }
        Ok(())
    }
}

/// One encoding pass of `collector` in `format`.
fn encode(collector: StateCollector, format: Format) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::with_capacity(16 * 1024);
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

const EOF: &str = "# EOF\n";

/// One family's header lines and sample lines, as byte ranges of an encoder's output.
type FamilyLines = (Range<usize>, Vec<Range<usize>>);

/// An encoder's output split into families: each family's header lines (`# HELP`, `# TYPE`,
/// `# UNIT`) and its sample lines, as byte ranges (newlines included). OpenMetrics' `# EOF` is
/// dropped. Sample lines never start with `#` (they start with the metric name) and never span
/// lines (label values escape newlines).
fn split_families(text: &str) -> Result<Vec<FamilyLines>, RenderError> {
    let mut families: Vec<FamilyLines> = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let range = at..at + line.len();
        at = range.end;
        if line == EOF {
            continue;
        }
        if line.starts_with("# HELP ") {
            families.push((range, Vec::new()));
        } else if let Some((header, samples)) = families.last_mut() {
            if line.starts_with('#') {
                if !samples.is_empty() {
                    return Err(RenderError::Shape("a descriptor line after samples"));
                }
                header.end = range.end;
            } else {
                samples.push(range);
            }
        } else {
            return Err(RenderError::Shape("output does not start with # HELP"));
        }
    }
    Ok(families)
}

// ---- the cache ----

/// Where a scrape's bytes for one datastore come from, kept until its record changes.
///
/// Holds the datastores seen by the last scrape, and for each the encoded pieces of the formats
/// scraped since its last change. Entries of datastores no longer in State are dropped when the
/// datastore list changes (a reload). One per server, shared by its connections.
#[derive(Debug, Default)]
pub struct MetricsCache {
    inner: Mutex<Inner>,
    /// The last body length per format and encoding: the next body's capacity.
    last_len: [[AtomicUsize; 2]; 2],
    /// Datastore pieces encoded since the start (one per datastore, format and change).
    encodes: AtomicU64,
}

/// What a [`MetricsCache`] holds and has done, for tests and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// Datastores with an entry: those of the datastore list last scraped.
    pub datastores: usize,
    /// Datastore pieces encoded since the start (one per datastore, format and change).
    pub encodes: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// The datastore list the entries were built for (compared by pointer).
    list: Option<Arc<[Arc<Datastore>]>>,
    /// By the address of the `Arc<Datastore>`, which the entry holds so the address stays unique.
    entries: HashMap<usize, Entry>,
    /// Per format: the per-datastore families' headers, written once.
    headers: [Option<Arc<[Piece; DATASTORE_FAMILIES]>>; 2],
    /// Per format: the exporter-wide families, for the reload status they were encoded with.
    tail: [Option<(TailKey, Arc<Piece>)>; 2],
}

type TailKey = (bool, u64, u64, u64);

#[derive(Debug)]
struct Entry {
    _datastore: Arc<Datastore>,
    formats: [Option<Arc<Encoded>>; 2],
}

/// Static text, its compressed form and its CRC-32.
#[derive(Debug)]
struct Piece {
    text: String,
    deflated: Vec<u8>,
    crc: CrcPiece,
}

impl Piece {
    fn new(text: String, compress: &mut Option<Compress>) -> Piece {
        let deflated = deflate(compressor(compress), text.as_bytes());
        let crc = CrcPiece::of(text.as_bytes());
        Piece {
            text,
            deflated,
            crc,
        }
    }
}

/// One datastore's samples of the per-datastore families in one format, as of one record version.
#[derive(Debug)]
struct Encoded {
    version: u64,
    families: [Family; DATASTORE_FAMILIES],
    /// Every family's segments, family after family.
    segments: Vec<Segment>,
    body: Body,
}

/// The segments' static bytes: the sample lines without the values that depend on `now`.
#[derive(Debug)]
enum Body {
    /// As text, while only plain scrapes asked for this format.
    Text(String),
    /// Only compressed, each segment by itself (see [`deflate`]), once a gzip scrape needed it.
    /// Plain scrapes are rare (probes, curl), gzip ones the norm (Prometheus): keeping the text
    /// too would more than double the cache. A plain scrape then encodes State anew.
    Deflated(Vec<u8>),
}

#[derive(Clone, Debug, Default)]
struct Family {
    /// This family's part of [`Encoded::segments`].
    segments: Range<u32>,
    /// A keyed hash of the family's static text and the times of its dynamic samples: compressed
    /// segments of a family whose hash (and shape) did not change are carried over to the next
    /// version of the datastore instead of being compressed again.
    hash: u64,
}

/// Static text, then, for a sample whose value depends on `now`, that value and `\n`.
#[derive(Clone, Copy, Debug)]
struct Segment {
    /// Where the static text ends in [`Body::Text`] (it starts where the previous segment ends).
    text_end: u32,
    /// Where its compressed form ends in [`Body::Deflated`] (likewise).
    deflated_end: u32,
    /// The CRC-32 of the static text: a gzip scrape extends its checksum without the text.
    crc: CrcPiece,
    since: Option<f64>,
}

/// The keys of the family hashes: random per process, so no label value can be chosen to collide.
fn family_hasher() -> impl Hasher {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new).build_hasher()
}

fn offset(n: usize) -> Result<u32, RenderError> {
    u32::try_from(n).map_err(|_| RenderError::Shape("a datastore's encoding over 4 GiB"))
}

impl Encoded {
    /// Encodes one datastore with prometheus-client and cuts the output into families and
    /// segments. Keeps it compressed when `deflated`, reusing the compressed segments of families
    /// equal to `previous`'s.
    fn new(
        snapshot: Snapshot,
        now: f64,
        format: Format,
        previous: Option<&Encoded>,
        deflated: bool,
        compress: &mut Option<Compress>,
    ) -> Result<Encoded, RenderError> {
        let version = snapshot.version;
        let marks = Arc::new(Mutex::new(Marks::new()));
        let out = encode(
            StateCollector {
                source: Source::One(Box::new(snapshot)),
                now,
                datastore_families: true,
                tail: None,
                marks: Some(Arc::clone(&marks)),
            },
            format,
        )?;
        let marks = std::mem::take(&mut *marks.lock().unwrap_or_else(PoisonError::into_inner));
        let split = split_families(&out)?;
        if split.len() != DATASTORE_FAMILIES || marks.len() != DATASTORE_FAMILIES {
            return Err(RenderError::Shape("a datastore's families"));
        }
        let mut text = String::with_capacity(out.len());
        let mut segments = Vec::new();
        let mut families: [Family; DATASTORE_FAMILIES] = Default::default();
        for (((_, lines), marks), family) in split.iter().zip(&marks).zip(&mut families) {
            if lines.len() != marks.len() {
                return Err(RenderError::Shape(
                    "samples and their marks differ in number",
                ));
            }
            let first = offset(segments.len())?;
            let mut hasher = family_hasher();
            let mut run = text.len();
            let mut push = |text: &str, run: &mut usize, since: Option<f64>| {
                let static_text = text.get(*run..).unwrap_or_default();
                hasher.write(static_text.as_bytes());
                hasher.write_u64(since.map_or(u64::MAX, f64::to_bits));
                segments.push(Segment {
                    text_end: offset(text.len())?,
                    deflated_end: 0,
                    crc: CrcPiece::of(static_text.as_bytes()),
                    since,
                });
                *run = text.len();
                Ok::<(), RenderError>(())
            };
            for (line, since) in lines.iter().zip(marks) {
                let line = out.get(line.clone()).unwrap_or_default();
                match since {
                    None => text.push_str(line),
                    Some(since) => {
                        // Keep `name{labels} `; the value and newline are written per scrape.
                        let cut = line
                            .rfind(' ')
                            .ok_or(RenderError::Shape("a sample line without a value"))?;
                        text.push_str(&line[..=cut]);
                        push(&text, &mut run, Some(*since))?;
                    }
                }
            }
            if run < text.len() {
                push(&text, &mut run, None)?;
            }
            family.segments = first..offset(segments.len())?;
            family.hash = hasher.finish();
        }
        segments.shrink_to_fit();
        let encoded = Encoded {
            version,
            families,
            segments,
            body: Body::Text(text),
        };
        if deflated {
            encoded.deflated(previous, compress)
        } else {
            Ok(encoded)
        }
    }

    fn segment(&self, i: u32) -> Option<&Segment> {
        self.segments.get(usize::try_from(i).ok()?)
    }

    /// Where segment `i`'s static text lies in [`Body::Text`].
    fn text_range(&self, i: u32) -> Range<usize> {
        let start = i
            .checked_sub(1)
            .and_then(|p| self.segment(p))
            .map_or(0, |p| p.text_end as usize);
        let end = self.segment(i).map_or(start, |s| s.text_end as usize);
        start..end
    }

    /// Where segment `i`'s compressed text lies in [`Body::Deflated`].
    fn deflated_range(&self, i: u32) -> Range<usize> {
        let start = i
            .checked_sub(1)
            .and_then(|p| self.segment(p))
            .map_or(0, |p| p.deflated_end as usize);
        let end = self.segment(i).map_or(start, |s| s.deflated_end as usize);
        start..end
    }

    fn is_deflated(&self) -> bool {
        matches!(self.body, Body::Deflated(_))
    }

    /// Family `f` of `self` and of `previous` are the same (same hash and shape), so `previous`'s
    /// compressed segments can stand for `self`'s.
    fn same_family(&self, f: usize, previous: &Encoded) -> bool {
        let (Some(a), Some(b)) = (self.families.get(f), previous.families.get(f)) else {
            return false;
        };
        a.hash == b.hash
            && a.segments.len() == b.segments.len()
            && a.segments.clone().zip(b.segments.clone()).all(|(i, j)| {
                let (x, y) = (self.segment(i), previous.segment(j));
                x.zip(y).is_some_and(|(x, y)| {
                    self.text_range(i).len() == previous.text_range(j).len()
                        && x.crc.crc == y.crc.crc
                        && x.since.map(f64::to_bits) == y.since.map(f64::to_bits)
                })
            })
    }

    /// This encoding with its text compressed and dropped. Segments of families equal to
    /// `previous`'s (when that is compressed) reuse its compressed bytes.
    fn deflated(
        &self,
        previous: Option<&Encoded>,
        compress: &mut Option<Compress>,
    ) -> Result<Encoded, RenderError> {
        let Body::Text(text) = &self.body else {
            return Err(RenderError::Shape("compressing a compressed encoding"));
        };
        let previous = previous.filter(|p| p.is_deflated());
        let mut out = Vec::with_capacity(text.len() / 4 + 64);
        let mut segments = Vec::with_capacity(self.segments.len());
        for (f, family) in self.families.iter().enumerate() {
            let reuse = previous.filter(|p| self.same_family(f, p));
            match reuse {
                Some(previous) => {
                    let (Body::Deflated(bytes), Some(old)) =
                        (&previous.body, previous.families.get(f))
                    else {
                        return Err(RenderError::Shape("a reused family"));
                    };
                    for j in old.segments.clone() {
                        out.extend_from_slice(
                            bytes.get(previous.deflated_range(j)).unwrap_or_default(),
                        );
                        let i = family.segments.start + (j - old.segments.start);
                        let segment = self.segment(i).ok_or(RenderError::Shape("a segment"))?;
                        segments.push(Segment {
                            deflated_end: offset(out.len())?,
                            ..*segment
                        });
                    }
                }
                None => {
                    for i in family.segments.clone() {
                        let static_text =
                            text.as_bytes().get(self.text_range(i)).unwrap_or_default();
                        out.extend_from_slice(&deflate(compressor(compress), static_text));
                        let segment = self.segment(i).ok_or(RenderError::Shape("a segment"))?;
                        segments.push(Segment {
                            deflated_end: offset(out.len())?,
                            ..*segment
                        });
                    }
                }
            }
        }
        out.shrink_to_fit();
        Ok(Encoded {
            version: self.version,
            families: self.families.clone(),
            segments,
            body: Body::Deflated(out),
        })
    }

    /// Appends segment `i`'s static text to `out` (only kept while plain scrapes alone asked
    /// for this format: see [`MetricsCache::render`]).
    fn write_text(&self, i: u32, out: &mut Vec<u8>) -> Result<(), RenderError> {
        let Body::Text(text) = &self.body else {
            return Err(RenderError::Shape(
                "a plain scrape of a compressed encoding",
            ));
        };
        out.extend_from_slice(text.as_bytes().get(self.text_range(i)).unwrap_or_default());
        Ok(())
    }
}

impl MetricsCache {
    pub fn new() -> MetricsCache {
        MetricsCache::default()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            datastores: self.lock().entries.len(),
            encodes: self.encodes.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every field is replaced whole; a panicking holder cannot leave one half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `/metrics` body for `state` as of `now`, gzip-compressed when `gzip`; the same bytes
    /// as [`render_uncached`] (after decompression).
    ///
    /// Takes each datastore's record lock once, briefly, to read its version (and to copy it when
    /// it changed); encodes only the datastores that changed since the last scrape of `format`.
    pub fn render(
        &self,
        state: &Arc<State>,
        now: f64,
        format: Format,
        gzip: bool,
    ) -> Result<Vec<u8>, RenderError> {
        let f = format.index();
        let list = state.datastores();
        let versions: Vec<u64> = list.iter().map(|ds| ds.record().version).collect();
        let reload = state.reload_status();
        let tail_key = (
            reload.last_successful(),
            reload.last_success_time().to_bits(),
            state.discovery_version(),
            api_usage().version(),
        );

        let (headers, tail, mut encoded, stale) = {
            let mut inner = self.lock();
            if !inner.list.as_ref().is_some_and(|l| Arc::ptr_eq(l, &list)) {
                inner.adopt(&list);
            }
            let tail = match &inner.tail[f] {
                Some((key, piece)) if *key == tail_key => Some(Arc::clone(piece)),
                _ => None,
            };
            let mut encoded = Vec::with_capacity(list.len());
            let mut stale = Vec::new();
            for (i, (ds, version)) in list.iter().zip(&versions).enumerate() {
                let cached = inner
                    .entries
                    .get(&key(ds))
                    .and_then(|entry| entry.formats[f].clone());
                match cached {
                    Some(e) if e.version == *version => encoded.push(Some(e)),
                    previous => {
                        encoded.push(None);
                        stale.push((i, previous));
                    }
                }
            }
            (inner.headers[f].clone(), tail, encoded, stale)
        };

        // A plain scrape of a format that gzip scrapes keep compressed only (rare: probes, curl)
        // is encoded from State anew: simpler than inflating the pieces, and faster (they are
        // small, so inflating them is mostly per-piece overhead).
        let compressed = |e: &Arc<Encoded>| e.is_deflated();
        if !gzip
            && (encoded.iter().flatten().any(compressed)
                || stale.iter().filter_map(|(_, p)| p.as_ref()).any(compressed))
        {
            return Ok(render_uncached(state, now, format).into_bytes());
        }

        // Encoding happens outside the cache lock: other scrapes go on meanwhile.
        let mut compress = None;
        let headers = match headers {
            Some(headers) => headers,
            None => {
                let headers = Arc::new(encode_headers(format, now, &mut compress)?);
                self.lock().headers[f] = Some(Arc::clone(&headers));
                headers
            }
        };
        let tail = match tail {
            Some(tail) => tail,
            None => {
                let collector = StateCollector {
                    source: Source::Nothing,
                    now,
                    datastore_families: false,
                    tail: Some(Tail::of(state)),
                    marks: None,
                };
                let text = encode(collector, format)?;
                let text = text.strip_suffix(EOF).unwrap_or(&text).to_owned();
                let piece = Arc::new(Piece::new(text, &mut compress));
                self.lock().tail[f] = Some((tail_key, Arc::clone(&piece)));
                piece
            }
        };
        let mut fresh = Vec::new();
        for (i, previous) in stale {
            let Some(ds) = list.get(i) else { continue };
            // Kept compressed only (no text) when a gzip scrape asks.
            let deflated = gzip;
            let e = Arc::new(Encoded::new(
                Snapshot::take(ds),
                now,
                format,
                previous.as_deref(),
                deflated,
                &mut compress,
            )?);
            self.encodes.fetch_add(1, Ordering::Relaxed);
            if let Some(slot) = encoded.get_mut(i) {
                *slot = Some(Arc::clone(&e));
            }
            fresh.push((key(ds), e, None));
        }
        if gzip {
            // Encodings made by plain scrapes are compressed now, and their text dropped.
            for (i, slot) in encoded.iter_mut().enumerate() {
                let Some(e) = slot.as_ref().filter(|e| !e.is_deflated()) else {
                    continue;
                };
                let Some(ds) = list.get(i) else { continue };
                let deflated = Arc::new(e.deflated(None, &mut compress)?);
                let old = slot.replace(Arc::clone(&deflated));
                fresh.push((key(ds), deflated, old));
            }
        }
        if !fresh.is_empty() {
            let mut inner = self.lock();
            for (key, e, replaces) in fresh {
                // Absent when a reload removed the datastore meanwhile: then it is not kept.
                let Some(entry) = inner.entries.get_mut(&key) else {
                    continue;
                };
                // A compressed copy replaces only the encoding it was made from.
                let current = &entry.formats[f];
                if replaces.is_none_or(|old| current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &old)))
                {
                    entry.formats[f] = Some(e);
                }
            }
        }
        let encoded: Vec<Arc<Encoded>> = encoded.into_iter().flatten().collect();
        if encoded.len() != list.len() {
            return Err(RenderError::Shape("a datastore was not encoded"));
        }

        let parts = Parts {
            format,
            now,
            headers: &headers,
            encoded: &encoded,
            tail: &tail,
        };
        let last_len = &self.last_len[f][usize::from(gzip)];
        let capacity = last_len.load(Ordering::Relaxed) + 4096;
        let body = if gzip {
            parts.gzip(capacity, &mut compress)
        } else {
            parts.plain(capacity)?
        };
        last_len.store(body.len(), Ordering::Relaxed);
        Ok(body)
    }
}

impl Inner {
    /// Switches to a new datastore list: keeps the entries of datastores still in it, drops the
    /// others, adds empty ones for the new.
    fn adopt(&mut self, list: &Arc<[Arc<Datastore>]>) {
        let mut entries = HashMap::with_capacity(list.len());
        for ds in list.iter() {
            let entry = self.entries.remove(&key(ds)).unwrap_or_else(|| Entry {
                _datastore: Arc::clone(ds),
                formats: [None, None],
            });
            entries.insert(key(ds), entry);
        }
        self.entries = entries;
        self.list = Some(Arc::clone(list));
    }
}

/// A datastore's identity in the cache. A rename makes a new `Datastore`, so a new key.
fn key(ds: &Arc<Datastore>) -> usize {
    Arc::as_ptr(ds) as usize
}

/// The per-datastore families' headers in `format`, from an encoding pass over no datastore.
fn encode_headers(
    format: Format,
    now: f64,
    compress: &mut Option<Compress>,
) -> Result<[Piece; DATASTORE_FAMILIES], RenderError> {
    let collector = StateCollector {
        source: Source::Nothing,
        now,
        datastore_families: true,
        tail: None,
        marks: None,
    };
    let text = encode(collector, format)?;
    let split = split_families(&text)?;
    let headers: Vec<Piece> = split
        .into_iter()
        .map(|(header, _)| {
            let header = text.get(header).unwrap_or_default().to_owned();
            Piece::new(header, compress)
        })
        .collect();
    headers
        .try_into()
        .map_err(|_| RenderError::Shape("the per-datastore families' headers"))
}

/// Everything one scrape writes, in order.
struct Parts<'a> {
    format: Format,
    now: f64,
    headers: &'a [Piece; DATASTORE_FAMILIES],
    encoded: &'a [Arc<Encoded>],
    tail: &'a Piece,
}

impl Parts<'_> {
    fn plain(&self, capacity: usize) -> Result<Vec<u8>, RenderError> {
        let mut out = Vec::with_capacity(capacity);
        let mut value = String::new();
        for (f, header) in self.headers.iter().enumerate() {
            out.extend_from_slice(header.text.as_bytes());
            for e in self.encoded {
                let Some(family) = e.families.get(f) else {
                    continue;
                };
                for i in family.segments.clone() {
                    e.write_text(i, &mut out)?;
                    if let Some(since) = e.segment(i).and_then(|s| s.since) {
                        dynamic_value(&mut value, self.format, elapsed_value(self.now, since));
                        out.extend_from_slice(value.as_bytes());
                    }
                }
            }
        }
        out.extend_from_slice(self.tail.text.as_bytes());
        if self.format == Format::OpenMetrics {
            out.extend_from_slice(EOF.as_bytes());
        }
        Ok(out)
    }

    /// Expects every datastore's encoding compressed (see [`MetricsCache::render`]); compresses
    /// the text of any that is not, without keeping the result.
    fn gzip(&self, capacity: usize, compress: &mut Option<Compress>) -> Vec<u8> {
        let mut gz = Gzip::new(capacity);
        let mut value = String::new();
        for (f, header) in self.headers.iter().enumerate() {
            gz.compressed(header.text.len(), header.crc, &header.deflated);
            for e in self.encoded {
                let Some(family) = e.families.get(f) else {
                    continue;
                };
                for i in family.segments.clone() {
                    let Some(segment) = e.segment(i) else {
                        continue;
                    };
                    let len = e.text_range(i).len();
                    match &e.body {
                        Body::Deflated(bytes) => {
                            let deflated = bytes.get(e.deflated_range(i)).unwrap_or_default();
                            gz.compressed(len, segment.crc, deflated);
                        }
                        Body::Text(text) => {
                            let text = text.as_bytes().get(e.text_range(i)).unwrap_or_default();
                            let deflated = deflate(compressor(compress), text);
                            gz.compressed(len, segment.crc, &deflated);
                        }
                    }
                    if let Some(since) = segment.since {
                        dynamic_value(&mut value, self.format, elapsed_value(self.now, since));
                        gz.stored(value.as_bytes());
                    }
                }
            }
        }
        gz.compressed(self.tail.text.len(), self.tail.crc, &self.tail.deflated);
        if self.format == Format::OpenMetrics {
            gz.stored(EOF.as_bytes());
        }
        gz.finish()
    }
}

/// Writes `value` and a newline into `out` as prometheus-client writes a gauge value in `format`.
fn dynamic_value(out: &mut String, format: Format, value: f64) {
    out.clear();
    if value.is_finite() {
        // Both formats write finite floats with dtoa, as here.
        out.push_str(dtoa::Buffer::new().format_finite(value));
    } else {
        // Non-finite values differ between the formats; ask the library (never in practice:
        // `now − submitted` is finite for any time HealthLake can send).
        let _ = write!(out, "{}", library_value(format, value));
    }
    out.push('\n');
}

/// A gauge value as prometheus-client formats it, taken from an encoding of one sample.
fn library_value(format: Format, value: f64) -> String {
    #[derive(Debug)]
    struct One(f64);
    impl Collector for One {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
            encoder
                .encode_descriptor("v", "v", None, MetricType::Gauge)?
                .encode_gauge(&self.0)
        }
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(One(value)));
    let mut out = String::new();
    let _ = match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    out.lines()
        .find_map(|line| line.strip_prefix("v "))
        .unwrap_or("NaN")
        .to_owned()
}

// ---- gzip ----

fn compressor(compress: &mut Option<Compress>) -> &mut Compress {
    // Raw DEFLATE (no zlib header): the pieces are concatenated inside one gzip member. The level
    // matters little for time (each piece is compressed once per change) and more for size.
    compress.get_or_insert_with(|| Compress::new(Compression::default(), false))
}

/// `input` as raw DEFLATE blocks ended by a sync flush: byte-aligned and not final, so pieces
/// compressed independently concatenate into one valid stream. Falls back to stored blocks.
fn deflate(compress: &mut Compress, input: &[u8]) -> Vec<u8> {
    if input.is_empty() {
        return Vec::new();
    }
    compress.reset();
    let mut out = Vec::with_capacity(input.len() / 4 + 64);
    // Each round either consumes input or fills the output, which then grows: bounded.
    for _ in 0..64 {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
        let rest = input.get(consumed..).unwrap_or_default();
        if compress
            .compress_vec(rest, &mut out, FlushCompress::Sync)
            .is_err()
        {
            break;
        }
        let done = usize::try_from(compress.total_in()).is_ok_and(|n| n == input.len());
        // The flush is complete once all input is in and the output was not filled up.
        if done && out.len() < out.capacity() {
            return out;
        }
    }
    let mut stored = Vec::with_capacity(input.len() + 16);
    stored_blocks(&mut stored, input);
    stored
}

/// `data` as DEFLATE stored (uncompressed) blocks, not final (RFC 1951 §3.2.4): a byte-aligned
/// header byte 0, then LEN and its ones' complement, little-endian, then the bytes.
fn stored_blocks(out: &mut Vec<u8>, data: &[u8]) {
    for chunk in data.chunks(usize::from(u16::MAX)) {
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// A piece's CRC-32 and the operator that appends it to a running CRC: x^(8·len) modulo the
/// CRC-32 polynomial. A gzip scrape then extends its checksum over a cached piece with one
/// multiplication instead of reading the piece's text (which is not kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CrcPiece {
    crc: u32,
    shift: u32,
}

impl CrcPiece {
    fn of(bytes: &[u8]) -> CrcPiece {
        CrcPiece {
            crc: crc32fast::hash(bytes),
            shift: crc32::x8n(bytes.len() as u64),
        }
    }
}

/// CRC-32 (reflected, polynomial 0xEDB88320) arithmetic for combining checksums, as zlib's
/// `crc32_combine` does it: polynomials modulo P, bit-reversed, x^0 = 1 << 31.
mod crc32 {
    const POLY: u32 = 0xedb8_8320;

    /// a·b modulo P.
    pub(super) const fn mul(a: u32, mut b: u32) -> u32 {
        let mut a = a;
        let mut p = 0;
        while a != 0 {
            if a & (1 << 31) != 0 {
                p ^= b;
            }
            a <<= 1;
            b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        }
        p
    }

    /// x^(2^k) modulo P, for k in 0..32.
    const X2N: [u32; 32] = {
        let mut table = [0; 32];
        let mut p = 1 << 30; // x^1
        let mut k = 0;
        while k < 32 {
            table[k] = p;
            p = mul(p, p);
            k += 1;
        }
        table
    };

    /// x^(8n) modulo P: the operator that appends `n` bytes.
    pub(super) fn x8n(mut n: u64) -> u32 {
        let mut p = 1 << 31; // x^0
        let mut k = 3;
        while n != 0 {
            if n & 1 != 0 {
                p = mul(X2N[k & 31], p);
            }
            n >>= 1;
            k += 1;
        }
        p
    }

    /// The CRC-32 of A‖B from that of A and B's [`CrcPiece`](super::CrcPiece).
    pub(super) fn combine(crc_a: u32, b: super::CrcPiece) -> u32 {
        mul(b.shift, crc_a) ^ b.crc
    }
}

/// One gzip member (RFC 1952) assembled from DEFLATE pieces.
struct Gzip {
    out: Vec<u8>,
    /// The CRC-32 and length (mod 2^32) of the uncompressed bytes so far.
    crc: u32,
    len: u32,
}

impl Gzip {
    fn new(capacity: usize) -> Gzip {
        let mut out = Vec::with_capacity(capacity);
        // ID1 ID2, CM = deflate, no flags, no mtime, no extra flags, OS unknown.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        Gzip {
            out,
            crc: 0,
            len: 0,
        }
    }

    /// `len` bytes with checksum `crc`, already compressed as `deflated` by [`deflate`].
    fn compressed(&mut self, len: usize, crc: CrcPiece, deflated: &[u8]) {
        self.out.extend_from_slice(deflated);
        if len > 0 {
            self.crc = crc32::combine(self.crc, crc);
            self.len = self.len.wrapping_add(len as u32);
        }
    }

    fn stored(&mut self, data: &[u8]) {
        stored_blocks(&mut self.out, data);
        let mut hasher = crc32fast::Hasher::new_with_initial(self.crc);
        hasher.update(data);
        self.crc = hasher.finalize();
        self.len = self.len.wrapping_add(data.len() as u32);
    }

    fn finish(mut self) -> Vec<u8> {
        // A final, empty block with fixed Huffman codes, then CRC-32 and length mod 2^32.
        self.out.extend_from_slice(&[0x03, 0x00]);
        self.out.extend_from_slice(&self.crc.to_le_bytes());
        self.out.extend_from_slice(&self.len.to_le_bytes());
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::{DeflateDecoder, GzDecoder, MultiGzDecoder};
    use std::io::Read;

    fn gunzip_single(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    fn gunzip_multi(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn sync_flushed_pieces_and_stored_blocks_form_one_gzip_member() {
        let mut compress = None;
        let a = b"healthlake_export_jobs{datastore_id=\"a\"} 1.0\n".repeat(50);
        let b = b"something else entirely\n".to_vec();
        let mut gz = Gzip::new(0);
        gz.compressed(
            a.len(),
            CrcPiece::of(&a),
            &deflate(compressor(&mut compress), &a),
        );
        gz.stored(b"12.5\n");
        gz.stored(&[]);
        gz.compressed(
            b.len(),
            CrcPiece::of(&b),
            &deflate(compressor(&mut compress), &b),
        );
        gz.compressed(
            0,
            CrcPiece::of(&[]),
            &deflate(compressor(&mut compress), &[]),
        );
        let bytes = gz.finish();
        let mut expected = a.clone();
        expected.extend_from_slice(b"12.5\n");
        expected.extend_from_slice(&b);
        assert_eq!(gunzip_single(&bytes), expected);
        assert_eq!(gunzip_multi(&bytes), expected);
        assert!(bytes.len() < expected.len() / 4, "{} bytes", bytes.len());
    }

    #[test]
    fn large_pieces_and_stored_blocks_over_64_kib_round_trip() {
        let mut rng = fastrand::Rng::with_seed(5);
        let noise: Vec<u8> = (0..200_000).map(|_| rng.u8(b'a'..=b'z')).collect();
        let mut compress = None;
        let deflated = deflate(compressor(&mut compress), &noise);
        // Not final on its own: end it with the final empty block, as `Gzip::finish` does.
        let mut ended = deflated.clone();
        ended.extend_from_slice(&[0x03, 0x00]);
        let mut raw = Vec::new();
        DeflateDecoder::new(&ended[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw, noise);
        let mut gz = Gzip::new(0);
        gz.stored(&noise);
        gz.compressed(noise.len(), CrcPiece::of(&noise), &deflated);
        let mut expected = noise.clone();
        expected.extend_from_slice(&noise);
        assert_eq!(gunzip_single(&gz.finish()), expected);
    }

    #[test]
    fn combined_crcs_equal_the_crc_of_the_concatenation() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..200 {
            let a: Vec<u8> = (0..rng.usize(0..3000)).map(|_| rng.u8(..)).collect();
            let b: Vec<u8> = (0..rng.usize(0..3000)).map(|_| rng.u8(..)).collect();
            let whole = [a.as_slice(), b.as_slice()].concat();
            let combined = crc32::combine(crc32fast::hash(&a), CrcPiece::of(&b));
            assert_eq!(combined, crc32fast::hash(&whole));
        }
        let big = vec![7u8; 1 << 20];
        let combined = crc32::combine(crc32fast::hash(b"x"), CrcPiece::of(&big));
        assert_eq!(combined, crc32fast::hash(&[b"x".as_slice(), &big].concat()));
        let mut hasher = crc32fast::Hasher::new_with_initial(crc32fast::hash(b"abc"));
        hasher.update(b"def");
        assert_eq!(hasher.finalize(), crc32fast::hash(b"abcdef"));
    }

    #[test]
    fn dynamic_values_are_formatted_as_the_library_does() {
        for format in [Format::Prometheus, Format::OpenMetrics] {
            for value in [
                0.0,
                1.0,
                0.1,
                123456.789,
                1e21,
                1.5e-7,
                f64::INFINITY,
                f64::NAN,
                3_600.000_000_1,
            ] {
                let mut out = String::new();
                dynamic_value(&mut out, format, value);
                assert_eq!(out, format!("{}\n", library_value(format, value)));
            }
        }
    }

    #[test]
    fn split_families_separates_headers_from_samples() {
        let text = "# HELP a x\n# TYPE a gauge\na 1\na{l=\"#\"} 2\n# HELP b y\n# TYPE b gauge\n# UNIT b s\n# EOF\n";
        let split = split_families(text).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(&text[split[0].0.clone()], "# HELP a x\n# TYPE a gauge\n");
        assert_eq!(split[0].1.len(), 2);
        assert_eq!(
            &text[split[1].0.clone()],
            "# HELP b y\n# TYPE b gauge\n# UNIT b s\n"
        );
        assert!(split[1].1.is_empty());
        assert!(split_families("a 1\n").is_err());
    }
}
