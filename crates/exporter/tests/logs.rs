//! Log lines as the binary writes them to a pipe (issue 18, finding 8): text from outside (an API
//! error message, an SQS message) cannot forge a line, reach the terminal as an escape sequence or
//! make a line huge, and there is no colour when stderr is not a terminal; and (issue 20) the line
//! of a job that failed names it as `polling.job_name_label` allows and carries HealthLake's
//! `Message`, bounded and on one line.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::Spawned;
use common::{TestDir, EXPORTER_BIN as BIN};
use healthlake_exporter::aws::MAX_MESSAGE_BYTES;
use healthlake_exporter::logging::MAX_FIELD_BYTES;
use healthlake_fake::{FakeHealthLake, FakeServer, Fault};

const DS: &str = "0123456789abcdef0123456789abcdef";
const QUEUE: &str = "healthlake-events";
/// What an attacker would like to see as a line of its own, in red.
const FORGED: &str = "\n2026-01-01T00:00:00Z ERROR forged\x1b[31m";
/// The same as the text format writes it.
const FORGED_ESCAPED: &str = r"\n2026-01-01T00:00:00Z ERROR forged\u{1b}[31m";
/// A line longer than this would be split by container runtimes (16 KiB).
const MAX_LINE_BYTES: usize = 16 * 1024;

/// Bytes of filler in the hostile AccessDenied message.
const FILLER: usize = 200_000;

/// A fake whose datastore answers every poll with a 200 KB AccessDenied message carrying
/// [`FORGED`], and whose event queue holds an event from a "source" carrying it too.
async fn hostile_fake() -> (FakeHealthLake, FakeServer) {
    let (fake, server) = common::start_fake().await;
    fake.add_datastore(DS);
    let message = format!("denied{FORGED}{}", "z".repeat(FILLER));
    fake.set_fault(DS, Some(Fault::AccessDeniedWith(message)));
    fake.create_queue(QUEUE);
    let event = serde_json::json!({
        "source": format!("evil{FORGED}"),
        "detail-type": "Export Job Failed",
        "detail": {},
    });
    fake.send_message(QUEUE, event.to_string());
    (fake, server)
}

/// Runs the exporter against `server` with `args`, until stderr has lines containing every one of
/// `needles` (or 30 s pass), then stops it; returns every stderr line, as bytes.
fn stderr_lines(server: &FakeServer, args: &[&str], needles: &[&str]) -> Vec<Vec<u8>> {
    let endpoint = server.endpoint_url();
    let mut text = common::config_text(&endpoint, "", &[(DS, "main")]);
    text.push_str(&format!(
        "[events]\nqueue_url = \"{endpoint}/123456789012/{QUEUE}\"\nendpoint_url = \"{endpoint}\"\nwait_time = \"1s\"\n"
    ));
    let dir = TestDir::new("logs");
    let path = dir.write("config.toml", text);
    let mut child = Spawned::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "AKIDLOGTEST")
            .env("AWS_SECRET_ACCESS_KEY", "log-test-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            // Colour is decided by the terminal alone here: stderr is a pipe.
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: Vec<Vec<u8>> = Vec::new();
    while !needles.iter().all(|n| seen.iter().any(|l| contains(l, n))) {
        match child.stderr().next_by(deadline, "the lines awaited") {
            Some(line) => seen.push(line),
            None => panic!(
                "the exporter ended before lines with {needles:?}; stderr:\n{}",
                shown(&seen)
            ),
        }
    }
    seen.extend(child.stderr().ready());
    seen
}

fn contains(line: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(line).contains(needle)
}

/// The lines, each cut to 300 bytes, for failure messages.
fn shown(lines: &[Vec<u8>]) -> String {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l[..l.len().min(300)]).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line the text format writes for one event: `<RFC 3339 time with fraction> <LEVEL> …`.
fn is_text_event(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let time = words.next().unwrap_or("");
    let level = words.next().unwrap_or("");
    time.len() >= 24
        && time.as_bytes()[4] == b'-'
        && time.contains('T')
        && time.contains('.')
        && time.ends_with('Z')
        && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_escape_cut_and_do_not_colour_a_pipe() {
    let (_fake, server) = hostile_fake().await;
    let lines = stderr_lines(
        &server,
        &[],
        &["poll failed", "event from another source deleted"],
    );
    let all = shown(&lines);
    for line in &lines {
        assert!(
            !line.contains(&0x1b),
            "a raw ESC byte (colour or forged):\n{all}"
        );
        assert!(
            line.len() <= MAX_LINE_BYTES,
            "a {} byte line:\n{all}",
            line.len()
        );
        let text = std::str::from_utf8(line).expect("UTF-8 lines");
        assert!(is_text_event(text), "not one real event: {text:?}\n{all}");
        assert!(
            !text.starts_with("2026-01-01T00:00:00Z ERROR forged"),
            "{all}"
        );
    }
    let failed = lines.iter().find(|l| contains(l, "poll failed")).unwrap();
    let failed = String::from_utf8_lossy(failed);
    // The error is the last field: the message as kept (cut to MAX_MESSAGE_BYTES when the error
    // was sorted), escaped by the log format and shown whole.
    let error = failed.split_once(" error=").expect("an error field").1;
    let error = error.trim_end();
    assert!(error.len() < MAX_FIELD_BYTES, "shown whole: {failed}");
    let (kept, marker) = error.split_once('…').expect("the message was cut");
    let head = format!("HTTP 403 AccessDeniedException: denied{FORGED_ESCAPED}");
    assert!(kept.starts_with(&head), "{failed}");
    assert!(kept[head.len()..].bytes().all(|b| b == b'z'), "{failed}");
    let kept_raw = kept.len() - (FORGED_ESCAPED.len() - FORGED.len());
    assert!(kept_raw <= MAX_MESSAGE_BYTES, "{failed}");
    let full = head.len() - (FORGED_ESCAPED.len() - FORGED.len()) + FILLER;
    assert_eq!(marker, format!("({} bytes more)", full - kept_raw));
    // The log format's own cut at MAX_FIELD_BYTES is covered by the unit tests in logging: no
    // value from outside in these lines is that long any more.
    let foreign = lines
        .iter()
        .find(|l| contains(l, "another source"))
        .unwrap();
    let foreign = String::from_utf8_lossy(foreign);
    assert!(
        foreign.contains(&format!("source=evil{FORGED_ESCAPED}")),
        "{foreign}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_cut_each_value() {
    let (_fake, server) = hostile_fake().await;
    let lines = stderr_lines(
        &server,
        &["--log-format", "json"],
        &["poll failed", "event from another source deleted"],
    );
    let all = shown(&lines);
    let mut failed = None;
    for line in &lines {
        assert!(!line.contains(&0x1b), "a raw ESC byte:\n{all}");
        assert!(
            line.len() <= MAX_LINE_BYTES,
            "a {} byte line:\n{all}",
            line.len()
        );
        let event: serde_json::Value = serde_json::from_slice(line).expect("one JSON event a line");
        if event["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("poll failed"))
        {
            failed = Some(event);
        }
    }
    // The error as kept: cut to MAX_MESSAGE_BYTES when it was sorted, logged whole (the JSON
    // format's own cut at MAX_FIELD_BYTES is the unit tests' in logging).
    let error = failed.expect("a poll failed event")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    let (kept, marker) = error.split_once('…').expect("the message was cut");
    assert!(error.len() <= MAX_MESSAGE_BYTES, "{} bytes", error.len());
    let head = format!("HTTP 403 AccessDeniedException: denied{FORGED}");
    assert!(kept.starts_with(&head), "{kept}");
    let more = head.len() + FILLER - kept.len();
    assert_eq!(marker, format!("({more} bytes more)"));
}

/// The job name in the log line, as `polling.job_name_label` shows it in the `job_name` label.
const JOB_NAME: &str = "cohort-export";
const FAILED_JOB: &str = "f00dfeedf00dfeedf00dfeedf00dfeed";

/// HealthLake's `Message` at its most hostile: a forged line in red, 5 KB long, a bidi override.
fn hostile_job_message() -> String {
    format!("Export failed:{FORGED}\u{202e}{}", "m".repeat(5_000))
}

/// Runs the exporter (JSON logs, `polling.job_name_label = mode`) against a fake whose datastore
/// has no jobs until the exporter's second export listing has started (its first successful poll
/// counts nothing as finishing), then an export that FAILED with [`hostile_job_message`]; returns
/// the JSON event the exporter logs for it.
async fn failure_event(mode: &str) -> serde_json::Value {
    let (fake, server) = common::start_fake().await;
    fake.add_datastore(DS);
    let polling = format!("job_name_label = \"{mode}\"");
    let text = common::config_text(&server.endpoint_url(), &polling, &[(DS, "main")]);
    let dir = TestDir::new("logs-failed");
    let path = dir.write("config.toml", text);
    let mut child = Spawned::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .args(["--log-format", "json"])
            .env("AWS_ACCESS_KEY_ID", "AKIDLOGTEST")
            .env("AWS_SECRET_ACCESS_KEY", "log-test-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    common::eventually(Duration::from_secs(30), "a second export listing", || {
        let listed = fake.request_count(DS);
        async move { (listed >= 2).then_some(()) }
    })
    .await;
    let now = common::now();
    let job = healthlake_fake::FakeJob::new(FAILED_JOB, "FAILED", now - 60.0)
        .named(JOB_NAME)
        .ended(now - 5.0)
        .with_message(hostile_job_message());
    fake.add_job(DS, job);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: Vec<Vec<u8>> = Vec::new();
    loop {
        let Some(line) = child.stderr().next_by(deadline, "the job failed line") else {
            panic!("no 'export job failed' line; stderr:\n{}", shown(&seen));
        };
        assert!(!line.contains(&0x1b), "a raw ESC byte:\n{}", shown(&[line]));
        let event: serde_json::Value =
            serde_json::from_slice(&line).expect("one JSON event a line");
        if event["message"] == "export job failed" {
            return event;
        }
        seen.push(line);
    }
}

/// Finding (issue 20): the failure line names the job (its id, and its name as
/// `job_name_label` allows) and carries HealthLake's `Message`, on one line, bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_line_names_the_job_and_carries_its_message_bounded_and_escaped() {
    use healthlake_exporter::model::JobNameLabel;

    let hostile = hostile_job_message();
    let escaped_head = format!("Export failed:{FORGED_ESCAPED}\\u{{202e}}");
    for (mode, label) in [("keep", JobNameLabel::Keep), ("hash", JobNameLabel::Hash)] {
        let event = failure_event(mode).await;
        assert_eq!(event["level"], "WARN", "{event}");
        assert_eq!(event["job_id"], FAILED_JOB, "{event}");
        assert_eq!(event["status"], "FAILED", "{event}");
        assert_eq!(event["datastore_id"], DS, "{event}");
        let name = label.label(Some(JOB_NAME)).into_owned();
        assert_eq!(event["job_name"], name.as_str(), "{mode}: {event}");
        if mode == "hash" {
            assert!(!event.to_string().contains(JOB_NAME), "{event}");
        }
        let message = event["job_message"].as_str().expect("job_message");
        assert!(
            message.len() <= MAX_MESSAGE_BYTES,
            "{} bytes",
            message.len()
        );
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(!message.contains('\u{202e}'), "{message:?}");
        let (kept, marker) = message.split_once('…').expect("the message was cut");
        assert!(kept.starts_with(&escaped_head), "{kept}");
        assert!(
            kept[escaped_head.len()..].bytes().all(|b| b == b'm'),
            "{kept}"
        );
        // Kept bytes of the message: the escaped head stands for the raw one.
        let raw_head = format!("Export failed:{FORGED}\u{202e}");
        let kept_raw = raw_head.len() + kept.len() - escaped_head.len();
        assert_eq!(marker, format!("({} bytes more)", hostile.len() - kept_raw));
    }
    // `drop`: no name at all, the rest as before.
    let event = failure_event("drop").await;
    assert!(event.get("job_name").is_none(), "{event}");
    assert!(!event.to_string().contains(JOB_NAME), "{event}");
    assert_eq!(event["job_id"], FAILED_JOB, "{event}");
    assert!(event["job_message"]
        .as_str()
        .is_some_and(|m| m.starts_with(&escaped_head)));
}
