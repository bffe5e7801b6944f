-- mtr: many TTLs, many rounds. Every round sends one probe to every TTL
-- from first_ttl up to the destination, all at once; rounds start every
-- `interval` seconds whether or not the previous one has come back (as mtr
-- and Trippy do), and each probe is accounted to its hop when it ends:
-- a reply adds its RTT to the hop's statistics (sonde.stats), a timeout
-- counts as loss.
--
-- The destination is found as mtr finds it: the first round probes every
-- TTL up to max_ttl; the lowest TTL whose probe the destination answers
-- (or a router says it is unreachable) becomes the last hop, probes beyond
-- it are cancelled and what they had counted is dropped, and later rounds
-- stop there. If the destination never answers, every round goes to
-- max_ttl.
--
-- The probes themselves come from a strategy instance (spec(ttl, seq), e.g.
-- sonde.strategy.ping's, whose identities let many probes be in flight).
--
-- Multipath (o.flows = N, with a strategy whose spec(ttl, seq, flow) keeps
-- each flow on one path: sonde.strategy.paris for one flow,
-- sonde.strategy.dublin for several): every round sends one probe per flow
-- to every TTL, and each hop keeps, besides its figures over all probes,
-- each flow's own (series, addresses). A load balancer that hashes the flow
-- sends all of a flow's probes down one branch, so a flow's figures at a
-- hop are the figures of its branch: loss that only one branch has shows
-- in the flows that take it, instead of being averaged over all probes
-- into a hop-wide figure that no single path has.

local stats = require "sonde.stats"
local json = require "sonde.json"
local tracer = require "sonde.trace"

local M = { name = "mtr" }

-- Does r end the path? "reached" (the destination answered), "unreachable"
-- (a router or the destination said it cannot be reached), or false: as a
-- trace decides.
local final = tracer.final

-- Outcomes a hop keeps for the history view.
local HISTORY = 200

local function new_path()
  return { series = stats.series(), seen = {}, addrs = {} }
end

local function new_hop(ttl, nflows)
  local hop = new_path()
  hop.ttl, hop.history = ttl, {}
  if nflows then
    hop.flows = {}
    for f = 1, nflows do hop.flows[f] = new_path() end
  end
  return hop
end

-- One outcome into a path's figures (a hop's, or one flow's at a hop).
local function add(path, r)
  if r.status == "reply" then
    path.series:add(r.rtt or 0)
    if r.addr then
      if not path.seen[r.addr] then
        path.seen[r.addr] = 0
        path.addrs[#path.addrs + 1] = r.addr
      end
      path.seen[r.addr] = path.seen[r.addr] + 1
    end
  else
    path.series:add(nil)
  end
end

-- The address that answered a path most often (the first seen of equals).
local function most_seen(path)
  local best
  for _, a in ipairs(path.addrs) do
    if not best or path.seen[a] > path.seen[best] then best = a end
  end
  return best
end

-- Run the rounds. o:
--   eng, strategy (an instance with spec(ttl, seq[, flow])), dst (numeric)
--   first_ttl, max_ttl
--   flows       nil: one probe per TTL per round, figures per hop only; N:
--               N probes per TTL per round, spec(ttl, seq, flow) for flow
--               1 .. N, figures per hop and per flow at each hop
--   count       rounds (nil: until stopped)
--   interval    seconds between the starts of two rounds
--   on_update(state)  called after every outcome that changed the figures
--   on_stop(stop, control)  hands over stop(reason): ends the run at once
--                     (from a signal handler or a key press); nothing more
--                     is sent, what is in flight is cancelled and not
--                     counted; and control.pause(on), control.reset().
-- Returns the state: { hops = { [ttl] = hop }, flows (o.flows), first_ttl, max_ttl, limit
-- (the last TTL probed), final_ttl (the destination's, or an unreachable's,
-- once one answered), rounds (rounds sent),
-- reached, stop_reason ("done", or stop's reason, or "error"), error
-- ({name, message} of the first probe that failed locally: it ends the
-- run), src, started, duration }.
function M.run(o)
  local eng = o.eng
  local nflows = o.flows
  local st = { hops = {}, flows = nflows, first_ttl = o.first_ttl, max_ttl = o.max_ttl,
    limit = o.max_ttl, rounds = 0, reached = false, started = os.time() }
  local t0 = eng:now()
  local inflight, n_inflight = {}, 0
  local idle, pause
  local stopped
  local seq = 0

  local function stop(reason)
    if stopped then return end
    stopped = reason or "interrupted"
    for id in pairs(inflight) do eng:cancel(id) end
    if pause then pause.fire() end
  end
  -- The live table's p and r: no new rounds while paused (what is in
  -- flight still ends and counts); every hop's figures from nothing.
  local resume
  local control = {
    pause = function(on)
      st.paused = on or nil
      if not on and resume then resume.fire() end
    end,
    reset = function()
      for ttl in pairs(st.hops) do st.hops[ttl] = new_hop(ttl, nflows) end
      if o.on_update then o.on_update(st) end
    end,
  }
  if o.on_stop then o.on_stop(stop, control) end

  -- The destination (or an unreachable) is at ttl: stop there.
  local function cut(ttl)
    st.limit = ttl
    for t in pairs(st.hops) do
      if t > ttl then st.hops[t] = nil end
    end
    for id, rec in pairs(inflight) do
      if rec.ttl > ttl then eng:cancel(id) end
    end
  end

  local function account(rec, r)
    if r.status == "failed" and r.error and r.error.name == "ECANCELED" then
      return false           -- ours: beyond the destination, or stopped
    end
    if rec.ttl > st.limit or stopped then return false end
    st.src = st.src or r.src
    if r.status == "skipped" then return false end  -- never sent
    if r.status == "failed" then
      st.error = st.error or r.error or { name = "UNKNOWN", message = "probe failed" }
      stop("error")
      return false
    end
    local hop = st.hops[rec.ttl]
    if not hop then
      hop = new_hop(rec.ttl, nflows)
      st.hops[rec.ttl] = hop
    end
    -- the recent outcomes, for a live history view
    hop.history[#hop.history + 1] = r.status == "reply" and (r.rtt or 0) or false
    if #hop.history > HISTORY then table.remove(hop.history, 1) end
    if r.status == "reply" and type(r.mpls) == "table" and #r.mpls > 0 then hop.mpls = r.mpls end
    add(hop, r)
    if rec.flow and hop.flows then add(hop.flows[rec.flow], r) end
    -- Cut last: cancelling runs callbacks, and the last of them may end
    -- the run.
    local f = final(r, o.dst)
    if f then
      if f == "reached" then st.reached = true end
      if not st.final_ttl or rec.ttl < st.final_ttl then st.final_ttl = rec.ttl end
      if rec.ttl < st.limit then cut(rec.ttl) end
    end
    return true
  end

  local function send(ttl, flow)
    seq = seq + 1
    local rec = { ttl = ttl, flow = flow }
    local spec = o.strategy.spec(ttl, seq, flow)
    local id, err, name = eng:probe_async(spec, function(r)
      rec.done = true
      if rec.id then
        inflight[rec.id] = nil
        n_inflight = n_inflight - 1
      end
      if account(rec, r) and o.on_update then o.on_update(st) end
      if n_inflight == 0 and idle then idle.fire() end
    end)
    if not id then
      account(rec, { status = "failed", ttl = ttl, seq = spec.seq,
        error = { name = name, message = err } })
    elseif not rec.done then
      rec.id = id
      inflight[id] = rec
      n_inflight = n_inflight + 1
    end
  end

  while not stopped and not (o.count and st.rounds >= o.count) do
    st.rounds = st.rounds + 1
    local round_start = eng:now()
    for ttl = o.first_ttl, o.max_ttl do
      if ttl > st.limit or stopped then break end
      if nflows then
        for f = 1, nflows do
          if stopped then break end
          send(ttl, f)
        end
      else
        send(ttl)
      end
    end
    if stopped or (o.count and st.rounds >= o.count) then break end
    pause = eng:event()
    local token = eng:after(math.max(0, o.interval - (eng:now() - round_start)), pause.fire)
    pause.wait()
    eng:cancel_timer(token)
    pause = nil
    while st.paused and not stopped do
      resume = eng:event()
      pause = resume
      resume.wait()
      resume, pause = nil, nil
    end
  end
  if n_inflight > 0 then
    idle = eng:event()
    idle.wait()
  end
  st.stop_reason = stopped or "done"
  st.duration = eng:now() - t0
  return st
end

-- The rows to show: one per TTL from first_ttl up to the destination, or,
-- while it has not answered, up to one past the last hop that did (as mtr
-- shows the path). Each row: { ttl, addr (the address that answered most;
-- absent if none did), addrs (every address that answered, first seen
-- first), sent, received, loss (%), and when a reply came: last, avg, best,
-- worst, stddev, jitter (seconds); with flows, flows = { { flow, addr (the
-- address that answered the flow most at this TTL), sent, received, loss,
-- last, avg, best, worst, stddev } for flow 1 .. N } }. Pure: reads the
-- state only.
function M.rows(st)
  local last = st.first_ttl
  if st.final_ttl then
    last = st.final_ttl
  else
    for ttl, hop in pairs(st.hops) do
      if hop.series.received > 0 and ttl + 1 > last then last = ttl + 1 end
    end
    last = math.min(last, st.limit)
  end
  local rows = json.array{}
  for ttl = st.first_ttl, last do
    local hop = st.hops[ttl]
    local s = hop and hop.series:summary() or { sent = 0, received = 0, loss = 0 }
    local row = { ttl = ttl, sent = s.sent, received = s.received, loss = s.loss,
      last = s.last, avg = s.avg, best = s.best, worst = s.worst,
      stddev = s.stddev, jitter = s.jitter, jitter_max = s.jitter_max,
      jitter_last = s.jitter_last, jitter_int = s.jitter_int, gmean = s.gmean }
    if hop and #hop.addrs > 0 then
      row.addr = most_seen(hop)
      row.addrs = json.array{ unpack(hop.addrs) }
    end
    if st.flows then
      row.flows = json.array{}
      for f = 1, st.flows do
        local p = hop and hop.flows[f]
        local fs = p and p.series:summary() or { sent = 0, received = 0, loss = 0 }
        row.flows[f] = { flow = f, addr = p and most_seen(p) or nil, sent = fs.sent,
          received = fs.received, loss = fs.loss, last = fs.last, avg = fs.avg,
          best = fs.best, worst = fs.worst, stddev = fs.stddev }
      end
    end
    rows[#rows + 1] = row
  end
  return rows
end

return M
