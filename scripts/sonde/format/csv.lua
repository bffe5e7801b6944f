-- CSV (RFC 4180): a header row naming the columns, then one row per record
-- (per probe, per target: what the command's records are), CRLF line
-- ends, a field quoted when it holds a comma, a quote or a line break.
--
-- The columns are the command's (meta.columns, a list of field names, in
-- order); a field the record lacks is empty. Values are written as in
-- sonde's JSON: numbers in full (seconds for times), true/false, and a
-- table as its name when it has one (an error: EHOSTUNREACH), else as its
-- JSON text (an MPLS label stack). meta.precision (column name ->
-- significant digits) writes that column's fractional numbers with fewer
-- digits than JSON's 9 (mtr's milliseconds: 6, as mtr prints them).
--
-- Interface: see examples/format_example.lua.

local json = require "sonde.json"

local M = { name = "csv" }

local concat, fmt, floor = table.concat, string.format, math.floor

-- The text of one value, as JSON writes it but without quotes; digits:
-- the significant digits of a fractional number (default 9).
function M.text(v, digits)
  local t = type(v)
  if v == nil then return "" end
  if t == "string" then return v end
  if t == "number" then
    if v == floor(v) and v < 2^53 and v > -2^53 then return fmt("%d", v) end
    return fmt("%." .. (digits or 9) .. "g", v)
  end
  if t == "boolean" then return v and "true" or "false" end
  if t == "table" and type(v.name) == "string" then return v.name end
  return json.encode(v)
end

local function field(v, digits)
  local s = M.text(v, digits)
  if s:find('[,"\r\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

local function columns(meta)
  local cols = meta and meta.columns
  if type(cols) ~= "table" or #cols == 0 then
    error("sonde.format.csv: the command gives no columns (meta.columns)", 2)
  end
  return cols
end

function M.header(meta)
  local cols, out = columns(meta), {}
  for i, c in ipairs(cols) do out[i] = field(c) end
  return concat(out, ",") .. "\r\n"
end

function M.record(rec, meta)
  local cols, out = columns(meta), {}
  local digits = type(meta.precision) == "table" and meta.precision or {}
  for i = 1, #cols do out[i] = field(rec[cols[i]], digits[cols[i]]) end
  return concat(out, ",") .. "\r\n"
end

return M
