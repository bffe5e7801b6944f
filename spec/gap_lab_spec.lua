-- The gap limit of sonde trace: a trace towards a destination behind a
-- router that forwards nothing stops after N silent hops in a row, with
-- stop_reason "gap_limit" and exit status 1, instead of waiting out every
-- TTL up to -m.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

-- r2 answers for itself (its time-exceeded comes from the input path,
-- before the forward hook) but forwards nothing: every hop behind it is
-- silent.
local BLACKHOLE = [[
table inet sonde_gap {
  chain forward {
    type filter hook forward priority 0; policy drop;
  }
}
]]

helpers.lab_describe("sonde trace towards a destination behind a router that forwards nothing", function()
  local l, m

  setup(function()
    l = lab.chain{ routers = 3, v6 = true, name = "gap" }
    l:nft("r2", BLACKHOLE)
    -- A second chain, with hop 2 silent and the path going on behind it.
    m = lab.chain{ routers = 3, silent = { 2 }, v6 = false, name = "gapsilent" }
  end)

  teardown(function()
    if l then l:destroy() end
    if m then m:destroy() end
  end)

  local function sonde(lb, args)
    local argv = { helpers.sonde() }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return lb:exec("src", argv)
  end

  local function check_gap(t, fam, last)
    assert.are.equal("gap_limit", t.stop_reason)
    assert.is_false(t.reached)
    assert.are.equal(last, #t.hops)
    for i, hop in ipairs(t.hops) do
      assert.are.equal(i, hop.ttl)
      for _, p in ipairs(hop.probes) do
        if i <= 2 then
          assert.are.equal("time_exceeded", p.kind)
          local want = fam == 4 and l.hops[i].v4 or l.hops[i].v6
          assert.are.equal(want, p.addr)
        else
          assert.are.equal("timeout", p.status)
        end
      end
    end
  end

  for _, fam in ipairs{ 4, 6 } do
    it(("stops after --gap-limit 3 silent hops over IPv%d, exit 1"):format(fam), function()
      local dst = fam == 4 and l.dst.v4 or l.dst.v6
      local out, err, code = sonde(l, { "trace", "-n", "-w", "0.5", "--gap-limit", "3",
        "--format", "json", dst })
      assert.are.equal(1, code, err)
      local t = cjson.decode(out)
      check_gap(t, fam, 5)
      assert.is_true(t.duration < 3, "took " .. t.duration)
      local ok, why = schema.validate(out)
      assert.is_true(ok, why)
    end)
  end

  it("stops after 5 silent hops by default", function()
    local out, err, code = sonde(l, { "trace", "-n", "--protocol", "icmp", "-w", "0.5",
      "--format", "json", l.dst.v4 })
    assert.are.equal(1, code, err)
    check_gap(cjson.decode(out), 4, 7)
  end)

  it("prints the silent hops in text and stops there", function()
    local out, err, code = sonde(l, { "trace", "-n", "-w", "0.5", "--gap-limit", "2", l.dst.v4 })
    assert.are.equal(1, code, err)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(6, #lines, out)
    assert.are.equal(" 3  * * *", lines[4])
    assert.are.equal(" 4  * * *", lines[5])
    assert.are.equal("stopped: 2 silent hops in a row, and the next one silent too (--gap-limit)",
      lines[6])
  end)

  it("with --gap-limit 0 goes on to -m", function()
    local out, err, code = sonde(l, { "trace", "-n", "-w", "0.3", "-q", "1", "-m", "9",
      "--gap-limit", "0", "--format", "json", l.dst.v4 })
    assert.are.equal(1, code, err)
    local t = cjson.decode(out)
    assert.are.equal("max_ttl", t.stop_reason)
    assert.are.equal(9, #t.hops)
  end)

  it("gives max_ttl, not gap_limit, when the gap ends at -m", function()
    local out, err, code = sonde(l, { "trace", "-n", "-w", "0.3", "-m", "4",
      "--gap-limit", "2", "--format", "json", l.dst.v4 })
    assert.are.equal(1, code, err)
    assert.are.equal("max_ttl", cjson.decode(out).stop_reason)
  end)

  it("does not count a silent hop whose successor has already answered", function()
    -- 16 probes in flight: hop 3 answers while hop 2 is still waiting.
    local out, err, code = sonde(m, { "trace", "-n", "-w", "0.5", "--gap-limit", "1",
      "--format", "json", m.dst.v4 })
    assert.are.equal(0, code, err)
    local t = cjson.decode(out)
    assert.are.equal("reached", t.stop_reason)
    assert.are.equal("timeout", t.hops[2].probes[1].status)
  end)

  it("does not count a silent hop whose successor answers, one probe in flight or not", function()
    -- With -N 1 nothing beyond hop 2 is in flight when hop 2 is complete:
    -- the gap limit waits for hop 3 before it stops anything.
    for _, n in ipairs{ "1", "16" } do
      local out, err, code = sonde(m, { "trace", "-n", "-w", "0.3", "-N", n, "--gap-limit", "1",
        "--format", "json", m.dst.v4 })
      assert.are.equal(0, code, err)
      local t = cjson.decode(out)
      assert.are.equal("reached", t.stop_reason)
      assert.are.equal(4, #t.hops)
    end
  end)

  it("rejects a negative --gap-limit", function()
    local _, err, code = sonde(l, { "trace", "--gap-limit", "-1", l.dst.v4 })
    assert.are.equal(2, code)
    assert.matches("%-%-gap%-limit", err)
  end)
end)
