-- sonde.targets: the list of addresses a campaign probes, built from what a
-- user typed (addresses, CIDR prefixes, host names, files of them), and its
-- deterministic split into shards. Pure Lua: no engine, no I/O except the
-- lines it is handed.
--
--   local targets = require "sonde.targets"
--   local list = targets.list()
--   assert(list:add("198.18.0.0/24"))            -- or nil, reason
--   local bad = list:add_lines(io.lines(path), path)
--                                                -- { { source, line, text, reason } }
--   list:names()                                 -- host names to resolve
--   list:add("198.18.7.1")                       -- (their addresses, later)
--   local n = list:finish()                      -- the number of addresses
--   for addr, i in list:iter{ seed = 7, shard = 0, shards = 3 } do ... end
--
-- The list is a set: an address given twice (or inside two overlapping
-- prefixes) is probed once. Its order is numeric (IPv4 before IPv6), so two
-- processes that are given the same targets in a different order agree on
-- the list; iter() then walks it in a seeded pseudo-random order (below).
--
-- Entries:
--   198.18.0.1                 an IPv4 address (decimal octets, no leading
--                              zeros: inet_pton's rules)
--   198.18.0.0/24              an IPv4 prefix, /0 to /32; host bits are
--                              ignored (198.18.0.9/24 is 198.18.0.0/24)
--   2001:db8::1, 2001:db8::/120  an IPv6 address or a prefix of /96 or
--                              longer (at most 2^32 addresses)
--   host.example               a host name: kept in list:names() for the
--                              caller to resolve (concurrently) and add
-- In files: one entry per line; '#' starts a comment; blank lines are
-- ignored; a line that is not an entry is returned by add_lines() with its
-- line number and the reason, and skipped.
--
-- Sharding (zmap's scheme): the n addresses are put in a seeded
-- pseudo-random order — a permutation of 0..n-1 computed one element at a
-- time by a Feistel network over the smallest power of four >= n, walking
-- the cycle until it lands below n (cycle walking), so it needs no memory
-- whatever n is — and shard K of N takes the positions K, K+N, K+2N, ...
-- of that order. The N shards of one seed cover every address exactly once;
-- the same seed gives the same split on every machine; another seed, another
-- order. In a Kubernetes Indexed Job, K is the pod's JOB_COMPLETION_INDEX.

local bit = require "bit"

local band, bxor, rshift = bit.band, bit.bxor, bit.rshift
local floor, fmt = math.floor, string.format
local concat = table.concat

local M = {}

local TWO32 = 4294967296
M.MAX = TWO32 -- the most addresses a list may hold

---------------------------------------------------------------------------
-- Addresses
---------------------------------------------------------------------------

-- An IPv4 address as a number 0..2^32-1, or nil.
local function parse_v4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local n = 0
  for _, o in ipairs{ a, b, c, d } do
    if #o > 3 or (#o > 1 and o:sub(1, 1) == "0") then return nil end
    local v = tonumber(o)
    if v > 255 then return nil end
    n = n * 256 + v
  end
  return n
end

local function format_v4(n)
  local d = n % 256; n = (n - d) / 256
  local c = n % 256; n = (n - c) / 256
  local b = n % 256
  local a = (n - b) / 256
  return fmt("%d.%d.%d.%d", a, b, c, d)
end

-- An IPv6 address as 8 numbers (16-bit groups), or nil. Takes every text
-- form of RFC 4291 2.2, the embedded IPv4 form included; no zone (%eth0).
local function parse_v6(s)
  if not s:match("^[%x:.]+$") or s:find(":::", 1, true) then return nil end
  local v4tail
  local head, last = s:match("^(.*:)([%d.]+)$")
  if last and last:find(".", 1, true) then
    v4tail = parse_v4(last)
    if not v4tail then return nil end
    s = head .. "0:0" -- two groups, replaced below
  end
  local left, right = s, nil
  local dc = s:find("::", 1, true)
  if dc then
    left, right = s:sub(1, dc - 1), s:sub(dc + 2)
    if right:find("::", 1, true) then return nil end
  end
  local function groups(part)
    local g = {}
    if part == "" then return g end
    for w in (part .. ":"):gmatch("([^:]*):") do
      if w == "" or #w > 4 or not w:match("^%x+$") then return nil end
      g[#g + 1] = tonumber(w, 16)
    end
    return g
  end
  local lg, rg = groups(left), groups(right or "")
  if not lg or not rg then return nil end
  local out = {}
  if dc then
    if #lg + #rg > 7 then return nil end
    for _, v in ipairs(lg) do out[#out + 1] = v end
    for _ = 1, 8 - #lg - #rg do out[#out + 1] = 0 end
    for _, v in ipairs(rg) do out[#out + 1] = v end
  else
    if #lg ~= 8 then return nil end
    out = lg
  end
  if v4tail then
    out[7] = floor(v4tail / 65536)
    out[8] = v4tail % 65536
  end
  return out
end

-- The text inet_ntop(3) writes for 8 groups (RFC 5952: lower case, the
-- longest run of two or more zero groups as "::", the first of equals; as
-- glibc, ::ffff:a.b.c.d and ::a.b.c.d in dotted form). Results from the
-- engine are spelled this way, so targets compare equal to them as text.
local function format_v6(g)
  local best, best_len, cur, cur_len = nil, 1, nil, 0
  for i = 1, 8 do
    if g[i] == 0 then
      if not cur then cur, cur_len = i, 0 end
      cur_len = cur_len + 1
      if cur_len > best_len then best, best_len = cur, cur_len end
    else
      cur = nil
    end
  end
  local last, tail = 8, nil
  if best == 1 and (best_len == 6 or (best_len == 5 and g[6] == 0xffff)) then
    last, tail = 6, format_v4(g[7] * 65536 + g[8])
  end
  local out, i = {}, 1
  local function sep()
    if #out > 0 and out[#out] ~= "::" then out[#out + 1] = ":" end
  end
  while i <= last do
    if i == best then
      out[#out + 1] = "::"
      i = i + best_len
    else
      sep()
      out[#out + 1] = fmt("%x", g[i])
      i = i + 1
    end
  end
  if tail then
    sep()
    out[#out + 1] = tail
  end
  return concat(out)
end

M.parse_v4, M.format_v4 = parse_v4, format_v4
M.parse_v6, M.format_v6 = parse_v6, format_v6

-- The address text as inet_ntop writes it, or nil if s is not a numeric
-- address.
function M.canonical(s)
  local n = parse_v4(s)
  if n then return format_v4(n), 4 end
  local g = parse_v6(s)
  if g then return format_v6(g), 6 end
  return nil
end

---------------------------------------------------------------------------
-- Entries
---------------------------------------------------------------------------

-- A host name as getaddrinfo would take it: labels of letters, digits,
-- '-' and '_', separated by dots.
local function is_name(s)
  if #s > 253 or s:sub(1, 1) == "." or s:find("..", 1, true) then return false end
  for label in s:gmatch("[^.]+") do
    if #label > 63 or not label:match("^[%w_]([%w_-]*)$") then return false end
  end
  return s:match("[%a_-]") ~= nil -- all digits and dots is a bad address
end

-- One entry: { af = 4, lo = n, hi = n } (IPv4, inclusive range),
-- { af = 6, net = "g1:..:g6", lo = n, hi = n, zone = z } (IPv6: the first
-- 96 bits as text, the last 32 as a range; zone: the interface of a
-- link-local address or prefix given with one, RFC 4007 11.7's
-- "fe80::1%eth0" or "fe80::%eth0/120", else nil), or { name = s }. Or nil
-- and the reason.
function M.parse(text)
  if type(text) ~= "string" then return nil, "not a string" end
  local s = text:match("^%s*(.-)%s*$")
  if s == "" then return nil, "empty: a target is a host name, an address or a prefix" end
  local zoned, zone, zlen = s:match("^([%x:.]+)%%([^/]*)/?(%d*)$")
  if zoned then
    local a, z = M.split_zone(zoned .. "%" .. zone)
    if not a then return nil, "not an IPv6 address with a zone (ADDRESS%INTERFACE)" end
    local why = M.zone_problem(z)
    if why then return nil, why end
    local e, err = M.parse(a .. (zlen ~= "" and "/" .. zlen or ""))
    if not e then return nil, err end
    e.zone = z
    return e
  end
  local addr, len = s:match("^([^/]+)/(%d+)$")
  if s:find("/", 1, true) and not addr then
    return nil, "not a prefix (ADDRESS/LENGTH)"
  end
  addr = addr or s
  local n = parse_v4(addr)
  if n then
    local bits = len and tonumber(len) or 32
    if bits > 32 or (len and #len > 2) then
      return nil, "IPv4 prefix length must be from 0 to 32"
    end
    local size = 2 ^ (32 - bits)
    local lo = n - n % size
    return { af = 4, lo = lo, hi = lo + size - 1 }
  end
  local g = parse_v6(addr)
  if g then
    local bits = len and tonumber(len) or 128
    if bits > 128 or (len and #len > 3) then
      return nil, "IPv6 prefix length must be from 96 to 128"
    end
    if bits < 96 then
      return nil, fmt("IPv6 prefix /%d is too large (sonde takes /96 or longer: at most 2^32 addresses)", bits)
    end
    local low = g[7] * 65536 + g[8]
    local size = 2 ^ (128 - bits)
    local lo = low - low % size
    return { af = 6, net = fmt("%x:%x:%x:%x:%x:%x", g[1], g[2], g[3], g[4], g[5], g[6]),
             lo = lo, hi = lo + size - 1 }
  end
  if len then return nil, "not an IPv4 or IPv6 prefix" end
  return M.why_not(addr)
end

-- What is wrong with s, which is not a numeric address or a prefix: a host
-- name is returned as { name = s }; else nil and the reason, worded for
-- the mistakes people make (an octet over 255 or with a leading zero,
-- which inet_aton would read as octal; an IPv6 address in URL brackets).
function M.why_not(addr)
  if addr:match("^%[.*%]$") then
    return nil, "brackets are URL syntax: write the address without them"
  end
  if addr:match("^[%d.]+$") then
    local a, b, c, d = addr:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return nil, "not an IPv4 address (four decimal octets)" end
    for _, o in ipairs{ a, b, c, d } do
      if #o > 1 and o:sub(1, 1) == "0" then
        return nil, "not an IPv4 address: octet '" .. o .. "' has a leading zero, which some tools read as octal"
      end
      if tonumber(o) > 255 then
        return nil, "not an IPv4 address: octet " .. o .. " is over 255"
      end
    end
    return nil, "not an IPv4 address"
  end
  if addr:find(":", 1, true) then return nil, "not an IPv6 address" end
  if #addr > 253 then
    return nil, fmt("a host name of %d characters: the most DNS takes is 253", #addr)
  end
  for label in addr:gmatch("[^.]+") do
    if #label > 63 then
      return nil, fmt("a host name with a label of %d characters: the most DNS takes is 63", #label)
    end
  end
  if is_name(addr) then return { name = addr } end
  return nil, "not an address, a prefix or a host name"
end

-- text with every byte that a terminal would act on (control characters,
-- NUL, DEL, bytes that are not printable ASCII) and the backslash written
-- as a C escape (\0, \t, \x1b), so that a message that quotes a target
-- shows what the file holds and cannot move the cursor or recolour the
-- terminal.
function M.escape(text)
  return (tostring(text):gsub("[%z\1-\31\\\127-\255]", function(c)
    local b = c:byte()
    if b == 0 then return "\\0" end
    if c == "\\" then return "\\\\" end
    if c == "\t" then return "\\t" end
    if c == "\r" then return "\\r" end
    if c == "\n" then return "\\n" end
    return fmt("\\x%02x", b)
  end))
end

-- A link-local IPv6 address with its zone (RFC 4007 11.2: "fe80::1%eth0",
-- the zone an interface name or index): -> the address and the zone, or
-- nil. The zone is what makes a link-local address mean one link.
function M.split_zone(s)
  local a, z = s:match("^([%x:.]+)%%([%w_.:-]+)$")
  if not a or #z > 15 or not parse_v6(a) then return nil end
  return a, z
end

-- What is wrong with the zone z of a link-local address: nil when it
-- names an interface of this host (or is an interface index), else why
-- not.
function M.zone_problem(z)
  if z:match("^%d+$") then return nil end
  local f = not z:find("/", 1, true) and z ~= "." and z ~= ".."
    and io.open("/sys/class/net/" .. z .. "/ifindex")
  if f then
    f:close()
    return nil
  end
  return fmt("no interface '%s' here: the zone of a link-local address names the interface of its link",
    M.escape(z))
end

---------------------------------------------------------------------------
-- The list
---------------------------------------------------------------------------

local List = {}
List.__index = List

-- A new, empty list.
function M.list()
  return setmetatable({ ranges = {}, pending_names = {}, seen_names = {},
                        n = nil }, List)
end

-- Add one entry (see M.parse). -> true, or nil and the reason.
function List:add(text)
  if self.n then error("sonde.targets: add() after finish()", 2) end
  local e, why = M.parse(text)
  if not e then return nil, why end
  if e.name then
    local key = e.name:lower()
    if not self.seen_names[key] then
      self.seen_names[key] = true
      self.pending_names[#self.pending_names + 1] = e.name
    end
  else
    self.ranges[#self.ranges + 1] = e
  end
  return true
end

-- Add the entries of lines (an iterator of lines, e.g. io.lines(path) or
-- text:gmatch("[^\n]*"), or an array of lines). source names them in the
-- problems. -> the list of lines that were skipped:
-- { { source = source, line = number, text = the line, reason = why } }.
function List:add_lines(lines, source)
  local bad, no = {}, 0
  local function one(line)
    no = no + 1
    local entry = line:gsub("#.*$", ""):match("^%s*(.-)%s*$")
    if entry == "" then return end
    if entry:find("%s") then
      bad[#bad + 1] = { source = source, line = no, text = line,
                        reason = "more than one entry on the line" }
      return
    end
    local ok, why = self:add(entry)
    if not ok then
      bad[#bad + 1] = { source = source, line = no, text = line, reason = why }
    end
  end
  if type(lines) == "table" then
    for _, l in ipairs(lines) do one((l:gsub("\r$", ""))) end
  else
    for l in lines do one((l:gsub("\r$", ""))) end
  end
  return bad
end

-- The host names added so far, in the order first given (each once).
function List:names()
  return self.pending_names
end

local function range_before(a, b)
  if a.af ~= b.af then return a.af < b.af end
  if a.net ~= b.net then return (a.net or "") < (b.net or "") end
  if a.zone ~= b.zone then return (a.zone or "") < (b.zone or "") end
  return a.lo < b.lo
end

-- Fix the list: merge overlapping ranges, count. -> the number of
-- addresses, or nil and a reason (more than M.MAX).
function List:finish()
  if self.n then return self.n end
  local r = self.ranges
  table.sort(r, range_before)
  local merged = {}
  for _, e in ipairs(r) do
    local last = merged[#merged]
    -- (an address on two links is two targets: the zone is part of it)
    if last and last.af == e.af and last.net == e.net and last.zone == e.zone and
       e.lo <= last.hi + 1 then
      if e.hi > last.hi then last.hi = e.hi end
    else
      merged[#merged + 1] = { af = e.af, net = e.net, lo = e.lo, hi = e.hi, zone = e.zone }
    end
  end
  local start, n = {}, 0
  for i, e in ipairs(merged) do
    start[i] = n
    n = n + (e.hi - e.lo + 1)
  end
  if n > M.MAX then
    return nil, fmt("%.0f addresses: more than sonde takes in one list (%.0f)", n, M.MAX)
  end
  self.merged, self.start, self.n = merged, start, n
  self.ranges = nil
  return n
end

-- The number of addresses (after finish()).
function List:count()
  return self.n
end

-- The address at position i, 0 <= i < count(), in numeric order.
function List:at(i)
  local start, merged = self.start, self.merged
  local lo, hi = 1, #merged
  while lo < hi do
    local mid = floor((lo + hi + 1) / 2)
    if start[mid] <= i then lo = mid else hi = mid - 1 end
  end
  local e = merged[lo]
  local v = e.lo + (i - start[lo])
  if e.af == 4 then return format_v4(v) end
  local g = {}
  for w in e.net:gmatch("%x+") do g[#g + 1] = tonumber(w, 16) end
  g[7] = floor(v / 65536)
  g[8] = v % 65536
  return e.zone and format_v6(g) .. "%" .. e.zone or format_v6(g)
end

---------------------------------------------------------------------------
-- The seeded permutation
---------------------------------------------------------------------------

-- a * b mod 2^32, exact in doubles (a, b in 0..2^32-1).
local function mul32(a, b)
  local alo = a % 65536
  local ahi = (a - alo) / 65536
  return (alo * b + ((ahi * b) % 65536) * 65536) % TWO32
end

local function u32(x) return x % TWO32 end -- int32 from bit ops -> 0..2^32-1

-- A 32-bit integer hash (a "lowbias32" finalizer).
local function mix32(x)
  x = u32(bxor(x, rshift(x, 16)))
  x = mul32(x, 0x7feb352d)
  x = u32(bxor(x, rshift(x, 15)))
  x = mul32(x, 0x846ca68b)
  return u32(bxor(x, rshift(x, 16)))
end

local ROUNDS = 4

-- A permutation of 0..n-1 chosen by seed (an integer 0..2^32-1):
-- -> function(i) -> the element at position i. O(1) memory.
function M.permutation(n, seed)
  assert(type(n) == "number" and n >= 0 and n <= TWO32 and n == floor(n),
    "permutation: n must be an integer from 0 to 2^32")
  seed = seed or 0
  assert(type(seed) == "number" and seed >= 0 and seed < TWO32 and seed == floor(seed),
    "permutation: seed must be an integer from 0 to 2^32-1")
  if n <= 1 then return function(i) return i end end
  -- half-width h: the domain 2^(2h) >= n
  local h = 1
  while 2 ^ (2 * h) < n do h = h + 1 end
  local size = 2 ^ h
  local mask = size - 1
  local keys = {}
  for r = 1, ROUNDS do
    keys[r] = mix32(u32(bxor(seed, mul32(r, 0x9e3779b9))))
  end
  local function feistel(x)
    local l = floor(x / size)
    local rr = x % size
    for r = 1, ROUNDS do
      local f = band(mix32(u32(bxor(rr, keys[r]))), mask)
      l, rr = rr, band(bxor(l, f), mask)
    end
    return l * size + rr
  end
  return function(i)
    local x = feistel(i)
    while x >= n do x = feistel(x) end -- cycle walking: ends, x started < n
    return x
  end
end

-- Parse "K/N" (--shard): -> K, N with 0 <= K < N; or nil and the reason.
function M.parse_shard(s)
  local k, n = tostring(s):match("^(%d+)/(%d+)$")
  if not k then return nil, "expected K/N, e.g. 0/4 (K counts from 0)" end
  k, n = tonumber(k), tonumber(n)
  if n < 1 or n > 1000000 then return nil, "N must be from 1 to 1000000" end
  if k >= n then return nil, fmt("K must be from 0 to %d (K counts from 0)", n - 1) end
  return k, n
end

-- How many positions of 0..n-1 shard k of `shards` holds.
function M.shard_size(n, k, shards)
  if k >= n then return 0 end
  return floor((n - 1 - k) / shards) + 1
end

-- Iterate the addresses of a shard (after finish()). o: seed (default 0),
-- shard (K, default 0), shards (N, default 1). -> iterator giving
-- (address, position within the shard counted from 1), and the shard's size.
function List:iter(o)
  assert(self.n, "sonde.targets: iter() before finish()")
  o = o or {}
  local k, shards = o.shard or 0, o.shards or 1
  local n = self.n
  local perm = M.permutation(n, o.seed or 0)
  local total = M.shard_size(n, k, shards)
  local j = 0
  return function()
    if j >= total then return nil end
    local pos = k + j * shards
    j = j + 1
    return self:at(perm(pos)), j
  end, total
end

return M
