-- sonde mtr's text and CSV, and its origin-AS helpers: pure functions,
-- byte for byte.

package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path
local fmt = require "sonde.format.mtr"
local csv = require "sonde.format.csv"
local asn = require "sonde.asn"

local DOC = { target = "198.18.3.2", started = 0, rounds = 3, stop_reason = "done", hops = {
  { ttl = 1, addr = "198.18.0.2", addrs = { "198.18.0.2" }, name = "r1.lab", asn = 64501, loss = 100 / 3,
    sent = 3, received = 2, last = 0.000076174, avg = 0.00006852, best = 0.000050386,
    worst = 0.000079, stddev = 0.0000157679, jitter = 0.00001572 },
  { ttl = 2, loss = 100, sent = 3, received = 0 },
} }

describe("sonde mtr's CSV through the format registry", function()
  it("writes mtr's figures with 6 significant digits, quoting as RFC 4180", function()
    local meta = { columns = { "target", "ttl", "name", "loss_pct", "last_ms", "jitter_ms" },
      precision = { loss_pct = 6, last_ms = 6, jitter_ms = 6 } }
    local row = { target = "198.18.3.2", ttl = 1, name = 'a,"b"', loss_pct = 100 / 3,
      last_ms = 0.076174, jitter_ms = 0.0157200001 }
    assert.are.equal('198.18.3.2,1,"a,""b""",33.3333,0.076174,0.01572\r\n', csv.record(row, meta))
    -- other commands: 9 digits, as before
    meta.precision = nil
    assert.are.equal('198.18.3.2,1,"a,""b""",33.3333333,0.076174,0.0157200001\r\n', csv.record(row, meta))
  end)
end)

describe("sonde mtr -C: mtr's own CSV", function()
  it("has mtr's header, a comma after every title, and rows in mtr's number formats", function()
    local o = { fields = fmt.fields("LSDR NBAWV"), asn = true }
    assert.are.equal("Mtr_Version,Start_Time,Status,Host,Hop,Ip,Asn,Loss%,Snt,Drop,Rcv, ,Last,Best,Avg,Wrst,StDev,\n",
      fmt.csv_header(o))
    assert.are.equal("v,0,OK,198.18.3.2,1,r1.lab,AS64501,33.33,3,1,2,0,0.08,0.05,0.07,0.08,0.02\n"
      .. "v,0,OK,198.18.3.2,2,???,AS???,100.00,3,3,0,0,0.00,0.00,0.00,0.00,0.00\n",
      fmt.csv_rows(DOC, o, "v"))
    -- mtr's default fields, -b: name (addr), no Asn column
    assert.are.equal("Mtr_Version,Start_Time,Status,Host,Hop,Ip,Loss%,Snt, ,Last,Avg,Best,Wrst,StDev,\n",
      fmt.csv_header{})
    assert.matches("^v,0,OK,198%.18%.3%.2,1,r1%.lab %(198%.18%.0%.2%),33%.33,3,0,0%.08,",
      fmt.csv_rows(DOC, { show_ips = true }, "v"))
  end)
end)

describe("sonde mtr's report as mtr lays it out", function()
  it("cuts names to 25 columns and shows mtr's default fields", function()
    local t = fmt.report(DOC, "vm", {})
    local ls = {}
    for l in t:gmatch("[^\n]+") do ls[#ls + 1] = l end
    assert.are.equal("HOST: vm                          Loss%   Snt   Last   Avg  Best  Wrst StDev", ls[2])
    assert.are.equal("  1.|-- r1.lab                    33.3%     3    0.1   0.1   0.1   0.1   0.0", ls[3])
    assert.are.equal("  2.|-- ???                       100.0%     3    0.0   0.0   0.0   0.0   0.0", ls[4])
  end)

  it("-rwbz: the AS column and name (addr), as wide as the longest", function()
    local t = fmt.report(DOC, "vm", { wide = true, show_ips = true, asn = true })
    assert.matches("\nHOST: vm                           Loss%%", t)
    assert.matches("\n  1%. AS64501  r1%.lab %(198%.18%.0%.2%)  33%.3%%", t)
    assert.matches("\n  2%. AS%?%?%?    %?%?%?                  100%.0%%", t)
  end)

  it("-o takes mtr's letters and refuses others, naming them", function()
    local f = assert(fmt.fields("LSDR NBAWVGJMXI"))
    assert.are.equal(15, #f)
    local t = fmt.report(DOC, "vm", { fields = assert(fmt.fields("DR")) })
    assert.matches("Drop   Rcv\n", t)
    assert.truthy(t:find("\n  1.|-- r1.lab                       1     2\n", 1, true), t)
    local ok, err = fmt.fields("LSQ")
    assert.is_nil(ok)
    assert.matches("unknown field 'Q'", err)
  end)

  it("draws a hop's history: ? lost, . to 9 between best and worst", function()
    assert.are.equal(".9?5", fmt.strip({ 0.001, 0.002, false, 0.0015 }, 0.001, 0.002))
  end)
end)

describe("origin AS numbers", function()
  it("asks Team Cymru's zones with the address reversed", function()
    assert.are.equal("2.0.18.198.origin.asn.cymru.com", asn.query_name("198.18.0.2"))
    assert.are.equal("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.o6.example",
      asn.query_name("2001:db8::1", nil, "o6.example"))
    assert.are.same({ asn = 64500, prefix = "198.18.0.0/15" },
      asn.parse_txt("64500 | 198.18.0.0/15 | ZZ | other | 2020-01-01"))
    assert.is_nil(asn.parse_txt("no number here"))
  end)

  it("reads a pfx2as file: the longest prefix wins, the first of several origins", function()
    local t = assert(asn.parse_pfx2as("198.18.0.0\t15\t64999\n198.18.1.0\t24\t65001_65002\n2001:db8::\t32\t64510\n"))
    assert.are.equal(64999, asn.match(t, "198.18.0.2").asn)
    assert.are.equal(65001, asn.match(t, "198.18.1.9").asn)
    assert.are.equal(64510, asn.match(t, "2001:db8:3::2").asn)
    assert.is_nil(asn.match(t, "192.0.2.1"))
    local bad, err = asn.parse_pfx2as("198.18.0.0 99 1\n")
    assert.is_nil(bad)
    assert.matches("line 1", err)
  end)
end)
