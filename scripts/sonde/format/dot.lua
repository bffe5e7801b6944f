-- DOT (Graphviz) for the graphs sonde finds: sonde mda's, and a trace's
-- (a Dublin trace's merged graph, or what any trace saw, TTL by TTL).
-- One node per address, ranked by the first TTL it answered at; a link
-- that spans silent hops is dashed. Pure: the document in, text out.
--
--   sonde mda --format dot 198.18.5.2 | dot -Tsvg > paths.svg

local quote = require "sonde.quote"

local M = { name = "dot" }

local function esc(s)
  return (tostring(s):gsub('[\\"]', "\\%0"))
end

local function q(s)
  return '"' .. esc(s) .. '"'
end

-- nodes { ttl, addr, name?, final? }, links { from, from_ttl, to, to_ttl,
-- flows? } of a document.
local function graph_of(doc)
  if doc.type == "mda" then
    local nodes = {}
    for _, h in ipairs(doc.hops) do
      for _, n in ipairs(h.nodes) do
        nodes[#nodes + 1] = { ttl = h.ttl, addr = n.addr, name = n.name, final = n.final }
      end
    end
    return nodes, doc.links
  end
  local g = doc.graph
  if not g then
    g = require("sonde.strategy.dublin").graph{ { flow = 1, hops = doc.hops } }
    for _, l in ipairs(g.links) do l.flows = nil end
  end
  local names, finals = {}, {}
  for _, hop in ipairs(doc.hops or {}) do
    for _, r in ipairs(hop.probes) do
      if r.addr then
        names[r.addr] = names[r.addr] or r.name
        if r.addr == doc.addr then finals[r.addr] = "reached" end
      end
    end
  end
  -- what the quotes tell, beside the node that first showed it: header
  -- fields rewritten before it, NAT, its interface information (RFC 5837)
  local notes = {}
  if doc.hops then
    for _, hop in ipairs(doc.hops) do
      local changed, nat = quote.new_at(doc, hop)
      local ext = quote.hop_ext(hop)
      for _, r in ipairs(hop.probes) do
        if r.addr and not notes[r.addr] then
          local n = {}
          if ext then n[#n + 1] = quote.ext_list_text(ext) end
          if #changed > 0 then n[#n + 1] = "changed: " .. quote.changes_text(changed) end
          if nat then n[#n + 1] = "NAT" end
          if #n > 0 then notes[r.addr] = n end
        end
      end
    end
  end
  local nodes = {}
  for _, n in ipairs(g.nodes) do
    nodes[#nodes + 1] = { ttl = n.ttl, addr = n.addr, name = names[n.addr], final = finals[n.addr],
      notes = notes[n.addr] }
  end
  return nodes, g.links
end

function M.document(doc)
  local nodes, links = graph_of(doc)
  local title = ("sonde %s %s"):format(doc.type, doc.target or doc.addr or "")
  local out = { ("digraph %s {\n"):format(q(title)),
    "  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n" }
  local rank, ranks, seen = {}, {}, {}
  for _, n in ipairs(nodes) do
    if not seen[n.addr] then
      seen[n.addr] = true
      local ttls = {}
      for _, m in ipairs(nodes) do
        if m.addr == n.addr then ttls[#ttls + 1] = tostring(m.ttl) end
      end
      -- lines of the label joined by DOT's own "\n" escape
      local lines = { esc(n.addr) }
      if n.name then lines[#lines + 1] = esc(n.name) end
      lines[#lines + 1] = "TTL " .. table.concat(ttls, ",")
      for _, note in ipairs(n.notes or {}) do lines[#lines + 1] = esc(note) end
      out[#out + 1] = ("  %s [label=\"%s\"%s];\n"):format(q(n.addr), table.concat(lines, "\\n"),
        n.final and ", peripheries=2" or "")
      if not rank[n.ttl] then rank[n.ttl] = {}; ranks[#ranks + 1] = n.ttl end
      table.insert(rank[n.ttl], q(n.addr))
    end
  end
  table.sort(ranks)
  for _, t in ipairs(ranks) do
    out[#out + 1] = ("  { rank=same; %s; }\n"):format(table.concat(rank[t], "; "))
  end
  for _, l in ipairs(links) do
    local attrs = {}
    if l.to_ttl - l.from_ttl > 1 then attrs[#attrs + 1] = "style=dashed" end
    if l.flows and #l.flows > 0 then attrs[#attrs + 1] = "label=" .. q(#l.flows) end
    out[#out + 1] = ("  %s -> %s%s;\n"):format(q(l.from), q(l.to),
      #attrs > 0 and (" [" .. table.concat(attrs, ", ") .. "]") or "")
  end
  out[#out + 1] = "}\n"
  return table.concat(out)
end

-- Several targets go through a sink: each trace is a record, drawn as a
-- digraph of its own, one after the other.
function M.record(doc)
  return M.document(doc)
end

return M
