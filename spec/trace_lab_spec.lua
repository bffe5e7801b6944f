-- sonde trace over a real chain of namespaces: src - r1 - ... - r8 - dst,
-- with r4 silent (it forwards but sends no time-exceeded).

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

-- What the destination answers to each protocol's probe.
local FINAL = { udp = "dest_unreachable", icmp = "echo_reply", tcp = "tcp_rst" }

helpers.lab_describe("sonde trace over a chain of 8 routers with hop 4 silent", function()
  local l

  setup(function()
    l = lab.chain{ routers = 8, silent = { 4 }, v6 = true, name = "trace" }
    -- Names come from the namespace's hosts file; its resolver is its own
    -- loopback, so no lookup leaves the lab.
    l:hosts("src", { ["far.lab"] = l.dst.v4, ["r1.lab"] = l.hops[1].v4 })
    local f = assert(io.open("/etc/netns/" .. l:nsname("src") .. "/resolv.conf", "w"))
    f:write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    f:close()
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function sonde(args)
    local argv = { helpers.sonde() }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return l:exec("src", argv)
  end

  local function addr(fam, node)
    return fam == 4 and node.v4 or node.v6
  end

  for _, proto in ipairs{ "udp", "icmp", "tcp" } do
    for _, fam in ipairs{ 4, 6 } do
      it(("over %s/IPv%d names every hop, shows hop 4 as timeouts and reaches the destination"):format(proto, fam), function()
        -- MIN 0.3 s: a router slowed by a busy machine is not given up
        -- for a later hop's fast reply (traceroute's NEAR rule)
        local out, err, code = sonde{ "trace", "-n", "--protocol", proto, "-w", "5,3,10,0.3", "--format", "json",
          addr(fam, l.dst) }
        assert.are.equal(0, code, err)
        local t = cjson.decode(out)
        assert.are.equal("trace", t.type)
        assert.are.equal(1, t.version)
        assert.are.equal(fam, t.af)
        assert.are.equal(proto, t.protocol)
        assert.is_true(t.reached)
        assert.are.equal("reached", t.stop_reason)
        assert.are.equal(9, #t.hops)
        for i, hop in ipairs(t.hops) do
          assert.are.equal(i, hop.ttl)
          assert.are.equal(3, #hop.probes)
          for _, p in ipairs(hop.probes) do
            assert.are.equal(i, p.ttl)
            if i == 4 then
              assert.are.equal("timeout", p.status)
              assert.is_nil(p.addr)
            elseif i < 9 then
              assert.are.equal("reply", p.status)
              assert.are.equal("time_exceeded", p.kind)
              assert.are.equal(addr(fam, l.hops[i]), p.addr)
              assert.is_true(p.rtt > 0 and p.rtt < 5)
            else
              assert.are.equal("reply", p.status)
              assert.are.equal(FINAL[proto], p.kind)
              assert.are.equal(addr(fam, l.dst), p.addr)
            end
          end
        end
      end)
    end
  end

  it("prints text that reads like traceroute's", function()
    local out, err, code = sonde{ "trace", "-n", l.dst.v4 }
    assert.are.equal(0, code, err)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(("trace to %s (%s), 30 hops max, udp/33434"):format(l.dst.v4, l.dst.v4), lines[1])
    assert.matches("^ 1  " .. l.hops[1].v4:gsub("%.", "%%.") .. "  [%d.]+ ms  [%d.]+ ms  [%d.]+ ms$", lines[2])
    assert.are.equal(" 4  * * *", lines[5])
    assert.matches("^ 9  " .. l.dst.v4:gsub("%.", "%%.") .. "  ", lines[10])
    assert.are.equal(10, #lines)
  end)

  it("reaches a listening TCP port with tcp_synack", function()
    local peer = l:spawn("dst", { helpers.labpeer(), "listen", "-p", "8080", "-t", "20" })
    peer:wait_for("^ready$", 5)
    local out, err, code = sonde{ "trace", "-n", "--protocol", "tcp", "--port", "8080", "--format", "json", l.dst.v4 }
    peer:stop()
    assert.are.equal(0, code, err)
    local t = cjson.decode(out)
    local last = t.hops[#t.hops]
    assert.are.equal(9, last.ttl)
    for _, p in ipairs(last.probes) do
      assert.are.equal("tcp_synack", p.kind)
      assert.are.equal(8080, p.dport)
    end
  end)

  it("gives each probe of a TCP trace the source port base + sequence", function()
    local out, err, code = sonde{ "trace", "-n", "--protocol", "tcp", "--sport", "40000", "-q", "1", "--format", "json", l.dst.v4 }
    assert.are.equal(0, code, err)
    local t = cjson.decode(out)
    for _, hop in ipairs(t.hops) do
      local p = hop.probes[1]
      assert.are.equal(40000 + p.seq, p.sport)
    end
  end)

  it("stops at -m and reports max_ttl, exit 1", function()
    local out, err, code = sonde{ "trace", "-n", "-m", "3", "--format", "json", l.dst.v4 }
    assert.are.equal(1, code, err)
    local t = cjson.decode(out)
    assert.is_false(t.reached)
    assert.are.equal("max_ttl", t.stop_reason)
    assert.are.equal(3, #t.hops)
  end)

  it("starts at -f", function()
    local out, _, code = sonde{ "trace", "-n", "-f", "7", "--format", "json", l.dst.v4 }
    assert.are.equal(0, code)
    local t = cjson.decode(out)
    assert.are.equal(7, t.hops[1].ttl)
    assert.are.equal(3, #t.hops)
  end)

  it("names ENETUNREACH for an unroutable target and exits 3", function()
    local out, err, code = sonde{ "trace", "-n", "--format", "json", "198.19.255.1" }
    assert.are.equal(3, code)
    assert.matches("ENETUNREACH", err)
    local t = cjson.decode(out)
    assert.are.equal("error", t.stop_reason)
    assert.are.equal("ENETUNREACH", t.error.name)
    assert.are.equal("failed", t.hops[1].probes[1].status)
    assert.are.equal("ENETUNREACH", t.hops[1].probes[1].error.name)
  end)

  it("resolves a host name (here from the namespace's hosts file)", function()
    local out, err, code = sonde{ "trace", "-n", "-4", "--format", "json", "far.lab" }
    assert.are.equal(0, code, err)
    local t = cjson.decode(out)
    assert.are.equal("far.lab", t.target)
    assert.are.equal(l.dst.v4, t.addr)
  end)

  it("reports a name that does not resolve clearly, exit 3", function()
    local out, err, code = sonde{ "trace", "-n", "no-such-host.invalid" }
    assert.are.equal(3, code)
    assert.are.equal("", out)
    assert.matches("cannot resolve 'no%-such%-host%.invalid': EAI_", err)
  end)

  it("shows names from reverse lookups unless -n", function()
    local out, err, code = sonde{ "trace", "-m", "2", l.dst.v4 }
    assert.are.equal(1, code, err)
    assert.matches("\n 1  r1%.lab %(" .. l.hops[1].v4:gsub("%.", "%%.") .. "%)", out)
  end)
end)
