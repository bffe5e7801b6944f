-- sonde mtr's statistics against causes that are known because
-- sonde-netsim makes them (spec/fixtures/scenarios/mtrstats.json): no loss
-- at hop 1, 30 % loss at hop 2, 20 ms +- 6 ms (uniform) at hop 3, the
-- destination at 25 ms. Bounds are wide enough for 100 rounds on a busy
-- two-core machine (loss: binomial, p = 0.3, n = 100, sd 4.6 %; checked
-- with stress-ng --cpu 2 running), which delays some replies by a few ms.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

local NETSIM = helpers.build() .. "/sonde-netsim"
local SCENARIO = helpers.root() .. "/spec/fixtures/scenarios/mtrstats.json"

local function within(x, lo, hi, what)
  assert.is_true(x >= lo and x <= hi, ("%s = %.4g, not within [%g, %g]"):format(what, x, lo, hi))
end

helpers.lab_describe("sonde mtr across sonde-netsim", function()
  local l, sim

  setup(function()
    l = lab.build{ name = "mtrstats", nodes = { "sim" } }
    sim = l:spawn("sim", { NETSIM, "--scenario", SCENARIO, "--max-time", "120" })
    sim:wait_for("^ready ", 5)
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  for _, proto in ipairs{ "icmp", "udp" } do
    it(("over %s reports the scenario's loss, average, deviation and jitter"):format(proto), function()
      local out, err, code = l:exec("sim", { helpers.sonde(), "mtr", "--report", "-c", "100",
        "-i", "0.02", "-n", "--protocol", proto, "--format", "json", "198.18.204.50" })
      assert.are.equal(0, code, err)
      local m = cjson.decode(out)
      assert.are.equal(4, #m.hops)
      local h1, h2, h3, h4 = m.hops[1], m.hops[2], m.hops[3], m.hops[4]
      assert.are.equal("198.18.204.1", h1.addr)
      assert.are.equal("198.18.204.50", h4.addr)
      for _, h in ipairs(m.hops) do assert.are.equal(100, h.sent) end
      -- loss only where the scenario loses
      assert.are.equal(0, h1.loss)
      within(h2.loss, 15, 45, "hop 2 loss %")
      assert.are.equal(0, h3.loss)
      assert.are.equal(0, h4.loss)
      -- averages within 2 ms or 10 % of the delays
      within(h1.avg * 1000, 2, 4, "hop 1 avg ms")
      within(h3.avg * 1000, 18, 22, "hop 3 avg ms")
      within(h4.avg * 1000, 25, 27.5, "hop 4 avg ms")
      -- uniform +-6 ms: standard deviation 6/sqrt(3) = 3.46 ms; mean absolute
      -- difference of consecutive samples 2*6/3 = 4 ms
      within(h3.stddev * 1000, 2.4, 4.6, "hop 3 stddev ms")
      within(h3.jitter * 1000, 2.8, 6.5, "hop 3 jitter ms")
      -- a hop without jitter varies little: what a busy machine adds to
      -- every hop (2.1 ms seen with both cores busy), well under hop 3's
      within(h4.stddev * 1000, 0, 3, "hop 4 stddev ms")
      assert.is_true(h4.stddev < h3.stddev, ("hop 4 stddev %.2f ms not under hop 3's %.2f ms")
        :format(h4.stddev * 1000, h3.stddev * 1000))
      -- best and worst are single samples: a busy machine delays some
      -- replies (never hurries one), so only worst gets room above
      within(h3.best * 1000, 13.5, 20, "hop 3 best ms")
      within(h3.worst * 1000, 20, 45, "hop 3 worst ms")
    end)
  end
end)

-- mtr's -e: the MPLS label stacks routers quote in their time exceeded
-- (RFC 4950), under their hop. sonde-netsim's issue9 scenario has hop 2
-- quote a two-label stack.
helpers.lab_describe("sonde mtr -e across sonde-netsim's MPLS hop", function()
  local l, sim

  setup(function()
    l = lab.build{ name = "mtrmpls", nodes = { "sim" } }
    sim = l:spawn("sim", { NETSIM, "--scenario", helpers.root() .. "/spec/fixtures/scenarios/issue9.json",
      "--max-time", "60" })
    sim:wait_for("^ready ", 5)
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function report(extra)
    local argv = { helpers.sonde(), "mtr", "-r", "-n", "-c", "2", "-i", "0.1", "--wait", "1", "-m", "6" }
    for _, a in ipairs(extra) do argv[#argv + 1] = a end
    argv[#argv + 1] = "198.18.200.50"
    local out, err, code = l:exec("sim", argv)
    assert.are.equal(0, code, err)
    return out
  end

  it("shows hop 2's label stack under it with -e, as mtr does, and none without", function()
    local out = report{ "-e" }
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    local at
    for i, line in ipairs(lines) do
      if line:match("^  2%.|%-%- 198%.18%.200%.2 ") then at = i end
    end
    assert(at, out)
    assert.are.equal("    |  +-- [MPLS: Lbl 24005 TC 0 S 0 TTL 1]", lines[at + 1])
    assert.are.equal("    |  +-- [MPLS: Lbl 16 TC 5 S 1 TTL 1]", lines[at + 2])
    local n = 0
    for _ in out:gmatch("MPLS") do n = n + 1 end
    assert.are.equal(2, n, out)       -- hop 2 only
    assert.is_nil(report{}:find("MPLS", 1, true))
  end)
end)

