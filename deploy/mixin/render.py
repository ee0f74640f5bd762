#!/usr/bin/env python3
"""Renders the healthlake-exporter monitoring mixin into the committed deploy/ files.

    python3 deploy/mixin/render.py          # (re)write the files below
    python3 deploy/mixin/render.py --check  # exit 1, with a diff, if a committed file differs

Needs the `jsonnet` Python binding and PyYAML (`pip install -r .ci/requirements.txt`). Writes:

    deploy/prometheus/alerts.yml                              prometheusAlerts, plain Prometheus
    deploy/kubernetes/rules/prometheusrule.yaml               prometheusAlerts, Prometheus Operator
    deploy/grafana/dashboard.json                             grafanaDashboards
    deploy/kubernetes/components/kube-prometheus-stack/dashboard-configmap.yaml
                                                              the same, for Grafana's dashboard sidecar
    deploy/grafana/alerting/healthlake-exporter.yaml          grafanaAlerting, Grafana file provisioning
"""

import argparse
import difflib
import json
import sys
from pathlib import Path

try:
    import _jsonnet
    import yaml
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit(f"render.py: {e}; install the pinned tools with: pip install -r .ci/requirements.txt")

MIXIN = Path(__file__).resolve().parent
DEPLOY = MIXIN.parent
HOW = "edit deploy/mixin/*.libsonnet and run `python3 deploy/mixin/render.py`"

# Keys in the order people write them (jsonnet sorts keys alphabetically); others keep their order.
KEY_ORDER = [
    "apiVersion", "kind", "metadata", "name", "namespace", "labels", "annotations", "spec", "data",
    "orgId", "folder", "interval", "groups", "rules", "alert", "uid", "title", "condition", "expr",
    "for", "summary", "description", "runbook_url",
]


def ordered(value):
    if isinstance(value, dict):
        rank = {k: i for i, k in enumerate(KEY_ORDER)}
        keys = sorted(value, key=lambda k: rank.get(k, len(KEY_ORDER)))
        # "labels"/"annotations" of a rule come after its expression, as in hand-written rules.
        if "alert" in value or "title" in value:
            keys = [k for k in keys if k not in ("labels", "annotations")] + [
                k for k in ("labels", "annotations") if k in value
            ]
        return {k: ordered(value[k]) for k in keys}
    if isinstance(value, list):
        return [ordered(v) for v in value]
    return value


class Dumper(yaml.SafeDumper):
    pass


FOLDED = {}  # placeholder -> long one-line string, written as a folded block by fold_blocks()


def _str(dumper, s):
    if "\n" in s:
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")
    if len(s) > 90 and " " in s and "  " not in s and s == s.strip():
        key = f"__folded_{len(FOLDED)}__"
        FOLDED[key] = s
        return dumper.represent_scalar("tag:yaml.org,2002:str", key)
    return dumper.represent_scalar("tag:yaml.org,2002:str", s)


Dumper.add_representer(str, _str)


def wrap(s, width):
    """Lines of at most ~width characters, broken at spaces outside {{ ... }} templates."""
    lines, line, depth = [], "", 0
    for word in s.split(" "):
        if line and depth == 0 and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
        depth += word.count("{{") - word.count("}}")
    return lines + [line]


def fold_blocks(text):
    """Replaces each placeholder by a `>-` block scalar: YAML folds its lines back with spaces."""
    out = []
    for line in text.split("\n"):
        key = next((k for k in FOLDED if line.endswith(" " + k)), None)
        if key is None:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        out.append(line[: -len(key)] + ">-")
        out.extend(indent + part for part in wrap(FOLDED[key], 100 - len(indent)))
    return "\n".join(out)


def to_yaml(header, doc):
    FOLDED.clear()
    text = fold_blocks(yaml.dump(ordered(doc), Dumper=Dumper, sort_keys=False, width=1000, allow_unicode=True))
    # Guard: what a reader loads back is exactly what the mixin produced.
    assert yaml.safe_load(text) == doc, "YAML round trip changed the document"
    return "".join(f"# {line}".rstrip() + "\n" for line in header.strip("\n").split("\n")) + text


def evaluate(expr):
    return json.loads(_jsonnet.evaluate_snippet("render.py", expr, jpathdir=[str(MIXIN)]))


def outputs():
    mixin = evaluate("""
        local m = import 'mixin.libsonnet';
        { alerts: m.prometheusAlerts, dashboards: m.grafanaDashboards, grafanaAlerting: m.grafanaAlerting }
    """)
    alerts = mixin["alerts"]
    (name, dashboard), = mixin["dashboards"].items()
    dashboard_json = json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"

    files = {}
    files["prometheus/alerts.yml"] = to_yaml(f"""
GENERATED from deploy/mixin by render.py: do not edit; {HOW}.
Prometheus alerting rules for healthlake-exporter. Load with `rule_files: [alerts.yml]` (see
prometheus.yml here); the Prometheus Operator variant is deploy/kubernetes/rules/prometheusrule.yaml.
Unit tests: promtool test rules alerts_test.yml
""", alerts)
    files["kubernetes/rules/prometheusrule.yaml"] = to_yaml(f"""
GENERATED from deploy/mixin by render.py: do not edit; {HOW}.
The alerting rules of deploy/prometheus/alerts.yml as a Prometheus Operator PrometheusRule.
kube-prometheus-stack only loads rules labelled with its release name: add the component
deploy/kubernetes/components/kube-prometheus-stack to your overlay.
""", {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "healthlake-exporter",
            "labels": {
                "app.kubernetes.io/name": "healthlake-exporter",
                "app.kubernetes.io/component": "alerting-rules",
            },
        },
        "spec": alerts,
    })
    files["grafana/dashboard.json"] = dashboard_json
    files["kubernetes/components/kube-prometheus-stack/dashboard-configmap.yaml"] = to_yaml(f"""
GENERATED from deploy/mixin by render.py: do not edit; {HOW}.
The Grafana dashboard (deploy/grafana/dashboard.json) for Grafana's dashboard sidecar, which loads
ConfigMaps labelled grafana_dashboard: "1" (kube-prometheus-stack's default).
""", {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "healthlake-exporter-dashboard",
            "labels": {"app.kubernetes.io/name": "healthlake-exporter", "grafana_dashboard": "1"},
        },
        "data": {name: dashboard_json},
    })
    files["grafana/alerting/healthlake-exporter.yaml"] = to_yaml(f"""
GENERATED from deploy/mixin by render.py: do not edit; {HOW}.
Grafana-managed alert rules for healthlake-exporter (Grafana 10+ file provisioning), for teams that
alert from Grafana rather than from Prometheus/Alertmanager (deploy/prometheus/alerts.yml). Use one
or the other, not both, or you will be notified twice.

Install: copy into Grafana's provisioning/alerting/ directory (kube-prometheus-stack / the Grafana
Helm chart: a ConfigMap labelled grafana_alert: "1") and restart or reload Grafana. `datasourceUid`
is the UID of your Prometheus data source: _config.grafanaDatasourceUid in the mixin ("prometheus"
is kube-prometheus-stack's default data source).
""", mixin["grafanaAlerting"])
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    args = parser.parse_args()
    drifted = []
    for rel, text in outputs().items():
        path = DEPLOY / rel
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if old == text:
            continue
        if args.check:
            drifted.append(rel)
            diff = difflib.unified_diff(old.splitlines(), text.splitlines(), f"deploy/{rel} (committed)",
                                        f"deploy/{rel} (rendered)", lineterm="", n=1)
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote deploy/{rel}")
    if drifted:
        sys.exit(f"render.py --check: {len(drifted)} file(s) differ from the mixin: {', '.join(drifted)}\n"
                 f"Do not edit them by hand: {HOW}, then commit the result.")
    if args.check:
        print("render.py --check: all rendered files match the mixin")


if __name__ == "__main__":
    main()
