//! One encoding pass: families of a [`Snapshot`] written by prometheus-client, so escaping, float
//! formatting and the `_total`/`UNIT` rules are the library's. The reference encoding is one pass
//! over every family; the cache makes one pass per family and datastore, which tells it where
//! each family's text starts and ends without reading the text back.

use std::fmt::Error;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeLabel, EncodeLabelSet, LabelSetEncoder,
    MetricEncoder, NoLabelSet,
};
use prometheus_client::registry::Registry;

use super::families::Family;
use super::snapshot::Snapshot;
use super::Format;

pub(super) type Fmt = Result<(), Error>;

/// The labels of what a sample is about, written before the family's own: a datastore's
/// `datastore_id` and `datastore_name`, a discovery entry's `discovery` and `region`, or none.
pub(super) type Scope<'a> = [(&'static str, &'a str)];

/// Per sample offered, in order: `Some(since)` when its value is `now − since` (it depends on the
/// scrape time), `None` when it does not.
pub(super) type Marks = Vec<Option<f64>>;

/// The time-dependent value of a sample marked with `since`, as the families compute it.
pub(super) fn elapsed_value(now: f64, since: f64) -> f64 {
    (now - since).max(0.0)
}

/// Where a family's sample functions write: labels the family names once (in [`Family::labels`])
/// get the values given in that order, after the scope's.
pub(super) struct Sink<'m, 'e> {
    metric: &'m mut MetricEncoder<'e>,
    labels: &'static [&'static str],
    now: f64,
    /// Which samples to write, by position among those offered: all, or one run of a cached piece.
    window: Range<usize>,
    marks: Marks,
}

impl Sink<'_, '_> {
    /// The scrape time of this pass.
    pub(super) fn now(&self) -> f64 {
        self.now
    }

    pub(super) fn gauge(&mut self, scope: &Scope<'_>, values: &[&str], value: f64) -> Fmt {
        self.offer(scope, values, None, |m| m.encode_gauge(&value))
    }

    pub(super) fn counter<V: EncodeCounterValue>(
        &mut self,
        scope: &Scope<'_>,
        values: &[&str],
        value: V,
    ) -> Fmt {
        self.offer(scope, values, None, |m| {
            m.encode_counter::<NoLabelSet, _, f64>(&value, None)
        })
    }

    /// A gauge whose value is the time since `since`, as of the scrape.
    pub(super) fn elapsed(&mut self, scope: &Scope<'_>, values: &[&str], since: f64) -> Fmt {
        let value = elapsed_value(self.now, since);
        self.offer(scope, values, Some(since), |m| m.encode_gauge(&value))
    }

    /// 1 or 0.
    pub(super) fn flag(&mut self, scope: &Scope<'_>, values: &[&str], on: bool) -> Fmt {
        self.gauge(scope, values, if on { 1.0 } else { 0.0 })
    }

    fn offer(
        &mut self,
        scope: &Scope<'_>,
        values: &[&str],
        since: Option<f64>,
        write: impl FnOnce(&mut MetricEncoder<'_>) -> Fmt,
    ) -> Fmt {
        debug_assert_eq!(values.len(), self.labels.len(), "{:?}", self.labels);
        if self.window.contains(&self.marks.len()) {
            let labels = SampleLabels {
                scope,
                names: self.labels,
                values,
            };
            write(&mut self.metric.encode_family(&labels)?)?;
        }
        self.marks.push(since);
        Ok(())
    }
}

/// A sample's label set: the scope's labels, then the family's names with the values given.
struct SampleLabels<'a> {
    scope: &'a Scope<'a>,
    names: &'static [&'static str],
    values: &'a [&'a str],
}

impl EncodeLabelSet for SampleLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Fmt {
        let own = self.names.iter().copied().zip(self.values.iter().copied());
        for label in self.scope.iter().copied().chain(own) {
            label.encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// One encoding pass: `families`, each with the samples `snapshot` has for it.
#[derive(Debug)]
pub(super) struct Pass {
    pub(super) families: &'static [Family],
    pub(super) snapshot: Arc<Snapshot>,
    /// Fixed per pass, so every series agrees on the time.
    pub(super) now: f64,
    /// Which samples of each family to write (see [`Sink`]).
    pub(super) window: Range<usize>,
    /// Where to put the marks of the samples offered (cached pieces only).
    pub(super) marks: Option<Arc<Mutex<Marks>>>,
}

impl Pass {
    /// Every sample of `families` in `snapshot`.
    pub(super) fn all(families: &'static [Family], snapshot: Arc<Snapshot>, now: f64) -> Pass {
        Pass {
            families,
            snapshot,
            now,
            window: 0..usize::MAX,
            marks: None,
        }
    }

    /// The pass's text in `format`, without OpenMetrics' `# EOF` (the caller ends the body).
    pub(super) fn encode(self, format: Format) -> Result<String, Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode_registry(&mut out, &registry)?
            }
        }
        Ok(out)
    }
}

impl Collector for Pass {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        for family in self.families {
            if !family.shown(&self.snapshot) {
                continue;
            }
            let mut metric = family.describe(&mut encoder)?;
            let mut sink = Sink {
                metric: &mut metric,
                labels: family.labels,
                now: self.now,
                window: self.window.clone(),
                marks: Vec::new(),
            };
            family.write(&mut sink, &self.snapshot)?;
            if let Some(marks) = &self.marks {
                let mut marks = marks.lock().unwrap_or_else(PoisonError::into_inner);
                marks.append(&mut sink.marks);
            }
        }
        Ok(())
    }
}
