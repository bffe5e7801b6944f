-- Text format for traces: reads like traceroute's. Pure functions from the
-- trace's tables to text; the command streams hop() as hops complete.

local quote = require "sonde.quote"

local M = { name = "text" }

-- Annotations after an RTT, traceroute's where it has one.
local UNREACH = { net = "!N", host = "!H", protocol = "!P", port = "",
  frag_needed = "!F", source_route = "!S", prohibited = "!X",
  net_unknown = "!N", host_unknown = "!H", precedence = "!V",
  beyond_scope = "!S", address = "!H", policy = "!X", reject_route = "!X",
  other = "!?" }

local function annotation(r, dst)
  if r.kind == "dest_unreachable" then
    -- (a link-local destination's zone, fe80::1%eth0, is not in r.addr)
    if r.code == "port" and r.addr ~= (dst and dst:gsub("%%.*$", "")) then return " !P" end
    local a = UNREACH[r.code] or "!?"
    if r.code == "frag_needed" and r.mtu then a = a .. "-" .. r.mtu end
    return a ~= "" and " " .. a or ""
  elseif r.kind == "self_connect" then
    return " !self-connect"
  elseif r.kind == "reset" then
    return " !reset"
  elseif r.kind == "packet_too_big" then
    return " !F-" .. tostring(r.mtu or "?")
  elseif r.kind == "param_problem" then
    return " !param"
  end
  return ""
end

local function mpls_text(r)
  local parts = {}
  for _, m in ipairs(r.mpls or {}) do
    parts[#parts + 1] = string.format("[MPLS: Lbl %d, Exp %d, S %d, TTL %d]",
      m.label, m.exp, m.s and 1 or 0, m.ttl)
  end
  return table.concat(parts, " ")
end

function M.header(t)
  return string.format("trace to %s (%s), %d hops max, %s%s\n", t.target,
    t.addr, t.max_ttl, t.protocol, t.port and ("/" .. t.port) or "")
end

function M.hop(hop, t)
  local out = { string.format("%2d ", hop.ttl) }
  local last
  local labels
  for _, r in ipairs(hop.probes) do
    if r.status == "reply" then
      if r.addr ~= last then
        last = r.addr
        -- traceroute -A: the origin AS before the name
        out[#out + 1] = (r.asn and string.format(" [AS%d]", r.asn) or "")
          .. (r.name and string.format(" %s (%s)", r.name, r.addr) or " " .. r.addr)
      end
      out[#out + 1] = string.format("  %.3f ms%s", r.rtt * 1000,
        annotation(r, t.addr))
      labels = labels or (#(r.mpls or {}) > 0 and mpls_text(r))
    elseif r.status == "timeout" then
      out[#out + 1] = " *"
    elseif r.status == "skipped" then
      out[#out + 1] = " skipped(" .. r.error.name .. ")"
    else
      out[#out + 1] = " !" .. (r.error and r.error.name or "failed")
    end
    -- path MTU discovery: this probe went out again at a smaller size
    -- (traceroute --mtu's F=)
    if r.pmtu then out[#out + 1] = " F=" .. r.pmtu end
  end
  out[#out + 1] = "\n"
  if labels then out[#out + 1] = "     " .. labels .. "\n" end
  local ext = quote.hop_ext(hop)
  for _, x in ipairs(ext or {}) do
    out[#out + 1] = "     [" .. quote.ext_text(x) .. "]\n"
  end
  local changed, nat = quote.new_at(t, hop)
  if #changed > 0 then
    out[#out + 1] = "     [changed: " .. quote.changes_text(changed) .. "]\n"
  end
  if nat then out[#out + 1] = "     [NAT]\n" end
  return table.concat(out)
end

-- The silent hops (every probe a timeout) at the end of a trace's hops.
local function trailing_silent(t)
  local n = 0
  for i = #t.hops, 1, -1 do
    for _, r in ipairs(t.hops[i].probes) do
      if r.status ~= "timeout" then return n end
    end
    n = n + 1
  end
  return n
end

function M.footer(t)
  if t.stop_reason == "interrupted" then
    return "trace interrupted\n"
  elseif t.stop_reason == "gap_limit" then
    return string.format("stopped: %d silent hops in a row, and the next one silent too "
      .. "(--gap-limit)\n", trailing_silent(t))
  end
  return ""
end

return M
