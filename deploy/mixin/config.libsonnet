// The mixin's knobs. Override any of them from your own jsonnet:
//
//   (import 'mixin.libsonnet') + { _config+:: { exportJobStuckThresholdSeconds: 12 * 3600 } }
local project = import '../project.json';

{
  _config+:: {
    // Selects the exporter's scrape job: used by the exporter-health alerts (HealthLakeExporterDown,
    // HealthLakeExporterTargetMissing) and the dashboard's `job` variable. The shipped
    // ServiceMonitor, PodMonitor and prometheus.yml all give jobs with "healthlake" in the name.
    jobSelector: 'job=~".*healthlake.*"',
    // ...and how HealthLakeExporterTargetMissing's description words it: change with jobSelector.
    jobSelectorText: 'whose job label contains "healthlake"',
    jobSelectorAssumption: '"healthlake" in the job label',

    // HealthLakeExportJobStuck: the oldest unfinished export job is older than this. Exports of a
    // large datastore can legitimately take hours: tune it to your data.
    exportJobStuckThresholdSeconds: 6 * 3600,

    // HealthLake*JobFailed / CompletedWithErrors: a job that ended badly within this window fires
    // (at once), and the alert resolves on its own this long after the failure.
    failureWindow: '15m',

    // Each alert's runbook_url is this + '#' + the alert name in lower case (a heading of
    // runbook.md). Defaults to the repository of deploy/project.json.
    runbookURLBase: project.repository_url + '/blob/main/deploy/mixin/runbook.md',

    // Dashboard: the label that tells clusters apart, and whether to show the cluster picker
    // (hidden, it still matches everything: series without the label included).
    clusterLabel: 'cluster',
    showMultiCluster: false,
    dashboardUid: 'healthlake-exporter',
    dashboardTags: ['healthlake', 'aws', 'fhir'],

    // Grafana-managed alerting (grafana/alerting/healthlake-exporter.yaml): the UID of the
    // Prometheus data source ("prometheus" in kube-prometheus-stack) and the alert folder.
    grafanaDatasourceUid: 'prometheus',
    grafanaAlertFolder: 'HealthLake',
  },
}
