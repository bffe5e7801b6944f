-- sonde.trace: run one trace on an engine. Probes go out concurrently (up
-- to `sim` in flight, lowest TTL first), each hop's probes keep their order,
-- and the wait is adaptive (M.give_up_after): once a hop at or beyond a
-- probe's TTL has answered, the trace stops waiting for the probe after a
-- bound made from that hop's RTTs, so a silent hop costs little when the
-- hops behind it answer. Giving up on a probe only lets the trace move on
-- and end: the probe stays open until MAX, and a reply that comes before
-- the trace ends is recorded as the probe's outcome. When nothing but
-- given-up probes is left, the trace reads what has arrived and waits
-- M.GRAIN more before it ends and reports them as timeouts.
--
-- The gap limit (traceroute's and scamper's): a trace stops with
-- stop_reason "gap_limit" after `gap_limit` consecutive silent hops (every
-- probe of the hop timed out), but only once the hop after them has been
-- probed too and was silent as well, and no hop beyond them answered:
-- while the trace waits for that hop, the probes in flight beyond it have
-- their chance, so a path that goes on is not a gap, whatever the number
-- of probes in flight (-N) or per hop (-q).

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
    -- a link-local destination's zone (fe80::1%eth0) is not in the
    -- address that answered
    dst = dst and dst:gsub("%%.*$", "")
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

-- The adaptive wait. Each hop keeps an estimate of its round-trip time as
-- TCP's retransmission timer does (RFC 6298): the first reply's RTT R sets
-- SRTT = R and RTTVAR = R / 2; each later one sets RTTVAR = 3/4 RTTVAR +
-- 1/4 |SRTT - R|, then SRTT = 7/8 SRTT + 1/8 R. When hop H answers a probe
-- with RTT R, the trace stops waiting for the probes still open at hop H
-- and below it, each at this many seconds after it was sent:
--
--   min(MAX, max(MIN, max(F * R, SRTT + 4 * RTTVAR) + GRAIN))
--
-- F is HERE for a probe at hop H, NEAR for a probe at an earlier hop (-w
-- MAX,HERE,NEAR,MIN; traceroute's -w MAX,HERE,NEAR factors). SRTT and
-- RTTVAR are hop H's after R; SRTT + 4 * RTTVAR is the RFC's bound on an
-- RTT that the hop's replies so far make likely, F * R traceroute's, and
-- GRAIN (M.GRAIN seconds) the precision of the clocks and of the
-- scheduling of both ends: no bound comes closer than that to the RTTs it
-- is made of, however fast the path. A probe's wait only ever shortens.
-- A probe given up on is not lost yet: it stays open until MAX, and its
-- reply counts until the trace ends.
M.GRAIN = 0.010

-- The wait (seconds after sending) that a reply of RTT rtt, from a hop
-- whose estimate is est = { srtt, rttvar }, allows a probe: factor is HERE
-- or NEAR, w the trace's { MAX, HERE, NEAR, MIN }. See above.
function M.give_up_after(w, factor, rtt, est)
  local bound = math.max(factor * rtt, est.srtt + 4 * est.rttvar) + M.GRAIN
  return math.min(w[1], math.max(w[4] or 0, bound))
end

-- est (a hop's { srtt, rttvar }, or nil before its first reply) updated
-- with a reply of RTT rtt, RFC 6298 section 2.
function M.estimate(est, rtt)
  if not est then return { srtt = rtt, rttvar = rtt / 2 } end
  est.rttvar = 0.75 * est.rttvar + 0.25 * math.abs(est.srtt - rtt)
  est.srtt = 0.875 * est.srtt + 0.125 * rtt
  return est
end

-- Path MTU discovery (o.pmtu; traceroute --mtu). RFC 1191's plateaus: the
-- sizes to try below a size that a router refused without saying which it
-- could forward (an old router's frag needed with a next-hop MTU of 0), or
-- that the sender refused without naming its device's MTU.
M.PLATEAUS = { 65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68 }

-- The packet size (IP header included) to retry with after outcome r of a
-- probe of size bytes, or nil when r does not say the packet was too big:
-- a router's frag needed (IPv4) or packet too big (IPv6) names the next
-- hop's MTU; a local EMSGSIZE (the DF'd packet is over the outgoing
-- device's MTU: the engine names that MTU) too. least: the smallest size a
-- probe can have (its headers and payload); nil as well when the MTU
-- named is not smaller than size or too small for a probe.
function M.shrunk(r, size, least)
  local mtu
  if r.status == "reply" and (r.kind == "packet_too_big" or
      (r.kind == "dest_unreachable" and r.code == "frag_needed")) then
    mtu = r.mtu or 0
  elseif r.status == "failed" and r.error and r.error.name == "EMSGSIZE" then
    mtu = r.mtu or 0
  else
    return nil
  end
  if mtu == 0 then
    for _, p in ipairs(M.PLATEAUS) do
      if p < size then mtu = p break end
    end
  end
  if mtu > 0 and mtu < size and mtu >= least then return mtu end
  return nil
end

-- One flow of probes (a classic or Paris strategy instance); see M.run.
local function run_one(o)
  local eng = o.eng
  local w = o.wait
  local wmax, here, near = w[1], w[2], w[3]
  -- A strategy may allow fewer probes in flight than asked (Paris TCP:
  -- one; its probes share a 4-tuple).
  local sim = math.min(o.sim, o.strategy.inflight or o.sim)
  -- Path MTU discovery sends one probe at a time (traceroute --mtu's -N
  -- 1): each goes out at the size the probes before it found.
  local pmtu = o.pmtu
  local psize = pmtu and pmtu.size
  if pmtu then sim = 1 end
  local rule = o.rule or retry.default
  local default_rule = rule == retry.default
  local spec_of = o.strategy.spec
  local queries, max_ttl, dst = o.queries, o.max_ttl, o.dst
  local interrupted = o.interrupted
  local hops = {}          -- [ttl] = { ttl =, probes = { [q] = result }, got = }
  local inflight = {}      -- id -> rec (open probes, given up on or not)
  local n_inflight = 0     -- open probes the trace still waits for
  local n_given_up = 0     -- open probes it no longer waits for
  local ests = {}          -- [ttl] = the hop's RTT estimate (M.estimate)
  local give_up_timer, give_up_due -- the next give-up check, and when
  local drain_timer        -- the last wait for given-up probes (M.GRAIN)
  local limit = max_ttl    -- no probe beyond this TTL
  local horizon = horizon_of(o.campaign, o.first_ttl, max_ttl)
  local below = 0          -- probes in flight below the horizon
  local max_rtt, max_est  -- the largest RTT of a reply so far, its hop's estimate
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
  local gap_wait = false   -- a gap is found, the probes beyond it have their chance
  local gap_timer          -- when they will have had it

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
  local flush, issue, finish_if_idle, arm_give_up

  -- Have the probes open beyond ttl had their chance? Each must have been
  -- out for the wait that the trace's slowest reply allows (M.give_up_after
  -- with NEAR); if not, flush runs again once they have. Nothing answered
  -- yet: no reply says how long an answer takes, none is waited for.
  local function beyond_had_chance(ttl)
    if not max_rtt then return true end
    local chance = M.give_up_after(w, near, max_rtt, max_est)
    local now, due = eng:now(), nil
    for _, rec in pairs(inflight) do
      if rec.ttl > ttl and rec.sent + chance > now + 0.0005 then
        due = math.max(due or 0, rec.sent + chance)
      end
    end
    if not due then return true end
    if not gap_timer then
      gap_timer = eng:after(due - now, function()
        gap_timer = nil
        flush()
        issue()
        finish_if_idle()
      end)
    end
    return false
  end

  -- After gap_limit silent hops the trace stops only once the next hop is
  -- complete and silent too, the probes already out beyond it have had
  -- their chance, and nothing beyond answered. The hop after the gap is
  -- not handed over: it only tells that the gap goes on.
  function flush()
    local gap_limit = o.gap_limit or 0
    while printed < limit and hop_complete(printed + 1) do
      if gap_limit > 0 and gap >= gap_limit and silent(hops[printed + 1]) and
         not answered_beyond(printed) then
        gap_wait = true
        if beyond_had_chance(printed + 1) then
          gap_wait = false
          cut(printed, "gap_limit")
        end
        break
      end
      gap_wait = false
      printed = printed + 1
      if o.on_hop then o.on_hop(hops[printed]) end
      gap = silent(hops[printed]) and gap + 1 or 0
    end
  end

  -- Stop waiting for rec: the trace may send more and end without it; a
  -- reply to it still counts until then.
  local function give_up(rec)
    rec.given_up = true
    n_inflight = n_inflight - 1
    n_given_up = n_given_up + 1
    if rec.below then
      below = below - 1
      rec.below = nil
    end
  end

  -- Give up on every probe whose wait is over, then check again at the
  -- next deadline.
  local function on_give_up_timer()
    give_up_timer, give_up_due = nil, nil
    local now = eng:now()
    for _, rec in pairs(inflight) do
      if not rec.given_up and rec.deadline and rec.deadline <= now + 0.0005 then
        give_up(rec)
      end
    end
    issue()
    finish_if_idle()
    arm_give_up()
  end

  function arm_give_up()
    local due
    for _, rec in pairs(inflight) do
      if not rec.given_up and rec.deadline and (not due or rec.deadline < due) then
        due = rec.deadline
      end
    end
    if due == give_up_due then return end
    if give_up_timer then eng:cancel_timer(give_up_timer) end
    give_up_timer, give_up_due = nil, due
    if due then
      give_up_timer = eng:after(math.max(0, due - eng:now()), on_give_up_timer)
    end
  end

  -- A reply of hop ttl updates the hop's estimate and shortens the waits of
  -- the probes open at ttl (HERE) and before it (NEAR): M.give_up_after.
  local function adapt(r, ttl)
    local rtt = r.rtt
    if not rtt then return end
    local est = M.estimate(ests[ttl], rtt)
    ests[ttl] = est
    if rtt == max_rtt then max_est = est end
    local w_here = M.give_up_after(w, here, rtt, est)
    local w_near = M.give_up_after(w, near, rtt, est)
    for _, rec in pairs(inflight) do
      local t = rec.ttl
      if t <= ttl and not rec.given_up then
        local d = rec.sent + (t == ttl and w_here or w_near)
        if not rec.deadline or d < rec.deadline then rec.deadline = d end
      end
    end
    arm_give_up()
  end

  local function record(rec, r)
    r.id = nil
    r.retries = rec.earlier
    local hop = hop_at(rec.ttl)
    hop.probes[rec.q] = r
    hop.got = hop.got + 1
    if rec.pmtu then
      -- this probe went out again at the size its first attempt learnt
      r.pmtu = rec.pmtu
      hop.mtu = math.min(hop.mtu or rec.pmtu, rec.pmtu)
    end
  end

  -- The trace ends when it waits for nothing more: at once if no probe is
  -- open, else after reading what has arrived and M.GRAIN seconds more for
  -- the probes it gave up on; those still open then are timeouts.
  function finish_if_idle()
    if n_inflight > 0 or #reissue_queue > 0 or
       not (next_ttl > limit or interrupted()) or done.fired() then
      return
    end
    if n_given_up == 0 then
      if drain_timer then eng:cancel_timer(drain_timer) end
      drain_timer = nil
      done.fire()
    elseif not drain_timer then
      drain_timer = eng:after(M.GRAIN, function()
        drain_timer = false
        -- what arrived in the grain is read before the rest is given up:
        -- this timer may run before the loop has read a reply that is
        -- there (a busy machine kept us off the CPU past the grain)
        eng:read_pending()
        if done.fired() then return end
        local ids = {}
        for id, rec in pairs(inflight) do
          if rec.given_up then ids[#ids + 1] = id end
        end
        for _, id in ipairs(ids) do eng:cancel(id) end
        finish_if_idle()
      end)
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
    stall_timer = eng:after(M.give_up_after(w, near, max_rtt, max_est), function()
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
    if rec.given_up then
      n_given_up = n_given_up - 1
    else
      n_inflight = n_inflight - 1
    end
    if rec.below then below = below - 1 end
    local status = r.status
    if status == "failed" and r.error and r.error.name == "ECANCELED" and
       rec.given_up and rec.ttl <= limit then
      -- Given up on and still unanswered when the trace ends: a timeout.
      r.status, r.error, status = "timeout", nil, "timeout"
    end
    if status == "failed" and r.error and r.error.name == "ECANCELED" then
      -- Ours: past the destination, or interrupted. Not a network outcome.
      rec.cancelled = true
    elseif pmtu and rec.ttl <= limit and M.shrunk(r, psize, pmtu.least) then
      -- Too big for the path: the same TTL goes out again at the size
      -- learnt, and shows it (traceroute's F=). The outcome stays visible
      -- on the probe that replaces it. Sizes only shrink: this ends.
      psize = M.shrunk(r, psize, pmtu.least)
      r.id = nil
      local earlier = rec.earlier or json.array{}
      earlier[#earlier + 1] = r
      reissue_queue[#reissue_queue + 1] = { ttl = rec.ttl, q = rec.q,
        reissues = rec.reissues, earlier = earlier, pmtu = psize }
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
        arm_give_up()
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

  local function send(ttl, q, reissues, earlier, found)
    local spec = spec_of(ttl, seq)
    seq = seq + 1
    spec.wait = wmax
    if pmtu then
      -- DF, limited by the device's MTU only: a path MTU that the kernel
      -- learnt from an earlier frag needed / packet too big (of this run or
      -- another) would fail the send locally with EMSGSIZE and hide the
      -- router that is the bottleneck
      spec.size, spec.df = psize - pmtu.headers, "probe"
    end
    local rec = { ttl = ttl, q = q, reissues = reissues or 0, sent = eng:now(),
      earlier = earlier, below = ttl < horizon or nil, pmtu = found }
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
        if re.ttl <= limit then send(re.ttl, re.q, re.reissues, re.earlier, re.pmtu) end
      elseif next_ttl <= limit and next_ttl <= horizon and not gap_wait then
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
  if gap_timer then eng:cancel_timer(gap_timer) end
  if give_up_timer then eng:cancel_timer(give_up_timer) end
  if drain_timer then eng:cancel_timer(drain_timer) end
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
      out[#out + 1] = { ttl = ttl, probes = hop.probes, mtu = hop.mtu }
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
    path_mtu = psize,
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
-- traces of a campaign: where to stop sending at first; nil: no horizon),
-- pmtu (path MTU discovery, one flow only: { size = the first probe's
-- packet size in bytes, IP header included, headers = the IP and probe
-- headers' bytes, least = the smallest packet a probe can be }: probes go
-- out one at a time with DF set; a probe that comes back too big (M.shrunk)
-- goes out again at the size learnt, its result carries pmtu and its hop
-- mtu, that size; the trace's path_mtu is the size the last probe had).
-- Returns the trace table (stop_reason, reached, hops = { { ttl, probes } },
-- ...; without target naming fields).
function M.run(o)
  if o.strategy.flows then return run_flows(o) end
  return run_one(o)
end

return M
