//! The `/metrics` cache: each datastore's samples encoded once per change of its record and kept
//! (as text, or only compressed once gzip scrapes ask), so a scrape concatenates pieces and writes
//! only the values that depend on the scrape time. See the module docs of `metrics` for the design.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use flate2::Compress;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::families::{
    elapsed_value, encode, split_families, Marks, StateCollector, DATASTORE_FAMILIES, EOF,
};
use super::gzip::{compressor, deflate, CrcPiece, Gzip};
use super::view::{Fmt, Snapshot, Source, Tail};
use super::{render_uncached, Format, RenderError};
use crate::state::{Datastore, State};

/// Where a scrape's bytes for one datastore come from, kept until its record changes.
///
/// Holds the datastores seen by the last scrape, and for each the encoded pieces of the formats
/// scraped since its last change. Entries of datastores no longer in State are dropped when the
/// datastore list changes (a reload). One per server, shared by its connections.
#[derive(Debug, Default)]
pub struct MetricsCache {
    inner: Mutex<Inner>,
    /// The last body length per format and encoding: the next body's capacity.
    last_len: [[AtomicUsize; 2]; 2],
    /// Datastore pieces encoded since the start (one per datastore, format and change).
    encodes: AtomicU64,
}

/// What a [`MetricsCache`] holds and has done, for tests and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// Datastores with an entry: those of the datastore list last scraped.
    pub datastores: usize,
    /// Datastore pieces encoded since the start (one per datastore, format and change).
    pub encodes: u64,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    /// The datastore list the entries were built for (compared by pointer).
    pub(super) list: Option<Arc<[Arc<Datastore>]>>,
    /// By the address of the `Arc<Datastore>`, which the entry holds so the address stays unique.
    pub(super) entries: HashMap<usize, Entry>,
    /// Per format: the per-datastore families' headers, written once.
    pub(super) headers: [Option<Arc<[Piece; DATASTORE_FAMILIES]>>; 2],
    /// Per format: the exporter-wide families, for the reload status they were encoded with.
    pub(super) tail: [Option<(TailKey, Arc<Piece>)>; 2],
}

pub(super) type TailKey = (bool, u64, u64, u64);

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) _datastore: Arc<Datastore>,
    pub(super) formats: [Option<Arc<Encoded>>; 2],
}

/// Static text, its compressed form and its CRC-32.
#[derive(Debug)]
pub(super) struct Piece {
    pub(super) text: String,
    pub(super) deflated: Vec<u8>,
    pub(super) crc: CrcPiece,
}

impl Piece {
    pub(super) fn new(text: String, compress: &mut Option<Compress>) -> Piece {
        let deflated = deflate(compressor(compress), text.as_bytes());
        let crc = CrcPiece::of(text.as_bytes());
        Piece {
            text,
            deflated,
            crc,
        }
    }
}

/// One datastore's samples of the per-datastore families in one format, as of one record version.
#[derive(Debug)]
pub(super) struct Encoded {
    pub(super) version: u64,
    pub(super) families: [Family; DATASTORE_FAMILIES],
    /// Every family's segments, family after family.
    pub(super) segments: Vec<Segment>,
    pub(super) body: Body,
}

/// The segments' static bytes: the sample lines without the values that depend on `now`.
#[derive(Debug)]
pub(super) enum Body {
    /// As text, while only plain scrapes asked for this format.
    Text(String),
    /// Only compressed, each segment by itself (see [`deflate`]), once a gzip scrape needed it.
    /// Plain scrapes are rare (probes, curl), gzip ones the norm (Prometheus): keeping the text
    /// too would more than double the cache. A plain scrape then encodes State anew.
    Deflated(Vec<u8>),
}

#[derive(Clone, Debug, Default)]
pub(super) struct Family {
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
    /// Where the static text ends in [`Body::Text`] (it starts where the previous segment ends).
    pub(super) text_end: u32,
    /// Where its compressed form ends in [`Body::Deflated`] (likewise).
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
    /// Encodes one datastore with prometheus-client and cuts the output into families and
    /// segments. Keeps it compressed when `deflated`, reusing the compressed segments of families
    /// equal to `previous`'s.
    pub(super) fn new(
        snapshot: Snapshot,
        now: f64,
        format: Format,
        previous: Option<&Encoded>,
        deflated: bool,
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
        let mut text = String::with_capacity(out.len());
        let mut segments = Vec::new();
        let mut families: [Family; DATASTORE_FAMILIES] = Default::default();
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
                    text_end: offset(text.len())?,
                    deflated_end: 0,
                    crc: CrcPiece::of(static_text.as_bytes()),
                    since,
                });
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
        segments.shrink_to_fit();
        let encoded = Encoded {
            version,
            families,
            segments,
            body: Body::Text(text),
        };
        if deflated {
            encoded.deflated(previous, compress)
        } else {
            Ok(encoded)
        }
    }

    pub(super) fn segment(&self, i: u32) -> Option<&Segment> {
        self.segments.get(usize::try_from(i).ok()?)
    }

    /// Where segment `i`'s static text lies in [`Body::Text`].
    pub(super) fn text_range(&self, i: u32) -> Range<usize> {
        let start = i
            .checked_sub(1)
            .and_then(|p| self.segment(p))
            .map_or(0, |p| p.text_end as usize);
        let end = self.segment(i).map_or(start, |s| s.text_end as usize);
        start..end
    }

    /// Where segment `i`'s compressed text lies in [`Body::Deflated`].
    pub(super) fn deflated_range(&self, i: u32) -> Range<usize> {
        let start = i
            .checked_sub(1)
            .and_then(|p| self.segment(p))
            .map_or(0, |p| p.deflated_end as usize);
        let end = self.segment(i).map_or(start, |s| s.deflated_end as usize);
        start..end
    }

    pub(super) fn is_deflated(&self) -> bool {
        matches!(self.body, Body::Deflated(_))
    }

    /// Family `f` of `self` and of `previous` are the same (same hash and shape), so `previous`'s
    /// compressed segments can stand for `self`'s.
    pub(super) fn same_family(&self, f: usize, previous: &Encoded) -> bool {
        let (Some(a), Some(b)) = (self.families.get(f), previous.families.get(f)) else {
            return false;
        };
        a.hash == b.hash
            && a.segments.len() == b.segments.len()
            && a.segments.clone().zip(b.segments.clone()).all(|(i, j)| {
                let (x, y) = (self.segment(i), previous.segment(j));
                x.zip(y).is_some_and(|(x, y)| {
                    self.text_range(i).len() == previous.text_range(j).len()
                        && x.crc.crc == y.crc.crc
                        && x.since.map(f64::to_bits) == y.since.map(f64::to_bits)
                })
            })
    }

    /// This encoding with its text compressed and dropped. Segments of families equal to
    /// `previous`'s (when that is compressed) reuse its compressed bytes.
    pub(super) fn deflated(
        &self,
        previous: Option<&Encoded>,
        compress: &mut Option<Compress>,
    ) -> Result<Encoded, RenderError> {
        let Body::Text(text) = &self.body else {
            return Err(RenderError::Shape("compressing a compressed encoding"));
        };
        let previous = previous.filter(|p| p.is_deflated());
        let mut out = Vec::with_capacity(text.len() / 4 + 64);
        let mut segments = Vec::with_capacity(self.segments.len());
        for (f, family) in self.families.iter().enumerate() {
            let reuse = previous.filter(|p| self.same_family(f, p));
            match reuse {
                Some(previous) => {
                    let (Body::Deflated(bytes), Some(old)) =
                        (&previous.body, previous.families.get(f))
                    else {
                        return Err(RenderError::Shape("a reused family"));
                    };
                    for j in old.segments.clone() {
                        out.extend_from_slice(
                            bytes.get(previous.deflated_range(j)).unwrap_or_default(),
                        );
                        let i = family.segments.start + (j - old.segments.start);
                        let segment = self.segment(i).ok_or(RenderError::Shape("a segment"))?;
                        segments.push(Segment {
                            deflated_end: offset(out.len())?,
                            ..*segment
                        });
                    }
                }
                None => {
                    for i in family.segments.clone() {
                        let static_text =
                            text.as_bytes().get(self.text_range(i)).unwrap_or_default();
                        out.extend_from_slice(&deflate(compressor(compress), static_text));
                        let segment = self.segment(i).ok_or(RenderError::Shape("a segment"))?;
                        segments.push(Segment {
                            deflated_end: offset(out.len())?,
                            ..*segment
                        });
                    }
                }
            }
        }
        out.shrink_to_fit();
        Ok(Encoded {
            version: self.version,
            families: self.families.clone(),
            segments,
            body: Body::Deflated(out),
        })
    }

    /// Appends segment `i`'s static text to `out` (only kept while plain scrapes alone asked
    /// for this format: see [`MetricsCache::render`]).
    pub(super) fn write_text(&self, i: u32, out: &mut Vec<u8>) -> Result<(), RenderError> {
        let Body::Text(text) = &self.body else {
            return Err(RenderError::Shape(
                "a plain scrape of a compressed encoding",
            ));
        };
        out.extend_from_slice(text.as_bytes().get(self.text_range(i)).unwrap_or_default());
        Ok(())
    }
}

impl MetricsCache {
    pub fn new() -> MetricsCache {
        MetricsCache::default()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            datastores: self.lock().entries.len(),
            encodes: self.encodes.load(Ordering::Relaxed),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every field is replaced whole; a panicking holder cannot leave one half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `/metrics` body for `state` as of `now`, gzip-compressed when `gzip`; the same bytes
    /// as [`render_uncached`] (after decompression).
    ///
    /// Takes each datastore's record lock once, briefly, to read its version (and to copy it when
    /// it changed); encodes only the datastores that changed since the last scrape of `format`.
    pub fn render(
        &self,
        state: &Arc<State>,
        now: f64,
        format: Format,
        gzip: bool,
    ) -> Result<Vec<u8>, RenderError> {
        let f = format.index();
        let list = state.datastores();
        let versions: Vec<u64> = list.iter().map(|ds| ds.record().version).collect();
        let reload = state.reload_status();
        let tail_key = (
            reload.last_successful(),
            reload.last_success_time().to_bits(),
            state.discovery_version(),
            crate::aws::api_usage().version(),
        );

        let (headers, tail, mut encoded, stale) = {
            let mut inner = self.lock();
            if !inner.list.as_ref().is_some_and(|l| Arc::ptr_eq(l, &list)) {
                inner.adopt(&list);
            }
            let tail = match &inner.tail[f] {
                Some((key, piece)) if *key == tail_key => Some(Arc::clone(piece)),
                _ => None,
            };
            let mut encoded = Vec::with_capacity(list.len());
            let mut stale = Vec::new();
            for (i, (ds, version)) in list.iter().zip(&versions).enumerate() {
                let cached = inner
                    .entries
                    .get(&key(ds))
                    .and_then(|entry| entry.formats[f].clone());
                match cached {
                    Some(e) if e.version == *version => encoded.push(Some(e)),
                    previous => {
                        encoded.push(None);
                        stale.push((i, previous));
                    }
                }
            }
            (inner.headers[f].clone(), tail, encoded, stale)
        };

        // A plain scrape of a format that gzip scrapes keep compressed only (rare: probes, curl)
        // is encoded from State anew: simpler than inflating the pieces, and faster (they are
        // small, so inflating them is mostly per-piece overhead).
        let compressed = |e: &Arc<Encoded>| e.is_deflated();
        if !gzip
            && (encoded.iter().flatten().any(compressed)
                || stale.iter().filter_map(|(_, p)| p.as_ref()).any(compressed))
        {
            return Ok(render_uncached(state, now, format).into_bytes());
        }

        // Encoding happens outside the cache lock: other scrapes go on meanwhile.
        let mut compress = None;
        let headers = match headers {
            Some(headers) => headers,
            None => {
                let headers = Arc::new(encode_headers(format, now, &mut compress)?);
                self.lock().headers[f] = Some(Arc::clone(&headers));
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
                    tail: Some(Tail::of(state)),
                    marks: None,
                };
                let text = encode(collector, format)?;
                let text = text.strip_suffix(EOF).unwrap_or(&text).to_owned();
                let piece = Arc::new(Piece::new(text, &mut compress));
                self.lock().tail[f] = Some((tail_key, Arc::clone(&piece)));
                piece
            }
        };
        let mut fresh = Vec::new();
        for (i, previous) in stale {
            let Some(ds) = list.get(i) else { continue };
            // Kept compressed only (no text) when a gzip scrape asks.
            let deflated = gzip;
            let e = Arc::new(Encoded::new(
                Snapshot::take(ds),
                now,
                format,
                previous.as_deref(),
                deflated,
                &mut compress,
            )?);
            self.encodes.fetch_add(1, Ordering::Relaxed);
            if let Some(slot) = encoded.get_mut(i) {
                *slot = Some(Arc::clone(&e));
            }
            fresh.push((key(ds), e, None));
        }
        if gzip {
            // Encodings made by plain scrapes are compressed now, and their text dropped.
            for (i, slot) in encoded.iter_mut().enumerate() {
                let Some(e) = slot.as_ref().filter(|e| !e.is_deflated()) else {
                    continue;
                };
                let Some(ds) = list.get(i) else { continue };
                let deflated = Arc::new(e.deflated(None, &mut compress)?);
                let old = slot.replace(Arc::clone(&deflated));
                fresh.push((key(ds), deflated, old));
            }
        }
        if !fresh.is_empty() {
            let mut inner = self.lock();
            for (key, e, replaces) in fresh {
                // Absent when a reload removed the datastore meanwhile: then it is not kept.
                let Some(entry) = inner.entries.get_mut(&key) else {
                    continue;
                };
                // A compressed copy replaces only the encoding it was made from.
                let current = &entry.formats[f];
                if replaces.is_none_or(|old| current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &old)))
                {
                    entry.formats[f] = Some(e);
                }
            }
        }
        let encoded: Vec<Arc<Encoded>> = encoded.into_iter().flatten().collect();
        if encoded.len() != list.len() {
            return Err(RenderError::Shape("a datastore was not encoded"));
        }

        let parts = Parts {
            format,
            now,
            headers: &headers,
            encoded: &encoded,
            tail: &tail,
        };
        let last_len = &self.last_len[f][usize::from(gzip)];
        let capacity = last_len.load(Ordering::Relaxed) + 4096;
        let body = if gzip {
            parts.gzip(capacity, &mut compress)
        } else {
            parts.plain(capacity)?
        };
        last_len.store(body.len(), Ordering::Relaxed);
        Ok(body)
    }
}

impl Inner {
    /// Switches to a new datastore list: keeps the entries of datastores still in it, drops the
    /// others, adds empty ones for the new.
    pub(super) fn adopt(&mut self, list: &Arc<[Arc<Datastore>]>) {
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
    let headers: Vec<Piece> = split
        .into_iter()
        .map(|(header, _)| {
            let header = text.get(header).unwrap_or_default().to_owned();
            Piece::new(header, compress)
        })
        .collect();
    headers
        .try_into()
        .map_err(|_| RenderError::Shape("the per-datastore families' headers"))
}

/// Everything one scrape writes, in order.
pub(super) struct Parts<'a> {
    pub(super) format: Format,
    pub(super) now: f64,
    pub(super) headers: &'a [Piece; DATASTORE_FAMILIES],
    pub(super) encoded: &'a [Arc<Encoded>],
    pub(super) tail: &'a Piece,
}

impl Parts<'_> {
    pub(super) fn plain(&self, capacity: usize) -> Result<Vec<u8>, RenderError> {
        let mut out = Vec::with_capacity(capacity);
        let mut value = String::new();
        for (f, header) in self.headers.iter().enumerate() {
            out.extend_from_slice(header.text.as_bytes());
            for e in self.encoded {
                let Some(family) = e.families.get(f) else {
                    continue;
                };
                for i in family.segments.clone() {
                    e.write_text(i, &mut out)?;
                    if let Some(since) = e.segment(i).and_then(|s| s.since) {
                        dynamic_value(&mut value, self.format, elapsed_value(self.now, since));
                        out.extend_from_slice(value.as_bytes());
                    }
                }
            }
        }
        out.extend_from_slice(self.tail.text.as_bytes());
        if self.format == Format::OpenMetrics {
            out.extend_from_slice(EOF.as_bytes());
        }
        Ok(out)
    }

    /// Expects every datastore's encoding compressed (see [`MetricsCache::render`]); compresses
    /// the text of any that is not, without keeping the result.
    pub(super) fn gzip(&self, capacity: usize, compress: &mut Option<Compress>) -> Vec<u8> {
        let mut gz = Gzip::new(capacity);
        let mut value = String::new();
        for (f, header) in self.headers.iter().enumerate() {
            gz.compressed(header.text.len(), header.crc, &header.deflated);
            for e in self.encoded {
                let Some(family) = e.families.get(f) else {
                    continue;
                };
                for i in family.segments.clone() {
                    let Some(segment) = e.segment(i) else {
                        continue;
                    };
                    let len = e.text_range(i).len();
                    match &e.body {
                        Body::Deflated(bytes) => {
                            let deflated = bytes.get(e.deflated_range(i)).unwrap_or_default();
                            gz.compressed(len, segment.crc, deflated);
                        }
                        Body::Text(text) => {
                            let text = text.as_bytes().get(e.text_range(i)).unwrap_or_default();
                            let deflated = deflate(compressor(compress), text);
                            gz.compressed(len, segment.crc, &deflated);
                        }
                    }
                    if let Some(since) = segment.since {
                        dynamic_value(&mut value, self.format, elapsed_value(self.now, since));
                        gz.stored(value.as_bytes());
                    }
                }
            }
        }
        gz.compressed(self.tail.text.len(), self.tail.crc, &self.tail.deflated);
        if self.format == Format::OpenMetrics {
            gz.stored(EOF.as_bytes());
        }
        gz.finish()
    }
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
