-- The IP header fields a probe sets itself (README "Flows"): the IPv4
-- identification, DF, and the IPv6 flow label, seen on the wire.
--
-- src — r1 — dst, the link beyond r1 with an MTU of 1280. nftables
-- counters in dst's prerouting hook (before any reassembly) count what
-- arrives from src by the header field asked for; each case resets them,
-- sends its probes with `sonde run` (as root, so with the raw sockets
-- opened before the privilege drop, or as nobody: unprivileged) and reads
-- them back. The MTU cases probe fresh addresses that dst answers for
-- (198.19.0.0/24, 2001:db8:ff::/64, AnyIP), so that no case inherits a
-- path MTU another one taught the kernel.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

local AS_NOBODY = helpers.AS_NOBODY

local RULES = [[
table inet ff {
  counter v4_all { }
  counter v4_id { }
  counter v4_hdr { }
  counter v4_icmp_df { }
  counter v4_icmp_nodf { }
  counter v4_udp_df { }
  counter v4_udp_nodf { }
  counter v4_frag { }
  counter v4_syn_nodf { }
  counter v4_syn_ef { }
  counter v6_all { }
  counter v6_label_icmp { }
  counter v6_label_udp { }
  counter v6_label_tcp { }
  counter v6_label0 { }
  counter v6_frag { }
  counter v6_syn_ef { }
  chain pre {
    type filter hook prerouting priority -500; policy accept;
    ip saddr 198.18.0.1 jump v4
    ip6 saddr 2001:db8::1 jump v6
  }
  chain v4 {
    counter name v4_all
    ip id 4242 counter name v4_id
    ip id 4243 ip ttl 9 ip dscp ef counter name v4_hdr
    meta l4proto icmp ip frag-off & 0x4000 != 0 counter name v4_icmp_df
    meta l4proto icmp ip frag-off & 0x4000 == 0 counter name v4_icmp_nodf
    meta l4proto udp ip frag-off & 0x4000 != 0 counter name v4_udp_df
    meta l4proto udp ip frag-off & 0x4000 == 0 counter name v4_udp_nodf
    ip frag-off & 0x3fff != 0 counter name v4_frag
    tcp flags syn ip frag-off & 0x4000 == 0 counter name v4_syn_nodf
    tcp flags syn ip dscp ef counter name v4_syn_ef
  }
  chain v6 {
    counter name v6_all
    icmpv6 type echo-request ip6 flowlabel 0x12345 counter name v6_label_icmp
    meta l4proto udp ip6 flowlabel 0x12345 counter name v6_label_udp
    tcp flags syn ip6 flowlabel 0x12345 counter name v6_label_tcp
    meta l4proto udp ip6 flowlabel 0 counter name v6_label0
    ip6 nexthdr ipv6-frag counter name v6_frag
    tcp flags syn ip6 dscp ef counter name v6_syn_ef
  }
}
]]

-- Runs the probes of `specs` one after the other and prints each outcome
-- as a JSON line: the result, { refused = ENAME } when the engine would
-- not start it, { raised = message } for misuse.
local SCRIPT = [[
local sonde = require "sonde"
local json = require "sonde.json"
local eng = assert(sonde.engine{})
local specs = %s
local out = {}
eng:run(function()
  for i, s in ipairs(specs) do
    local ok, r, err, name = pcall(eng.probe, eng, s)
    if not ok then
      out[i] = { raised = tostring(r) }
    elseif r == nil then
      out[i] = { refused = name, message = err }
    else
      r.id = nil
      out[i] = r
    end
  end
end)
eng:close()
for _, r in ipairs(out) do print(json.encode(r)) end
]]

-- A Lua literal of a list of flat tables of strings, numbers and booleans.
local function literal(list)
  local items = {}
  for i, t in ipairs(list) do
    local fields = {}
    for k, v in pairs(t) do
      local s = type(v) == "string" and ("%q"):format(v) or tostring(v)
      fields[#fields + 1] = ("%s = %s"):format(k, s)
    end
    table.sort(fields)
    items[i] = "{ " .. table.concat(fields, ", ") .. " }"
  end
  return "{\n  " .. table.concat(items, ",\n  ") .. "\n}"
end

-- The probe outcomes of the schema, checked with a real validator.
local PROBE_CHECK = [[
import json, sys
from jsonschema import Draft202012Validator
s = json.load(open(sys.argv[1]))
v = Draft202012Validator({"$ref": "#/$defs/probe", "$defs": s["$defs"]})
bad = 0
for line in open(sys.argv[2]):
    for e in v.iter_errors(json.loads(line)):
        bad += 1
        print(line.strip(), "->", e.message)
sys.exit(1 if bad else 0)
]]

local function valid_probes(results)
  local lines = {}
  for i, r in ipairs(results) do
    local c = {}
    -- as `sonde trace` writes them: the source address is the trace's
    for k, v in pairs(r) do if k ~= "src" then c[k] = v end end
    lines[i] = cjson.encode(c)
  end
  local prog = helpers.readable_file(PROBE_CHECK)
  local doc = helpers.readable_file(table.concat(lines, "\n") .. "\n")
  local out, err, code = lab.run({ "/usr/bin/python3", prog, schema.path, doc })
  os.remove(prog)
  os.remove(doc)
  return code == 0, out .. err
end

helpers.lab_describe("per-probe IP header fields on the wire", function()
  local l

  setup(function()
    l = lab.chain{ routers = 1, v6 = true, name = "flowf" }
    l:sysctl("src", "net.ipv4.ping_group_range", "0 2147483647")
    -- beyond r1, 1280 bytes at most: whether r1 may fragment (IPv4) or
    -- must refuse (IPv6) a larger probe
    l:check("r1", { "ip", "link", "set", "to-dst", "mtu", "1280" })
    l:check("dst", { "ip", "link", "set", "to-r1", "mtu", "1280" })
    l:check("dst", { "ip", "route", "add", "local", "198.19.0.0/24", "dev", "lo" })
    l:check("dst", { "ip", "-6", "route", "add", "local", "2001:db8:ff::/64", "dev", "lo" })
    l:route("src", "198.19.0.0/24 via 198.18.0.2")
    l:route("r1", "198.19.0.0/24 via 198.18.1.2")
    l:route("src", "2001:db8:ff::/64 via 2001:db8::2")
    l:route("r1", "2001:db8:ff::/64 via 2001:db8:1::2")
    l:nft("dst", RULES)
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  -- as: "root" (raw sockets) or "nobody" (unprivileged)
  local function probe(as, specs)
    local path = helpers.readable_file(SCRIPT:format(literal(specs)))
    local argv = {}
    if as == "nobody" then
      for _, a in ipairs(AS_NOBODY) do argv[#argv + 1] = a end
    end
    argv[#argv + 1] = helpers.sonde()
    argv[#argv + 1] = "run"
    argv[#argv + 1] = path
    local out, err, code = l:exec("src", argv)
    os.remove(path)
    assert.are.equal(0, code, err)
    local rs = {}
    for line in out:gmatch("[^\n]+") do rs[#rs + 1] = cjson.decode(line) end
    assert.are.equal(#specs, #rs, out .. err)
    return rs
  end

  local function reset()
    l:check("dst", { "nft", "reset", "counters", "table", "inet", "ff" })
  end

  local function counters()
    local out = l:check("dst", { "nft", "list", "counters", "table", "inet", "ff" })
    local c = {}
    for name, n in out:gmatch("counter ([%w_]+) {%s*packets (%d+)") do c[name] = tonumber(n) end
    assert.truthy(c.v4_all and c.v6_all, out)
    return c
  end

  local function reply(r, kind, addr, what)
    assert.are.equal("reply", r.status, what .. ": " .. cjson.encode(r))
    assert.are.equal(kind, r.kind, what .. ": " .. cjson.encode(r))
    if addr then assert.are.equal(addr, r.addr, what .. ": " .. cjson.encode(r)) end
  end

  local function failed(r, name, call, what)
    assert.are.equal("failed", r.status, what .. ": " .. cjson.encode(r))
    assert.are.equal(name, r.error and r.error.name, what .. ": " .. cjson.encode(r))
    assert.truthy(r.error.call and r.error.call:find(call, 1, true), what .. ": " .. cjson.encode(r))
  end

  it("writes the IPv4 identification of ICMP and UDP probes (raw sockets), with their TTL, TOS and DF", function()
    local d = l.dst.v4
    reset()
    local rs = probe("root", {
      { dst = d, proto = "icmp", ip_id = 4242, wait = 2 },
      { dst = d, proto = "udp", ip_id = 4242, wait = 2 },
      -- Paris UDP too: dst answers only if the checksum we wrote is right
      { dst = d, proto = "udp", ip_id = 4242, checksum = 0x1234, bind = "fixed", sport = 40000, wait = 2 },
      { dst = d, proto = "udp", ip_id = 4242, df = false, dport = 33500, wait = 2 },
      { dst = d, proto = "icmp", ip_id = 4243, ttl = 10, tos = 0xb8, wait = 2 },
      -- a router's quote of such a probe is matched like any other
      { dst = d, proto = "udp", ip_id = 4244, ttl = 1, wait = 2 },
      -- the control: without ip_id, the ID is the kernel's
      { dst = d, proto = "udp", dport = 33501, wait = 2 },
    })
    reply(rs[1], "echo_reply", d, "icmp")
    reply(rs[2], "dest_unreachable", d, "udp")
    reply(rs[3], "dest_unreachable", d, "paris udp")
    reply(rs[4], "dest_unreachable", d, "udp df=false")
    reply(rs[5], "echo_reply", d, "icmp ttl/tos")
    reply(rs[6], "time_exceeded", l.hops[1].v4, "udp ttl 1")
    reply(rs[7], "dest_unreachable", d, "control")
    for i = 1, 4 do assert.are.equal(4242, rs[i].ip_id) end
    assert.are.equal(false, rs[4].df)
    assert.is_nil(rs[7].ip_id)
    local c = counters()
    assert.are.equal(6, c.v4_all)          -- the TTL 1 probe ended at r1
    assert.are.equal(4, c.v4_id)
    assert.are.equal(1, c.v4_hdr)          -- ID 4243, TTL 10 - 1, DSCP EF
    -- DF set unless df = false, as the kernel sets it on what fits
    assert.are.equal(2, c.v4_icmp_df)
    assert.are.equal(3, c.v4_udp_df)       -- with ip_id, Paris, the control
    assert.are.equal(1, c.v4_udp_nodf)
    assert.is_true(valid_probes(rs))
  end)

  for _, as in ipairs{ "root", "nobody" } do
    it(("sets and clears DF on IPv4 ICMP and UDP probes as %s"):format(as), function()
      local d = l.dst.v4
      reset()
      local rs = probe(as, {
        { dst = d, proto = "icmp", df = true, wait = 2 },
        { dst = d, proto = "icmp", df = false, wait = 2 },
        { dst = d, proto = "udp", df = true, wait = 2 },
        { dst = d, proto = "udp", df = false, dport = 33435, wait = 2 },
        { dst = d, proto = "udp", df = false, bind = "sequence", sport = 41000, seq = 1, wait = 2 },
      })
      reply(rs[1], "echo_reply", d, "icmp df")
      reply(rs[2], "echo_reply", d, "icmp no df")
      for i = 3, 5 do reply(rs[i], "dest_unreachable", d, "udp " .. i) end
      assert.are.equal(true, rs[1].df)
      assert.are.equal(false, rs[2].df)
      local c = counters()
      assert.are.equal(5, c.v4_all)
      assert.are.equal(1, c.v4_icmp_df)
      assert.are.equal(1, c.v4_icmp_nodf)
      assert.are.equal(1, c.v4_udp_df)
      assert.are.equal(2, c.v4_udp_nodf)
      -- a shared socket goes back to the kernel's choice afterwards
      reset()
      rs = probe(as, { { dst = d, proto = "icmp", df = false, wait = 2 },
                       { dst = d, proto = "icmp", wait = 2 } })
      reply(rs[2], "echo_reply", d, "icmp after")
      c = counters()
      assert.are.equal(1, c.v4_icmp_nodf)
      assert.are.equal(1, c.v4_icmp_df)
    end)

    it(("over the path MTU, lets an IPv4 router fragment or refuse as df says, as %s"):format(as), function()
      local base = as == "root" and 10 or 20
      reset()
      local rs = probe(as, {
        { dst = "198.19.0." .. base + 1, proto = "udp", size = 1400, df = true, wait = 2 },
        { dst = "198.19.0." .. base + 2, proto = "icmp", size = 1400, df = true, wait = 2 },
        { dst = "198.19.0." .. base + 3, proto = "udp", size = 1400, df = false, wait = 2 },
        { dst = "198.19.0." .. base + 4, proto = "icmp", size = 1400, df = false, wait = 2 },
      })
      for i = 1, 2 do
        reply(rs[i], "dest_unreachable", l.hops[1].v4, "df " .. i)
        assert.are.equal("frag_needed", rs[i].code)
        assert.are.equal(1280, rs[i].mtu)
      end
      reply(rs[3], "dest_unreachable", "198.19.0." .. base + 3, "udp no df")
      reply(rs[4], "echo_reply", "198.19.0." .. base + 4, "icmp no df")
      -- r1 fragmented both: two pieces each
      assert.are.equal(4, counters().v4_frag)
      -- and now that the path MTU is known, df = true refuses at once
      rs = probe(as, { { dst = "198.19.0." .. base + 1, proto = "udp", size = 1400, df = true, wait = 2 } })
      failed(rs[1], "EMSGSIZE", "sendmsg", "df over a known path MTU")
    end)

    it(("over the path MTU, fragments or refuses at the IPv6 sender as df says, as %s"):format(as), function()
      local base = as == "root" and 0x10 or 0x20
      local function a(n) return ("2001:db8:ff::%x"):format(base + n) end
      reset()
      -- IPv6 routers never fragment: r1 answers packet too big either way,
      -- and the sender learns the path MTU
      local rs = probe(as, {
        { dst = a(1), proto = "udp", size = 1400, df = false, wait = 2 },
        { dst = a(2), proto = "icmp", size = 1400, df = false, wait = 2 },
      })
      for i = 1, 2 do
        reply(rs[i], "packet_too_big", l.hops[1].v6, "learn " .. i)
        assert.are.equal(1280, rs[i].mtu)
      end
      rs = probe(as, {
        { dst = a(1), proto = "udp", size = 1400, df = true, wait = 2 },
        { dst = a(2), proto = "icmp", size = 1400, df = true, wait = 2 },
        { dst = a(1), proto = "udp", size = 1400, df = false, wait = 2 },
        { dst = a(2), proto = "icmp", size = 1400, df = false, wait = 2 },
      })
      failed(rs[1], "EMSGSIZE", "sendmsg", "udp df")
      failed(rs[2], "EMSGSIZE", "sendmsg", "icmp df")
      -- (an ICMPv6 error leaves from an address of dst's own: the AnyIP one
      -- is on no interface)
      reply(rs[3], "dest_unreachable", l.dst.v6, "udp fragmented")
      reply(rs[4], "echo_reply", a(2), "icmp fragmented")
      assert.are.equal(4, counters().v6_frag)
    end)

    it(("sends the IPv6 flow label asked for on ICMP, UDP and TCP as %s"):format(as), function()
      local d = l.dst.v6
      reset()
      local specs = {
        { dst = d, proto = "icmp", flow_label = 0x12345, wait = 2 },
        { dst = d, proto = "udp", flow_label = 0x12345, wait = 2 },
        { dst = d, proto = "tcp", flow_label = 0x12345, dport = 81, wait = 2 },
        { dst = d, proto = "udp", flow_label = 0, dport = 33435, wait = 2 },
        -- the control: the kernel's own label, and a shared socket back to it
        { dst = d, proto = "udp", dport = 33436, wait = 2 },
        { dst = d, proto = "tcp", dport = 82, tos = 0xb8, wait = 2 },
      }
      if as == "root" then
        specs[#specs + 1] = { dst = d, proto = "udp", flow_label = 0x12345, checksum = 7,
                              bind = "fixed", sport = 40001, wait = 2 }
      end
      local rs = probe(as, specs)
      reply(rs[1], "echo_reply", d, "icmp")
      reply(rs[2], "dest_unreachable", d, "udp")
      reply(rs[3], "tcp_rst", d, "tcp")
      reply(rs[4], "dest_unreachable", d, "udp label 0")
      reply(rs[5], "dest_unreachable", d, "control")
      reply(rs[6], "tcp_rst", d, "tcp tos")
      assert.are.equal(0x12345, rs[1].flow_label)
      assert.are.equal(0, rs[4].flow_label)
      assert.is_nil(rs[5].flow_label)
      local c = counters()
      assert.are.equal(#specs, c.v6_all)
      assert.are.equal(1, c.v6_label_icmp)
      assert.are.equal(as == "root" and 2 or 1, c.v6_label_udp)
      assert.are.equal(1, c.v6_label_tcp)
      assert.are.equal(1, c.v6_label0)
      assert.are.equal(1, c.v6_syn_ef)
      if as == "root" then reply(rs[7], "dest_unreachable", d, "paris udp") end
      assert.is_true(valid_probes(rs))
    end)

    it(("refuses what a probe cannot carry with a named error, as %s"):format(as), function()
      local d4, d6 = l.dst.v4, l.dst.v6
      reset()
      -- connect mode: the kernel writes the SYN (a half-open SYN of
      -- sonde's own carries these fields: spec/tcp_syn_lab_spec.lua)
      local specs = {
        { dst = d4, proto = "tcp", tcp_mode = "connect", ip_id = 7, wait = 2 },
        { dst = d6, proto = "tcp", tcp_mode = "connect", df = true, wait = 2 },
        { dst = d4, proto = "tcp", tcp_mode = "connect", df = false, tos = 0xb8, dport = 83, wait = 2 },
      }
      if as == "nobody" then
        specs[#specs + 1] = { dst = d4, proto = "icmp", ip_id = 7, wait = 2 }
        specs[#specs + 1] = { dst = d4, proto = "udp", ip_id = 7, wait = 2 }
      end
      local rs = probe(as, specs)
      failed(rs[1], "ENOTSUP", "ip_id (TCP", "ip_id on tcp")
      assert.are.equal(7, rs[1].ip_id)
      failed(rs[2], "ENOTSUP", "df (IPv6 TCP", "df on IPv6 tcp")
      -- what TCP can do: DF off and the TOS on its SYN
      reply(rs[3], "tcp_rst", d4, "tcp df=false")
      if as == "nobody" then
        failed(rs[4], "ENOTSUP", "ip_id (needs raw sockets", "icmp ip_id unprivileged")
        failed(rs[5], "ENOTSUP", "ip_id (needs raw sockets", "udp ip_id unprivileged")
      end
      local c = counters()
      assert.are.equal(1, c.v4_all)
      assert.are.equal(1, c.v4_syn_nodf)
      assert.are.equal(1, c.v4_syn_ef)
      assert.are.equal(0, c.v6_all)
      assert.is_true(valid_probes(rs))
    end)
  end

  it("rejects a field for the wrong family or out of range, naming it and the value", function()
    reset()
    local rs = probe("root", {
      { dst = l.dst.v6, proto = "udp", ip_id = 1 },
      { dst = l.dst.v4, proto = "udp", flow_label = 1 },
      { dst = l.dst.v6, proto = "udp", flow_label = 0x100000 },
      { dst = l.dst.v4, proto = "udp", ip_id = 0 },
      { dst = l.dst.v4, proto = "udp", df = 1 },
    })
    assert.matches("field 'ip_id' is for IPv4 destinations", rs[1].raised)
    assert.matches("field 'flow_label' is for IPv6 destinations", rs[2].raised)
    assert.matches("field 'flow_label' must be from 0 to 1048575 %(got 1048576%)", rs[3].raised)
    assert.matches("field 'ip_id' must be from 1 to 65535 %(got 0%)", rs[4].raised)
    assert.matches("field 'df' must be a boolean %(got number%)", rs[5].raised)
    local c = counters()
    assert.are.equal(0, c.v4_all + c.v6_all)
  end)

  -- The commands' --df and --tos put the same fields on every probe.
  it("gives ping --df yes|no and --tos, tcping and trace --tos, on the wire", function()
    local cmd = function(argv)
      local full = { helpers.sonde() }
      for _, a in ipairs(argv) do full[#full + 1] = a end
      return l:exec("src", full)
    end
    reset()
    -- 1300 bytes with DF: r1 cannot forward it over the 1280 link
    local out, err, code = cmd{ "ping", "-c", "1", "-W", "1", "-s", "1300", "--df", "yes", "198.19.0.71" }
    assert.are.equal(1, code, err)
    assert.matches("From " .. l.hops[1].v4:gsub("%.", "%%.") .. " icmp_seq=1 Frag needed and DF set %(mtu = 1280%)", out)
    -- without DF, r1 fragments it and dst answers
    out, err, code = cmd{ "ping", "-c", "1", "-W", "1", "-s", "1300", "--df", "no", "198.19.0.72" }
    assert.are.equal(0, code, err)
    assert.matches("1 received", out)
    local c = counters()
    -- at dst: the second probe in two fragments, without DF; the first
    -- never got past r1
    assert.are.same({ 2, 2, 0 }, { c.v4_frag, c.v4_icmp_nodf, c.v4_icmp_df }, cjson.encode(c))
    reset()
    out, err, code = cmd{ "tcping", "-c", "2", "-i", "0", "--tos", "184", l.dst.v4, "81" }
    assert.are.equal(1, code, err .. out)  -- refused: nothing listens
    out, err, code = cmd{ "trace", "-n", "--protocol", "tcp", "--port", "81", "--tos", "184", "-q", "1",
      "--format", "json", l.dst.v6 }
    assert.are.equal(0, code, err .. out)
    c = counters()
    assert.are.equal(2, c.v4_syn_ef)
    assert.is_true(c.v6_syn_ef >= 1, "v6 EF SYNs: " .. c.v6_syn_ef)
    -- a bad value names the option
    out, err, code = cmd{ "ping", "--df", "maybe", l.dst.v4 }
    assert.are.equal(2, code)
    assert.matches("%-%-df: invalid value 'maybe'", err)
  end)

  -- Last: once a socket of a namespace has held an exclusive lease, Linux
  -- checks every flow label sent there against the sender's leases for as
  -- long as the namespace lives.
  it("leases the label where the kernel wants a lease, and names EPERM for one held exclusively", function()
    local d = l.dst.v6
    local holder = l:spawn("src", { helpers.labpeer(), "flow-label", d, tostring(0x54321), "-t", "60" })
    holder:wait_for("^ready$", 5)
    for _, as in ipairs{ "root", "nobody" } do
      reset()
      local specs = {
        { dst = d, proto = "icmp", flow_label = 0x12345, wait = 2 },
        { dst = d, proto = "udp", flow_label = 0x12345, wait = 2 },
        { dst = d, proto = "tcp", tcp_mode = "connect", flow_label = 0x12345, dport = 81, wait = 2 },
        { dst = d, proto = "udp", flow_label = 0x54321, wait = 2 },
        { dst = d, proto = "tcp", tcp_mode = "connect", flow_label = 0x54321, wait = 2 },
      }
      -- SYN mode (raw sockets): the same lease on the raw TCP socket
      if as == "root" then
        specs[#specs + 1] = { dst = d, proto = "tcp", tcp_mode = "syn", flow_label = 0x12345,
                              dport = 82, wait = 2 }
        specs[#specs + 1] = { dst = d, proto = "tcp", tcp_mode = "syn", flow_label = 0x54321,
                              dport = 83, wait = 2 }
      end
      local rs = probe(as, specs)
      reply(rs[1], "echo_reply", d, as .. " icmp")
      reply(rs[2], "dest_unreachable", d, as .. " udp")
      reply(rs[3], "tcp_rst", d, as .. " tcp")
      failed(rs[4], "EPERM", "setsockopt(IPV6_FLOWLABEL_MGR)", as .. " udp exclusive")
      failed(rs[5], "EPERM", "setsockopt(IPV6_FLOWLABEL_MGR)", as .. " tcp exclusive")
      local syn = as == "root" and 1 or 0
      if as == "root" then
        reply(rs[6], "tcp_rst", d, "syn")
        failed(rs[7], "EPERM", "setsockopt(IPV6_FLOWLABEL_MGR)", "syn exclusive")
      end
      local c = counters()
      assert.are.equal(3 + syn, c.v6_all)
      assert.are.equal(1, c.v6_label_icmp)
      assert.are.equal(1, c.v6_label_udp)
      assert.are.equal(1 + syn, c.v6_label_tcp)
    end
    holder:stop()
  end)
end)
