-- sonde.json: a JSON encoder with stable output (keys sorted, "type" and
-- "version" first) and explicit arrays, so that an empty list is [] and not
-- {}. Decoding is left to lua-cjson where a consumer needs it.
--
-- It is on the hot path of every campaign (a trace's hops, a sweep's
-- records), so it makes as few short-lived strings as it can: the pieces go
-- into one buffer joined once, a key's quoted text is made once, strings
-- that need no escape (almost all) are copied as they are, and keys are
-- sorted by the plain string order, without a comparison function.

local M = {}

local type, next, getmetatable, setmetatable, error, tostring, pcall =
  type, next, getmetatable, setmetatable, error, tostring, pcall
local byte, fmt, gsub = string.byte, string.format, string.gsub
local sort, concat = table.sort, table.concat
local floor, huge = math.floor, math.huge

local array_mt = { __jsonarray = true }

-- Mark t (a list, possibly empty) as a JSON array; returns t.
function M.array(t)
  return setmetatable(t or {}, array_mt)
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function escape(c)
  return escapes[c] or fmt("\\u%04x", byte(c))
end

-- Does s need escaping (a control character, '"' or '\')? A byte loop,
-- which LuaJIT compiles, rather than a pattern search, which it does not.
-- (DEL, 127, is a control character to %c, as before.)
local function plain(s)
  for i = 1, #s do
    local b = byte(s, i)
    if b < 32 or b == 34 or b == 92 or b == 127 then return false end
  end
  return true
end

local function quote(s)
  if plain(s) then return '"' .. s .. '"' end
  return '"' .. gsub(s, '[%c"\\]', escape) .. '"'
end

-- '"key":' for each key met; keys are few, so their text is made once (up
-- to a bound: a table keyed by data, e.g. addresses, must not fill it).
local KEYS_MAX = 4096
local n_keys = 0
local keytext = setmetatable({}, { __index = function(t, k)
  local v = quote(k) .. ":"
  if n_keys < KEYS_MAX then
    n_keys = n_keys + 1
    t[k] = v
  end
  return v
end })

local function is_array(t)
  if getmetatable(t) == array_mt then return true end
  return t[1] ~= nil and next(t, #t) == nil
end

local function encode_number(n)
  if n ~= n or n == huge or n == -huge then
    error("sonde.json: cannot encode " .. tostring(n), 0)
  end
  if n == floor(n) and n < 2^53 and n > -2^53 then
    return fmt("%d", n)
  end
  return fmt("%.9g", n)
end

-- Append the text of v to out (out[1..n] filled so far); -> the new n.
local function encode(v, out, n)
  local t = type(v)
  if t == "string" then
    if plain(v) then
      out[n + 1], out[n + 2], out[n + 3] = '"', v, '"'
      return n + 3
    end
    n = n + 1
    out[n] = quote(v)
    return n
  elseif t == "number" then
    n = n + 1
    out[n] = encode_number(v)
    return n
  elseif t == "boolean" then
    n = n + 1
    out[n] = v and "true" or "false"
    return n
  elseif t == "table" then
    if is_array(v) then
      local len = #v
      if len == 0 then
        n = n + 1
        out[n] = "[]"
        return n
      end
      n = n + 1
      out[n] = "["
      for i = 1, len do
        if i > 1 then
          n = n + 1
          out[n] = ","
        end
        n = encode(v[i], out, n)
      end
      n = n + 1
      out[n] = "]"
      return n
    end
    -- "type" and "version" first, then the other keys in string order.
    -- The keys are walked with next(), not a pairs() loop: LuaJIT 2.1
    -- before its 2022-04-03 fix (Debian 12's 2.1.0~beta3+git20220320) can
    -- patch a blacklisted pairs() loop of this recursion (ITERN to ITERC)
    -- so that it yields keys of another table: a trace's result then
    -- "had" a table key (LuaJIT issue 827).
    local keys, m = {}, 0
    local has_type, has_version = false, false
    local k = next(v)
    while k ~= nil do
      if type(k) ~= "string" then
        error("sonde.json: object key of type " .. type(k), 0)
      end
      if k == "type" then has_type = true
      elseif k == "version" then has_version = true
      else
        m = m + 1
        keys[m] = k
      end
      k = next(v, k)
    end
    if m > 1 then sort(keys) end
    n = n + 1
    out[n] = "{"
    local sep = false
    if has_type then
      n = n + 1
      out[n] = '"type":'
      n = encode(v.type, out, n)
      sep = true
    end
    if has_version then
      n = n + 1
      out[n] = sep and ',"version":' or '"version":'
      n = encode(v.version, out, n)
      sep = true
    end
    for i = 1, m do
      local k = keys[i]
      if sep then
        n = n + 1
        out[n] = ","
      end
      sep = true
      n = n + 1
      out[n] = keytext[k]
      n = encode(v[k], out, n)
    end
    n = n + 1
    out[n] = "}"
    return n
  elseif t == "nil" then
    n = n + 1
    out[n] = "null"
    return n
  end
  error("sonde.json: cannot encode a " .. t, 0)
end

-- The pieces of M.encode's text, kept from call to call: a trace's
-- hundreds of pieces do not grow a new table every time. Only the first n
-- are read; a very large one is not kept. (Encoding calls nothing that
-- could encode in turn, but if it ever did, that call gets its own.)
local scratch, busy = {}, false
local SCRATCH_MAX = 8192

-- The JSON text of v (no trailing newline).
-- The pieces, for encoders of their own (sonde.format.jsonl): a string's
-- JSON text, a number's (raises on NaN and infinities), and '"key":' by
-- key (a table).
M.quote = quote
M.number = encode_number
M.keytext = keytext

function M.encode(v)
  if busy then
    local out = {}
    return concat(out, "", 1, encode(v, out, 0))
  end
  busy = true
  local ok, n = pcall(encode, v, scratch, 0)
  busy = false
  if not ok then error(n, 0) end
  local text = concat(scratch, "", 1, n)
  if n > SCRATCH_MAX then scratch = {} end
  return text
end

-- Append the JSON text of v to a list of pieces: out[n + 1], out[n + 2],
-- ... (n: how many out holds so far, 0 for an empty one); returns the new
-- count. table.concat(out, "", 1, n) is then M.encode's text. For a writer
-- that puts several values into one text: no intermediate strings.
function M.encode_into(v, out, n)
  return encode(v, out, n)
end

return M
