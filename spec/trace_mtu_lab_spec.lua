-- sonde trace --mtu: path MTU discovery hop by hop, as traceroute --mtu
-- does it, compared with traceroute --mtu on the same lab.
-- Chain: src - r1 - r2 - r3 - r4 - dst; the link r1 - r2 has an MTU of
-- 1400, the link r3 - r4 one of 1280 (two points where the size shrinks).
-- A probe of hop 2 reaches r1 too big for r1 - r2: r1 answers frag needed
-- (packet too big), and the probe goes out again at 1400, which r2
-- answers: hop 2 shows F=1400, as traceroute's does; likewise hop 4 shows
-- F=1280, and hop 1 F=1500 (the first probe, 65000 bytes, was over the
-- outgoing device's MTU).

local helpers = require "helpers"
local lab = require "lab"
local schema = require "schema"
local cjson = require "cjson"
local tracer = require "sonde.trace"

-- The F= of a traceroute-like text: { [ttl] = MTU } and the hops' first
-- addresses { [ttl] = addr }.
local function f_marks(out)
  local marks, addrs = {}, {}
  for line in out:gmatch("[^\n]+") do
    local ttl, rest = line:match("^%s*(%d+)%s+(.*)$")
    if ttl then
      ttl = tonumber(ttl)
      addrs[ttl] = rest:match("^([%x:.]+)")
      local f = rest:match("F=(%d+)")
      if f then marks[ttl] = tonumber(f) end
    end
  end
  return marks, addrs
end

describe("path MTU discovery's next size (sonde.trace.shrunk)", function()
  it("takes the MTU a router or the device names, and RFC 1191's plateau when it names none", function()
    local fn = { status = "reply", kind = "dest_unreachable", code = "frag_needed", mtu = 1400 }
    assert.are.equal(1400, tracer.shrunk(fn, 1500, 30))
    assert.are.equal(1280, tracer.shrunk({ status = "reply", kind = "packet_too_big", mtu = 1280 }, 1400, 50))
    assert.are.equal(1500, tracer.shrunk({ status = "failed", error = { name = "EMSGSIZE" }, mtu = 1500 }, 65000, 30))
    -- an old router's frag needed with MTU 0: the next plateau below
    assert.are.equal(1492, tracer.shrunk({ status = "reply", kind = "dest_unreachable",
      code = "frag_needed", mtu = 0 }, 1500, 30))
    assert.are.equal(1006, tracer.shrunk({ status = "reply", kind = "dest_unreachable",
      code = "frag_needed" }, 1492, 30))
    -- not smaller, too small for a probe, or not about the size: nothing
    assert.is_nil(tracer.shrunk({ status = "reply", kind = "packet_too_big", mtu = 1500 }, 1500, 50))
    assert.is_nil(tracer.shrunk({ status = "reply", kind = "packet_too_big", mtu = 40 }, 1500, 50))
    assert.is_nil(tracer.shrunk({ status = "reply", kind = "time_exceeded" }, 1500, 30))
    assert.is_nil(tracer.shrunk({ status = "failed", error = { name = "ENETUNREACH" } }, 1500, 30))
  end)
end)

helpers.lab_describe("sonde trace --mtu beside traceroute --mtu", function()
  local l
  local WANT = { [1] = 1500, [2] = 1400, [4] = 1280 }

  setup(function()
    l = lab.chain{ routers = 4, v6 = true, name = "mtu" }
    for _, side in ipairs{ { "r1", "to-r2", 1400 }, { "r2", "to-r1", 1400 },
                           { "r3", "to-r4", 1280 }, { "r4", "to-r3", 1280 } } do
      lab.must({ "ip", "-n", l:nsname(side[1]), "link", "set", side[2], "mtu", tostring(side[3]) })
    end
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function flush()
    lab.must({ "ip", "-n", l:nsname("src"), "-4", "route", "flush", "cache" })
    lab.must({ "ip", "-n", l:nsname("src"), "-6", "route", "flush", "cache" })
  end

  local function sonde(words)
    local argv = { helpers.sonde(), "trace" }
    for _, w in ipairs(words) do argv[#argv + 1] = w end
    return l:exec("src", argv)
  end

  local function dst(fam) return fam == 4 and l.dst.v4 or l.dst.v6 end

  for _, fam in ipairs{ 4, 6 } do
    for _, proto in ipairs{ "udp", "icmp" } do
      it(("shows F= where traceroute --mtu does, the other hops unchanged (IPv%d %s)"):format(fam, proto), function()
        flush()
        local out, err, code = sonde{ "-n", "--mtu", "--protocol", proto, dst(fam) }
        assert.are.equal(0, code, err)
        local marks, addrs = f_marks(out)
        assert.are.same(WANT, marks, out)
        -- the same hops as without --mtu
        local plain = sonde{ "-n", "--protocol", proto, dst(fam) }
        local _, plain_addrs = f_marks(plain)
        assert.are.same(plain_addrs, addrs)
        flush()
        local words = { "traceroute", "-n", "--mtu", dst(fam) }
        if proto == "icmp" then table.insert(words, 2, "-I") end
        local tout, terr, tcode = l:exec("src", words)
        assert.are.equal(0, tcode, terr)
        local tmarks, taddrs = f_marks(tout)
        assert.are.same(tmarks, marks, "traceroute:\n" .. tout .. "sonde:\n" .. out)
        assert.are.same(taddrs, addrs)
      end)
    end

    it(("finds the bottlenecks again while the kernel remembers the path MTU (IPv%d)"):format(fam), function()
      flush()
      assert.are.equal(0, select(3, sonde{ "-n", "--mtu", "-q", "1", dst(fam) }))
      -- the kernel learnt 1280 towards dst: a plain DF send of 1400 bytes
      -- would fail here, before r1 could say anything
      local route = l:check("src", { "ip", "-" .. fam, "route", "get", dst(fam) })
      assert.matches("mtu 1280", route)
      local out, err, code = sonde{ "-n", "--mtu", dst(fam) }
      assert.are.equal(0, code, err)
      assert.are.same(WANT, (f_marks(out)), out)
    end)

    it(("writes each hop's mtu, each probe's pmtu and the trace's path_mtu in JSON (IPv%d)"):format(fam), function()
      local out, err, code = sonde{ "-n", "--mtu", "-q", "2", "--format", "json", dst(fam) }
      assert.are.equal(0, code, err)
      assert.is_true(schema.validate(out))
      local t = cjson.decode(out)
      assert.are.equal(1280, t.path_mtu)
      local got = {}
      for _, hop in ipairs(t.hops) do
        got[hop.ttl] = hop.mtu
        if hop.mtu then
          local p = hop.probes[1]
          assert.are.equal(hop.mtu, p.pmtu)
          assert.are.equal(1, #p.retries)        -- the attempt that was too big
          assert.are.equal(hop.mtu, p.retries[1].mtu)
          assert.is_nil(hop.probes[2].pmtu)     -- the next one went out at that size
        end
      end
      assert.are.same(WANT, got)
      -- hop 2's first attempt: r1 said the next hop takes 1400
      local r = t.hops[2].probes[1].retries[1]
      assert.are.equal(fam == 4 and l.hops[1].v4 or l.hops[1].v6, r.addr)
      assert.are.equal(fam == 4 and "dest_unreachable" or "packet_too_big", r.kind)
    end)
  end

  it("adds an mtu column to CSV, where the size shrank, and only with --mtu", function()
    local out, err, code = sonde{ "-n", "--mtu", "-q", "1", "--format", "csv", l.dst.v4 }
    assert.are.equal(0, code, err)
    local lines = helpers.lines((out:gsub("\r", "")))
    assert.matches(",ext,mtu$", lines[1])
    assert.matches(",1400$", lines[3])     -- hop 2
    assert.matches(",$", lines[4])         -- hop 3: no change
    out = sonde{ "-n", "-q", "1", "--format", "csv", l.dst.v4 }
    assert.matches(",ext\r?\n", out)
  end)

  it("starts at PACKETLEN, as traceroute --mtu HOST PACKETLEN; unprivileged too", function()
    flush()
    local out, err, code = sonde{ "-n", "--mtu", "--unprivileged", l.dst.v4, "1450" }
    assert.are.equal(0, code, err)
    local marks = f_marks(out)
    assert.are.same({ [2] = 1400, [4] = 1280 }, marks)
    flush()
    local tout = l:check("src", { "traceroute", "-n", "--mtu", l.dst.v4, "1450" })
    assert.are.same((f_marks(tout)), marks)
  end)

  it("takes RFC 1191's plateaus below a frag needed that names no MTU (an old router), where traceroute stops at !F-0", function()
    -- r2 of its own chain refuses what is over 1400 bytes as a router of
    -- before RFC 1191 did: frag needed with a next-hop MTU of 0
    local p = lab.chain{ routers = 3, v6 = false, name = "mtu0" }
    finally(function() p:destroy() end)
    p:nft("r2", "table inet t {\n  chain f {\n    type filter hook forward priority 0;\n"
      .. "    ip length > 1400 reject with icmp type frag-needed\n  }\n}\n")
    local out, err, code = p:exec("src", { helpers.sonde(), "trace", "-n", "--mtu", "-q", "1",
      "--format", "json", p.dst.v4 })
    assert.are.equal(0, code, err)
    local t = cjson.decode(out)
    assert.are.equal(1006, t.path_mtu)
    assert.are.equal(1006, t.hops[3].mtu)
    -- 1500, then 1492 (still too big), then 1006: both refusals kept
    local tried = t.hops[3].probes[1].retries
    assert.are.equal(2, #tried)
    for _, r in ipairs(tried) do
      assert.are.same({ "dest_unreachable", "frag_needed", p.hops[2].v4 }, { r.kind, r.code, r.addr })
      assert.is_nil(r.mtu)
    end
    local tout = p:check("src", { "traceroute", "-n", "--mtu", "-q", "1", p.dst.v4 })
    assert.matches("!F%-0", tout)
  end)

  it("starts a link-local target's discovery at the MTU of its zone's link", function()
    -- src has two links with fe80::/64 routes: to r1 (MTU 1400) and a
    -- veth pair of MTU 9000 whose route the kernel finds first without
    -- the zone
    local p = lab.chain{ routers = 1, v6 = true, name = "mtuzone" }
    finally(function() p:destroy() end)
    local src = p:nsname("src")
    lab.must({ "ip", "-n", src, "addr", "add", "fe80::a/64", "dev", "to-r1", "nodad" })
    lab.must({ "ip", "-n", p:nsname("r1"), "addr", "add", "fe80::b/64", "dev", "to-src", "nodad" })
    lab.must({ "ip", "-n", src, "link", "set", "to-r1", "mtu", "1400" })
    lab.must({ "ip", "-n", p:nsname("r1"), "link", "set", "to-src", "mtu", "1400" })
    lab.must({ "ip", "-n", src, "link", "add", "big0", "mtu", "9000", "type", "veth",
      "peer", "name", "big1", "mtu", "9000" })
    lab.must({ "ip", "-n", src, "link", "set", "big0", "up" })
    lab.must({ "ip", "-n", src, "link", "set", "big1", "up" })
    helpers.wait_until(function()
      return p:check("src", { "ip", "-6", "route", "show", "dev", "big0" }):find("fe80::/64", 1, true)
    end, 5, "big0's link-local route")
    lab.must({ "ip", "-n", src, "-6", "route", "del", "fe80::/64", "dev", "to-r1" })
    lab.must({ "ip", "-n", src, "-6", "route", "add", "fe80::/64", "dev", "to-r1" })
    assert.is_nil(p:check("src", { "ip", "-6", "route", "get", "fe80::b" }):find("to%-r1"))
    local out, err, code = p:exec("src", { helpers.sonde(), "trace", "-n", "--mtu", "-q", "1", "fe80::b%to-r1" })
    assert.are.equal(0, code, err)
    assert.are.same({ [1] = 1400 }, (f_marks(out)))
  end)

  it("refuses TCP (a SYN's size cannot vary) and dublin, exit 2", function()
    local _, err, code = sonde{ "--mtu", "--protocol", "tcp", l.dst.v4 }
    assert.are.equal(2, code)
    assert.matches("%-%-mtu: a TCP probe", err)
    _, err, code = sonde{ "--mtu", "--strategy", "dublin", l.dst.v4 }
    assert.are.equal(2, code)
    assert.matches("%-%-mtu", err)
  end)
end)
