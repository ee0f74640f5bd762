//! Log lines that what is logged cannot forge, flood or colour.
//!
//! Field values come from outside: SQS message fields, HealthLake and SQS error messages,
//! datastore names. tracing-subscriber's text format writes `%value` fields as they are and only
//! escapes ESC-like characters in the message (0.3.20+), so a newline in an error message started a
//! forged log line, and one 200 KB value made a 200 KB line. This module formats the text fields
//! itself ([`BoundedFields`], tracing-subscriber's `FormatFields` hook, also used for span fields):
//! every control character, line separator and bidi override in a value or the message is escaped
//! (`\n`, `\u{1b}`), and each value is cut at [`MAX_FIELD_BYTES`] with a visible
//! `…(N bytes more)`. JSON is escaped by serde already; [`BoundedEvents`] wraps the JSON event
//! format to apply the same cut. Colour is written only to a terminal, and never when `NO_COLOR`
//! is set (<https://no-color.org>).

use std::ffi::OsStr;
use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{display, DisplayValue, Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The longest a field value (or the message) is written, in bytes, before `…(N bytes more)`.
///
/// Why 1 KiB: container runtimes (containerd, Docker) split log lines longer than 16 KiB into
/// partial lines that log shippers do not always join again, so one event must stay well under
/// that; our widest events carry about eight fields, most of them short numbers or names. The
/// longest legitimate values are a few hundred bytes (an AWS AccessDenied message naming a role and
/// a resource, a TOML error with its line), so nothing useful is cut.
pub const MAX_FIELD_BYTES: usize = 1024;

/// AWS SDK crates whose debug and trace output may carry request details; capped at info so that
/// no RUST_LOG setting makes the exporter log signed headers or credentials.
const SDK_LOG_CAPS: &[&str] = &[
    "aws_config=info",
    "aws_credential_types=info",
    "aws_runtime=info",
    "aws_sigv4=info",
    "aws_smithy_runtime=info",
    "aws_smithy_runtime_api=info",
    "aws_smithy_http_client=info",
    "aws_sdk_healthlake=info",
    "aws_sdk_sqs=info",
    "aws_sdk_sts=info",
    "aws_sdk_ssooidc=info",
    "aws_sdk_sso=info",
    "hyper=info",
    "hyper_util=info",
];

/// Logs to stderr in `format` at the level `RUST_LOG` sets (default info), for the whole process.
pub fn init(format: LogFormat) {
    let colour = wants_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Only fails when a subscriber is set already, which leaves logging as it was.
    let _ = subscriber(format, filter, colour, std::io::stderr).try_init();
}

/// Colour only on a terminal, and not when `NO_COLOR` is set to anything but the empty string.
pub fn wants_colour(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// The subscriber [`init`] installs, writing to `writer` (tests pass a buffer).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    colour: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let mut filter = filter;
    for cap in SDK_LOG_CAPS {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(colour).fmt_fields(BoundedFields).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .event_format(BoundedEvents(format::format().json().flatten_event(true)))
                .finish(),
        ),
    }
}

/// How a value is written: escaped for the text format (quoted like a Rust string, or bare), or
/// only cut (JSON, which serde escapes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    Bare,
    Quoted,
    CutOnly,
}

/// A `fmt::Write` that escapes into `out` and stops at `limit` bytes, counting the rest.
struct Bounded<'a> {
    out: &'a mut dyn fmt::Write,
    escape: Escape,
    limit: usize,
    written: usize,
    /// Bytes of the value not written (0 while it fits).
    omitted: usize,
}

impl fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.omitted > 0 {
                self.omitted += c.len_utf8();
                continue;
            }
            let shown = Shown::of(c, self.escape);
            if self.written + shown.len() > self.limit {
                self.omitted = c.len_utf8();
                continue;
            }
            self.written += shown.len();
            match shown {
                Shown::Plain(c) => self.out.write_char(c)?,
                Shown::Escape(text) => self.out.write_str(text)?,
                Shown::Unicode(escape) => write!(self.out, "{escape}")?,
            }
        }
        Ok(())
    }
}

/// How one character of a value is written.
enum Shown {
    Plain(char),
    Escape(&'static str),
    /// `\u{1b}`.
    Unicode(std::char::EscapeUnicode),
}

impl Shown {
    fn of(c: char, escape: Escape) -> Shown {
        if escape == Escape::CutOnly {
            return Shown::Plain(c);
        }
        match c {
            '\n' => Shown::Escape("\\n"),
            '\r' => Shown::Escape("\\r"),
            '\t' => Shown::Escape("\\t"),
            '"' if escape == Escape::Quoted => Shown::Escape("\\\""),
            '\\' if escape == Escape::Quoted => Shown::Escape("\\\\"),
            c if is_invisible(c) => Shown::Unicode(c.escape_unicode()),
            c => Shown::Plain(c),
        }
    }

    /// Bytes written.
    fn len(&self) -> usize {
        match self {
            Shown::Plain(c) => c.len_utf8(),
            Shown::Escape(text) => text.len(),
            Shown::Unicode(escape) => escape.len(),
        }
    }
}

/// Control characters (C0, DEL, C1), the Unicode line and paragraph separators that some viewers
/// break lines at, and the bidi overrides that make text read other than it is.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Writes `value` to `out` escaped as `escape` says and cut at [`MAX_FIELD_BYTES`], followed by
/// `…(N bytes more)` when it was cut.
fn write_bounded(
    out: &mut dyn fmt::Write,
    escape: Escape,
    value: &dyn fmt::Display,
) -> fmt::Result {
    write_cut(out, escape, MAX_FIELD_BYTES, value)
}

/// [`write_bounded`] with the cut at `limit` bytes (the marker comes on top).
fn write_cut(
    out: &mut dyn fmt::Write,
    escape: Escape,
    limit: usize,
    value: &dyn fmt::Display,
) -> fmt::Result {
    let mut bounded = Bounded {
        out,
        escape,
        limit,
        written: 0,
        omitted: 0,
    };
    write!(bounded, "{value}")?;
    match bounded.omitted {
        0 => Ok(()),
        more => write!(bounded.out, "…({more} bytes more)"),
    }
}

/// `value`, escaped and cut as [`write_bounded`] writes it (for tests and the JSON cut).
fn bounded_string(escape: Escape, value: &dyn fmt::Display) -> String {
    let mut out = String::new();
    let _ = write_bounded(&mut out, escape, value);
    out
}

/// `text` cut, on a character boundary, to at most `limit` bytes before a `…(N bytes more)`
/// marker (N counting the bytes of `text` left out), and, if `one_line`, with every control
/// character, line separator and bidi override escaped as the text format writes them (`\n`,
/// `\u{1b}`). For text from outside that is kept, not only logged (an API error's message, a
/// job's `Message`): the same escapes and cut as a log field, with a tighter limit.
pub(crate) fn cut_text(text: &str, one_line: bool, limit: usize) -> String {
    let escape = if one_line {
        Escape::Bare
    } else {
        Escape::CutOnly
    };
    let mut out = String::with_capacity(text.len().min(limit) + 32);
    let _ = write_cut(&mut out, escape, limit, &text);
    out
}

/// The text format's fields: `name=value` pairs and the bare message, each value escaped and cut
/// (see the module docs). String values are quoted like Rust strings, as tracing-subscriber's
/// default does; `%` and `?` values are written bare.
#[derive(Clone, Copy, Debug, Default)]
pub struct BoundedFields;

impl<'writer> FormatFields<'writer> for BoundedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    fn write(&mut self, field: &Field, escape: Escape, value: &dyn fmt::Display) {
        let name = field.name();
        // Records from the `log` crate carry their metadata as fields; the format shows it already.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if name == "message" {
            write!(self.writer, "{separator}")
                .and_then(|()| write_bounded(&mut self.writer, Escape::Bare, value))
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            let quote = if escape == Escape::Quoted { "\"" } else { "" };
            write!(self.writer, "{separator}{name}={quote}")
                .and_then(|()| write_bounded(&mut self.writer, escape, value))
                .and_then(|()| self.writer.write_str(quote))
        };
    }
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, Escape::Quoted, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, Escape::Bare, &ErrorChain(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, Escape::Bare, &format_args!("{value:?}"));
    }
}

/// An error and its sources, `: `-separated.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// Wraps an event format (the JSON one) so that no field value it writes is longer than
/// [`MAX_FIELD_BYTES`]: an event with a longer value is formatted as a copy whose long values are
/// cut (with `…(N bytes more)`). Escaping is left to the format.
#[derive(Debug)]
pub struct BoundedEvents<E>(pub E);

impl<S, N, E> FormatEvent<S, N> for BoundedEvents<E>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut check = TooLong(false);
        event.record(&mut check);
        if !check.0 {
            return self.0.format_event(ctx, writer, event);
        }
        let metadata = event.metadata();
        let fields = metadata.fields();
        let mut cut = CutValues(fields.iter().map(|_| None).collect());
        event.record(&mut cut);
        let values: Vec<Option<&dyn tracing::Value>> = cut
            .0
            .iter()
            .map(|v| v.as_ref().map(CutValue::as_value))
            .collect();
        // `value_set_all` is how tracing's own macros build an event (one value per field, in
        // order); it is hidden from the docs but used by every expanded `info!`.
        let values = fields.value_set_all(&values);
        let copy = if event.is_contextual() {
            Event::new(metadata, &values)
        } else {
            Event::new_child_of(event.parent().cloned(), metadata, &values)
        };
        self.0.format_event(ctx, writer, &copy)
    }
}

/// Whether any value of an event is longer than [`MAX_FIELD_BYTES`].
struct TooLong(bool);

impl TooLong {
    fn check(&mut self, value: &dyn fmt::Display) {
        let mut counter = Counter(0);
        // The counter stops the formatting with an error once the value is too long.
        self.0 |= write!(counter, "{value}").is_err();
    }
}

impl Visit for TooLong {
    fn record_str(&mut self, _: &Field, value: &str) {
        self.0 |= value.len() > MAX_FIELD_BYTES;
    }

    fn record_error(&mut self, _: &Field, value: &(dyn std::error::Error + 'static)) {
        self.check(&ErrorChain(value));
    }

    fn record_debug(&mut self, _: &Field, value: &dyn fmt::Debug) {
        self.check(&format_args!("{value:?}"));
    }
}

/// Counts bytes, failing past [`MAX_FIELD_BYTES`].
struct Counter(usize);

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        if self.0 > MAX_FIELD_BYTES {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// One value of an event's cut copy: numbers and booleans as they were, text cut.
enum CutValue {
    Str(String),
    Shown(DisplayValue<String>),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    Bool(bool),
}

impl CutValue {
    fn as_value(&self) -> &dyn tracing::Value {
        match self {
            CutValue::Str(v) => v,
            CutValue::Shown(v) => v,
            CutValue::I64(v) => v,
            CutValue::U64(v) => v,
            CutValue::I128(v) => v,
            CutValue::U128(v) => v,
            CutValue::F64(v) => v,
            CutValue::Bool(v) => v,
        }
    }
}

/// The values of an event, by field index, as [`CutValue`]s.
struct CutValues(Vec<Option<CutValue>>);

impl CutValues {
    fn set(&mut self, field: &Field, value: CutValue) {
        if let Some(slot) = self.0.get_mut(field.index()) {
            *slot = Some(value);
        }
    }
}

impl Visit for CutValues {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(
            field,
            CutValue::Str(bounded_string(Escape::CutOnly, &value)),
        );
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let text = bounded_string(Escape::CutOnly, &ErrorChain(value));
        self.set(field, CutValue::Shown(display(text)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = bounded_string(Escape::CutOnly, &format_args!("{value:?}"));
        self.set(field, CutValue::Shown(display(text)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, CutValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, CutValue::U64(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.set(field, CutValue::I128(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.set(field, CutValue::U128(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, CutValue::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, CutValue::Bool(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Every AWS SDK service crate the exporter depends on logs request details at debug: each is
    /// capped, whatever RUST_LOG says.
    #[test]
    fn every_aws_sdk_dependency_is_capped() {
        let manifest = include_str!("../Cargo.toml");
        let services: Vec<&str> = manifest
            .lines()
            .filter_map(|line| line.split_once(['.', ' ', '=']).map(|(name, _)| name))
            .filter(|name| name.starts_with("aws-sdk-"))
            .collect();
        assert!(services.contains(&"aws-sdk-healthlake"), "{services:?}");
        for service in services {
            let cap = format!("{}=info", service.replace('-', "_"));
            assert!(SDK_LOG_CAPS.contains(&cap.as_str()), "{cap} missing");
        }
    }

    const FORGED: &str = "x\n2026-01-01T00:00:00Z ERROR forged\x1b[31mred\r\u{2028}\u{202e}";

    #[test]
    fn control_characters_are_escaped_and_quotes_only_in_quoted_values() {
        assert_eq!(
            bounded_string(Escape::Bare, &FORGED),
            r#"x\n2026-01-01T00:00:00Z ERROR forged\u{1b}[31mred\r\u{2028}\u{202e}"#
        );
        assert_eq!(
            bounded_string(Escape::Quoted, &"say \"hi\"\\\t\u{7f}\u{9b}é"),
            r#"say \"hi\"\\\t\u{7f}\u{9b}é"#
        );
        assert_eq!(bounded_string(Escape::Bare, &"a \"b\" \\c"), "a \"b\" \\c");
        assert_eq!(bounded_string(Escape::CutOnly, &FORGED), FORGED);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary_with_the_rest_counted() {
        let value = "é".repeat(100_000); // 200,000 bytes
        let cut = bounded_string(Escape::Bare, &value);
        let (shown, marker) = cut.split_once('…').unwrap();
        assert_eq!(shown, "é".repeat(MAX_FIELD_BYTES / 2));
        assert_eq!(
            marker,
            format!("({} bytes more)", 200_000 - MAX_FIELD_BYTES)
        );
        // Escapes count against the cap: 1 KiB of ESC shows as at most 1 KiB.
        let cut = bounded_string(Escape::Bare, &"\x1b".repeat(10_000));
        let shown = cut.split('…').next().unwrap();
        assert!(shown.len() <= MAX_FIELD_BYTES && shown.len() > MAX_FIELD_BYTES - 6);
        assert!(cut.ends_with(&format!("({} bytes more)", 10_000 - shown.len() / 6)));
        let exact = "a".repeat(MAX_FIELD_BYTES);
        assert_eq!(bounded_string(Escape::Quoted, &exact), exact);
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(wants_colour(true, None));
        assert!(wants_colour(true, Some(OsStr::new(""))));
        assert!(!wants_colour(true, Some(OsStr::new("1"))));
        assert!(!wants_colour(false, None));
    }

    /// Captures what a subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn log_with(format: LogFormat, colour: bool) -> String {
        let buffer = Buffer::default();
        let subscriber = subscriber(format, EnvFilter::new("info"), colour, buffer.clone());
        let long = "y".repeat(200_000);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(error = %FORGED, name = FORGED, long = %long, count = 3, "poll failed: {FORGED}");
            let error = std::io::Error::other(FORGED);
            tracing::error!(error = &error as &dyn std::error::Error, "failed");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn text_events_stay_one_bounded_line_without_raw_control_characters() {
        let out = log_with(LogFormat::Text, false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(!out.contains('\x1b') && !out.contains('\r'), "{out:?}");
        let escaped = r"x\n2026-01-01T00:00:00Z ERROR forged\u{1b}[31mred\r\u{2028}\u{202e}";
        assert!(lines[0].contains(" WARN "), "{}", lines[0]);
        assert!(
            lines[0].contains(&format!(
                "poll failed: {escaped} error={escaped} name=\"{escaped}\""
            )),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains(&format!(
                "long={}…(198976 bytes more) count=3",
                "y".repeat(1024)
            )),
            "{}",
            lines[0]
        );
        assert!(lines[0].len() < 4 * MAX_FIELD_BYTES, "{}", lines[0].len());
        assert!(
            lines[1].contains(&format!("failed error={escaped}")),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn colour_is_written_only_when_asked() {
        assert!(log_with(LogFormat::Text, true).contains("\x1b["));
        assert!(!log_with(LogFormat::Json, false).contains('\x1b'));
    }

    #[test]
    fn json_events_are_cut_and_stay_valid_json() {
        let out = log_with(LogFormat::Json, false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(event["level"], "WARN");
        assert_eq!(event["error"], FORGED);
        assert_eq!(event["name"], FORGED);
        assert_eq!(event["count"], 3);
        assert_eq!(event["message"], format!("poll failed: {FORGED}"));
        assert_eq!(
            event["long"],
            format!("{}…(198976 bytes more)", "y".repeat(1024))
        );
        let event: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(event["error"], FORGED);
        assert!(lines[0].len() < 4 * MAX_FIELD_BYTES, "{}", lines[0].len());
    }
}
