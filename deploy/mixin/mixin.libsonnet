// healthlake-exporter monitoring mixin: _config, prometheusAlerts, grafanaDashboards (the form
// kubernetes-mixin and node-mixin use), plus grafanaAlerting for Grafana-managed alert rules.
// Plain jsonnet, no dependencies. Render with `python3 deploy/mixin/render.py` (see README.md).
(import 'config.libsonnet')
+ (import 'alerts.libsonnet')
+ (import 'dashboard.libsonnet')
+ (import 'grafana-alerting.libsonnet')
