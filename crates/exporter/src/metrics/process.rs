//! The standard `process_*` families that every Prometheus exporter serves (the set of
//! client_golang's process collector), so the usual "exporter memory/CPU/fds" dashboards and alerts
//! work unchanged. Read from `/proc/self` at scrape time by the `procfs` crate: a few system calls
//! per scrape, nothing cached. Where `/proc` cannot be read (not Linux), nothing is written.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::families::{encode_collector, EOF};
use super::Format;

/// The families this module writes, as named in the exposition and in PromQL.
pub const PROCESS_FAMILY_NAMES: [&str; 7] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_threads",
];

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
        let text = encode_collector(Box::new(self), format)?;
        Ok(text.strip_suffix(EOF).unwrap_or(&text).to_owned())
    }
}

impl Collector for ProcessStats {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(self.cpu_seconds);
        let m = e.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds.",
            Some(&Unit::Seconds),
            counter.metric_type(),
        )?;
        counter.encode(m)?;
        let gauges: [(&str, &str, Option<Unit>, f64); 6] = [
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(Unit::Bytes),
                self.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(Unit::Bytes),
                self.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                self.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                self.max_fds,
            ),
            (
                "process_start_time",
                "Start time of the process since unix epoch in seconds.",
                Some(Unit::Seconds),
                self.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                None,
                self.threads,
            ),
        ];
        for (name, help, unit, value) in gauges {
            let gauge = ConstGauge::new(value);
            let m = e.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?;
            gauge.encode(m)?;
        }
        Ok(())
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
        assert!(stats.cpu_seconds >= 0.0, "{stats:?}");
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
