-- Markdown: a table (GitHub Flavored Markdown) with one column per field
-- of the command's records (meta.columns) and one row per record. Cells
-- hold the same text as CSV fields (sonde.format.csv's text()), with '|'
-- escaped and line breaks turned into spaces, so that every row stays one
-- line; but a table is read, not parsed, so times in milliseconds (a
-- column named *_ms) are rounded to the microsecond, as the text output
-- shows them (0.447, not 0.447281), and other fractions to meta.precision's
-- digits when it gives them. The footer, when the command has a summary,
-- is a line under the table.
--
-- Interface: see examples/format_example.lua.

local csv = require "sonde.format.csv"

local M = { name = "markdown" }

local concat = table.concat

local function cell(v, col, digits)
  local s
  if type(v) == "number" and col and col:match("_ms$") then
    s = string.format("%.3f", v)
  else
    s = csv.text(v, digits)
  end
  s = s:gsub("[\r\n]+", " "):gsub("|", "\\|")
  return s
end

local function columns(meta)
  local cols = meta and meta.columns
  if type(cols) ~= "table" or #cols == 0 then
    error("sonde.format.markdown: the command gives no columns (meta.columns)", 2)
  end
  return cols
end

function M.header(meta)
  local cols = columns(meta)
  local names, rule = {}, {}
  for i, c in ipairs(cols) do
    names[i] = cell(c)
    rule[i] = "---"
  end
  return "| " .. concat(names, " | ") .. " |\n|" .. concat(rule, "|") .. "|\n"
end

function M.record(rec, meta)
  local cols, out = columns(meta), {}
  local digits = type(meta.precision) == "table" and meta.precision or {}
  for i = 1, #cols do out[i] = cell(rec[cols[i]], cols[i], digits[cols[i]]) end
  return "| " .. concat(out, " | ") .. " |\n"
end

-- A summary line under the table, when the command gives summary.text.
function M.footer(summary)
  if type(summary) == "table" and type(summary.text) == "string" then
    return "\n" .. summary.text .. "\n"
  end
  return nil
end

return M
