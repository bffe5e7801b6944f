-- sonde.watch.monitor: what `sonde watch` knows of one target, and the
-- events that its rounds give rise to. Pure: no engine, no I/O; a round's
-- outcomes go in, events come out (the lab specs and the unit specs feed it
-- the same tables).
--
--   local monitor = require "sonde.watch.monitor"
--   local m = monitor.new{ target = "dst.lab", addr = "198.18.3.2", queries = 3 }
--   local events = m:round{ time = os.time(), limit = 30, probes = {
--     { ttl = 1, status = "reply", kind = "time_exceeded", addr = "198.18.0.2", rtt = 0.001 },
--     ... } }
--
-- A round is every probe sent to the target in one go: -q probes to each
-- TTL from 1 up to `limit` (the destination's TTL once known). Each
-- probe's outcome is what sonde.trace.final makes of it: a router on the
-- way (time exceeded), the destination (reached), a router that says the
-- destination cannot be reached (unreachable), or nothing (timeout).
--
-- What it keeps, over a window of the last `window` rounds:
--   per hop (TTL): probes sent and answered, RTTs (sonde.stats), the
--     addresses that answered;
--   the destination: the probes of each round that were meant for it (the
--     -q probes at the TTL where it answered before) and those it answered;
--   the path: the addresses at each TTL up to the destination's, as the
--     last round that reached the destination saw them (a TTL where
--     nothing answered keeps what answered there before).
--
-- Events (tables; the command adds "type", "time", "target", "addr"):
--   path_change   the path differs from the known one: a TTL where both
--                 saw addresses and the sets differ, or the destination at
--                 another TTL. { old, new, first_ttl (the first TTL that
--                 differs) }. Only rounds that reached the destination
--                 compare, so a destination that stops answering is a
--                 reachability event, not a path change.
--   reachability  { state = "lost" } after `lost_after` rounds in a row in
--                 which the destination did not answer (one round is
--                 allowed: a path that got longer is probed to max_ttl the
--                 round after it stopped answering at its old TTL);
--                 { state = "regained" } at the first round that it
--                 answers again.
--   loss          the destination's loss over the window reached
--                 `loss_threshold` percent ({ state = "start" }), or fell
--                 back below half of it ({ state = "end" }); with
--                 loss_ratio, threshold, window, and from_ttl: the first
--                 TTL from which every hop up to the destination loses at
--                 least the threshold (where the path loss starts), if any.
--   rtt_shift     the destination's RTT level moved: the short average
--                 (the last rounds) is above factor times the long one
--                 (the baseline) and more than `rtt_min` seconds away from
--                 it, or below it by that much ({ direction = "up" |
--                 "down", baseline, recent, factor, min }); the baseline
--                 then moves to the new level.
--   icmp_rate_limited  a hop loses probes that the hops behind it answer:
--                 the router limits (or deprioritises) the ICMP errors it
--                 makes, and nothing is lost on the path there. Loss at a
--                 hop is path loss only if it carries on to every hop
--                 behind it, to the destination. { state = "start" |
--                 "end", ttl, hop_addr, loss_ratio, behind_loss_ratio (the
--                 least loss of a hop behind it) }, once that difference
--                 is also beyond chance (M.clearly_above).

local stats = require "sonde.stats"

local M = {}

M.DEFAULTS = {
  window = 10,          -- rounds the loss and RTT figures cover
  loss_threshold = 20,  -- percent: destination loss that is an event
  rtt_factor = 1.5,     -- recent RTT above factor x baseline ...
  rtt_min = 0.005,      -- ... and this many seconds away from it
  lost_after = 2,       -- rounds without the destination: lost
  rate_margin = 20,     -- percentage points: hop loss above what is behind it
  min_samples = 5,      -- probes a hop needs before its loss is judged
}

local Monitor = {}
Monitor.__index = Monitor

-- o: target, addr, queries (probes per TTL per round), and any of
-- M.DEFAULTS. -> a monitor.
function M.new(o)
  local m = setmetatable({ target = o.target, addr = o.addr, queries = o.queries or 1,
    rounds = 0, hops = {}, dst = {}, path = nil, final_ttl = nil, reachable = nil,
    misses = 0, changes = 0, last_change = nil, lossy = false, shift_n = 0,
    dst_sent = 0, dst_received = 0, rtt_count = 0, rtt_sum = 0, rtt_buckets = {} }, Monitor)
  for k, v in pairs(M.DEFAULTS) do m[k] = o[k] == nil and v or o[k] end
  return m
end

-- The RTT histogram's upper bounds (seconds), for the destination's RTTs.
M.BUCKETS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 }

local function sorted_keys(set)
  local t = {}
  for k in pairs(set) do t[#t + 1] = k end
  table.sort(t)
  return t
end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- A ring of the last n entries.
local function push(ring, v, n)
  ring[#ring + 1] = v
  if #ring > n then table.remove(ring, 1) end
end

-- The window's figures of a hop or the destination: sent, received, loss
-- (percent), and the RTT summary (sonde.stats) of the answers.
local function window_of(ring)
  local s = stats.series()
  for _, r in ipairs(ring) do
    for _, rtt in ipairs(r.rtts) do s:add(rtt) end
    for _ = 1, r.sent - #r.rtts do s:add(nil) end
  end
  return s:summary()
end
M.window_of = window_of

-- A path as the events write it: { { ttl, addrs = {...} } } up to final.
local function path_list(path, final)
  local t = {}
  for ttl = 1, final do
    t[#t + 1] = { ttl = ttl, addrs = path[ttl] or {} }
  end
  return t
end

-- The first TTL at which paths a (final fa) and b (final fb) differ, or
-- nil: a TTL where both saw addresses that differ, or where one ends.
local function first_difference(a, fa, b, fb)
  for ttl = 1, math.max(fa, fb) do
    if ttl > fa or ttl > fb then return ttl end
    local x, y = a[ttl], b[ttl]
    if x and y and #x > 0 and #y > 0 and not same(x, y) then return ttl end
  end
end

-- One round. r: { time, limit, probes = { { ttl, status, kind, addr, rtt,
-- final = "reached" | "unreachable" | nil } } }. -> the list of events.
function Monitor:round(r)
  local ev = {}
  self.rounds = self.rounds + 1
  local by_ttl, final_ttl, reached = {}, nil, false
  for _, p in ipairs(r.probes) do
    local h = by_ttl[p.ttl]
    if not h then
      h = { sent = 0, rtts = {}, addrs = {} }
      by_ttl[p.ttl] = h
    end
    if p.status == "reply" or p.status == "timeout" then
      h.sent = h.sent + 1
      if p.status == "reply" then
        h.rtts[#h.rtts + 1] = p.rtt or 0
        if p.addr then h.addrs[p.addr] = true end
        if p.final and (not final_ttl or p.ttl < final_ttl) then
          final_ttl = p.ttl
          reached = p.final == "reached"
        end
      end
    end
  end

  -- Hops up to the destination (or to the limit when it did not answer).
  local top = final_ttl or r.limit
  for ttl, h in pairs(by_ttl) do
    if ttl <= top then
      local hop = self.hops[ttl]
      if not hop then
        hop = { ttl = ttl, ring = {}, addr = nil, limited = false }
        self.hops[ttl] = hop
      end
      push(hop.ring, { sent = h.sent, rtts = h.rtts }, self.window)
      local addrs = sorted_keys(h.addrs)
      if #addrs > 0 then hop.addr = addrs[1]; hop.addrs = addrs end
    end
  end
  for ttl in pairs(self.hops) do
    if ttl > top and final_ttl then self.hops[ttl] = nil end
  end

  -- The destination: the -q probes at its TTL (the one it answered at
  -- before, else this round's), and which of them it answered.
  local at = self.final_ttl or final_ttl
  local d = { sent = self.queries, rtts = {} }
  for _, p in ipairs(r.probes) do
    if p.status == "reply" and p.final == "reached" and p.ttl == final_ttl and #d.rtts < d.sent then
      d.rtts[#d.rtts + 1] = p.rtt or 0
    end
  end
  if at or reached then
    push(self.dst, d, self.window)
    self.dst_sent = self.dst_sent + d.sent
    self.dst_received = self.dst_received + #d.rtts
    for _, rtt in ipairs(d.rtts) do
      self.rtt_count, self.rtt_sum = self.rtt_count + 1, self.rtt_sum + rtt
      for i, b in ipairs(M.BUCKETS) do
        if rtt <= b then self.rtt_buckets[i] = (self.rtt_buckets[i] or 0) + 1 end
      end
    end
  end

  -- Reachability.
  if reached then
    self.misses = 0
    if self.reachable == false then
      ev[#ev + 1] = { type = "reachability", state = "regained", rounds_lost = self.lost_rounds }
    end
    self.reachable = true
  else
    self.misses = self.misses + 1
    if self.reachable ~= false and self.misses >= self.lost_after then
      self.reachable = false
      self.lost_rounds = self.misses
      ev[#ev + 1] = { type = "reachability", state = "lost", rounds = self.misses,
        lost_after = self.lost_after,
        unreachable = final_ttl and { ttl = final_ttl, hop_addr = by_ttl[final_ttl]
          and sorted_keys(by_ttl[final_ttl].addrs)[1] } or nil }
    elseif self.reachable == false then
      self.lost_rounds = self.misses
    end
  end

  -- The path: compared and kept only in rounds that reached the
  -- destination, and not when it answered further than before with
  -- nothing at all answering between its old TTL and its new one: that
  -- is as likely the probes at its old TTL lost (the round before it
  -- probed no further) as a longer path; the next round tells.
  -- Twice in a row, it is the path (a silent hop was added).
  local inconclusive = false
  if reached and self.final_ttl and final_ttl > self.final_ttl then
    inconclusive = (self.longer or 0) < 1
    for ttl = self.final_ttl, final_ttl - 1 do
      local h = by_ttl[ttl]
      if h and next(h.addrs) then inconclusive = false end
    end
  end
  self.longer = inconclusive and (self.longer or 0) + 1 or 0
  if reached and not inconclusive then
    local new = {}
    for ttl = 1, final_ttl do
      local h = by_ttl[ttl]
      local addrs = h and sorted_keys(h.addrs) or {}
      if #addrs == 0 and self.path and ttl < final_ttl then addrs = self.path[ttl] or {} end
      new[ttl] = addrs
    end
    if self.path then
      local first = first_difference(self.path, self.final_ttl, new, final_ttl)
      if first then
        self.changes = self.changes + 1
        self.last_change = r.time
        ev[#ev + 1] = { type = "path_change", first_ttl = first,
          old = path_list(self.path, self.final_ttl), new = path_list(new, final_ttl),
          old_hops = self.final_ttl, new_hops = final_ttl }
      end
    end
    self.path, self.final_ttl = new, final_ttl
  end

  -- Destination loss over the window.
  local dw = window_of(self.dst)
  self.dst_window = dw
  if dw.sent >= self.min_samples then
    if not self.lossy and dw.loss >= self.loss_threshold then
      self.lossy = true
      ev[#ev + 1] = { type = "loss", state = "start", loss_ratio = dw.loss / 100,
        threshold = self.loss_threshold / 100, window = #self.dst, sent = dw.sent,
        received = dw.received, from_ttl = self:loss_from() }
    elseif self.lossy and dw.loss < self.loss_threshold / 2 then
      self.lossy = false
      ev[#ev + 1] = { type = "loss", state = "end", loss_ratio = dw.loss / 100,
        threshold = self.loss_threshold / 100, window = #self.dst, sent = dw.sent,
        received = dw.received }
    end
  end

  -- RTT level: a slow and a fast moving average of the round's mean RTT.
  if #d.rtts > 0 then
    local sum = 0
    for _, v in ipairs(d.rtts) do sum = sum + v end
    local x = sum / #d.rtts
    self.shift_n = self.shift_n + 1
    if not self.baseline then
      self.baseline, self.recent = x, x
    else
      self.recent = self.recent + 0.5 * (x - self.recent)
      local diff = self.recent - self.baseline
      if self.shift_n >= self.window and math.abs(diff) > self.rtt_min
          and (self.recent > self.baseline * self.rtt_factor
            or self.recent * self.rtt_factor < self.baseline) then
        ev[#ev + 1] = { type = "rtt_shift", direction = diff > 0 and "up" or "down",
          baseline = self.baseline, recent = self.recent, factor = self.rtt_factor,
          min = self.rtt_min }
        self.baseline, self.shift_n = self.recent, 0
      else
        self.baseline = self.baseline + 0.05 * (x - self.baseline)
      end
    end
  end

  -- Loss at a hop that the hops behind it do not show.
  self:judge_hops(ev)
  return ev
end

-- The hops' window figures, in TTL order, up to the destination's TTL.
-- -> { { ttl, addr, addrs, sent, received, loss, avg, last, ..., limited } }
function Monitor:hop_rows()
  local rows = {}
  for _, ttl in ipairs(sorted_keys(self.hops)) do
    local hop = self.hops[ttl]
    local s = window_of(hop.ring)
    s.ttl, s.addr, s.addrs, s.limited = ttl, hop.addr, hop.addrs, hop.limited
    rows[#rows + 1] = s
  end
  return rows
end

-- The first TTL from which every hop up to the destination loses at least
-- the threshold, or nil.
function Monitor:loss_from()
  local rows, from = self:hop_rows(), nil
  for i = #rows, 1, -1 do
    local s = rows[i]
    if s.sent < self.min_samples or s.loss < self.loss_threshold then break end
    from = s.ttl
  end
  return from
end

-- Is loss a (sent, received) clearly above loss b? Two-proportion z-test
-- (pooled): z >= M.Z. Without it, two hops that lose alike (path loss
-- behind both) differ by the margin now and then by chance alone: with 30
-- probes each at 60 % loss, one time in twenty.
M.Z = 3
local function clearly_above(a, b)
  local n1, n2 = a.sent, b.sent
  local p1, p2 = (a.sent - a.received) / n1, (b.sent - b.received) / n2
  local p = ((a.sent - a.received) + (b.sent - b.received)) / (n1 + n2)
  local se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
  if se == 0 then return p1 > p2 end
  return (p1 - p2) / se >= M.Z
end
M.clearly_above = clearly_above

function Monitor:judge_hops(ev)
  local rows = self:hop_rows()
  local behind               -- the hop behind (or the destination) losing least
  local dw = self.dst_window
  if dw and dw.sent >= self.min_samples then behind = dw end
  for i = #rows, 1, -1 do
    local s = rows[i]
    local hop = self.hops[s.ttl]
    if s.ttl < (self.final_ttl or math.huge) and s.sent >= self.min_samples then
      local limited = behind ~= nil and s.loss >= behind.loss + self.rate_margin
        and clearly_above(s, behind)
      if limited ~= hop.limited then
        hop.limited = limited
        ev[#ev + 1] = { type = "icmp_rate_limited", state = limited and "start" or "end",
          ttl = s.ttl, hop_addr = hop.addr, loss_ratio = s.loss / 100,
          behind_loss_ratio = behind and behind.loss / 100 or nil,
          silent = s.received == 0 or nil }
      end
      if not behind or s.loss < behind.loss then behind = s end
    end
  end
end

-- The destination's figures over the window (sonde.stats summary: sent,
-- received, loss in percent, RTTs).
function Monitor:destination()
  return self.dst_window or window_of(self.dst)
end

return M
