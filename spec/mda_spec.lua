-- sonde.strategy.mda on simulated topologies: the stopping rule, the
-- economies, and the graph it reports, with every probe counted. A
-- topology is a function from (ttl, flow) to what answers; nothing is
-- sent.

local mda = require "sonde.strategy.mda"

-- A topology from a graph: succ[node] lists a node's next hops; a flow
-- picks one by pick(flow, node, n) (1..n), by default a hash of both, so
-- that one flow always takes the same branch (a Paris flow) and flows
-- spread over the branches. "dst" is the destination; nodes in silent[]
-- forward but never answer. Returns probe(list) for mda.run, and the log
-- of what was probed.
local function hash_pick(flow, node, n)
  local salt = 0
  for i = 1, #node do salt = salt * 31 + node:byte(i) end
  local h = (flow * 2654435761 + salt * 40503) % 4294967296
  return math.floor(h / 65536) % n + 1
end

local function topology(t)
  local pick = t.pick or hash_pick
  local log = {}
  local function at(ttl, flow)
    local node = t.root
    for _ = 2, ttl do
      if node == "dst" then break end
      local s = t.succ[node]
      if not s then return nil end         -- beyond the end: nothing answers
      node = s[pick(flow, node, #s)]
    end
    return node
  end
  local function probe(list)
    local out = {}
    for i, p in ipairs(list) do
      log[#log + 1] = { ttl = p.ttl, flow = p.flow }
      local node = at(p.ttl, p.flow)
      if t.error and t.error(p) then
        out[i] = { error = { name = "ENETUNREACH", message = "network is unreachable" } }
      elseif t.dead and t.dead[p.flow] then
        out[i] = { dead = true }
      elseif node and not (t.silent and t.silent[node]) then
        out[i] = { addr = node, final = node == "dst" and "reached"
          or (t.unreachable and t.unreachable[node] and "unreachable") or nil }
      else
        out[i] = {}
      end
    end
    return out
  end
  return probe, log
end

-- The nodes of a run: { [ttl] = "a b c" } (sorted addresses).
local function nodes(res)
  local out = {}
  for _, h in ipairs(res.hops) do
    local a = {}
    for _, n in ipairs(h.nodes) do a[#a + 1] = n.addr end
    out[h.ttl] = table.concat(a, " ")
  end
  return out
end

-- The links of a run: { "A>B", ... } (sorted), gaps as "A>2>B".
local function links(res)
  local out = {}
  for _, l in ipairs(res.links) do
    local gap = l.to_ttl - l.from_ttl
    out[#out + 1] = l.from .. ">" .. (gap > 1 and (gap .. ">") or "") .. l.to
  end
  table.sort(out)
  return out
end

local function sent_at(res, ttl)
  for _, h in ipairs(res.hops) do
    if h.ttl == ttl then return h.sent end
  end
  return 0
end

describe("the MDA stopping points", function()
  it("are those of Augustin et al. for 95 % confidence (6, 11, 16, 21, 27, ...)", function()
    local want = { 6, 11, 16, 21, 27, 33, 38, 44, 51, 57, 63, 70, 76, 83, 90, 96 }
    for k, n in ipairs(want) do
      assert.are.equal(n, mda.stopping_point(k, 95), "k = " .. k)
    end
  end)

  it("are 8, 15, 21, 28, 36, ... for 99 %", function()
    local want = { 8, 15, 21, 28, 36, 43, 51, 58, 66, 74 }
    for k, n in ipairs(want) do
      assert.are.equal(n, mda.stopping_point(k, 99), "k = " .. k)
    end
  end)

  it("bound the chance of missing a (k+1)-th next hop by 1 - confidence, and no fewer probes would", function()
    for k = 1, 12 do
      for _, c in ipairs{ 95, 99 } do
        local n = mda.stopping_point(k, c)
        assert.is_true(mda.miss_probability(k + 1, n) <= 1 - c / 100)
        assert.is_true(mda.miss_probability(k + 1, n - 1) > 1 - c / 100)
      end
    end
  end)

  it("refuses a confidence other than 95 or 99", function()
    assert.has_error(function() mda.stopping_point(1, 90) end, "mda: confidence must be 95 or 99")
  end)
end)

describe("the MDA on a chain (one interface per hop)", function()
  it("probes the first hop once, every other hop n_1 = 6 times, and the destination once", function()
    local probe = topology{ root = "A", succ = { A = { "B" }, B = { "C" }, C = { "dst" } } }
    local res = mda.run{ probe = probe }
    assert.are.same({ "A", "B", "C", "dst" }, { nodes(res)[1], nodes(res)[2], nodes(res)[3], nodes(res)[4] })
    assert.are.same({ 1, 6, 6, 1 }, { sent_at(res, 1), sent_at(res, 2), sent_at(res, 3), sent_at(res, 4) })
    assert.are.equal(14, res.probes_sent)
    assert.is_true(res.reached)
    assert.are.equal("reached", res.stop_reason)
    assert.are.same({ "A>B", "B>C", "C>dst" }, links(res))
  end)

  it("gives a first hop beyond TTL 1 the stopping rule too", function()
    local probe = topology{ root = "A", succ = { A = { "B" }, B = { "dst" } } }
    local res = mda.run{ probe = probe, first_ttl = 2 }
    assert.are.equal(6, sent_at(res, 2))
    assert.are.equal(1, sent_at(res, 3))
  end)
end)

describe("the MDA at a load balancer with w next hops", function()
  -- flows go round-robin: all w branches show up in the first w probes
  for w = 1, 8 do
    it(("sends exactly n_%d answered probes through it and finds all %d"):format(w, w), function()
      local succ = { A = {}, J = { "dst" } }
      for i = 1, w do
        succ.A[i] = "B" .. i
        succ["B" .. i] = { "J" }
      end
      local probe = topology{ root = "A", succ = succ,
        pick = function(flow, _, n) return (flow - 1) % n + 1 end }
      for _, c in ipairs{ 95, 99 } do
        local res = mda.run{ probe = probe, confidence = c }
        local found = {}
        for a in nodes(res)[2]:gmatch("%S+") do found[#found + 1] = a end
        assert.are.equal(w, #found)
        assert.are.equal(mda.stopping_point(w, c), sent_at(res, 2))
        assert.are.equal("J", nodes(res)[3])
        assert.are.equal("reached", res.stop_reason)
      end
    end)
  end

  it("stops at n_1 when the second branch takes only flows it never tries (the rule, not luck)", function()
    local probe = topology{ root = "A", succ = { A = { "B", "C" }, B = { "dst" }, C = { "dst" } },
      pick = function(flow, node) return (node == "A" and flow > 6) and 2 or 1 end }
    local res = mda.run{ probe = probe }
    assert.are.equal("B", nodes(res)[2])
    assert.are.equal(6, sent_at(res, 2))
  end)

  it("goes on to n_2 as soon as the second branch shows up, even at the 6th probe", function()
    local probe = topology{ root = "A", succ = { A = { "B", "C" }, B = { "dst" }, C = { "dst" } },
      pick = function(flow, node) return (node == "A" and flow == 6) and 2 or 1 end }
    local res = mda.run{ probe = probe }
    assert.are.equal("B C", nodes(res)[2])
    assert.are.equal(11, sent_at(res, 2))
  end)
end)

describe("the MDA on a diamond (r1 splits over two routers that rejoin)", function()
  local succ = { A = { "B", "C" }, B = { "D" }, C = { "D" }, D = { "dst" } }

  it("finds both branches and the links with 1 + 11 + 6 + 1 = 19 probes (scamper's tracelb: 19)", function()
    local probe = topology{ root = "A", succ = succ }
    local res = mda.run{ probe = probe }
    assert.are.same({ "A", "B C", "D", "dst" }, { nodes(res)[1], nodes(res)[2], nodes(res)[3], nodes(res)[4] })
    assert.are.same({ "A>B", "A>C", "B>D", "C>D", "D>dst" }, links(res))
    assert.are.same({ 1, 11, 6, 1 }, { sent_at(res, 1), sent_at(res, 2), sent_at(res, 3), sent_at(res, 4) })
    assert.are.equal(19, res.probes_sent)
    assert.are.equal("reached", res.stop_reason)
  end)

  it("probes the rejoin through both branches, half each", function()
    local probe, log = topology{ root = "A", succ = succ }
    mda.run{ probe = probe }
    local via = { B = 0, C = 0 }
    for _, p in ipairs(log) do
      if p.ttl == 3 then
        local b = succ.A[hash_pick(p.flow, "A", 2)]
        via[b] = via[b] + 1
      end
    end
    assert.are.same({ B = 3, C = 3 }, via)
  end)

  it("names the flows that went through each node", function()
    local probe = topology{ root = "A", succ = succ }
    local res = mda.run{ probe = probe }
    local two = res.hops[2].nodes
    assert.are.equal(11, #two[1].flows + #two[2].flows)
    for _, n in ipairs(two) do
      for _, f in ipairs(n.flows) do
        assert.are.equal(n.addr, succ.A[hash_pick(f, "A", 2)])
      end
    end
    assert.are.equal("reached", res.hops[4].nodes[1].final)
  end)
end)

describe("the MDA on a meshed diamond (each of two routers splits over the same two)", function()
  it("gives each router its own n_k probes, making flows through it at the hop before", function()
    local succ = { A = { "B", "C" }, B = { "D", "E" }, C = { "D", "E" }, D = { "dst" }, E = { "dst" } }
    local probe = topology{ root = "A", succ = succ }
    local res = mda.run{ probe = probe }
    assert.are.equal("B C", nodes(res)[2])
    assert.are.equal("D E", nodes(res)[3])
    assert.are.same({ "A>B", "A>C", "B>D", "B>E", "C>D", "C>E", "D>dst", "E>dst" }, links(res))
    -- through B and through C: n_2 = 11 answered probes each at TTL 3
    local per = { B = 0, C = 0 }
    for _, l in ipairs(res.links) do
      if l.from_ttl == 2 then per[l.from] = per[l.from] + #l.flows end
    end
    assert.is_true(per.B >= 11 and per.C >= 11, ("B %d, C %d"):format(per.B, per.C))
  end)
end)

describe("the MDA on paths of unequal length", function()
  it("follows the longer branch after the shorter one reached the destination", function()
    local succ = { A = { "B", "C" }, B = { "dst" }, C = { "E" }, E = { "dst" } }
    local probe = topology{ root = "A", succ = succ }
    local res = mda.run{ probe = probe }
    assert.are.equal("B C", nodes(res)[2])
    assert.are.equal("E dst", nodes(res)[3])
    assert.are.equal("dst", nodes(res)[4])
    assert.are.same({ "A>B", "A>C", "B>dst", "C>E", "E>dst" }, links(res))
    assert.are.equal("reached", res.stop_reason)
  end)
end)

describe("the MDA across silent hops", function()
  it("shows a silent hop as no node, links across it, and goes on", function()
    local succ = { A = { "B" }, B = { "C" }, C = { "dst" } }
    local probe = topology{ root = "A", succ = succ, silent = { B = true } }
    local res = mda.run{ probe = probe }
    assert.are.equal("", nodes(res)[2])
    assert.are.equal("C", nodes(res)[3])
    assert.are.same({ "A>2>C", "C>dst" }, links(res))
    -- n_1 silent flows, each tried twice
    assert.are.equal(12, sent_at(res, 2))
  end)

  it("stops after gap_limit silent hops in a row", function()
    local succ = { A = { "B" }, B = { "C" }, C = { "D" }, D = { "dst" } }
    local probe = topology{ root = "A", succ = succ, silent = { B = true, C = true, D = true } }
    local res = mda.run{ probe = probe, gap_limit = 2, attempts = 1 }
    assert.are.equal("gap_limit", res.stop_reason)
    assert.is_false(res.reached)
    assert.are.equal(3, #res.hops)
  end)

  it("stops at max_ttl when the destination never answers", function()
    local succ = { A = { "B" }, B = { "C" }, C = { "dst" } }
    local probe = topology{ root = "A", succ = succ, silent = { dst = true } }
    local res = mda.run{ probe = probe, max_ttl = 5, gap_limit = 0, attempts = 1 }
    assert.are.equal("max_ttl", res.stop_reason)
    assert.are.equal(5, res.hops[#res.hops].ttl)
  end)
end)

describe("the MDA's other ways to stop", function()
  local succ = { A = { "B", "C" }, B = { "D" }, C = { "D" }, D = { "dst" } }

  it("stops at max_probes, with what it found", function()
    local probe, log = topology{ root = "A", succ = succ }
    local res = mda.run{ probe = probe, max_probes = 9 }
    assert.are.equal("max_probes", res.stop_reason)
    assert.are.equal(9, res.probes_sent)
    assert.are.equal(9, #log)
  end)

  it("stops on a local error and reports it", function()
    local probe = topology{ root = "A", succ = succ, error = function(p) return p.ttl == 2 end }
    local res = mda.run{ probe = probe }
    assert.are.equal("error", res.stop_reason)
    assert.are.equal("ENETUNREACH", res.error.name)
  end)

  it("ends with unreachable when a router says so", function()
    local probe = topology{ root = "A", succ = { A = { "B" }, B = { "dst" } }, unreachable = { B = true } }
    local res = mda.run{ probe = probe }
    assert.are.equal("unreachable", res.stop_reason)
    assert.is_false(res.reached)
  end)

  it("stops when interrupted", function()
    local probe = topology{ root = "A", succ = succ }
    local calls = 0
    local res = mda.run{ probe = function(l) calls = calls + 1 return probe(l) end,
      interrupted = function() return calls >= 2 end }
    assert.are.equal("interrupted", res.stop_reason)
  end)

  it("leaves a flow that cannot be sent (its port is busy) and uses others", function()
    local probe = topology{ root = "A", succ = succ, dead = { [2] = true, [3] = true } }
    local res = mda.run{ probe = probe }
    assert.are.equal("B C", nodes(res)[2])
    assert.are.equal("reached", res.stop_reason)
    for _, h in ipairs(res.hops) do
      for _, n in ipairs(h.nodes) do
        for _, f in ipairs(n.flows) do assert.is_true(f ~= 2 and f ~= 3) end
      end
    end
  end)
end)
