-- How sonde reads the ICMP and ICMPv6 messages that answer its probes.
-- Fixtures: spec/fixtures/packets.lua (real Linux packets and hand-built ones).
local bit = require "bit"
local core = require "sonde.core"
local fixtures = require "spec.fixtures.packets"

local parse = core.parse_icmp
local bytes = fixtures.bytes

local function v4(name) return assert(parse(bytes(name), 4)) end
local function v6(name) return assert(parse(bytes(name), 6)) end

-- RFC 1071 checksum of s, for hand-editing ICMPv4 messages.
local function cksum(s)
  local sum = 0
  for i = 1, #s - 1, 2 do sum = sum + s:byte(i) * 256 + s:byte(i + 1) end
  if #s % 2 == 1 then sum = sum + s:byte(#s) * 256 end
  while sum > 0xffff do sum = bit.band(sum, 0xffff) + bit.rshift(sum, 16) end
  return bit.band(bit.bnot(sum), 0xffff)
end

-- pkt with its ICMP code replaced (its checksum fixed for IPv4; for IPv6 the
-- kernel checks it, not sonde).
local function with_code(pkt, family, code)
  local at = family == 4 and bit.band(pkt:byte(1), 15) * 4 or 0
  local icmp = pkt:sub(at + 1, at + 1) .. string.char(code) .. "\0\0" .. pkt:sub(at + 5)
  if family == 4 then
    local c = cksum(icmp)
    icmp = icmp:sub(1, 2) .. string.char(bit.rshift(c, 8), bit.band(c, 255)) .. icmp:sub(5)
  end
  return pkt:sub(1, at) .. icmp
end

local function assert_rejected(pkt, family, name)
  local r, msg, ename = parse(pkt, family)
  assert.is_nil(r)
  assert.equal(name, ename)
  assert.equal(name == "EBADMSG" and "EBADMSG: malformed packet"
               or "ENOMSG: packet of a type sonde does not use", msg)
end

describe("an ICMPv4 time-exceeded quoting a UDP probe", function()
  local r = v4("te4_udp")

  it("names the hop and the quoted ports", function()
    assert.same({ "time_exceeded", 11, 0 }, { r.kind, r.type, r.code })
    assert.equal("198.18.100.2", r.from)
    assert.equal("198.18.100.1", r.to)
    assert.equal(64, r.reply_ttl)
    local q = r.quote
    assert.same({ 4, "udp", "198.18.100.1", "198.18.101.2" }, { q.af, q.proto, q.src, q.dst })
    assert.same({ 50000, 33434 }, { q.sport, q.dport })
  end)

  it("gives what the probe carried when it reached the hop", function()
    local q = r.quote
    assert.equal(1, q.ttl)                -- the TTL that expired
    assert.equal(0x0c32, q.ip_id)
    assert.equal(0, q.tos)
    assert.same({ 20, 0x554e }, { q.udp_len, q.udp_csum })
    assert.equal(20, q.l4_len)            -- UDP header + 12 bytes of payload
  end)

  it("has only the fields a time-exceeded has", function()
    assert.is_nil(r.unreach)
    assert.is_nil(r.mtu)
    assert.is_nil(r.pointer)
    assert.is_nil(r.echo_id)
    assert.is_nil(r.quote.flow)
    assert.is_nil(r.quote.tcp_seq)
    assert.is_nil(r.quote.icmp_id)
    assert.is_false(r.has_ext)
    assert.same({}, r.mpls)
  end)
end)

describe("an ICMPv4 time-exceeded quoting a TCP SYN", function()
  it("gives the ports and the sequence number", function()
    local q = v4("te4_tcp").quote
    assert.same({ "tcp", 50001, 80, 0xd447182f }, { q.proto, q.sport, q.dport, q.tcp_seq })
    assert.equal(40, q.l4_len)            -- header with options: Linux quotes it all
    assert.is_nil(q.udp_csum)
  end)
end)

describe("an ICMPv4 time-exceeded quoting an ICMP echo request", function()
  it("gives the echo identifier, sequence and checksum", function()
    local q = v4("te4_icmp").quote
    assert.same({ "icmp", 0x5d1e, 1, 0x62a0 }, { q.proto, q.icmp_id, q.icmp_seq, q.icmp_csum })
    assert.is_nil(q.sport)
  end)
end)

describe("an ICMPv4 time-exceeded quoting the first fragment of a large datagram", function()
  it("still has the ports: the first fragment carries the UDP header", function()
    local q = v4("te4_frag").quote
    assert.same({ 50002, 33434, 1608 }, { q.sport, q.dport, q.udp_len })
    assert.equal(576 - 20 - 8 - 20, q.l4_len) -- Linux quotes up to 576 bytes in all
  end)
end)

describe("an ICMPv4 destination unreachable", function()
  it("from the destination itself says the port is closed", function()
    local r = v4("unreach4_port")
    assert.same({ "dest_unreachable", "port", 3, 3 }, { r.kind, r.unreach, r.type, r.code })
    assert.equal("198.18.101.2", r.from)
    assert.equal(63, r.quote.ttl)         -- one router on the way
    assert.equal(50003, r.quote.sport)
  end)

  it("from a router without a route says net", function()
    local r = v4("unreach4_net")
    assert.same({ "net", 0, "198.18.200.1" }, { r.unreach, r.code, r.quote.dst })
  end)

  it("from an unreachable route says host", function()
    local r = v4("unreach4_host")
    assert.same({ "host", 1 }, { r.unreach, r.code })
  end)

  it("from a prohibit route says prohibited", function()
    local r = v4("unreach4_prohibited")
    assert.same({ "prohibited", 13 }, { r.unreach, r.code })
  end)

  it("for an unknown protocol says protocol and gives its number", function()
    local r = v4("unreach4_proto")
    assert.equal("protocol", r.unreach)
    assert.same({ 253, 12 }, { r.quote.proto, r.quote.l4_len })
    assert.is_nil(r.quote.sport)
  end)

  it("maps every code to one vocabulary shared with ICMPv6", function()
    local names = { [0] = "net", "host", "protocol", "port", "frag_needed", "source_route",
      "net_unknown", "host_unknown", "other", "prohibited", "prohibited", "net", "host",
      "prohibited", "precedence", "precedence", "other" }
    local pkt = bytes("unreach4_port")
    for code = 0, 16 do
      local r = assert(parse(with_code(pkt, 4, code), 4))
      assert.equal(names[code], r.unreach, "code " .. code)
      assert.equal(code, r.code)
    end
    assert.equal("other", assert(parse(with_code(pkt, 4, 255), 4)).unreach)
  end)
end)

describe("an ICMPv4 fragmentation-needed", function()
  it("is a destination unreachable that carries the next-hop MTU", function()
    local r = v4("frag_needed4")
    assert.same({ "dest_unreachable", "frag_needed", 1280 }, { r.kind, r.unreach, r.mtu })
    assert.same({ 50007, 1308 }, { r.quote.sport, r.quote.udp_len })
  end)
end)

describe("an ICMPv4 parameter problem", function()
  it("points at the offending byte of the quoted header", function()
    local r = v4("param4")
    assert.same({ "param_problem", 12, 0, 22 }, { r.kind, r.type, r.code, r.pointer })
  end)

  it("finds the ports after a quoted header with options", function()
    local q = v4("param4").quote
    assert.same({ 0x1234, 50002, 33434 }, { q.ip_id, q.sport, q.dport })
  end)
end)

describe("an ICMPv4 echo reply", function()
  it("gives identifier and sequence, and quotes nothing", function()
    local r = v4("echo4")
    assert.same({ "echo_reply", 0x5d1e, 1, 63 }, { r.kind, r.echo_id, r.echo_seq, r.reply_ttl })
    assert.equal("198.18.101.2", r.from)
    assert.is_nil(r.quote)
  end)
end)

describe("an ICMPv6 time-exceeded quoting a UDP probe", function()
  local r = v6("te6_udp")

  it("names the quoted addresses, ports and flow label", function()
    assert.same({ "time_exceeded", 3, 0 }, { r.kind, r.type, r.code })
    local q = r.quote
    assert.same({ 6, "udp", "2001:db8:100::1", "2001:db8:101::2" }, { q.af, q.proto, q.src, q.dst })
    assert.same({ 50000, 33434, 20, 0x5d9b }, { q.sport, q.dport, q.udp_len, q.udp_csum })
    assert.same({ 1, 0x13eb4, 0 }, { q.ttl, q.flow, q.tos })
    assert.is_nil(q.ip_id)
  end)

  it("leaves the sender and hop limit to the socket that read it", function()
    assert.is_nil(r.from)
    assert.is_nil(r.to)
    assert.is_nil(r.reply_ttl)
  end)
end)

describe("an ICMPv6 time-exceeded quoting a TCP SYN", function()
  it("gives the ports and the sequence number", function()
    local q = v6("te6_tcp").quote
    assert.same({ "tcp", 50001, 80, 0x11a6e9e0, 40 }, { q.proto, q.sport, q.dport, q.tcp_seq, q.l4_len })
  end)
end)

describe("an ICMPv6 time-exceeded quoting an ICMPv6 echo request", function()
  it("gives the echo identifier, sequence and checksum", function()
    local q = v6("te6_icmp").quote
    assert.same({ "icmpv6", 0x5d1e, 1, 0x8cd7 }, { q.proto, q.icmp_id, q.icmp_seq, q.icmp_csum })
  end)
end)

describe("an ICMPv6 time-exceeded quoting IPv6 extension headers", function()
  it("steps over hop-by-hop and destination options to the UDP header", function()
    local q = v6("te6_exthdr").quote
    assert.same({ "udp", 50008, 33434, 20 }, { q.proto, q.sport, q.dport, q.l4_len })
  end)

  it("steps over hop-by-hop, routing, fragment and destination options", function()
    local q = v6("te6_quote_ext_chain").quote
    assert.same({ "udp", 50000, 33434, 0x5d9b }, { q.proto, q.sport, q.dport, q.udp_csum })
  end)

  it("finds the ports in the first fragment of a datagram", function()
    local q = v6("te6_frag").quote
    assert.same({ "udp", 50009, 1508 }, { q.proto, q.sport, q.udp_len })
    assert.equal(1240 - 8 - 40 - 8, q.l4_len) -- ICMPv6 errors fit in 1280 bytes
  end)

  it("finds no ports in a later fragment, only the protocol", function()
    local q = v6("te6_frag_later").quote
    assert.same({ "udp", 0 }, { q.proto, q.l4_len })
    assert.is_nil(q.sport)
  end)

  it("gives up after 8 extension headers", function()
    local q = v6("te6_quote_ext_too_many").quote
    assert.same({ 60, 0 }, { q.proto, q.l4_len })  -- 60: destination options
    assert.is_nil(q.sport)
  end)

  it("stops at a header that the quote cuts off", function()
    local q = v6("te6_quote_ext_cut").quote
    assert.same({ 0, 0 }, { q.proto, q.l4_len })    -- 0: hop-by-hop options
    assert.equal("2001:db8:101::2", q.dst)
  end)
end)

describe("an ICMPv4 time-exceeded quoting a later fragment", function()
  it("has the quoted header but no ports", function()
    local q = v4("te4_quote_later_fragment").quote
    assert.same({ "udp", 0 }, { q.proto, q.l4_len })
    assert.is_nil(q.sport)
  end)
end)

describe("an ICMPv6 destination unreachable", function()
  it("from the destination itself says the port is closed", function()
    local r = v6("unreach6_port")
    assert.same({ "dest_unreachable", "port", 1, 4 }, { r.kind, r.unreach, r.type, r.code })
    assert.equal(63, r.quote.ttl)
  end)

  it("from a router without a route says net", function()
    assert.equal("net", v6("unreach6_noroute").unreach)
  end)

  it("from a prohibit route says prohibited", function()
    assert.equal("prohibited", v6("unreach6_prohibited").unreach)
  end)

  it("after failed neighbour discovery says address", function()
    local r = v6("unreach6_address")
    assert.same({ "address", "2001:db8:101::99" }, { r.unreach, r.quote.dst })
  end)

  it("maps every code to one vocabulary shared with ICMPv4", function()
    local names = { [0] = "net", "prohibited", "beyond_scope", "address", "port", "policy",
      "reject_route", "other", "other" }
    for code = 0, 8 do
      local r = assert(parse(with_code(bytes("unreach6_port"), 6, code), 6))
      assert.equal(names[code], r.unreach, "code " .. code)
    end
  end)
end)

describe("an ICMPv6 packet too big", function()
  it("carries the MTU of the next link", function()
    local r = v6("too_big6")
    assert.same({ "packet_too_big", 2, 1280 }, { r.kind, r.type, r.mtu })
    assert.is_nil(r.unreach)
    assert.equal(50007, r.quote.sport)
  end)
end)

describe("an ICMPv6 parameter problem", function()
  it("points at the unrecognised next header", function()
    local r = v6("param6")
    assert.same({ "param_problem", 1, 6, 253 }, { r.kind, r.code, r.pointer, r.quote.proto })
  end)
end)

describe("an ICMPv6 echo reply", function()
  it("gives identifier and sequence, and quotes nothing", function()
    local r = v6("echo6")
    assert.same({ "echo_reply", 129, 0x5d1e, 1 }, { r.kind, r.type, r.echo_id, r.echo_seq })
    assert.is_nil(r.quote)
  end)
end)

describe("ICMP messages that answer no probe", function()
  it("are refused as ENOMSG: echo requests, redirects, neighbour discovery", function()
    assert_rejected(bytes("echo_request4"), 4, "ENOMSG")
    assert_rejected(bytes("redirect4"), 4, "ENOMSG")
    assert_rejected(bytes("echo_request6"), 6, "ENOMSG")
    assert_rejected(bytes("neighbor_solicit6"), 6, "ENOMSG")
  end)

  it("are refused as ENOMSG: fragment reassembly time exceeded (code 1), which names no hop", function()
    assert_rejected(bytes("te4_reassembly"), 4, "ENOMSG")
    assert_rejected(bytes("te6_reassembly"), 6, "ENOMSG")
    -- the same packets with code 0 are hops
    assert.are.equal("time_exceeded", parse(bytes("te4_udp"), 4).kind)
    assert.are.equal("time_exceeded", parse(bytes("te6_udp"), 6).kind)
  end)
end)

describe("an ICMP error with an RFC 4884 extension and an MPLS label stack (RFC 4950)", function()
  local stack = {
    { label = 16005, exp = 0, s = false, ttl = 1 },
    { label = 24001, exp = 5, s = true, ttl = 1 },
  }

  it("gives the label stack after a 128-byte quote (IPv4: length in 32-bit words)", function()
    local r = v4("te4_mpls")
    assert.is_true(r.has_ext)
    assert.same(stack, r.mpls)
    assert.same({ 50000, 33434 }, { r.quote.sport, r.quote.dport })
    assert.equal(128 - 20, r.quote.l4_len) -- the zero padding is part of the quote
  end)

  it("gives the label stack after a 128-byte quote (IPv6: length in 64-bit words)", function()
    local r = v6("te6_mpls")
    assert.is_true(r.has_ext)
    assert.same(stack, r.mpls)
    assert.equal(128 - 40, r.quote.l4_len)
  end)

  it("accepts the non-compliant form older routers send (length 0, extension at byte 128)", function()
    assert.same(stack, v4("te4_mpls_noncompliant").mpls)
    assert.same(stack, v6("te6_mpls_noncompliant").mpls)
    assert.equal(128 - 20, v4("te4_mpls_noncompliant").quote.l4_len)
  end)

  it("ignores an extension whose checksum is wrong, but keeps the quote", function()
    local r = v4("te4_mpls_bad_ext_cksum")
    assert.is_false(r.has_ext)
    assert.same({}, r.mpls)
    assert.equal(50000, r.quote.sport)
  end)

  it("skips objects of other classes", function()
    local r = v4("te4_ext_unknown_then_mpls")
    assert.same({ { label = 299792, exp = 0, s = true, ttl = 254 } }, r.mpls)
  end)

  it("stops at an object of length 0 or one that overruns the packet", function()
    for _, name in ipairs { "te4_ext_objlen0", "te4_ext_overrun" } do
      local r = v4(name)
      assert.is_true(r.has_ext, name)
      assert.same({}, r.mpls, name)
    end
  end)

  it("keeps a 10-entry stack whole", function()
    local r = v4("te4_mpls_10")
    assert.equal(10, #r.mpls)
    assert.same({ label = 100, exp = 0, s = false, ttl = 255 }, r.mpls[1])
    assert.same({ label = 109, exp = 1, s = true, ttl = 246 }, r.mpls[10])
    assert.is_nil(r.mpls_truncated)
  end)

  it("keeps the first 16 labels of a deeper stack and marks it cut", function()
    local r = v4("te4_mpls_20")
    assert.equal(16, #r.mpls)
    assert.same({ label = 200, exp = 0, s = false, ttl = 255 }, r.mpls[1])
    assert.same({ label = 215, exp = 7, s = false, ttl = 240 }, r.mpls[16])
    assert.is_true(r.mpls_truncated)
  end)

  it("ignores a length attribute under 128 bytes, as Linux does: old routers left garbage there", function()
    local r = v4("te4_rfc4884_short")
    assert.is_false(r.has_ext)
    assert.equal(20 + 16, r.quote.l4_len) -- everything after the quoted IP header
  end)

  it("ignores a length attribute that points past the end of the packet", function()
    local r = v4("te4_rfc4884_beyond")
    assert.is_false(r.has_ext)
    assert.same({ 50000, 20 }, { r.quote.sport, r.quote.l4_len })
  end)
end)

describe("the quoted header fields a middlebox may rewrite", function()
  it("gives a quoted SYN's flags, window and MSS option (a real capture)", function()
    local q = v4("te4_tcp").quote
    assert.same({ 2, 64240, 1460, 60 }, { q.tcp_flags, q.tcp_window, q.tcp_mss, q.ip_len })
    assert.is_true(q.df)
  end)

  it("gives no TCP flags for an 8-byte transport quote", function()
    local q = v4("te4_udp").quote
    assert.is_nil(q.tcp_flags)
    assert.same({ 0, 40, true }, { q.tos, q.ip_len, q.df })
  end)
end)

describe("an ICMP error's extension structure found where routers really put it", function()
  it("reads a real capture whose length attribute (17 words) is under 128 bytes: the stack at byte 128", function()
    local r = v4("te4_real_len17")
    assert.same({ { label = 416240, exp = 0, s = true, ttl = 1 } }, r.mpls)
    assert.equal("padded", r.ext_form)
    assert.equal("icmp", r.quote.proto)
  end)

  it("reads a real ICMPv6 capture with length 10 (80 bytes) and the stack at byte 128", function()
    local r = v6("te6_real_len10")
    assert.same({ { label = 27121, exp = 4, s = false, ttl = 1 },
                  { label = 2, exp = 4, s = true, ttl = 255 } }, r.mpls)
    assert.equal("padded", r.ext_form)
  end)

  it("takes the extension at byte 128 when the length was written in bytes (past the end)", function()
    local r = v4("te4_mpls_len_bytes")
    assert.equal("bytes", r.ext_form)
    assert.same({ { label = 16005, exp = 0, s = false, ttl = 1 },
                  { label = 24001, exp = 5, s = true, ttl = 1 } }, r.mpls)
    assert.equal(128 - 20, r.quote.l4_len)
  end)

  it("says the RFC 4884 form when the length attribute is right", function()
    assert.equal("rfc4884", v4("te4_mpls").ext_form)
    assert.equal("rfc4884", v6("te6_mpls").ext_form)
    assert.is_nil(v4("te4_udp").ext_form)
  end)
end)

describe("RFC 5837 interface information and other extension objects", function()
  it("decodes every sub-object of the incoming and outgoing interfaces, beside the MPLS stack", function()
    local r = v4("te4_ifinfo")
    assert.same({
      { class = 2, ctype = 0x0f, len = 24, role = "incoming", ifindex = 2, addr = "198.18.1.1",
        name = "eth1", mtu = 1500 },
      { class = 2, ctype = 0x8c, len = 24, role = "outgoing", ifindex = 7, addr = "2001:db8:1::1" },
    }, r.ext)
    assert.same({ { label = 16005, exp = 0, s = true, ttl = 1 } }, r.mpls)
  end)

  it("decodes the name of an ICMPv6 error's interface", function()
    assert.same({ { class = 2, ctype = 0x8a, len = 16, role = "outgoing", ifindex = 4, name = "ge-0/0/1" } },
      v6("te6_ifinfo").ext)
  end)

  it("keeps what it decoded before a bad name length or a cut address", function()
    assert.same({ { class = 2, ctype = 0x0f, len = 24, role = "incoming", ifindex = 2, addr = "198.18.1.1" } },
      v4("te4_ifinfo_bad_name").ext)
    assert.same({ { class = 2, ctype = 0x0c, len = 10, role = "incoming", ifindex = 3 } },
      v4("te4_ifinfo_cut").ext)
  end)

  it("reads the ifIndex-only object the MPLS fixture carries", function()
    assert.same({ { class = 2, ctype = 8, len = 4, role = "incoming", ifindex = 2 } },
      v4("te4_ext_unknown_then_mpls").ext)
  end)

  it("gives an object of an unknown class as its class, c-type and bytes", function()
    assert.same({ { class = 200, ctype = 3, len = 8, data = "0102030405060708" } }, v4("te4_ext_unknown").ext)
  end)

  it("keeps 4 objects and marks the rest cut", function()
    local r = v4("te4_ext_5objects")
    assert.equal(4, #r.ext)
    assert.same({ class = 3, ctype = 4, len = 4, data = "00000004" }, r.ext[4])
    assert.is_true(r.ext_truncated)
    assert.is_nil(v4("te4_ifinfo").ext_truncated)
  end)

  it("gives an empty list when there is no extension", function()
    assert.same({}, v4("te4_udp").ext)
  end)
end)

describe("a malformed packet", function()
  it("is refused as EBADMSG", function()
    for _, case in ipairs {
      { "te4_bad_cksum", 4 },       -- the kernel does not check ICMPv4 checksums for raw sockets
      { "te4_later_fragment", 4 },
      { "echo4_ihl4", 4 },
      { "echo4_ihl15", 4 },
      { "te4_total_len_short", 4 },
      { "te4_not_icmp", 4 },
      { "te4_quote_ihl15", 4 },
      { "te4_quote_ip6", 4 },
      { "te6_quote_ip4", 6 },
      { "te6_udp", 4 },             -- an ICMPv6 message read as IPv4
    } do
      assert_rejected(bytes(case[1]), case[2], "EBADMSG")
    end
    assert_rejected("", 4, "EBADMSG")
    assert_rejected("", 6, "EBADMSG")
  end)

  it("is refused when an error quotes less than a whole IP header", function()
    assert_rejected(bytes("te4_udp"):sub(1, 28 + 19), 4, "EBADMSG")
    assert_rejected(bytes("te6_udp"):sub(1, 8 + 39), 6, "EBADMSG")
  end)
end)

describe("an IPv4 read that does not match the total length", function()
  it("is parsed as far as it goes when the read was cut short", function()
    local q = v4("te4_total_len_long").quote
    assert.same({ 50000, 0x554e }, { q.sport, q.udp_csum })
  end)

  it("ends at the total length when bytes follow it", function()
    assert.equal(20, v4("te4_trailer").quote.l4_len)
  end)

  it("is parsed without checksum when it is a first fragment", function()
    local q = v4("te4_first_fragment").quote
    assert.same({ 50000, 33434, 4 }, { q.sport, q.dport, q.l4_len })
    assert.is_nil(q.udp_csum)
  end)
end)

describe("a packet cut short at every length", function()
  -- name, family, where the quoted IP header ends, where the transport header starts
  local cases = {
    { "te4_udp", 4, 48, 48 }, { "te4_tcp", 4, 48, 48 }, { "te4_icmp", 4, 48, 48 },
    { "param4", 4, 52, 52 }, { "te6_udp", 6, 48, 48 }, { "te6_tcp", 6, 48, 48 },
    { "te6_icmp", 6, 48, 48 }, { "te6_exthdr", 6, 48, 72 }, { "te6_quote_ext_chain", 6, 48, 96 },
  }

  it("is refused until the quote has a whole IP header, then has the fields present", function()
    for _, case in ipairs(cases) do
      local name, family, ip_end, l4_at = case[1], case[2], case[3], case[4]
      local pkt = bytes(name)
      local full = assert(parse(pkt, family)).quote
      for n = 0, #pkt do
        local what = name .. " cut to " .. n
        local r, _, ename = parse(pkt:sub(1, n), family)
        if n < ip_end then
          assert.equal("EBADMSG", ename, what)
        else
          assert.is_table(r, what)
          local q, l4 = r.quote, math.max(n - l4_at, 0)
          assert.equal(l4, q.l4_len, what)
          assert.equal(full.dst, q.dst, what)
          if n >= l4_at then assert.equal(full.proto, q.proto, what) end
          local has4, has8 = l4 >= 4, l4 >= 8
          assert.equal(full.sport ~= nil and has4, q.sport ~= nil, what)
          assert.equal(full.udp_csum ~= nil and has8, q.udp_csum ~= nil, what)
          assert.equal(full.tcp_seq ~= nil and has8, q.tcp_seq ~= nil, what)
          assert.equal(full.icmp_id ~= nil and has8, q.icmp_id ~= nil, what)
        end
      end
    end
  end)

  it("never yields more labels than the whole packet, nor fails once the quote is whole", function()
    for _, case in ipairs { { "te4_mpls", 4, 48 }, { "te6_mpls", 6, 48 },
                            { "te4_mpls_noncompliant", 4, 48 }, { "te6_mpls_noncompliant", 6, 48 } } do
      local pkt = bytes(case[1])
      for n = case[3], #pkt do
        local r = assert(parse(pkt:sub(1, n), case[2]))
        assert.is_true(#r.mpls == 0 or n == #pkt, case[1] .. " cut to " .. n)
        assert.equal(n >= case[3] + 4 and 50000 or nil, r.quote.sport)
      end
    end
  end)
end)

describe("a packet with any one byte corrupted", function()
  it("is parsed or refused, never misread past its end", function()
    for _, case in ipairs { { "te4_mpls", 4 }, { "te6_mpls", 6 }, { "te6_quote_ext_chain", 6 },
                            { "param4", 4 }, { "echo6", 6 } } do
      local pkt = bytes(case[1])
      for i = 1, #pkt do
        for _, v in ipairs { 0x00, 0xff, bit.bxor(pkt:byte(i), 0x80) } do
          local bad = pkt:sub(1, i - 1) .. string.char(v) .. pkt:sub(i + 1)
          local r, _, ename = parse(bad, case[2])
          assert.is_true(r ~= nil or ename == "EBADMSG" or ename == "ENOMSG")
          if r then assert.is_true(#r.mpls <= 8) end
        end
      end
    end
  end)
end)

describe("parse_icmp called wrongly", function()
  it("raises an error naming the argument", function()
    assert.has_error(function() parse(nil, 4) end)
    local ok, err = pcall(parse, bytes("echo4"), 5)
    assert.is_false(ok)
    assert.matches("bad argument #2 .*family must be 4 or 6", err)
    assert.has_error(function() parse(bytes("echo4")) end)
  end)
end)
