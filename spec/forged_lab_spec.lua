-- Hostile input: while a trace runs, a router floods the prober with forged
-- and malformed ICMP (garbage and truncated quotes, quotes of other
-- destinations and of ports the prober never used, bogus RFC 4884 lengths,
-- wrong checksums, stray echo replies). Nothing of it is attributed to a
-- probe: the trace's result is what it is without the flood, the flood is
-- counted, and nothing crashes.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

-- Addresses, kinds and statuses, probe by probe.
local function shape(t)
  local s = {}
  for _, hop in ipairs(t.hops) do
    for q, p in ipairs(hop.probes) do
      s[#s + 1] = ("%d.%d %s %s %s"):format(hop.ttl, q, p.status, tostring(p.kind), tostring(p.addr))
    end
  end
  return s
end

helpers.lab_describe("a trace under a flood of forged ICMP errors", function()
  local l

  setup(function()
    l = lab.chain{ routers = 3, silent = { 2 }, v6 = true, name = "forged" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function trace(proto, dst)
    -- MIN 0.3 s: the two runs compared probe by probe must not differ by
    -- a slow reply given up under load (traceroute's NEAR rule)
    local out, err, code = l:exec("src", { helpers.sonde(), "trace", "-n", "-p", proto,
      "-w", "2,3,10,0.3", "--format", "json", dst })
    assert.are.equal(0, code, err)
    return cjson.decode(out)
  end

  for _, fam in ipairs{ 4, 6 } do
    for _, proto in ipairs{ "udp", "icmp", "tcp" } do
      it(("over %s/IPv%d gives the same hops as without it, and counts it"):format(proto, fam), function()
        local dst = fam == 4 and l.dst.v4 or l.dst.v6
        local victim = fam == 4 and l.src.v4 or l.src.v6
        local quiet = trace(proto, dst)
        local args = { helpers.build() .. "/forge", "-d", victim, "-t", dst, "-r", "4000", "-s", "8",
          "-S", tostring(fam * 10 + #proto) }
        if fam == 6 then table.insert(args, 2, "-6") end
        local flood = l:spawn("r1", args)
        flood:wait_for("^ready$", 5)
        lab.sleep(0.2)
        local t = trace(proto, dst)
        lab.sleep(0.1)
        local code = flood:stop()
        assert.are.same(shape(quiet), shape(t))
        assert.is_true(t.reached)
        assert.is_true(t.counters.ignored + t.counters.malformed > 0,
          "the flood was not seen: " .. cjson.encode(t.counters))
        assert.is_true(code == nil or code == 0 or code == 143, "forge exited " .. tostring(code))
      end)
    end
  end
end)
