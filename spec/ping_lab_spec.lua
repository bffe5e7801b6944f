-- sonde ping over a real chain of namespaces: src - r1 - r2 - dst.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

local esc, lines_of = helpers.esc, helpers.text_lines

-- What the destination answers to each protocol's probe (no listener).
local ANSWER = { icmp = "echo_reply", udp = "dest_unreachable", tcp = "tcp_rst" }

-- The summary must say what the probes say.
local function check_summary(doc)
  local s = doc.summary
  local sent, received, rtts = 0, 0, {}
  for _, p in ipairs(doc.probes) do
    -- as iputils counts: a probe that failed locally was transmitted too
    if p.status ~= "skipped" then sent = sent + 1 end
    if p.status == "reply" and p.addr == doc.addr then
      received = received + 1
      rtts[#rtts + 1] = p.rtt
    end
  end
  assert.are.equal(sent, s.sent)
  assert.are.equal(received, s.received)
  assert.is_true(math.abs(s.loss - (sent - received) / sent * 100) < 1e-9)
  if received > 0 then
    table.sort(rtts)
    assert.are.equal(rtts[1], s.min)
    assert.are.equal(rtts[#rtts], s.max)
    local sum = 0
    for _, r in ipairs(rtts) do sum = sum + r end
    assert.is_true(math.abs(s.avg - sum / #rtts) < 1e-9)
    assert.is_true(s.min <= s.avg and s.avg <= s.max)
    assert.is_true(s.mdev >= 0 and s.mdev <= s.max - s.min)
  else
    assert.is_nil(s.min)
    assert.is_nil(s.avg)
  end
end

helpers.lab_describe("sonde ping over a chain of 2 routers", function()
  local l

  setup(function()
    l = lab.chain{ routers = 2, v6 = true, name = "ping" }
    -- 198.18.2.3 is on dst's link but nobody's: dst drops what it is sent.
    l:nft("dst", [[
table inet sonde_ping {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr 198.18.0.1 ip daddr 198.18.2.2 udp dport 7 drop
  }
}
]])
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function sonde(args) return helpers.command_in(l, "ping", args) end

  local addr = helpers.addr

  for _, proto in ipairs{ "icmp", "udp", "tcp" } do
    for _, fam in ipairs{ 4, 6 } do
      it(("gets an answer from the destination to every %s/IPv%d probe, exit 0"):format(proto, fam), function()
        local dst = addr(fam, l.dst)
        local out, err, code = sonde{ "--protocol", proto, "-c", "5", "-i", "0.05", "--format", "json", dst }
        assert.are.equal(0, code, err)
        local ok, why = schema.validate(out)
        assert.is_true(ok, why)
        local doc = cjson.decode(out)
        assert.are.equal("ping", doc.type)
        assert.are.equal(1, doc.version)
        assert.are.equal(fam, doc.af)
        assert.are.equal(proto, doc.protocol)
        assert.are.equal("done", doc.stop_reason)
        if doc.src then assert.are.equal(addr(fam, l.src), doc.src) end
        assert.are.equal(5, #doc.probes)
        for i, p in ipairs(doc.probes) do
          assert.are.equal(i, p.seq)
          assert.are.equal("reply", p.status)
          assert.are.equal(ANSWER[proto], p.kind)
          assert.are.equal(dst, p.addr)
          assert.are.equal(64, p.ttl)
          assert.is_true(p.rtt > 0 and p.rtt < 0.5, "rtt " .. p.rtt)
          if proto == "icmp" then
            assert.are.equal(i, p.icmp_seq)
            assert.are.equal(62, p.reply_ttl)        -- two routers on the way back
          elseif proto == "udp" then
            assert.are.equal("port", p.code)
            assert.are.equal(33434 + i - 1, p.dport)
          else
            assert.are.equal(80, p.dport)
          end
        end
        check_summary(doc)
        assert.are.same({ 5, 5, 0, 0 },
          { doc.summary.sent, doc.summary.received, doc.summary.errors, doc.summary.loss })
        assert.is_true(doc.duration >= 0.15 and doc.duration < 2, "duration " .. doc.duration)
      end)
    end
  end

  it("prints ping's lines and summary", function()
    local out, err, code = sonde{ "-c", "3", "-i", "0.05", l.dst.v4 }
    assert.are.equal(0, code, err)
    local lines = lines_of(out)
    assert.are.equal(("PING %s (%s) 56(84) bytes of data."):format(l.dst.v4, l.dst.v4), lines[1])
    for i = 1, 3 do
      assert.matches("^64 bytes from " .. esc(l.dst.v4) .. ": icmp_seq=" .. i .. " ttl=62 time=%d+%.%d%d%d ms$",
        lines[1 + i])
    end
    assert.are.equal(("--- %s ping statistics ---"):format(l.dst.v4), lines[5])
    local ms = lines[6]:match("^3 packets transmitted, 3 received, 0%% packet loss, time (%d+)ms$")
    assert.truthy(ms, lines[6])
    assert.is_true(tonumber(ms) >= 50 and tonumber(ms) < 1000, lines[6])
    local mn, avg, mx, mdev = lines[7]:match("^rtt min/avg/max/mdev = ([%d.]+)/([%d.]+)/([%d.]+)/([%d.]+) ms$")
    assert.truthy(mn, lines[7])
    assert.is_true(tonumber(mn) <= tonumber(avg) and tonumber(avg) <= tonumber(mx))
    assert.is_true(tonumber(mdev) >= 0)
    assert.are.equal(7, #lines)
  end)

  it("prints one line per outcome for UDP and TCP", function()
    local out, err, code = sonde{ "--protocol", "udp", "-c", "2", "-i", "0.05", l.dst.v6 }
    assert.are.equal(0, code, err)
    local lines = lines_of(out)
    assert.are.equal(("PING %s (%s) udp port 33434+, 56 bytes of data."):format(l.dst.v6, l.dst.v6), lines[1])
    assert.matches("^from " .. esc(l.dst.v6) .. ": udp_seq=1 port 33434 closed %(port unreachable%) ttl=62 time=[%d.]+ ms$", lines[2])
    assert.matches("^from " .. esc(l.dst.v6) .. ": udp_seq=2 port 33435 closed", lines[3])
    out, err, code = sonde{ "--protocol", "tcp", "--port", "443", "-c", "1", l.dst.v4 }
    assert.are.equal(0, code, err)
    lines = lines_of(out)
    assert.are.equal(("PING %s (%s) tcp port 443."):format(l.dst.v4, l.dst.v4), lines[1])
    -- as root the probe is a half-open SYN, and the RST's TTL is read too
    assert.matches("^from " .. esc(l.dst.v4) .. ": tcp_seq=1 port 443 closed %(RST%) ttl=62 time=[%d.]+ ms$", lines[2])
  end)

  it("reports a SYN-ACK from a listening port as open", function()
    local peer = l:spawn("dst", { helpers.labpeer(), "listen", "-p", "8080", "-t", "20" })
    peer:wait_for("^ready$", 5)
    local out, err, code = sonde{ "--protocol", "tcp", "--port", "8080", "-c", "2", "-i", "0.05", l.dst.v4 }
    peer:stop()
    assert.are.equal(0, code, err)
    assert.matches("tcp_seq=1 port 8080 open %(SYN%-ACK%)", out)
    assert.matches("2 packets transmitted, 2 received, 0%% packet loss", out)
  end)

  it("with -t 1 gets time exceeded from the first router: errors, 100 % loss, exit 1", function()
    local out, err, code = sonde{ "-t", "1", "-c", "2", "-i", "0.05", l.dst.v4 }
    assert.are.equal(1, code, err)
    local lines = lines_of(out)
    assert.are.equal(("From %s icmp_seq=1 Time to live exceeded"):format(l.hops[1].v4), lines[2])
    assert.are.equal(("From %s icmp_seq=2 Time to live exceeded"):format(l.hops[1].v4), lines[3])
    assert.matches("^2 packets transmitted, 0 received, %+2 errors, 100%% packet loss, time %d+ms$", lines[5])
    assert.are.equal(5, #lines)
    local jout = sonde{ "-t", "2", "-c", "1", "--protocol", "udp", "--format", "json", l.dst.v6 }
    local doc = cjson.decode(jout)
    assert.are.equal("time_exceeded", doc.probes[1].kind)
    assert.are.equal(l.hops[2].v6, doc.probes[1].addr)
    check_summary(doc)
    assert.are.same({ 1, 0, 1, 100 },
      { doc.summary.sent, doc.summary.received, doc.summary.errors, doc.summary.loss })
  end)

  it("counts probes nobody answers as lost; exit 0 with one answer, 1 with none", function()
    local out, err, code = sonde{ "--protocol", "udp", "--port", "7", "-c", "2", "-i", "0.05",
      "-W", "0.3", "--format", "json", l.dst.v4 }
    assert.are.equal(0, code, err)
    local doc = cjson.decode(out)
    assert.are.equal("timeout", doc.probes[1].status)
    assert.are.equal(7, doc.probes[1].dport)      -- dropped by dst
    assert.are.equal("reply", doc.probes[2].status)
    assert.are.equal(8, doc.probes[2].dport)      -- port 8 answers
    check_summary(doc)
    assert.are.equal(50, doc.summary.loss)
    local text
    text, err, code = sonde{ "--protocol", "udp", "--port", "7", "-c", "1", "-W", "0.2", l.dst.v4 }
    assert.are.equal(1, code, err)
    assert.matches("\nno answer for udp_seq=1 within 0%.2 s\n", text)
    assert.matches("\n1 packets transmitted, 0 received, 100%% packet loss, time %d+ms\n$", text)
  end)

  it("names a local error (no route) on every probe and exits 3", function()
    local out, err, code = sonde{ "-c", "2", "-i", "0.05", "--format", "json", "198.19.255.1" }
    assert.are.equal(3, code)
    assert.matches("^sonde ping: ENETUNREACH: ", err)
    local doc = cjson.decode(out)
    assert.are.equal("failed", doc.probes[1].status)
    assert.are.equal("ENETUNREACH", doc.probes[1].error.name)
    -- iputils: "2 packets transmitted, 0 received, +2 errors, 100% packet loss"
    assert.are.same({ 2, 0, 2, 100 },
      { doc.summary.sent, doc.summary.received, doc.summary.errors, doc.summary.loss })
    local ok, why = schema.validate(out)
    assert.is_true(ok, why)
  end)

  for _, sig in ipairs{ { "INT", 130 }, { "TERM", 143 } } do
    it(("on SIG%s stops at once, prints the summary of what ended and exits %d"):format(sig[1], sig[2]), function()
      local p = l:spawn("src", { helpers.sonde(), "ping", "-c", "1000", "-i", "0.1", l.dst.v4 })
      local pid = assert(p:command_pid(5))
      p:wait_for("icmp_seq=3 ", 5)
      assert(os.execute("kill -" .. sig[1] .. " " .. pid) == 0)
      assert.are.equal(sig[2], p:wait(2))
      local out, err = p:output()
      assert.are.equal("", err)
      local replies = 0
      for _ in out:gmatch("\n64 bytes from ") do replies = replies + 1 end
      assert.is_true(replies >= 3)
      assert.matches(("\n%d packets transmitted, %d received, 0%%%% packet loss, time %%d+ms\nrtt min/avg/max/mdev = "):format(
        replies, replies), out)
    end)
  end

  it("on SIGINT writes the JSON of what ended, stop_reason interrupted", function()
    local p = l:spawn("src", { helpers.sonde(), "ping", "-c", "1000", "-i", "0.1", "--format", "json", l.dst.v6 })
    local pid = assert(p:command_pid(5))
    lab.sleep(0.45)
    assert(os.execute("kill -INT " .. pid) == 0)
    assert.are.equal(130, p:wait(2))
    local out = p:output()
    local ok, why = schema.validate(out)
    assert.is_true(ok, why)
    local doc = cjson.decode(out)
    assert.are.equal("interrupted", doc.stop_reason)
    assert.is_true(#doc.probes >= 2 and #doc.probes <= 10, "probes " .. #doc.probes)
    check_summary(doc)
    assert.are.equal(#doc.probes, doc.summary.received)
  end)

  it("rejects --port with ICMP and a bad count, exit 2", function()
    local _, err, code = sonde{ "--port", "80", l.dst.v4 }
    assert.are.equal(2, code)
    assert.matches("%-%-port", err)
    _, err, code = sonde{ "-c", "0", l.dst.v4 }
    assert.are.equal(2, code)
    assert.matches("%-c", err)
  end)

  it("has a help text with options, exit status and examples", function()
    local out, _, code = helpers.run({ helpers.sonde(), "help", "ping" })
    assert.are.equal(0, code)
    for _, want in ipairs{ "Usage: sonde ping", "%-c, %-%-count N", "%-W, %-%-wait SECONDS", "%-w, %-%-deadline SECONDS",
        "%-t, %-%-ttl N", "Exit status:", "Examples:" } do
      assert.matches(want, out)
    end
  end)
end)
