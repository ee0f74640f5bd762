//! The standard `process_*` families that every Prometheus exporter serves (the set of
//! client_golang's process collector), so the usual "exporter memory/CPU/fds" dashboards and alerts
//! work unchanged. Read from `/proc/self` at scrape time by the `procfs` crate: a few system calls
//! per scrape, nothing cached. Where `/proc` cannot be read (not Linux), nothing is written.

use std::sync::Arc;

use prometheus_client::metrics::MetricType;

use super::encode::Pass;
use super::families::{names, BaseUnit, Family, Samples};
use super::snapshot::Snapshot;
use super::Format;

/// The families this module writes, in order.
pub(super) const PROCESS: &[Family] = &[
    process_family(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        MetricType::Counter,
        Some(BaseUnit::Seconds),
        |p| p.cpu_seconds,
    ),
    process_family(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        MetricType::Gauge,
        Some(BaseUnit::Bytes),
        |p| p.resident_bytes,
    ),
    process_family(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        MetricType::Gauge,
        Some(BaseUnit::Bytes),
        |p| p.virtual_bytes,
    ),
    process_family(
        "process_open_fds",
        "Number of open file descriptors.",
        MetricType::Gauge,
        None,
        |p| p.open_fds,
    ),
    process_family(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        MetricType::Gauge,
        None,
        |p| p.max_fds,
    ),
    process_family(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        MetricType::Gauge,
        Some(BaseUnit::Seconds),
        |p| p.start_time_seconds,
    ),
    process_family(
        "process_threads",
        "Number of OS threads in the process.",
        MetricType::Gauge,
        None,
        |p| p.threads,
    ),
];

/// A process family: one unlabelled sample.
const fn process_family(
    name: &'static str,
    help: &'static str,
    metric_type: MetricType,
    unit: Option<BaseUnit>,
    value: fn(&ProcessStats) -> f64,
) -> Family {
    Family {
        name,
        help,
        metric_type,
        unit,
        labels: &[],
        samples: Samples::Process(value),
    }
}

/// The families this module writes, as named in the exposition and in PromQL.
pub const PROCESS_FAMILY_NAMES: [&str; PROCESS.len()] = names(PROCESS);

/// One reading of this process's resources.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: f64,
    pub(crate) virtual_bytes: f64,
    pub(crate) open_fds: f64,
    pub(crate) max_fds: f64,
    pub(crate) start_time_seconds: f64,
    pub(crate) threads: f64,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` when it cannot be read.
    pub(crate) fn read() -> Option<ProcessStats> {
        let me = procfs::process::Process::myself().ok()?;
        let stat = me.stat().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        let page = procfs::page_size() as f64;
        // Constant for the life of the process: /proc/stat is read once, not at every scrape.
        static START_TIME: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
        let start_time_seconds = (*START_TIME.get_or_init(|| {
            let boot = procfs::boot_time_secs().ok()? as f64;
            Some(boot + stat.starttime as f64 / ticks)
        }))?;
        let max_fds = me
            .limits()
            .ok()
            .and_then(|l| match l.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(v) => Some(v as f64),
                procfs::process::LimitValue::Unlimited => None,
            })
            .unwrap_or(f64::INFINITY);
        Some(ProcessStats {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_bytes: stat.rss as f64 * page,
            virtual_bytes: stat.vsize as f64,
            open_fds: me.fd_count().ok()? as f64,
            max_fds,
            start_time_seconds,
            threads: stat.num_threads as f64,
        })
    }

    /// The families in `format`, without OpenMetrics' `# EOF` (the caller ends the body).
    pub(crate) fn encode(self, format: Format) -> Result<String, std::fmt::Error> {
        let snapshot = Snapshot {
            process: Some(self),
            ..Snapshot::default()
        };
        Pass::all(PROCESS, Arc::new(snapshot), 0.0).encode(format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read().expect("/proc/self is readable on Linux");
        assert!(stats.resident_bytes > 1_000_000.0, "{stats:?}");
        assert!(stats.virtual_bytes >= stats.resident_bytes, "{stats:?}");
        assert!(
            stats.open_fds >= 3.0 && stats.open_fds <= stats.max_fds,
            "{stats:?}"
        );
        assert!(stats.threads >= 1.0, "{stats:?}");
        let now = crate::model::unix_now();
        assert!(
            stats.start_time_seconds > now - 3600.0 && stats.start_time_seconds <= now + 1.0,
            "{stats:?}"
        );
        // The CPU time is this process's: it grows while the test works (whole clock ticks, so
        // wait for the next one; a deadline, not a fixed amount of work, on a loaded machine).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut work = 0u64;
        loop {
            for i in 0..1_000_000u64 {
                work = std::hint::black_box(work.wrapping_mul(31).wrapping_add(i));
            }
            let now = ProcessStats::read().expect("readable").cpu_seconds;
            if now > stats.cpu_seconds {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "CPU time stuck at {now}"
            );
        }
    }

    #[test]
    fn encodes_the_client_golang_names_in_both_formats() {
        let stats = ProcessStats {
            cpu_seconds: 1.5,
            resident_bytes: 1024.0,
            virtual_bytes: 4096.0,
            open_fds: 9.0,
            max_fds: 1024.0,
            start_time_seconds: 1_700_000_000.0,
            threads: 3.0,
        };
        let text = stats.encode(Format::Prometheus).unwrap();
        for name in PROCESS_FAMILY_NAMES {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing from\n{text}"
            );
        }
        for line in [
            "process_cpu_seconds_total 1.5\n",
            "process_resident_memory_bytes 1024.0\n",
            "process_virtual_memory_bytes 4096.0\n",
            "process_open_fds 9.0\n",
            "process_max_fds 1024.0\n",
            "process_start_time_seconds 1700000000.0\n",
            "process_threads 3.0\n",
            "# TYPE process_cpu_seconds_total counter\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        let open = stats.encode(Format::OpenMetrics).unwrap();
        assert!(
            open.contains("# TYPE process_cpu_seconds counter\n"),
            "{open}"
        );
        assert!(
            open.contains("# UNIT process_cpu_seconds seconds\n"),
            "{open}"
        );
        assert!(open.contains("process_cpu_seconds_total 1.5\n"), "{open}");
        assert!(!open.contains("# EOF"), "{open}");
    }
}
