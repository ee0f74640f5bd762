#!/bin/sh
# Regenerates deploy/kubernetes/rules/prometheusrule.yaml (Prometheus Operator PrometheusRule)
# from deploy/prometheus/alerts.yml, so that both hold exactly the same rule groups.
# Run after editing alerts.yml; `cargo test --test deploy_artifacts` fails when they drift.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
src="$here/prometheus/alerts.yml"
dst="$here/kubernetes/rules/prometheusrule.yaml"
{
  echo "# GENERATED from deploy/prometheus/alerts.yml by deploy/scripts/sync-prometheusrule.sh: do not edit."
  echo "apiVersion: monitoring.coreos.com/v1"
  echo "kind: PrometheusRule"
  echo "metadata:"
  echo "  name: healthlake-exporter"
  echo "  labels:"
  echo "    app.kubernetes.io/name: healthlake-exporter"
  echo "    app.kubernetes.io/component: alerting-rules"
  echo "    # kube-prometheus-stack only loads rules whose labels match its ruleSelector"
  echo "    # (by default release: <helm release name>): add that label here or via kustomize."
  echo "spec:"
  # Indent the rules file by two spaces under spec: (keeps its comments and formatting).
  sed -e 's/^\(.\)/  \1/' "$src"
} > "$dst"
echo "wrote $dst"
