// Prometheus alerting rules (prometheusAlerts). Rendered into deploy/prometheus/alerts.yml and the
// PrometheusRule by render.py; unit tests in deploy/prometheus/alerts_test.yml.
//
// To add an alert: append `alert({...})` to `rules` below (name, expr, for, severity, summary,
// description), add its firing and not-firing cases to alerts_test.yml and a section named after
// it to runbook.md, then run `python3 deploy/mixin/render.py`. See README.md here.
local utils = import 'lib/utils.libsonnet';

{
  local c = $._config,

  // Every rule gets a runbook_url pointing at the heading of runbook.md named after it.
  local alert(a) = {
    alert: a.alert,
    expr: a.expr,
    'for': a['for'],
    labels: { severity: a.severity },
    annotations: {
      summary: a.summary,
      description: std.join(' ', a.description),
      runbook_url: '%s#%s' % [c.runbookURLBase, std.asciiLower(a.alert)],
    },
  },

  local window = c.failureWindow,
  local windowText = utils.humanDuration(window),

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'healthlake-exporter',
        rules: [
          // Fires on the first FAILED export job: the counter only counts jobs seen *entering*
          // FAILED while the exporter runs (it starts at 0), so jobs that had failed before the
          // exporter started never fire it. The window keeps it firing that long after the failure,
          // then lets it resolve on its own (one notification per failure burst).
          alert({
            alert: 'HealthLakeExportJobFailed',
            expr: 'increase(healthlake_export_jobs_finished_total{status="FAILED"}[%s]) > 0' % window,
            'for': '0m',
            severity: 'critical',
            summary: 'HealthLake FHIR export job FAILED on datastore {{ $labels.datastore_name }}',
            description: [
              'An Amazon HealthLake FHIR export job on datastore {{ $labels.datastore_name }}',
              '(id {{ $labels.datastore_id }}) ended with status FAILED in the last %s.' % windowText,
              'Find it with `aws healthlake list-fhir-export-jobs --datastore-id {{ $labels.datastore_id }} --job-status FAILED`',
              '(or the healthlake_export_job_duration_seconds{status="FAILED"} series / the dashboard table),',
              "read its Message, check the output S3 bucket, KMS key and the export job's data access role,",
              'then start the export again.',
            ],
          }),

          alert({
            alert: 'HealthLakeExportJobCompletedWithErrors',
            expr: 'increase(healthlake_export_jobs_finished_total{status="COMPLETED_WITH_ERRORS"}[%s]) > 0' % window,
            'for': '0m',
            severity: 'warning',
            summary: 'HealthLake FHIR export job completed with errors on datastore {{ $labels.datastore_name }}',
            description: [
              'An Amazon HealthLake FHIR export job on datastore {{ $labels.datastore_name }}',
              '(id {{ $labels.datastore_id }}) ended with status COMPLETED_WITH_ERRORS in the last %s:' % windowText,
              "some resources were not exported. Look at the job's output location in S3 for the error files",
              'and re-export what is missing.',
            ],
          }),

          // Import jobs (only with jobs = ["import"] or ["export", "import"]; the series are absent
          // otherwise, so this never fires then). Same counter semantics as the export alert.
          alert({
            alert: 'HealthLakeImportJobFailed',
            expr: 'increase(healthlake_import_jobs_finished_total{status="FAILED"}[%s]) > 0' % window,
            'for': '0m',
            severity: 'critical',
            summary: 'HealthLake FHIR import job FAILED on datastore {{ $labels.datastore_name }}',
            description: [
              'An Amazon HealthLake FHIR import job on datastore {{ $labels.datastore_name }}',
              '(id {{ $labels.datastore_id }}) ended with status FAILED in the last %s.' % windowText,
              'Find it with `aws healthlake list-fhir-import-jobs --datastore-id {{ $labels.datastore_id }} --job-status FAILED`',
              '(or the healthlake_import_job_duration_seconds{status="FAILED"} series), read its Message,',
              "check the input S3 location, the KMS key and the import job's data access role, then start the import again.",
            ],
          }),

          alert({
            alert: 'HealthLakeExportJobStuck',
            expr: 'healthlake_export_oldest_active_job_age_seconds > %s' % utils.promqlSeconds(c.exportJobStuckThresholdSeconds),
            'for': '5m',
            severity: 'warning',
            summary: 'HealthLake FHIR export job unfinished for {{ $value | humanizeDuration }} on datastore {{ $labels.datastore_name }}',
            description: [
              'The oldest unfinished (SUBMITTED, QUEUED, IN_PROGRESS or CANCEL_*) FHIR export job on datastore',
              '{{ $labels.datastore_name }} (id {{ $labels.datastore_id }}) was submitted {{ $value | humanizeDuration }} ago,',
              'more than the %s threshold. Check the job with' % utils.shortSeconds(c.exportJobStuckThresholdSeconds),
              '`aws healthlake list-fhir-export-jobs --datastore-id {{ $labels.datastore_id }} --job-status IN_PROGRESS`;',
              'if it makes no progress, contact AWS support with the job id.',
            ],
          }),

          // The description names the most frequent error reason of the last 10 minutes, read
          // from healthlake_poll_errors_total{reason=...} with a query in the template.
          alert({
            alert: 'HealthLakeDatastorePollFailing',
            expr: 'healthlake_datastore_up == 0',
            'for': '5m',
            severity: 'warning',
            summary: 'healthlake-exporter cannot poll datastore {{ $labels.datastore_name }}',
            description: [
              'The exporter has failed to list the FHIR export jobs of datastore {{ $labels.datastore_name }}',
              '(id {{ $labels.datastore_id }}) for at least 5 minutes, so its job metrics are stale and',
              'HealthLakeExportJobFailed cannot fire for it.',
              'Most frequent error reason in the last 10 minutes:',
              "{{ with printf \"topk(1, sum by (reason) (increase(healthlake_poll_errors_total{datastore_id='%s'}[10m])) > 0)\" $labels.datastore_id | query }}{{ range . }}{{ .Labels.reason }}{{ end }}{{ else }}unknown{{ end }}",
              "(see healthlake_poll_errors_total by reason and the exporter's logs).",
              'access_denied: grant healthlake:ListFHIRExportJobs on the datastore (deploy/iam-policy.json);',
              'credentials: check IRSA / EKS Pod Identity and role_arn;',
              'not_found or validation: check the datastore id and aws.region;',
              'throttled: raise polling.interval; timeout, network or server_error: check connectivity to the HealthLake endpoint.',
            ],
          }),

          // Datastore health (only with polling.datastore_health = true; without it the series are
          // absent and this never fires). The status series keep the last status
          // DescribeFHIRDatastore reported while its calls fail (see
          // healthlake_datastore_describe_up). 15m rides out a short UPDATING.
          alert({
            alert: 'HealthLakeDatastoreNotActive',
            expr: 'healthlake_datastore_status{status="ACTIVE"} == 0',
            'for': '15m',
            severity: 'warning',
            summary: 'HealthLake datastore {{ $labels.datastore_name }} is not ACTIVE',
            description: [
              'Amazon HealthLake datastore {{ $labels.datastore_name }} (id {{ $labels.datastore_id }})',
              'has not been ACTIVE for at least 15 minutes; its current status is',
              "{{ with printf \"max by (status) (healthlake_datastore_status{datastore_id='%s'}) == 1\" $labels.datastore_id | query }}{{ range . }}{{ .Labels.status }}{{ end }}{{ else }}unknown{{ end }}",
              '(healthlake_datastore_status == 1). Imports, exports and FHIR requests may fail meanwhile.',
              'Check it with `aws healthlake describe-fhir-datastore --datastore-id {{ $labels.datastore_id }}`',
              '(its ErrorCause says why for CREATE_FAILED or UPDATE_FAILED); DELETING or DELETED: remove it from config.toml.',
            ],
          }),

          alert({
            alert: 'HealthLakeExporterDown',
            expr: 'up{%s} == 0' % c.jobSelector,
            'for': '5m',
            severity: 'warning',
            summary: 'healthlake-exporter target {{ $labels.instance }} is down',
            description: [
              'Prometheus has failed to scrape healthlake-exporter at {{ $labels.instance }} (job {{ $labels.job }})',
              'for 5 minutes: no HealthLake export job alerts can fire meanwhile. Check the pod\'s status and logs',
              '(`kubectl logs`), and that /metrics answers on port 9469.',
            ],
          }),

          alert({
            alert: 'HealthLakeExporterTargetMissing',
            expr: 'absent(up{%s})' % c.jobSelector,
            'for': '15m',
            severity: 'warning',
            summary: 'No healthlake-exporter scrape target',
            description: [
              'Prometheus has had no scrape target %s for 15 minutes, so no' % c.jobSelectorText,
              'HealthLake export job alerts can fire. Check that the exporter is deployed and that the',
              'ServiceMonitor / PodMonitor / scrape config selects it (the alert rules assume %s).' % c.jobSelectorAssumption,
            ],
          }),
        ],
      },
      // The event path ([events]); silent without it (no healthlake_events_* series).
      {
        name: 'healthlake-exporter-events',
        rules: [
          // The consumer cannot read its queue: failures now show at the next reconciliation poll
          // (polling.interval, e.g. 10m) instead of within seconds.
          alert({
            alert: 'HealthLakeEventConsumerDown',
            expr: 'healthlake_events_up == 0',
            'for': '5m',
            severity: 'warning',
            summary: 'healthlake-exporter {{ $labels.instance }} cannot read its HealthLake event queue',
            description: [
              'The event consumer of {{ $labels.instance }} has failed to receive from its SQS queue for',
              '5 minutes, so job changes show only at the next reconciliation poll. See',
              "healthlake_events_errors_total by reason and the exporter's log: access_denied needs",
              'sqs:ReceiveMessage on the queue, not_found a correct [events] queue_url (one queue per shard),',
              'network/timeout the SQS endpoint (VPC endpoint, events.endpoint_url).',
            ],
          }),
          // Reconciliation keeps finding job changes that no event announced, while no event is
          // applied at all: the EventBridge rule, its target or the queue policy is broken. A quiet
          // account (no job changes) does not fire it.
          alert({
            alert: 'HealthLakeEventsMissing',
            expr: 'sum by (job, instance) (increase(healthlake_events_unannounced_changes_total[1h])) > 0\nand\nsum by (job, instance) (increase(healthlake_events_applied_total[1h])) == 0',
            'for': '0m',
            severity: 'warning',
            summary: 'HealthLake job changes arrive without events at {{ $labels.instance }}',
            description: [
              'In the last hour reconciliation polls of {{ $labels.instance }} found jobs finishing that no',
              'HealthLake event announced, and no event was applied: failures show up to polling.interval late.',
              'Check the EventBridge rule (source aws.healthlake) and its SQS target, the queue policy that lets',
              'events.amazonaws.com send, and that queue_url names the queue the rule feeds',
              '(deploy/aws/healthlake-events.yaml).',
            ],
          }),
        ],
      },
    ],
  },
}
