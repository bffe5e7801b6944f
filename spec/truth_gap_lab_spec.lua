-- A reachable destination is reached: behind one answering hop, six
-- silent hops and then two answering hops (the second the destination),
-- sonde trace with the default gap limit (5) reaches the destination in
-- every run, whatever the number of probes in flight (-N) or per hop (-q):
-- the gap limit stops a trace only once the hop after the silent hops has
-- been probed too, so the probes beyond them get their chance.
--
-- The runs of a case go side by side (each a process of its own, with its
-- own probe identities): a default run waits 5 s for the silent hops.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

local NETSIM = helpers.build() .. "/sonde-netsim"
local SCENARIO = helpers.root() .. "/spec/fixtures/scenarios/silentrun.json"
local DST = "198.18.211.50"
local ANSWERING = { [1] = "198.18.211.1", [8] = "198.18.211.8", [9] = DST }

helpers.lab_describe("sonde trace across six silent hops with answering hops behind them", function()
  local l

  setup(function()
    l = lab.build{ name = "truthgap", nodes = { "sim" } }
    local sim = l:spawn("sim", { NETSIM, "--scenario", SCENARIO, "--max-time", "300" })
    sim:wait_for("^ready ", 5)
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  -- Starts every run of `sonde trace -n --format json ARGS` for ARGS in
  -- list at once, waits for them all (each at most `timeout` seconds).
  -- -> list of { code, why, t (the decoded JSON), err }, in list's order.
  local function runs(list, timeout)
    local procs = {}
    for i, args in ipairs(list) do
      local argv = { helpers.sonde(), "trace", "-n", "--format", "json" }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      procs[i] = l:spawn("sim", argv)
    end
    local out = {}
    for i, p in ipairs(procs) do
      local code, why = p:wait(timeout)
      local stdout, stderr = p:output()
      if not code then p:stop() end
      local ok, t = pcall(cjson.decode, stdout)
      out[i] = { code = code, why = why, t = ok and t or nil, err = stderr }
    end
    return out
  end

  local function times(n, args)
    local list = {}
    for i = 1, n do list[i] = args end
    return list
  end

  -- Every run reached the destination (exit 0), every probe at an
  -- answering hop was answered, every other one timed out.
  local function check_all(res, what)
    local reached, wrong, probes, bad = 0, 0, 0, {}
    for i, r in ipairs(res) do
      local t = r.t
      if not t then
        bad[#bad + 1] = ("run %d: no JSON (exit %s, %s): %s"):format(i, tostring(r.code),
          tostring(r.why), r.err)
      else
        if r.code == 0 and t.reached and #t.hops == 9 then
          reached = reached + 1
        else
          bad[#bad + 1] = ("run %d: exit %s, stop_reason %s after %d hops"):format(i,
            tostring(r.code), tostring(t.stop_reason), #t.hops)
        end
        for _, hop in ipairs(t.hops) do
          for _, p in ipairs(hop.probes) do
            local want = ANSWERING[hop.ttl]
            if want then probes = probes + 1 end
            if (want and (p.status ~= "reply" or p.addr ~= want)) or
               (not want and p.status ~= "timeout") then
              wrong = wrong + 1
              bad[#bad + 1] = ("run %d: hop %d: %s from %s"):format(i, hop.ttl, p.status,
                tostring(p.addr))
            end
          end
        end
      end
    end
    if os.getenv("SONDE_TRUTH_VERBOSE") then
      io.stderr:write(("truth: silent run %-16s reached %d/%d, %d wrong outcomes (%d probes at answering hops)\n")
        :format(what, reached, #res, wrong, probes))
    end
    assert.are.equal(0, #bad, what .. ":\n" .. table.concat(bad, "\n", 1, math.min(#bad, 10)))
  end

  it("reaches the destination in every one of 20 runs at the default options", function()
    check_all(runs(times(20, { DST }), 30), "default")
  end)

  it("reaches it at -q 10, at -q 1, and with two probes in flight (-N 2)", function()
    -- -w 1: a round of probes to the silent hops costs 1 s instead of 5
    local cases = { { "-q", "10" }, { "-q", "1" }, { "-N", "2" } }
    local list = {}
    for _, c in ipairs(cases) do
      for _ = 1, 8 do list[#list + 1] = { "-w", "1", c[1], c[2], DST } end
    end
    local res = runs(list, 60)
    for k, c in ipairs(cases) do
      local part = {}
      for i = 1, 8 do part[i] = res[(k - 1) * 8 + i] end
      check_all(part, table.concat(c, " ") .. " -w 1")
    end
  end)
end)
