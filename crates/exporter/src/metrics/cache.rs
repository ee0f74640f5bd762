//! The `/metrics` cache: each datastore's samples encoded once per change of its record and kept
//! only compressed, so a scrape streams the pieces (see `body`) and writes only the values that
//! depend on the scrape time. See the module docs of `metrics` for the design.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::body::{MetricsBody, Parts};
use super::encode::Fmt;
use super::families::DATASTORE_FAMILIES;
use super::pieces::{encode_headers, Encoded, ExporterPieces, Piece};
use super::process::ProcessStats;
use super::snapshot::{Exporter, ExporterKey, Snapshot};
use super::{Format, RenderError};
use crate::state::{Datastore, State};

/// Where a scrape's bytes for one datastore come from, kept until its record changes.
///
/// Holds the datastores seen by the last scrape, and for each the encoded pieces of the formats
/// scraped since its last change, compressed only. Entries of datastores no longer in State are
/// dropped when the datastore list changes (a reload). One per server, shared by its connections.
#[derive(Debug, Default)]
pub struct MetricsCache {
    inner: Mutex<Inner>,
    /// Per format, held while a scrape encodes the datastores that changed: a concurrent scrape
    /// waits and then shares those encodings instead of making (and holding) copies of its own.
    encoding: [Mutex<()>; 2],
    /// Datastore pieces encoded since the start (one per datastore, format and change).
    encodes: AtomicU64,
    /// Whether each body ends with the `process_*` families (read at scrape time).
    process_metrics: bool,
}

/// What a [`MetricsCache`] holds and has done, for tests and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// Datastores with an entry: those of the datastore list last scraped.
    pub datastores: usize,
    /// Datastore pieces encoded since the start (one per datastore, format and change).
    pub encodes: u64,
    /// Bytes the cached pieces and their tables take (compressed text, segment tables).
    pub bytes: usize,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    /// The datastore list the entries were built for (compared by pointer).
    list: Option<Arc<[Arc<Datastore>]>>,
    /// By the address of the `Arc<Datastore>`, which the entry holds so the address stays unique.
    entries: HashMap<usize, Entry>,
    /// Per format: the per-datastore families' headers, written once.
    headers: [Option<Arc<[Piece; DATASTORE_FAMILIES]>>; 2],
    /// Per format: the exporter-wide samples, for the values they were encoded from.
    exporter: [Option<(ExporterKey, Arc<ExporterPieces>)>; 2],
}

#[derive(Debug)]
pub(super) struct Entry {
    _datastore: Arc<Datastore>,
    formats: [Option<Arc<Encoded>>; 2],
}

/// One scrape's question to the cache.
struct Scrape<'a> {
    state: &'a State,
    list: &'a Arc<[Arc<Datastore>]>,
    now: f64,
    format: Format,
    /// What the exporter-wide values are read from now.
    exporter: ExporterKey,
}

impl MetricsCache {
    /// A cache whose bodies hold State's families only (what [`super::render_uncached`] writes).
    pub fn new() -> MetricsCache {
        MetricsCache::default()
    }

    /// A cache whose bodies also end with the `process_*` families of this process, read from
    /// `/proc` at each scrape: what `/metrics` serves.
    pub fn with_process_metrics() -> MetricsCache {
        MetricsCache {
            process_metrics: true,
            ..MetricsCache::default()
        }
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        let headers = |pieces: &Arc<[Piece; DATASTORE_FAMILIES]>| {
            pieces.iter().map(Piece::bytes).sum::<usize>()
        };
        let bytes = inner
            .entries
            .values()
            .flat_map(|e| e.formats.iter().flatten())
            .map(|e| e.bytes())
            .sum::<usize>()
            + inner.headers.iter().flatten().map(headers).sum::<usize>()
            + inner
                .exporter
                .iter()
                .flatten()
                .map(|(_, p)| p.bytes())
                .sum::<usize>();
        CacheStats {
            datastores: inner.entries.len(),
            encodes: self.encodes.load(Ordering::Relaxed),
            bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every field is replaced whole; a panicking holder cannot leave one half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `/metrics` body for `state` as of `now`, gzip-compressed when `gzip`, in one piece: the
    /// same bytes as [`render_uncached`](super::render_uncached) (after decompression). For tests
    /// and benchmarks; the server streams [`MetricsCache::body`].
    pub fn render(
        &self,
        state: &Arc<State>,
        now: f64,
        format: Format,
        gzip: bool,
    ) -> Result<Vec<u8>, RenderError> {
        let body = self.body(state, now, format, gzip)?;
        let mut out = Vec::with_capacity(usize::try_from(body.len()).unwrap_or(0));
        for chunk in body {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// The `/metrics` body for `state` as of `now`, gzip-compressed when `gzip`, as a stream of
    /// chunks of about [`CHUNK`](super::CHUNK) bytes made from the cached pieces as the client
    /// reads them. What one scrape holds of its own is a chunk, the time-dependent values being
    /// written and references to the shared pieces, whatever the body's size and however many
    /// scrapes run.
    ///
    /// Takes each datastore's record lock once, briefly, to read its version (and to copy it when
    /// it changed); encodes only the datastores that changed since the last scrape of `format`.
    pub fn body(
        &self,
        state: &Arc<State>,
        now: f64,
        format: Format,
        gzip: bool,
    ) -> Result<MetricsBody, RenderError> {
        let list = state.datastores();
        let scrape = Scrape {
            state,
            list: &list,
            now,
            format,
            // Read once: the cached exporter-wide pieces hold the event values of their key.
            exporter: Exporter::key(state),
        };
        let cached = match self.cached(&scrape) {
            Ok(done) => done,
            Err(_) => {
                // One scrape per format encodes what changed; the others wait for it and share.
                let _encoding = self
                    .encoding
                    .get(format.index())
                    .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner));
                match self.cached(&scrape) {
                    Ok(done) => done,
                    Err(partial) => self.encode_stale(scrape, partial)?,
                }
            }
        };
        let process = match self.process_metrics.then(ProcessStats::read).flatten() {
            Some(stats) => stats.encode(format)?,
            None => String::new(),
        };
        let (headers, exporter, encoded) = cached;
        let parts = Parts {
            format,
            now,
            headers,
            encoded,
            exporter,
            process,
        };
        Ok(MetricsBody::new(parts, gzip))
    }

    /// What the cache holds for the scrape: everything (`Ok`), or what it holds and the datastores
    /// (index, previous encoding) that need encoding (`Err`).
    fn cached(&self, scrape: &Scrape<'_>) -> Result<Cached, Partial> {
        let (list, f) = (scrape.list, scrape.format.index());
        let versions: Vec<u64> = list.iter().map(|ds| ds.record().version).collect();
        let mut inner = self.lock();
        if !inner.list.as_ref().is_some_and(|l| Arc::ptr_eq(l, list)) {
            inner.adopt(list);
        }
        let exporter = match inner.exporter.get(f) {
            Some(Some((key, pieces))) if *key == scrape.exporter => Some(Arc::clone(pieces)),
            _ => None,
        };
        let mut encoded = Vec::with_capacity(list.len());
        let mut stale = Vec::new();
        for (i, (ds, version)) in list.iter().zip(&versions).enumerate() {
            let cached = inner
                .entries
                .get(&key(ds))
                .and_then(|entry| entry.formats.get(f).cloned().flatten());
            match cached {
                Some(e) if e.version == *version => encoded.push(Some(e)),
                previous => {
                    encoded.push(None);
                    stale.push((i, previous));
                }
            }
        }
        let headers = inner.headers.get(f).cloned().flatten();
        match (headers, exporter) {
            (Some(headers), Some(exporter)) if stale.is_empty() => {
                Ok((headers, exporter, encoded.into_iter().flatten().collect()))
            }
            (headers, exporter) => Err((headers, exporter, encoded, stale)),
        }
    }

    /// Encodes what [`MetricsCache::cached`] found missing and keeps it. Encoding happens outside
    /// the cache lock: scrapes of what is cached go on meanwhile.
    fn encode_stale(&self, scrape: Scrape<'_>, partial: Partial) -> Result<Cached, RenderError> {
        let (headers, exporter, mut encoded, stale) = partial;
        let (f, at) = (scrape.format.index(), (scrape.now, scrape.format));
        let mut compress = None;
        let headers = match headers {
            Some(headers) => headers,
            None => {
                let headers = encode_headers(scrape.format, &mut compress)?;
                if let Some(slot) = self.lock().headers.get_mut(f) {
                    *slot = Some(Arc::clone(&headers));
                }
                headers
            }
        };
        let exporter = match exporter {
            Some(exporter) => exporter,
            None => {
                let key = scrape.exporter;
                let values = Exporter::of(scrape.state, key.events.clone());
                let pieces = Arc::new(ExporterPieces::new(values, at, &headers, &mut compress)?);
                if let Some(slot) = self.lock().exporter.get_mut(f) {
                    *slot = Some((key, Arc::clone(&pieces)));
                }
                pieces
            }
        };
        // Kept as they are made, so a scrape waiting on this one finds them.
        for (i, previous) in stale {
            let Some(ds) = scrape.list.get(i) else {
                continue;
            };
            let snapshot = Arc::new(Snapshot::of_datastore(ds));
            let e = Encoded::new(snapshot, at, &headers, previous.as_deref(), &mut compress)?;
            let e = Arc::new(e);
            drop(previous);
            self.encodes.fetch_add(1, Ordering::Relaxed);
            if let Some(slot) = encoded.get_mut(i) {
                *slot = Some(Arc::clone(&e));
            }
            // Absent when a reload removed the datastore meanwhile: then it is not kept.
            if let Some(entry) = self.lock().entries.get_mut(&key(ds)) {
                if let Some(slot) = entry.formats.get_mut(f) {
                    *slot = Some(e);
                }
            }
        }
        let encoded: Vec<Arc<Encoded>> = encoded.into_iter().flatten().collect();
        if encoded.len() != scrape.list.len() {
            return Err(RenderError::Shape("a datastore was not encoded"));
        }
        Ok((headers, exporter, encoded))
    }
}

/// Everything a scrape needs from the cache: the per-datastore families' headers, the
/// exporter-wide samples, and the datastores' pieces in order.
type Cached = (
    Arc<[Piece; DATASTORE_FAMILIES]>,
    Arc<ExporterPieces>,
    Vec<Arc<Encoded>>,
);
/// What the cache holds, and what it lacks: (index in the list, previous encoding).
type Partial = (
    Option<Arc<[Piece; DATASTORE_FAMILIES]>>,
    Option<Arc<ExporterPieces>>,
    Vec<Option<Arc<Encoded>>>,
    Vec<(usize, Option<Arc<Encoded>>)>,
);

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

/// Writes `value` and a newline into `out` as prometheus-client writes a gauge value in `format`.
pub(super) fn dynamic_value(out: &mut String, format: Format, value: f64) {
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
pub(super) fn library_value(format: Format, value: f64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_values_are_formatted_as_the_library_does() {
        // (value, Prometheus text, OpenMetrics). The non-finite ones are never written in practice
        // (`now − submitted` is finite); "inf" is prometheus-client 0.26's OpenMetrics spelling.
        let cases = [
            (0.0, "0.0", "0.0"),
            (1.0, "1.0", "1.0"),
            (0.1, "0.1", "0.1"),
            (123_456.789, "123456.789", "123456.789"),
            (1e21, "1e21", "1e21"),
            (1.5e-7, "1.5e-7", "1.5e-7"),
            (3_600.000_000_1, "3600.0000001", "3600.0000001"),
            (f64::INFINITY, "+Inf", "inf"),
            (f64::NAN, "NaN", "NaN"),
        ];
        let mut out = String::new();
        for (value, text, openmetrics) in cases {
            for (format, expected) in [
                (Format::Prometheus, text),
                (Format::OpenMetrics, openmetrics),
            ] {
                dynamic_value(&mut out, format, value);
                assert_eq!(out, format!("{expected}\n"), "{format:?} {value}");
                // What the cache writes is what the library writes in a full encoding.
                assert_eq!(library_value(format, value), expected, "{format:?} {value}");
            }
        }
    }
}
