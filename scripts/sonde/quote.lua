-- What the quotes of a trace's replies tell: header fields a middlebox
-- rewrote (a reply's `changes`, compared by the engine with what the probe
-- carried), NAT evidence (`nat`), and RFC 5837 interface information
-- (`ext`). Pure functions from result tables to tables and text, shared by
-- the formats.

local M = {}

local fmt, concat = string.format, table.concat

-- The changes of a hop's replies, one per field and value seen, in the
-- order they first appear.
-- @param hop a trace hop ({ ttl, probes })
-- @return list of { field, sent, seen }
function M.hop_changes(hop)
  local list, seen = {}, {}
  for _, r in ipairs(hop and hop.probes or {}) do
    for _, c in ipairs(r.changes or {}) do
      local k = c.field .. "=" .. tostring(c.seen)
      if not seen[k] then
        seen[k] = true
        list[#list + 1] = c
      end
    end
  end
  return list
end

-- Does any reply of the hop carry NAT evidence?
function M.hop_nat(hop)
  for _, r in ipairs(hop and hop.probes or {}) do
    if r.nat then return true end
  end
  return false
end

-- The change set ("field=seen" -> true) and NAT mark of a hop.
local function marks(hop)
  local set = {}
  for _, c in ipairs(M.hop_changes(hop)) do set[c.field .. "=" .. tostring(c.seen)] = true end
  return set, M.hop_nat(hop)
end

local function answered(hop)
  for _, r in ipairs(hop.probes or {}) do
    if r.status == "reply" then return true end
  end
  return false
end

-- The last hop before `hop` that answered, among t.hops.
local function previous(t, hop)
  local best
  for _, h in ipairs(t.hops) do
    if h.ttl < hop.ttl and answered(h) and (not best or h.ttl > best.ttl) then best = h end
  end
  return best
end

-- Streamed hops come one by one with the trace's header table, in TTL
-- order: what the last answering hop showed is remembered per header.
local streamed = setmetatable({}, { __mode = "k" })

-- The changes at `hop` that the last hop before it that answered did not
-- show (the rewrite happened between the two): what tracebox prints at
-- each hop. t is the trace (with its hops) or, streaming, its header.
-- @return list of { field, sent, seen }, and whether NAT first shows here
function M.new_at(t, hop)
  local before, nat_before
  if t and t.hops then
    before, nat_before = marks(previous(t, hop))
  else
    local last = t and streamed[t]
    if last and last.ttl < hop.ttl then
      before, nat_before = last.set, last.nat
    else
      before, nat_before = {}, false
    end
    if t and answered(hop) then
      local set, nat = marks(hop)
      streamed[t] = { ttl = hop.ttl, set = set, nat = nat }
    end
  end
  local out = {}
  for _, c in ipairs(M.hop_changes(hop)) do
    if not before[c.field .. "=" .. tostring(c.seen)] then out[#out + 1] = c end
  end
  return out, M.hop_nat(hop) and not nat_before
end

-- "dscp 0->8, ecn 2->0" (a source address as sent->seen).
function M.changes_text(list)
  local parts = {}
  for _, c in ipairs(list) do
    if c.field == "payload" then
      parts[#parts + 1] = fmt("payload byte %s", tostring(c.sent))
    else
      parts[#parts + 1] = fmt("%s %s->%s", c.field, tostring(c.sent), tostring(c.seen))
    end
  end
  return concat(parts, ", ")
end

local ROLE = { incoming = "in", incoming_sub_ip = "in-sub", outgoing = "out", next_hop = "next-hop" }

-- One extension object as text: "in eth0 (ifindex 2) 198.18.1.1 mtu 1500",
-- or "class 5 c-type 1: 0a0b..." for another class.
function M.ext_text(x)
  if x.class == 2 then
    local parts = { ROLE[x.role] or x.role }
    if x.name then parts[#parts + 1] = x.name end
    if x.ifindex then parts[#parts + 1] = fmt("(ifindex %d)", x.ifindex) end
    if x.addr then parts[#parts + 1] = x.addr end
    if x.mtu then parts[#parts + 1] = fmt("mtu %d", x.mtu) end
    return concat(parts, " ")
  end
  return fmt("class %d c-type %d: %s", x.class, x.ctype, x.data or "")
end

-- A list of extension objects as text, "; " between them.
function M.ext_list_text(list)
  local parts = {}
  for i, x in ipairs(list) do parts[i] = M.ext_text(x) end
  return concat(parts, "; ")
end

-- The interface information of a hop's first reply that has some.
function M.hop_ext(hop)
  for _, r in ipairs(hop and hop.probes or {}) do
    if r.ext and #r.ext > 0 then return r.ext end
  end
end

return M
