-- The Multipath Detection Algorithm (Augustin, Friedman, Teixeira,
-- "Measuring load-balanced paths in the Internet", IMC 2007; the stopping
-- points of Augustin et al., E2EMON 2007; the hop-level economies of
-- MDA-Lite, Vermeulen et al., "Multilevel MDA-Lite Paris Traceroute", IMC
-- 2018): find every interface at every hop of a load-balanced path, and
-- the links between hops, with a stated confidence.
--
-- A flow is a flow identifier held constant (sonde mda: a UDP source port,
-- each probe Paris-stable, named by its checksum); a load balancer sends
-- every probe of a flow the same way, so a flow that reached vertex v at
-- TTL h-1 reaches a successor of v at TTL h. Flows are reused hop after
-- hop.
--
-- The stopping rule: at a vertex that has shown k successors, n_k probes
-- (answered ones) through it must have found no (k+1)-th before it is
-- ruled out; n_k is the smallest n for which n probes spread uniformly
-- over k+1 successors miss one of them with probability at most 1 - c
-- (c = 95% gives 6, 11, 16, 21, 27, ...; 99% gives 8, 15, 21, 28, 36, ...).
--
-- Hop by hop, at TTL h, with the vertices of TTL h-1 as predecessors:
--   * Hop-level probing (MDA-Lite): flows through the predecessors, taken
--     in turn from each (so that every predecessor gets its share, and at
--     least one probe), until the hop's answered probes reach n_k for the
--     k interfaces found at h. When h-1 has one vertex this is exactly the
--     MDA's rule for that vertex, and any new flow passes through it, so
--     new flows cost no probe at h-1.
--   * When both h-1 and h have two vertices or more (the case where a
--     vertex's own successors could hide behind the hop's count: meshed or
--     unevenly balanced diamonds), the full MDA follows: each predecessor
--     gets n_k answered probes for its own k successors. Flows through a
--     given predecessor that are missing are made by probing new flows at
--     h-1 ("node control"), a bounded number of times.
--   * The first probe of each predecessor goes alone, before the rest of
--     the hop: a predecessor whose flow reaches the destination has no
--     other successor (it delivers to the destination directly), so a hop
--     that is only the destination costs one probe per predecessor.
--   * The first hop (TTL 1, the source's own gateway) is probed once, as
--     scamper's tracelb does; a trace that starts further (first_ttl > 1)
--     applies the stopping rule there too.
-- A probe without an answer is sent again once (same flow); if it stays
-- silent it counts toward nothing. A hop where every probe stays silent is
-- a silent hop ("*": its flows go on to the next TTL); `gap_limit` silent
-- hops in a row end the run.
--
-- The algorithm is pure: it sends probes only through o.probe, so a spec
-- can run it on a simulated topology (a function of TTL and flow).

local defaults = require "sonde.defaults"

local M = { name = "mda" }

M.CONFIDENCES = { [95] = true, [99] = true }
M.MAX_FLOWS = 512

---------------------------------------------------------------------------
-- Stopping points
---------------------------------------------------------------------------

-- Probability that n probes, each sent to one of K equally likely
-- successors, leave at least one of them unseen: 1 - P(all K seen), from
-- the distribution of the number of distinct successors seen (a Markov
-- chain; no alternating sums, so no cancellation for large K).
function M.miss_probability(K, n)
  local p = { [0] = 1 }
  for j = 1, K do p[j] = 0 end
  for _ = 1, n do
    for j = K, 1, -1 do
      p[j] = p[j] * (j / K) + p[j - 1] * ((K - j + 1) / K)
    end
    p[0] = 0
  end
  return 1 - p[K]
end

local points = { [95] = {}, [99] = {} }

-- n_k: the answered probes through a vertex that has shown k successors
-- (k >= 1) after which a (k+1)-th is ruled out at `confidence` percent (95
-- or 99).
function M.stopping_point(k, confidence)
  confidence = confidence or 95
  local t = points[confidence]
  if not t then error("mda: confidence must be 95 or 99", 2) end
  if k < 1 then k = 1 end
  if not t[k] then
    local alpha = 1 - confidence / 100
    local n = t[k - 1] or (k + 1)
    while M.miss_probability(k + 1, n) > alpha + 1e-12 do n = n + 1 end
    t[k] = n
  end
  return t[k]
end

---------------------------------------------------------------------------
-- The strategy instance: the probes of a flow
---------------------------------------------------------------------------

-- o: dst, port (UDP destination port, default 33434), sport (the first
-- flow's source port, default 33456: never the destination port, so that
-- probes to this very host do not reach their own socket), wait, size. Flow f leaves from
-- source port sport + f - 1 (bind "fixed": one socket per port) and each
-- probe carries its own UDP checksum (raw sockets needed). spec(ttl, seq,
-- flow); seq counts the run's probes from 1.
function M.new(o)
  local s = { sport = o.sport or defaults.FLOW_SPORT, dport = o.port or defaults.UDP_PORT }
  s.max_flows = math.min(M.MAX_FLOWS, 65536 - s.sport)
  function s.spec(ttl, seq, flow)
    return { dst = o.dst, proto = "udp", ttl = ttl, wait = o.wait, seq = seq,
      size = o.size, dport = s.dport, bind = "fixed", sport = s.sport + flow - 1,
      checksum = seq % 65534 + 1 }
  end
  return s
end

---------------------------------------------------------------------------
-- The algorithm
---------------------------------------------------------------------------

local ROOT = {}   -- the predecessor of the first hop probed

-- Runs the MDA. o:
--   probe(list)   sends the probes of list = { { ttl =, flow = }, ... } (at
--                 once) and returns their outcomes in the same order:
--                 { addr = who answered (nil: no answer), final =
--                 "reached" | "unreachable" | nil (the path ends there),
--                 dead = true (the flow cannot be used: not sent, e.g. its
--                 source port is busy), error = { name, message } (a local
--                 error: the run stops) }
--   first_ttl, max_ttl (defaults 1, 30), confidence (95 | 99), gap_limit
--   (silent hops in a row that end the run; default 3, 0: none),
--   max_probes (default 3000), max_flows (default M.MAX_FLOWS), attempts
--   (tries per probe, default 2), interrupted() (true: stop).
-- Returns { hops = { { ttl, sent, nodes = { { addr, flows, final } } } },
-- links = { { from, from_ttl, to, to_ttl, flows } }, probes_sent, flows
-- (how many flows were used), reached, stop_reason ("reached",
-- "unreachable", "max_ttl", "gap_limit", "max_probes", "interrupted",
-- "error"), error }. Lists are sorted (nodes by address, links by TTL and
-- addresses); flows are flow numbers (1, 2, ...).
function M.run(o)
  local conf = o.confidence or 95
  local first, last = o.first_ttl or 1, o.max_ttl or 30
  local gap_limit = o.gap_limit == nil and 3 or o.gap_limit
  local max_probes = o.max_probes or 3000
  local max_flows = o.max_flows or M.MAX_FLOWS
  local attempts = o.attempts or 2
  local interrupted = o.interrupted or function() return false end
  local function n_k(k) return M.stopping_point(k, conf) end

  local sent = 0
  local stop, err
  local path = {}       -- path[flow][ttl] = addr | false (silent)
  local probed = {}     -- probed[flow][ttl] = true: a probe went there
  local dead = {}       -- flows that cannot be used
  local nflows = 0
  local H = {}          -- H[ttl] = { sent, order = {addr}, final = {addr=kind} }
  local reached = false

  local function hop(ttl)
    local h = H[ttl]
    if not h then
      h = { sent = 0, order = {}, seen = {}, final = {} }
      H[ttl] = h
    end
    return h
  end

  local function new_flow()
    if nflows >= max_flows then return nil end
    nflows = nflows + 1
    path[nflows], probed[nflows] = {}, {}
    return nflows
  end

  -- Sends list (each { ttl, flow }); records what answered. Returns false
  -- when the run must stop.
  local function send(list)
    if stop then return false end
    if interrupted() then stop = "interrupted" return false end
    local todo = {}
    for _, p in ipairs(list) do todo[#todo + 1] = p end
    for _ = 1, attempts do
      if #todo == 0 then break end
      if sent + #todo > max_probes then
        while #todo > 0 and sent + #todo > max_probes do todo[#todo] = nil end
        stop = "max_probes"
        if #todo == 0 then return false end
      end
      local outs = o.probe(todo)
      sent = sent + #todo
      local again = {}
      for i, p in ipairs(todo) do
        local r = outs[i] or {}
        local h = hop(p.ttl)
        h.sent = h.sent + 1
        probed[p.flow][p.ttl] = true
        if r.error then
          err = err or r.error
          stop = "error"
        elseif r.dead then
          dead[p.flow] = true
          path[p.flow][p.ttl] = false
        elseif r.addr then
          path[p.flow][p.ttl] = r.addr
          if not h.seen[r.addr] then
            h.seen[r.addr] = true
            h.order[#h.order + 1] = r.addr
          end
          if r.final then
            h.final[r.addr] = r.final
            if r.final == "reached" then reached = true end
          end
        else
          path[p.flow][p.ttl] = false
          again[#again + 1] = p
        end
      end
      if stop then return false end
      if interrupted() then stop = "interrupted" return false end
      todo = again
    end
    return true
  end

  -- The vertices after which TTL ttl is probed: { addr, flows, single }
  -- for every non-final address at ttl - 1 (single: the hop had only it),
  -- or one silent vertex "*" holding the flows of a silent hop.
  local function predecessors(ttl)
    if ttl == first then return { { addr = ROOT, flows = {}, single = true } } end
    local h = H[ttl - 1]
    local preds = {}
    local silent = #h.order == 0
    if silent then
      local flows = {}
      for f = 1, nflows do
        if probed[f][ttl - 1] and path[f][ttl - 1] == false and not dead[f] then
          flows[#flows + 1] = f
        end
      end
      return { { addr = "*", flows = flows, single = true } }
    end
    local live = 0
    for _, a in ipairs(h.order) do if not h.final[a] then live = live + 1 end end
    for _, a in ipairs(h.order) do
      if not h.final[a] then
        local flows = {}
        for f = 1, nflows do
          if path[f][ttl - 1] == a and not dead[f] then flows[#flows + 1] = f end
        end
        preds[#preds + 1] = { addr = a, flows = flows, single = #h.order == 1 }
      end
    end
    return preds, live
  end

  -- Probes TTL ttl after preds. Returns false when the run must stop.
  local function probe_hop(ttl, preds)
    local h = hop(ttl)
    local used = {}       -- flow -> true: probed (or being probed) at ttl
    local through = {}    -- flow -> pred
    local cursor = {}     -- pred -> next index in pred.flows
    local done = {}       -- pred -> true: reached the destination through it
    for _, v in ipairs(preds) do
      cursor[v] = 1
      for _, f in ipairs(v.flows) do through[f] = v end
    end

    -- The next unused flow through v, or nil.
    local function next_flow(v)
      while cursor[v] <= #v.flows do
        local f = v.flows[cursor[v]]
        cursor[v] = cursor[v] + 1
        if not used[f] and not dead[f] then return f end
      end
      return nil
    end

    -- A flow through v: a known one, or (v alone at its hop, or the
    -- first hop) a new one, which passes through v by necessity.
    local function flow_for(v)
      local f = next_flow(v)
      if f then return f end
      if v.single then
        f = new_flow()
        if not f then return nil end
        v.flows[#v.flows + 1] = f
        cursor[v] = #v.flows + 1
        through[f] = v
        -- inferred, not probed: it can only have gone through v
        if v.addr ~= ROOT and v.addr ~= "*" then path[f][ttl - 1] = v.addr end
        return f
      end
      return nil
    end

    -- Counts of the probes at ttl through the live predecessors: answered
    -- ones, the interfaces they found (k), and per predecessor v: answered
    -- (per[v]), its successors (succ[v]) and its silent probes (lost[v]).
    local function tally()
      local answered, k, lost_all, per, succ, lost, seen = 0, 0, 0, {}, {}, {}, {}
      for _, v in ipairs(preds) do per[v], succ[v], lost[v] = 0, {}, 0 end
      for f in pairs(used) do
        local a = path[f][ttl]
        local v = through[f]
        if v and not done[v] and not dead[f] then
          if a then
            answered = answered + 1
            per[v] = per[v] + 1
            succ[v][a] = true
            if not seen[a] then seen[a] = true; k = k + 1 end
          elseif a == false then
            lost_all = lost_all + 1
            lost[v] = lost[v] + 1
          end
        end
      end
      return answered, k, lost_all, per, succ, lost
    end

    local function mark_done()
      for f in pairs(used) do
        local a = path[f][ttl]
        if a and h.final[a] == "reached" and through[f] then done[through[f]] = true end
      end
    end

    local function live_preds()
      local l = {}
      for _, v in ipairs(preds) do if not done[v] then l[#l + 1] = v end end
      return l
    end

    local function fire(list)
      for _, p in ipairs(list) do used[p.flow] = true end
      return send(list)
    end

    -- Node control: new flows at ttl - 1 until `want` of them reach v (or
    -- the tries run out). Flows that reach another vertex join it.
    local function bring(v, want)
      local tries = n_k(math.max(1, #preds)) * want
      local got = 0
      while got < want and tries > 0 do
        local list = {}
        for _ = 1, math.min(want - got, tries) do
          local f = new_flow()
          if not f then break end
          list[#list + 1] = { ttl = ttl - 1, flow = f }
        end
        if #list == 0 then return true end
        tries = tries - #list
        if not send(list) then return false end
        for _, p in ipairs(list) do
          local a = path[p.flow][ttl - 1]
          for _, w in ipairs(preds) do
            if w.addr == a then
              w.flows[#w.flows + 1] = p.flow
              through[p.flow] = w
              if w == v then got = got + 1 end
            end
          end
        end
      end
      return true
    end

    -- 1. One probe through each predecessor, alone.
    local list = {}
    local first_hop = ttl == 1 and ttl == first
    for _, v in ipairs(preds) do
      local f = flow_for(v)
      if f then list[#list + 1] = { ttl = ttl, flow = f } end
    end
    if #list > 0 and not fire(list) then return false end
    mark_done()
    if first_hop then return true end

    -- 2. Hop-level: n_k answered probes for the hop's k interfaces. As
    -- many silent probes end it too (a silent hop: n_1 probes, none
    -- answered; a lossy one: no endless probing).
    while true do
      local live = live_preds()
      if #live == 0 then break end
      local answered, k, lost = tally()
      local target = n_k(math.max(k, 1))
      local need = math.min(target - answered, target - lost)
      if need <= 0 then break end
      list = {}
      local progress = true
      while #list < need and progress do
        progress = false
        for _, v in ipairs(live) do
          if #list >= need then break end
          local f = flow_for(v)
          if f then
            list[#list + 1] = { ttl = ttl, flow = f }
            progress = true
          end
        end
      end
      if #list == 0 then
        -- no flow left through the predecessors: make some
        if not bring(live[1], need) then return false end
        for _, v in ipairs(live) do
          local f = flow_for(v)
          if f then list[#list + 1] = { ttl = ttl, flow = f } end
        end
        if #list == 0 then break end
      end
      if not fire(list) then return false end
      mark_done()
    end

    -- 3. Full MDA where hop-level counting is not enough.
    local _, k = tally()
    if #live_preds() >= 2 and k >= 2 then
      for _, v in ipairs(preds) do
        while not done[v] do
          local _, _, _, per, succ, lost = tally()
          local ks = 0
          for _ in pairs(succ[v]) do ks = ks + 1 end
          local target = n_k(math.max(ks, 1))
          local need = math.min(target - per[v], target - lost[v])
          if need <= 0 then break end
          list = {}
          for _ = 1, need do
            local f = flow_for(v)
            if not f then break end
            list[#list + 1] = { ttl = ttl, flow = f }
          end
          if #list == 0 then
            local before = #v.flows
            if not bring(v, need) then return false end
            if #v.flows == before then break end   -- v cannot be reached
          else
            if not fire(list) then return false end
            mark_done()
          end
        end
      end
    end
    return true
  end

  local gap = 0
  local ttl = first
  while true do
    local preds = predecessors(ttl)
    if #preds == 0 then break end
    if ttl > last then stop = "max_ttl" break end
    if not probe_hop(ttl, preds) then break end
    local h = H[ttl]
    gap = #h.order == 0 and gap + 1 or 0
    if gap_limit > 0 and gap >= gap_limit then stop = "gap_limit" break end
    ttl = ttl + 1
  end
  if not stop then
    stop = reached and "reached" or "unreachable"
  end

  -- The graph: nodes per TTL, links between consecutive answers of a flow.
  local out = { hops = {}, links = {}, probes_sent = sent, flows = nflows,
    reached = reached, stop_reason = stop, error = err }
  local maxttl = first - 1
  for t in pairs(H) do if t > maxttl then maxttl = t end end
  for t = first, maxttl do
    local h = H[t]
    if h then
      local nodes = {}
      for _, a in ipairs(h.order) do
        local flows = {}
        for f = 1, nflows do
          if path[f][t] == a and not dead[f] then flows[#flows + 1] = f end
        end
        nodes[#nodes + 1] = { addr = a, flows = flows, final = h.final[a] }
      end
      table.sort(nodes, function(x, y) return x.addr < y.addr end)
      out.hops[#out.hops + 1] = { ttl = t, sent = h.sent, nodes = nodes }
    end
  end
  local links = {}
  for f = 1, nflows do
    local prev, prev_ttl
    for t = first, dead[f] and first - 1 or maxttl do
      local a = path[f][t]
      if a then
        if prev then
          local key = prev_ttl .. " " .. prev .. " " .. t .. " " .. a
          local l = links[key]
          if not l then
            l = { from = prev, from_ttl = prev_ttl, to = a, to_ttl = t, flows = {} }
            links[key] = l
            out.links[#out.links + 1] = l
          end
          l.flows[#l.flows + 1] = f
        end
        prev, prev_ttl = a, t
      end
    end
  end
  table.sort(out.links, function(x, y)
    if x.from_ttl ~= y.from_ttl then return x.from_ttl < y.from_ttl end
    if x.from ~= y.from then return x.from < y.from end
    if x.to_ttl ~= y.to_ttl then return x.to_ttl < y.to_ttl end
    return x.to < y.to
  end)
  return out
end

return M
