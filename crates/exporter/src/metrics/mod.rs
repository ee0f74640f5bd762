//! The metric families and how State is written out in the exposition formats.
//!
//! Metrics are a pure view of State: nothing here talks to AWS or invents values, so the output can
//! be tested without HTTP or AWS. Values that depend on the scrape time (durations of running jobs,
//! the oldest running job's age) are computed from the scrape's `now`.
//!
//! The data path: State → `snapshot` (one type: what the families read, copied out of State
//! under each datastore's lock, which is then released) → `families` (one table entry per
//! family: name, help, type, unit, labels, and the function that writes its samples, in
//! `samples`) → one encoding pass of prometheus-client (`encode`) → the exposition.
//!
//! Two paths write the same bytes:
//! - [`render_uncached`] encodes a snapshot of all of State in one pass on every call. It is the
//!   reference: simple, obviously right, and what the cache is tested against.
//! - [`MetricsCache`] is what `/metrics` serves. A scrape of 50 datastores × 100 job series is
//!   ~7,000 series and ~1.5 MB; encoding them all each time costs milliseconds of CPU per scrape,
//!   while State changes once per poll interval. So each datastore's samples are encoded once per
//!   change of its record ([`Record::version`](crate::state::Record::version)) and kept; a
//!   scrape only concatenates them and formats the few values that depend on `now`. The
//!   exposition requires each family's samples to be contiguous, so the cache holds, per datastore
//!   and format, one piece per family; a scrape writes, for each family, its header, that family's
//!   piece of every datastore in order, and its samples that are about no datastore; then the
//!   exporter-wide families.
//!
//! The cached pieces are made by prometheus-client too, one pass per family and datastore
//! (`pieces`): escaping, float formatting, `_total`/`UNIT` rules stay the library's, and tests
//! prove the result byte-identical to [`render_uncached`]. Nothing reads the encoder's output
//! back: a pass writes one family, after a header whose length is known; the samples whose value
//! depends on `now` are known from the marks the pass leaves, and their text up to the value
//! from a pass that ends with them. The scrape writes `now − submitted` after that text with the
//! library's float formatter (`dtoa`).
//!
//! gzip: compressing ~1.5 MB on every scrape would cost more than everything else together. Each
//! static piece is instead compressed once, when it is encoded, into a raw DEFLATE stream ended by
//! a sync flush (byte-aligned, not final). Such streams concatenate into one valid DEFLATE stream
//! (as pigz does), so a gzip scrape is: a gzip header, the cached compressed pieces with the few
//! dynamic values between them as stored (uncompressed) blocks, a final empty block, and the CRC-32
//! of the uncompressed bytes, combined from each piece's CRC-32 and length (one multiplication
//! modulo the CRC polynomial per piece, as zlib's `crc32_combine`). The result is one ordinary gzip
//! member that any decoder reads, not a multi-member stream that some (curl) stop reading after the
//! first member.
//!
//! Memory: a piece is kept in one form only, compressed (at 1,000 datastores × 100 job series:
//! 24 MB of text, ~4 MB compressed). A plain scrape inflates the same pieces, which form one DEFLATE
//! stream, as it goes. Neither kind of scrape assembles its body: [`MetricsBody`] writes it chunk
//! by chunk while the client reads, so a scrape holds one chunk and references to the shared
//! pieces, and concurrent scrapes cannot multiply the body. One scrape per format encodes what
//! changed; a concurrent one waits for it and shares the result.

mod body;
mod cache;
mod encode;
mod families;
mod gzip;
mod pieces;
mod process;
mod samples;
mod snapshot;

use std::sync::Arc;

pub use body::{MetricsBody, CHUNK};
pub use cache::{CacheStats, MetricsCache};
pub use families::{Family, FAMILY_NAMES};
pub use process::PROCESS_FAMILY_NAMES;
pub use snapshot::Snapshot;

use crate::state::State;
use encode::Pass;
use families::FAMILIES;

/// OpenMetrics' last line.
const EOF: &str = "# EOF\n";

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
    pub(crate) fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    fn index(self) -> usize {
        match self {
            Format::Prometheus => 0,
            Format::OpenMetrics => 1,
        }
    }
}

/// Encodes all of `state` as of `now` (Unix seconds) with prometheus-client, from scratch: one
/// pass over every family of a snapshot of every datastore.
///
/// The reference implementation: `/metrics` serves [`MetricsCache::render`], which must produce
/// the same bytes. Should the cache fail (a bug), `/metrics` answers with this.
pub fn render_uncached(state: &Arc<State>, now: f64, format: Format) -> String {
    let snapshot = Arc::new(Snapshot::of_state(state));
    // Writing to a String cannot fail, and our families return only the writer's errors.
    let result = Pass::all(FAMILIES, snapshot, now).encode(format);
    debug_assert!(result.is_ok());
    let mut text = result.unwrap_or_default();
    if format == Format::OpenMetrics {
        text.push_str(EOF);
    }
    text
}

/// Why the cache could not render a scrape (a bug, not an input problem): the caller falls back
/// to [`render_uncached`].
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("encoding metrics failed: {0}")]
    Encode(#[from] std::fmt::Error),
    #[error("the encoder's output did not have the expected shape: {0}")]
    Shape(&'static str),
}
