-- Dublin traceroute: several flows, each of them a Paris trace
-- (sonde.strategy.paris), run side by side, so that the distinct paths a
-- load balancer spreads flows over show up at once, each flow's own path
-- undisturbed by the others. The flows differ by what load balancers hash:
--
--   udp   flow f leaves from source port base + f - 1 (engine bind
--         "fixed": one socket per port); the UDP checksum names the probe
--         (raw sockets needed, as for Paris UDP)
--   icmp  flow f holds its ICMP checksum at base + f - 1
--   tcp   flow f leaves from source port base + f - 1; each flow sends one
--         probe at a time (Paris TCP), the flows run side by side
--
-- M.new(o) returns { flows = { paris instance, ... }, spec(ttl, seq, flow) }:
-- the trace runner (sonde.trace) runs one trace per flow and merges them.
-- M.graph(flows) merges the flows' hop lists into one graph.

local paris = require "sonde.strategy.paris"
local json = require "sonde.json"
local defaults = require "sonde.defaults"

local M = { name = "dublin" }

M.DEFAULT_FLOWS = 4
M.MAX_FLOWS = 64
-- The first flow's source port (UDP, TCP) when none is given: not the
-- destination port (33434), so that a flow to this very host does not
-- reach its own socket.
M.SPORT = defaults.FLOW_SPORT

-- o: as sonde.strategy.paris, plus flows (how many, 1 .. M.MAX_FLOWS,
-- default M.DEFAULT_FLOWS); sport is the first flow's source port, checksum
-- the first flow's ICMP checksum.
function M.new(o)
  local n = o.flows or M.DEFAULT_FLOWS
  if type(n) ~= "number" or n < 1 or n > M.MAX_FLOWS or n % 1 ~= 0 then
    error(("dublin: flows must be an integer from 1 to %d"):format(M.MAX_FLOWS), 2)
  end
  local base = o.sport or M.SPORT
  local cbase = o.checksum or paris.ICMP_CHECKSUM
  if o.proto ~= "icmp" and base + n - 1 > 65535 then
    error(("dublin: %d flows from source port %d go past 65535"):format(n, base), 2)
  end
  local s = { flows = {} }
  for f = 1, n do
    local p = {}
    for k, v in pairs(o) do p[k] = v end
    if o.proto == "icmp" then
      p.checksum = (cbase + f - 2) % 65534 + 1
    else
      p.sport = base + f - 1
    end
    local inst = paris.new(p)
    inst.flow = f
    s.flows[f] = inst
  end
  -- The spec of flow `flow`'s probe of sequence seq, at ttl.
  function s.spec(ttl, seq, flow)
    return s.flows[flow or 1].spec(ttl, seq)
  end
  return s
end

-- A flow's description for the output: { flow, sport } or { flow,
-- checksum } (ICMP).
function M.describe(inst)
  return { flow = inst.flow, sport = inst.sport, checksum = inst.checksum }
end

local function sorted_ids(set)
  local list = {}
  for id in pairs(set) do list[#list + 1] = id end
  table.sort(list)
  return json.array(list)
end

-- Merges flows into a graph. flows: list of { flow = id, hops = { { ttl,
-- probes } } } (the probes as a trace records them). A node is an address
-- that answered at a TTL; a link joins what answered a flow at one TTL to
-- what answered it at the next TTL that answered (to_ttl - from_ttl > 1
-- across silent hops). Returns { nodes = { { ttl, addr, flows } },
-- links = { { from, from_ttl, to, to_ttl, flows } } }, sorted, with flows
-- the list of flow ids that went there. Pure.
function M.graph(flows)
  local nodes, links = {}, {}
  local function key(ttl, addr) return ttl .. " " .. addr end
  for _, fl in ipairs(flows) do
    local prev = {}
    local hops = {}
    for _, hop in ipairs(fl.hops) do hops[#hops + 1] = hop end
    table.sort(hops, function(a, b) return a.ttl < b.ttl end)
    for _, hop in ipairs(hops) do
      local here, seen = {}, {}
      for _, r in ipairs(hop.probes) do
        if r.status == "reply" and r.addr and not seen[r.addr] then
          seen[r.addr] = true
          here[#here + 1] = { ttl = hop.ttl, addr = r.addr }
        end
      end
      for _, n in ipairs(here) do
        local k = key(n.ttl, n.addr)
        nodes[k] = nodes[k] or { ttl = n.ttl, addr = n.addr, set = {} }
        nodes[k].set[fl.flow] = true
        for _, p in ipairs(prev) do
          local lk = key(p.ttl, p.addr) .. " " .. k
          links[lk] = links[lk] or { from = p.addr, from_ttl = p.ttl,
            to = n.addr, to_ttl = n.ttl, set = {} }
          links[lk].set[fl.flow] = true
        end
      end
      if #here > 0 then prev = here end
    end
  end
  local out = { nodes = json.array{}, links = json.array{} }
  for _, n in pairs(nodes) do
    out.nodes[#out.nodes + 1] = { ttl = n.ttl, addr = n.addr, flows = sorted_ids(n.set) }
  end
  for _, l in pairs(links) do
    out.links[#out.links + 1] = { from = l.from, from_ttl = l.from_ttl, to = l.to,
      to_ttl = l.to_ttl, flows = sorted_ids(l.set) }
  end
  table.sort(out.nodes, function(a, b)
    if a.ttl ~= b.ttl then return a.ttl < b.ttl end
    return a.addr < b.addr
  end)
  table.sort(out.links, function(a, b)
    if a.from_ttl ~= b.from_ttl then return a.from_ttl < b.from_ttl end
    if a.from ~= b.from then return a.from < b.from end
    if a.to_ttl ~= b.to_ttl then return a.to_ttl < b.to_ttl end
    return a.to < b.to
  end)
  return out
end

return M
