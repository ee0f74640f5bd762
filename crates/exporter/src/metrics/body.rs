//! A `/metrics` body written chunk by chunk from the cached pieces while the client reads it, so
//! that what one scrape holds of its own is one chunk, whatever the body's size and however many
//! scrapes run at once.

use std::sync::Arc;

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress};

use super::cache::dynamic_value;
use super::encode::elapsed_value;
use super::families::DATASTORE_FAMILIES;
use super::gzip::{stored_len, CrcPiece, Gzip, GZIP_OVERHEAD};
use super::pieces::{Encoded, ExporterPieces, Piece};
use super::{Format, RenderError, EOF};

/// Everything one scrape writes, in order: references to the cached pieces.
pub(super) struct Parts {
    pub(super) format: Format,
    pub(super) now: f64,
    /// The per-datastore families' headers.
    pub(super) headers: Arc<[Piece; DATASTORE_FAMILIES]>,
    /// Each datastore's samples of the per-datastore families.
    pub(super) encoded: Vec<Arc<Encoded>>,
    pub(super) exporter: Arc<ExporterPieces>,
    /// The `process_*` families of this scrape (empty when not served).
    pub(super) process: String,
}

/// One step of a scrape's body.
enum Part<'a> {
    /// Static text of `len` bytes with checksum `crc`, compressed.
    Compressed {
        deflated: &'a [u8],
        len: u32,
        crc: CrcPiece,
    },
    /// The value of a sample that depends on `now`: `now − since`.
    Elapsed(f64),
    /// Text written as it is: the `process_*` families.
    Text(&'a str),
    /// OpenMetrics' last line.
    Eof,
}

/// Where a scrape is in its [`Parts`]: for each per-datastore family in turn, its header, its
/// samples of each datastore in order (segment by segment), its exporter-wide samples; then the
/// exporter-wide families, the process families and OpenMetrics' end.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    family: usize,
    stage: Stage,
    /// The datastore being written (in [`Stage::Datastores`]).
    datastore: usize,
    /// Its next segment of the family (absolute index).
    segment: u32,
    /// The previous segment's dynamic value is still to come.
    pending: Option<f64>,
    exporter_done: bool,
    process_done: bool,
    eof_done: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Stage {
    #[default]
    Header,
    Datastores,
    Exporter,
}

impl Parts {
    /// The part at `cursor`, moving it on; `None` at the end.
    fn next<'a>(&'a self, cursor: &mut Cursor) -> Option<Part<'a>> {
        if let Some(since) = cursor.pending.take() {
            return Some(Part::Elapsed(since));
        }
        while cursor.family < DATASTORE_FAMILIES {
            let f = cursor.family;
            match cursor.stage {
                Stage::Header => {
                    cursor.stage = Stage::Datastores;
                    cursor.datastore = 0;
                    cursor.segment = self.first_segment(0, f);
                    return Some(self.headers.get(f)?.part());
                }
                Stage::Datastores => match self.next_segment(cursor) {
                    Some(part) => return Some(part),
                    None => cursor.stage = Stage::Exporter,
                },
                Stage::Exporter => {
                    cursor.stage = Stage::Header;
                    cursor.family += 1;
                    match self.exporter.after_datastores.get(f) {
                        Some(piece) if piece.len > 0 => return Some(piece.part()),
                        _ => {}
                    }
                }
            }
        }
        self.end(cursor)
    }

    /// The next segment of family `cursor.family` of the datastores, from `cursor.datastore` on.
    fn next_segment<'a>(&'a self, cursor: &mut Cursor) -> Option<Part<'a>> {
        let f = cursor.family;
        loop {
            let e = self.encoded.get(cursor.datastore)?;
            let end = e.families.get(f).map_or(0, |family| family.segments.end);
            if cursor.segment < end {
                let i = cursor.segment;
                cursor.segment += 1;
                let segment = e.segment(i)?;
                cursor.pending = segment.since;
                return Some(Part::Compressed {
                    deflated: e.deflated.get(e.deflated_range(i)).unwrap_or_default(),
                    len: segment.len,
                    crc: segment.crc,
                });
            }
            cursor.datastore += 1;
            cursor.segment = self.first_segment(cursor.datastore, f);
        }
    }

    /// After the per-datastore families: the exporter-wide ones, the process families, then
    /// OpenMetrics' `# EOF`.
    fn end<'a>(&'a self, cursor: &mut Cursor) -> Option<Part<'a>> {
        if !cursor.exporter_done {
            cursor.exporter_done = true;
            return Some(self.exporter.families.part());
        }
        if !cursor.process_done {
            cursor.process_done = true;
            if !self.process.is_empty() {
                return Some(Part::Text(&self.process));
            }
        }
        if self.format == Format::OpenMetrics && !cursor.eof_done {
            cursor.eof_done = true;
            return Some(Part::Eof);
        }
        None
    }

    fn first_segment(&self, d: usize, f: usize) -> u32 {
        self.encoded
            .get(d)
            .and_then(|e| e.families.get(f))
            .map_or(0, |family| family.segments.start)
    }
}

impl Piece {
    fn part(&self) -> Part<'_> {
        Part::Compressed {
            deflated: &self.deflated,
            len: self.len,
            crc: self.crc,
        }
    }
}

/// About how many bytes a [`MetricsBody`] chunk holds (a chunk ends after the part that fills it).
pub const CHUNK: usize = 64 * 1024;

/// A `/metrics` body made chunk by chunk from the cached pieces as the client reads it: for gzip,
/// the compressed pieces with the time-dependent values between them as stored blocks, in one
/// gzip member; for plain text, the pieces inflated one after the other (they form one DEFLATE
/// stream) with the values between them. Its length is known from the start.
pub struct MetricsBody {
    parts: Parts,
    cursor: Cursor,
    mode: Mode,
    len: u64,
    started: bool,
    done: bool,
}

enum Mode {
    Gzip(Gzip),
    Plain(Box<Decompress>),
}

impl std::fmt::Debug for MetricsBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsBody")
            .field("len", &self.len)
            .field("gzip", &matches!(self.mode, Mode::Gzip(_)))
            .finish_non_exhaustive()
    }
}

impl MetricsBody {
    pub(super) fn new(parts: Parts, gzip: bool) -> MetricsBody {
        // The exact length, from one pass over the parts (the dynamic values are formatted twice:
        // a few per datastore).
        let mut value = String::new();
        let mut cursor = Cursor::default();
        let mut len: u64 = if gzip { GZIP_OVERHEAD } else { 0 };
        while let Some(part) = parts.next(&mut cursor) {
            let bytes = match part {
                Part::Compressed { deflated, .. } if gzip => {
                    len += deflated.len() as u64;
                    continue;
                }
                Part::Compressed { len: n, .. } => {
                    len += u64::from(n);
                    continue;
                }
                Part::Elapsed(since) => {
                    dynamic_value(&mut value, parts.format, elapsed_value(parts.now, since));
                    value.len()
                }
                Part::Text(text) => text.len(),
                Part::Eof => EOF.len(),
            };
            len += if gzip {
                stored_len(bytes)
            } else {
                bytes as u64
            };
        }
        let mode = if gzip {
            Mode::Gzip(Gzip::default())
        } else {
            Mode::Plain(Box::new(Decompress::new(false)))
        };
        MetricsBody {
            parts,
            cursor: Cursor::default(),
            mode,
            len,
            started: false,
            done: false,
        }
    }

    /// The body's length in bytes, as it will be sent.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next chunk: at least [`CHUNK`] bytes but for the last.
    fn chunk(&mut self) -> Result<Option<Bytes>, RenderError> {
        if self.done {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(CHUNK + 1024);
        let mut value = String::new();
        let (format, now) = (self.parts.format, self.parts.now);
        if !self.started {
            self.started = true;
            if let Mode::Gzip(_) = self.mode {
                Gzip::header(&mut out);
            }
        }
        while out.len() < CHUNK {
            let Some(part) = self.parts.next(&mut self.cursor) else {
                self.done = true;
                if let Mode::Gzip(gz) = &self.mode {
                    gz.finish(&mut out);
                }
                break;
            };
            let dynamic = match part {
                Part::Compressed { deflated, len, crc } => {
                    match &mut self.mode {
                        Mode::Gzip(gz) => gz.compressed(&mut out, len, crc, deflated),
                        Mode::Plain(inflater) => inflate(inflater, deflated, len, &mut out)?,
                    }
                    continue;
                }
                Part::Elapsed(since) => {
                    dynamic_value(&mut value, format, elapsed_value(now, since));
                    value.as_bytes()
                }
                Part::Text(text) => text.as_bytes(),
                Part::Eof => EOF.as_bytes(),
            };
            match &mut self.mode {
                Mode::Gzip(gz) => gz.stored(&mut out, dynamic),
                Mode::Plain(_) => out.extend_from_slice(dynamic),
            }
        }
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }
}

impl Iterator for MetricsBody {
    type Item = Result<Bytes, RenderError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.chunk() {
            Ok(chunk) => chunk.map(Ok),
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// Appends the `len` bytes that `deflated` (the next piece of one continuous raw DEFLATE stream,
/// ended by a sync flush) inflates to.
fn inflate(
    inflater: &mut Decompress,
    mut deflated: &[u8],
    len: u32,
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    let target = out.len() + len as usize;
    out.reserve(len as usize + 64);
    while out.len() < target || !deflated.is_empty() {
        if out.capacity() == out.len() {
            out.reserve(1024);
        }
        let (read, written) = (inflater.total_in(), inflater.total_out());
        inflater
            .decompress_vec(deflated, out, FlushDecompress::None)
            .map_err(|_| RenderError::Shape("a cached piece does not inflate"))?;
        let consumed = usize::try_from(inflater.total_in() - read).unwrap_or(usize::MAX);
        deflated = deflated.get(consumed..).unwrap_or_default();
        if consumed == 0 && inflater.total_out() == written {
            return Err(RenderError::Shape("a cached piece ends early"));
        }
    }
    if out.len() != target {
        return Err(RenderError::Shape(
            "a cached piece inflates to another length",
        ));
    }
    Ok(())
}
