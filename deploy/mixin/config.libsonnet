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

    // The ended-job window. The per-job failure alerts (HealthLake{Export,Import}Job{Failed,
    // CompletedWithErrors}) fire for a job whose EndTime lies within it and resolve on their own
    // once it has passed (plus jobAlertKeepFiringFor); the dashboard's "Recently ended jobs" table
    // shows the same jobs. It MUST equal the exporter's `polling.ended_job_window` (default "1h",
    // from 1m to 24h), how long the exporter keeps an ended job's
    // healthlake_{export,import}_job_end_timestamp_seconds series: the rules cut at this window and
    // the exporter at its own, so the shorter one wins and a longer one on either side buys nothing.
    // Replaces `failureWindow` (the window of the old counter-based rules; setting it is an error).
    endedJobWindow: '1h',

    // keep_firing_for of the per-job alerts: bridges the minutes a job's series is absent while an
    // exporter restarts or its datastore moves to another replica, so the alert does not resolve
    // and fire again. Prometheus only (Grafana-managed rules have no equivalent here).
    jobAlertKeepFiringFor: '10m',

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
