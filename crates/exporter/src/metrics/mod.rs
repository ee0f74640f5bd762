//! The metric families and how State is written out in the exposition formats.
//!
//! Metrics are a pure view of State: nothing here talks to AWS or invents values, so the output can
//! be tested without HTTP or AWS. Values that depend on the scrape time (durations of running jobs,
//! the oldest running job's age) are computed from the scrape's `now`.
//!
//! Two paths write the same bytes:
//! - [`render_uncached`] encodes all of State with prometheus-client on every call. It is the
//!   reference: simple, obviously right, and what the cache is tested against.
//! - [`MetricsCache`] is what `/metrics` serves. A scrape of 50 datastores × 100 job series is
//!   ~7,000 series and ~1.5 MB; encoding them all each time costs milliseconds of CPU per scrape,
//!   while State changes once per poll interval. So each datastore's samples are encoded once per
//!   change of its record ([`Record::version`]) and kept; a scrape only concatenates them and
//!   formats the few values that depend on `now`. The exposition requires each family's samples to
//!   be contiguous, so the cache holds, per datastore and format, one piece per family; a scrape
//!   writes, for each family, its header and then that family's piece of every datastore in order.
//!
//! The cached pieces are produced by prometheus-client itself, encoding a view of one datastore,
//! then split into families: escaping, float formatting, `_total`/`UNIT` rules stay the library's,
//! and a test proves the result byte-identical to [`render_uncached`]. A sample whose value depends
//! on `now` is cut at its value: the piece keeps the text before it plus the submit time, and the
//! scrape writes `now − submitted` with the library's float formatter (`dtoa`).
//!
//! gzip: compressing ~1.5 MB on every scrape would cost more than everything else together. Each
//! static piece is instead compressed once, on the first gzip scrape after it changed, into a raw
//! DEFLATE stream ended by a sync flush (byte-aligned, not final). Such streams concatenate into one
//! valid DEFLATE stream (as pigz does), so a gzip scrape is: a gzip header, the cached compressed
//! pieces with the few dynamic values between them as stored (uncompressed) blocks, a final empty
//! block, and the CRC-32 of the uncompressed bytes. The result is one ordinary gzip member that any
//! decoder reads, not a multi-member stream that some (curl) stop reading after the first member.
//!
//! Memory: once a gzip scrape needed a datastore's pieces, only their compressed form is kept, with
//! each piece's CRC-32 and length; the trailer's CRC is combined from those (one multiplication
//! modulo the CRC polynomial per piece, as zlib's `crc32_combine`) and the dynamic values' bytes,
//! without the text. (At 1,000 datastores × 100 job series: 24 MB of text, ~4 MB compressed.) Text
//! is kept only for formats that plain scrapes alone asked for; a plain scrape of a format kept
//! compressed (rare: probes, curl) is answered by [`render_uncached`].

mod cache;
mod families;
mod gzip;
mod view;

use std::sync::Arc;

pub use cache::{CacheStats, MetricsCache};
pub use families::FAMILY_NAMES;

use crate::state::State;
use families::{encode, StateCollector};
use view::{Source, Tail};

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
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
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

/// Encodes all of `state` as of `now` (Unix seconds) with prometheus-client, from scratch.
///
/// The reference implementation: `/metrics` serves [`MetricsCache::render`], which must produce
/// the same bytes.
pub fn render_uncached(state: &Arc<State>, now: f64, format: Format) -> String {
    let collector = StateCollector {
        source: Source::State(Arc::clone(state)),
        now,
        datastore_families: true,
        tail: Some(Tail::of(state)),
        marks: None,
    };
    // Writing to a String cannot fail, and our collector returns only the writer's errors.
    let result = encode(collector, format);
    debug_assert!(result.is_ok());
    result.unwrap_or_default()
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
