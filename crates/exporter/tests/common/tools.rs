//! Helpers for tests that shell out to ecosystem tools (promtool, kubectl, kubernetes-validate,
//! hadolint, check-jsonschema, python3 with PyYAML and the jsonnet binding) and the list of metric
//! names the exporter emits.
//!
//! A missing tool SKIPs the test by default, so that `cargo test` passes on a machine with only
//! Rust: the test returns early after writing a `SKIP ... install: ...` line straight to the
//! process's stderr, which libtest does not capture (it only captures `print!`/`eprint!`), so the
//! line shows in the default `cargo test` output. CI sets `HEALTHLAKE_EXPORTER_REQUIRE_TOOLS=1`
//! (`.ci/run`), and then a missing tool FAILS the test instead: these checks never skip silently
//! there.
#![allow(dead_code)]

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::process::{run_to_end, run_with_input};

/// Every metric the exporter exposes, as named in its /metrics output and in PromQL (counters
/// with their `_total` suffix). Dashboards and alert rules may name only these (plus
/// `PROMETHEUS_BUILTIN_METRICS`).
pub const EXPORTER_METRICS: &[&str] = &healthlake_exporter::metrics::FAMILY_NAMES;

/// The standard `process_*` families the exporter also serves (rules and dashboards may name them;
/// the dashboard need not show them).
pub const PROCESS_METRICS: &[&str] = &healthlake_exporter::metrics::PROCESS_FAMILY_NAMES;

/// Prometheus' own series that dashboards and rules may name besides the exporter's.
pub const PROMETHEUS_BUILTIN_METRICS: &[&str] = &["up", "ALERTS", "ALERTS_FOR_STATE"];

/// Env var that turns a missing tool into a test failure instead of a SKIP (set by `.ci/run`).
pub const REQUIRE_ENV: &str = "HEALTHLAKE_EXPORTER_REQUIRE_TOOLS";

/// The repository root (where the workspace Cargo.toml, Dockerfile and deploy/ live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Whether `HEALTHLAKE_EXPORTER_REQUIRE_TOOLS` asks for every tool to be present.
pub fn tools_required() -> bool {
    matches!(
        env::var(REQUIRE_ENV).as_deref().map(str::trim),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// The SKIP line for a missing prerequisite.
pub fn skip_line(what: &str, install_hint: &str) -> String {
    format!("SKIP: {what} not found, so this check did not run; install: {install_hint} ({REQUIRE_ENV}=1 makes this a failure, as in CI)")
}

/// Reports a missing prerequisite and returns `None` (the caller returns early): a SKIP line on
/// stderr, past libtest's capture, or a panic with the install hint under
/// `HEALTHLAKE_EXPORTER_REQUIRE_TOOLS=1`.
pub fn missing<T>(what: &str, install_hint: &str) -> Option<T> {
    if tools_required() {
        panic!(
            "{what} is required by this test but was not found ({REQUIRE_ENV} is set).\n\
             Install it with: {install_hint}"
        );
    }
    use std::io::Write;
    // `std::io::stderr()` directly, not `eprintln!`: libtest captures the macros' output of a
    // passing test and would hide the SKIP.
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(
        std::io::stderr().lock(),
        "{test}: {}",
        skip_line(what, install_hint)
    );
    None
}

/// Finds an executable on PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// Locates `name` on PATH. Missing: writes a SKIP line and returns `None`, or panics with
/// `install_hint` under `HEALTHLAKE_EXPORTER_REQUIRE_TOOLS=1`.
pub fn require_tool(name: &str, install_hint: &str) -> Option<PathBuf> {
    match find_in_path(name) {
        Some(p) => Some(p),
        None => missing(&format!("`{name}`"), install_hint),
    }
}

/// python3 that can `import yaml` (PyYAML), used to turn YAML into JSON for the checks.
pub fn require_python_yaml() -> Option<PathBuf> {
    require_python_modules(
        &["yaml"],
        "pip install -r .ci/requirements.txt  (PyYAML; or apt-get install python3-yaml)",
    )
}

/// python3 that can import every module of `modules`.
pub fn require_python_modules(modules: &[&str], install_hint: &str) -> Option<PathBuf> {
    let py = require_tool("python3", install_hint)?;
    let script = format!("import {}", modules.join(", "));
    let ok = run(Command::new(&py).args(["-c", &script]))
        .status
        .success();
    if ok {
        Some(py)
    } else {
        missing(
            &format!("python3 module(s) {}", modules.join(", ")),
            install_hint,
        )
    }
}

/// How long a tool may run before its test fails: minutes, where they take seconds, for a loaded
/// machine; a tool that hangs must not hang the test run.
pub const TOOL_LIMIT: Duration = Duration::from_secs(300);

/// Runs a command to completion (stdin closed), capturing stdout and stderr, for at most
/// [`TOOL_LIMIT`].
pub fn run(cmd: &mut Command) -> Output {
    run_to_end(cmd, TOOL_LIMIT)
}

/// Runs a command and panics (showing its output) unless it exits 0. Returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "command failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("command printed non-UTF-8 output")
}

/// Runs a linter and fails the test, showing its findings, unless it exits 0 and prints nothing.
pub fn assert_lints_clean(linter: &str, cmd: &mut Command) {
    let out = run(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "{linter} findings ({}):\n{text}",
        out.status
    );
}

/// Runs `checker` with `args` on a file `name` holding `contents`, and fails the test if the
/// checker accepts it (`what` says what it should refuse): guards a check against passing
/// vacuously.
pub fn assert_refuses(checker: &Path, args: &[&str], name: &str, contents: &str, what: &str) {
    let dir = scratch_dir("refused");
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write the file to refuse");
    let out = run(Command::new(checker).args(args).arg(&path));
    assert!(
        !out.status.success(),
        "{} accepted {what}",
        checker.display()
    );
}

/// Every YAML document of `yaml_text`, converted to JSON by python3 + PyYAML (safe loader).
pub fn yaml_docs_to_json(python: &Path, yaml_text: &str) -> Vec<serde_json::Value> {
    const SCRIPT: &str = "import sys, json, yaml\n\
        docs = [d for d in yaml.safe_load_all(sys.stdin.read()) if d is not None]\n\
        json.dump(docs, sys.stdout, default=str)\n";
    let out = run_with_input(
        Command::new(python).args(["-c", SCRIPT]),
        yaml_text.as_bytes(),
        TOOL_LIMIT,
    );
    assert!(
        out.status.success(),
        "python3/PyYAML could not parse the YAML:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("python3 printed invalid JSON") {
        serde_json::Value::Array(docs) => docs,
        other => panic!("expected a JSON array of documents, got {other}"),
    }
}

/// The single YAML document of a file, as JSON.
pub fn yaml_file_to_json(python: &Path, path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut docs = yaml_docs_to_json(python, &text);
    assert_eq!(
        docs.len(),
        1,
        "{} should hold exactly one YAML document",
        path.display()
    );
    docs.remove(0)
}

/// A fresh, empty scratch directory under the system temp dir, removed when dropped (also when
/// the test fails).
pub fn scratch_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("healthlake-exporter-test-{tag}-"))
        .tempdir()
        .expect("create scratch dir")
}

/// A `Command` for `program` whose working directory is `dir`.
pub fn command_in(program: impl AsRef<OsStr>, dir: &Path) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir);
    c
}

// ------------------------------------------------------------------------------------------------
// PromQL helpers: Grafana variable substitution and metric-name extraction (a small lexer, enough
// for the expressions we ship; promtool does the actual parsing check).

/// Replaces Grafana template variables by something PromQL-parseable: interval variables by a
/// duration, other variables (used inside `=~"..."` matchers) by `.*`.
pub fn substitute_grafana_vars(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // ${name} / ${name:format} / $name / [[name]] is not used by us.
        let (name, next) = if chars.get(i + 1) == Some(&'{') {
            let end = chars[i + 2..]
                .iter()
                .position(|&c| c == '}')
                .map(|p| i + 2 + p)
                .unwrap_or_else(|| panic!("unterminated ${{...}} in {expr:?}"));
            let inner: String = chars[i + 2..end].iter().collect();
            let name = inner.split(':').next().unwrap().to_string();
            (name, end + 1)
        } else {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            (chars[i + 1..j].iter().collect::<String>(), j)
        };
        let replacement = match name.as_str() {
            "__rate_interval" | "__interval" | "__range" => "5m".to_string(),
            "__range_s" => "300".to_string(),
            "__range_ms" | "__interval_ms" => "300000".to_string(),
            n if n.starts_with("__") => panic!("unknown Grafana builtin variable ${n} in {expr:?}"),
            "" => panic!("lone '$' in {expr:?}"),
            _ => ".*".to_string(),
        };
        out.push_str(&replacement);
        i = next;
    }
    out
}

const PROMQL_KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end", "atan2",
];
/// Aggregation operators: `sum by (x) (...)` puts the modifier between the name and `(`.
const PROMQL_AGGREGATORS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const PROMQL_LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Metric names (vector selectors written by name) used in a PromQL expression.
pub fn promql_metric_names(expr: &str) -> Vec<String> {
    let c: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_string = |mut i: usize| -> usize {
        let q = c[i];
        i += 1;
        while i < c.len() && c[i] != q {
            if c[i] == '\\' && q != '`' {
                i += 1;
            }
            i += 1;
        }
        i + 1
    };
    let skip_to_close = |mut i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        while i < c.len() {
            match c[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(i);
                    continue;
                }
                ch if ch == open => depth += 1,
                ch if ch == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced {open}{close} in {expr:?}");
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' || ch == '`' {
            i = skip_string(i);
        } else if ch == '{' {
            i = skip_to_close(i, '{', '}');
        } else if ch == '[' {
            i = skip_to_close(i, '[', ']');
        } else if ch == '#' {
            // comment to end of line
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            // number or duration (5m, 1h30m, 1e3, 0x1f)
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '_') {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let mut j = i;
            while j < c.len() && c[j].is_whitespace() {
                j += 1;
            }
            let next = c.get(j).copied();
            let lower = word.to_ascii_lowercase();
            if PROMQL_LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if next == Some('(') {
                    i = skip_to_close(j, '(', ')');
                }
            } else if PROMQL_KEYWORDS.contains(&lower.as_str())
                || PROMQL_AGGREGATORS.contains(&lower.as_str())
                || next == Some('(')
            {
                // operator keyword, or function / aggregation name
            } else {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}
