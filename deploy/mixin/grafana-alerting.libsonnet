// Grafana-managed alert rules (grafanaAlerting, Grafana 10+ file provisioning), for teams that
// alert from Grafana rather than from Prometheus/Alertmanager. Rendered into
// deploy/grafana/alerting/healthlake-exporter.yaml.
//
// Made from the Prometheus rules of alerts.libsonnet, one for one: same name, query, `for`,
// severity and runbook_url, so both cover the same failures. A Prometheus rule fires for every
// series its expression returns; here query A is that same expression and threshold C fires for
// every series it returns (`lt 1` for the `== 0` rules, whose series are 0; `gt 0` for the others).
// No series is not an alert (noDataState OK). The summary and description are the rule's, or
// (its hidden `grafana` field) a variant without the `query` template function and the numeric
// $value, which Grafana's templates lack.
//
// Differences from Prometheus: Grafana has no keep_firing_for here, so a per-job alert whose series
// is absent for more than two evaluations (an exporter restart, a shard move) may resolve and fire
// again; and Grafana evaluates the group every `interval`.
{
  local c = $._config,

  // The dashboard panel each alert links to (__panelId__): see dashboard.libsonnet.
  local panelOf = {
    HealthLakeExportJobStuck: 11,
    HealthLakeDatastorePollFailing: 14,
    HealthLakeDatastoreNotActive: 25,
    HealthLakeExporterDown: 17,
    HealthLakeExporterTargetMissing: 17,
    HealthLakeExportJobFailed: 38,
    HealthLakeExportJobCompletedWithErrors: 38,
    HealthLakeImportJobFailed: 38,
    HealthLakeImportJobCompletedWithErrors: 38,
    HealthLakeImportPollFailing: 23,
    HealthLakeDatastoreDescribeFailing: 27,
    HealthLakeDiscoveryFailing: 28,
    HealthLakeExporterConfigReloadFailed: 6,
    HealthLakeEventConsumerDown: 34,
    HealthLakeEventsMissing: 36,
  },

  local grafanaRule(r) =
    // Grafana limits rule UIDs to 40 characters: the lower-case name (the runbook anchor) fits.
    local uid = std.asciiLower(r.alert);
    assert std.length(uid) <= 40 : 'Grafana rule uid %s is longer than 40 characters' % uid;
    assert std.objectHas(panelOf, r.alert) : 'grafana-alerting.libsonnet: no dashboard panel for %s in panelOf' % r.alert;
    {
      uid: uid,
      title: r.alert,
      condition: 'C',
      data: [
        {
          refId: 'A',
          relativeTimeRange: { from: 600, to: 0 },
          datasourceUid: c.grafanaDatasourceUid,
          model: {
            refId: 'A',
            expr: r.expr,
            instant: true,
            range: false,
            intervalMs: 60000,
            maxDataPoints: 43200,
          },
        },
        {
          refId: 'C',
          relativeTimeRange: { from: 0, to: 0 },
          datasourceUid: '__expr__',
          model: {
            refId: 'C',
            type: 'threshold',
            expression: 'A',
            datasource: { type: '__expr__', uid: '__expr__' },
            conditions: [{ evaluator: { type: r.grafana.threshold[0], params: [r.grafana.threshold[1]] } }],
          },
        },
      ],
      // No series (feature off, nothing wrong, exporter not scraped yet) is not an alert;
      // HealthLakeExporterDown / TargetMissing cover a missing exporter.
      noDataState: 'OK',
      execErrState: 'Error',
      'for': if r['for'] == '0m' then '0s' else r['for'],
      isPaused: false,
      labels: r.labels,
      annotations: {
        summary: r.grafana.summary,
        description: r.grafana.description,
        runbook_url: r.annotations.runbook_url,
        __dashboardUid__: c.dashboardUid,
        __panelId__: std.toString(panelOf[r.alert]),
      },
    },

  grafanaAlerting+:: {
    apiVersion: 1,
    groups+: [{
      orgId: 1,
      name: 'healthlake-exporter',
      folder: c.grafanaAlertFolder,
      interval: '1m',
      rules: [grafanaRule(r) for g in $.prometheusAlerts.groups for r in g.rules],
    }],
  },
}
