// Grafana-managed alert rules (grafanaAlerting, Grafana 10+ file provisioning), for teams that
// alert from Grafana rather than from Prometheus/Alertmanager. Rendered into
// deploy/grafana/alerting/healthlake-exporter.yaml. Same expression and window as the Prometheus
// rule HealthLakeExportJobFailed (alerts.libsonnet), per datastore.
local utils = import 'lib/utils.libsonnet';

{
  local c = $._config,
  local window = c.endedJobWindow,

  grafanaAlerting+:: {
    apiVersion: 1,
    groups+: [{
      orgId: 1,
      name: 'healthlake-exporter',
      folder: c.grafanaAlertFolder,
      interval: '1m',
      rules: [{
        uid: 'healthlake-export-job-failed',
        title: 'HealthLakeExportJobFailed',
        condition: 'C',
        data: [
          {
            refId: 'A',
            relativeTimeRange: { from: utils.seconds(window), to: 0 },
            datasourceUid: c.grafanaDatasourceUid,
            model: {
              refId: 'A',
              // Counts only jobs seen entering FAILED while the exporter runs: jobs that had
              // failed before it started never fire this.
              expr: 'sum by (datastore_id, datastore_name) (increase(healthlake_export_jobs_finished_total{status="FAILED"}[%s]))' % window,
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
              conditions: [{ evaluator: { type: 'gt', params: [0] } }],
            },
          },
        ],
        // No series (exporter not scraped yet) is not a failure; HealthLakeExporterDown covers that.
        noDataState: 'OK',
        execErrState: 'Error',
        'for': '0s',
        isPaused: false,
        labels: { severity: 'critical' },
        annotations: {
          summary: 'HealthLake FHIR export job FAILED on datastore {{ $labels.datastore_name }}',
          description: std.join(' ', [
            'An Amazon HealthLake FHIR export job on datastore {{ $labels.datastore_name }}',
            '(id {{ $labels.datastore_id }}) ended with status FAILED in the last %s.' % utils.humanDuration(window),
            'Find it with `aws healthlake list-fhir-export-jobs --datastore-id {{ $labels.datastore_id }} --job-status FAILED`,',
            "read its Message, check the output S3 bucket, KMS key and the export job's data access role,",
            'then start the export again.',
          ]),
          runbook_url: '%s#%s' % [c.runbookURLBase, 'healthlakeexportjobfailed'],
          __dashboardUid__: c.dashboardUid,
          __panelId__: '9',
        },
      }],
    }],
  },
}
