-- Text format for a Dublin trace (sonde trace --strategy dublin): each
-- flow's path as traceroute would print it, then the graph the flows make
-- together: at each TTL the addresses that answered, with the flows that
-- went through each. Pure functions from the trace table to text.

local text = require "sonde.format.text"

local M = { name = "dublin" }

-- "1-4", "1,3", "2,5-7": a sorted list of flow numbers, runs shortened.
function M.ranges(ids)
  local out, i = {}, 1
  while ids[i] do
    local j = i
    while ids[j + 1] == ids[j] + 1 do j = j + 1 end
    out[#out + 1] = j > i and (ids[i] .. "-" .. ids[j]) or tostring(ids[i])
    i = j + 1
  end
  return table.concat(out, ",")
end

local function flow_name(f)
  if f.sport then return ("flow %d (sport %d)"):format(f.flow, f.sport) end
  if f.checksum then return ("flow %d (checksum 0x%04x)"):format(f.flow, f.checksum) end
  return ("flow %d"):format(f.flow)
end

function M.document(t)
  local out = { ("trace to %s (%s), %d hops max, %s, %d flows\n"):format(t.target, t.addr,
    t.max_ttl, t.protocol, #(t.flows or {})) }
  for _, f in ipairs(t.flows or {}) do
    out[#out + 1] = flow_name(f) .. "\n"
    for _, hop in ipairs(f.hops) do out[#out + 1] = text.hop(hop, t) end
  end
  local g = t.graph
  if g and #g.nodes > 0 then
    out[#out + 1] = "graph (address [flows]):\n"
    local line, ttl
    for _, n in ipairs(g.nodes) do
      if n.ttl ~= ttl then
        if line then out[#out + 1] = table.concat(line) .. "\n" end
        ttl = n.ttl
        line = { ("%2d "):format(ttl) }
      end
      line[#line + 1] = (#line > 1 and "  " or " ") .. ("%s [%s]"):format(n.addr, M.ranges(n.flows))
    end
    out[#out + 1] = table.concat(line) .. "\n"
  end
  if t.stop_reason == "interrupted" then out[#out + 1] = "trace interrupted\n" end
  return table.concat(out)
end

return M
