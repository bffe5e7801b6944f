-- sonde.watch.round: one round of probes to one target on an engine, and
-- the deeper measurement (diagnosis) that events ask for.
--
-- paris and dublin rounds send -q probes to every TTL from 1 up to `limit`
-- at once (as one mtr round does), from a strategy instance: Paris holds
-- one flow, so every round sees the same path of a load-balanced network;
-- Dublin spreads the -q probes of a TTL over its flows, so a round sees
-- every branch those flows take. An mda round is a whole MDA exploration
-- (sonde.strategy.mda), bounded by its own probe budget.

local tracer = require "sonde.trace"
local paris = require "sonde.strategy.paris"
local dublin = require "sonde.strategy.dublin"
local mda = require "sonde.strategy.mda"
local retry = require "sonde.retry"

local M = {}

-- A strategy instance for a target (sonde.strategy.paris, .dublin or
-- .mda, with their default ports and checksums: the engine keeps the
-- probes of different targets apart by their destinations). o: strategy,
-- proto, dst, port, wait, flows (dublin).
function M.strategy(o)
  if o.strategy == "dublin" then
    return dublin.new{ proto = o.proto, dst = o.dst, port = o.port, wait = o.wait, flows = o.flows }
  elseif o.strategy == "mda" then
    return mda.new{ dst = o.dst, port = o.port, wait = o.wait }
  end
  return paris.new{ proto = o.proto, dst = o.dst, port = o.port, wait = o.wait }
end

local function outcome(r, dst, ttl)
  local p = { ttl = ttl, status = r.status, kind = r.kind, addr = r.addr, rtt = r.rtt }
  if r.status == "reply" then p.final = tracer.final(r, dst) or nil end
  if r.status == "failed" then p.error = r.error end
  return p
end

-- Send n probes at once and wait until each has had outcome(i, r): its
-- result, a "failed" one when it could not start, or nil when o.stopped()
-- said to send no more before it. spec_of(i) makes the i-th spec as it is
-- sent (it may take the next sequence number). The probes in flight are
-- o.track()ed for a stop to cancel. sonde.init's probe_all waits for a
-- batch too, but neither hands out the ids nor stops part way.
local function probe_each(o, n, spec_of, outcome_of)
  local ev, left, waiting = o.eng:event(), n, false
  local function done(i, r)
    outcome_of(i, r)
    left = left - 1
    if left == 0 and waiting then ev.fire() end
  end
  for i = 1, n do
    if o.stopped() then
      done(i, nil)
    else
      local rec = {}
      local id, err, name = o.eng:probe_async(spec_of(i), function(r)
        rec.done = true
        if rec.id then o.untrack(rec.id) end
        done(i, r)
      end)
      if not id then
        done(i, { status = "failed", error = { name = name, message = err } })
      elseif not rec.done then
        rec.id = id
        o.track(id)
      end
    end
  end
  if left > 0 then
    waiting = true
    ev.wait()
  end
end

-- One round. o: eng, strat (M.strategy's), strategy (its name), dst,
-- limit, queries, seq (a table { n }: the target's sequence, carried from
-- round to round), stopped() (true: nothing more is sent), track(id) /
-- untrack(id) (the probes in flight, for a stop). -> { limit, probes }.
function M.run(o)
  if o.strategy == "mda" then return M.run_mda(o) end
  local probes, queries = {}, o.queries
  local flows = o.strat.flows and #o.strat.flows or 1
  local function ttl_of(i) return math.floor((i - 1) / queries) + 1 end
  probe_each(o, o.limit * queries, function(i)
    o.seq.n = o.seq.n + 1
    return o.strat.spec(ttl_of(i), o.seq.n, (i - 1) % queries % flows + 1)
  end, function(i, r)
    if r then probes[#probes + 1] = outcome(r, o.dst, ttl_of(i)) end
  end)
  return { limit = o.limit, probes = probes }
end

-- An MDA exploration as a round: each hop's nodes become its answers
-- (one "probe" per node per flow that reached it, RTT unknown: 0).
function M.run_mda(o)
  local function probe(list)
    local out = {}
    probe_each(o, #list, function(i)
      o.seq.n = o.seq.n + 1
      return o.strat.spec(list[i].ttl, o.seq.n, list[i].flow)
    end, function(i, r)
      if r == nil then
        out[i] = {}
      elseif r.status == "reply" then
        out[i] = { addr = r.addr, final = tracer.final(r, o.dst) or nil, rtt = r.rtt }
      elseif r.status == "skipped" then
        out[i] = { dead = true }
      elseif r.status == "failed" and not (r.error and r.error.name == "ECANCELED") then
        out[i] = { error = r.error }
      else
        out[i] = {}
      end
    end)
    return out
  end
  local res = mda.run{ probe = probe, first_ttl = 1, max_ttl = o.limit,
    max_flows = o.strat.max_flows, max_probes = 600, interrupted = o.stopped }
  local probes = {}
  for _, hop in ipairs(res.hops) do
    for _, node in ipairs(hop.nodes) do
      probes[#probes + 1] = { ttl = hop.ttl, status = "reply", addr = node.addr, rtt = 0,
        final = node.final }
    end
    if #hop.nodes == 0 then probes[#probes + 1] = { ttl = hop.ttl, status = "timeout" } end
  end
  return { limit = o.limit, probes = probes }
end

-- The diagnosis an event asks for: a Dublin trace (4 flows) or an MDA to
-- the target, summarised as { strategy, reached, stop_reason, duration,
-- hops = { { ttl, addrs } } }. o: eng, how ("dublin" | "mda"), dst, af,
-- proto, port, wait, max_ttl, stopped().
function M.diagnose(o)
  local eng, t0 = o.eng, o.eng:now()
  local hops = {}
  local res
  if o.how == "mda" then
    local strat = mda.new{ dst = o.dst, port = o.port, wait = o.wait }
    local inflight = {}
    local r = M.run_mda{ eng = eng, strat = strat, dst = o.dst, limit = o.max_ttl,
      seq = { n = 0 }, stopped = o.stopped,
      track = function(id) inflight[id] = true end, untrack = function(id) inflight[id] = nil end }
    local by = {}
    local reached = false
    for _, p in ipairs(r.probes) do
      by[p.ttl] = by[p.ttl] or {}
      if p.addr then by[p.ttl][p.addr] = true end
      if p.final == "reached" then reached = true end
    end
    for ttl = 1, o.max_ttl do
      if by[ttl] then
        local a = {}
        for k in pairs(by[ttl]) do a[#a + 1] = k end
        table.sort(a)
        hops[#hops + 1] = { ttl = ttl, addrs = a }
      end
    end
    return { strategy = "mda", reached = reached, hops = hops, duration = eng:now() - t0 }
  end
  res = tracer.run{ eng = eng, dst = o.dst, af = o.af, proto = o.proto,
    strategy = dublin.new{ proto = o.proto, dst = o.dst, port = o.port, wait = o.wait, flows = 4 },
    first_ttl = 1, max_ttl = o.max_ttl, queries = 1, wait = { o.wait, 3, 10, 0 }, sim = 16,
    rule = retry.default, gap_limit = 3, interrupted = o.stopped }
  for _, hop in ipairs(res.hops or {}) do
    local set, a = {}, {}
    for _, p in ipairs(hop.probes or {}) do
      if p.addr and not set[p.addr] then set[p.addr] = true; a[#a + 1] = p.addr end
    end
    table.sort(a)
    hops[#hops + 1] = { ttl = hop.ttl, addrs = a }
  end
  return { strategy = "dublin", flows = 4, reached = res.reached, stop_reason = res.stop_reason,
    hops = hops, duration = eng:now() - t0 }
end

return M
