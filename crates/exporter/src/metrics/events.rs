//! The event path's families (`[events]` only): what the consumer received, applied, ignored and
//! rejected, its health and errors by reason (the same reasons as polling), the time of the newest
//! applied event, and the job changes scheduled polls found that no event had announced — the
//! signal that the rule or the queue is broken while the account is busy.

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::model::ErrorReason;
use crate::state::EventStats;

/// The event families' names, as scraped.
pub const EVENT_FAMILY_NAMES: [&str; 10] = [
    "healthlake_events_up",
    "healthlake_events_received_total",
    "healthlake_events_redelivered_total",
    "healthlake_events_applied_total",
    "healthlake_events_ignored_total",
    "healthlake_events_malformed_total",
    "healthlake_events_refreshes_total",
    "healthlake_events_errors_total",
    "healthlake_events_newest_applied_event_timestamp_seconds",
    "healthlake_events_unannounced_changes_total",
];

/// The values at one scrape (read once, so the families agree with each other).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct EventsSnapshot {
    up: bool,
    received: u64,
    redelivered: u64,
    applied: u64,
    ignored: u64,
    malformed: u64,
    refreshes: u64,
    errors: Vec<(ErrorReason, u64)>,
    newest_applied: Option<f64>,
    unannounced: u64,
}

impl EventsSnapshot {
    pub(super) fn of(stats: &EventStats) -> EventsSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let errors = stats.errors();
        EventsSnapshot {
            up: stats.up.load(Relaxed),
            received: stats.received.load(Relaxed),
            redelivered: stats.redelivered.load(Relaxed),
            applied: stats.applied.load(Relaxed),
            ignored: stats.ignored.load(Relaxed),
            malformed: stats.malformed.load(Relaxed),
            refreshes: stats.refreshes.load(Relaxed),
            errors: ErrorReason::ALL
                .iter()
                .map(|r| (*r, errors.get(r).copied().unwrap_or(0)))
                .collect(),
            newest_applied: stats.newest_applied(),
            unannounced: stats.unannounced_changes.load(Relaxed),
        }
    }

    /// Changes whenever any value does (for the metrics cache's key): the counters only grow, so
    /// their sum does too.
    pub(super) fn key(&self) -> (u64, bool, u64) {
        let sum = [
            self.received,
            self.redelivered,
            self.applied,
            self.ignored,
            self.malformed,
            self.refreshes,
            self.unannounced,
        ]
        .iter()
        .chain(self.errors.iter().map(|(_, n)| n))
        .fold(0u64, |a, b| a.wrapping_add(*b));
        (sum, self.up, self.newest_applied.map_or(0, f64::to_bits))
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Fmt {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, f64>(&value, None)
}

pub(super) fn families(e: &mut DescriptorEncoder, s: &EventsSnapshot) -> Fmt {
    e.encode_descriptor(
        "healthlake_events_up",
        "1 if the last SQS ReceiveMessage of the event consumer succeeded, else 0 (also 0 before the first).",
        None,
        MetricType::Gauge,
    )?
    .encode_gauge(&if s.up { 1.0 } else { 0.0 })?;
    counter(
        e,
        "healthlake_events_received",
        "SQS messages the event consumer received.",
        s.received,
    )?;
    counter(
        e,
        "healthlake_events_redelivered",
        "Received SQS messages that SQS had delivered before (ApproximateReceiveCount above 1): the exporter stopped, or could not delete or keep hidden a message it held. 0 in steady state.",
        s.redelivered,
    )?;
    counter(
        e,
        "healthlake_events_applied",
        "HealthLake events whose refresh (of the datastores they name, or discovery) has finished; their messages are deleted.",
        s.applied,
    )?;
    counter(
        e,
        "healthlake_events_ignored",
        "HealthLake events naming no datastore this replica follows (another shard's, or unfollowed); deleted.",
        s.ignored,
    )?;
    counter(
        e,
        "healthlake_events_malformed",
        "Messages that are not EventBridge events from aws.healthlake (not JSON, no source or detail-type, another source); deleted.",
        s.malformed,
    )?;
    counter(
        e,
        "healthlake_events_refreshes",
        "Listings run because of events (one per datastore for events coalesced together).",
        s.refreshes,
    )?;
    let mut metric = e.encode_descriptor(
        "healthlake_events_errors",
        "Failed SQS calls of the event consumer (ReceiveMessage, ChangeMessageVisibilityBatch, DeleteMessageBatch, and their entries) by reason.",
        None,
        MetricType::Counter,
    )?;
    for (reason, count) in &s.errors {
        metric
            .encode_family(&[("reason", reason.as_str())])?
            .encode_counter::<NoLabelSet, _, f64>(count, None)?;
    }
    let mut metric = e.encode_descriptor(
        "healthlake_events_newest_applied_event_timestamp",
        "EventBridge time of the newest applied event (age: time() - this); absent until one is applied.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    if let Some(time) = s.newest_applied {
        metric.encode_gauge(&time)?;
    }
    counter(
        e,
        "healthlake_events_unannounced_changes",
        "Jobs a scheduled (reconciliation) poll found entering a terminal status that no event had announced first.",
        s.unannounced,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn every_event_family_is_listed_and_rendered() {
        for name in EVENT_FAMILY_NAMES {
            assert!(super::super::FAMILY_NAMES.contains(&name), "{name}");
        }
        let stats = EventStats::default();
        stats.received.fetch_add(3, Ordering::Relaxed);
        stats.error(ErrorReason::Throttled);
        stats.applied_event_at(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        );
        let snapshot = EventsSnapshot::of(&stats);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        #[derive(Debug)]
        struct One(EventsSnapshot);
        impl prometheus_client::collector::Collector for One {
            fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                families(&mut e, &self.0)
            }
        }
        registry.register_collector(Box::new(One(snapshot.clone())));
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in EVENT_FAMILY_NAMES {
            assert!(
                text.contains(&format!("\n{name}")),
                "{name} missing in\n{text}"
            );
        }
        assert!(
            text.contains("healthlake_events_received_total 3\n"),
            "{text}"
        );
        assert!(text.contains("healthlake_events_errors_total{reason=\"throttled\"} 1\n"));
        assert!(text.contains("healthlake_events_errors_total{reason=\"other\"} 0\n"));
        // The key changes with any value.
        stats.ignored.fetch_add(1, Ordering::Relaxed);
        assert_ne!(EventsSnapshot::of(&stats).key(), snapshot.key());
    }
}
