//! The metric families as data: one table entry per family, with its name (written once, as
//! scraped and queried), help, type, unit, labels and the function that writes its samples.
//! Everything that names a family reads it from here: the encoder, the cache, [`FAMILY_NAMES`]
//! (which the deploy checks compare the rules and dashboards with). Export and import families are
//! the same functions for another job kind.

use std::fmt::Error;

use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::encode::{Fmt, Scope, Sink};
use super::process::ProcessStats;
use super::samples;
use super::snapshot::{Description, EventQueue, Exporter, FeedHealth, JobList, Snapshot};
use crate::model::JobKind;

/// One metric family.
pub struct Family {
    /// As scraped: with the unit's suffix, and `_total` for a counter.
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) metric_type: MetricType,
    pub(super) unit: Option<BaseUnit>,
    /// The family's own labels, in order; a sample's values for them follow its scope's labels
    /// (see [`Scope`]).
    pub(super) labels: &'static [&'static str],
    pub(super) samples: Samples,
}

/// The base units the families use (prometheus-client appends them to the name).
#[derive(Clone, Copy)]
pub(super) enum BaseUnit {
    Seconds,
    Bytes,
}

type JobSamples = fn(&mut Sink<'_, '_>, &Scope<'_>, &JobList) -> Fmt;
type DescriptionSamples = fn(&mut Sink<'_, '_>, &Scope<'_>, &Description) -> Fmt;
type FeedSamples = fn(&mut Sink<'_, '_>, &Scope<'_>, &FeedHealth<'_>) -> Fmt;

/// What a family's samples are about, and the function that writes them from the snapshot.
#[derive(Clone, Copy)]
pub(super) enum Samples {
    /// Per datastore whose configuration polls this job kind: from its job list.
    Jobs(JobKind, JobSamples),
    /// Per datastore with `polling.datastore_health`: from its description.
    Description(DescriptionSamples),
    /// Per feed, with a `feed` label: each datastore's (its job listings, its description), then
    /// each `[[discovery]]` entry's and the event consumer's.
    Feeds(FeedSamples),
    /// About the exporter itself: discovery, configuration, API use, the build.
    Exporter(fn(&mut Sink<'_, '_>, &Exporter) -> Fmt),
    /// About the event consumer (`[events]` only).
    EventQueue(fn(&mut Sink<'_, '_>, &EventQueue) -> Fmt),
    /// One value of this process, read from `/proc` at each scrape.
    Process(fn(&ProcessStats) -> f64),
}

impl Samples {
    /// Whether the family has samples per datastore (written datastore by datastore).
    pub(super) const fn per_datastore(self) -> bool {
        matches!(
            self,
            Samples::Jobs(..) | Samples::Description(_) | Samples::Feeds(_)
        )
    }

    /// Whether the family has samples about the exporter or the things it follows that are not
    /// datastores (in a per-datastore family: written after the datastores').
    pub(super) const fn exporter_wide(self) -> bool {
        matches!(
            self,
            Samples::Exporter(_) | Samples::EventQueue(_) | Samples::Feeds(_)
        )
    }
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
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
    pub(super) fn describe<'e>(
        &self,
        encoder: &'e mut DescriptorEncoder,
    ) -> Result<MetricEncoder<'e>, Error> {
        static SECONDS: Unit = Unit::Seconds;
        static BYTES: Unit = Unit::Bytes;
        let unit = self.unit.map(|unit| match unit {
            BaseUnit::Seconds => &SECONDS,
            BaseUnit::Bytes => &BYTES,
        });
        encoder.encode_descriptor(self.base_name(), self.help, unit, self.metric_type)
    }

    /// Whether the family is written at all for `snapshot`: the event path's families only with
    /// `[events]` (or when no exporter-wide values are encoded: headers).
    pub(super) fn shown(&self, snapshot: &Snapshot) -> bool {
        match (self.samples, &snapshot.exporter) {
            (Samples::EventQueue(_), Some(exporter)) => exporter.events.is_some(),
            _ => true,
        }
    }

    /// Writes this family's samples of `snapshot`: datastore by datastore, or the exporter's.
    pub(super) fn write(&self, m: &mut Sink<'_, '_>, snapshot: &Snapshot) -> Fmt {
        match self.samples {
            Samples::Jobs(kind, write) => {
                for ds in &snapshot.datastores {
                    if let Some(jobs) = ds.jobs(kind) {
                        write(m, &ds.scope(), jobs)?;
                    }
                }
            }
            Samples::Description(write) => {
                for ds in &snapshot.datastores {
                    if let Some(description) = &ds.description {
                        write(m, &ds.scope(), description)?;
                    }
                }
            }
            Samples::Feeds(write) => samples::each_feed(m, snapshot, write)?,
            Samples::Exporter(write) => {
                if let Some(exporter) = &snapshot.exporter {
                    write(m, exporter)?;
                }
            }
            Samples::EventQueue(write) => {
                if let Some(events) = snapshot.exporter.as_ref().and_then(|e| e.events.as_ref()) {
                    write(m, events)?;
                }
            }
            Samples::Process(value) => {
                if let Some(process) = &snapshot.process {
                    match self.metric_type {
                        MetricType::Counter => m.counter(&[], &[], value(process))?,
                        _ => m.gauge(&[], &[], value(process))?,
                    }
                }
            }
        }
        Ok(())
    }
}

/// Every family of State, in the order written: first those with samples per datastore (export
/// jobs, import jobs with the running ones' progress, the datastore itself, the feeds' health),
/// then the exporter-wide ones (discovery, API use, configuration, the build, the event path). The cache
/// relies on that order (see [`DATASTORE_FAMILIES`]).
pub(super) const FAMILIES: &[Family] = &[
    Family {
        name: "healthlake_export_jobs",
        help: "Export jobs in each status, as last listed; from the exporter's own polling of HealthLake ListFHIRExportJobs.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["status"],
        samples: Samples::Jobs(JobKind::Export, samples::job_counts),
    },
    Family {
        name: "healthlake_export_job_duration_seconds",
        help: "EndTime - SubmitTime of ended export jobs; time since SubmitTime of unfinished ones, as of the scrape. Only the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRExportJobs.",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Seconds),
        labels: &["job_id", "job_name", "status"],
        samples: Samples::Jobs(JobKind::Export, samples::job_durations),
    },
    Family {
        name: "healthlake_export_job_end_timestamp_seconds",
        help: "EndTime (Unix seconds) of each export job that ended FAILED, COMPLETED_WITH_ERRORS or CANCEL_FAILED within polling.ended_job_window (without an EndTime: when the exporter first saw it ended); from the exporter's own polling of HealthLake ListFHIRExportJobs.",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Seconds),
        labels: &["job_id", "job_name", "status"],
        samples: Samples::Jobs(JobKind::Export, samples::ended_jobs),
    },
    Family {
        name: "healthlake_export_jobs_finished_total",
        help: "Export jobs seen entering a terminal status while the exporter runs, each job id at most once per status (jobs already finished at its first poll are not counted); from the exporter's own polling of HealthLake ListFHIRExportJobs.",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &["status"],
        samples: Samples::Jobs(JobKind::Export, samples::finished_jobs),
    },
    Family {
        name: "healthlake_export_oldest_active_job_age_seconds",
        help: "Seconds since the oldest unfinished export job was submitted, as of the scrape; 0 when none is running; from the exporter's own polling of HealthLake ListFHIRExportJobs.",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Seconds),
        labels: &[],
        samples: Samples::Jobs(JobKind::Export, samples::oldest_active_job),
    },
    Family {
        name: "healthlake_import_jobs",
        help: "Import jobs in each status, as last listed; from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["status"],
        samples: Samples::Jobs(JobKind::Import, samples::job_counts),
    },
    Family {
        name: "healthlake_import_job_duration_seconds",
        help: "EndTime - SubmitTime of ended import jobs; time since SubmitTime of unfinished ones, as of the scrape. Only the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Seconds),
        labels: &["job_id", "job_name", "status"],
        samples: Samples::Jobs(JobKind::Import, samples::job_durations),
    },
    Family {
        name: "healthlake_import_job_end_timestamp_seconds",
        help: "EndTime (Unix seconds) of each import job that ended FAILED, COMPLETED_WITH_ERRORS or CANCEL_FAILED within polling.ended_job_window (without an EndTime: when the exporter first saw it ended); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Seconds),
        labels: &["job_id", "job_name", "status"],
        samples: Samples::Jobs(JobKind::Import, samples::ended_jobs),
    },
    Family {
        name: "healthlake_import_jobs_finished_total",
        help: "Import jobs seen entering a terminal status while the exporter runs, each job id at most once per status (jobs already finished at its first poll are not counted); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &["status"],
        samples: Samples::Jobs(JobKind::Import, samples::finished_jobs),
    },
    Family {
        name: "healthlake_import_oldest_active_job_age_seconds",
        help: "Seconds since the oldest unfinished import job was submitted, as of the scrape; 0 when none is running; from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Seconds),
        labels: &[],
        samples: Samples::Jobs(JobKind::Import, samples::oldest_active_job),
    },
    Family {
        name: "healthlake_import_job_scanned_files",
        help: "Files scanned of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["job_id", "job_name"],
        samples: Samples::Jobs(JobKind::Import, |m, ds, jobs| samples::progress(m, ds, jobs, |p| p.files_scanned)),
    },
    Family {
        name: "healthlake_import_job_scanned_bytes",
        help: "Size of the files scanned (from TotalSizeOfScannedFilesInMB, 1 MB = 10^6 bytes) of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Bytes),
        labels: &["job_id", "job_name"],
        samples: Samples::Jobs(JobKind::Import, |m, ds, jobs| samples::progress(m, ds, jobs, |p| p.scanned_bytes)),
    },
    Family {
        name: "healthlake_import_job_imported_files",
        help: "Files imported of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["job_id", "job_name"],
        samples: Samples::Jobs(JobKind::Import, |m, ds, jobs| samples::progress(m, ds, jobs, |p| p.files_imported)),
    },
    Family {
        name: "healthlake_import_job_scanned_resources",
        help: "FHIR resources scanned of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["job_id", "job_name"],
        samples: Samples::Jobs(JobKind::Import, |m, ds, jobs| samples::progress(m, ds, jobs, |p| p.resources_scanned)),
    },
    Family {
        name: "healthlake_import_job_imported_resources",
        help: "FHIR resources imported of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["job_id", "job_name"],
        samples: Samples::Jobs(JobKind::Import, |m, ds, jobs| samples::progress(m, ds, jobs, |p| p.resources_imported)),
    },
    Family {
        name: "healthlake_import_job_failed_resources",
        help: "FHIR resources that failed because of their input (customer error) of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["job_id", "job_name"],
        samples: Samples::Jobs(JobKind::Import, |m, ds, jobs| samples::progress(m, ds, jobs, |p| p.resources_failed)),
    },
    Family {
        name: "healthlake_import_job_failed_files",
        help: "Files that could not be read because of their input (customer error) of each running import job (JobProgressReport), among the most recently submitted jobs (polling.job_series_limit); from the exporter's own polling of HealthLake ListFHIRImportJobs.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["job_id", "job_name"],
        samples: Samples::Jobs(JobKind::Import, |m, ds, jobs| samples::progress(m, ds, jobs, |p| p.files_failed)),
    },
    Family {
        name: "healthlake_datastore_status",
        help: "1 for the datastore's status as DescribeFHIRDatastore last reported it, 0 for every other status (only with polling.datastore_health).",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["status"],
        samples: Samples::Description(samples::datastore_status),
    },
    Family {
        name: "healthlake_datastore_info",
        help: "Always 1; the labels say the datastore's FHIR version and ARN (only with polling.datastore_health).",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["fhir_version", "arn"],
        samples: Samples::Description(samples::datastore_info),
    },
    Family {
        name: "healthlake_feed_up",
        help: "1 if the feed's last poll succeeded, else 0. feed: export and import (the datastore's ListFHIRExportJobs or ListFHIRImportJobs listing; also 0 once none succeeded within 2 x polling.interval + polling.timeout), describe (its DescribeFHIRDatastore, from the first call on; stale after 2 x polling.datastore_interval + polling.timeout), discovery (a [[discovery]] entry's ListFHIRDatastores), events (the event consumer's SQS ReceiveMessage).",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["feed"],
        samples: Samples::Feeds(samples::feed_up),
    },
    Family {
        name: "healthlake_feed_errors_total",
        help: "Failed polls of the feed by reason (one per poll, not per retry; for events, failed SQS calls of the consumer and their refused entries).",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &["feed", "reason"],
        samples: Samples::Feeds(samples::feed_errors),
    },
    Family {
        name: "healthlake_feed_last_poll_duration_seconds",
        help: "Wall time of the feed's last poll, successful or not (all pages and retries; for events, the last ReceiveMessage, a long poll while the queue is empty).",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Seconds),
        labels: &["feed"],
        samples: Samples::Feeds(samples::feed_last_poll_duration),
    },
    Family {
        name: "healthlake_feed_last_success_timestamp_seconds",
        help: "Unix time at which the feed's last successful poll ended.",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Seconds),
        labels: &["feed"],
        samples: Samples::Feeds(samples::feed_last_success),
    },
    Family {
        name: "healthlake_discovery_datastores",
        help: "Datastores the last successful ListFHIRDatastores of this [[discovery]] entry found.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &[],
        samples: Samples::Exporter(samples::discovery_datastores),
    },
    Family {
        name: "healthlake_api_requests_total",
        help: "HealthLake API calls the exporter made, by operation and result (success or the error reason; one per call, SDK retries inside a call included in it). They share the account's quota with your own tools.",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &["operation", "result"],
        samples: Samples::Exporter(samples::api_requests),
    },
    Family {
        name: "healthlake_api_budget_wait_seconds_total",
        help: "Seconds API calls waited for a slot of the request budget (polling.max_requests_per_second), all accounts and regions together.",
        metric_type: MetricType::Counter,
        unit: Some(BaseUnit::Seconds),
        labels: &[],
        samples: Samples::Exporter(|m, e| m.counter(&[], &[], e.api_wait_seconds)),
    },
    Family {
        name: "healthlake_exporter_config_last_reload_successful",
        help: "1 if the last configuration (re)load succeeded, 0 if it failed and the previous configuration is still in use.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &[],
        samples: Samples::Exporter(|m, e| m.flag(&[], &[], e.reload_successful)),
    },
    Family {
        name: "healthlake_exporter_config_last_reload_success_timestamp_seconds",
        help: "Unix time of the last successful configuration (re)load.",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Seconds),
        labels: &[],
        samples: Samples::Exporter(|m, e| m.gauge(&[], &[], e.reload_success_time)),
    },
    Family {
        name: "healthlake_exporter_first_polls_pending",
        help: "First polls not attempted yet: each datastore's job lists and description, and each [[discovery]] entry's listing, including datastores a reload or discovery just added. /readyz waits for them only at start, and at most polling.timeout + the start spread + 2s.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &[],
        samples: Samples::Exporter(|m, e| m.gauge(&[], &[], e.first_polls_pending as f64)),
    },
    Family {
        name: "healthlake_exporter_tls_certificate_last_load_successful",
        help: "1 if the TLS certificate files were last loaded successfully, 0 if they hold a pair that cannot be used (mid-rotation or broken; the previous certificate stays in service). Only with server.tls.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &[],
        samples: Samples::Exporter(samples::certificate_loaded),
    },
    Family {
        name: "healthlake_exporter_build_info",
        help: "Always 1; the labels say which healthlake-exporter is running: version, source revision and the rustc that built it.",
        metric_type: MetricType::Gauge,
        unit: None,
        labels: &["version", "revision", "rustc_version"],
        samples: Samples::Exporter(samples::build_info),
    },
    Family {
        name: "healthlake_events_received_total",
        help: "SQS messages the event consumer received.",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &[],
        samples: Samples::EventQueue(|m, q| m.counter(&[], &[], q.received)),
    },
    Family {
        name: "healthlake_events_redelivered_total",
        help: "Received SQS messages that SQS had delivered before (ApproximateReceiveCount above 1): the exporter stopped, or could not delete or keep hidden a message it held. 0 in steady state.",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &[],
        samples: Samples::EventQueue(|m, q| m.counter(&[], &[], q.redelivered)),
    },
    Family {
        name: "healthlake_events_applied_total",
        help: "HealthLake events whose refresh (of the datastores they name, or discovery) has finished; their messages are deleted.",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &[],
        samples: Samples::EventQueue(|m, q| m.counter(&[], &[], q.applied)),
    },
    Family {
        name: "healthlake_events_ignored_total",
        help: "HealthLake events naming no datastore this replica follows (another shard's, or unfollowed); deleted.",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &[],
        samples: Samples::EventQueue(|m, q| m.counter(&[], &[], q.ignored)),
    },
    Family {
        name: "healthlake_events_malformed_total",
        help: "Messages that are not EventBridge events from aws.healthlake (not JSON, no source or detail-type, another source); deleted.",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &[],
        samples: Samples::EventQueue(|m, q| m.counter(&[], &[], q.malformed)),
    },
    Family {
        name: "healthlake_events_refreshes_total",
        help: "Listings run because of events (one per datastore for events coalesced together).",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &[],
        samples: Samples::EventQueue(|m, q| m.counter(&[], &[], q.refreshes)),
    },
    Family {
        name: "healthlake_events_newest_applied_event_timestamp_seconds",
        help: "EventBridge time of the newest applied event (age: time() - this); absent until one is applied.",
        metric_type: MetricType::Gauge,
        unit: Some(BaseUnit::Seconds),
        labels: &[],
        samples: Samples::EventQueue(samples::newest_applied_event),
    },
    Family {
        name: "healthlake_events_unannounced_changes_total",
        help: "Jobs a scheduled (reconciliation) poll found entering a terminal status that no event had announced first.",
        metric_type: MetricType::Counter,
        unit: None,
        labels: &[],
        samples: Samples::EventQueue(|m, q| m.counter(&[], &[], q.unannounced)),
    },
];

/// How many families have samples per datastore: the first ones of [`FAMILIES`] (the cache keeps
/// one piece per datastore for each). Checked when compiling: no later family has any.
pub(super) const DATASTORE_FAMILIES: usize = {
    let mut n = 0;
    while n < FAMILIES.len() && FAMILIES[n].samples.per_datastore() {
        n += 1;
    }
    let mut later = n;
    while later < FAMILIES.len() {
        assert!(
            !FAMILIES[later].samples.per_datastore(),
            "families with samples per datastore come first"
        );
        later += 1;
    }
    n
};

/// The names of `families`, as scraped.
pub(super) const fn names<const N: usize>(families: &[Family]) -> [&'static str; N] {
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        names[i] = families[i].name;
        i += 1;
    }
    names
}

/// Every metric family name this exporter writes from State (as scraped, with suffixes).
pub const FAMILY_NAMES: [&str; FAMILIES.len()] = names(FAMILIES);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_are_unique_and_say_their_unit_and_type() {
        let all = || FAMILIES.iter().chain(super::super::process::PROCESS);
        let names: std::collections::HashSet<_> = all().map(|f| f.name).collect();
        assert_eq!(names.len(), all().count());
        for family in all() {
            let prefix = matches!(family.samples, Samples::Process(_)).then_some("process_");
            assert!(
                family.name.starts_with(prefix.unwrap_or("healthlake_")),
                "{}",
                family.name
            );
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
