-- JSON Lines: one JSON object per record, one record per line, written as
-- the records arrive (so that a consumer reads the stream while it runs,
-- and the outputs of several shards merge by concatenation). The text is
-- exactly what sonde.json writes — keys sorted, "type" and "version"
-- first, a field that does not apply absent, never null — through a path
-- made for many small flat records (a sweep writes tens of thousands a
-- second): nested values go to sonde.json itself.
--
-- The format interface (examples/format_example.lua documents it):
--   header(meta) -> text or nil          before the first record
--   record(rec, meta) -> text            one record (a result table;
--                                        meta.fields, if given, lists
--                                        every key a record may have)
--   footer(summary, meta) -> text or nil after the last one
-- All three are pure functions; the command writes what they return.

local json = require "sonde.json"

local M = { name = "jsonl" }

local concat, sort, fmt, floor, huge = table.concat, table.sort, string.format,
  math.floor, math.huge
local type, pairs = type, pairs

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function escape(c)
  return escapes[c] or fmt("\\u%04x", c:byte())
end

local byte = string.byte

-- A byte loop, not a pattern: LuaJIT compiles it (it does not compile
-- string.find with a pattern), and most strings need no escape.
local function quote(s)
  for i = 1, #s do
    local b = byte(s, i)
    if b < 32 or b == 34 or b == 92 or b == 127 then
      return '"' .. s:gsub('[%c"\\]', escape) .. '"'
    end
  end
  return '"' .. s .. '"'
end

local function value(v)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "number" then
    if v == floor(v) and v < 2^53 and v > -2^53 then return fmt("%d", v) end
    if v ~= v or v == huge or v == -huge then return json.encode(v) end -- raises
    return fmt("%.9g", v)
  end
  if t == "boolean" then return v and "true" or "false" end
  return json.encode(v)
end

-- "key": for each key met (keys are few; their text is made once).
local keytext = setmetatable({}, { __index = function(t, k)
  local v = quote(k) .. ":"
  t[k] = v
  return v
end })

local first = { type = 1, version = 2 }
local function key_order(a, b)
  local fa, fb = first[a] or 3, first[b] or 3
  if fa ~= fb then return fa < fb end
  return a < b
end

-- meta.fields, when the command gives it, lists every key its records may
-- have: sorted once, it spares sorting the keys of every record.
local orders = setmetatable({}, { __mode = "k" })
local function order_of(meta)
  local fields = meta and meta.fields
  if type(fields) ~= "table" then return nil end
  local o = orders[fields]
  if not o then
    o = {}
    for i, k in ipairs(fields) do o[i] = k end
    table.sort(o, key_order)
    orders[fields] = o
  end
  return o
end

-- One object as sonde.json.encode writes it (a table with string keys).
-- fields (optional): the keys rec may have, in JSON order; a record with a
-- key outside them is encoded the general way.
function M.encode(rec, fields)
  if fields then
    local out, m = {}, 0
    for i = 1, #fields do
      local k = fields[i]
      local v = rec[k]
      if v ~= nil then
        m = m + 1
        out[m] = keytext[k] .. value(v)
      end
    end
    local n = 0
    for _ in pairs(rec) do n = n + 1 end
    if n == m and m > 0 then return "{" .. concat(out, ",") .. "}" end
  end
  local keys, n = {}, 0
  local has_type, has_version = false, false
  for k in pairs(rec) do
    if k == "type" then has_type = true
    elseif k == "version" then has_version = true
    elseif type(k) ~= "string" then return json.encode(rec) -- its error
    else n = n + 1; keys[n] = k end
  end
  sort(keys)
  local out, m = {}, 0
  if has_type then m = m + 1; out[m] = '"type":' .. value(rec.type) end
  if has_version then m = m + 1; out[m] = '"version":' .. value(rec.version) end
  for i = 1, n do
    local k = keys[i]
    m = m + 1
    out[m] = keytext[k] .. value(rec[k])
  end
  if m == 0 then return json.encode(rec) end -- {} or [] as sonde.json says
  return "{" .. concat(out, ",") .. "}"
end

function M.record(rec, meta)
  return M.encode(rec, order_of(meta)) .. "\n"
end

return M
