-- The examples in examples/ do what their comments say, over a real chain:
-- src - r1 - r2 - dst, with r1 silent (it forwards, but sends no
-- time-exceeded).

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

helpers.lab_describe("examples/retry_rule.lua over a chain whose hop 1 is silent", function()
  local l
  local rule = helpers.root() .. "/examples/retry_rule.lua"

  setup(function()
    l = lab.chain{ routers = 2, silent = { 1 }, v6 = true, name = "examples" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  -- sonde trace -n --format json ARGS in src -> the trace, exit status
  local function trace(args)
    local argv = { helpers.sonde(), "trace", "-n", "--format", "json" }
    for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
    local out, err, code = l:exec("src", argv)
    assert(code == 0 or code == 1, ("exit %d: %s"):format(code, err))
    assert(not err:find("traceback", 1, true), err)
    return cjson.decode(out), code
  end

  local function seqs(hop)
    local s = {}
    for i, p in ipairs(hop.probes) do s[i] = p.seq end
    return s
  end

  it("loads as a rule: a file that returns function(result, probe) -> 'accept' | 'reissue'", function()
    local fn = assert(loadfile(rule))()
    assert.are.equal("function", type(fn))
    assert.are.equal("reissue", fn({ status = "timeout" }, { ttl = 1, q = 1, reissues = 0 }))
    assert.are.equal("accept", fn({ status = "timeout" }, { ttl = 1, q = 1, reissues = 1 }))
    assert.are.equal("reissue", fn({ status = "skipped", error = { name = "EADDRINUSE" } }, { ttl = 1, q = 1, reissues = 4 }))
    assert.are.equal("accept", fn({ status = "skipped", error = { name = "EADDRINUSE" } }, { ttl = 1, q = 1, reissues = 5 }))
    assert.are.equal("accept", fn({ status = "reply", kind = "time_exceeded" }, { ttl = 1, q = 1, reissues = 0 }))
    assert.are.equal("accept", fn({ status = "failed", error = { name = "EADDRNOTAVAIL" } }, { ttl = 1, q = 1, reissues = 0 }))
  end)

  for _, fam in ipairs{ 4, 6 } do
    it(("re-issues each probe of the silent hop once, and only those (IPv%d)"):format(fam), function()
      local dst = fam == 4 and l.dst.v4 or l.dst.v6
      -- one probe at a time, so that sequence numbers show what was sent:
      -- without the rule hop 1 is 0, 1, 2; with it each probe is re-issued
      -- once, the re-issue takes the next sequence, and hop 1 keeps
      -- the re-issues' outcomes: 1, 3, 5
      local args = { "-N", 1, "-w", 0.3, "--protocol", "udp", dst }
      local plain, code = trace(args)
      assert.are.equal(0, code)
      assert.are.same({ 0, 1, 2 }, seqs(plain.hops[1]))
      assert.are.same({ 3, 4, 5 }, seqs(plain.hops[2]))
      assert.are.same({ 6, 7, 8 }, seqs(plain.hops[3]))

      local with = trace{ "--retry", rule, unpack(args) }
      assert.is_true(with.reached)
      assert.are.equal(3, #with.hops)
      assert.are.same({ 1, 3, 5 }, seqs(with.hops[1]))
      for _, p in ipairs(with.hops[1].probes) do
        assert.are.equal("timeout", p.status)   -- still silent: one re-issue, no more
        assert.are.equal(1, p.ttl)
      end
      -- the hops that answer are not re-issued
      assert.are.same({ 6, 7, 8 }, seqs(with.hops[2]))
      assert.are.same({ 9, 10, 11 }, seqs(with.hops[3]))
      for h = 2, 3 do
        for _, p in ipairs(with.hops[h].probes) do assert.are.equal("reply", p.status) end
      end
    end)
  end

  it("re-issues a probe whose source port is busy up to 5 times, where the default rule gives up after 3", function()
    -- ports 40001..40004 busy: the probe of sequence 1 meets them all in turn
    local holds = {}
    finally(function() for _, h in ipairs(holds) do h:stop() end end)
    for port = 40001, 40004 do
      local h = l:spawn("src", { helpers.labpeer(), "hold-port", "-p", port, "-t", 20 })
      holds[#holds + 1] = h
      h:wait_for("^ready$", 5)
    end
    -- from hop 2 (hop 1 is silent), one probe at a time, to a closed port
    local args = { "--protocol", "tcp", "-f", 2, "-N", 1, "--sport", 40000, "--port", 9200, l.dst.v4 }

    local plain = trace(args)
    local p = plain.hops[1].probes
    assert.are.equal(2, plain.hops[1].ttl)
    assert.are.equal("skipped", p[2].status)       -- 40001, 40002, 40003, 40004: given up
    assert.are.equal("EADDRINUSE", p[2].error.name)
    assert.are.equal(4, p[2].seq)

    local with = trace{ "--retry", rule, unpack(args) }
    assert.is_true(with.reached)
    p = with.hops[1].probes
    assert.are.equal("reply", p[2].status)         -- the 5th re-issue, from 40005
    assert.are.equal("time_exceeded", p[2].kind)
    assert.are.equal(5, p[2].seq)
    assert.are.equal(40005, p[2].sport)
    for _, hop in ipairs(with.hops) do
      for _, q in ipairs(hop.probes) do assert.are_not.equal("skipped", q.status) end
    end
  end)
end)
