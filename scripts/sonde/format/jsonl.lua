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

local concat, type, next = table.concat, type, next
local quote, number, keytext = json.quote, json.number, json.keytext

local function value(v)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "number" then return number(v) end
  if t == "boolean" then return v and "true" or "false" end
  return json.encode(v)
end

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

local pieces = {}

-- rec's text followed by close ("}" or "}\n"): through fields when they
-- name every key rec has, else the general way.
local function encode(rec, fields, close)
  if fields then
    -- the pieces go to one buffer, reused, and are joined once
    local out, m, n = pieces, 1, 0
    out[1] = "{"
    for i = 1, #fields do
      local k = fields[i]
      local v = rec[k]
      if v ~= nil then
        n = n + 1
        if n > 1 then
          m = m + 1
          out[m] = ","
        end
        out[m + 1] = keytext[k]
        out[m + 2] = value(v)
        m = m + 2
      end
    end
    -- next(), not pairs(): see sonde.json's object keys (LuaJIT issue 827)
    local k = next(rec)
    while k ~= nil do
      n = n - 1
      k = next(rec, k)
    end
    if n == 0 and m > 1 then
      out[m + 1] = close
      return concat(out, "", 1, m + 1)
    end
  end
  return json.encode(rec) .. (close == "}" and "" or "\n") -- the general way is sonde.json's
end

-- One object as sonde.json.encode writes it (a table with string keys).
-- fields (optional): the keys rec may have, in JSON order; a record with a
-- key outside them is encoded the general way.
function M.encode(rec, fields)
  return encode(rec, fields, "}")
end

-- The line ends in the last piece: one string less per record.
function M.record(rec, meta)
  return encode(rec, order_of(meta), "}\n")
end

return M
