-- Formats for sonde mtr: pure functions from the mtr document (the table
-- that --format json writes: target, addr, protocol, rounds, stop_reason,
-- hops = { { ttl, addr, addrs, name, loss, sent, received, last, avg, best,
-- worst, stddev, jitter } }, started, ...) to text. RTTs in the document are
-- seconds; the text and CSV show milliseconds.
--
--   report(doc, host)  mtr --report: a header line, one row per hop
--   live(doc, width)   the lines of the live table (without escapes)

local M = { name = "mtr" }

local COLUMNS = { "Loss%", "Snt", "Last", "Avg", "Best", "Wrst", "StDev", "Javg" }

local function ms(v) return v and v * 1000 or 0 end

-- "name (addr)", "addr", or "???" (nobody answered).
local function host_of(hop, addr)
  addr = addr or hop.addr
  if not addr then return "???" end
  if hop.name and addr == hop.addr then return hop.name .. " (" .. addr .. ")" end
  return addr
end

-- The figures of a hop, as mtr prints them.
local function figures(hop)
  return string.format("%5.1f%% %5d %6.1f %5.1f %5.1f %5.1f %5.1f %5.1f",
    hop.loss, hop.sent, ms(hop.last), ms(hop.avg), ms(hop.best), ms(hop.worst),
    ms(hop.stddev), ms(hop.jitter))
end

local function header_figures()
  return string.format("%6s %5s %6s %5s %5s %5s %5s %5s", unpack(COLUMNS))
end

-- Width of the host column: the longest host, at least `min`.
local function host_width(doc, min)
  local w = min
  for _, hop in ipairs(doc.hops) do
    w = math.max(w, #host_of(hop))
    for _, a in ipairs(hop.addrs or {}) do w = math.max(w, #a + 5) end
  end
  return w
end

-- ISO 8601 local time with the UTC offset, as mtr's "Start:".
local function start_time(t)
  return os.date("%Y-%m-%dT%H:%M:%S%z", math.floor(t or 0))
end

-- The rows of the hop table, each line prefixed by prefix(hop) ("  1.|-- "
-- for the report, "  1. " for the live view).
local function hop_lines(doc, width, prefix, more)
  local out = {}
  for _, hop in ipairs(doc.hops) do
    out[#out + 1] = prefix(hop) .. string.format("%-" .. width .. "s", host_of(hop))
      .. " " .. figures(hop)
    -- Other addresses that answered at this TTL (load balancing), as mtr.
    for _, a in ipairs(hop.addrs or {}) do
      if a ~= hop.addr then out[#out + 1] = more .. a end
    end
  end
  return out
end

function M.report(doc, host)
  local width = host_width(doc, 26)
  local lines = { "Start: " .. start_time(doc.started),
    string.format("%-" .. (width + 8) .. "s %s", "HOST: " .. (host or "localhost"), header_figures()) }
  for _, l in ipairs(hop_lines(doc, width, function(hop)
    return string.format("%3d.|-- ", hop.ttl)
  end, "    |  `|-- ")) do
    lines[#lines + 1] = l
  end
  if doc.stop_reason == "interrupted" then
    lines[#lines + 1] = string.format("(interrupted after %d round%s)", doc.rounds,
      doc.rounds == 1 and "" or "s")
  elseif doc.stop_reason == "error" and doc.error then
    lines[#lines + 1] = string.format("(stopped: %s: %s)", doc.error.name, doc.error.message)
  end
  return table.concat(lines, "\n") .. "\n"
end

-- The live table's lines (the caller positions them), fitted to width.
-- doc.now: the time to show (Unix seconds).
function M.live(doc, width)
  width = math.max(width or 80, 60)
  local hw = math.max(20, math.min(host_width(doc, 20), width - 58))
  local head = string.format("sonde mtr to %s (%s), %s, round %d", doc.target, doc.addr,
    doc.protocol, doc.rounds)
  local when = os.date("%Y-%m-%dT%H:%M:%S", math.floor(doc.now or doc.started or 0))
  local lines = {
    head .. string.rep(" ", math.max(1, width - #head - #when - 1)) .. when,
    "Keys: q quit",
    "",
    string.format("%-" .. (hw + 6) .. "s %s", " Host", header_figures()),
  }
  for _, l in ipairs(hop_lines(doc, hw, function(hop)
    return string.format("%3d. ", hop.ttl)
  end, "        ")) do
    lines[#lines + 1] = l
  end
  for i, l in ipairs(lines) do
    if #l > width then lines[i] = l:sub(1, width) end
  end
  return lines
end

return M
