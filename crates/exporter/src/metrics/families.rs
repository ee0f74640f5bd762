//! The metric families: names, help texts, types and how each reads a datastore's view. One
//! encoding pass writes them with prometheus-client; both the reference encoding and the cache's
//! pieces come from here, so their bytes cannot differ.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::view::{Fmt, Labels, Source, Tail, View};
use super::{Format, RenderError};
use crate::aws::OPERATIONS;
use crate::model::{ErrorReason, ImportProgress, JobKind, DATASTORE_STATUSES};
use crate::state::{DiscoveryStatus, Health};

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
pub(super) const DATASTORE_FAMILIES: usize = 27;

pub(super) const SOURCE: &str = "from the exporter's own polling of HealthLake ListFHIRExportJobs";
pub(super) const IMPORT_SOURCE: &str =
    "from the exporter's own polling of HealthLake ListFHIRImportJobs";

/// The import progress families: name (unit appended), what it counts, unit, value.
pub(super) type ProgressValue = fn(&ImportProgress) -> f64;
pub(super) const PROGRESS: [(&str, &str, Option<Unit>, ProgressValue); 7] = [
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

pub(super) fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Every reason of a feed's error counter, 0 included.
pub(super) fn errors(m: &mut Sink<'_, '_>, ds: Labels<'_, 2>, health: &Health) -> Fmt {
    for reason in ErrorReason::ALL {
        let count = health.errors.get(&reason).copied().unwrap_or(0);
        m.counter(&(ds, [("reason", reason.as_str())]), count)?;
    }
    Ok(())
}

/// Per family, per sample in order: `Some(submitted)` when the value is `now − submitted` (it
/// depends on the scrape time), `None` when it does not.
pub(super) type Marks = Vec<Vec<Option<f64>>>;

/// Writes samples of one family, noting which ones depend on `now` when asked to.
pub(super) struct Sink<'m, 'e> {
    pub(super) metric: &'m mut MetricEncoder<'e>,
    pub(super) marks: Option<&'m mut Vec<Option<f64>>>,
}

impl Sink<'_, '_> {
    pub(super) fn sample<L: EncodeLabelSet>(
        &mut self,
        labels: &L,
        value: f64,
        since: Option<f64>,
    ) -> Fmt {
        self.metric.encode_family(labels)?.encode_gauge(&value)?;
        if let Some(marks) = &mut self.marks {
            marks.push(since);
        }
        Ok(())
    }

    pub(super) fn gauge<L: EncodeLabelSet>(&mut self, labels: &L, value: f64) -> Fmt {
        self.sample(labels, value, None)
    }

    /// A gauge whose value is `now − since` (`value`, computed by the caller for this `now`).
    pub(super) fn elapsed<L: EncodeLabelSet>(&mut self, labels: &L, since: f64, value: f64) -> Fmt {
        self.sample(labels, value, Some(since))
    }

    pub(super) fn counter<L: EncodeLabelSet>(&mut self, labels: &L, value: u64) -> Fmt {
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
pub(super) fn elapsed_value(now: f64, since: f64) -> f64 {
    (now - since).max(0.0)
}

/// Encodes families of a [`Source`] (and the exporter-wide `tail`) for one encoding pass.
#[derive(Debug)]
pub(super) struct StateCollector {
    pub(super) source: Source,
    /// Fixed per pass so every series agrees on the time.
    pub(super) now: f64,
    /// Write the eight per-datastore families (headers even with no datastore).
    pub(super) datastore_families: bool,
    /// Write the exporter-wide families: the last reload's success and time, and build info.
    pub(super) tail: Option<Tail>,
    /// Where to note which samples depend on `now` (cached pieces only).
    pub(super) marks: Option<Arc<Mutex<Marks>>>,
}

impl StateCollector {
    /// Writes one family: a descriptor, then each datastore's samples via `samples`.
    pub(super) fn family(
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

    pub(super) fn datastore_families(&self, e: &mut DescriptorEncoder) -> Fmt {
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
    pub(super) fn job_families(&self, e: &mut DescriptorEncoder, kind: JobKind) -> Fmt {
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

    pub(super) fn tail_families(e: &mut DescriptorEncoder, tail: &Tail) -> Fmt {
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
            let results =
                std::iter::once("success").chain(ErrorReason::ALL.iter().map(|r| r.as_str()));
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
pub(super) fn encode(collector: StateCollector, format: Format) -> Result<String, std::fmt::Error> {
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

pub(super) const EOF: &str = "# EOF\n";

/// One family's header lines and sample lines, as byte ranges of an encoder's output.
pub(super) type FamilyLines = (Range<usize>, Vec<Range<usize>>);

/// An encoder's output split into families: each family's header lines (`# HELP`, `# TYPE`,
/// `# UNIT`) and its sample lines, as byte ranges (newlines included). OpenMetrics' `# EOF` is
/// dropped. Sample lines never start with `#` (they start with the metric name) and never span
/// lines (label values escape newlines).
pub(super) fn split_families(text: &str) -> Result<Vec<FamilyLines>, RenderError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
