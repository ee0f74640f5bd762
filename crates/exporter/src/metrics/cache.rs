//! The `/metrics` cache: each datastore's samples encoded once per change of its record and kept
//! only compressed, so a scrape streams the pieces (see `body`) and writes only the values that
//! depend on the scrape time. See the module docs of `metrics` for the design.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use flate2::Compress;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::body::{MetricsBody, Parts};
use super::events::EventsSnapshot;
use super::families::{encode, split_families, Marks, StateCollector, DATASTORE_FAMILIES, EOF};
use super::gzip::{compressor, deflate, CrcPiece};
use super::process::ProcessStats;
use super::view::{ExporterValues, Fmt, Snapshot, Source};
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
    /// Per format: the exporter-wide families, for the reload status they were encoded with.
    tail: [Option<(ExporterValuesKey, Arc<Piece>)>; 2],
}

/// What the exporter-wide families were encoded from: the reload status, the discovery version,
/// the events snapshot, the certificate status, the API usage version and the first polls pending.
pub(super) type ExporterValuesKey = (
    bool,
    u64,
    u64,
    Option<(u64, bool, u64)>,
    Option<bool>,
    u64,
    usize,
);

#[derive(Debug)]
pub(super) struct Entry {
    _datastore: Arc<Datastore>,
    formats: [Option<Arc<Encoded>>; 2],
}

/// Static text, kept only compressed (see [`deflate`]), with its length and CRC-32.
#[derive(Debug)]
pub(super) struct Piece {
    pub(super) deflated: Box<[u8]>,
    pub(super) len: u32,
    pub(super) crc: CrcPiece,
}

impl Piece {
    fn new(text: &str, compress: &mut Option<Compress>) -> Result<Piece, RenderError> {
        Ok(Piece {
            deflated: deflate(compressor(compress), text.as_bytes()).into_boxed_slice(),
            len: offset(text.len())?,
            crc: CrcPiece::of(text.as_bytes()),
        })
    }
}

/// One datastore's samples of the per-datastore families in one format, as of one record version.
#[derive(Debug)]
pub(super) struct Encoded {
    pub(super) version: u64,
    pub(super) families: [EncodedFamily; DATASTORE_FAMILIES],
    /// Every family's segments, family after family.
    pub(super) segments: Box<[Segment]>,
    /// The segments' static text, each segment compressed by itself (see [`deflate`]). The text
    /// itself is not kept: plain scrapes inflate these while they stream (one representation,
    /// whatever the scrapes ask for).
    pub(super) deflated: Box<[u8]>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct EncodedFamily {
    /// This family's part of [`Encoded::segments`].
    pub(super) segments: Range<u32>,
    /// A keyed hash of the family's static text and the times of its dynamic samples: compressed
    /// segments of a family whose hash (and shape) did not change are carried over to the next
    /// version of the datastore instead of being compressed again.
    pub(super) hash: u64,
}

/// Static text, then, for a sample whose value depends on `now`, that value and `\n`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Segment {
    /// The length of the static text.
    pub(super) len: u32,
    /// Where its compressed form ends in [`Encoded::deflated`] (it starts where the previous
    /// segment's ends).
    pub(super) deflated_end: u32,
    /// The CRC-32 of the static text: a gzip scrape extends its checksum without the text.
    pub(super) crc: CrcPiece,
    pub(super) since: Option<f64>,
}

/// The keys of the family hashes: random per process, so no label value can be chosen to collide.
pub(super) fn family_hasher() -> impl Hasher {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new).build_hasher()
}

pub(super) fn offset(n: usize) -> Result<u32, RenderError> {
    u32::try_from(n).map_err(|_| RenderError::Shape("a datastore's encoding over 4 GiB"))
}

impl Encoded {
    /// Encodes one datastore with prometheus-client, cuts the output into families and segments
    /// and compresses them, reusing the compressed segments of families equal to `previous`'s.
    fn new(
        snapshot: Snapshot,
        now: f64,
        format: Format,
        previous: Option<&Encoded>,
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
        // Each segment's static text, as ranges of `text`.
        let mut text = String::with_capacity(out.len());
        let mut segments = Vec::new();
        let mut ranges: Vec<Range<usize>> = Vec::new();
        let mut families: [EncodedFamily; DATASTORE_FAMILIES] = Default::default();
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
                    len: offset(static_text.len())?,
                    deflated_end: 0,
                    crc: CrcPiece::of(static_text.as_bytes()),
                    since,
                });
                ranges.push(*run..text.len());
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
        drop(out);
        let mut encoded = Encoded {
            version,
            families,
            segments: segments.into_boxed_slice(),
            deflated: Box::default(),
        };
        let previous = previous.filter(|p| !p.deflated.is_empty() || p.segments.is_empty());
        let mut deflated = Vec::with_capacity(text.len() / 6 + 64);
        for f in 0..DATASTORE_FAMILIES {
            let Some(family) = encoded.families.get(f).cloned() else {
                continue;
            };
            match previous.filter(|p| encoded.same_family(f, p)) {
                Some(previous) => {
                    let old = previous
                        .families
                        .get(f)
                        .map_or(0..0, |o| o.segments.clone());
                    for (i, j) in family.segments.clone().zip(old) {
                        deflated.extend_from_slice(
                            previous
                                .deflated
                                .get(previous.deflated_range(j))
                                .unwrap_or_default(),
                        );
                        let end = offset(deflated.len())?;
                        if let Some(segment) = encoded.segment_mut(i) {
                            segment.deflated_end = end;
                        }
                    }
                }
                None => {
                    for i in family.segments.clone() {
                        let range = ranges.get(i as usize).cloned().unwrap_or_default();
                        let static_text = text.as_bytes().get(range).unwrap_or_default();
                        deflated.extend_from_slice(&deflate(compressor(compress), static_text));
                        let end = offset(deflated.len())?;
                        if let Some(segment) = encoded.segment_mut(i) {
                            segment.deflated_end = end;
                        }
                    }
                }
            }
        }
        encoded.deflated = deflated.into_boxed_slice();
        Ok(encoded)
    }

    pub(super) fn segment(&self, i: u32) -> Option<&Segment> {
        self.segments.get(usize::try_from(i).ok()?)
    }

    fn segment_mut(&mut self, i: u32) -> Option<&mut Segment> {
        self.segments.get_mut(usize::try_from(i).ok()?)
    }

    /// Where segment `i`'s compressed text lies in [`Encoded::deflated`].
    pub(super) fn deflated_range(&self, i: u32) -> Range<usize> {
        let start = i
            .checked_sub(1)
            .and_then(|p| self.segment(p))
            .map_or(0, |p| p.deflated_end as usize);
        let end = self.segment(i).map_or(start, |s| s.deflated_end as usize);
        start..end
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
                    x.len == y.len
                        && x.crc == y.crc
                        && x.since.map(f64::to_bits) == y.since.map(f64::to_bits)
                })
            })
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<Encoded>()
            + self.deflated.len()
            + std::mem::size_of_val::<[Segment]>(&self.segments)
    }
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
        let pieces = |p: &Piece| p.deflated.len() + std::mem::size_of::<Piece>();
        let bytes = inner
            .entries
            .values()
            .flat_map(|e| e.formats.iter().flatten())
            .map(|e| e.bytes())
            .sum::<usize>()
            + inner
                .headers
                .iter()
                .flatten()
                .flat_map(|h| h.iter())
                .map(pieces)
                .sum::<usize>()
            + inner
                .tail
                .iter()
                .flatten()
                .map(|(_, p)| pieces(p))
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
    /// same bytes as [`render_uncached`] (after decompression). For tests and benchmarks; the
    /// server streams [`MetricsCache::body`].
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
    /// chunks of about [`CHUNK`] bytes made from the cached pieces as the client reads them. What
    /// one scrape holds of its own is a chunk, the time-dependent values being written and
    /// references to the shared pieces, whatever the body's size and however many scrapes run.
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
        let f = format.index();
        let list = state.datastores();
        let reload = state.reload_status();
        // Read once: the cached tail must hold the values its key was made from.
        let events = state.event_stats().map(|s| EventsSnapshot::of(&s));
        let tail_key = (
            reload.last_successful(),
            reload.last_success_time().to_bits(),
            state.discovery_version(),
            events.as_ref().map(EventsSnapshot::key),
            state.certificate_status().get(),
            crate::aws::api_usage().version(),
            state.first_polls_pending(),
        );
        let mut compress = None;
        let (headers, tail, encoded) = match self.cached(&list, f, tail_key) {
            Ok(done) => done,
            Err(_) => {
                // One scrape per format encodes what changed; the others wait for it and share.
                let _encoding = self
                    .encoding
                    .get(f)
                    .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner));
                match self.cached(&list, f, tail_key) {
                    Ok(done) => done,
                    Err((headers, tail, encoded, stale)) => self.encode_stale(
                        state,
                        &list,
                        now,
                        format,
                        (headers, tail, encoded, stale),
                        (tail_key, events),
                        &mut compress,
                    )?,
                }
            }
        };
        let process = match self.process_metrics.then(ProcessStats::read).flatten() {
            Some(stats) => stats.encode(format)?,
            None => String::new(),
        };
        Ok(MetricsBody::new(
            Parts {
                format,
                now,
                headers,
                encoded,
                tail,
                process,
            },
            gzip,
        ))
    }

    /// What the cache holds for `list` in format `f`: everything (`Ok`), or what it holds and the
    /// datastores (index, previous encoding) that need encoding (`Err`).
    fn cached(
        &self,
        list: &Arc<[Arc<Datastore>]>,
        f: usize,
        tail_key: ExporterValuesKey,
    ) -> Result<Cached, Partial> {
        let versions: Vec<u64> = list.iter().map(|ds| ds.record().version).collect();
        let mut inner = self.lock();
        if !inner.list.as_ref().is_some_and(|l| Arc::ptr_eq(l, list)) {
            inner.adopt(list);
        }
        let tail = match inner.tail.get(f) {
            Some(Some((key, piece))) if *key == tail_key => Some(Arc::clone(piece)),
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
        match (headers, tail) {
            (Some(headers), Some(tail)) if stale.is_empty() => {
                Ok((headers, tail, encoded.into_iter().flatten().collect()))
            }
            (headers, tail) => Err((headers, tail, encoded, stale)),
        }
    }

    /// Encodes what [`MetricsCache::cached`] found missing and keeps it.
    #[allow(clippy::too_many_arguments)]
    fn encode_stale(
        &self,
        state: &Arc<State>,
        list: &Arc<[Arc<Datastore>]>,
        now: f64,
        format: Format,
        (headers, tail, mut encoded, stale): Partial,
        (tail_key, events): (ExporterValuesKey, Option<EventsSnapshot>),
        compress: &mut Option<Compress>,
    ) -> Result<Cached, RenderError> {
        let f = format.index();
        // Encoding happens outside the cache lock: scrapes of what is cached go on meanwhile.
        let headers = match headers {
            Some(headers) => headers,
            None => {
                let headers = Arc::new(encode_headers(format, now, compress)?);
                if let Some(slot) = self.lock().headers.get_mut(f) {
                    *slot = Some(Arc::clone(&headers));
                }
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
                    tail: Some(ExporterValues {
                        events,
                        first_polls_pending: tail_key.6,
                        ..ExporterValues::of(state)
                    }),
                    marks: None,
                };
                let text = encode(collector, format)?;
                let piece = Arc::new(Piece::new(
                    text.strip_suffix(EOF).unwrap_or(&text),
                    compress,
                )?);
                if let Some(slot) = self.lock().tail.get_mut(f) {
                    *slot = Some((tail_key, Arc::clone(&piece)));
                }
                piece
            }
        };
        // Kept as they are made, so a scrape waiting on this one finds them.
        for (i, previous) in stale {
            let Some(ds) = list.get(i) else { continue };
            let e = Arc::new(Encoded::new(
                Snapshot::take(ds),
                now,
                format,
                previous.as_deref(),
                compress,
            )?);
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
        if encoded.len() != list.len() {
            return Err(RenderError::Shape("a datastore was not encoded"));
        }
        Ok((headers, tail, encoded))
    }
}

/// Everything a scrape needs from the cache, in order: headers, datastores, tail.
pub(super) type Cached = (
    Arc<[Piece; DATASTORE_FAMILIES]>,
    Arc<Piece>,
    Vec<Arc<Encoded>>,
);
/// What the cache holds, and what it lacks: (index in the list, previous encoding).
pub(super) type Partial = (
    Option<Arc<[Piece; DATASTORE_FAMILIES]>>,
    Option<Arc<Piece>>,
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
pub(super) fn key(ds: &Arc<Datastore>) -> usize {
    Arc::as_ptr(ds) as usize
}

/// The per-datastore families' headers in `format`, from an encoding pass over no datastore.
pub(super) fn encode_headers(
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
    let headers = split
        .into_iter()
        .map(|(header, _)| Piece::new(text.get(header).unwrap_or_default(), compress))
        .collect::<Result<Vec<Piece>, RenderError>>()?;
    headers
        .try_into()
        .map_err(|_| RenderError::Shape("the per-datastore families' headers"))
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
}
