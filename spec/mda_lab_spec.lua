-- sonde mda over ECMP diamonds (spec/support/lab.lua's lab.diamond): it
-- finds every branch and the links, reports how many probes it sent, and
-- sends no more than scamper's tracelb (`scamper -c "tracelb -P
-- udp-sport"`, the anchor of issue 4) on the same diamond.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

local AS_NOBODY = helpers.AS_NOBODY

local sonde = helpers.sonde_in

-- sonde mda -n --format json ARGS -> the document (validated)
local function mda(l, args)
  local argv = { "mda", "-n", "--format", "json" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local out, err, code = sonde(l, argv)
  assert(code == 0, ("exit %d: %s"):format(code, err))
  local ok, why = schema.validate(out)
  assert(ok, why)
  return cjson.decode(out)
end

local function addr(fam, node) return fam == 4 and node.v4 or node.v6 end

-- { [ttl] = sorted addresses } and sorted "a>b" links of a document
local function graph(d)
  local nodes, links = {}, {}
  for _, h in ipairs(d.hops) do
    local a = {}
    for _, n in ipairs(h.nodes) do a[#a + 1] = n.addr end
    table.sort(a)
    nodes[h.ttl] = a
  end
  for _, k in ipairs(d.links) do links[#links + 1] = k.from .. ">" .. k.to end
  table.sort(links)
  return nodes, links
end

-- What the diamond is: nodes per TTL and links.
local function expected(l, fam)
  local nodes = { { addr(fam, l.split) }, {}, { addr(fam, l.join) }, { addr(fam, l.dst) } }
  local links = { addr(fam, l.join) .. ">" .. addr(fam, l.dst) }
  for _, b in ipairs(l.branches) do
    nodes[2][#nodes[2] + 1] = addr(fam, b)
    links[#links + 1] = addr(fam, l.split) .. ">" .. addr(fam, b)
    links[#links + 1] = addr(fam, b) .. ">" .. addr(fam, l.join)
  end
  table.sort(nodes[2])
  table.sort(links)
  return nodes, links
end

-- scamper's tracelb on the same diamond: { probec =, nodes = { addr = true } },
-- or nil when scamper is not installed. Its flows start at a source port of
-- its own choosing (its -s is not used by -P udp-sport), so now and then
-- (about 3 % of runs of a 2-branch diamond) it misses a branch, within its
-- confidence, and sends fewer probes: `want` (a set of addresses) makes it
-- try again, at most 3 times, until it finds them all.
local function scamper(l, dst, want)
  local _, _, has = helpers.run("command -v scamper")
  if has ~= 0 then return nil end
  local res
  for _ = 1, 3 do
    res = nil
    local out, err, code = l:exec("src", ("cd /tmp && timeout 60 scamper -O json -c 'tracelb -P udp-sport -d 33434 -W 15' -i %s"):format(dst))
    assert(code == 0, "scamper failed: " .. err)
    for line in out:gmatch("[^\n]+") do
      if line:find('"type":"tracelb"', 1, true) then
        local d = cjson.decode(line)
        local nodes = {}
        local function walk(t)
          if type(t) ~= "table" then return end
          if type(t.addr) == "string" then nodes[t.addr] = true end
          for _, v in pairs(t) do walk(v) end
        end
        walk(d.nodes)
        res = { probec = d.probec, nodes = nodes }
      end
    end
    assert(res, "no tracelb result from scamper:\n" .. out .. err)
    local all = true
    for a in pairs(want or {}) do if not res.nodes[a] then all = false end end
    if all then return res end
  end
  res.missed = true
  return res
end



helpers.lab_describe("sonde mda over an ECMP diamond of two branches", function()
  local l

  setup(function()
    l = lab.diamond{ name = "mda" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  for _, fam in ipairs{ 4, 6 } do
    it(("finds both branches and every link, in 19 probes (IPv%d)"):format(fam), function()
      local d = mda(l, { addr(fam, l.dst) })
      assert.are.equal("mda", d.type)
      assert.are.equal("reached", d.stop_reason)
      assert.is_true(d.reached)
      assert.are.equal(95, d.confidence)
      local nodes, links = graph(d)
      local wn, wl = expected(l, fam)
      assert.are.same(wn, nodes)
      assert.are.same(wl, links)
      -- 1 (first hop) + 11 (n_2 at the split) + 6 (n_1 at the join) + 1 (destination)
      assert.are.equal(19, d.probes_sent)
      assert.are.same({ 1, 11, 6, 1 }, { d.hops[1].sent, d.hops[2].sent, d.hops[3].sent, d.hops[4].sent })
      assert.are.equal(19, d.counters.sent)
      assert.are.equal("reached", d.hops[4].nodes[1].final)
      -- every flow of TTL 2 went through one branch: the kernel's choice for its ports
      assert.are.equal(11, #d.hops[2].nodes[1].flows + #d.hops[2].nodes[2].flows)
      for _, n in ipairs(d.hops[2].nodes) do
        for _, f in ipairs(n.flows) do
          local out = l:check("r1", ("ip -%d route get %s from %s iif to-src ipproto udp sport %d dport 33434")
            :format(fam, addr(fam, l.dst), addr(fam, l.src), d.sport + f - 1))
          assert.are.equal(n.addr, out:match("via (%S+)"))
        end
      end
    end)
  end

  it("sends no more probes than scamper's tracelb, and finds every node it finds", function()
    for _, fam in ipairs{ 4, 6 } do
      local d = mda(l, { addr(fam, l.dst) })
      local mine = {}
      for _, h in ipairs(d.hops) do
        for _, n in ipairs(h.nodes) do mine[n.addr] = true end
      end
      local sc = scamper(l, addr(fam, l.dst), mine)
      if not sc then
        pending("scamper is not installed (apt-get install scamper): comparison skipped")
        return
      end
      assert.is_nil(sc.missed, "scamper missed a branch 3 times in a row")
      for a in pairs(sc.nodes) do assert.is_true(mine[a], "scamper found " .. a .. ", sonde did not") end
      assert.is_true(d.probes_sent <= sc.probec,
        ("sonde mda sent %d probes, scamper tracelb %d"):format(d.probes_sent, sc.probec))
      io.stderr:write(("\n  [IPv%d diamond: sonde mda %d probes, scamper tracelb %d probes]\n")
        :format(fam, d.probes_sent, sc.probec))
    end
  end)

  it("takes more probes for 99 % confidence: n_2 = 15 at the split", function()
    local d = mda(l, { "--confidence", "99", l.dst.v4 })
    assert.are.equal(99, d.confidence)
    assert.are.equal(15, d.hops[2].sent)
    assert.are.equal(8, d.hops[3].sent)
    assert.are.equal(1 + 15 + 8 + 1, d.probes_sent)
    local nodes = graph(d)
    assert.are.equal(2, #nodes[2])
  end)

  it("prints the graph as text: nodes per TTL, links, probes", function()
    local out, err, code = sonde(l, { "mda", "-n", l.dst.v4 })
    assert.are.equal(0, code, err)
    local b1, b2 = l.branches[1].v4, l.branches[2].v4
    local want = table.concat({
      ("mda to %s (%s), 30 hops max, udp/33434, 95%% confidence"):format(l.dst.v4, l.dst.v4),
      " 1  " .. l.split.v4,
      " 2  " .. b1 .. "  " .. b2,
      " 3  " .. l.join.v4,
      " 4  " .. l.dst.v4,
      "links:",
      (" %s -> %s  %s"):format(l.split.v4, b1, b2),
      (" %s -> %s"):format(b1, l.join.v4),
      (" %s -> %s"):format(b2, l.join.v4),
      (" %s -> %s"):format(l.join.v4, l.dst.v4),
      "19 probes, 11 flows (source ports 33456-33466), destination reached",
    }, "\n") .. "\n"
    assert.are.equal(want, out)
  end)

  it("prints the graph as DOT", function()
    local out, err, code = sonde(l, { "mda", "-n", "--format", "dot", l.dst.v6 })
    assert.are.equal(0, code, err)
    assert.matches('^digraph "sonde mda 2001:db8:5::2" {\n', out)
    for _, b in ipairs(l.branches) do
      assert.truthy(out:find(('"%s" -> "%s"'):format(l.split.v6, b.v6), 1, true))
      assert.truthy(out:find(('"%s" -> "%s"'):format(b.v6, l.join.v6), 1, true))
      assert.truthy(out:find(('"%s" [label="%s\\nTTL 2"]'):format(b.v6, b.v6), 1, true))
    end
    assert.truthy(out:find(('"%s" [label="%s\\nTTL 4", peripheries=2]'):format(l.dst.v6, l.dst.v6), 1, true))
  end)

  it("fails clearly without raw sockets (exit 3)", function()
    local out, err, code = sonde(l, { "mda", "-n", "--format", "json", l.dst.v4 }, AS_NOBODY)
    assert.are.equal(3, code)
    assert.matches("ENOTSUP", err)
    assert.matches("needs root or CAP_NET_RAW", err)
    local d = cjson.decode(out)
    assert.are.equal("error", d.stop_reason)
    assert.is_true(schema.validate(out))
  end)

  describe("when the destination drops the probes", function()
    before_each(function()
      l:nft("dst", "table inet mdadrop {\n chain input {\n type filter hook input priority 0; policy accept;\n udp dport 33434 drop\n }\n}\n")
    end)
    after_each(function()
      l:check("dst", "nft delete table inet mdadrop")
    end)

    it("shows silent hops as * and stops at the gap limit, exit 1", function()
      local out, err, code = sonde(l, { "mda", "-n", "-w", "0.3", "--gap-limit", "2", l.dst.v4 })
      assert.are.equal(1, code, err)
      assert.matches("\n 3  " .. l.join.v4:gsub("%.", "%%.") .. "\n 4  %*\n 5  %*\nlinks:\n", out)
      -- 19 - 1 before the destination, then n_1 = 6 flows tried twice at each silent hop
      assert.matches("\n42 probes, 11 flows %(source ports 33456%-33466%), stopped after silent hops %(gap limit%)\n$", out)
    end)

    it("prints what it found on SIGINT, with stop_reason interrupted, exit 130", function()
      local p = l:spawn("src", { helpers.sonde(), "mda", "-n", "-w", "2", "--format", "json", l.dst.v4 })
      helpers.wait_until(function()
        return p:command_pid() ~= nil
      end, 5, "sonde mda to start")
      helpers.sleep(1)
      helpers.run({ "kill", "-INT", p:command_pid() })
      assert.are.equal(130, p:wait(5))
      local out = p:output()
      local d = cjson.decode(out)
      assert.are.equal("interrupted", d.stop_reason)
      assert.are.equal(l.join.v4, d.hops[3].nodes[1].addr)
      for i = 4, #d.hops do assert.are.equal(0, #d.hops[i].nodes) end   -- hop 4 was being probed
      assert.is_true(schema.validate(out))
    end)
  end)

  it("stops at -m with max_ttl, exit 1", function()
    local out, err, code = sonde(l, { "mda", "-n", "-m", "2", "--format", "json", l.dst.v4 })
    assert.are.equal(1, code, err)
    local d = cjson.decode(out)
    assert.are.equal("max_ttl", d.stop_reason)
    assert.is_false(d.reached)
    assert.are.equal(2, #d.hops)
    assert.is_true(schema.validate(out))
  end)
end)

helpers.lab_describe("sonde mda over an ECMP diamond of four branches", function()
  local l

  setup(function()
    l = lab.diamond{ name = "mda4", width = 4, v6 = false }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  it("finds all four branches in 1 + 21 + 6 + 1 = 29 probes, no more than scamper", function()
    local d = mda(l, { l.dst.v4 })
    local nodes, links = graph(d)
    local wn, wl = expected(l, 4)
    assert.are.same(wn, nodes)
    assert.are.same(wl, links)
    assert.are.equal(29, d.probes_sent)
    local mine = {}
    for _, h in ipairs(d.hops) do
      for _, n in ipairs(h.nodes) do mine[n.addr] = true end
    end
    local sc = scamper(l, l.dst.v4, mine)
    if sc then
      assert.is_nil(sc.missed, "scamper missed a branch 3 times in a row")
      assert.is_true(d.probes_sent <= sc.probec, ("sonde %d, scamper %d"):format(d.probes_sent, sc.probec))
      io.stderr:write(("\n  [4-branch diamond: sonde mda %d probes, scamper tracelb %d probes]\n")
        :format(d.probes_sent, sc.probec))
    end
  end)
end)
