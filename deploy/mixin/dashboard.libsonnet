// The Grafana dashboard (grafanaDashboards), in plain jsonnet: a few helpers instead of grafonnet.
// Rendered into deploy/grafana/dashboard.json and the kube-prometheus-stack dashboard ConfigMap.
local utils = import 'lib/utils.libsonnet';

{
  local c = $._config,

  local ds = { type: 'prometheus', uid: '${datasource}' },

  // Label matchers every query carries: the cluster and job pickers, and for the per-datastore
  // families the datastore picker.
  local exporterSel = '%s=~"$cluster", job=~"$job"' % c.clusterLabel,
  local sel = exporterSel + ', datastore_name=~"$datastore"',

  local target(refId, expr, legend='__auto', instant=false, format='time_series') = {
    datasource: ds,
    refId: refId,
    expr: expr,
    legendFormat: legend,
    range: !instant,
    instant: instant,
    format: format,
  },

  local row(id, y, title) = {
    id: id,
    type: 'row',
    title: title,
    collapsed: false,
    gridPos: { x: 0, y: y, w: 24, h: 1 },
    panels: [],
  },

  local panel(id, type, title, description, pos, targets, defaults={ unit: 'none' }, overrides=[], options={}) = {
    id: id,
    type: type,
    title: title,
    description: description,
    datasource: ds,
    gridPos: { x: pos[0], y: pos[1], w: pos[2], h: pos[3] },
    targets: targets,
    fieldConfig: { defaults: defaults, overrides: overrides },
    options: options,
  },

  local statOptions(textMode='auto', colorMode='background') = {
    reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
    colorMode: colorMode,
    graphMode: 'none',
    textMode: textMode,
  },

  local thresholds(steps) = { mode: 'absolute', steps: [{ color: s[0], value: s[1] } for s in steps] },

  local stuck = c.exportJobStuckThresholdSeconds,
  local windowText = utils.humanDuration(c.endedJobWindow),
  local windowSeconds = utils.seconds(c.endedJobWindow),
  local activeExport = 'SUBMITTED|QUEUED|IN_PROGRESS|CANCEL_SUBMITTED|CANCEL_IN_PROGRESS',

  local variable(name, label, query, hide=0, includeAll=true, multi=true, allValue=null) = {
    name: name,
    label: label,
    type: 'query',
    datasource: ds,
    definition: query,
    query: { qryType: 1, query: query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
    current: {},
    hide: hide,
    includeAll: includeAll,
    multi: multi,
    options: [],
    refresh: 2,
    regex: '',
    skipUrlSync: false,
    sort: 1,
  } + (if allValue != null then { allValue: allValue } else {}),

  // "Running imports" table: one instant query per progress gauge, merged on the job labels, and
  // its "Value #A".."Value #H" columns renamed to what they hold.
  local importColumns = [
    ['A', 'healthlake_import_job_scanned_files', '', 'Scanned files', 'none'],
    ['B', 'healthlake_import_job_imported_files', '', 'Imported files', 'none'],
    ['C', 'healthlake_import_job_scanned_bytes', '', 'Scanned bytes', 'decbytes'],
    ['D', 'healthlake_import_job_scanned_resources', '', 'Scanned resources', 'none'],
    ['E', 'healthlake_import_job_imported_resources', '', 'Imported resources', 'none'],
    ['F', 'healthlake_import_job_failed_resources', '', 'Failed resources', 'none'],
    ['G', 'healthlake_import_job_failed_files', '', 'Failed files', 'none'],
    ['H', 'healthlake_import_job_duration_seconds', 'status=~"SUBMITTED|QUEUED|IN_PROGRESS", ', 'Running for', 's'],
  ],

  grafanaDashboards+:: {
    'healthlake-exporter.json': {
      __requires: [
        { type: 'grafana', id: 'grafana', name: 'Grafana', version: '10.0.0' },
        { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
        { type: 'panel', id: 'stat', name: 'Stat', version: '' },
        { type: 'panel', id: 'timeseries', name: 'Time series', version: '' },
        { type: 'panel', id: 'table', name: 'Table', version: '' },
        { type: 'panel', id: 'state-timeline', name: 'State timeline', version: '' },
      ],
      annotations: { list: [{
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      }] },
      description: 'Amazon HealthLake FHIR export and import jobs, from healthlake-exporter.',
      editable: true,
      graphTooltip: 1,
      links: [],
      liveNow: false,
      refresh: '1m',
      schemaVersion: 39,
      tags: c.dashboardTags,
      time: { from: 'now-24h', to: 'now' },
      timepicker: {},
      timezone: '',
      title: 'Amazon HealthLake FHIR export jobs',
      uid: c.dashboardUid,
      version: 1,
      weekStart: '',

      templating: { list: [
        {
          name: 'datasource',
          label: 'Data source',
          type: 'datasource',
          query: 'prometheus',
          current: {},
          hide: 0,
          includeAll: false,
          multi: false,
          options: [],
          refresh: 1,
          regex: '',
          skipUrlSync: false,
        },
        // Hidden unless showMultiCluster; "All" (.*) also matches series without the label.
        variable('cluster', 'Cluster', 'label_values(up{%s}, %s)' % [c.jobSelector, c.clusterLabel],
                 hide=if c.showMultiCluster then 0 else 2, allValue='.*'),
        // No allValue: "All" is the list of the exporter's jobs, never every job of the Prometheus.
        variable('job', 'Job', 'label_values(up{%s, %s=~"$cluster"}, job)' % [c.jobSelector, c.clusterLabel]),
        variable('datastore', 'Datastore', 'label_values(healthlake_feed_up{%s}, datastore_name)' % exporterSel,
                 allValue='.*'),
      ] },

      panels: [
        row(1, 0, 'Overview'),
        panel(2, 'stat', 'Datastores polled OK', 'Datastores whose last export-job poll succeeded (healthlake_feed_up{feed="export"} == 1).', [0, 1, 4, 4],
              [target('A', 'sum(healthlake_feed_up{feed="export", %s})' % sel, instant=true)],
              defaults={ unit: 'none', color: { mode: 'thresholds' }, thresholds: thresholds([['red', null], ['green', 1]]) },
              options=statOptions()),
        panel(3, 'stat', 'Failed export jobs (time range)', 'Export jobs seen entering FAILED during the selected time range (counted while the exporter runs).', [4, 1, 5, 4],
              [target('A', 'sum(increase(healthlake_export_jobs_finished_total{status="FAILED", %s}[$__range]))' % sel, instant=true)],
              defaults={ unit: 'none', decimals: 0, color: { mode: 'thresholds' }, thresholds: thresholds([['green', null], ['red', 0.5]]) },
              options=statOptions()),
        panel(4, 'stat', 'Oldest active export job', 'Age of the oldest unfinished export job (0 when none runs). HealthLakeExportJobStuck fires above %s.' % utils.shortSeconds(stuck), [9, 1, 5, 4],
              [target('A', 'max(healthlake_export_oldest_active_job_age_seconds{%s})' % sel, instant=true)],
              defaults={ unit: 's', color: { mode: 'thresholds' }, thresholds: thresholds([['green', null], ['orange', stuck]]) },
              options=statOptions()),
        panel(5, 'stat', 'Active export jobs', 'Jobs currently in an unfinished status.', [14, 1, 5, 4],
              [target('A', 'sum(healthlake_export_jobs{status=~"%s", %s})' % [activeExport, sel], instant=true)],
              defaults={ unit: 'none', color: { mode: 'fixed', fixedColor: 'blue' } },
              options=statOptions()),
        panel(6, 'stat', 'Exporter', 'Running exporter version(s) and number of instances. Also: whether the last configuration reload succeeded (1), seconds since the last good configuration load, (with TLS) whether the certificate files last loaded cleanly (0 while a rotation is half-written or broken), and the first polls not attempted yet (datastores just added by a reload or discovery; readiness never waits for them after start).', [19, 1, 5, 4],
              [
                target('A', 'count by (version) (healthlake_exporter_build_info{%s})' % exporterSel, '{{version}}', instant=true),
                target('B', 'min(healthlake_exporter_config_last_reload_successful{%s})' % exporterSel, 'last config reload OK', instant=true),
                target('C', 'time() - max(healthlake_exporter_config_last_reload_success_timestamp_seconds{%s})' % exporterSel, 'since last good config load (s)', instant=true),
                target('D', 'min(healthlake_exporter_tls_certificate_last_load_successful{%s})' % exporterSel, 'TLS certificate files OK', instant=true),
                target('E', 'sum(healthlake_exporter_first_polls_pending{%s})' % exporterSel, 'first polls pending', instant=true),
              ],
              options=statOptions('value_and_name', 'none')),

        row(7, 5, 'Export jobs'),
        panel(8, 'timeseries', 'Export jobs by status', 'Number of export jobs per status, as listed by ListFHIRExportJobs.', [0, 6, 12, 8],
              [target('A', 'sum by (datastore_name, status) (healthlake_export_jobs{%s})' % sel, '{{datastore_name}} {{status}}')],
              defaults={ unit: 'none', custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: 10, stacking: { mode: 'none' } } }),
        panel(9, 'timeseries', 'Failed export jobs', 'Export jobs seen entering FAILED (red) or COMPLETED_WITH_ERRORS per interval (increase of healthlake_export_jobs_finished_total).', [12, 6, 12, 8],
              [
                target('A', 'sum by (datastore_name) (increase(healthlake_export_jobs_finished_total{status="FAILED", %s}[$__rate_interval]))' % sel, '{{datastore_name}} FAILED'),
                target('B', 'sum by (datastore_name) (increase(healthlake_export_jobs_finished_total{status="COMPLETED_WITH_ERRORS", %s}[$__rate_interval]))' % sel, '{{datastore_name}} COMPLETED_WITH_ERRORS'),
              ],
              defaults={ unit: 'none', decimals: 0, custom: { drawStyle: 'bars', fillOpacity: 80, lineWidth: 1 }, color: { mode: 'fixed', fixedColor: 'red' } },
              overrides=[{ matcher: { id: 'byFrameRefID', options: 'B' }, properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'orange' } }] }]),
        panel(10, 'timeseries', 'Finished export jobs by status', 'Jobs entering each terminal status per interval.', [0, 14, 12, 8],
              [target('A', 'sum by (datastore_name, status) (increase(healthlake_export_jobs_finished_total{%s}[$__rate_interval]))' % sel, '{{datastore_name}} {{status}}')],
              defaults={ unit: 'none', decimals: 0, custom: { drawStyle: 'bars', fillOpacity: 60, stacking: { mode: 'normal', group: 'A' } } }),
        panel(11, 'timeseries', 'Oldest active export job age', 'Age of the oldest unfinished export job per datastore; 0 when none runs. The dashed line is the HealthLakeExportJobStuck threshold (%s).' % utils.shortSeconds(stuck), [12, 14, 12, 8],
              [target('A', 'max by (datastore_name) (healthlake_export_oldest_active_job_age_seconds{%s})' % sel, '{{datastore_name}}')],
              defaults={ unit: 's', custom: { drawStyle: 'line', fillOpacity: 10, thresholdsStyle: { mode: 'dashed' } }, thresholds: thresholds([['green', null], ['orange', stuck]]) }),
        panel(12, 'table', 'Export jobs (newest per datastore) and durations', 'The newest export jobs per datastore (polling.job_series_limit). Duration: end - submit for ended jobs, time since submit for unfinished ones.', [0, 22, 24, 10],
              [target('A', 'max by (datastore_name, datastore_id, job_id, job_name, status) (healthlake_export_job_duration_seconds{%s})' % sel, instant=true, format='table')],
              defaults={},
              overrides=[
                { matcher: { id: 'byName', options: 'Duration' }, properties: [{ id: 'unit', value: 's' }] },
                { matcher: { id: 'byName', options: 'Status' }, properties: [
                  { id: 'custom.cellOptions', value: { type: 'color-text' } },
                  { id: 'mappings', value: [{ type: 'value', options: {
                    FAILED: { color: 'red', index: 0 },
                    COMPLETED_WITH_ERRORS: { color: 'orange', index: 1 },
                    CANCEL_FAILED: { color: 'orange', index: 2 },
                    COMPLETED: { color: 'green', index: 3 },
                    IN_PROGRESS: { color: 'blue', index: 4 },
                  } }] },
                ] },
              ],
              options={ showHeader: true, sortBy: [{ displayName: 'Duration', desc: true }], cellHeight: 'sm' })
        + { transformations: [{ id: 'organize', options: {
          excludeByName: { Time: true },
          indexByName: { datastore_name: 0, datastore_id: 1, job_name: 2, job_id: 3, status: 4, Value: 5 },
          renameByName: { datastore_name: 'Datastore', datastore_id: 'Datastore id', job_name: 'Job name', job_id: 'Job id', status: 'Status', Value: 'Duration' },
        } }] },

        row(13, 32, 'Polling'),
        panel(14, 'state-timeline', 'Poll health', 'Whether the last export-job poll of each datastore succeeded (healthlake_feed_up{feed="export"}).', [0, 33, 12, 7],
              [target('A', 'min by (datastore_name) (healthlake_feed_up{feed="export", %s})' % sel, '{{datastore_name}}')],
              defaults={
                color: { mode: 'thresholds' },
                thresholds: thresholds([['red', null], ['green', 1]]),
                mappings: [{ type: 'value', options: { '0': { text: 'DOWN', color: 'red', index: 0 }, '1': { text: 'UP', color: 'green', index: 1 } } }],
              },
              options={ showValue: 'never', mergeValues: true, rowHeight: 0.8 }),
        panel(15, 'timeseries', 'Poll errors by reason', 'Rate of failed polls by reason (throttled, access_denied, not_found, validation, server_error, timeout, network, credentials, other).', [12, 33, 12, 7],
              [target('A', 'sum by (datastore_name, reason) (rate(healthlake_feed_errors_total{feed="export", %s}[$__rate_interval]))' % sel, '{{datastore_name}} {{reason}}')],
              defaults={ unit: 'ops', custom: { drawStyle: 'line', fillOpacity: 20, stacking: { mode: 'normal', group: 'A' } } }),
        panel(16, 'timeseries', 'Time since last successful poll', 'Seconds since the last successful poll of each datastore.', [0, 40, 12, 7],
              [target('A', 'time() - max by (datastore_name) (healthlake_feed_last_success_timestamp_seconds{feed="export", %s})' % sel, '{{datastore_name}}')],
              defaults={ unit: 's', custom: { drawStyle: 'line', fillOpacity: 0 } }),
        panel(17, 'timeseries', 'Poll duration', "Duration of the last poll per datastore, and Prometheus' scrape status of the exporter (up).", [12, 40, 12, 7],
              [
                target('A', 'max by (datastore_name) (healthlake_feed_last_poll_duration_seconds{feed="export", %s})' % sel, '{{datastore_name}}'),
                target('B', 'up{%s}' % exporterSel, 'scrape up {{instance}}'),
              ],
              defaults={ unit: 's', custom: { drawStyle: 'line', fillOpacity: 0 } },
              overrides=[{ matcher: { id: 'byFrameRefID', options: 'B' }, properties: [{ id: 'unit', value: 'none' }, { id: 'custom.axisPlacement', value: 'right' }] }]),

        row(18, 47, 'Import jobs (polling.jobs includes "import")'),
        panel(19, 'timeseries', 'Import jobs by status', 'Import jobs in each status, as last listed.', [0, 48, 12, 8],
              [target('A', 'sum by (datastore_name, status) (healthlake_import_jobs{%s})' % sel, '{{datastore_name}} {{status}}')]),
        panel(20, 'timeseries', 'Failed import jobs', 'Import jobs that entered FAILED or COMPLETED_WITH_ERRORS.', [12, 48, 12, 8],
              [target('A', 'sum by (datastore_name, status) (increase(healthlake_import_jobs_finished_total{status=~"FAILED|COMPLETED_WITH_ERRORS", %s}[$__rate_interval]))' % sel, '{{datastore_name}} {{status}}')]),
        panel(21, 'table', 'Running imports: progress', 'JobProgressReport of each running import job: files and resources scanned, imported and failed, and how long it has been running.', [0, 56, 24, 8],
              [
                target(col[0], 'max by (datastore_name, job_id, job_name) (%s{%s%s})' % [col[1], col[2], sel], '', instant=true, format='table')
                for col in importColumns
              ],
              overrides=[
                { matcher: { id: 'byName', options: col[3] }, properties: [{ id: 'unit', value: col[4] }] }
                for col in importColumns
                if col[4] != 'none'
              ],
              options={ showHeader: true, sortBy: [{ displayName: 'Running for', desc: true }], cellHeight: 'sm' })
        + { transformations: [
          { id: 'merge', options: {} },
          { id: 'organize', options: {
            excludeByName: { Time: true },
            indexByName: { datastore_name: 0, job_name: 1, job_id: 2 } + {
              ['Value #' + importColumns[i][0]]: 3 + i
              for i in std.range(0, std.length(importColumns) - 1)
            },
            renameByName: { datastore_name: 'Datastore', job_name: 'Job name', job_id: 'Job id' } + {
              ['Value #' + col[0]]: col[3]
              for col in importColumns
            },
          } },
        ] },
        panel(22, 'timeseries', 'Oldest running import', 'Age of the oldest unfinished import job.', [0, 64, 12, 7],
              [target('A', 'max by (datastore_name) (healthlake_import_oldest_active_job_age_seconds{%s})' % sel, '{{datastore_name}}')],
              defaults={ unit: 's' }),
        panel(23, 'timeseries', 'Import poll health', 'Whether import-job polls succeed, and their errors by reason.', [12, 64, 12, 7],
              [
                target('A', 'min by (datastore_name) (healthlake_feed_up{feed="import", %s})' % sel, '{{datastore_name}} up'),
                target('B', 'sum by (datastore_name, reason) (rate(healthlake_feed_errors_total{feed="import", %s}[$__rate_interval]))' % sel, '{{datastore_name}} {{reason}}'),
              ]),

        row(24, 71, 'Datastores and discovery'),
        panel(25, 'state-timeline', 'Datastore status', "The datastore's status from DescribeFHIRDatastore (polling.datastore_health).", [0, 72, 12, 7],
              [target('A', 'max by (datastore_name, status) (healthlake_datastore_status{%s}) == 1' % sel, '{{datastore_name}} {{status}}')]),
        panel(26, 'table', 'Datastores', "Each datastore's FHIR version and ARN.", [12, 72, 12, 7],
              [target('A', 'max by (datastore_name, datastore_id, fhir_version, arn) (healthlake_datastore_info{%s})' % sel, '', instant=true, format='table')])
        + { transformations: [{ id: 'organize', options: {
          excludeByName: { Time: true, Value: true },
          indexByName: { datastore_name: 0, datastore_id: 1, fhir_version: 2, arn: 3 },
          renameByName: { datastore_name: 'Datastore', datastore_id: 'Datastore id', fhir_version: 'FHIR version', arn: 'ARN' },
        } }] },
        panel(27, 'timeseries', 'DescribeFHIRDatastore health', 'Whether DescribeFHIRDatastore calls succeed, and their errors by reason.', [0, 79, 12, 7],
              [
                target('A', 'min by (datastore_name) (healthlake_feed_up{feed="describe", %s})' % sel, '{{datastore_name}} up'),
                target('B', 'sum by (datastore_name, reason) (rate(healthlake_feed_errors_total{feed="describe", %s}[$__rate_interval]))' % sel, '{{datastore_name}} {{reason}}'),
              ]),
        panel(28, 'timeseries', 'Discovery', '[[discovery]] entries: whether ListFHIRDatastores succeeds, how many datastores it found, errors by reason.', [12, 79, 12, 7],
              [
                target('A', 'min by (discovery, region) (healthlake_feed_up{feed="discovery", %s})' % exporterSel, 'discovery {{discovery}} {{region}} up'),
                target('B', 'sum by (discovery, region) (healthlake_discovery_datastores{%s})' % exporterSel, 'discovery {{discovery}} {{region}} datastores'),
                target('C', 'sum by (discovery, region, reason) (rate(healthlake_feed_errors_total{feed="discovery", %s}[$__rate_interval]))' % exporterSel, 'discovery {{discovery}} {{region}} {{reason}}'),
              ]),

        // The standard process_* families every Prometheus client exports.
        row(29, 86, 'Exporter process'),
        panel(30, 'timeseries', 'Exporter CPU and memory', 'CPU used by each exporter process (cores), and its resident and virtual memory.', [0, 87, 12, 7],
              [
                target('A', 'rate(process_cpu_seconds_total{%s}[$__rate_interval])' % exporterSel, 'CPU {{instance}}'),
                target('B', 'process_resident_memory_bytes{%s}' % exporterSel, 'resident {{instance}}'),
                target('C', 'process_virtual_memory_bytes{%s}' % exporterSel, 'virtual {{instance}}'),
              ],
              defaults={ unit: 'none' },
              overrides=[
                { matcher: { id: 'byFrameRefID', options: ref }, properties: [{ id: 'unit', value: 'bytes' }, { id: 'custom.axisPlacement', value: 'right' }] }
                for ref in ['B', 'C']
              ]),
        panel(31, 'timeseries', 'Exporter file descriptors, threads and uptime', 'Open file descriptors against their limit, OS threads, and time since each exporter process started (a drop is a restart).', [12, 87, 12, 7],
              [
                target('A', 'process_open_fds{%s}' % exporterSel, 'open fds {{instance}}'),
                target('B', 'process_max_fds{%s}' % exporterSel, 'max fds {{instance}}'),
                target('C', 'time() - process_start_time_seconds{%s}' % exporterSel, 'uptime {{instance}}'),
                target('D', 'process_threads{%s}' % exporterSel, 'threads {{instance}}'),
              ],
              overrides=[{ matcher: { id: 'byFrameRefID', options: 'C' }, properties: [{ id: 'unit', value: 's' }, { id: 'custom.axisPlacement', value: 'right' }] }]),

        // The event path ([events]): HealthLake's EventBridge events through SQS.
        row(32, 94, 'Events ([events]: HealthLake events through SQS)'),
        panel(33, 'timeseries', 'Event messages', 'What the event consumer did with its SQS messages: received, applied (a followed datastore refreshed), ignored (not followed here), malformed (deleted), the refreshes they caused, and messages SQS delivered again (0 unless the exporter stopped or SQS refused a delete).', [0, 95, 12, 7],
              [
                target('A', 'sum by (instance) (rate(healthlake_events_received_total{%s}[$__rate_interval]))' % exporterSel, '{{instance}} received'),
                target('B', 'sum by (instance) (rate(healthlake_events_applied_total{%s}[$__rate_interval]))' % exporterSel, '{{instance}} applied'),
                target('C', 'sum by (instance) (rate(healthlake_events_ignored_total{%s}[$__rate_interval]))' % exporterSel, '{{instance}} ignored'),
                target('D', 'sum by (instance) (rate(healthlake_events_malformed_total{%s}[$__rate_interval]))' % exporterSel, '{{instance}} malformed'),
                target('E', 'sum by (instance) (rate(healthlake_events_refreshes_total{%s}[$__rate_interval]))' % exporterSel, '{{instance}} refreshes'),
                target('F', 'sum by (instance) (rate(healthlake_events_redelivered_total{%s}[$__rate_interval]))' % exporterSel, '{{instance}} redelivered'),
              ]),
        panel(34, 'timeseries', 'Event consumer health', '1 while the consumer can receive from its queue; failed SQS calls by reason.', [12, 95, 12, 7],
              [
                target('A', 'min by (instance) (healthlake_feed_up{feed="events", %s})' % exporterSel, '{{instance}} up'),
                target('B', 'sum by (instance, reason) (rate(healthlake_feed_errors_total{feed="events", %s}[$__rate_interval]))' % exporterSel, '{{instance}} {{reason}}'),
              ]),
        panel(35, 'timeseries', 'Age of the newest applied event', 'Seconds since the EventBridge time of the newest applied event (grows while the account is quiet; that alone is not an outage).', [0, 102, 12, 7],
              [target('A', 'time() - max by (instance) (healthlake_events_newest_applied_event_timestamp_seconds{%s})' % exporterSel, '{{instance}}')],
              defaults={ unit: 's' }),
        panel(36, 'timeseries', 'Job changes without events', 'Jobs a reconciliation poll found finishing that no event announced first: rising while no event is applied means the rule or the queue is broken (HealthLakeEventsMissing).', [12, 102, 12, 7],
              [target('A', 'sum by (instance) (increase(healthlake_events_unannounced_changes_total{%s}[$__rate_interval]))' % exporterSel, '{{instance}}')]),

        // What the per-job failure alerts fire on (alerts.libsonnet, group
        // healthlake-exporter-job-outcomes): one row per job, instances aggregated away.
        row(37, 109, 'Job outcomes and API use'),
        panel(38, 'table', 'Recently ended jobs: FAILED, COMPLETED_WITH_ERRORS, CANCEL_FAILED', 'Export and import jobs that ended in a problem status within the last %s (_config.endedJobWindow = polling.ended_job_window), from the EndTime HealthLake lists: one row per job, also for jobs that ended while the exporter was restarting or down. FAILED and COMPLETED_WITH_ERRORS rows are what HealthLake*JobFailed / *CompletedWithErrors fire on.' % windowText, [0, 110, 24, 8],
              [target('A', std.join('\nor\n', [
                'label_replace(max by (datastore_name, datastore_id, job_id, job_name, status) (healthlake_%s_job_end_timestamp_seconds{%s}) > time() - %d, "kind", "%s", "", "") * 1000'
                % [kind, sel, windowSeconds, kind]
                for kind in ['export', 'import']
              ]), instant=true, format='table')],
              defaults={},
              overrides=[
                { matcher: { id: 'byName', options: 'Ended' }, properties: [{ id: 'unit', value: 'dateTimeAsIso' }] },
                { matcher: { id: 'byName', options: 'Status' }, properties: [
                  { id: 'custom.cellOptions', value: { type: 'color-text' } },
                  { id: 'mappings', value: [{ type: 'value', options: {
                    FAILED: { color: 'red', index: 0 },
                    COMPLETED_WITH_ERRORS: { color: 'orange', index: 1 },
                    CANCEL_FAILED: { color: 'orange', index: 2 },
                  } }] },
                ] },
              ],
              options={ showHeader: true, sortBy: [{ displayName: 'Ended', desc: true }], cellHeight: 'sm' })
        + { transformations: [{ id: 'organize', options: {
          excludeByName: { Time: true },
          indexByName: { datastore_name: 0, datastore_id: 1, kind: 2, job_name: 3, job_id: 4, status: 5, Value: 6 },
          renameByName: { datastore_name: 'Datastore', datastore_id: 'Datastore id', kind: 'Kind', job_name: 'Job name', job_id: 'Job id', status: 'Status', Value: 'Ended' },
        } }] },
        panel(39, 'timeseries', 'HealthLake API calls by operation and result', "Calls this exporter makes to HealthLake (healthlake_api_requests_total; a listing page is one call), all datastores together, by operation and result (success or the error reason). They share the account's quota with your own tools.", [0, 118, 12, 7],
              [target('A', 'sum by (operation, result) (rate(healthlake_api_requests_total{%s}[$__rate_interval]))' % exporterSel, '{{operation}} {{result}}')],
              defaults={ unit: 'reqps', custom: { drawStyle: 'line', fillOpacity: 20, stacking: { mode: 'normal', group: 'A' } } }),
        panel(40, 'timeseries', 'Waiting for the request budget', 'Seconds per second that API calls spent waiting for a slot of the request budget (polling.max_requests_per_second; healthlake_api_budget_wait_seconds_total), per exporter: rising means the budget, not HealthLake, paces the polls.', [12, 118, 12, 7],
              [target('A', 'sum by (instance) (rate(healthlake_api_budget_wait_seconds_total{%s}[$__rate_interval]))' % exporterSel, '{{instance}}')],
              defaults={ unit: 's', custom: { drawStyle: 'line', fillOpacity: 10 } }),
      ],
    },
  },
}
