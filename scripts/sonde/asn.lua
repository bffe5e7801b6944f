-- sonde.asn: the origin AS of an address, as mtr -z and Trippy find it: a
-- DNS TXT query in Team Cymru's convention (the address's octets reversed
-- under origin.asn.cymru.com, its nibbles reversed under
-- origin6.asn.cymru.com for IPv6; the answer "64500 | 198.18.0.0/15 | ZZ |
-- other | 2020-01-01": origin AS, prefix, country, registry, date), or
-- offline from a prefix-to-AS file in the RouteViews/CAIDA pfx2as format
-- (one "PREFIX<TAB>LENGTH<TAB>AS" line per prefix; an AS field of several
-- origins, "64500_64501" or "64500,64501", gives its first), the longest
-- prefix winning.
--
--   local asn = require "sonde.asn"
--   local table_, err = asn.parse_pfx2as(text)     -- for --as-file
--   local l = asn.lookup{ eng = eng, zone = ..., zone6 = ..., table = t }
--   l.ask(addr)          -- start a lookup (once per address per run)
--   l.get(addr)          -- { asn = 64500, prefix = "198.18.0.0/15" } or nil
--   l.settle(seconds)    -- wait until every lookup asked has ended, at most
--                        -- that long

local bit = require "bit"

local M = {}

M.ZONE = "origin.asn.cymru.com"
M.ZONE6 = "origin6.asn.cymru.com"

-- The options every command that shows AS numbers has (long names; each
-- command adds its tool's own letter: mtr -z, trace -A).
M.OPTIONS = {
  { nil, "--as", key = "as", flag = true,
    help = "look up the origin AS number of every address (DNS TXT under --as-zone, or --as-file)" },
  { nil, "--as-zone", arg = "ZONE", type = "string", default = M.ZONE,
    help = "the DNS zone of origin-AS TXT records for IPv4 (IPv6: --as-zone6)" },
  { nil, "--as-zone6", arg = "ZONE", type = "string", default = M.ZONE6,
    help = "the DNS zone of origin-AS TXT records for IPv6" },
  { nil, "--as-file", arg = "FILE", type = "string",
    help = "origin AS from FILE (RouteViews/CAIDA pfx2as: PREFIX LENGTH AS per line), no DNS" },
}

-- An address as a list of bytes (4 or 16), or nil.
local function bytes_of(addr)
  if addr:find(":", 1, true) then
    local head, tail = addr:match("^(.-)::(.*)$")
    local groups = {}
    local function split(s, into)
      if s == "" then return true end
      for g in (s .. ":"):gmatch("([^:]*):") do
        if not g:match("^%x%x?%x?%x?$") then return false end
        into[#into + 1] = tonumber(g, 16)
      end
      return true
    end
    if head then
      local h, t = {}, {}
      if not split(head, h) or not split(tail, t) or #h + #t > 7 then return nil end
      for _, g in ipairs(h) do groups[#groups + 1] = g end
      for _ = 1, 8 - #h - #t do groups[#groups + 1] = 0 end
      for _, g in ipairs(t) do groups[#groups + 1] = g end
    elseif not split(addr, groups) or #groups ~= 8 then
      return nil
    end
    local b = {}
    for _, g in ipairs(groups) do
      b[#b + 1] = math.floor(g / 256)
      b[#b + 1] = g % 256
    end
    return b
  end
  local a, b, c, d = addr:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local t = { tonumber(a), tonumber(b), tonumber(c), tonumber(d) }
  for _, v in ipairs(t) do if v > 255 then return nil end end
  return t
end
M.bytes_of = bytes_of

-- The first `len` bits of bytes, as a string key.
local function key_of(b, len)
  local out = {}
  local full = math.floor(len / 8)
  for i = 1, full do out[i] = string.char(b[i]) end
  local rest = len % 8
  if rest > 0 then
    local mask = 256 - 2 ^ (8 - rest)
    out[#out + 1] = string.char(bit.band(b[full + 1], mask))
  end
  return #b .. "/" .. len .. ":" .. table.concat(out)
end

-- The TXT query name of addr under zone (v4) or zone6 (v6).
function M.query_name(addr, zone, zone6)
  local b = bytes_of(addr)
  if not b then return nil end
  local parts = {}
  if #b == 4 then
    for i = 4, 1, -1 do parts[#parts + 1] = tostring(b[i]) end
    return table.concat(parts, ".") .. "." .. (zone or M.ZONE)
  end
  for i = 16, 1, -1 do
    parts[#parts + 1] = string.format("%x", b[i] % 16)
    parts[#parts + 1] = string.format("%x", math.floor(b[i] / 16))
  end
  return table.concat(parts, ".") .. "." .. (zone6 or M.ZONE6)
end

-- Team Cymru's TXT answer -> { asn, prefix } or nil.
function M.parse_txt(s)
  local as, prefix = s:match("^%s*(%d+)[%d ]*|%s*([%x:./]+)")
  if not as then as = s:match("^%s*(%d+)") end
  as = tonumber(as)
  if not as or as > 4294967295 then return nil end
  return { asn = as, prefix = prefix }
end

-- A pfx2as file's text -> a table for lookup{table=}, or nil, "line N: ...".
function M.parse_pfx2as(text)
  local t = { lens = {}, map = {} }
  local seen, n = {}, 0
  for line in text:gmatch("[^\n]+") do
    n = n + 1
    line = line:gsub("\r$", "")
    if not line:match("^%s*#") and line:match("%S") then
      local p, len, as = line:match("^%s*([%x:.]+)%s+(%d+)%s+(%d+)")
      local b = p and bytes_of(p)
      len = tonumber(len)
      if not b or len > #b * 8 then
        return nil, ("line %d: expected PREFIX LENGTH AS, got '%s'"):format(n, line:sub(1, 60))
      end
      local k = key_of(b, len)
      if not t.map[k] then
        t.map[k] = { asn = tonumber(as), prefix = p .. "/" .. len }
        local lk = #b .. "/" .. len
        if not seen[lk] then
          seen[lk] = true
          t.lens[#t.lens + 1] = { size = #b, len = len }
        end
      end
    end
  end
  table.sort(t.lens, function(a, b) return a.len > b.len end)
  return t
end

-- The longest prefix of t that holds addr -> { asn, prefix } or nil.
function M.match(t, addr)
  local b = bytes_of(addr)
  if not b then return nil end
  for _, l in ipairs(t.lens) do
    if l.size == #b then
      local hit = t.map[key_of(b, l.len)]
      if hit then return hit end
    end
  end
  return nil
end

-- A lookup per run: o.eng, o.zone, o.zone6, o.table (offline: no DNS),
-- o.timeout (seconds a query may take, default 3).
function M.lookup(o)
  local found, asked, pending, waiters = {}, {}, 0, {}
  local l = {}
  function l.ask(addr)
    if asked[addr] then return end
    asked[addr] = true
    if o.table then
      found[addr] = M.match(o.table, addr)
      return
    end
    local name = M.query_name(addr, o.zone, o.zone6)
    if not name then return end
    pending = pending + 1
    o.eng:spawn(function()
      local txt = o.eng:txt(name, o.timeout or 3)
      for _, s in ipairs(txt or {}) do
        found[addr] = found[addr] or M.parse_txt(s)
      end
      pending = pending - 1
      if pending == 0 then
        local w = waiters
        waiters = {}
        for _, ev in ipairs(w) do ev.fire() end
      end
    end)
  end
  function l.get(addr) return found[addr] end
  function l.settle(seconds)
    if pending == 0 then return end
    local ev = o.eng:event()
    waiters[#waiters + 1] = ev
    local token = o.eng:after(seconds or 5, ev.fire)
    ev.wait()
    o.eng:cancel_timer(token)
  end
  return l
end

return M
