//! The exporter's output read by parsers that share no code with it: Python's `prometheus_client`
//! (its Prometheus text parser and its stricter OpenMetrics parser) and `promtool check metrics`
//! (Prometheus' own text parser and linter). A golden file or a cached body compared only with
//! another output of the same encoder could be wrong in the same way twice; these say whether
//! Prometheus-world tools read what we meant (names, types, units, unescaped label values,
//! values).
//!
//! Both tools are optional, as every ecosystem tool of the tests: missing, the check prints a
//! SKIP line and returns `None` (a failure under `HEALTHLAKE_EXPORTER_REQUIRE_TOOLS=1`, as in CI).
//! All bodies of a test go to one Python process (its start costs more than the parsing).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use healthlake_exporter::metrics::Format;

use crate::common::tools::{require_python_modules, require_tool};

const PYTHON_HINT: &str =
    "pip install -r .ci/requirements.txt  (prometheus-client, pinned; python3 itself: apt-get install python3)";
const PROMTOOL_HINT: &str = "apt-get install prometheus   (Debian's package brings promtool)";

/// One sample as a parser read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's name (a counter's ends with `_total`).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family as a parser read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// `counter`, `gauge`, ...
    pub kind: String,
    pub help: String,
    /// OpenMetrics' `# UNIT` (empty in the Prometheus text format, which has none).
    pub unit: String,
    pub samples: Vec<Sample>,
}

/// A body as a parser read it: its families by the name they are scraped and queried by (a
/// counter's with `_total`, as in `FAMILY_NAMES`), in the order of the body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub families: BTreeMap<String, Family>,
    pub order: Vec<String>,
}

impl Parsed {
    pub fn family(&self, name: &str) -> &Family {
        self.families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name} in {:?}", self.order))
    }

    /// The value of the one sample of `family` whose labels include every pair of `labels`.
    pub fn value(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<&Sample> = self
            .family(family)
            .samples
            .iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{family} {labels:?}: {} samples match",
            matching.len()
        );
        matching[0].value
    }

    /// Every `(datastore_id, datastore_name)` the body's samples carry, label values unescaped.
    pub fn datastores(&self) -> BTreeSet<(String, String)> {
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .filter_map(|s| {
                let id = s.labels.get("datastore_id")?;
                Some((id.clone(), s.labels.get("datastore_name")?.clone()))
            })
            .collect()
    }

    /// Series per sample name, as `promtool check metrics --extended` counts them.
    pub fn cardinality(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for sample in self.families.values().flat_map(|f| &f.samples) {
            *counts.entry(sample.name.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// Parses each `(format, body)` with prometheus_client's parser for its format (all in one
/// python3 process), or `None` after a SKIP line when python3 or the module is missing. Panics,
/// naming the body, when a parser rejects one.
pub fn parse_with_python(bodies: &[(Format, &str)]) -> Option<Vec<Parsed>> {
    const SCRIPT: &str = r#"
import json, multiprocessing, sys
from prometheus_client.parser import text_string_to_metric_families as text
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics

def parse(numbered):
    i, doc = numbered
    parser = openmetrics if doc["format"] == "openmetrics" else text
    try:
        return [
            {"name": f.name, "type": f.type, "help": f.documentation, "unit": f.unit,
             "samples": [{"name": s.name, "labels": s.labels, "value": repr(float(s.value))}
                         for s in f.samples]}
            for f in parser(doc["text"])]
    except Exception as e:
        return f"body {i} ({doc['format']}): {type(e).__name__}: {e}"

if __name__ == "__main__":
    docs = list(enumerate(json.load(sys.stdin)))
    if len(docs) > 4:
        with multiprocessing.Pool() as pool:
            out = pool.map(parse, docs, chunksize=8)
    else:
        out = [parse(doc) for doc in docs]
    errors = [o for o in out if isinstance(o, str)]
    if errors:
        sys.exit("\n".join(errors))
    json.dump(out, sys.stdout)
"#;
    let python = require_python_modules(&["prometheus_client"], PYTHON_HINT)?;
    let input: Vec<serde_json::Value> = bodies
        .iter()
        .map(|(format, text)| {
            let format = match format {
                Format::Prometheus => "text",
                Format::OpenMetrics => "openmetrics",
            };
            serde_json::json!({"format": format, "text": text})
        })
        .collect();
    let output = run_with_stdin(
        Command::new(python).args(["-c", SCRIPT]),
        serde_json::to_string(&input).unwrap().as_bytes(),
    );
    assert!(
        output.status.success(),
        "prometheus_client rejected a body: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Vec<Vec<serde_json::Value>> =
        serde_json::from_slice(&output.stdout).expect("the script prints JSON");
    Some(parsed.iter().map(|families| to_parsed(families)).collect())
}

fn to_parsed(families: &[serde_json::Value]) -> Parsed {
    let mut parsed = Parsed::default();
    for f in families {
        let text = |key: &str| f[key].as_str().unwrap_or_default().to_owned();
        let kind = text("type");
        // Both parsers name a counter's family without `_total`; its samples keep it.
        let name = match kind.as_str() {
            "counter" => format!("{}_total", text("name")),
            _ => text("name"),
        };
        let samples = f["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .map(|s| Sample {
                name: s["name"].as_str().unwrap_or_default().to_owned(),
                labels: serde_json::from_value(s["labels"].clone()).expect("labels"),
                value: s["value"]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .expect("value"),
            })
            .collect();
        let family = Family {
            kind,
            help: text("help"),
            unit: text("unit"),
            samples,
        };
        assert!(
            parsed.families.insert(name.clone(), family).is_none(),
            "family {name} twice"
        );
        parsed.order.push(name);
    }
    parsed
}

/// `promtool check metrics --extended` on each Prometheus-text body (the only format it reads):
/// each must pass its linter (exit 0: well-formed, help on every family, `_total` on counters,
/// base units) and its series per metric name are returned. `None` after a SKIP line without
/// promtool. Runs a few promtools at once (each takes ~40 ms to start).
pub fn check_with_promtool(bodies: &[&str]) -> Option<Vec<BTreeMap<String, usize>>> {
    let promtool = require_tool("promtool", PROMTOOL_HINT)?;
    let results = Mutex::new(vec![BTreeMap::new(); bodies.len()]);
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return };
                let output = run_with_stdin(
                    Command::new(&promtool).args(["check", "metrics", "--extended"]),
                    body.as_bytes(),
                );
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "promtool check metrics rejected body {i} ({}):\n{stdout}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
                results.lock().unwrap()[i] = cardinality_table(&stdout);
            });
        }
    });
    Some(results.into_inner().unwrap())
}

/// promtool's `Metric Cardinality Percentage` table, without its header and `Total` lines.
fn cardinality_table(stdout: &str) -> BTreeMap<String, usize> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Metric "))
        .skip(1)
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            let name = columns.next()?;
            let count = columns.next()?.parse().ok()?;
            (name != "Total").then(|| (name.to_owned(), count))
        })
        .collect()
}

/// Both parsers on every body, cross-checked: for each text body, promtool counts the same series
/// per metric name as prometheus_client. `None` when either tool is missing (SKIP printed).
pub fn parse_independently(bodies: &[(Format, &str)]) -> Option<Vec<Parsed>> {
    let text: Vec<(usize, &str)> = bodies
        .iter()
        .enumerate()
        .filter(|(_, (format, _))| *format == Format::Prometheus)
        .map(|(i, (_, body))| (i, *body))
        .collect();
    let bodies_only: Vec<&str> = text.iter().map(|(_, body)| *body).collect();
    // The two tools at the same time: together they take what the slower one takes.
    let (parsed, counted) = std::thread::scope(|scope| {
        let python = scope.spawn(|| parse_with_python(bodies));
        let counted = check_with_promtool(&bodies_only);
        let parsed = python
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (parsed, counted)
    });
    let (parsed, counted) = (parsed?, counted?);
    for ((i, _), promtool) in text.iter().zip(counted) {
        assert_eq!(
            promtool,
            parsed[*i].cardinality(),
            "body {i}: promtool and prometheus_client count different series"
        );
    }
    Some(parsed)
}

fn run_with_stdin(command: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {command:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    // Written from another thread: the child may answer before it has read everything.
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let _ = stdin.write_all(input);
        });
        child.wait_with_output().expect("wait for the child")
    })
}
