-- sonde.json: a JSON encoder with stable output (keys sorted, "type" and
-- "version" first) and explicit arrays, so that an empty list is [] and not
-- {}. Decoding is left to lua-cjson where a consumer needs it.

local M = {}

local array_mt = { __jsonarray = true }

-- Mark t (a list, possibly empty) as a JSON array; returns t.
function M.array(t)
  return setmetatable(t or {}, array_mt)
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local first = { type = 1, version = 2 }

local function key_order(a, b)
  local fa, fb = first[a] or 3, first[b] or 3
  if fa ~= fb then return fa < fb end
  return a < b
end

local function is_array(t)
  if getmetatable(t) == array_mt then return true end
  return t[1] ~= nil and next(t, #t) == nil
end

local encode

local function encode_number(n)
  if n ~= n or n == math.huge or n == -math.huge then
    error("sonde.json: cannot encode " .. tostring(n), 0)
  end
  if n == math.floor(n) and math.abs(n) < 2^53 then
    return string.format("%d", n)
  end
  return string.format("%.9g", n)
end

function encode(v, out)
  local t = type(v)
  if t == "nil" then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = v and "true" or "false"
  elseif t == "number" then out[#out + 1] = encode_number(v)
  elseif t == "string" then out[#out + 1] = quote(v)
  elseif t == "table" then
    if is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then
          error("sonde.json: object key of type " .. type(k), 0)
        end
        keys[#keys + 1] = k
      end
      table.sort(keys, key_order)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = quote(k)
        out[#out + 1] = ":"
        encode(v[k], out)
      end
      out[#out + 1] = "}"
    end
  else
    error("sonde.json: cannot encode a " .. t, 0)
  end
end

-- The JSON text of v (no trailing newline).
function M.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

return M
