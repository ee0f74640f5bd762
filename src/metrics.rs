//! The metric families and how State is written out in the exposition formats.
//!
//! Metrics are a pure view of State: nothing here talks to AWS or keeps values of its own, so a
//! scrape costs one short lock per datastore and the output can be tested without HTTP or AWS.
//! Values that depend on the scrape time (durations of running jobs, ages) are computed from `now`.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::healthlake::ErrorReason;
use crate::state::{Datastore, Record, State};

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
}

/// Every metric family name this exporter can emit (as scraped, with suffixes).
pub const FAMILY_NAMES: [&str; 11] = [
    "healthlake_export_jobs",
    "healthlake_export_job_duration_seconds",
    "healthlake_export_jobs_finished_total",
    "healthlake_export_oldest_active_job_age_seconds",
    "healthlake_datastore_up",
    "healthlake_poll_duration_seconds",
    "healthlake_last_successful_poll_timestamp_seconds",
    "healthlake_poll_errors_total",
    "healthlake_exporter_build_info",
    "healthlake_exporter_config_last_reload_successful",
    "healthlake_exporter_config_last_reload_success_timestamp_seconds",
];

const SOURCE: &str = "from the exporter's own polling of HealthLake ListFHIRExportJobs";

/// Encodes `state` as of `now` (Unix seconds).
pub fn render(state: &Arc<State>, now: f64, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StateCollector {
        state: Arc::clone(state),
        now,
    }));
    let mut out = String::with_capacity(16 * 1024);
    let result = match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    // Writing to a String cannot fail, and our collector returns only the writer's errors.
    debug_assert!(result.is_ok());
    out
}

/// Label sets are arrays of (name, value) pairs: borrowed from State, so a scrape copies no strings.
type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

/// Reads State on each scrape. `now` is fixed per scrape so every series agrees on the time.
#[derive(Debug)]
struct StateCollector {
    state: Arc<State>,
    now: f64,
}

type Fmt = Result<(), std::fmt::Error>;

impl StateCollector {
    /// Writes one family: a descriptor, then each datastore's samples via `samples`.
    fn family(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        metric_type: MetricType,
        mut samples: impl FnMut(
            &mut prometheus_client::encoding::MetricEncoder,
            &Datastore,
            &Record,
        ) -> Fmt,
    ) -> Fmt {
        let mut metric = encoder.encode_descriptor(name, help, unit, metric_type)?;
        for ds in self.state.datastores().iter() {
            let record = ds.record();
            samples(&mut metric, ds, &record)?;
        }
        Ok(())
    }
}

fn labels(ds: &Datastore) -> Labels<'_, 2> {
    [("datastore_id", &ds.id), ("datastore_name", &ds.name)]
}

fn gauge<L: EncodeLabelSet>(
    metric: &mut prometheus_client::encoding::MetricEncoder,
    labels: &L,
    value: f64,
) -> Fmt {
    metric.encode_family(labels)?.encode_gauge(&value)
}

fn counter<L: EncodeLabelSet>(
    metric: &mut prometheus_client::encoding::MetricEncoder,
    labels: &L,
    value: u64,
) -> Fmt {
    metric
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, f64>(&value, None)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        let now = self.now;
        let e = &mut encoder;

        self.family(
            e,
            "healthlake_export_jobs",
            &format!("Export jobs in each status, as last listed; {SOURCE}."),
            None,
            MetricType::Gauge,
            |m, ds, record| {
                let Some(jobs) = &record.jobs else {
                    return Ok(());
                };
                for (status, count) in &jobs.counts {
                    let status = [("status", status.as_str())];
                    gauge(m, &(labels(ds), status), *count as f64)?;
                }
                Ok(())
            },
        )?;

        self.family(
            e,
            "healthlake_export_job_duration",
            &format!(
                "EndTime - SubmitTime of ended export jobs; time since SubmitTime of unfinished ones, as of the scrape. Only the most recently submitted jobs (polling.job_series_limit); {SOURCE}."
            ),
            Some(&Unit::Seconds),
            MetricType::Gauge,
            |m, ds, record| {
                let Some(jobs) = &record.jobs else { return Ok(()) };
                for job in &jobs.recent {
                    let Some(seconds) = job.duration_seconds(now) else { continue };
                    let job_labels = [
                        ("job_id", job.id.as_str()),
                        ("job_name", job.name.as_deref().unwrap_or("")),
                        ("status", job.status.as_str()),
                    ];
                    gauge(m, &(labels(ds), job_labels), seconds)?;
                }
                Ok(())
            },
        )?;

        self.family(
            e,
            "healthlake_export_jobs_finished",
            &format!(
                "Export jobs seen entering a terminal status while the exporter runs (jobs already finished at its first poll are not counted); {SOURCE}."
            ),
            None,
            MetricType::Counter,
            |m, ds, record| {
                for (status, count) in &record.finished {
                    counter(m, &(labels(ds), [("status", status.as_str())]), *count)?;
                }
                Ok(())
            },
        )?;

        self.family(
            e,
            "healthlake_export_oldest_active_job_age",
            &format!("Seconds since the oldest unfinished export job was submitted, as of the scrape; 0 when none is running; {SOURCE}."),
            Some(&Unit::Seconds),
            MetricType::Gauge,
            |m, ds, record| {
                let Some(jobs) = &record.jobs else { return Ok(()) };
                let age = jobs
                    .oldest_active_submitted
                    .map_or(0.0, |submitted| (now - submitted).max(0.0));
                gauge(m, &labels(ds), age)
            },
        )?;

        self.family(
            e,
            "healthlake_datastore_up",
            "1 if the exporter's last poll of this datastore succeeded, else 0.",
            None,
            MetricType::Gauge,
            |m, ds, record| gauge(m, &labels(ds), if record.health.up { 1.0 } else { 0.0 }),
        )?;

        self.family(
            e,
            "healthlake_poll_duration",
            "Wall time of the exporter's last poll of this datastore (all pages, retries included).",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            |m, ds, record| match record.health.last_poll_seconds {
                Some(seconds) => gauge(m, &labels(ds), seconds),
                None => Ok(()),
            },
        )?;

        self.family(
            e,
            "healthlake_last_successful_poll_timestamp",
            "Unix time at which the exporter's last successful poll of this datastore ended.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            |m, ds, record| match record.health.last_success {
                Some(at) => gauge(m, &labels(ds), at),
                None => Ok(()),
            },
        )?;

        self.family(
            e,
            "healthlake_poll_errors",
            "Failed polls of this datastore by reason (one per poll, not per retry).",
            None,
            MetricType::Counter,
            |m, ds, record| {
                for reason in ErrorReason::ALL {
                    let count = record.health.errors.get(&reason).copied().unwrap_or(0);
                    counter(m, &(labels(ds), [("reason", reason.as_str())]), count)?;
                }
                Ok(())
            },
        )?;

        let reload = self.state.reload_status();
        let mut metric = e.encode_descriptor(
            "healthlake_exporter_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded, 0 if it failed and the previous configuration is still in use.",
            None,
            MetricType::Gauge,
        )?;
        metric.encode_gauge(&if reload.last_successful() { 1.0 } else { 0.0 })?;
        let mut metric = e.encode_descriptor(
            "healthlake_exporter_config_last_reload_success_timestamp",
            "Unix time of the last successful configuration (re)load.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        metric.encode_gauge(&reload.last_success_time())?;

        let build = e.encode_descriptor(
            "healthlake_exporter_build_info",
            "Always 1; the version label says which healthlake-exporter is running.",
            None,
            MetricType::Gauge,
        );
        let mut build = build?;
        gauge(&mut build, &[("version", env!("CARGO_PKG_VERSION"))], 1.0)
    }
}
