-- How the formats show what the quotes tell: changes new at a hop (as
-- tracebox prints them), NAT, and RFC 5837 interface information.

local text = require "sonde.format.text"
local dot = require "sonde.format.dot"
local quote = require "sonde.quote"

local DSCP = { field = "dscp", sent = 0, seen = 8 }
local ECN = { field = "ecn", sent = 2, seen = 0 }
local IF = { class = 2, ctype = 0x0f, len = 24, role = "incoming", ifindex = 2, addr = "198.18.1.1",
  name = "eth1", mtu = 1500 }

local function reply(addr, extra)
  local r = { status = "reply", kind = "time_exceeded", addr = addr, rtt = 0.001, ttl = 1, seq = 0 }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

local function trace()
  return {
    type = "trace", target = "198.18.9.2", addr = "198.18.9.2", max_ttl = 5, protocol = "udp",
    hops = {
      { ttl = 1, probes = { reply("198.18.0.2") } },
      { ttl = 2, probes = { reply("198.18.1.2", { ext = { IF } }) } },
      { ttl = 3, probes = { reply("198.18.2.2", { changes = { DSCP } }), { status = "timeout", seq = 1, ttl = 3 } } },
      { ttl = 4, probes = { { status = "timeout", seq = 2, ttl = 4 } } },
      { ttl = 5, probes = { reply("198.18.4.2", { changes = { DSCP, ECN }, nat = true }) } },
    },
  }
end

describe("the changes a hop shows for the first time", function()
  it("are those the last hop that answered did not show, silent hops stepped over", function()
    local t = trace()
    assert.same({}, (quote.new_at(t, t.hops[2])))
    assert.same({ DSCP }, (quote.new_at(t, t.hops[3])))
    local changed, nat = quote.new_at(t, t.hops[5])
    assert.same({ ECN }, changed)
    assert.is_true(nat)
  end)

  it("are the same when the hops are streamed one by one with the trace's header", function()
    local t, header = trace(), { target = "198.18.9.2" }
    local got = {}
    for _, hop in ipairs(t.hops) do
      local changed, nat = quote.new_at(header, hop)
      got[#got + 1] = quote.changes_text(changed) .. (nat and " NAT" or "")
    end
    assert.same({ "", "", "dscp 0->8", "", "ecn 2->0 NAT" }, got)
  end)
end)

describe("the text format", function()
  it("prints interface information under its hop and each change once, where it first shows", function()
    local t, header = trace(), { target = "198.18.9.2", addr = "198.18.9.2", max_ttl = 5, protocol = "udp" }
    local out = {}
    for _, hop in ipairs(t.hops) do out[#out + 1] = text.hop(hop, header) end
    out = table.concat(out)
    assert.truthy(out:find(" 2  198.18.1.2  1.000 ms\n     [in eth1 (ifindex 2) 198.18.1.1 mtu 1500]\n", 1, true), out)
    assert.truthy(out:find(" 3  198.18.2.2  1.000 ms *\n     [changed: dscp 0->8]\n", 1, true), out)
    assert.truthy(out:find(" 5  198.18.4.2  1.000 ms\n     [changed: ecn 2->0]\n     [NAT]\n", 1, true), out)
    local _, n = out:gsub("changed:", "")
    assert.equal(2, n)
  end)
end)

describe("the dot format", function()
  it("notes interface information, changes and NAT beside the node that first showed them", function()
    local out = dot.document(trace())
    assert.truthy(out:find('"198.18.1.2" [label="198.18.1.2\\nTTL 2\\nin eth1 (ifindex 2) 198.18.1.1 mtu 1500"]', 1, true), out)
    assert.truthy(out:find('"198.18.2.2" [label="198.18.2.2\\nTTL 3\\nchanged: dscp 0->8"]', 1, true), out)
    assert.truthy(out:find('changed: ecn 2->0\\nNAT"', 1, true), out)
  end)
end)

describe("an unknown extension object as text", function()
  it("gives its class, c-type and bytes", function()
    assert.equal("class 200 c-type 3: 0102", quote.ext_text{ class = 200, ctype = 3, len = 2, data = "0102" })
  end)
end)
