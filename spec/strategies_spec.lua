-- The trace strategies as pure modules (sonde.strategy.paris, .dublin),
-- and the formats of their graphs (sonde.format.dublin, .dot, .mda):
-- which probe fields name a flow and which name a probe.

local paris = require "sonde.strategy.paris"
local dublin = require "sonde.strategy.dublin"
local classic = require "sonde.strategy.classic"
local fdublin = require "sonde.format.dublin"
local dot = require "sonde.format.dot"
local fmda = require "sonde.format.mda"

describe("the paris strategy", function()
  it("keeps UDP's ports and names each probe by its checksum", function()
    local s = paris.new{ dst = "198.18.5.2", proto = "udp", port = 33434 }
    local seen = {}
    for seq = 0, 99 do
      local p = s.spec(1 + seq % 5, seq)
      assert.are.equal("udp", p.proto)
      assert.are.equal(33434, p.dport)
      assert.is_nil(p.sport)                   -- the engine's own port, one for the run
      assert.is_nil(p.bind)
      assert.is_nil(seen[p.checksum])
      seen[p.checksum] = true
    end
    assert.is_nil(s.inflight)
  end)

  it("never asks for checksum 0 or 0xffff, and wraps after 65534 probes", function()
    assert.are.equal(1, paris.probe_checksum(0))
    assert.are.equal(65534, paris.probe_checksum(65533))
    assert.are.equal(1, paris.probe_checksum(65534))
    for seq = 0, 200000, 997 do
      local c = paris.probe_checksum(seq)
      assert.is_true(c >= 1 and c <= 65534)
    end
  end)

  it("binds a given UDP source port for every probe", function()
    local p = paris.new{ dst = "198.18.5.2", proto = "udp", port = 33434, sport = 40000 }.spec(3, 7)
    assert.are.same({ "fixed", 40000, 8 }, { p.bind, p.sport, p.checksum })
  end)

  it("holds the ICMP checksum at one value and leaves the sequence to the engine", function()
    local s = paris.new{ dst = "2001:db8:5::2", proto = "icmp" }
    for seq = 0, 9 do
      local p = s.spec(2, seq)
      assert.are.equal(paris.ICMP_CHECKSUM, p.checksum)
      assert.is_nil(p.icmp_seq)
      assert.is_nil(p.icmp_id)
      assert.is_nil(p.dport)
    end
    assert.are.equal(0x1234, paris.new{ dst = "x", proto = "icmp", checksum = 0x1234 }.spec(1, 0).checksum)
  end)

  it("sends TCP from one source port to one port, one probe at a time", function()
    local s = paris.new{ dst = "198.18.5.2", proto = "tcp", port = 443, size = 10 }
    assert.are.equal(1, s.inflight)
    for seq = 0, 5 do
      local p = s.spec(seq + 1, seq)
      assert.are.same({ "fixed", 33434, 443 }, { p.bind, p.sport, p.dport })
      assert.is_nil(p.checksum)
      assert.is_nil(p.size)
    end
  end)

  it("differs from classic, which varies the destination port per probe", function()
    local c = classic.new{ dst = "198.18.5.2", proto = "udp", port = 33434 }
    assert.are_not.equal(c.spec(1, 0).dport, c.spec(1, 1).dport)
  end)
end)

describe("the dublin strategy", function()
  it("makes 4 Paris flows by default, flow N from source port base + N - 1", function()
    local s = dublin.new{ dst = "198.18.5.2", proto = "udp", port = 33434 }
    assert.are.equal(4, #s.flows)
    for f, inst in ipairs(s.flows) do
      assert.are.equal(f, inst.flow)
      assert.are.equal(33456 + f - 1, inst.sport)
      local p = s.spec(2, 5, f)
      assert.are.same({ "fixed", 33456 + f - 1, 33434, 6 }, { p.bind, p.sport, p.dport, p.checksum })
      assert.are.same({ flow = f, sport = 33456 + f - 1 }, dublin.describe(inst))
    end
  end)

  it("gives ICMP flows their own held checksum, TCP flows their own port (one probe at a time each)", function()
    local s = dublin.new{ dst = "x", proto = "icmp", flows = 3 }
    assert.are.same({ 0x5053, 0x5054, 0x5055 },
      { s.spec(1, 0, 1).checksum, s.spec(1, 0, 2).checksum, s.spec(1, 0, 3).checksum })
    local t = dublin.new{ dst = "x", proto = "tcp", port = 80, flows = 2, sport = 50000 }
    assert.are.same({ 50000, 50001 }, { t.spec(1, 0, 1).sport, t.spec(1, 0, 2).sport })
    assert.are.equal(1, t.flows[1].inflight)
  end)

  it("refuses a number of flows out of range, or ports past 65535", function()
    assert.has_error(function() dublin.new{ dst = "x", proto = "udp", flows = 0 } end,
      "dublin: flows must be an integer from 1 to 64")
    assert.has_error(function() dublin.new{ dst = "x", proto = "udp", flows = 65 } end)
    assert.has_error(function() dublin.new{ dst = "x", proto = "udp", flows = 4, sport = 65534 } end,
      "dublin: 4 flows from source port 65534 go past 65535")
  end)

  local function reply(a) return { status = "reply", addr = a } end
  local TIMEOUT = { status = "timeout" }

  it("merges flows into nodes per TTL and links, with the flows of each", function()
    local g = dublin.graph{
      { flow = 1, hops = { { ttl = 1, probes = { reply("A"), reply("A") } },
                           { ttl = 2, probes = { reply("B") } },
                           { ttl = 3, probes = { reply("D") } } } },
      { flow = 2, hops = { { ttl = 1, probes = { reply("A") } },
                           { ttl = 2, probes = { reply("C") } },
                           { ttl = 3, probes = { reply("D") } } } },
      { flow = 3, hops = { { ttl = 1, probes = { reply("A") } },
                           { ttl = 2, probes = { TIMEOUT, TIMEOUT } },
                           { ttl = 3, probes = { reply("D") } } } },
    }
    assert.are.same({
      { ttl = 1, addr = "A", flows = { 1, 2, 3 } },
      { ttl = 2, addr = "B", flows = { 1 } },
      { ttl = 2, addr = "C", flows = { 2 } },
      { ttl = 3, addr = "D", flows = { 1, 2, 3 } },
    }, g.nodes)
    assert.are.same({
      { from = "A", from_ttl = 1, to = "B", to_ttl = 2, flows = { 1 } },
      { from = "A", from_ttl = 1, to = "C", to_ttl = 2, flows = { 2 } },
      { from = "A", from_ttl = 1, to = "D", to_ttl = 3, flows = { 3 } },   -- across the silent hop
      { from = "B", from_ttl = 2, to = "D", to_ttl = 3, flows = { 1 } },
      { from = "C", from_ttl = 2, to = "D", to_ttl = 3, flows = { 2 } },
    }, g.links)
  end)

  it("shows a flow that is not one path (per-packet balancing) as links to every address it met", function()
    local g = dublin.graph{
      { flow = 1, hops = { { ttl = 1, probes = { reply("A") } },
                           { ttl = 2, probes = { reply("B"), reply("C") } } } },
    }
    assert.are.equal(3, #g.nodes)
    assert.are.equal(2, #g.links)
  end)
end)

describe("the formats of graphs", function()
  it("shortens runs of flow numbers", function()
    assert.are.equal("1-3,5,7-8", fdublin.ranges{ 1, 2, 3, 5, 7, 8 })
    assert.are.equal("4", fdublin.ranges{ 4 })
    assert.are.equal("", fdublin.ranges{})
  end)

  local doc = {
    type = "mda", target = "far.lab", addr = "198.18.5.2", protocol = "udp", dport = 33434,
    confidence = 95, max_ttl = 30, probes_sent = 20, flows = 7, sport = 33434,
    stop_reason = "reached",
    hops = {
      { ttl = 1, sent = 1, nodes = { { addr = "198.18.0.2", name = "r1.lab", flows = { 1 } } } },
      { ttl = 2, sent = 12, nodes = {} },
      { ttl = 3, sent = 6, nodes = { { addr = "198.18.5.2", flows = { 1 }, final = "reached" } } },
    },
    links = { { from = "198.18.0.2", from_ttl = 1, to = "198.18.5.2", to_ttl = 3, flows = { 1 } } },
  }

  it("writes mda text: nodes per TTL (* when silent), links (+gap), probes", function()
    assert.are.equal(table.concat({
      "mda to far.lab (198.18.5.2), 30 hops max, udp/33434, 95% confidence",
      " 1  r1.lab (198.18.0.2)",
      " 2  *",
      " 3  198.18.5.2",
      "links:",
      " 198.18.0.2 -> (+2) 198.18.5.2",
      "20 probes, 7 flows (source ports 33434-33440), destination reached",
    }, "\n") .. "\n", fmda.document(doc))
  end)

  it("writes DOT: a node per address, the destination doubled, a gap dashed", function()
    local out = dot.document(doc)
    assert.matches('^digraph "sonde mda far%.lab" {\n', out)
    assert.truthy(out:find('"198.18.0.2" [label="198.18.0.2\\nr1.lab\\nTTL 1"];', 1, true))
    assert.truthy(out:find('"198.18.5.2" [label="198.18.5.2\\nTTL 3", peripheries=2];', 1, true))
    assert.truthy(out:find('"198.18.0.2" -> "198.18.5.2" [style=dashed, label="1"];', 1, true))
    assert.matches("}\n$", out)
  end)

  it("draws a plain trace as the graph of what answered, TTL by TTL", function()
    local out = dot.document{ type = "trace", target = "t", addr = "C", hops = {
      { ttl = 1, probes = { { status = "reply", addr = "A" } } },
      { ttl = 2, probes = { { status = "reply", addr = "B1" }, { status = "reply", addr = "B2" } } },
      { ttl = 3, probes = { { status = "reply", addr = "C" } } },
    } }
    for _, e in ipairs{ '"A" -> "B1";', '"A" -> "B2";', '"B1" -> "C";', '"B2" -> "C";' } do
      assert.truthy(out:find(e, 1, true), e)
    end
  end)
end)
