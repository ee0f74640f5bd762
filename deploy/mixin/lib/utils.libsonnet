// Small helpers shared by the alerts and the dashboard (plain jsonnet, no dependencies).
{
  // '15m' -> '15 minutes', '1h' -> '1 hour', '90s' -> '90 seconds'.
  humanDuration(d)::
    local n = std.parseInt(std.substr(d, 0, std.length(d) - 1));
    local unit = { s: 'second', m: 'minute', h: 'hour', d: 'day' }[d[std.length(d) - 1]];
    '%d %s%s' % [n, unit, if n == 1 then '' else 's'],

  // '15m' -> 900.
  seconds(d)::
    std.parseInt(std.substr(d, 0, std.length(d) - 1))
    * { s: 1, m: 60, h: 3600, d: 86400 }[d[std.length(d) - 1]],

  // 21600 -> '6h', 5400 -> '90m', 45 -> '45s'.
  shortSeconds(s)::
    if s % 3600 == 0 then '%dh' % (s / 3600)
    else if s % 60 == 0 then '%dm' % (s / 60)
    else '%ds' % s,

  // 21600 -> '6 * 3600' (reads as hours in PromQL), other values as they are.
  promqlSeconds(s)::
    if s % 3600 == 0 && s >= 3600 then '%d * 3600' % (s / 3600) else '%d' % s,
}
