//! The pieces the cache keeps, and how they are made: each family's header, each family's
//! exporter-wide samples, and each datastore's samples of every per-datastore family, encoded by
//! prometheus-client one family at a time and kept only compressed.
//!
//! A family's text is known without reading the encoder's output back: a pass writes one family,
//! so the text after the family's header (whose length is known) is that family's samples. A
//! sample whose value depends on the scrape time is found by the marks its family's pass leaves
//! (see [`Marks`]); its text up to the value comes from a pass that ends with that sample, less
//! the value, which the scrape writes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use flate2::Compress;

use super::cache::dynamic_value;
use super::encode::{elapsed_value, Marks, Pass};
use super::families::{DATASTORE_FAMILIES, FAMILIES};
use super::gzip::{compressor, deflate, CrcPiece};
use super::snapshot::{Exporter, Snapshot};
use super::{Format, RenderError};

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

    pub(super) fn bytes(&self) -> usize {
        self.deflated.len() + std::mem::size_of::<Piece>()
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
fn family_hasher() -> impl Hasher {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new).build_hasher()
}

pub(super) fn offset(n: usize) -> Result<u32, RenderError> {
    u32::try_from(n).map_err(|_| RenderError::Shape("a datastore's encoding over 4 GiB"))
}

/// One family's text from one pass over `snapshot`, after its header (`header_len` bytes), and
/// the marks of the samples the family offered.
fn family_samples(
    family: usize,
    snapshot: &Arc<Snapshot>,
    (now, format): (f64, Format),
    window: Range<usize>,
    header_len: u32,
) -> Result<(String, Marks), RenderError> {
    let marks = Arc::new(Mutex::new(Marks::new()));
    let pass = Pass {
        families: FAMILIES.get(family..=family).unwrap_or_default(),
        snapshot: Arc::clone(snapshot),
        now,
        window,
        marks: Some(Arc::clone(&marks)),
    };
    let mut text = pass.encode(format)?;
    let header_len = header_len as usize;
    if text.len() < header_len || !text.is_char_boundary(header_len) {
        return Err(RenderError::Shape("a family's text without its header"));
    }
    text.drain(..header_len);
    let marks = std::mem::take(&mut *marks.lock().unwrap_or_else(PoisonError::into_inner));
    Ok((text, marks))
}

/// The headers of the per-datastore families in `format`: each family's pass over nothing.
pub(super) fn encode_headers(
    format: Format,
    compress: &mut Option<Compress>,
) -> Result<Arc<[Piece; DATASTORE_FAMILIES]>, RenderError> {
    let empty = Arc::new(Snapshot::default());
    let headers = (0..DATASTORE_FAMILIES)
        .map(|f| {
            let (text, _) = family_samples(f, &empty, (0.0, format), 0..usize::MAX, 0)?;
            Piece::new(&text, compress)
        })
        .collect::<Result<Vec<Piece>, RenderError>>()?;
    let headers: [Piece; DATASTORE_FAMILIES] = headers
        .try_into()
        .map_err(|_| RenderError::Shape("the per-datastore families' headers"))?;
    Ok(Arc::new(headers))
}

/// The exporter-wide samples, as of the values they were encoded from.
#[derive(Debug)]
pub(super) struct ExporterPieces {
    /// Per per-datastore family, its exporter-wide samples, written after its datastores' (empty
    /// for a family without any).
    pub(super) after_datastores: [Piece; DATASTORE_FAMILIES],
    /// The exporter-wide families, whole (headers included), written after the per-datastore ones.
    pub(super) families: Piece,
}

impl ExporterPieces {
    pub(super) fn new(
        exporter: Exporter,
        (now, format): (f64, Format),
        headers: &[Piece; DATASTORE_FAMILIES],
        compress: &mut Option<Compress>,
    ) -> Result<ExporterPieces, RenderError> {
        let snapshot = Arc::new(Snapshot::of_exporter(exporter));
        let after_datastores = FAMILIES
            .iter()
            .zip(headers.iter())
            .enumerate()
            .map(|(f, (family, header))| {
                if !family.samples.exporter_wide() {
                    return Piece::new("", compress);
                }
                let window = 0..usize::MAX;
                let (text, _) = family_samples(f, &snapshot, (now, format), window, header.len)?;
                Piece::new(&text, compress)
            })
            .collect::<Result<Vec<Piece>, RenderError>>()?
            .try_into()
            .map_err(|_| RenderError::Shape("the per-datastore families' exporter samples"))?;
        let rest = FAMILIES.get(DATASTORE_FAMILIES..).unwrap_or_default();
        let text = Pass::all(rest, snapshot, now).encode(format)?;
        Ok(ExporterPieces {
            after_datastores,
            families: Piece::new(&text, compress)?,
        })
    }

    pub(super) fn bytes(&self) -> usize {
        self.after_datastores
            .iter()
            .map(Piece::bytes)
            .sum::<usize>()
            + self.families.bytes()
    }
}

/// Family `f`'s text of the one datastore of `snapshot`, cut where the scrape writes values: each
/// static text with `Some(since)` when a value `now − since` follows it.
fn family_runs(
    f: usize,
    snapshot: &Arc<Snapshot>,
    (now, format): (f64, Format),
    header_len: u32,
) -> Result<Vec<(String, Option<f64>)>, RenderError> {
    let all = 0..usize::MAX;
    let (text, marks) = family_samples(f, snapshot, (now, format), all, header_len)?;
    if marks.iter().all(Option::is_none) {
        return Ok(if text.is_empty() {
            vec![]
        } else {
            vec![(text, None)]
        });
    }
    let mut runs = Vec::new();
    let mut value = String::new();
    let mut start = 0;
    for (i, since) in marks.iter().enumerate() {
        let Some(since) = *since else { continue };
        let run = start..i + 1;
        let (mut text, _) = family_samples(f, snapshot, (now, format), run, header_len)?;
        dynamic_value(&mut value, format, elapsed_value(now, since));
        if !text.ends_with(value.as_str()) {
            return Err(RenderError::Shape("a time-dependent sample's value"));
        }
        text.truncate(text.len() - value.len());
        runs.push((text, Some(since)));
        start = i + 1;
    }
    if start < marks.len() {
        let run = start..marks.len();
        let (text, _) = family_samples(f, snapshot, (now, format), run, header_len)?;
        runs.push((text, None));
    }
    Ok(runs)
}

/// An [`Encoded`] being made: the segments' static text, uncompressed, one after the other.
#[derive(Default)]
struct Uncompressed {
    text: String,
    /// Each segment's part of `text`.
    ranges: Vec<Range<usize>>,
    segments: Vec<Segment>,
    families: [EncodedFamily; DATASTORE_FAMILIES],
}

impl Uncompressed {
    fn push_family(
        &mut self,
        f: usize,
        runs: Vec<(String, Option<f64>)>,
    ) -> Result<(), RenderError> {
        let first = offset(self.segments.len())?;
        let mut hasher = family_hasher();
        for (text, since) in runs {
            hasher.write(text.as_bytes());
            hasher.write_u64(since.map_or(u64::MAX, f64::to_bits));
            self.segments.push(Segment {
                len: offset(text.len())?,
                deflated_end: 0,
                crc: CrcPiece::of(text.as_bytes()),
                since,
            });
            self.ranges
                .push(self.text.len()..self.text.len() + text.len());
            self.text.push_str(&text);
        }
        if let Some(family) = self.families.get_mut(f) {
            family.segments = first..offset(self.segments.len())?;
            family.hash = hasher.finish();
        }
        Ok(())
    }
}

impl Encoded {
    /// Encodes the one datastore of `snapshot`, family by family, and compresses the result,
    /// reusing the compressed segments of families equal to `previous`'s.
    pub(super) fn new(
        snapshot: Arc<Snapshot>,
        (now, format): (f64, Format),
        headers: &[Piece; DATASTORE_FAMILIES],
        previous: Option<&Encoded>,
        compress: &mut Option<Compress>,
    ) -> Result<Encoded, RenderError> {
        let version = snapshot.datastores.first().map_or(0, |ds| ds.version);
        let mut uncompressed = Uncompressed::default();
        for (f, header) in headers.iter().enumerate() {
            let runs = family_runs(f, &snapshot, (now, format), header.len)?;
            uncompressed.push_family(f, runs)?;
        }
        let mut encoded = Encoded {
            version,
            families: std::mem::take(&mut uncompressed.families),
            segments: std::mem::take(&mut uncompressed.segments).into_boxed_slice(),
            deflated: Box::default(),
        };
        encoded.deflated = encoded.compress(&uncompressed, previous, compress)?;
        Ok(encoded)
    }

    /// The compressed text of every segment: copied from `previous` for a family that did not
    /// change, else compressed from `uncompressed`. Sets each segment's `deflated_end`.
    fn compress(
        &mut self,
        uncompressed: &Uncompressed,
        previous: Option<&Encoded>,
        compress: &mut Option<Compress>,
    ) -> Result<Box<[u8]>, RenderError> {
        let previous = previous.filter(|p| !p.deflated.is_empty() || p.segments.is_empty());
        let mut deflated = Vec::with_capacity(uncompressed.text.len() / 6 + 64);
        for f in 0..DATASTORE_FAMILIES {
            let Some(family) = self.families.get(f).cloned() else {
                continue;
            };
            let same = previous.filter(|p| self.same_family(f, p));
            let old = same
                .and_then(|p| p.families.get(f))
                .map(|o| o.segments.clone());
            for (k, i) in family.segments.clone().enumerate() {
                match (same, old.clone()) {
                    (Some(p), Some(old)) => {
                        let j = old.start + offset(k)?;
                        deflated.extend_from_slice(
                            p.deflated.get(p.deflated_range(j)).unwrap_or_default(),
                        );
                    }
                    _ => {
                        let range = uncompressed
                            .ranges
                            .get(i as usize)
                            .cloned()
                            .unwrap_or_default();
                        let text = uncompressed.text.as_bytes().get(range).unwrap_or_default();
                        deflated.extend_from_slice(&deflate(compressor(compress), text));
                    }
                }
                let end = offset(deflated.len())?;
                if let Some(segment) = self.segment_mut(i) {
                    segment.deflated_end = end;
                }
            }
        }
        Ok(deflated.into_boxed_slice())
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

    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of::<Encoded>()
            + self.deflated.len()
            + std::mem::size_of_val::<[Segment]>(&self.segments)
    }
}
