-- sonde.watch.metrics: the Prometheus text exposition (format 0.0.4) of
-- what `sonde watch` measures. Pure: monitors (sonde.watch.monitor) in,
-- text out.
--
-- Label sets are bounded: `target` (the targets given, at most one per
-- target) and, for hop series, `ttl` (1 .. max_ttl). Hop addresses are not
-- labels (a path that changes would make new series without end); the
-- address at each TTL is the value of an info series that is replaced,
-- not added to, when the path changes (sonde_watch_hop_info, one per
-- target and TTL).

local monitor = require "sonde.watch.monitor"

local M = {}

local fmt = string.format

-- A label value, escaped as the exposition format wants (\\, \", \n).
local function esc(v)
  return (tostring(v):gsub("[\\\"\n]", { ["\\"] = "\\\\", ["\""] = "\\\"", ["\n"] = "\\n" }))
end
M.escape = esc

-- A sample value: integers without a fraction, +Inf/-Inf/NaN by name.
local function num(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v == math.floor(v) and math.abs(v) < 2^53 then return fmt("%d", v) end
  -- Unix times keep their milliseconds; ratios and seconds nine digits
  if math.abs(v) >= 1e6 then return fmt("%.3f", v) end
  return fmt("%.9g", v)
end

M.FAMILIES = {
  { "sonde_watch_targets", "gauge", "Targets watched." },
  { "sonde_watch_rounds_total", "counter", "Rounds of probes sent to the target." },
  { "sonde_watch_reachable", "gauge", "1 while the destination answers, 0 once it is lost." },
  { "sonde_watch_path_hops", "gauge", "TTL at which the destination answered (path length in hops)." },
  { "sonde_watch_rtt_seconds", "histogram", "Round-trip times of the destination's answers." },
  { "sonde_watch_loss_ratio", "gauge", "Share of the destination's probes lost over the window of rounds." },
  { "sonde_watch_path_changes_total", "counter", "Path changes seen." },
  { "sonde_watch_last_path_change_timestamp_seconds", "gauge", "Unix time of the last path change (0: none)." },
  { "sonde_watch_hop_loss_ratio", "gauge", "Share of a hop's probes lost over the window of rounds." },
  { "sonde_watch_hop_rtt_seconds", "gauge", "Mean round-trip time of a hop over the window of rounds." },
  { "sonde_watch_hop_icmp_rate_limited", "gauge", "1 when the hop's loss does not carry on to the hops behind it (ICMP rate limiting or deprioritisation, not path loss)." },
  { "sonde_watch_hop_info", "gauge", "The address that answered at a hop (value 1)." },
  { "sonde_watch_events_total", "counter", "Events written, by type." },
}

-- The exposition of monitors (a list), with o.events ({ [type] = count }).
-- o.pause, if given, is called after every M.SLICE monitors (a command
-- lets its loop run there: thousands of targets take a while). -> text.
M.SLICE = 64
function M.render(monitors, o)
  o = o or {}
  local out = {}
  local function add(s) out[#out + 1] = s end
  local by_name = {}
  for _, f in ipairs(M.FAMILIES) do by_name[f[1]] = {} end
  local function sample(name, labels, v)
    local t = by_name[name]
    t[#t + 1] = fmt("%s%s %s", name, labels, num(v))
  end
  sample("sonde_watch_targets", "", #monitors)
  for i, m in ipairs(monitors) do
    if o.pause and i % M.SLICE == 0 then o.pause() end
    local t = fmt('{target="%s"}', esc(m.target))
    sample("sonde_watch_rounds_total", t, m.rounds)
    if m.reachable ~= nil then sample("sonde_watch_reachable", t, m.reachable and 1 or 0) end
    if m.final_ttl then sample("sonde_watch_path_hops", t, m.final_ttl) end
    local dw = m:destination()
    if dw.sent > 0 then sample("sonde_watch_loss_ratio", t, dw.loss / 100) end
    sample("sonde_watch_path_changes_total", t, m.changes)
    sample("sonde_watch_last_path_change_timestamp_seconds", t, m.last_change or 0)
    -- the histogram: cumulative buckets, +Inf, sum, count
    local h = by_name.sonde_watch_rtt_seconds
    for i, b in ipairs(monitor.BUCKETS) do
      h[#h + 1] = fmt('sonde_watch_rtt_seconds_bucket{target="%s",le="%s"} %s', esc(m.target),
        num(b), num(m.rtt_buckets[i] or 0))
    end
    h[#h + 1] = fmt('sonde_watch_rtt_seconds_bucket{target="%s",le="+Inf"} %s', esc(m.target),
      num(m.rtt_count))
    h[#h + 1] = fmt("sonde_watch_rtt_seconds_sum%s %s", t, num(m.rtt_sum))
    h[#h + 1] = fmt("sonde_watch_rtt_seconds_count%s %s", t, num(m.rtt_count))
    for _, s in ipairs(m:hop_rows()) do
      local ht = fmt('{target="%s",ttl="%d"}', esc(m.target), s.ttl)
      if s.sent > 0 then sample("sonde_watch_hop_loss_ratio", ht, s.loss / 100) end
      if s.avg then sample("sonde_watch_hop_rtt_seconds", ht, s.avg) end
      sample("sonde_watch_hop_icmp_rate_limited", ht, s.limited and 1 or 0)
      if s.addr then
        sample("sonde_watch_hop_info", fmt('{target="%s",ttl="%d",addr="%s"}', esc(m.target),
          s.ttl, esc(s.addr)), 1)
      end
    end
  end
  local types = {}
  for k in pairs(o.events or {}) do types[#types + 1] = k end
  table.sort(types)
  for _, k in ipairs(types) do
    sample("sonde_watch_events_total", fmt('{type="%s"}', esc(k)), o.events[k])
  end
  for _, f in ipairs(M.FAMILIES) do
    local samples = by_name[f[1]]
    if #samples > 0 then
      add(fmt("# HELP %s %s", f[1], f[3]))
      add(fmt("# TYPE %s %s", f[1], f[2]))
      for _, s in ipairs(samples) do add(s) end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

return M
