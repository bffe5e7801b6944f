-- Text format for sonde sweep: a line per target as its answer comes, and
-- the summary after the last. Pure functions of the records
-- (sonde.strategy.sweep's) and of the command's meta and summary.
--
--   sweep of 256 targets, icmp, 10000 probes/s
--   198.18.0.2       alive  echo_reply  0.113 ms
--   198.18.0.9       -      timeout
--   198.18.0.7       -      dest_unreachable host from 198.18.0.1  0.840 ms
--   198.18.0.8       -      failed ENETUNREACH
--   2 of 256 targets alive (0.8 %); 250 no answer, 3 answered otherwise, 1 failed; 1.02 s, 251 probes/s

local M = { name = "text" }

local fmt = string.format

function M.header(meta)
  local shard = meta.shards and meta.shards > 1
    and fmt(" (shard %d/%d)", meta.shard, meta.shards) or ""
  local what = meta.protocol .. (meta.port and ("/" .. meta.port) or "")
  local rate = meta.rate and meta.rate > 0 and fmt(", %g probes/s", meta.rate) or ""
  return fmt("sweep of %d target%s%s, %s%s\n", meta.total, meta.total == 1 and "" or "s",
    shard, what, rate)
end

function M.record(rec)
  local rtt = rec.rtt and fmt("  %.3f ms", rec.rtt * 1000) or ""
  if rec.alive then
    return fmt("%-15s  alive  %s%s\n", rec.addr, rec.kind, rtt)
  end
  if rec.status == "reply" then
    local what = rec.kind .. (rec.code and (" " .. rec.code) or "")
    if rec.from and rec.from ~= rec.addr then what = what .. " from " .. rec.from end
    return fmt("%-15s  -      %s%s\n", rec.addr, what, rtt)
  end
  if rec.status == "timeout" then
    return fmt("%-15s  -      timeout\n", rec.addr)
  end
  return fmt("%-15s  -      %s %s\n", rec.addr, rec.status,
    rec.error and rec.error.name or "")
end

-- The summary line (summary.text, written by the command).
function M.footer(summary)
  return summary.text and (summary.text .. "\n") or nil
end

return M
