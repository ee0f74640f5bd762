//! The metric families as data: each one's name, help, unit, type and what its samples read
//! ([`DATASTORE`], then [`EXPORTER`]), and the one encoding pass that writes them with
//! prometheus-client. Both the reference encoding and the cache's pieces come from here, so their
//! bytes cannot differ; export and import families are the same definitions for another job kind.

use std::fmt::Error;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::events::EVENT_FAMILY_NAMES;
use super::view::{ExporterValues, Fmt, Labels, Source, View};
use super::{Format, RenderError};
use crate::aws::{OPERATIONS, RESULTS};
use crate::model::{ErrorReason, ImportProgress, JobKind, DATASTORE_STATUSES};
use crate::state::{DiscoveryStatus, Health};

/// One metric family.
pub(super) struct Family {
    /// As scraped: with the unit's suffix, and `_total` for a counter.
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) unit: Option<BaseUnit>,
    pub(super) metric_type: MetricType,
    pub(super) samples: Samples,
}

/// The base units the families use (prometheus-client appends them to the name).
#[derive(Clone, Copy)]
pub(super) enum BaseUnit {
    Seconds,
    Bytes,
}

/// What a family's samples show.
#[derive(Clone, Copy)]
pub(super) enum Samples {
    /// Per datastore polling `kind`: jobs per status.
    JobCounts(JobKind),
    /// Per recent job: its duration (running jobs: as of the scrape).
    JobDurations(JobKind),
    /// Per job that ended in an alerted status within `polling.ended_job_window`: its end time.
    Ended(JobKind),
    /// Per terminal status: jobs seen entering it.
    Finished(JobKind),
    /// Age of the oldest unfinished job, 0 when none.
    OldestActive(JobKind),
    /// The feed's last poll succeeded.
    Up(JobKind),
    /// The feed's last poll's wall time.
    PollDuration(JobKind),
    /// When the feed's last successful poll ended.
    LastSuccess(JobKind),
    /// The feed's failed polls by reason.
    PollErrors(JobKind),
    /// Per running import job: one value of its progress report.
    Progress(fn(&ImportProgress) -> f64),
    DatastoreStatus,
    DatastoreInfo,
    DescribeUp,
    DescribeErrors,
    DiscoveryUp,
    DiscoveryFound,
    DiscoveryErrors,
    ApiRequests,
    ApiBudgetWait,
    ReloadSuccessful,
    ReloadSuccessTime,
    FirstPollsPending,
    CertificateLoaded,
    BuildInfo,
}

impl Family {
    /// The name prometheus-client is given: without the suffixes it appends.
    fn base_name(&self) -> &'static str {
        let name = match self.metric_type {
            MetricType::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
            _ => self.name,
        };
        match self.unit {
            Some(BaseUnit::Seconds) => name.strip_suffix("_seconds").unwrap_or(name),
            Some(BaseUnit::Bytes) => name.strip_suffix("_bytes").unwrap_or(name),
            None => name,
        }
    }

    /// Writes this family's descriptor (`# HELP`, `# TYPE`, `# UNIT`).
    fn describe<'e>(&self, encoder: &'e mut DescriptorEncoder) -> Result<MetricEncoder<'e>, Error> {
        static SECONDS: Unit = Unit::Seconds;
        static BYTES: Unit = Unit::Bytes;
        let unit = self.unit.map(|unit| match unit {
            BaseUnit::Seconds => &SECONDS,
            BaseUnit::Bytes => &BYTES,
        });
        encoder.encode_descriptor(self.base_name(), self.help, unit, self.metric_type)
    }
}

/// The families with samples per datastore, written first, in this order: export jobs, import
/// jobs (with the running ones' progress), the datastore itself.
pub(super) const DATASTORE: &[Family] = &[
    Family {
        name: "healthlake_export_jobs",
        help: "Export jobs in each status, as last listed; from the exporter's own polling of HealthLake ListFHIRExportJobs.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::JobCounts(JobKind::Export),
    },
    Family {
        name: "healthlake_export_job_duration_seconds",
        help: "EndTime - SubmitTime of ended export jobs; time since SubmitTime of unfinished ones, as of the scrape. Only the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRExportJobs.",
        unit: Some(BaseUnit::Seconds),
        metric_type: MetricType::Gauge,
        samples: Samples::JobDurations(JobKind::Export),
    },
    Family {
        name: "healthlake_export_job_end_timestamp_seconds",
        help: "EndTime (Unix seconds) of each export job that ended FAILED, COMPLETED_WITH_ERRORS or CANCEL_FAILED within polling.ended_job_window (without an EndTime: when the exporter first saw it ended); from the exporter's own polling of HealthLake ListFHIRExportJobs.",
        unit: Some(BaseUnit::Seconds),
        metric_type: MetricType::Gauge,
        samples: Samples::Ended(JobKind::Export),
    },
    Family {
        name: "healthlake_export_jobs_finished_total",
        help: "Export jobs seen entering a terminal status while the exporter runs, each job id at most once per status (jobs already finished at its first poll are not counted); from the exporter's own polling of HealthLake ListFHIRExportJobs.",
        unit: None,
        metric_type: MetricType::Counter,
        samples: Samples::Finished(JobKind::Export),
    },
    Family {
        name: "healthlake_export_oldest_active_job_age_seconds",
        help: "Seconds since the oldest unfinished export job was submitted, as of the scrape; 0 when none is running; from the exporter's own polling of HealthLake ListFHIRExportJobs.",
        unit: Some(BaseUnit::Seconds),
        metric_type: MetricType::Gauge,
        samples: Samples::OldestActive(JobKind::Export),
    },
    Family {
        name: "healthlake_datastore_up",
        help: "1 if the exporter's last poll of this datastore's export jobs succeeded, else 0.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::Up(JobKind::Export),
    },
    Family {
        name: "healthlake_poll_duration_seconds",
        help: "Wall time of the exporter's last poll of this datastore's export jobs (all pages, retries included).",
        unit: Some(BaseUnit::Seconds),
        metric_type: MetricType::Gauge,
        samples: Samples::PollDuration(JobKind::Export),
    },
    Family {
        name: "healthlake_last_successful_poll_timestamp_seconds",
        help: "Unix time at which the exporter's last successful poll of this datastore's export jobs ended.",
        unit: Some(BaseUnit::Seconds),
        metric_type: MetricType::Gauge,
        samples: Samples::LastSuccess(JobKind::Export),
    },
    Family {
        name: "healthlake_poll_errors_total",
        help: "Failed polls of this datastore's export jobs by reason (one per poll, not per retry).",
        unit: None,
        metric_type: MetricType::Counter,
        samples: Samples::PollErrors(JobKind::Export),
    },
    Family {
        name: "healthlake_import_jobs",
        help: "Import jobs in each status, as last listed; from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::JobCounts(JobKind::Import),
    },
    Family {
        name: "healthlake_import_job_duration_seconds",
        help: "EndTime - SubmitTime of ended import jobs; time since SubmitTime of unfinished ones, as of the scrape. Only the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: Some(BaseUnit::Seconds),
        metric_type: MetricType::Gauge,
        samples: Samples::JobDurations(JobKind::Import),
    },
    Family {
        name: "healthlake_import_job_end_timestamp_seconds",
        help: "EndTime (Unix seconds) of each import job that ended FAILED, COMPLETED_WITH_ERRORS or CANCEL_FAILED within polling.ended_job_window (without an EndTime: when the exporter first saw it ended); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: Some(BaseUnit::Seconds),
        metric_type: MetricType::Gauge,
        samples: Samples::Ended(JobKind::Import),
    },
    Family {
        name: "healthlake_import_jobs_finished_total",
        help: "Import jobs seen entering a terminal status while the exporter runs, each job id at most once per status (jobs already finished at its first poll are not counted); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: None,
        metric_type: MetricType::Counter,
        samples: Samples::Finished(JobKind::Import),
    },
    Family {
        name: "healthlake_import_oldest_active_job_age_seconds",
        help: "Seconds since the oldest unfinished import job was submitted, as of the scrape; 0 when none is running; from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: Some(BaseUnit::Seconds),
        metric_type: MetricType::Gauge,
        samples: Samples::OldestActive(JobKind::Import),
    },
    Family {
        name: "healthlake_import_up",
        help: "1 if the exporter's last poll of this datastore's import jobs succeeded, else 0 (only when import jobs are polled).",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::Up(JobKind::Import),
    },
    Family {
        name: "healthlake_import_poll_errors_total",
        help: "Failed polls of this datastore's import jobs by reason (one per poll, not per retry).",
        unit: None,
        metric_type: MetricType::Counter,
        samples: Samples::PollErrors(JobKind::Import),
    },
    Family {
        name: "healthlake_import_job_scanned_files",
        help: "Files scanned of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::Progress(|p| p.files_scanned),
    },
    Family {
        name: "healthlake_import_job_scanned_bytes",
        help: "Size of the files scanned (from TotalSizeOfScannedFilesInMB, 1 MB = 10^6 bytes) of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: Some(BaseUnit::Bytes),
        metric_type: MetricType::Gauge,
        samples: Samples::Progress(|p| p.scanned_bytes),
    },
    Family {
        name: "healthlake_import_job_imported_files",
        help: "Files imported of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::Progress(|p| p.files_imported),
    },
    Family {
        name: "healthlake_import_job_scanned_resources",
        help: "FHIR resources scanned of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::Progress(|p| p.resources_scanned),
    },
    Family {
        name: "healthlake_import_job_imported_resources",
        help: "FHIR resources imported of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::Progress(|p| p.resources_imported),
    },
    Family {
        name: "healthlake_import_job_failed_resources",
        help: "FHIR resources that failed because of their input (customer error) of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::Progress(|p| p.resources_failed),
    },
    Family {
        name: "healthlake_import_job_failed_files",
        help: "Files that could not be read because of their input (customer error) of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::Progress(|p| p.files_failed),
    },
    Family {
        name: "healthlake_datastore_status",
        help: "1 for the datastore's status as DescribeFHIRDatastore last reported it, 0 for every other status (only with polling.datastore_health).",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::DatastoreStatus,
    },
    Family {
        name: "healthlake_datastore_info",
        help: "Always 1; the labels say the datastore's FHIR version and ARN (only with polling.datastore_health).",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::DatastoreInfo,
    },
    Family {
        name: "healthlake_datastore_describe_up",
        help: "1 if the exporter's last DescribeFHIRDatastore of this datastore succeeded, else 0.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::DescribeUp,
    },
    Family {
        name: "healthlake_datastore_describe_errors_total",
        help: "Failed DescribeFHIRDatastore calls for this datastore by reason.",
        unit: None,
        metric_type: MetricType::Counter,
        samples: Samples::DescribeErrors,
    },
];

/// The exporter-wide families, written after the per-datastore ones: discovery, the last
/// configuration reload, the build.
pub(super) const EXPORTER: &[Family] = &[
    Family {
        name: "healthlake_discovery_up",
        help: "1 if the last ListFHIRDatastores of this [[discovery]] entry succeeded, else 0.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::DiscoveryUp,
    },
    Family {
        name: "healthlake_discovery_datastores",
        help: "Datastores the last successful ListFHIRDatastores of this [[discovery]] entry found.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::DiscoveryFound,
    },
    Family {
        name: "healthlake_discovery_errors_total",
        help: "Failed ListFHIRDatastores calls of this [[discovery]] entry by reason.",
        unit: None,
        metric_type: MetricType::Counter,
        samples: Samples::DiscoveryErrors,
    },
    Family {
        name: "healthlake_api_requests_total",
        help: "HealthLake API calls the exporter made, by operation and result (success or the error reason; one per call, SDK retries inside a call included in it). They share the account's quota with your own tools.",
        unit: None,
        metric_type: MetricType::Counter,
        samples: Samples::ApiRequests,
    },
    Family {
        name: "healthlake_api_budget_wait_seconds_total",
        help: "Seconds API calls waited for a slot of the request budget (polling.max_requests_per_second), all accounts and regions together.",
        unit: Some(BaseUnit::Seconds),
        metric_type: MetricType::Counter,
        samples: Samples::ApiBudgetWait,
    },
    Family {
        name: "healthlake_exporter_config_last_reload_successful",
        help: "1 if the last configuration (re)load succeeded, 0 if it failed and the previous configuration is still in use.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::ReloadSuccessful,
    },
    Family {
        name: "healthlake_exporter_config_last_reload_success_timestamp_seconds",
        help: "Unix time of the last successful configuration (re)load.",
        unit: Some(BaseUnit::Seconds),
        metric_type: MetricType::Gauge,
        samples: Samples::ReloadSuccessTime,
    },
    Family {
        name: "healthlake_exporter_first_polls_pending",
        help: "First polls not attempted yet: each datastore's job lists and description, and each [[discovery]] entry's listing, including datastores a reload or discovery just added. /readyz waits for them only at start, and at most polling.timeout + the start spread + 2s.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::FirstPollsPending,
    },
    Family {
        name: "healthlake_exporter_tls_certificate_last_load_successful",
        help: "1 if the TLS certificate files were last loaded successfully, 0 if they hold a pair that cannot be used (mid-rotation or broken; the previous certificate stays in service). Only with server.tls.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::CertificateLoaded,
    },
    Family {
        name: "healthlake_exporter_build_info",
        help: "Always 1; the labels say which healthlake-exporter is running: version, source revision and the rustc that built it.",
        unit: None,
        metric_type: MetricType::Gauge,
        samples: Samples::BuildInfo,
    },
];

/// How many families have samples per datastore (the cache keeps one piece per family).
pub(super) const DATASTORE_FAMILIES: usize = DATASTORE.len();

const FAMILY_COUNT: usize = DATASTORE.len() + EXPORTER.len() + EVENT_FAMILY_NAMES.len();

/// Every metric family name this exporter can emit (as scraped, with suffixes).
pub const FAMILY_NAMES: [&str; FAMILY_COUNT] = {
    let mut names = [""; FAMILY_COUNT];
    let mut i = 0;
    while i < DATASTORE.len() {
        names[i] = DATASTORE[i].name;
        i += 1;
    }
    let mut j = 0;
    while j < EXPORTER.len() {
        names[i + j] = EXPORTER[j].name;
        j += 1;
    }
    // The event path's families (`[events]` only) are written by `metrics::events`.
    let mut k = 0;
    while k < EVENT_FAMILY_NAMES.len() {
        names[i + j + k] = EVENT_FAMILY_NAMES[k];
        k += 1;
    }
    names
};

/// Every reason of a feed's error counter, 0 included.
fn errors(m: &mut Sink<'_, '_>, ds: Labels<'_, 2>, health: &Health) -> Fmt {
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
    /// Write the per-datastore families ([`DATASTORE`]; headers even with no datastore).
    pub(super) datastore_families: bool,
    /// Write the exporter-wide families ([`EXPORTER`]) with these values.
    pub(super) tail: Option<ExporterValues>,
    /// Where to note which samples depend on `now` (cached pieces only).
    pub(super) marks: Option<Arc<Mutex<Marks>>>,
}

impl StateCollector {
    /// Writes one per-datastore family: a descriptor, then each datastore's samples.
    fn datastore_family(&self, encoder: &mut DescriptorEncoder, family: &Family) -> Fmt {
        let mut metric = family.describe(encoder)?;
        let mut marks = Vec::new();
        let mut sink = Sink {
            metric: &mut metric,
            marks: self.marks.is_some().then_some(&mut marks),
        };
        self.source.each(&mut |labels, view| {
            self.datastore_samples(family.samples, &mut sink, labels, view)
        })?;
        if let Some(all) = &self.marks {
            all.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(marks);
        }
        Ok(())
    }

    /// One datastore's samples of a family.
    fn datastore_samples(
        &self,
        samples: Samples,
        m: &mut Sink<'_, '_>,
        ds: Labels<'_, 2>,
        view: &View<'_>,
    ) -> Fmt {
        let now = self.now;
        match samples {
            Samples::JobCounts(kind) => {
                let Some(jobs) = view.track(kind).and_then(|t| t.jobs) else {
                    return Ok(());
                };
                for (status, count) in &jobs.counts {
                    let status = [("status", status.as_str())];
                    m.gauge(&(ds, status), *count as f64)?;
                }
                Ok(())
            }
            Samples::JobDurations(kind) => {
                let Some(track) = view.track(kind) else {
                    return Ok(());
                };
                let Some(jobs) = track.jobs else {
                    return Ok(());
                };
                for job in &jobs.recent {
                    let Some(seconds) = job.duration_seconds(now) else {
                        continue;
                    };
                    let name = track.job_name_label.label(job.name());
                    let job_labels = [
                        ("job_id", job.id()),
                        ("job_name", name.as_ref()),
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
            }
            Samples::Ended(kind) => {
                let Some(track) = view.track(kind) else {
                    return Ok(());
                };
                let Some(jobs) = track.jobs else {
                    return Ok(());
                };
                for job in &jobs.ended {
                    let name = track.job_name_label.label(job.name.as_deref());
                    let job_labels = [
                        ("job_id", job.id.as_str()),
                        ("job_name", name.as_ref()),
                        ("status", job.status.as_str()),
                    ];
                    m.gauge(&(ds, job_labels), job.ended)?;
                }
                Ok(())
            }
            Samples::Finished(kind) => {
                let Some(track) = view.track(kind) else {
                    return Ok(());
                };
                for (status, count) in track.finished {
                    m.counter(&(ds, [("status", status.as_str())]), *count)?;
                }
                Ok(())
            }
            Samples::OldestActive(kind) => {
                let Some(jobs) = view.track(kind).and_then(|t| t.jobs) else {
                    return Ok(());
                };
                match jobs.oldest_active_submitted {
                    Some(submitted) => m.elapsed(&ds, submitted, elapsed_value(now, submitted)),
                    None => m.gauge(&ds, 0.0),
                }
            }
            Samples::Up(kind) => match view.track(kind) {
                Some(t) => m.gauge(&ds, if t.health.up { 1.0 } else { 0.0 }),
                None => Ok(()),
            },
            Samples::PollDuration(kind) => {
                match view.track(kind).and_then(|t| t.health.last_poll_seconds) {
                    Some(seconds) => m.gauge(&ds, seconds),
                    None => Ok(()),
                }
            }
            Samples::LastSuccess(kind) => {
                match view.track(kind).and_then(|t| t.health.last_success) {
                    Some(at) => m.gauge(&ds, at),
                    None => Ok(()),
                }
            }
            Samples::PollErrors(kind) => match view.track(kind) {
                Some(t) => errors(m, ds, t.health),
                None => Ok(()),
            },
            Samples::Progress(value) => {
                let Some(track) = view.track(JobKind::Import) else {
                    return Ok(());
                };
                let Some(jobs) = track.jobs else {
                    return Ok(());
                };
                for job in jobs.recent.iter().filter(|j| j.is_active()) {
                    let Some(progress) = &job.progress else {
                        continue;
                    };
                    let name = track.job_name_label.label(job.name());
                    let labels = [("job_id", job.id()), ("job_name", name.as_ref())];
                    m.gauge(&(ds, labels), value(progress))?;
                }
                Ok(())
            }
            Samples::DatastoreStatus => {
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
            }
            Samples::DatastoreInfo => {
                let Some((Some(info), _)) = view.datastore else {
                    return Ok(());
                };
                let labels = [
                    ("fhir_version", info.fhir_version.as_str()),
                    ("arn", info.arn.as_str()),
                ];
                m.gauge(&(ds, labels), 1.0)
            }
            Samples::DescribeUp => match view.datastore {
                Some((_, health)) if health.attempts > 0 => {
                    m.gauge(&ds, if health.up { 1.0 } else { 0.0 })
                }
                _ => Ok(()),
            },
            Samples::DescribeErrors => match view.datastore {
                Some((_, health)) => errors(m, ds, health),
                None => Ok(()),
            },
            // Exporter-wide families have no per-datastore samples.
            Samples::DiscoveryUp
            | Samples::DiscoveryFound
            | Samples::DiscoveryErrors
            | Samples::ApiRequests
            | Samples::ApiBudgetWait
            | Samples::ReloadSuccessful
            | Samples::ReloadSuccessTime
            | Samples::FirstPollsPending
            | Samples::CertificateLoaded
            | Samples::BuildInfo => Ok(()),
        }
    }

    /// Writes one exporter-wide family from `tail`.
    fn exporter_family(
        encoder: &mut DescriptorEncoder,
        family: &Family,
        tail: &ExporterValues,
    ) -> Fmt {
        let mut metric = family.describe(encoder)?;
        let labels = |d: &DiscoveryStatus| (d.index.to_string(), d.region.clone());
        match family.samples {
            Samples::DiscoveryUp | Samples::DiscoveryFound => {
                for d in &tail.discovery {
                    let (index, region) = labels(d);
                    let value = match family.samples {
                        Samples::DiscoveryUp if d.health.up => 1.0,
                        Samples::DiscoveryUp => 0.0,
                        _ => d.found as f64,
                    };
                    metric
                        .encode_family(&[
                            ("discovery", index.as_str()),
                            ("region", region.as_str()),
                        ])?
                        .encode_gauge(&value)?;
                }
                Ok(())
            }
            Samples::DiscoveryErrors => {
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
                Ok(())
            }
            Samples::ApiRequests => {
                for (operation, row) in OPERATIONS.iter().zip(&tail.api_requests) {
                    for (result, count) in RESULTS.iter().zip(row) {
                        metric
                            .encode_family(&[("operation", *operation), ("result", *result)])?
                            .encode_counter::<NoLabelSet, _, f64>(count, None)?;
                    }
                }
                Ok(())
            }
            Samples::ApiBudgetWait => {
                metric.encode_counter::<NoLabelSet, _, f64>(&tail.api_wait_seconds, None)
            }
            Samples::ReloadSuccessful => {
                metric.encode_gauge(&if tail.reload_successful { 1.0 } else { 0.0 })
            }
            Samples::ReloadSuccessTime => metric.encode_gauge(&tail.reload_success_time),
            Samples::FirstPollsPending => metric.encode_gauge(&(tail.first_polls_pending as f64)),
            Samples::CertificateLoaded => match tail.certificate_loaded {
                Some(loaded) => metric.encode_gauge(&if loaded { 1.0 } else { 0.0 }),
                None => Ok(()),
            },
            Samples::BuildInfo => metric
                .encode_family(&[
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("revision", env!("HEALTHLAKE_EXPORTER_REVISION")),
                    ("rustc_version", env!("HEALTHLAKE_EXPORTER_RUSTC_VERSION")),
                ])?
                .encode_gauge(&1.0),
            // Per-datastore families are written by `datastore_family`.
            _ => Ok(()),
        }
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        if self.datastore_families {
            for family in DATASTORE {
                self.datastore_family(&mut encoder, family)?;
            }
        }
        if let Some(tail) = &self.tail {
            for family in EXPORTER {
                Self::exporter_family(&mut encoder, family, tail)?;
            }
            if let Some(snapshot) = &tail.events {
                super::events::families(&mut encoder, snapshot)?;
            }
        }
        Ok(())
    }
}

/// One encoding pass of `collector` in `format`.
pub(super) fn encode(collector: StateCollector, format: Format) -> Result<String, std::fmt::Error> {
    encode_collector(Box::new(collector), format)
}

/// One encoding pass of any collector in `format` (OpenMetrics output ends with [`EOF`]).
pub(super) fn encode_collector(
    collector: Box<dyn Collector>,
    format: Format,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(collector);
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

    #[test]
    fn family_names_are_unique_and_say_their_unit_and_type() {
        let names: std::collections::HashSet<_> = FAMILY_NAMES.iter().collect();
        assert_eq!(names.len(), FAMILY_NAMES.len());
        for family in DATASTORE.iter().chain(EXPORTER) {
            assert!(family.name.starts_with("healthlake_"), "{}", family.name);
            let counter = matches!(family.metric_type, MetricType::Counter);
            assert_eq!(family.name.ends_with("_total"), counter, "{}", family.name);
            let suffix = match family.unit {
                Some(BaseUnit::Seconds) => "_seconds",
                Some(BaseUnit::Bytes) => "_bytes",
                None => "",
            };
            let unsuffixed = family.name.strip_suffix("_total").unwrap_or(family.name);
            assert!(unsuffixed.ends_with(suffix), "{}", family.name);
        }
    }
}
