-- Text format for sonde mda: the interfaces found at each TTL, then the
-- links between them, then the probe count. Pure functions from the mda
-- document (scripts/mda.lua, the "mda" definition of the JSON schema) to
-- text.
--
--   mda to dst.lab (198.18.5.2), 30 hops max, udp/33434, 95% confidence
--    1  198.18.0.2
--    2  198.18.1.2  198.18.2.2
--    3  198.18.3.2
--    4  198.18.5.2
--   links:
--    198.18.0.2 -> 198.18.1.2  198.18.2.2
--    198.18.1.2 -> 198.18.3.2
--    ...
--   19 probes, 11 flows (source ports 33434-33444), destination reached
--
--   document(d)  the whole text
--   summary(d)   its last line, without the line end

local M = { name = "mda" }

local function label(n)
  if n.name then return ("%s (%s)"):format(n.name, n.addr) end
  return n.addr
end

local STOP = {
  reached = "destination reached", unreachable = "a router said the destination is unreachable",
  max_ttl = "stopped at the maximum TTL", gap_limit = "stopped after silent hops (gap limit)",
  max_probes = "stopped at the probe budget", interrupted = "interrupted", error = "stopped on an error",
}

function M.document(d)
  local out = { ("mda to %s (%s), %d hops max, %s/%d, %d%% confidence\n"):format(
    d.target, d.addr, d.max_ttl, d.protocol, d.dport, d.confidence) }
  for _, h in ipairs(d.hops) do
    local labels = {}
    for _, n in ipairs(h.nodes) do labels[#labels + 1] = label(n) end
    out[#out + 1] = ("%2d  %s\n"):format(h.ttl, #labels > 0 and table.concat(labels, "  ") or "*")
  end
  if #d.links > 0 then
    out[#out + 1] = "links:\n"
    -- one line per node a link leaves from: "a -> b  c", "a -> (+2) d"
    local line, from
    for _, l in ipairs(d.links) do
      local key = l.from_ttl .. " " .. l.from
      if key ~= from then
        if line then out[#out + 1] = table.concat(line) .. "\n" end
        from = key
        line = { (" %s ->"):format(l.from) }
      end
      local gap = l.to_ttl - l.from_ttl
      line[#line + 1] = (#line > 1 and "  " or " ") .. (gap > 1 and ("(+%d) "):format(gap) or "") .. l.to
    end
    out[#out + 1] = table.concat(line) .. "\n"
  end
  out[#out + 1] = M.summary(d) .. "\n"
  return table.concat(out)
end

-- The last line of the text: "19 probes, 11 flows (source ports
-- 33456-33466), destination reached" (without its line end).
function M.summary(d)
  local ports = d.flows > 1 and ("source ports %d-%d"):format(d.sport, d.sport + d.flows - 1)
    or ("source port %d"):format(d.sport)
  return ("%d probe%s, %d flow%s (%s), %s"):format(d.probes_sent,
    d.probes_sent == 1 and "" or "s", d.flows, d.flows == 1 and "" or "s", ports,
    STOP[d.stop_reason] or d.stop_reason)
end

return M
