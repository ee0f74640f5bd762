// Prometheus alerting rules (prometheusAlerts). Rendered into deploy/prometheus/alerts.yml and the
// PrometheusRule by render.py; unit tests in deploy/prometheus/alerts_test.yml. The Grafana-managed
// rules (grafana-alerting.libsonnet) are made from these same rules, one for one.
//
// To add an alert: append `alert({...})` to a group's `rules` below (name, expr, for, severity,
// summary, description), add its firing and not-firing cases to alerts_test.yml and a section
// named after it to runbook.md, then run `python3 deploy/mixin/render.py`. See README.md here.
local utils = import 'lib/utils.libsonnet';

{
  local c = $._config,

  assert !std.objectHasAll(c, 'failureWindow') :
         'healthlake-exporter mixin: _config.failureWindow was replaced by _config.endedJobWindow, '
         + "which must equal the exporter's polling.ended_job_window (default '1h')",
  assert utils.seconds(c.endedJobWindow) >= 60 && utils.seconds(c.endedJobWindow) <= 86400 :
         'healthlake-exporter mixin: _config.endedJobWindow must be from 1m to 24h, like polling.ended_job_window: %s'
         % c.endedJobWindow,

  // Every rule gets a runbook_url pointing at the heading of runbook.md named after it. The hidden
  // `grafana` field (not rendered here) is what grafana-alerting.libsonnet needs besides the rule:
  // the threshold on the rule's own expression that means "this series is returned" (`lt 1` for
  // the `== 0` rules, `gt 0` for the others), and a summary/description without what Grafana's
  // templates lack (the `query` function, a numeric $value).
  local alert(a) = {
    alert: a.alert,
    expr: a.expr,
    'for': a['for'],
    [if std.objectHas(a, 'keepFiringFor') then 'keep_firing_for']: a.keepFiringFor,
    labels: { severity: a.severity },
    annotations: {
      summary: a.summary,
      description: std.join(' ', a.description),
      runbook_url: '%s#%s' % [c.runbookURLBase, std.asciiLower(a.alert)],
    },
    grafana:: {
      threshold: std.get(a, 'grafanaThreshold', ['gt', 0]),
      summary: std.get(a, 'grafanaSummary', a.summary),
      description: std.join(' ', std.get(a, 'grafanaDescription', a.description)),
    },
  },

  // The most frequent `reason` of an errors family in the last `range`, for a description; `args`
  // are the printf arguments of the label matchers' %s.
  local topReason(family, matchers, range, args) =
    '{{ with printf "topk(1, sum by (reason) (increase(%s{%s}[%s])) > 0)" %s | query }}' % [family, matchers, range, args]
    + '{{ range . }}{{ .Labels.reason }}{{ end }}{{ else }}unknown{{ end }}',
  // Every feed's errors are one family, healthlake_feed_errors_total{feed, reason}.
  local datastoreReason(feed, range) = topReason('healthlake_feed_errors_total', "datastore_id='%s',feed='" + feed + "'", range, '$labels.datastore_id'),

  local window = c.endedJobWindow,
  local windowText = utils.humanDuration(window),

  // One alert per job that ended `status` within the window, from the exporter's per-job
  // end-timestamp gauge (value: the job's EndTime, read from HealthLake's own listing).
  //  - State, not transitions: a job that ended while the exporter was restarting, down or being
  //    moved to another replica is in the next first poll's listing, so it fires then.
  //  - `max by` the job's own labels drops instance/pod (and status): the replicas of an HA pair,
  //    or a datastore's old and new owner after a shard change, page once per (datastore_id, job_id).
  //  - `> time() - window`: fires while the EndTime is within the window, so a fresh deployment
  //    pages nothing for older failures, even from an exporter that keeps its series longer.
  //  - keep_firing_for bridges the minutes the series is absent during a restart or a shard move.
  //  - The value stays the EndTime, which the description prints.
  local jobLabels = 'datastore_id, datastore_name, job_id, job_name',
  local endedExpr(kind, status) =
    'max by (%s) (healthlake_%s_job_end_timestamp_seconds{status="%s"}) > time() - %d'
    % [jobLabels, kind, status, utils.seconds(window)],
  // "job ID (NAME)", or "job ID" alone when polling.job_name_label = "drop" empties the name.
  local jobText = '{{ $labels.job_id }}{{ with $labels.job_name }} ({{ . }}){{ end }}',
  local endedAlert(kind, status, severity, summaryWhat, outcome, advice) = {
    local head = 'Amazon HealthLake FHIR %s job %s on datastore {{ $labels.datastore_name }} (id {{ $labels.datastore_id }}) ended with status %s'
                 % [kind, jobText, status],
    local tail = advice + [
      'It resolves by itself about %s after the job ended (the ended-job window), fixed or not.' % windowText,
    ],
    alert: 'HealthLake%sJob%s' % [{ export: 'Export', 'import': 'Import' }[kind], { FAILED: 'Failed', COMPLETED_WITH_ERRORS: 'CompletedWithErrors' }[status]],
    expr: endedExpr(kind, status),
    'for': '0m',
    keepFiringFor: c.jobAlertKeepFiringFor,
    severity: severity,
    summary: 'HealthLake FHIR %s job %s %s on datastore {{ $labels.datastore_name }}' % [kind, jobText, summaryWhat],
    description: [head + ' at {{ $value | humanizeTimestamp }}%s' % outcome] + tail,
    grafanaDescription: [head + ' within the last %s%s' % [windowText, outcome]] + tail,
  },

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'healthlake-exporter',
        rules: [
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
            grafanaSummary: 'HealthLake FHIR export job unfinished for more than %s on datastore {{ $labels.datastore_name }}'
                            % utils.shortSeconds(c.exportJobStuckThresholdSeconds),
            grafanaDescription: [
              'The oldest unfinished (SUBMITTED, QUEUED, IN_PROGRESS or CANCEL_*) FHIR export job on datastore',
              '{{ $labels.datastore_name }} (id {{ $labels.datastore_id }}) was submitted more than %s ago.' % utils.shortSeconds(c.exportJobStuckThresholdSeconds),
              'Check the job with',
              '`aws healthlake list-fhir-export-jobs --datastore-id {{ $labels.datastore_id }} --job-status IN_PROGRESS`;',
              'if it makes no progress, contact AWS support with the job id.',
            ],
          }),

          // The description names the most frequent error reason of the last 10 minutes, read
          // from healthlake_feed_errors_total{feed="export", reason=...} with a query in the template.
          alert({
            alert: 'HealthLakeDatastorePollFailing',
            expr: 'healthlake_feed_up{feed="export"} == 0',
            'for': '5m',
            severity: 'warning',
            summary: 'healthlake-exporter cannot poll datastore {{ $labels.datastore_name }}',
            description: [
              'The exporter has failed to list the FHIR export jobs of datastore {{ $labels.datastore_name }}',
              '(id {{ $labels.datastore_id }}) for at least 5 minutes, so its job metrics are stale and',
              'HealthLakeExportJobFailed cannot fire for it until a poll succeeds again.',
              'Most frequent error reason in the last 10 minutes:',
              datastoreReason('export', '10m'),
              '(see healthlake_feed_errors_total{feed="export"} by reason and the exporter\'s logs).',
              'access_denied: grant healthlake:ListFHIRExportJobs on the datastore (deploy/iam-policy.json);',
              'credentials: check IRSA / EKS Pod Identity and role_arn;',
              'not_found or validation: check the datastore id and aws.region;',
              'throttled: raise polling.interval; timeout, network or server_error: check connectivity to the HealthLake endpoint.',
            ],
            grafanaThreshold: ['lt', 1],
            grafanaDescription: [
              'The exporter has failed to list the FHIR export jobs of datastore {{ $labels.datastore_name }}',
              '(id {{ $labels.datastore_id }}) for at least 5 minutes, so its job metrics are stale and',
              'HealthLakeExportJobFailed cannot fire for it until a poll succeeds again.',
              'The reason is in healthlake_feed_errors_total{feed="export"} by reason and the exporter\'s logs.',
              'access_denied: grant healthlake:ListFHIRExportJobs on the datastore (deploy/iam-policy.json);',
              'credentials: check IRSA / EKS Pod Identity and role_arn;',
              'not_found or validation: check the datastore id and aws.region;',
              'throttled: raise polling.interval; timeout, network or server_error: check connectivity to the HealthLake endpoint.',
            ],
          }),

          // Datastore health (only with polling.datastore_health = true; without it the series are
          // absent and this never fires). The status series keep the last status
          // DescribeFHIRDatastore reported while its calls fail (see
          // healthlake_feed_up{feed="describe"}). 15m rides out a short UPDATING.
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
            grafanaThreshold: ['lt', 1],
            grafanaDescription: [
              'Amazon HealthLake datastore {{ $labels.datastore_name }} (id {{ $labels.datastore_id }})',
              'has not been ACTIVE for at least 15 minutes (its current status: the healthlake_datastore_status series at 1).',
              'Imports, exports and FHIR requests may fail meanwhile.',
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
              'for 5 minutes: no HealthLake job alerts can fire meanwhile (jobs that end meanwhile fire once it is back,',
              "if they ended within the ended-job window). Check the pod's status and logs",
              '(`kubectl logs`), and that /metrics answers on port 9469.',
            ],
            grafanaThreshold: ['lt', 1],
          }),

          alert({
            alert: 'HealthLakeExporterTargetMissing',
            expr: 'absent(up{%s})' % c.jobSelector,
            'for': '15m',
            severity: 'warning',
            summary: 'No healthlake-exporter scrape target',
            description: [
              'Prometheus has had no scrape target %s for 15 minutes, so no' % c.jobSelectorText,
              'HealthLake job alerts can fire. Check that the exporter is deployed and that the',
              'ServiceMonitor / PodMonitor / scrape config selects it (the alert rules assume %s).' % c.jobSelectorAssumption,
            ],
          }),
        ],
      },

      // One alert per job that ended FAILED or COMPLETED_WITH_ERRORS, export and import (see
      // endedAlert above). The import ones need jobs = ["import"] or ["export", "import"]: without
      // it the series are absent and they never fire.
      {
        name: 'healthlake-exporter-job-outcomes',
        rules: [
          alert(endedAlert('export', 'FAILED', 'critical', 'FAILED', '.', [
            'Read its Message with `aws healthlake describe-fhir-export-job --datastore-id {{ $labels.datastore_id }} --job-id {{ $labels.job_id }}`;',
            "usual causes are the export job's data access role, the output S3 bucket and its KMS key. Fix, then start the export again.",
          ])),
          alert(endedAlert('export', 'COMPLETED_WITH_ERRORS', 'warning', 'completed with errors', ': some resources were not exported.', [
            "The job's output location in S3 holds the error files",
            '(`aws healthlake describe-fhir-export-job --datastore-id {{ $labels.datastore_id }} --job-id {{ $labels.job_id }}` shows it);',
            're-export what is missing.',
          ])),
          alert(endedAlert('import', 'FAILED', 'critical', 'FAILED', '.', [
            'Read its Message with `aws healthlake describe-fhir-import-job --datastore-id {{ $labels.datastore_id }} --job-id {{ $labels.job_id }}`;',
            "usual causes are the import job's data access role, the input S3 location and its KMS key. Fix, then start the import again.",
          ])),
          alert(endedAlert('import', 'COMPLETED_WITH_ERRORS', 'warning', 'completed with errors', ': some resources were not imported.', [
            "The job's output (error) location in S3 lists them",
            '(`aws healthlake describe-fhir-import-job --datastore-id {{ $labels.datastore_id }} --job-id {{ $labels.job_id }}` shows it);',
            'fix the input and import those again.',
          ])),
        ],
      },

      // Health of the optional feeds and of the exporter's own configuration. Each series exists
      // only where its feature is on, so the alert of a feature that is off never fires.
      {
        name: 'healthlake-exporter-health',
        rules: [
          alert({
            alert: 'HealthLakeImportPollFailing',
            expr: 'healthlake_feed_up{feed="import"} == 0',
            'for': '5m',
            severity: 'warning',
            summary: 'healthlake-exporter cannot list the import jobs of datastore {{ $labels.datastore_name }}',
            description: [
              'The exporter has failed to list the FHIR import jobs of datastore {{ $labels.datastore_name }}',
              '(id {{ $labels.datastore_id }}) for at least 5 minutes, so its import metrics are stale and',
              'HealthLakeImportJobFailed cannot fire for it until a poll succeeds again.',
              'Most frequent error reason in the last 10 minutes:',
              datastoreReason('import', '10m'),
              '(see healthlake_feed_errors_total{feed="import"} by reason and the exporter\'s logs).',
              'access_denied: grant healthlake:ListFHIRImportJobs on the datastore (deploy/iam-policy-all-features.json);',
              'other reasons: as for HealthLakeDatastorePollFailing.',
            ],
            grafanaThreshold: ['lt', 1],
            grafanaDescription: [
              'The exporter has failed to list the FHIR import jobs of datastore {{ $labels.datastore_name }}',
              '(id {{ $labels.datastore_id }}) for at least 5 minutes, so its import metrics are stale and',
              'HealthLakeImportJobFailed cannot fire for it until a poll succeeds again.',
              'The reason is in healthlake_feed_errors_total{feed="import"} by reason and the exporter\'s logs.',
              'access_denied: grant healthlake:ListFHIRImportJobs on the datastore (deploy/iam-policy-all-features.json);',
              'other reasons: as for HealthLakeDatastorePollFailing.',
            ],
          }),

          // Only with polling.datastore_health = true. 15m: DescribeFHIRDatastore runs every
          // polling.datastore_interval (default 5m), so this is a few failed calls in a row.
          alert({
            alert: 'HealthLakeDatastoreDescribeFailing',
            expr: 'healthlake_feed_up{feed="describe"} == 0',
            'for': '15m',
            severity: 'warning',
            summary: 'healthlake-exporter cannot describe datastore {{ $labels.datastore_name }}',
            description: [
              'DescribeFHIRDatastore has failed for datastore {{ $labels.datastore_name }} (id {{ $labels.datastore_id }})',
              'for at least 15 minutes, so healthlake_datastore_status is stale and HealthLakeDatastoreNotActive cannot',
              'fire for it. Most frequent error reason in the last 30 minutes:',
              datastoreReason('describe', '30m'),
              '(see healthlake_feed_errors_total{feed="describe"} by reason and the exporter\'s log).',
              'access_denied: grant healthlake:DescribeFHIRDatastore on the datastore (deploy/iam-policy-all-features.json),',
              'or set polling.datastore_health = false; other reasons: as for HealthLakeDatastorePollFailing.',
            ],
            grafanaThreshold: ['lt', 1],
            grafanaDescription: [
              'DescribeFHIRDatastore has failed for datastore {{ $labels.datastore_name }} (id {{ $labels.datastore_id }})',
              'for at least 15 minutes, so healthlake_datastore_status is stale and HealthLakeDatastoreNotActive cannot',
              'fire for it. The reason is in healthlake_feed_errors_total{feed="describe"} by reason and the exporter\'s log.',
              'access_denied: grant healthlake:DescribeFHIRDatastore on the datastore (deploy/iam-policy-all-features.json),',
              'or set polling.datastore_health = false; other reasons: as for HealthLakeDatastorePollFailing.',
            ],
          }),

          // Only with [[discovery]] entries. Discovery lists every `interval` (10m by default):
          // 30m is three failed listings in a row.
          alert({
            alert: 'HealthLakeDiscoveryFailing',
            expr: 'healthlake_feed_up{feed="discovery"} == 0',
            'for': '30m',
            severity: 'warning',
            summary: 'healthlake-exporter discovery entry {{ $labels.discovery }} ({{ $labels.region }}) is failing',
            description: [
              'ListFHIRDatastores for [[discovery]] entry {{ $labels.discovery }} (region {{ $labels.region }}) on',
              '{{ $labels.instance }} has failed for at least 30 minutes: datastores created meanwhile are not polled',
              '(those found before still are). Most frequent error reason in the last 30 minutes:',
              topReason('healthlake_feed_errors_total', "discovery='%s',instance='%s',feed='discovery'", '30m', '$labels.discovery $labels.instance'),
              '(see healthlake_feed_errors_total{feed="discovery"} by reason and the exporter\'s log).',
              'access_denied: grant healthlake:ListFHIRDatastores on "*" (deploy/iam-policy-all-features.json);',
              'other reasons: as for HealthLakeDatastorePollFailing.',
            ],
            grafanaThreshold: ['lt', 1],
            grafanaDescription: [
              'ListFHIRDatastores for [[discovery]] entry {{ $labels.discovery }} (region {{ $labels.region }}) on',
              '{{ $labels.instance }} has failed for at least 30 minutes: datastores created meanwhile are not polled',
              '(those found before still are). The reason is in healthlake_feed_errors_total{feed="discovery"} by reason and the exporter\'s log.',
              'access_denied: grant healthlake:ListFHIRDatastores on "*" (deploy/iam-policy-all-features.json);',
              'other reasons: as for HealthLakeDatastorePollFailing.',
            ],
          }),

          alert({
            alert: 'HealthLakeExporterConfigReloadFailed',
            expr: 'healthlake_exporter_config_last_reload_successful == 0',
            'for': '5m',
            severity: 'warning',
            summary: 'healthlake-exporter {{ $labels.instance }} rejected its new configuration',
            description: [
              'The last configuration reload of healthlake-exporter at {{ $labels.instance }} failed: it still runs',
              'the previous configuration, so the changes (new datastores, new settings) are not applied.',
              "The exporter's log says what is wrong (file, line, key); `healthlake-exporter --check-config` prints the same.",
            ],
            grafanaThreshold: ['lt', 1],
          }),
        ],
      },

      // The event path ([events]); silent without it (no healthlake_events_* series, no feed="events").
      {
        name: 'healthlake-exporter-events',
        rules: [
          // The consumer cannot read its queue: failures now show at the next reconciliation poll
          // (polling.interval, e.g. 10m) instead of within seconds.
          alert({
            alert: 'HealthLakeEventConsumerDown',
            expr: 'healthlake_feed_up{feed="events"} == 0',
            'for': '5m',
            severity: 'warning',
            summary: 'healthlake-exporter {{ $labels.instance }} cannot read its HealthLake event queue',
            description: [
              'The event consumer of {{ $labels.instance }} has failed to receive from its SQS queue for',
              '5 minutes, so job changes show only at the next reconciliation poll. See',
              'healthlake_feed_errors_total{feed="events"} by reason and the exporter\'s log: access_denied needs',
              'sqs:ReceiveMessage on the queue, not_found a correct [events] queue_url (one queue per shard),',
              'network/timeout the SQS endpoint (VPC endpoint, events.endpoint_url).',
            ],
            grafanaThreshold: ['lt', 1],
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
