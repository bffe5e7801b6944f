-- Formats for sonde mtr: pure functions from the mtr document (the table
-- that --format json writes: target, addr, protocol, rounds, stop_reason,
-- hops = { { ttl, addr, addrs, name, names, asn, loss, sent, received,
-- last, avg, best, worst, stddev, jitter, jitter_max, jitter_last,
-- jitter_int, gmean, flows } }, started, ...) to text. RTTs in the document
-- are seconds; the text shows milliseconds.
--
--   report(doc, host, o)  mtr --report (o.wide: --report-wide)
--   live(doc, width, o)   the lines of the live table (without escapes)
--   fields(letters)       mtr's -o: the list of fields, or nil, message
--   csv_header(o), csv_rows(doc, o, version)  mtr --csv (-C)
--
-- o: fields (a list from fields(); default mtr's "LS NABWV"), wide,
-- show_ips (-b: "name (addr)"), numeric (addresses only), asn (-z: the
-- origin AS column), mpls (-e: label stacks under their hop).

local M = { name = "mtr" }

-- mtr's fields: its letter, title, width and printf format, and the value
-- from a hop (milliseconds for times, as mtr prints them).
local function ms(v) return v and v * 1000 or 0 end
local FIELDS = {
  [" "] = { title = " ", fmt = " ", get = function() return nil end },
  L = { title = "Loss%", width = 6, fmt = " %4.1f%%", get = function(h) return h.loss end },
  D = { title = "Drop", width = 5, fmt = " %4d", get = function(h) return h.sent - h.received end },
  R = { title = "Rcv", width = 6, fmt = " %5d", get = function(h) return h.received end },
  S = { title = "Snt", width = 6, fmt = " %5d", get = function(h) return h.sent end },
  N = { title = "Last", width = 6, fmt = " %5.1f", get = function(h) return ms(h.last) end },
  B = { title = "Best", width = 6, fmt = " %5.1f", get = function(h) return ms(h.best) end },
  A = { title = "Avg", width = 6, fmt = " %5.1f", get = function(h) return ms(h.avg) end },
  W = { title = "Wrst", width = 6, fmt = " %5.1f", get = function(h) return ms(h.worst) end },
  V = { title = "StDev", width = 6, fmt = " %5.1f", get = function(h) return ms(h.stddev) end },
  G = { title = "Gmean", width = 6, fmt = " %5.1f", get = function(h) return ms(h.gmean) end },
  J = { title = "Jttr", width = 5, fmt = " %4.1f", get = function(h) return ms(h.jitter_last) end },
  M = { title = "Javg", width = 5, fmt = " %4.1f", get = function(h) return ms(h.jitter) end },
  X = { title = "Jmax", width = 5, fmt = " %4.1f", get = function(h) return ms(h.jitter_max) end },
  I = { title = "Jint", width = 5, fmt = " %4.1f", get = function(h) return ms(h.jitter_int) end },
}
M.FIELD_LETTERS = "LDRSNBAWVGJMXI"
M.DEFAULT_FIELDS = "LS NABWV"

-- mtr's -o: a string of field letters (and spaces) -> the list, or nil and
-- what is wrong with it.
function M.fields(letters)
  if type(letters) ~= "string" or letters == "" then return nil, "no fields" end
  local list, seen = {}, {}
  for c in letters:gmatch(".") do
    local f = FIELDS[c]
    if not f then
      return nil, ("unknown field '%s' (fields: %s and space)"):format(c, M.FIELD_LETTERS)
    end
    if c ~= " " and seen[c] then return nil, ("field '%s' twice"):format(c) end
    seen[c] = true
    list[#list + 1] = f
  end
  return list
end

local DEFAULT = assert(M.fields(M.DEFAULT_FIELDS))

local function header_figures(fields)
  local out = {}
  for _, f in ipairs(fields) do
    out[#out + 1] = f.width and string.format("%" .. f.width .. "s", f.title) or f.title
  end
  return table.concat(out)
end

-- The figures of a hop, as mtr prints them.
local function figures(hop, fields)
  local out = {}
  for _, f in ipairs(fields) do
    local v = f.get(hop)
    out[#out + 1] = v and string.format(f.fmt, v) or f.fmt
  end
  return table.concat(out)
end

-- What names an address: "name (addr)" with -b, the name alone when there
-- is one, else the address; "???" when nobody answered.
local function host_of(hop, o, addr)
  addr = addr or hop.addr
  if not addr then return "???" end
  local name = not o.numeric and (addr == hop.addr and hop.name or hop.names and hop.names[addr])
  if name then return o.show_ips and (name .. " (" .. addr .. ")") or name end
  return addr
end

-- mtr's AS column: "AS64500  ", "AS???    ".
local function as_col(hop)
  return string.format("AS%-7s", hop.asn and tostring(hop.asn) or "???")
end

local function fit(s, w, cut)
  if cut and #s > w then s = s:sub(1, w) end
  return s .. string.rep(" ", w - #s)
end

-- ISO 8601 local time with the UTC offset, as mtr's "Start:".
local function start_time(t)
  return os.date("%Y-%m-%dT%H:%M:%S%z", math.floor(t or 0))
end

-- Lines under a hop: the other addresses that answered at its TTL (load
-- balancing), each flow's own figures (--strategy paris|dublin: "f2 host"
-- and the flow's figures, in the hop's columns; left is the width of the
-- hop's row before its figures, cut says whether names are cut to fit it),
-- the MPLS label stacks (-e).
local function under(hop, o, lead, fields, left, cut)
  local out = {}
  for _, a in ipairs(hop.addrs or {}) do
    if a ~= hop.addr then out[#out + 1] = lead .. "`|-- " .. host_of(hop, o, a) end
  end
  for _, f in ipairs(hop.flows or {}) do
    local label = lead .. string.format("f%d ", f.flow) .. (f.addr and host_of(hop, o, f.addr) or "???")
    if #label >= left and not cut then label = label .. " " end
    out[#out + 1] = fit(label, math.max(left, 0), cut) .. figures(f, fields)
  end
  if o.mpls then
    for _, st in ipairs(hop.mpls or {}) do
      for _, lbl in ipairs(st) do
        out[#out + 1] = lead .. string.format("+-- [MPLS: Lbl %d TC %d S %d TTL %d]",
          lbl.label or 0, lbl.exp or 0, lbl.s and 1 or 0, lbl.ttl or 0)
      end
    end
  end
  return out
end

-- mtr --report: "Start:", the header, one row per hop. Without o.wide,
-- names are cut to mtr's 25 columns (19 beside the AS column); with it,
-- the column is as wide as the longest.
function M.report(doc, host, o)
  o = o or {}
  local fields = o.fields or DEFAULT
  host = host or "localhost"
  local w = o.asn and 19 or 25
  if o.wide then
    w = #host
    for _, hop in ipairs(doc.hops) do w = math.max(w, #host_of(hop, o)) end
  end
  local lines = { "Start: " .. start_time(doc.started) }
  -- mtr's own header widths: 27 columns narrow, the host column wide
  local hw = o.wide and (w + (o.asn and 9 or 0)) or 27
  lines[2] = "HOST: " .. fit(host, hw, not o.wide) .. header_figures(fields)
  for _, hop in ipairs(doc.hops) do
    local name = fit(host_of(hop, o), w, not o.wide)
    if o.asn then
      lines[#lines + 1] = string.format("%3d. ", hop.ttl) .. as_col(hop) .. name
        .. (o.wide and " " or "") .. figures(hop, fields)
    else
      lines[#lines + 1] = string.format("%3d.|-- ", hop.ttl) .. name .. figures(hop, fields)
    end
    local left = o.asn and (5 + 9 + w + (o.wide and 1 or 0)) or (8 + w)
    for _, l in ipairs(under(hop, o, "    |  ", fields, left, not o.wide)) do lines[#lines + 1] = l end
  end
  if doc.stop_reason == "interrupted" then
    lines[#lines + 1] = string.format("(interrupted after %d round%s)", doc.rounds,
      doc.rounds == 1 and "" or "s")
  elseif doc.stop_reason == "error" and doc.error then
    lines[#lines + 1] = string.format("(stopped: %s: %s)", doc.error.name, doc.error.message)
  end
  return table.concat(lines, "\n") .. "\n"
end

-- mtr --csv: a header line, whose every title ends with a comma, then one
-- line per hop: the version, the start (Unix seconds), "OK", the target as
-- given, the hop's number, its host as the report names it (-n, -b), with
-- -z its AS, then the -o fields: counts as integers, times (ms) and loss
-- with two decimals, mtr's blank field as 0.
function M.csv_header(o)
  o = o or {}
  local t = { "Mtr_Version,Start_Time,Status,Host,Hop,Ip," }
  if o.asn then t[#t + 1] = "Asn," end
  for _, f in ipairs(o.fields or DEFAULT) do t[#t + 1] = f.title .. "," end
  return table.concat(t) .. "\n"
end

function M.csv_rows(doc, o, version)
  o = o or {}
  local out = {}
  for _, hop in ipairs(doc.hops) do
    local t = { version, string.format("%d", math.floor(doc.started or 0)), "OK", doc.target,
      tostring(hop.ttl), host_of(hop, o) }
    if o.asn then t[#t + 1] = "AS" .. (hop.asn and tostring(hop.asn) or "???") end
    for _, f in ipairs(o.fields or DEFAULT) do
      local v = f.get(hop) or 0
      t[#t + 1] = f.fmt:find("f", 1, true) and string.format("%.2f", v) or string.format("%d", v)
    end
    out[#out + 1] = table.concat(t, ",") .. "\n"
  end
  return table.concat(out)
end

-- A hop's recent outcomes (a list of RTTs, false for a lost probe) as a
-- strip of one character each, as mtr's and Trippy's history views: "?"
-- lost, else "." to "9" by where the RTT falls between the hop's best and
-- worst (all "." when they are equal).
function M.strip(history, best, worst)
  local out = {}
  for i, v in ipairs(history or {}) do
    if not v then
      out[i] = "?"
    elseif not best or not worst or worst - best <= 0 then
      out[i] = "."
    else
      local k = math.floor((v - best) / (worst - best) * 9 + 0.5)
      out[i] = k <= 0 and "." or tostring(math.min(9, k))
    end
  end
  return table.concat(out)
end

-- The live table's lines (the caller positions them), fitted to width:
-- host names are cut so that the figures fit. doc.now: the time to show
-- (Unix seconds). o as report's, and: mode ("stats" or "history"),
-- keys (the legend line; nil: none), paused.
function M.live(doc, width, o)
  o = o or {}
  local fields = o.fields or DEFAULT
  width = math.max(width or 80, 40)
  local figs = #header_figures(fields)
  local asw = o.asn and 9 or 0
  local hw = 4
  for _, hop in ipairs(doc.hops) do hw = math.max(hw, #host_of(hop, o)) end
  local room = o.mode == "history" and math.floor(width / 2) or (width - figs - 5 - asw)
  hw = math.max(4, math.min(hw, room))
  local head = string.format("sonde mtr to %s (%s), %s, round %d%s", doc.target, doc.addr,
    doc.protocol, doc.rounds, o.paused and " [paused]" or "")
  local when = os.date("%Y-%m-%dT%H:%M:%S", math.floor(doc.now or doc.started or 0))
  local lines = { head .. string.rep(" ", math.max(1, width - #head - #when - 1)) .. when }
  if o.keys then lines[#lines + 1] = o.keys end
  lines[#lines + 1] = ""
  if o.mode == "history" then
    lines[#lines + 1] = fit(" Host", hw + 5 + asw, true) .. " History (newest right; . ok, ? lost)"
  else
    lines[#lines + 1] = fit(" Host", hw + 5 + asw, true) .. header_figures(fields)
  end
  for _, hop in ipairs(doc.hops) do
    local prefix = string.format("%3d. ", hop.ttl) .. (o.asn and as_col(hop) or "")
    local name = fit(host_of(hop, o), hw, true)
    if o.mode == "history" then
      local strip = M.strip(hop.history, hop.best, hop.worst)
      local room_h = width - #prefix - hw - 1
      if #strip > room_h then strip = strip:sub(-room_h) end
      lines[#lines + 1] = prefix .. name .. " " .. strip
    else
      lines[#lines + 1] = prefix .. name .. figures(hop, fields)
      for _, l in ipairs(under(hop, o, "        ", fields, #prefix + hw, true)) do
        lines[#lines + 1] = l
      end
    end
  end
  for i, l in ipairs(lines) do
    if #l > width then lines[i] = l:sub(1, width) end
  end
  return lines
end

return M
