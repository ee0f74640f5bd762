//! Making the TOML parser's messages safe and useful: serde says what was wrong, this adds which
//! key and table, and removes every value the message quotes (a string in the wrong place may be a
//! secret). Kept apart from the section checks because it works on the text, before any section
//! exists.

use std::collections::HashMap;

use super::super::line_and_column;

/// serde's messages say what was wrong; add which key, taken from the line it points at. Values
/// quoted in the message are left out: a string in the wrong place may be a secret, and a number
/// is the user's value too (errors name the key and the line, never the value).
pub(in crate::config) fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = redact_values(error.message().trim_end());
    let Some(span) = error.span() else {
        return message;
    };
    let (line, _) = line_and_column(text, span.start);
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        // Bare keys only: a quoted key may be anything, a pasted `user:password` included.
        .filter(|k| is_bare_key(k));
    match key {
        Some(key) if !message.contains(&format!("`{key}`")) => match table_of_line(text, line) {
            Some(table) => format!("key `{table}.{key}`: {message}"),
            None => format!("key `{key}`: {message}"),
        },
        _ => message,
    }
}

/// The table a line belongs to, as errors name it (`polling`, `datastores[2]`), from the last
/// `[table]` or `[[array]]` header above it; `None` at the top level or after a quoted header.
fn table_of_line(text: &str, line: usize) -> Option<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut table = None;
    for header in text.lines().take(line.saturating_sub(1)).map(str::trim) {
        if let Some((name, _)) = header.strip_prefix("[[").and_then(|r| r.split_once("]]")) {
            let name = name.trim();
            let index = seen.entry(name).or_insert(0);
            table = is_bare_key(name).then(|| format!("{name}[{index}]"));
            *index += 1;
        } else if let Some((name, _)) = header.strip_prefix('[').and_then(|r| r.split_once(']')) {
            let name = name.trim();
            table = is_bare_key(name).then(|| name.to_owned());
        }
    }
    table
}

/// A dotted bare key (`a.b-c_d`): the only keys repeated in messages.
fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// serde's quoted values, replaced by what they were: `invalid type: string "hunter2"` → `invalid
/// type: a string (value not shown)`, ``integer `5` `` → `an integer (value not shown)`, and an
/// unknown field's name unless it is a bare key (a quoted key may be a pasted secret).
fn redact_values(message: &str) -> String {
    let message = redact_strings(message);
    let mut out = message;
    for (mark, what) in [
        ("integer `", "an integer"),
        ("floating point `", "a number"),
        ("boolean `", "a boolean"),
        ("char `", "a character"),
    ] {
        out = redact_backticked(&out, mark, |_| Some(format!("{what} (value not shown)")));
    }
    redact_backticked(&out, "unknown field `", |name| {
        (!is_bare_key(name)).then(|| "unknown field (its quoted name not shown)".to_owned())
    })
    // The rate's type, a number of either kind, says nothing to a user: say what it expects.
    .replace(
        "data did not match any variant of untagged enum Number",
        "invalid type, expected a number (like 5 or 2.5)",
    )
    .replace("expected i64", "expected a whole number")
}

/// Each `` MARK`value` `` in `message` replaced by `replace(value)` (kept when it says `None`).
fn redact_backticked(
    message: &str,
    mark: &str,
    replace: impl Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(mark) {
        let after = &rest[at + mark.len()..];
        let (value, tail) = after.split_once('`').unwrap_or((after, ""));
        out.push_str(&rest[..at]);
        match replace(value) {
            Some(replacement) => out.push_str(&replacement),
            None => {
                out.push_str(&rest[at..at + mark.len()]);
                out.push_str(value);
                out.push('`');
            }
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// `invalid type: string "hunter2", expected ...` → `invalid type: a string (value not shown),
/// expected ...`. serde quotes strings with Rust's escapes, so an escaped quote does not end one.
fn redact_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let mut escaped = false;
        let mut end = None;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        out.push_str("a string (value not shown)");
        rest = match end {
            Some(end) => &after[end + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}
