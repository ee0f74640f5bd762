//! Keeps the documentation true, one source for each fact: every relative link and `#anchor` of
//! README.md, docs/*.md and deploy/**/*.md resolves, and each docs page opens with a table of
//! contents of all its sections; the flag table of docs/configuration.md is exactly what `--help`
//! lists; the credentials table is the IAM policy; nothing says the exporter logs to stdout; every
//! memory figure the docs and manifests quote is one of BENCHMARKS.md's; repository URLs are
//! deploy/project.json's; example configurations parse; README's test command is `.ci/run`'s; and
//! the example `/metrics` output in docs/metrics.md is what the exporter serves against the fake
//! HealthLake (`UPDATE_GOLDEN=1` rewrites it after a deliberate change). The commands of
//! docs/deploy-in-10-minutes.md run in tests/deploy_artifacts.rs, with the other deploy checks.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::tools::repo_root;
use common::*;
use healthlake_exporter::state::Feed;
use healthlake_fake::{FakeJob, Fault};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// README.md, docs/*.md and the READMEs and runbook under deploy/: the pages a user navigates.
fn pages() -> Vec<PathBuf> {
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    let mut deploy = Vec::new();
    collect_files(&root.join("deploy"), &mut deploy);
    deploy.retain(|p| p.extension().is_some_and(|e| e == "md"));
    deploy.sort();
    pages.extend(deploy);
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 7, "docs/ has its pages: {docs:?}");
    pages.extend(docs);
    pages
}

/// The lines of a markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut in_code = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                return false;
            }
            !in_code
        })
        .collect()
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped (but `-` and `_`), spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown page, with GitHub's `-1`, `-2` suffixes for repeated headings.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for line in prose_lines(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = slug(heading);
        let n = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    anchors
}

/// The targets of the inline links `[text](target)` of a page's prose (not of its code blocks).
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    targets
}

/// Checks one link of `page`; returns what is wrong with it, if anything.
fn broken(page: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
    let file = if path.is_empty() {
        page.to_path_buf()
    } else {
        page.parent().unwrap().join(path)
    };
    if !file.exists() {
        return Some(format!("{target}: no file {}", file.display()));
    }
    if anchor.is_empty() || file.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let have = anchors(&read(&file));
    (!have.contains(anchor))
        .then(|| format!("{target}: no heading #{anchor} in {}", file.display()))
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in pages() {
        for target in link_targets(&read(&page)) {
            checked += 1;
            if let Some(problem) = broken(&page, &target) {
                problems.push(format!("{}: {problem}", page.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
    assert!(
        checked > 100,
        "only {checked} links found: is the parser broken?"
    );
}

#[test]
fn the_link_checker_finds_a_broken_anchor_and_a_missing_file() {
    let page = repo_root().join("docs/metrics.md");
    assert_eq!(broken(&page, "configuration.md#command-line"), None);
    assert_eq!(broken(&page, "#example-metrics-output"), None);
    assert!(broken(&page, "configuration.md#no-such-section").is_some());
    assert!(broken(&page, "no-such-page.md").is_some());
    assert_eq!(slug("`reason=\"access_denied\"`"), "reasonaccess_denied");
    assert_eq!(
        slug("4. Apply, then run the preflight"),
        "4-apply-then-run-the-preflight"
    );
}

/// Each docs page lists every one of its `## ` sections under `## Contents`, in order.
#[test]
fn every_docs_page_has_a_complete_table_of_contents() {
    for page in pages()
        .iter()
        .filter(|p| p.starts_with(repo_root().join("docs")))
    {
        let text = read(page);
        let sections: Vec<String> = prose_lines(&text)
            .iter()
            .filter_map(|l| l.strip_prefix("## "))
            .filter(|h| *h != "Contents")
            .map(slug)
            .collect();
        let start = text
            .find("\n## Contents\n")
            .unwrap_or_else(|| panic!("{}: no `## Contents`", page.display()));
        let toc = &text[start + 13..];
        let toc = &toc[..toc.find("\n## ").unwrap_or(toc.len())];
        let listed: Vec<String> = link_targets(toc)
            .iter()
            .filter_map(|t| t.strip_prefix('#').map(str::to_string))
            .collect();
        assert_eq!(listed, sections, "{}: Contents vs sections", page.display());
    }
}

/// The `## ` section of a markdown page called `heading`, up to the next `## `.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no `## {heading}`"));
    let body = &text[start + 1..];
    &body[..body[3..].find("\n## ").map_or(body.len(), |e| e + 3)]
}

/// The `--flags` and environment variables in a text (each `--x` token, each `HEALTHLAKE_…`).
fn flags_and_env(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    let tokens: Vec<&str> = text.split(|c: char| !word(c)).collect();
    let flags = tokens
        .iter()
        .filter(|t| t.starts_with("--") && t.len() > 2)
        .map(|t| t.trim_end_matches('.').to_string())
        .collect();
    let env = tokens
        .iter()
        .filter(|t| t.starts_with("HEALTHLAKE_EXPORTER_"))
        .map(|t| t.to_string())
        .collect();
    (flags, env)
}

/// The flag table of docs/configuration.md names exactly the flags and environment variables of
/// `--help` (aliases included), and each flag's row its environment variable.
#[test]
fn flag_table_matches_help() {
    let out = std::process::Command::new(EXPORTER_BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    // Flags as --help declares them: the option lines and the aliases, not flags its prose mentions.
    let declared: String = help
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("--")
                || t.starts_with("-h,")
                || t.starts_with("-V,")
                || t.starts_with("[alias")
                || t.starts_with("[env")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (help_flags, help_env) = flags_and_env(&declared);
    let config = read(&repo_root().join("docs/configuration.md"));
    let table: String = section(&config, "Command line")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split(" | ").take(2).collect::<Vec<_>>().join(" | "))
        .collect::<Vec<_>>()
        .join("\n");
    let (doc_flags, doc_env) = flags_and_env(&table);
    assert_eq!(
        doc_flags, help_flags,
        "docs/configuration.md flag table vs --help"
    );
    assert_eq!(
        doc_env, help_env,
        "docs/configuration.md env column vs --help"
    );
    for flag in [
        "--shard",
        "--probe",
        "--web.config.file",
        "--web.listen-address",
    ] {
        assert!(doc_flags.contains(flag), "{flag} in the table");
    }
}

/// Figures such as `18.6 MiB` in the docs and the manifests' comments are measurements: each must
/// be one that BENCHMARKS.md records. Only the design limits (sizes the code enforces) are not.
#[test]
fn memory_figures_come_from_benchmarks() {
    const LIMITS: &[&str] = &["1 MiB", "8 MiB", "16 MiB"];
    let root = repo_root();
    // BENCHMARKS.md writes figures also as `17.9 / 18.6 MiB` or `57.7–62.5 MiB`: every number on
    // a line that has MiB in it counts as recorded.
    let recorded: BTreeSet<String> = read(&root.join("BENCHMARKS.md"))
        .lines()
        .filter(|l| l.contains("MiB"))
        .flat_map(|l| {
            l.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
                .map(|n| n.trim_matches([',', '.']).to_string())
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut files = pages();
    files.retain(|p| !p.ends_with("BENCHMARKS.md"));
    collect_files(&root.join("deploy"), &mut files);
    let mut problems = Vec::new();
    for file in files {
        for figure in mib_figures(&read(&file)) {
            let number = figure.trim_end_matches(" MiB");
            if !LIMITS.contains(&figure.as_str()) && !recorded.contains(number) {
                problems.push(format!("{}: {figure}", file.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "figures not in BENCHMARKS.md (link to it, or record the measurement there):\n{}",
        problems.join("\n")
    );
    assert_eq!(
        mib_figures("peak 45 MiB, 1,210.8 MiB"),
        ["45 MiB", "1,210.8 MiB"]
    );
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "md" || e == "yaml" || e == "yml")
            && !out.contains(&path)
        {
            out.push(path);
        }
    }
}

/// Every `N MiB` (digits, thousands commas, a decimal point) in a text.
fn mib_figures(text: &str) -> Vec<String> {
    let mut figures = Vec::new();
    for (at, _) in text.match_indices(" MiB") {
        let number: String = text[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let number = number.trim_start_matches([',', '.']);
        if !number.is_empty() {
            figures.push(format!("{number} MiB"));
        }
    }
    figures
}

const EXAMPLE_START: &str =
    "<!-- example-metrics: generated by crates/exporter/tests/docs.rs; do not edit by hand -->\n```text\n";
const EXAMPLE_END: &str = "```\n<!-- /example-metrics -->";

/// The instant the example shows the scrape at: 2026-01-01 00:00:00 UTC.
const SHOWN_AT: f64 = 1_767_225_600.0;

/// The families of the excerpt, and which of their series it shows.
fn in_excerpt(line: &str) -> bool {
    let name = line.split(['{', ' ']).next().unwrap();
    let value = line.rsplit(' ').next().unwrap();
    let zero = value == "0" || value == "0.0";
    match name {
        "healthlake_feed_up" => true,
        "healthlake_feed_errors_total"
        | "healthlake_export_jobs"
        | "healthlake_export_job_end_timestamp_seconds"
        | "healthlake_export_job_duration_seconds"
        | "healthlake_export_oldest_active_job_age_seconds" => !zero,
        _ => false,
    }
}

/// A sample line with its clock-dependent value written as of `SHOWN_AT`: job timestamps were
/// seeded relative to `base`; a running job's age (seeded 600 s) grows by the seconds the test took.
fn as_shown(line: &str, base: f64, elapsed: f64) -> String {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let name = series.split('{').next().unwrap();
    let v: f64 = value.parse().unwrap();
    let shown = if name.ends_with("_timestamp_seconds") {
        v - base + SHOWN_AT
    } else if name.ends_with("oldest_active_job_age_seconds")
        || (name.ends_with("job_duration_seconds") && series.contains("IN_PROGRESS"))
    {
        assert!(
            (600.0..=600.0 + elapsed + 2.0).contains(&v),
            "{line}: a job running for 600 s at the start of a {elapsed} s test"
        );
        600.0
    } else {
        return line.to_string();
    };
    format!("{series} {shown:.1}")
}

/// The excerpt of `/metrics` shown in docs/metrics.md, as served against the fake: `prod` with a
/// job COMPLETED yesterday, one FAILED two minutes ago and one running for ten minutes; `staging`
/// denied `ListFHIRExportJobs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_metrics_excerpt_is_what_the_exporter_serves() {
    let (fake, server) = start_fake().await;
    let base = now().floor();
    fake.add_datastore("prod-datastore");
    fake.add_job(
        "prod-datastore",
        FakeJob::new("job-completed", "COMPLETED", base - 90_000.0)
            .named("nightly-2025-12-30")
            .ended(base - 86_400.0),
    );
    fake.add_job(
        "prod-datastore",
        FakeJob::new("job-failed", "FAILED", base - 1_800.0)
            .named("nightly-2025-12-31")
            .ended(base - 120.0),
    );
    fake.add_job(
        "prod-datastore",
        FakeJob::new("job-running", "IN_PROGRESS", base - 600.0).named("adhoc-export"),
    );
    fake.add_datastore("staging-datastore");
    fake.set_fault("staging-datastore", Some(Fault::AccessDenied));
    // A long interval: the scrape sees exactly the first poll of each (one access_denied error).
    let config = format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\n[polling]\ninterval = \"1h\"\ntimeout = \"5s\"\n\
         [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
         [[datastores]]\nid = \"prod-datastore\"\nname = \"prod\"\n\
         [[datastores]]\nid = \"staging-datastore\"\nname = \"staging\"\n",
        server.endpoint_url()
    );
    let exporter = start_exporter(&config).await;
    for id in ["prod-datastore", "staging-datastore"] {
        polled(&exporter, id, Feed::EXPORTS, 1).await;
    }
    let (status, _, body) = http_request(exporter.local_addr(), "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    let elapsed = now() - base;
    let mut excerpt = String::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && in_excerpt(l))
    {
        excerpt.push_str(&as_shown(line, base, elapsed));
        excerpt.push('\n');
    }
    compare_or_update(&excerpt);
    exporter.shutdown().await;
    drop(server);
}

fn compare_or_update(excerpt: &str) {
    let path = repo_root().join("docs/metrics.md");
    let doc = read(&path);
    let start = doc
        .find(EXAMPLE_START)
        .expect("docs/metrics.md: example-metrics start marker")
        + EXAMPLE_START.len();
    let end = start
        + doc[start..]
            .find(EXAMPLE_END)
            .expect("example-metrics end marker");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let updated = format!("{}{excerpt}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).expect("write docs/metrics.md");
        return;
    }
    assert_eq!(
        &doc[start..end],
        excerpt,
        "docs/metrics.md's example differs from what the exporter serves; after a deliberate \
         change: UPDATE_GOLDEN=1 cargo test -p healthlake-exporter --test docs"
    );
}

/// The IAM actions named in a text: `healthlake:…`, `sqs:…`, `sts:…`.
fn iam_actions(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|w| {
            ["healthlake:", "sqs:", "sts:"]
                .iter()
                .any(|p| w.starts_with(p) && w.len() > p.len())
        })
        .map(str::to_string)
        .collect()
}

/// The credentials table of docs/deployment.md (the one place that lists what the exporter asks of
/// AWS) names exactly the actions of deploy/iam-policy-all-features.json, plus the STS calls that
/// need no policy of their own (AssumeRole is granted on the roles, GetCallerIdentity needs none).
#[test]
fn credentials_table_matches_the_iam_policy() {
    let root = repo_root();
    let deployment = read(&root.join("docs/deployment.md"));
    let table: String = section(&deployment, "Credentials and IAM")
        .lines()
        .filter(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let documented = iam_actions(&table);
    let mut granted = iam_actions(&read(&root.join("deploy/iam-policy-all-features.json")));
    granted.insert("sts:AssumeRole".into());
    granted.insert("sts:GetCallerIdentity".into());
    assert_eq!(
        documented, granted,
        "docs/deployment.md credentials table vs the policy"
    );
}

/// Where output goes is stated once (docs/configuration.md, "Output"): the daemon logs to
/// stderr. No page or manifest may say otherwise.
#[test]
fn nothing_says_the_exporter_logs_to_stdout() {
    let mut files = pages();
    collect_files(&repo_root().join("deploy"), &mut files);
    for file in files {
        let text = read(&file).to_lowercase().replace('\n', " ");
        for wrong in [
            "logs to stdout",
            "log to stdout",
            "logging to stdout",
            "logs on stdout",
        ] {
            assert!(
                !text.contains(wrong),
                "{}: says `{wrong}`; the exporter logs to stderr",
                file.display()
            );
        }
    }
    let config = read(&repo_root().join("docs/configuration.md"));
    assert!(section(&config, "Output: stdout and stderr").contains("**The daemon logs to stderr**"));
}

/// Every URL into the project's repository in the docs is the one of deploy/project.json.
#[test]
fn repository_urls_come_from_project_json() {
    let project: serde_json::Value =
        serde_json::from_str(&read(&repo_root().join("deploy/project.json"))).unwrap();
    let url = project["repository_url"].as_str().unwrap();
    let name = url.rsplit('/').next().unwrap();
    for page in pages() {
        let text = read(&page);
        for (at, _) in text.match_indices("https://github.com/") {
            let link: String = text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, ')' | '`' | '"'))
                .collect();
            if link.contains(&format!("/{name}")) {
                assert!(
                    link.starts_with(url),
                    "{}: {link} is not {url}",
                    page.display()
                );
            }
        }
    }
}

/// Every complete configuration in the docs (a ```toml block with a `[[datastores]]` table) is one
/// `--check-config` accepts.
#[test]
fn configuration_examples_are_valid() {
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        for block in text.split("```toml\n").skip(1) {
            let block = &block[..block.find("```").expect("the block ends")];
            if !block.contains("[[datastores]]") {
                continue;
            }
            if let Err(e) =
                healthlake_exporter::config::Config::parse(block, Path::new("example.toml"))
            {
                panic!(
                    "{}: an example configuration is refused: {e}\n{block}",
                    page.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "README's and docs/configuration.md's examples: {checked}"
    );
}

/// README's "Test" command is the one `.ci/run` runs: what a user runs is what CI runs.
#[test]
fn readme_test_command_is_the_ci_command() {
    let readme = read(&repo_root().join("README.md"));
    let test = section(&readme, "Test");
    let block = &test[test.find("```sh\n").expect("a sh block") + 6..];
    let command = block[..block.find("```").unwrap()].trim();
    let ci = read(&repo_root().join(".ci/run"));
    let last = ci
        .lines()
        .rfind(|l| l.starts_with("cargo test"))
        .expect(".ci/run runs cargo test");
    assert_eq!(command, last.trim(), "README's test command vs .ci/run");
}
