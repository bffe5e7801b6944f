-- sonde trace never reports as lost a probe that was answered. On paths
-- where every probe is answered (sonde-netsim scenarios with no loss, and a
-- chain of namespaces whose routers send every ICMP error), a timeout (*)
-- is a false one: the adaptive wait gave up on a reply that came, or the
-- run ended before reading it. At least 1000 probes per case, at the
-- default options and at -q 10; no floor is set under the adaptive wait
-- (-w is the default), so the rule itself is what is tested.
--
-- SONDE_TRUTH_VERBOSE=1 prints the counts of each case on stderr.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

local NETSIM = helpers.build() .. "/sonde-netsim"
local PROBES = 1000     -- probes per case, at least
local MAX_RUNS = 200    -- bounds every loop (no case needs as many)
local verbose = os.getenv("SONDE_TRUTH_VERBOSE")

local function fixture(name)
  return helpers.root() .. "/spec/fixtures/scenarios/" .. name .. ".json"
end

-- Runs `sonde trace -n --format json ARGS` in node `node` of lab l until at
-- least PROBES probes are counted. -> { runs, probes, timeouts, reached }
-- (timeouts: probes reported as timeout, at hops that answer every probe).
local function count(l, node, args, what)
  local c = { runs = 0, probes = 0, timeouts = 0, reached = 0 }
  while c.probes < PROBES and c.runs < MAX_RUNS do
    local argv = { helpers.sonde(), "trace", "-n", "--format", "json" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local out, err, code = l:exec(node, argv)
    local ok, t = pcall(cjson.decode, out)
    assert.is_true(ok, ("%s: no JSON (exit %s): %s"):format(what, tostring(code), err))
    c.runs = c.runs + 1
    if t.reached then c.reached = c.reached + 1 end
    for _, hop in ipairs(t.hops) do
      for _, p in ipairs(hop.probes) do
        c.probes = c.probes + 1
        if p.status == "timeout" then c.timeouts = c.timeouts + 1 end
      end
    end
  end
  if verbose then
    io.stderr:write(("truth: %-32s %4d runs, %5d probes, %3d false timeouts, reached %d/%d\n")
      :format(what, c.runs, c.probes, c.timeouts, c.reached, c.runs))
  end
  return c
end

local function check(c, what)
  assert.is_true(c.probes >= PROBES, what .. ": only " .. c.probes .. " probes")
  assert.are.equal(0, c.timeouts, ("%s: %d of %d answered probes reported as timeout")
    :format(what, c.timeouts, c.probes))
  assert.are.equal(c.runs, c.reached, what .. ": destination not reached in every run")
end

helpers.lab_describe("sonde trace on paths that answer every probe", function()
  local l, chain

  setup(function()
    l = lab.build{ name = "truthwait", nodes = { "lan", "far" } }
    for node, scen in pairs{ lan = "lan", far = "highdelay" } do
      local sim = l:spawn(node, { NETSIM, "--scenario", fixture(scen), "--max-time", "300" })
      sim:wait_for("^ready ", 5)
    end
    chain = lab.chain{ routers = 3, v6 = false, name = "truthchain" }
  end)

  teardown(function()
    if l then l:destroy() end
    if chain then chain:destroy() end
  end)

  local CASES = {
    { "a LAN (0.3-1 ms hops, jitter nearly the delay)", "lan", "198.18.210.50" },
    { "a long-haul path (10-200 ms, +-20 ms)", "far", "198.18.212.50" },
  }
  for _, case in ipairs(CASES) do
    local name, node, dst = case[1], case[2], case[3]
    for _, q in ipairs{ "3", "10" } do
      it(("across %s reports no answered probe as lost (-q %s)"):format(name, q), function()
        local what = node .. " -q " .. q
        check(count(l, node, { "-q", q, dst }, what), what)
      end)
    end
  end

  it("across a chain of namespaces reports no answered probe as lost (-q 10, and default)", function()
    for _, q in ipairs{ "10", "3" } do
      local what = "chain -q " .. q
      check(count(chain, "src", { "-q", q, chain.dst.v4 }, what), what)
    end
  end)

  it("with --strategy dublin across a chain of namespaces reports no answered probe as lost", function()
    local what = "chain dublin"
    check(count(chain, "src", { "--strategy", "dublin", chain.dst.v4 }, what), what)
  end)
end)
