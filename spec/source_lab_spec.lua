-- A probe's source address and interface (probe fields src and iface; trace
-- -s/-i, ping -I, mtr -a/-I, tcping and sweep --source/--interface), on a
-- real kernel.
--
-- The lab is lab.multihomed: a host with uplinks to two routers ra and rb
-- that both reach dst, where hop 1 says which way a probe went and an
-- nftables counter on each router says which sources it saw; and a third
-- uplink whose neighbour's address is routable only in a table of its own
-- (a VRF's where the kernel has them).

local helpers = require "helpers"
local lab = require "lab"

local DST4, DST6 = "198.18.2.2", "2001:db8:2::2"
local A4, A6 = "198.18.0.1", "2001:db8::1"       -- src's address towards ra
local B4, B6 = "198.18.1.1", "2001:db8:1::1"     -- src's address towards rb
local RA4, RA6 = "198.18.0.2", "2001:db8::2"
local RB4, RB6 = "198.18.1.2", "2001:db8:1::2"
local VT4, VT6 = "198.18.5.5", "2001:db8:5::5"  -- vt's, routed only in table 10
local FOREIGN4, FOREIGN6 = "198.18.250.250", "2001:db8:fa::fa"

-- Each router counts what arrives from src by source address.
local COUNTERS = [[
table inet srcsel {
  counter a4 { }
  counter b4 { }
  counter a6 { }
  counter b6 { }
  counter foreign { }
  chain pre {
    type filter hook prerouting priority -500; policy accept;
    ip saddr 198.18.0.1 counter name a4
    ip saddr 198.18.1.1 counter name b4
    ip6 saddr 2001:db8::1 counter name a6
    ip6 saddr 2001:db8:1::1 counter name b6
    ip saddr { 198.18.250.250, 224.0.0.1, 255.255.255.255 } counter name foreign
    ip6 saddr 2001:db8:fa::fa counter name foreign
  }
}
]]

local function build()
  return lab.multihomed{ name = "srcsel", nft = { ra = COUNTERS, rb = COUNTERS } }
end

-- Probes of every protocol and mode, from a script: one line per probe,
-- "name ttl status kind addr src error call".
local PROBES = [[
local sonde = require "sonde"
local dst, src, iface, only = arg[1], arg[2], arg[3], arg[4]
if src == "-" then src = nil end
if iface == "-" then iface = nil end
local eng = assert(sonde.engine{})
local v4 = not dst:find(":")
local kinds = {
  { "icmp", { proto = "icmp" } },
  { "udp", { proto = "udp" } },
  { "udp-seq", { proto = "udp", sport = 40000, bind = "sequence" } },
  { "udp-fixed", { proto = "udp", sport = 41000, bind = "fixed" } },
  { "syn", { proto = "tcp", tcp_mode = "syn", dport = 7 } },
  { "connect", { proto = "tcp", tcp_mode = "connect", dport = 7 } },
}
if v4 then
  kinds[#kinds + 1] = { "icmp-ipid", { proto = "icmp", ip_id = 4242 } }
  kinds[#kinds + 1] = { "udp-ipid", { proto = "udp", ip_id = 4243 } }
  kinds[#kinds + 1] = { "syn-ipid", { proto = "tcp", tcp_mode = "syn", dport = 7, ip_id = 4244 } }
end
eng:run(function()
  for _, k in ipairs(kinds) do
    if only == nil or only == k[1] then
      for ttl = 1, 2 do
        local spec = { dst = dst, ttl = ttl, wait = 2, src = src, iface = iface }
        for f, v in pairs(k[2]) do spec[f] = v end
        local r = eng:probe(spec)
        print(table.concat({ k[1], ttl, r.status, tostring(r.kind), tostring(r.addr), tostring(r.src),
                             r.error and r.error.name or "-", r.error and tostring(r.error.call) or "-" }, " "))
      end
    end
  end
end)
eng:close()
]]

local function parse(out)
  local t = {}
  for line in out:gmatch("[^\n]+") do
    local name, ttl, status, kind, addr, src, err, call =
      line:match("^(%S+) (%d) (%S+) (%S+) (%S+) (%S+) (%S+) (.*)$")
    if name then
      t[#t + 1] = { name = name, ttl = tonumber(ttl), status = status, kind = kind, addr = addr,
                    src = src, error = err, call = call, line = line }
    end
  end
  return t
end

helpers.lab_describe("a probe's source address and interface", function()
  local l, script

  setup(function()
    l = build()
    script = helpers.readable_file(PROBES)
  end)

  teardown(function()
    if script then os.remove(script) end
    if l then l:destroy() end
  end)

  local function counters(node)
    local out = l:check(node, { "nft", "list", "counters", "table", "inet", "srcsel" })
    local c = {}
    for name, n in out:gmatch("counter ([%w_]+) {%s*packets (%d+)") do c[name] = tonumber(n) end
    return c
  end

  local function reset()
    for _, r in ipairs{ "ra", "rb" } do
      l:check(r, { "nft", "reset", "counters", "table", "inet", "srcsel" })
    end
  end

  local function probes(dst, src, iface, who, only)
    local out, err, code = helpers.sonde_in(l, { "run", script, dst, src or "-", iface or "-", only }, who)
    assert.are.equal(0, code, err .. out)
    local t = parse(out)
    assert.is_true(#t >= 2, out .. err)
    return t, out
  end

  -- every probe: hop 1 is `hop`, hop 2 is the destination, and the
  -- result names `src` as its source
  local function reached(t, hop, dst, src, out)
    for _, r in ipairs(t) do
      assert.are.equal("reply", r.status, r.line .. "\n" .. out)
      assert.are.equal(src, r.src, r.line)
      if r.ttl == 1 then
        assert.are.equal("time_exceeded", r.kind, r.line)
        assert.are.equal(hop, r.addr, r.line)
      else
        assert.are.equal(dst, r.addr, r.line)
        assert.are_not.equal("time_exceeded", r.kind, r.line)
      end
    end
  end

  for _, fam in ipairs{
    { "IPv4", DST4, A4, B4, RA4, RB4, "a4", "b4" },
    { "IPv6", DST6, A6, B6, RA6, RB6, "a6", "b6" },
  } do
    local name, dst, a, b, ra, rb, ca, cb = (table.unpack or unpack)(fam)

    describe(name, function()
      it("without src: the route's source and path (through ra)", function()
        reset()
        local t, out = probes(dst)
        reached(t, ra, dst, a, out)
        assert.are.equal(0, counters("rb")[cb] or 0)
      end)

      it("src = the address towards rb: every protocol and mode leaves from it, through rb", function()
        reset()
        local t, out = probes(dst, b)
        reached(t, rb, dst, b, out)
        local c = counters("rb")
        assert.is_true(c[cb] >= #t, out)       -- rb saw every probe from b
        assert.are.equal(0, counters("ra")[cb] or 0)
        assert.are.equal(0, counters("ra")[ca] or 0)
      end)

      it("iface = to-rb: leaves by to-rb, from its address", function()
        reset()
        local t, out = probes(dst, nil, "to-rb")
        reached(t, rb, dst, b, out)
        assert.are.equal(0, counters("ra")[ca] or 0)
      end)

      it("a source that is not this host's fails every probe with EADDRNOTAVAIL, and nothing leaves", function()
        reset()
        local foreign = name == "IPv4" and FOREIGN4 or FOREIGN6
        local t, out = probes(dst, foreign)
        for _, r in ipairs(t) do
          assert.are.equal("failed", r.status, r.line)
          assert.are.equal("EADDRNOTAVAIL", r.error, r.line)
          assert.are.equal("bind(src)", r.call, r.line)
        end
        assert.are.equal(0, counters("ra").foreign or 0, out)
        assert.are.equal(0, counters("rb").foreign or 0, out)
      end)

      -- bind() alone takes more than this host's addresses: an IPv4
      -- multicast or broadcast address, and any address at all where
      -- ip_nonlocal_bind is set; a raw IP_HDRINCL probe would leave from it.
      it("a source bind() takes but no interface holds (multicast, broadcast, ip_nonlocal_bind) is EADDRNOTAVAIL", function()
        reset()
        local v4 = name == "IPv4"
        local sources = v4 and { "224.0.0.1", "255.255.255.255" } or {}
        for _, s in ipairs(sources) do
          local t, out = probes(dst, s)
          for _, r in ipairs(t) do
            assert.are.equal("EADDRNOTAVAIL", r.error, r.line)
          end
          assert.are.equal(0, counters("ra").foreign or 0, out)
          assert.are.equal(0, counters("rb").foreign or 0, out)
        end
        local key = v4 and "net.ipv4.ip_nonlocal_bind" or "net.ipv6.ip_nonlocal_bind"
        l:check("src", { "sysctl", "-qw", key .. "=1" })
        local ok, err = pcall(function()
          local t, out = probes(dst, v4 and FOREIGN4 or FOREIGN6)
          for _, r in ipairs(t) do
            assert.are.equal("failed", r.status, r.line)
            assert.are.equal("EADDRNOTAVAIL", r.error, r.line)
          end
          assert.are.equal(0, counters("ra").foreign or 0, out)
          assert.are.equal(0, counters("rb").foreign or 0, out)
        end)
        l:check("src", { "sysctl", "-qw", key .. "=0" })
        assert(ok, err)
      end)

      it("unprivileged (nobody): ICMP, UDP and TCP connect leave from src, or by to-rb, through rb", function()
        reset()
        for _, only in ipairs{ "icmp", "udp", "udp-seq", "connect" } do
          local t, out = probes(dst, b, nil, helpers.AS_NOBODY, only)
          reached(t, rb, dst, b, out)
          -- and by interface: SO_BINDTODEVICE, which Linux 5.7 and later
          -- let an unprivileged user set
          t, out = probes(dst, nil, "to-rb", helpers.AS_NOBODY, only)
          reached(t, rb, dst, b, out)
        end
        assert.are.equal(0, counters("ra")[cb] or 0)
      end)

      it("unprivileged (nobody): a foreign source is EADDRNOTAVAIL too", function()
        local foreign = name == "IPv4" and FOREIGN4 or FOREIGN6
        for _, only in ipairs{ "icmp", "udp", "connect" } do
          local t = probes(dst, foreign, nil, helpers.AS_NOBODY, only)
          for _, r in ipairs(t) do
            assert.are.equal("EADDRNOTAVAIL", r.error, r.line)
          end
        end
      end)
    end)
  end

  describe("an interface whose routes are in a table of their own (a VRF's)", function()
    it("is a VRF here, where the kernel has them", function()
      if not l.vrf then
        pending("this kernel has no VRF device (CONFIG_NET_VRF): the specs below use the oif rule a VRF installs")
      end
    end)

    it("reaches an address routable only in that table", function()
      for _, dst in ipairs{ VT4, VT6 } do
        local t, out = probes(dst, nil, "to-vr", nil, "icmp")
        assert.are.equal("reply", t[1].status, out)
        assert.are.equal(dst, t[1].addr, out)
        assert.are.equal("echo_reply", t[1].kind, out)
        -- without the interface there is no route
        t, out = probes(dst, nil, nil, nil, "icmp")
        assert.are_not.equal("reply", t[1].status, out)
      end
    end)

    it("every protocol and mode reaches it (hop 1 is vt, by to-vr)", function()
      for _, f in ipairs{ { VT4, "198.18.4.1" }, { VT6, "2001:db8:4::1" } } do
        local t, out = probes(f[1], nil, "to-vr")
        for _, r in ipairs(t) do
          assert.are.equal("reply", r.status, r.line .. "\n" .. out)
          assert.are.equal(f[1], r.addr, r.line)
          assert.are.equal(f[2], r.src, r.line)
        end
      end
    end)
  end)

  describe("the commands' options", function()
    local function sonde(args, who)
      return helpers.sonde_in(l, args, who)
    end

    -- the address on the text line of hop `ttl` (trace's " 1  addr",
    -- mtr's "  1.|-- addr")
    local function hop(out, ttl)
      for line in out:gmatch("[^\n]+") do
        local n, addr = line:match("^%s*(%d+)[.|%s-]+([%x:.]+[%x])")
        if tonumber(n) == ttl then return addr end
      end
    end

    it("trace -s and -i, every protocol, root and nobody, IPv4 and IPv6", function()
      for _, f in ipairs{ { DST4, B4, RB4 }, { DST6, B6, RB6 } } do
        for _, p in ipairs{ "udp", "icmp", "tcp" } do
          for _, who in ipairs{ false, helpers.AS_NOBODY } do
            for _, how in ipairs{ { "-s", f[2] }, { "-i", "to-rb" } } do
              local out, err, code = sonde({ "trace", "-n", "-q", "1", "-w", "2", "--protocol", p, how[1], how[2], f[1] },
                who or nil)
              local what = table.concat({ p, how[1], who and "nobody" or "root", out, err }, " ")
              assert.are.equal(0, code, what)
              assert.are.equal(f[3], hop(out, 1), what)
              assert.are.equal(f[1], hop(out, 2), what)
            end
          end
        end
      end
    end)

    it("trace --format json names the source used", function()
      local out, err, code = sonde{ "trace", "-n", "-q", "1", "-i", "to-rb", "--format", "json", DST4 }
      assert.are.equal(0, code, err)
      local doc = require("cjson").decode(out)
      assert.are.equal(B4, doc.src)
      assert.are.equal("to-rb", doc.hops[1].probes[1].iface)
    end)

    it("mtr -r -c 2 -a ADDR, --address ADDR and -I IFACE report the path through rb", function()
      for _, how in ipairs{ { "-a", B4 }, { "--address", B4 }, { "-I", "to-rb" } } do
        local out, err, code = sonde{ "mtr", "-n", "-r", "-c", "2", how[1], how[2], DST4 }
        assert.are.equal(0, code, err .. out)
        assert.are.equal(RB4, hop(out, 1), out)
        assert.are.equal(DST4, hop(out, 2), out)
      end
    end)

    it("mda --source and --interface explore the path through rb", function()
      for _, how in ipairs{ { "--source", B4 }, { "--interface", "to-rb" } } do
        local out, err, code = sonde{ "mda", "-n", how[1], how[2], DST4 }
        assert.are.equal(0, code, err .. out)
        assert.are.equal(RB4, hop(out, 1), out)
        assert.are.equal(DST4, hop(out, 2), out)
      end
    end)

    it("tcping --source and sweep -S / --source-ip leave from that source (rb counts them)", function()
      reset()
      local out, err, code = sonde{ "tcping", "-c", "1", "--source", B4, DST4, "7" }
      assert.are.equal(1, code, err .. out)          -- refused: the port is closed
      assert.matches("refused", out)
      assert.are.equal(1, counters("rb").b4, out)
      for _, opt in ipairs{ "-S", "--source-ip" } do
        out, err, code = sonde{ "sweep", "-q", opt, B4, DST4 }
        assert.are.equal(0, code, err .. out)
        assert.matches('"alive":true', out)
      end
      assert.are.equal(3, counters("rb").b4)
      assert.are.equal(0, counters("ra").b4 or 0)
    end)

    it("sweep -i and ping -I reach the address routable only by that interface", function()
      local out, err, code = sonde{ "sweep", "-q", "-i", "to-vr", VT4, VT6 }
      assert.are.equal(0, code, err .. out)
      local alive = select(2, out:gsub('"alive":true', ""))
      assert.are.equal(2, alive, out)
      out, err, code = sonde{ "ping", "-c", "1", "-I", "to-vr", VT4 }
      assert.are.equal(0, code, err .. out)
      out, err, code = sonde{ "ping", "-c", "1", "-W", "1", VT4 }
      assert.are_not.equal(0, code, out)
    end)

    it("errors: EADDRNOTAVAIL naming the address, ENODEV naming the interface (exit 3); usage errors (exit 2)", function()
      for _, args in ipairs{
        { "trace", "-n", "-s", FOREIGN4, DST4 },
        { "trace", "-n", "--protocol", "tcp", "-s", FOREIGN4, DST4 },
        { "mtr", "-r", "-c", "1", "-a", FOREIGN4, DST4 },
        { "ping", "-c", "1", "-I", FOREIGN4, DST4 },
        { "tcping", "-c", "1", "--source", FOREIGN4, DST4, "7" },
        { "trace", "-n", "-s", FOREIGN6, DST6 },
      } do
        local out, err, code = sonde(args)
        assert.are.equal(3, code, table.concat(args, " ") .. "\n" .. out .. err)
        -- refused before the first probe: one line, as traceroute -s does
        assert.are.equal("", out)
        assert.are.equal(1, select(2, err:gsub("\n", "")), err)
        assert.matches("EADDRNOTAVAIL", err)
        assert.matches((args[#args] == "7" and FOREIGN4 or args[#args - 1]):gsub("[.:]", "%%%0"), err)
      end
      for _, args in ipairs{ { "trace", "-n", "-i", "nosuchdev", DST4 }, { "mtr", "-r", "-c", "1", "-I", "nosuchdev", DST4 },
                             { "ping", "-c", "1", "-I", "nosuchdev", DST4 } } do
        local out, err, code = sonde(args)
        assert.are.equal(3, code, table.concat(args, " ") .. "\n" .. out .. err)
        assert.are.equal("", out)
        assert.matches("^sonde %a+: ENODEV: [^\n]*nosuchdev%)\n$", err)
      end
      for _, args in ipairs{ { "trace", "-s", "bogus", DST4 }, { "trace", "-i", "a/b", DST4 },
                             { "trace", "-i", "sixteen-chars-xx", DST4 }, { "trace", "-6", "-s", B4, DST6 },
                             { "trace", "-s", B4, DST6 }, { "sweep", "-S", B6, DST4 } } do
        local out, err, code = sonde(args)
        assert.are.equal(2, code, table.concat(args, " ") .. "\n" .. out .. err)
        assert.is_nil(err:find("traceback"), err)
      end
    end)
  end)

  it("an unknown interface is ENODEV on every path", function()
    local t, out = probes(DST4, nil, "nosuchdev")
    for _, r in ipairs(t) do
      assert.are.equal("ENODEV", r.error, r.line .. "\n" .. out)
      assert.are.equal("setsockopt(SO_BINDTODEVICE)", r.call, r.line)
    end
  end)
end)
