-- sonde.targets: what a campaign probes (addresses, prefixes, names, files
-- of them) and its deterministic split into shards. Pure Lua: no network.

local targets = require "sonde.targets"

-- Every address of a list, in its numeric order.
local function all(list)
  local out = {}
  for i = 0, list:count() - 1 do out[#out + 1] = list:at(i) end
  return out
end

local function list_of(...)
  local l = targets.list()
  for _, t in ipairs{ ... } do assert(l:add(t)) end
  assert(l:finish())
  return l
end

-- The addresses of shard k of n (seed), in the order they are probed.
local function shard(list, k, n, seed)
  local out = {}
  local it, size = list:iter{ shard = k, shards = n, seed = seed }
  for addr, i in it do
    assert.are.equal(#out + 1, i)
    out[#out + 1] = addr
  end
  assert.are.equal(size, #out)
  return out
end

describe("a target entry", function()
  it("is an IPv4 address, an IPv4 prefix from /0 to /32, or an IPv6 prefix of /96 or longer", function()
    assert.are.same({ af = 4, lo = 3323068417, hi = 3323068417 }, targets.parse("198.18.0.1"))
    local p = targets.parse("198.18.0.0/24")
    assert.are.equal(256, p.hi - p.lo + 1)
    assert.are.same({ af = 4, lo = 0, hi = 4294967295 }, targets.parse("0.0.0.0/0"))
    local v6 = targets.parse("2001:db8::/120")
    assert.are.equal(6, v6.af)
    assert.are.equal(256, v6.hi - v6.lo + 1)
    assert.are.equal(4294967296, select(1, targets.parse("2001:db8::/96")).hi + 1)
  end)

  it("ignores host bits under the prefix length, as nmap does", function()
    assert.are.same(targets.parse("198.18.0.0/24"), targets.parse("198.18.0.77/24"))
    assert.are.same(targets.parse("2001:db8::/126"), targets.parse("2001:db8::3/126"))
  end)

  it("is a host name when it is not numeric", function()
    assert.are.same({ name = "dst.lab" }, targets.parse("dst.lab"))
    assert.are.same({ name = "a-1.example_x.org" }, targets.parse(" a-1.example_x.org "))
  end)

  it("is refused with the reason otherwise", function()
    local cases = {
      ["198.18.0.256"] = "not an IPv4 address",
      ["010.1.1.1"] = "not an IPv4 address",         -- inet_pton's rule: no leading zeros
      ["198.18.0.0/33"] = "IPv4 prefix length must be from 0 to 32",
      ["198.18.0.0/x"] = "not a prefix",
      ["2001:db8::/64"] = "too large",
      ["2001:db8::/129"] = "from 96 to 128",
      ["2001:db8:::1"] = "not an IPv6 address",
      ["bad host!"] = "not an address, a prefix or a host name",
      ["-x"] = "not an address, a prefix or a host name",
      [""] = "empty",
    }
    for text, why in pairs(cases) do
      local e, reason = targets.parse(text)
      assert.is_nil(e, text)
      assert.truthy(reason:find(why, 1, true), text .. ": " .. tostring(reason))
    end
  end)

  it("spells IPv6 addresses as inet_ntop does (RFC 5952), so that they compare with the engine's", function()
    for text, want in pairs{
      ["2001:DB8:0:0:0:0:0:1"] = "2001:db8::1",
      ["2001:db8:0:0:1:0:0:1"] = "2001:db8::1:0:0:1",
      ["0:0:0:0:0:0:0:0"] = "::",
      ["::ffff:198.18.0.1"] = "::ffff:198.18.0.1",
      ["1:0:0:2:0:0:0:3"] = "1:0:0:2::3",
      ["2001:db8:0:1:1:1:1:1"] = "2001:db8:0:1:1:1:1:1",
    } do
      assert.are.equal(want, (targets.canonical(text)))
    end
  end)
end)

describe("a target list", function()
  it("is a set in numeric order, IPv4 first: duplicates and overlapping prefixes count once", function()
    local l = list_of("2001:db8::1", "198.18.0.2", "198.18.0.0/30", "198.18.0.1",
      "2001:db8::/127", "198.18.0.3/32")
    assert.are.equal(6, l:count())
    assert.are.same({ "198.18.0.0", "198.18.0.1", "198.18.0.2", "198.18.0.3",
      "2001:db8::", "2001:db8::1" }, all(l))
  end)

  it("keeps a link-local address's zone: one address on two links is two targets", function()
    -- "lo" is an interface of every host; an index needs none
    local l = list_of("fe80::1%lo", "fe80::%lo/127", "fe80::1%1", "fe80::1")
    assert.are.same({ "fe80::1", "fe80::1%1", "fe80::%lo", "fe80::1%lo" }, all(l))
    local ok, why = targets.list():add("fe80::1%nosuchif0")
    assert.is_nil(ok)
    assert.matches("no interface 'nosuchif0'", why)
    ok, why = targets.list():add("198.18.0.1%lo")
    assert.is_nil(ok)
    assert.matches("zone", why)
  end)

  it("merges adjacent prefixes and finds any position of a large one", function()
    local l = list_of("198.18.0.0/24", "198.18.1.0/24", "198.19.0.0/16")
    assert.are.equal(512 + 65536, l:count())
    assert.are.equal("198.18.1.255", l:at(511))
    assert.are.equal("198.19.0.0", l:at(512))
    assert.are.equal("198.19.255.255", l:at(l:count() - 1))
  end)

  it("keeps host names apart, each once, for the caller to resolve and add", function()
    local l = targets.list()
    assert(l:add("dst.lab"))
    assert(l:add("DST.lab"))
    assert(l:add("r1.lab"))
    assert.are.same({ "dst.lab", "r1.lab" }, l:names())
    assert(l:add("198.18.1.2"))
    assert.are.equal(1, l:finish())
  end)

  it("refuses more addresses than it can number (2^32)", function()
    local l = targets.list()
    assert(l:add("0.0.0.0/0"))
    assert(l:add("2001:db8::/96"))
    local n, why = l:finish()
    assert.is_nil(n)
    assert.truthy(why:find("more than", 1, true))
  end)

  it("reads files: comments and blank lines ignored, a bad line named by its number and skipped", function()
    local l = targets.list()
    local bad = l:add_lines({
      "# lab targets",
      "198.18.0.1",
      "",
      "   198.18.0.0/31   # two",
      "198.18.0.999",
      "2001:db8::1\r",
      "two words",
      "\t",
      "dst.lab",
    }, "hosts.txt")
    assert.are.same({
      { source = "hosts.txt", line = 5, text = "198.18.0.999", reason = "not an IPv4 address: octet 999 is over 255" },
      { source = "hosts.txt", line = 7, text = "two words", reason = "more than one entry on the line" },
    }, bad)
    assert.are.same({ "dst.lab" }, l:names())
    assert.are.equal(3, l:finish())
    assert.are.same({ "198.18.0.0", "198.18.0.1", "2001:db8::1" }, all(l))
  end)

  it("reads lines from an iterator (io.lines, gmatch)", function()
    local l = targets.list()
    local text = "198.18.0.1\n198.18.0.2\nnope!\n"
    local bad = l:add_lines(text:gmatch("([^\n]*)\n"), "stdin")
    assert.are.equal(1, #bad)
    assert.are.equal(3, bad[1].line)
    assert.are.equal(2, l:finish())
  end)
end)

describe("the seeded permutation", function()
  it("is a permutation of 0..n-1 for every n, in O(1) memory per element", function()
    for _, n in ipairs{ 1, 2, 3, 4, 5, 15, 16, 17, 255, 256, 257, 1000, 4097 } do
      local p = targets.permutation(n, 12345)
      local seen = {}
      for i = 0, n - 1 do
        local j = p(i)
        assert(j >= 0 and j < n and j == math.floor(j), "out of range")
        assert(not seen[j], "twice: " .. j)
        seen[j] = true
      end
    end
  end)

  it("is the same for the same seed and another for another seed", function()
    local function order(seed)
      local p, out = targets.permutation(300, seed), {}
      for i = 0, 299 do out[#out + 1] = p(i) end
      return out
    end
    assert.are.same(order(7), order(7))
    assert.are_not.same(order(7), order(8))
    assert.are_not.same(order(0), order(1))
    -- and it is not the identity
    local id = {}
    for i = 0, 299 do id[#id + 1] = i end
    assert.are_not.same(id, order(0))
  end)

  it("works up to 2^32 elements", function()
    local p = targets.permutation(4294967296, 99)
    for _, i in ipairs{ 0, 1, 4294967295 } do
      local j = p(i)
      assert(j >= 0 and j < 4294967296)
    end
  end)
end)

describe("shards", function()
  -- 300 targets: a /24 and 44 more addresses
  local function three_hundred()
    local l = targets.list()
    assert(l:add("198.19.0.0/24"))
    for i = 1, 44 do assert(l:add("198.18.5." .. i)) end
    assert.are.equal(300, l:finish())
    return l
  end

  it("300 targets in 3 shards: every target exactly once, in shards of 100", function()
    local l = three_hundred()
    local seen, total = {}, 0
    for k = 0, 2 do
      local s = shard(l, k, 3, 42)
      assert.are.equal(100, #s)
      for _, a in ipairs(s) do
        assert.is_nil(seen[a], a .. " in two shards")
        seen[a] = k
        total = total + 1
      end
    end
    assert.are.equal(300, total)
    for _, a in ipairs(all(l)) do assert.is_not_nil(seen[a], a .. " in no shard") end
  end)

  it("the same seed gives the same split and order, whatever the order the targets were given in", function()
    local a = three_hundred()
    local b = targets.list()
    for i = 44, 1, -1 do assert(b:add("198.18.5." .. i)) end
    assert(b:add("198.19.0.128/25"))
    assert(b:add("198.19.0.0/25"))
    assert.are.equal(300, b:finish())
    for k = 0, 2 do assert.are.same(shard(a, k, 3, 42), shard(b, k, 3, 42)) end
  end)

  it("a different seed gives a different order and a different split", function()
    local l = three_hundred()
    assert.are_not.same(shard(l, 0, 1, 1), shard(l, 0, 1, 2))
    assert.are_not.same(shard(l, 0, 3, 1), shard(l, 0, 3, 2))
  end)

  it("uneven splits: the first shards hold one more", function()
    local l = list_of("198.18.0.0/29", "198.18.1.0/31") -- 10
    local sizes = {}
    for k = 0, 3 do sizes[#sizes + 1] = #shard(l, k, 4, 0) end
    assert.are.same({ 3, 3, 2, 2 }, sizes)
    assert.are.same({}, shard(list_of("198.18.0.1"), 1, 2, 0))
  end)

  it("K/N is parsed with K from 0, and a bad one is named", function()
    assert.are.same({ 0, 3 }, { targets.parse_shard("0/3") })
    assert.are.same({ 2, 3 }, { targets.parse_shard("2/3") })
    for text, why in pairs{ ["3/3"] = "K must be from 0 to 2", ["1/0"] = "N must be",
                            ["1"] = "expected K/N", ["-1/3"] = "expected K/N" } do
      local k, reason = targets.parse_shard(text)
      assert.is_nil(k)
      assert.truthy(reason:find(why, 1, true), text .. ": " .. reason)
    end
  end)

  it("walks 65 536 targets quickly (no table of them)", function()
    local l = list_of("198.19.0.0/16")
    local t0 = os.clock()
    local n = 0
    for _ in l:iter{ seed = 3 } do n = n + 1 end
    assert.are.equal(65536, n)
    assert(os.clock() - t0 < 2, "took " .. (os.clock() - t0) .. " s")
  end)
end)

describe("a target typed wrong", function()
  it("is refused with the reason a network engineer needs", function()
    local cases = {
      ["300.1.1.1"] = "octet 300 is over 255",
      ["1.2.3.04"] = "octet '04' has a leading zero",
      ["1.2.3"] = "four decimal octets",
      ["2001:db8::zz"] = "not an IPv6 address",
      ["[::1]"] = "brackets are URL syntax",
      [""] = "empty",
      [string.rep("a", 254)] = "254 characters: the most DNS takes is 253",
      [string.rep("b", 64) .. ".example"] = "a label of 64 characters",
    }
    for text, why in pairs(cases) do
      local e, reason = targets.parse(text)
      assert.is_nil(e, text)
      assert.truthy(reason:find(why, 1, true), text .. ": " .. tostring(reason))
    end
  end)

  it("shows NUL bytes, terminal escapes and the backslash escaped", function()
    assert.are.equal("a\\0b\\x1b[2Kc\\\\d\\t\\r", targets.escape("a\0b\27[2Kc\\d\t\r"))
    assert.are.equal("dst.lab", targets.escape("dst.lab"))
  end)

  it("a file line with NUL or an escape is skipped alone, the next line is read", function()
    local l = targets.list()
    local bad = l:add_lines({ "198.18.0.1\0", "198.18.0.2", "\27[1A198.18.0.3", "198.18.0.4" }, "f")
    assert.are.equal(2, #bad)
    assert.are.same({ 1, 3 }, { bad[1].line, bad[2].line })
    assert.are.equal(2, l:finish())
  end)
end)

describe("a link-local IPv6 address with a zone", function()
  it("splits into the address and the zone (an interface name or index)", function()
    assert.are.same({ "fe80::1", "eth0" }, { targets.split_zone("fe80::1%eth0") })
    assert.are.same({ "fe80::1", "2" }, { targets.split_zone("fe80::1%2") })
    assert.is_nil(targets.split_zone("fe80::zz%eth0"))
    assert.is_nil(targets.split_zone("198.18.0.1%eth0"))
    assert.is_nil(targets.split_zone("fe80::1%" .. string.rep("x", 16)))
  end)
end)
