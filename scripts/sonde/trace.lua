-- sonde.trace: run one trace on an engine. Probes go out concurrently (up
-- to `sim` in flight, lowest TTL first), each hop's probes keep their order,
-- and the wait is adaptive like traceroute's -w MAX,HERE,NEAR: a probe is
-- given up HERE times the RTT of a reply from its own hop, or NEAR times the
-- RTT of a reply from a later hop, after it was sent, and MAX seconds at most.
-- So a silent hop costs little when the hops behind it answer.
--
-- The gap limit (traceroute's and scamper's): after `gap_limit` consecutive
-- silent hops (every probe of the hop timed out) the trace stops there with
-- stop_reason "gap_limit", unless a hop beyond them has already answered
-- (probes run ahead concurrently: a path that goes on is not a gap).

local retry = require "sonde.retry"
local json = require "sonde.json"

local M = {}

-- Kinds that say the destination itself answered.
local REACHED = { echo_reply = true, tcp_synack = true, tcp_rst = true,
  udp_reply = true }

-- Does this outcome end the trace at its TTL? (reached, or a router that
-- says the destination is unreachable from here)
local function final(r, dst)
  if r.status ~= "reply" then return false end
  if REACHED[r.kind] then return "reached" end
  if r.kind == "dest_unreachable" then
    if r.addr == dst and (r.code == "port" or r.code == "protocol") then
      return "reached"
    end
    return "unreachable"
  end
  return false
end
M.final = final

-- What a campaign's traces learn from each other (M.campaign()): the TTLs
-- at which earlier traces ended (reached, or told unreachable). Targets of
-- one campaign tend to lie at similar distances, so a trace first sends up
-- to a horizon where most earlier ones ended, instead of -N probes from
-- its first TTL up of which those past the destination are sent, answered
-- by the destination and thrown away (7 of 16 per trace in `make bench`,
-- and the costliest: each crosses the whole path twice). It sends beyond
-- the horizon as soon as something says that its destination is farther:
-- a probe at the horizon came back without ending the trace; or every
-- probe below the horizon is done and those at the horizon have not
-- answered within NEAR times the largest RTT of the trace (a silent hop
-- at the horizon: the hops behind it will tell); or nothing of the trace
-- is left in flight. What a trace finds does not depend on the horizon:
-- only which probes are sent when, and how many are wasted.
local QUANTILE = 0.95   -- the horizon covers this share of earlier ends ...
local MARGIN = 0        -- ... plus this many TTLs

-- A new campaign's shared state, for M.run's `campaign` option.
function M.campaign()
  return { ends = {}, n = 0, top = 0 }
end

-- The horizon of a new trace of campaign c (max_ttl: nothing learnt yet).
local function horizon_of(c, first_ttl, max_ttl)
  if not c or c.n == 0 then return max_ttl end
  local want, seen, ends = math.ceil(c.n * QUANTILE), 0, c.ends
  for ttl = 1, c.top do
    seen = seen + (ends[ttl] or 0)
    if seen >= want then
      return math.min(max_ttl, math.max(first_ttl, ttl + MARGIN))
    end
  end
  return max_ttl
end

local function learn(c, ttl)
  c.ends[ttl] = (c.ends[ttl] or 0) + 1
  c.n = c.n + 1
  if ttl > c.top then c.top = ttl end
end

-- One flow of probes (a classic or Paris strategy instance); see M.run.
local function run_one(o)
  local eng = o.eng
  local wmax, here, near = o.wait[1], o.wait[2], o.wait[3]
  local wmin = o.wait[4] or 0 -- never give up sooner (0: as traceroute)
  -- A strategy may allow fewer probes in flight than asked (Paris TCP:
  -- one; its probes share a 4-tuple).
  local sim = math.min(o.sim, o.strategy.inflight or o.sim)
  local rule = o.rule or retry.default
  local default_rule = rule == retry.default
  local spec_of = o.strategy.spec
  local queries, max_ttl, dst = o.queries, o.max_ttl, o.dst
  local interrupted = o.interrupted
  local hops = {}          -- [ttl] = { ttl =, probes = { [q] = result }, got = }
  local inflight = {}      -- id -> rec
  local n_inflight = 0
  local limit = max_ttl    -- no probe beyond this TTL
  local horizon = horizon_of(o.campaign, o.first_ttl, max_ttl)
  local below = 0          -- probes in flight below the horizon
  local max_rtt            -- the largest RTT of a reply so far
  local stall_timer        -- token of the horizon's check (see M.campaign)
  local stop_reason
  local next_ttl, next_q = o.first_ttl, 1
  local seq = 0
  local printed = o.first_ttl - 1
  local started = os.time()
  local t0 = eng:now()
  local done = eng:event()
  local reissue_queue = {}
  local failed_error
  local gap = 0            -- silent hops in a row, up to the last one handed over

  -- Hops are made when their first outcome comes.
  local function hop_at(ttl)
    local hop = hops[ttl]
    if not hop then
      hop = { ttl = ttl, probes = json.array{}, got = 0 }
      hops[ttl] = hop
    end
    return hop
  end

  local function hop_complete(ttl)
    local hop = hops[ttl]
    return hop ~= nil and hop.got >= queries
  end

  -- A hop is silent when every one of its probes timed out (a skipped or
  -- failed probe says nothing about the path).
  local function silent(hop)
    for _, r in ipairs(hop.probes) do
      if r.status ~= "timeout" then return false end
    end
    return true
  end

  local function answered_beyond(ttl)
    for t = ttl + 1, max_ttl do
      local hop = hops[t]
      if hop then
        for _, r in pairs(hop.probes) do
          if r.status == "reply" then return true end
        end
      end
    end
    return false
  end

  -- Cancel what is in flight beyond the limit (ECANCELED: not recorded).
  local function cancel_beyond()
    for id, other in pairs(inflight) do
      if other.ttl > limit then eng:cancel(id) end
    end
  end

  -- End the trace at ttl: nothing is sent beyond it, what is in flight
  -- beyond it is cancelled.
  local function cut(ttl, reason)
    stop_reason = reason
    limit = ttl
    cancel_beyond()
  end

  -- Hand finished hops to on_hop, in order, as soon as all before are done.
  local function flush()
    while printed < limit and hop_complete(printed + 1) do
      printed = printed + 1
      if o.on_hop then o.on_hop(hops[printed]) end
      if o.gap_limit and o.gap_limit > 0 then
        gap = silent(hops[printed]) and gap + 1 or 0
        -- Cut after handing the hop over: cancelling may end the trace.
        if gap >= o.gap_limit and printed < limit and not answered_beyond(printed) then
          cut(printed, "gap_limit")
        end
      end
    end
  end

  local issue

  -- A reply from ttl shortens the waits of the probes in flight at ttl
  -- (HERE times its RTT) and before it (NEAR times).
  local function adapt(r, ttl)
    local rtt = r.rtt
    if not rtt then return end
    local w_here, w_near = math.max(here * rtt, wmin), math.max(near * rtt, wmin)
    for id, rec in pairs(inflight) do
      local t = rec.ttl
      if t <= ttl then
        local w = t == ttl and w_here or w_near
        if w < rec.wait then
          rec.wait = w
          eng:set_wait(id, w)
        end
      end
    end
  end

  local function record(rec, r)
    r.id = nil
    r.retries = rec.earlier
    local hop = hop_at(rec.ttl)
    hop.probes[rec.q] = r
    hop.got = hop.got + 1
  end

  local function finish_if_idle()
    if n_inflight == 0 and #reissue_queue == 0 and
       (next_ttl > limit or interrupted()) then
      done.fire()
    end
  end

  -- Everything below the horizon is done but the probes at it have not
  -- answered: if they still have not after NEAR times the largest RTT seen,
  -- the hop there is likely silent, and the hops beyond it will tell more.
  local function watch_horizon()
    if stall_timer or below > 0 or n_inflight == 0 or not max_rtt or
       horizon >= limit or next_ttl <= horizon or #reissue_queue > 0 then
      return
    end
    stall_timer = eng:after(math.min(wmax, near * max_rtt), function()
      stall_timer = nil
      if horizon < limit and next_ttl > horizon and not done.fired() then
        horizon = max_ttl
        issue()
        finish_if_idle()
      end
    end)
  end

  local function on_result(rec, r)
    inflight[rec.id] = nil
    n_inflight = n_inflight - 1
    if rec.below then below = below - 1 end
    local status = r.status
    if status == "failed" and r.error and r.error.name == "ECANCELED" then
      -- Ours: past the destination, or interrupted. Not a network outcome.
      rec.cancelled = true
    elseif rec.ttl <= limit then
      local action
      if default_rule and status ~= "skipped" then
        action = "accept"   -- what retry.default says, without asking it
      else
        action = rule(r, { ttl = rec.ttl, q = rec.q, reissues = rec.reissues })
      end
      if action == "reissue" and rec.reissues < retry.HARD_LIMIT then
        -- The outcome that was re-issued stays visible on the one that
        -- replaces it (e.g. which source port was busy).
        r.id = nil
        local earlier = rec.earlier or json.array{}
        earlier[#earlier + 1] = r
        reissue_queue[#reissue_queue + 1] = { ttl = rec.ttl, q = rec.q,
          reissues = rec.reissues + 1, earlier = earlier }
      else
        if action == "reissue" then action = "accept" end
        if action ~= "accept" then
          error("retry rule returned '" .. tostring(action) ..
            "' (expected 'accept' or 'reissue')", 0)
        end
        record(rec, r)
        local f = final(r, dst)
        if status == "failed" then
          -- A local error (no route, no permission, no ports) would fail
          -- every later probe too: finish this TTL and stop.
          failed_error = failed_error or r.error
          f = "error"
        end
        if f and rec.ttl <= limit then
          if rec.ttl < limit or not stop_reason or f == "reached" or
             stop_reason == "error" then
            stop_reason = f
          end
          limit = rec.ttl
          cancel_beyond()
        elseif not f and rec.ttl >= horizon then
          -- The destination is farther than the campaign's horizon.
          horizon = max_ttl
        end
        local rtt = r.rtt
        if rtt and (not max_rtt or rtt > max_rtt) then max_rtt = rtt end
        adapt(r, rec.ttl)
      end
    end
    flush()
    issue()
    if horizon < max_ttl then watch_horizon() end
    finish_if_idle()
  end

  -- The engine's callback for every probe of this trace.
  local function on_probe(r)
    local rec = inflight[r.id]
    if rec then on_result(rec, r) end
  end

  local function send(ttl, q, reissues, earlier)
    local spec = spec_of(ttl, seq)
    seq = seq + 1
    spec.wait = wmax
    local rec = { ttl = ttl, q = q, reissues = reissues or 0, wait = wmax,
      earlier = earlier, below = ttl < horizon or nil }
    local id, err, name = eng:probe_async(spec, on_probe)
    if not id then
      record(rec, { status = "failed", ttl = ttl, seq = spec.seq,
        error = { name = name, message = err } })
      failed_error = failed_error or { name = name, message = err }
      return
    end
    rec.id = id
    inflight[id] = rec
    n_inflight = n_inflight + 1
    if rec.below then below = below + 1 end
  end

  function issue()
    -- Nothing in flight and nothing to re-issue: beyond the horizon is all
    -- that is left to send.
    if next_ttl > horizon and n_inflight == 0 and #reissue_queue == 0 then
      horizon = max_ttl
    end
    while n_inflight < sim and not interrupted() do
      local re = reissue_queue[1] and table.remove(reissue_queue, 1)
      if re then
        if re.ttl <= limit then send(re.ttl, re.q, re.reissues, re.earlier) end
      elseif next_ttl <= limit and next_ttl <= horizon then
        send(next_ttl, next_q)
        next_q = next_q + 1
        if next_q > queries then next_ttl, next_q = next_ttl + 1, 1 end
      else
        break
      end
    end
  end

  -- Stop early: cancel what is in flight; what finished is kept.
  local function interrupt()
    for id in pairs(inflight) do eng:cancel(id) end
    finish_if_idle()
  end

  issue()
  flush()
  finish_if_idle()
  if not done.fired() then
    if o.on_interrupt then o.on_interrupt(interrupt) end
    done.wait()
  end
  if stall_timer then eng:cancel_timer(stall_timer) end
  -- Interrupted or cut short: hand over what is left, complete or not.
  if o.on_hop then
    for ttl = printed + 1, math.min(limit, max_ttl) do
      local hop = hops[ttl]
      if hop and #hop.probes > 0 then o.on_hop(hop) end
    end
  end

  local out = json.array{}
  for ttl = o.first_ttl, math.min(limit, max_ttl) do
    local hop = hops[ttl]
    if hop and #hop.probes > 0 then
      out[#out + 1] = { ttl = ttl, probes = hop.probes }
    end
  end
  if interrupted() then
    stop_reason = "interrupted"
  elseif not stop_reason then
    stop_reason = "max_ttl"
  end
  if o.campaign and (stop_reason == "reached" or stop_reason == "unreachable") then
    learn(o.campaign, limit)
  end
  return {
    type = "trace", version = 1,
    first_ttl = o.first_ttl, max_ttl = max_ttl, queries = queries,
    reached = stop_reason == "reached",
    stop_reason = stop_reason,
    error = stop_reason == "error" and failed_error or nil,
    hops = out,
    started = started,
    duration = eng:now() - t0,
  }
end

-- Several flows (a Dublin instance: strategy.flows is a list of Paris
-- instances): one trace per flow, all at once on the same engine, the -N
-- budget shared between them (at least one probe in flight each). Each
-- probe carries `flow` (its flow's number). The result is a trace whose
-- hops hold every probe of every flow at each TTL, plus flows = { { flow,
-- sport | checksum, reached, stop_reason, error, hops } } (each flow's own
-- hop list) and graph = { nodes, links } (sonde.strategy.dublin.graph).
-- reached: some flow reached the destination; stop_reason: "reached" if one
-- did, else "interrupted", "error", or the first flow's.
local function run_flows(o)
  local dublin = require "sonde.strategy.dublin"
  local eng = o.eng
  local started, t0 = os.time(), eng:now()
  local flows = o.strategy.flows
  local share = math.max(1, math.floor(o.sim / #flows))
  local results, left, done = {}, #flows, eng:event()
  local stops = {}
  local function interrupt()
    for _, fn in pairs(stops) do fn() end
  end
  if o.on_interrupt then o.on_interrupt(interrupt) end
  for i, inst in ipairs(flows) do
    local fo = {}
    for k, v in pairs(o) do fo[k] = v end
    fo.strategy, fo.sim, fo.on_hop = inst, share, nil
    fo.on_interrupt = function(fn) stops[i] = fn end
    eng:spawn(function()
      results[i] = run_one(fo)
      left = left - 1
      if left == 0 then done.fire() end
    end)
  end
  if left > 0 then done.wait() end

  local merged, by_ttl = json.array{}, {}
  local out_flows = json.array{}
  local reached, stop_reason, err
  for i, t in ipairs(results) do
    local inst = flows[i]
    local f = dublin.describe(inst)
    f.reached, f.stop_reason, f.error, f.hops = t.reached, t.stop_reason, t.error, t.hops
    out_flows[i] = f
    for _, hop in ipairs(t.hops) do
      for _, r in ipairs(hop.probes) do r.flow = inst.flow end
      local m = by_ttl[hop.ttl]
      if not m then
        m = { ttl = hop.ttl, probes = json.array{} }
        by_ttl[hop.ttl] = m
        merged[#merged + 1] = m
      end
      for _, r in ipairs(hop.probes) do m.probes[#m.probes + 1] = r end
    end
    if t.reached then reached = true end
    err = err or t.error
    stop_reason = stop_reason or t.stop_reason
  end
  table.sort(merged, function(a, b) return a.ttl < b.ttl end)
  if reached then
    stop_reason = "reached"
  elseif o.interrupted() then
    stop_reason = "interrupted"
  elseif err then
    stop_reason = "error"
  end
  -- Hand the merged hops over in order, for a caller that streams them.
  if o.on_hop then
    for _, hop in ipairs(merged) do o.on_hop(hop) end
  end
  return {
    type = "trace", version = 1,
    first_ttl = o.first_ttl, max_ttl = o.max_ttl, queries = o.queries,
    reached = reached == true, stop_reason = stop_reason,
    error = stop_reason == "error" and err or nil,
    hops = merged, flows = out_flows, graph = dublin.graph(out_flows),
    started = started, duration = eng:now() - t0,
  }
end

-- o: eng, dst (numeric address), af, proto, strategy (an instance from a
-- strategy module: spec(ttl, seq), and optionally inflight (at most that
-- many probes in flight) or flows (a list of instances, one trace each:
-- Dublin)), first_ttl, max_ttl, queries, wait = {max, here, near}, sim
-- (probes in flight), rule (retry rule), gap_limit (silent hops in a row
-- that end the trace; nil or 0: no limit), on_hop(hop) (called for each hop
-- in TTL order once it is complete; with flows, once all flows are done),
-- interrupted() (true to stop), on_interrupt(fn) (hands over a function
-- that stops the trace at once), campaign (a M.campaign() shared by the
-- traces of a campaign: where to stop sending at first; nil: no horizon).
-- Returns the trace table of DESIGN.md (without target naming fields).
function M.run(o)
  if o.strategy.flows then return run_flows(o) end
  return run_one(o)
end

return M
