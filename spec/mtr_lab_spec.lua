-- sonde mtr over a real chain of namespaces: src - r1 - r2 - r3 - dst, with
-- r2 a lossy hop: it drops half of the time-exceeded errors it sends
-- (nftables numgen), so its own line shows loss and no line before it does.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

local esc, lines_of = helpers.esc, helpers.text_lines

local LOSSY = [[
table inet sonde_lossy {
  chain output {
    type filter hook output priority 0; policy accept;
    icmp type time-exceeded numgen random mod 100 < 50 counter drop
    icmpv6 type time-exceeded numgen random mod 100 < 50 counter drop
  }
}
]]

-- dst drops UDP to ports 7000-7999: a destination that never answers.
local DEAF = [[
table inet sonde_deaf {
  chain input {
    type filter hook input priority 0; policy accept;
    udp dport 7000-7999 drop
  }
}
]]

-- The figures of a hop must agree with each other.
local function check_hop(hop)
  assert.is_true(hop.received <= hop.sent)
  assert.is_true(math.abs(hop.loss - (hop.sent - hop.received) / hop.sent * 100) < 1e-9)
  if hop.received > 0 then
    assert.is_true(hop.best <= hop.avg and hop.avg <= hop.worst)
    assert.is_true(hop.best <= hop.last and hop.last <= hop.worst)
    assert.is_true(hop.best > 0 and hop.worst < 0.5, "rtt " .. hop.worst)
    assert.is_true(hop.stddev >= 0 and hop.stddev <= hop.worst - hop.best)
    assert.is_true(hop.jitter >= 0 and hop.jitter <= hop.worst - hop.best)
  end
end

helpers.lab_describe("sonde mtr over a chain of 3 routers with a lossy hop 2", function()
  local l
  local pty_path = helpers.root() .. "/spec/support/in_pty.py"

  setup(function()
    l = lab.chain{ routers = 3, v6 = true, name = "mtr" }
    l:nft("r2", LOSSY)
    l:nft("dst", DEAF)
    -- Names from the hosts file; no lookup leaves the lab.
    helpers.lab_names(l, { ["r1.lab"] = l.hops[1].v4, ["dst.lab"] = l.dst.v4 })
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function sonde(args) return helpers.command_in(l, "mtr", args) end

  local addr = helpers.addr

  for _, proto in ipairs{ "icmp", "udp", "tcp" } do
    for _, fam in ipairs{ 4, 6 } do
      it(("over %s/IPv%d reports loss at hop 2 and none before or after it"):format(proto, fam), function()
        local dst = addr(fam, l.dst)
        local out, err, code = sonde{ "--report", "-c", "20", "-i", "0.03", "--wait", "0.4", "-n",
          "--protocol", proto, "--format", "json", dst }
        assert.are.equal(0, code, err)
        local ok, why = schema.validate(out)
        assert.is_true(ok, why)
        local doc = cjson.decode(out)
        assert.are.equal("mtr", doc.type)
        assert.are.equal(1, doc.version)
        assert.are.equal(fam, doc.af)
        assert.are.equal(proto, doc.protocol)
        assert.are.equal("done", doc.stop_reason)
        assert.is_true(doc.reached)
        assert.are.equal(20, doc.rounds)
        assert.are.equal(4, #doc.hops)           -- nothing beyond the destination
        for i, hop in ipairs(doc.hops) do
          assert.are.equal(i, hop.ttl)
          assert.are.equal(20, hop.sent)
          assert.are.equal(addr(fam, l.hops[i]), hop.addr)
          assert.are.same({ hop.addr }, hop.addrs)
          check_hop(hop)
        end
        assert.are.equal(0, doc.hops[1].loss)
        assert.is_true(doc.hops[2].loss > 0 and doc.hops[2].loss < 100,
          "hop 2 loss " .. doc.hops[2].loss)
        assert.are.equal(0, doc.hops[3].loss)
        assert.are.equal(0, doc.hops[4].loss)
      end)
    end
  end

  it("prints mtr's report: a header and one row per hop", function()
    local out, err, code = sonde{ "--report", "-c", "5", "-i", "0.03", "--wait", "0.4", "-n", l.dst.v4 }
    assert.are.equal(0, code, err)
    local lines = lines_of(out)
    assert.matches("^Start: %d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[+-]%d%d%d%d$", lines[1])
    assert.matches("^HOST: %S+ +Loss%%   Snt   Last   Avg  Best  Wrst StDev$", lines[2])
    local num = "%s+%d+%.%d"
    for i = 1, 4 do
      -- hop 2 loses half its replies: in 5 rounds it may lose all (1 in
      -- 32), and then shows mtr's "???" with no figures
      if i == 2 and lines[2 + i]:match("^  2%.|%-%- %?%?%?") then
        assert.matches("^  2%.|%-%- %?%?%?%s+100%.0%%%s+5", lines[2 + i])
      else
        assert.matches(("^%3d"):format(i) .. "%.|%-%- " .. esc(l.hops[i].v4) .. "%s+%d+%.%d%%%s+5"
          .. num .. num .. num .. num .. num .. "$", lines[2 + i])
      end
    end
    assert.matches("^  1%.|%-%- %S+%s+0%.0%%", lines[3])
    assert.are.equal(6, #lines)
  end)

  it("writes CSV: a header and one row per hop, RTTs in milliseconds", function()
    local out, err, code = sonde{ "--report", "-c", "20", "-i", "0.03", "--wait", "0.4", "-n",
      "--format", "csv", l.dst.v6 }
    assert.are.equal(0, code, err)
    local lines = {}
    for line in out:gmatch("([^\r\n]+)\r\n") do lines[#lines + 1] = line end
    assert.are.equal("target,ttl,addr,name,loss_pct,sent,received,last_ms,avg_ms,best_ms,worst_ms,stddev_ms,jitter_ms",
      lines[1])
    assert.are.equal(5, #lines)
    for i = 1, 4 do
      local f = {}
      for v in (lines[i + 1] .. ","):gmatch("([^,]*),") do f[#f + 1] = v end
      assert.are.equal(13, #f)
      assert.are.same({ l.dst.v6, tostring(i), l.hops[i].v6, "", "20" },
        { f[1], f[2], f[3], f[4], f[6] })
      local loss = tonumber(f[5])
      if i == 2 then assert.is_true(loss > 0) else assert.are.equal(0, loss) end
      local avg = tonumber(f[9])
      assert.is_true(avg > 0 and avg < 500, "avg_ms " .. f[9])
    end
  end)

  it("stops at -m when the destination is further, exit 1", function()
    local out, err, code = sonde{ "--report", "-c", "3", "-i", "0.03", "--wait", "0.4", "-n",
      "-m", "2", "--format", "json", l.dst.v4 }
    assert.are.equal(1, code, err)
    local doc = cjson.decode(out)
    assert.is_false(doc.reached)
    assert.are.equal(2, #doc.hops)
    assert.are.equal(2, doc.max_ttl)
  end)

  it("shows one silent line after the last hop that answers, exit 1", function()
    local out, err, code = sonde{ "--report", "-c", "3", "-i", "0.03", "--wait", "0.3", "-n",
      "-m", "6", "--protocol", "udp", "--port", "7000", "--format", "json", l.dst.v4 }
    assert.are.equal(1, code, err)
    local ok, why = schema.validate(out)
    assert.is_true(ok, why)
    local doc = cjson.decode(out)
    assert.is_false(doc.reached)
    assert.are.equal(4, #doc.hops)
    local silent = doc.hops[4]
    assert.are.same({ 4, 3, 0, 100 }, { silent.ttl, silent.sent, silent.received, silent.loss })
    assert.is_nil(silent.addr)
    assert.is_nil(silent.avg)
    local text = sonde{ "--report", "-c", "1", "-i", "0.03", "--wait", "0.3", "-n",
      "-m", "6", "--protocol", "udp", "--port", "7000", l.dst.v4 }
    assert.matches("\n  4%.|%-%- %?%?%?%s+100%.0%%%s+1 ", text)
  end)

  it("names hops from reverse lookups unless -n, as mtr: the name, with -b the address too", function()
    local out, err, code = sonde{ "--report", "-c", "1", "--wait", "0.4", l.dst.v4 }
    assert.are.equal(0, code, err)
    assert.matches("\n  1%.|%-%- r1%.lab +0%.0%%", out)
    assert.matches("\n  4%.|%-%- dst%.lab +0%.0%%", out)
    out, err, code = sonde{ "-rbc", "1", "--wait", "0.4", l.dst.v4 }
    assert.are.equal(0, code, err)
    assert.matches("\n  1%.|%-%- r1%.lab %(" .. esc(l.hops[1].v4) .. "%)", out)
    assert.matches("\n  4%.|%-%- dst%.lab %(" .. esc(l.dst.v4) .. "%)", out)
    local doc = cjson.decode((sonde{ "--report", "-c", "1", "--wait", "0.4", "--format", "json", l.dst.v4 }))
    assert.are.equal("r1.lab", doc.hops[1].name)
  end)

  it("names a local error (no route), exit 3", function()
    local out, err, code = sonde{ "--report", "-c", "2", "-n", "--format", "json", "198.19.255.1" }
    assert.are.equal(3, code)
    assert.matches("^sonde mtr: ENETUNREACH: ", err)
    local ok, why = schema.validate(out)
    assert.is_true(ok, why)
    local doc = cjson.decode(out)
    assert.are.equal("error", doc.stop_reason)
    assert.are.equal("ENETUNREACH", doc.error.name)
  end)

  for _, sig in ipairs{ { "INT", 130 }, { "TERM", 143 } } do
    it(("on SIG%s prints what it collected, stop_reason interrupted, exit %d"):format(sig[1], sig[2]), function()
      local p = l:spawn("src", { helpers.sonde(), "mtr", "--report", "-c", "1000", "-i", "0.1",
        "--wait", "1", "-n", "--format", "json", l.dst.v4 })
      local pid = assert(p:command_pid(5))
      lab.sleep(0.55)
      assert(os.execute("kill -" .. sig[1] .. " " .. pid) == 0)
      assert.are.equal(sig[2], p:wait(2))
      local out, err = p:output()
      assert.are.equal("", err)
      local ok, why = schema.validate(out)
      assert.is_true(ok, why)
      local doc = cjson.decode(out)
      assert.are.equal("interrupted", doc.stop_reason)
      assert.is_true(doc.rounds >= 3 and doc.rounds <= 10, "rounds " .. doc.rounds)
      assert.is_true(doc.duration < 1.5, "took " .. doc.duration)
      assert.are.equal(4, #doc.hops)
      assert.is_true(doc.hops[1].sent >= 3)
      assert.are.equal(0, doc.hops[1].loss)
    end)
  end

  it("on SIGINT prints the text report of what it collected", function()
    local p = l:spawn("src", { helpers.sonde(), "mtr", "-c", "1000", "-i", "0.1", "-n", l.dst.v4 })
    local pid = assert(p:command_pid(5))
    lab.sleep(0.45)
    assert(os.execute("kill -INT " .. pid) == 0)
    assert.are.equal(130, p:wait(2))
    local out = p:output()
    assert.matches("\nHOST: ", out)
    assert.matches("\n  4%.|%-%- " .. esc(l.dst.v4) .. " ", out)
    assert.matches("\n%(interrupted after %d+ rounds%)\n$", out)
  end)

  local function live(key, args)
    local argv = { "/usr/bin/python3", pty_path, "1.0", key, helpers.sonde(), "mtr" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local out, err, code = l:exec("src", argv)
    assert.are.equal(0, code, err)
    return cjson.decode(out)
  end

  it("on a terminal shows a live table, stops on q and gives the terminal back", function()
    local r = live("q", { "-i", "0.1", "--wait", "0.5", "-n", l.dst.v4 })
    assert.is_false(r.timeout, r.out)
    assert.are.equal(0, r.code)
    local out = r.out
    local enter = out:find("\27[?1049h", 1, true)
    local leave = out:find("\27[?1049l", 1, true)
    assert.truthy(enter, out)
    assert.truthy(leave, out)
    local screen, after = out:sub(enter, leave), out:sub(leave)
    assert.truthy(screen:find("Keys: p pause  r reset  d display  n names  j jitter  ? help  q quit", 1, true))
    assert.truthy(screen:find("sonde mtr to " .. l.dst.v4, 1, true))
    assert.truthy(screen:find("  4. " .. l.dst.v4, 1, true))
    assert.truthy(out:find("\27[?25h\27[?1049l", 1, true))     -- the cursor is back
    assert.matches("HOST: ", after)                            -- then the report
    assert.matches("  4%.|%-%- " .. esc(l.dst.v4), after)
    assert.is_nil(after:find("interrupted", 1, true))
    assert.is_true(r.echo)
    assert.is_true(r.icanon)
  end)

  it("on a terminal stops on Ctrl-C: the report, interrupted, and the terminal back", function()
    local r = live("\\x03", { "-i", "0.1", "--wait", "0.5", "-n", "--protocol", "udp", l.dst.v6 })
    assert.is_false(r.timeout, r.out)
    assert.are.equal(130, r.code)
    local leave = r.out:find("\27[?1049l", 1, true)
    assert.truthy(leave, r.out)
    local after = r.out:sub(leave)
    assert.matches("  4%.|%-%- " .. esc(l.dst.v6), after)
    assert.matches("%(interrupted after %d+ rounds%)", after)
    assert.is_true(r.echo)
    assert.is_true(r.icanon)
  end)

  -- sh -c cmd in a pseudo-terminal in src, between two `stty -a`: -> the
  -- report of in_pty.py, the settings before and after, and cmd's status.
  local function live_sh(delay, key, cmd)
    local argv = { "/usr/bin/python3", pty_path, tostring(delay), key, "/bin/sh", "-c",
      "echo 'before{'; stty -a; echo '}before'; " .. cmd
      .. "; echo \"code=$?\"; echo 'after{'; stty -a; echo '}after'" }
    local out, err, code = l:exec("src", argv)
    assert.are.equal(0, code, err)
    local r = cjson.decode(out)
    local text = r.out:gsub("\r\n", "\n")
    local before = text:match("before{\n(.-)}before\n")
    local after = text:match("after{\n(.-)}after\n")
    assert.truthy(before, r.out)
    assert.truthy(after, r.out)
    return r, before, after, tonumber(text:match("code=(%d+)")), text
  end

  it("on a terminal leaves every terminal setting as it found it (stty -a before and after q)", function()
    local r, before, after, code, text = live_sh(1.0, "q",
      helpers.shquote(helpers.sonde()) .. " mtr -i 0.1 --wait 0.5 -n " .. l.dst.v4)
    assert.is_false(r.timeout, r.out)
    assert.are.equal(0, code, text)
    assert.truthy(text:find("\27[?1049l", 1, true), text)
    assert.matches("  4%.|%-%- " .. esc(l.dst.v4), text)
    assert.truthy(text:find("q quit", 1, true), text)  -- the live table was up
    assert.are.equal(before, after)
  end)

  it("on a terminal stops on SIGTERM: the report, interrupted, 143, the terminal as it was", function()
    -- sh without job control gives a background job /dev/null for stdin:
    -- the terminal is handed over explicitly (fd 3)
    local r, before, after, code, text = live_sh(9, "x", "exec 3<&0; "
      .. helpers.shquote(helpers.sonde()) .. " mtr -i 0.1 --wait 0.5 -n " .. l.dst.v4
      .. " <&3 & p=$!; sleep 1; kill -TERM $p; wait $p")
    assert.is_false(r.timeout, r.out)
    assert.are.equal(143, code, text)
    assert.truthy(text:find("\27[?1049l", 1, true), text)
    assert.matches("  4%.|%-%- " .. esc(l.dst.v4), text)
    assert.matches("%(interrupted after %d+ rounds%)", text)
    assert.are.equal(before, after)
  end)

  it("on a terminal stops on Ctrl-\\ as on SIGQUIT: the report, interrupted, 131", function()
    local r = live("\\x1c", { "-i", "0.1", "--wait", "0.5", "-n", l.dst.v4 })
    assert.is_false(r.timeout, r.out)
    assert.are.equal(131, r.code)
    local leave = r.out:find("\27[?1049l", 1, true)
    assert.truthy(leave, r.out)
    assert.matches("%(interrupted after %d+ rounds%)", r.out:sub(leave))
    assert.is_true(r.echo)
    assert.is_true(r.icanon)
  end)

  it("on a terminal with several targets shows each one's table and quits them all on q", function()
    local r = live("q", { "-i", "0.1", "--wait", "0.5", "-n", l.dst.v4, l.dst.v6 })
    assert.is_false(r.timeout, r.out)
    assert.are.equal(0, r.code)
    local leave = r.out:find("\27[?1049l", 1, true)
    assert.truthy(leave, r.out)
    local screen, after = r.out:sub(1, leave), r.out:sub(leave)
    for _, a in ipairs{ l.dst.v4, l.dst.v6 } do
      assert.truthy(screen:find("sonde mtr to " .. a, 1, true), screen)
      assert.truthy(screen:find("  4. " .. a, 1, true), screen)
      assert.matches("  4%.|%-%- " .. esc(a), after)          -- each one's report
    end
    assert.is_nil(after:find("interrupted", 1, true))
    assert.is_true(r.echo)
  end)

  -- The live table's keys, typed one at a time (in_pty.py: one delay per
  -- key): -> the frames the terminal showed (each redraw starts at the
  -- cursor's home) and the report printed after the live table.
  local function keys(delays, typed, args)
    local argv = { "/usr/bin/python3", pty_path, delays, typed, helpers.sonde(), "mtr" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local out, err, code = l:exec("src", argv)
    assert.are.equal(0, code, err)
    local r = cjson.decode(out)
    assert.is_false(r.timeout, r.out)
    assert.are.equal(0, r.code, r.out)
    local enter = assert(r.out:find("\27[?1049h", 1, true), r.out)
    local leave = assert(r.out:find("\27[?1049l", 1, true), r.out)
    local frames = {}
    for f in r.out:sub(enter, leave):gmatch("\27%[H(.-)\27%[J") do
      f = f:gsub("\27%[K", ""):gsub("\r", "")
      -- (the first redraw may come before the first outcome: empty)
      if f:find("sonde mtr", 1, true) then frames[#frames + 1] = f end
    end
    assert.is_true(#frames >= 2, r.out)
    return frames, r.out:sub(leave):gsub("\r", ""), r
  end

  -- The round a live frame shows.
  local function round_of(frame) return tonumber(frame:match("round (%d+)")) end

  it("pauses on p: no new rounds while paused, and the title says so", function()
    local frames, report = keys("0.6,3.0", "pq", { "-i", "0.2", "--wait", "0.5", "-n", l.dst.v4 })
    local last = frames[#frames]
    assert.truthy(last:find("[paused]", 1, true), last)
    -- unpaused, 3 s of rounds every 0.2 s would be about 15
    assert.is_true(round_of(last) <= 8, last)
    local snt = tonumber(report:match("\n  1%.|%-%- %S+%s+[%d.]+%%%s+(%d+)"))
    assert.is_true(snt <= 8, report)
  end)

  it("resets every hop's figures on r; the rounds go on", function()
    local frames, report = keys("2.0,2.4", "rq", { "-i", "0.1", "--wait", "0.5", "-n", l.dst.v4 })
    local rounds = round_of(frames[#frames])
    assert.is_true(rounds >= 12, frames[#frames])
    local snt = tonumber(report:match("\n  1%.|%-%- %S+%s+[%d.]+%%%s+(%d+)"))
    assert.is_true(snt <= rounds - 8, ("Snt %d after %d rounds\n%s"):format(snt, rounds, report))
  end)

  it("shows each hop's history on d: a strip of outcomes instead of the figures", function()
    local frames = keys("1.0,1.8", "dq", { "-i", "0.1", "--wait", "0.5", "-n", l.dst.v4 })
    assert.truthy(frames[1]:find("Loss%", 1, true), frames[1])
    local last = frames[#frames]
    assert.truthy(last:find("History (newest right", 1, true), last)
    assert.is_nil(last:find("Loss%", 1, true), last)
    -- hop 1 answers every probe: a strip of ok marks (. to 9), no ?
    local strip = last:match("\n  1%. " .. esc(l.hops[1].v4) .. " +([%.%d?]+)\n")
    assert.truthy(strip, last)
    assert.is_true(#strip >= 5, last)
    assert.is_nil(strip:find("?", 1, true), last)
  end)

  it("turns host names off and on with n", function()
    local frames = keys("1.5,2.5", "nq", { "-i", "0.1", "--wait", "0.5", l.dst.v4 })
    local first, last = frames[1], frames[#frames]
    local named
    for _, f in ipairs(frames) do
      if f:find("  1. r1.lab", 1, true) then named = f end
    end
    assert.truthy(named, first)   -- the hosts file's name, before n
    assert.truthy(last:find("  1. " .. l.hops[1].v4, 1, true), last)
    assert.is_nil(last:find("r1.lab", 1, true), last)
  end)

  it("switches to the jitter fields on j and shows the help page on ?", function()
    local frames = keys("1.0,1.6,2.4", "j?q", { "-i", "0.1", "--wait", "0.5", "-n", l.dst.v4 })
    local jit, help
    for _, f in ipairs(frames) do
      if f:find("Jttr", 1, true) and f:find("Javg", 1, true) and f:find("Jmax", 1, true)
        and f:find("Jint", 1, true) then jit = true end
      if f:find("sonde mtr: the keys of the live table", 1, true) then help = f end
    end
    assert.is_nil(frames[1]:find("Jttr", 1, true), frames[1])
    assert.is_true(jit)
    assert.truthy(help)
    assert.truthy(help:find("p   pause", 1, true), help)
    assert.truthy(frames[#frames]:find("keys of the live table", 1, true), frames[#frames])
  end)

  -- mtr's -s is the size of the whole packet: r1 counts the probes by their
  -- IP length (IPv6: payload length, the 40-byte header left out).
  it("sends probes of -s bytes, headers included, as mtr does", function()
    l:nft("r1", ([[
table inet sonde_psize {
  chain prerouting {
    type filter hook prerouting priority 0; policy accept;
    ip daddr %s icmp type echo-request ip length 100 counter
    ip daddr %s icmp type echo-request ip length != 100 counter
    ip daddr %s udp dport != 0 ip length 100 counter
    ip daddr %s udp dport != 0 ip length != 100 counter
    ip6 daddr %s icmpv6 type echo-request ip6 length 60 counter
    ip6 daddr %s icmpv6 type echo-request ip6 length != 60 counter
  }
}
]]):format(l.dst.v4, l.dst.v4, l.dst.v4, l.dst.v4, l.dst.v6, l.dst.v6))
    local function counters()
      local out = l:check("r1", "nft list table inet sonde_psize")
      local t = {}
      for n in out:gmatch("counter packets (%d+)") do t[#t + 1] = tonumber(n) end
      assert.are.equal(6, #t, out)
      return t
    end
    for _, args in ipairs{ { "-s", "100", l.dst.v4 }, { "-u", "-s", "100", l.dst.v4 },
                           { "-s", "100", l.dst.v6 } } do
      local argv = { "-r", "-n", "-c", "3", "-m", "4", "-i", "0.1", "--wait", "1" }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      local out, err, code = sonde(argv)
      assert.are.equal(0, code, err .. out)
    end
    local c = counters()
    l:check("r1", "nft delete table inet sonde_psize")   -- it only counts
    -- 3 rounds of 4 TTLs each, every probe of the size asked for
    assert.are.same({ 12, 0, 12, 0, 12, 0 }, c)
  end)

  it("writes mtr's CSV with -C, and sonde's columns with --format csv", function()
    local out, err, code = sonde{ "-nC", "-c", "2", "-i", "0.1", "-o", "LSR", l.dst.v4 }
    assert.are.equal(0, code, err)
    local lines = lines_of(out)
    assert.are.equal(5, #lines, out)
    assert.are.equal("Mtr_Version,Start_Time,Status,Host,Hop,Ip,Loss%,Snt,Rcv,", lines[1])
    assert.matches("^sonde%-[%d.]+,%d+,OK," .. esc(l.dst.v4) .. ",1," .. esc(l.hops[1].v4) .. ",0%.00,2,2$", lines[2])
    -- hop 2 drops half its time exceeded: both may be lost ("???", as mtr)
    local ip2 = lines[3]:match("^sonde%-[%d.]+,%d+,OK," .. esc(l.dst.v4) .. ",2,([^,]+),%d+%.%d%d,2,[012]$")
    assert.is_true(ip2 == l.hops[2].v4 or ip2 == "???", lines[3])
    assert.matches(",4," .. esc(l.dst.v4) .. ",0%.00,2,2$", lines[5])
    out = sonde{ "-n", "--format", "csv", "-c", "1", l.dst.v4 }
    assert.matches("^target,ttl,addr,", out)
    local _, err2, code2 = sonde{ "-C", "--format", "json", "-c", "1", l.dst.v4 }
    assert.are.equal(2, code2)
    assert.matches("-C is mtr's CSV", err2, 1, true)
  end)

  it("rejects -s too small for the headers and -s with TCP, naming -s", function()
    local _, err, code = sonde{ "-r", "-c", "1", "-s", "40", l.dst.v6 }
    assert.are.equal(2, code)
    assert.matches("-s 40: an IPv6 probe needs at least 50 bytes", err, 1, true)
    _, err, code = sonde{ "-r", "-c", "1", "-T", "-s", "100", l.dst.v4 }
    assert.are.equal(2, code)
    assert.matches("-s applies to ICMP and UDP probes", err, 1, true)
  end)

  it("rejects -f above -m and --port with ICMP, exit 2", function()
    local _, err, code = sonde{ "-f", "5", "-m", "3", l.dst.v4 }
    assert.are.equal(2, code)
    assert.matches("%-f 5 is above %-m 3", err)
    _, err, code = sonde{ "--port", "80", l.dst.v4 }
    assert.are.equal(2, code)
    assert.matches("%-%-port", err)
  end)

  it("has a help text with options, exit status and examples", function()
    local out, _, code = helpers.run({ helpers.sonde(), "help", "mtr" })
    assert.are.equal(0, code)
    for _, want in ipairs{ "Usage: sonde mtr", "%-r, %-%-report", "%-c, %-%-count N",
        "%-%-format FORMAT", "Exit status:", "Examples:" } do
      assert.matches(want, out)
    end
  end)
end)

describe("the mtr and ping JSON schema", function()
  it("rejects a hop with figures but no answer, and a ping summary without RTTs", function()
    local hop = '{"ttl":1,"sent":2,"received":0,"loss":100}'
    local doc = '{"type":"mtr","version":1,"target":"x","addr":"198.18.0.2","af":4,"protocol":"icmp",'
      .. '"first_ttl":1,"max_ttl":30,"interval":1,"wait":2,"rounds":2,"reached":false,'
      .. '"stop_reason":"done","hops":[HOP],"started":1,"duration":1}'
    assert.is_true(schema.validate((doc:gsub("HOP", hop))))
    for _, bad in ipairs{
      hop:gsub('"loss":100', '"loss":100,"avg":0.1'),
      hop:gsub('"loss":100', '"loss":100,"addr":"198.18.0.2"'),
      hop:gsub('"received":0', '"received":1'),
      hop:gsub('"loss":100', '"loss":101'),
    } do
      assert.is_false((schema.validate((doc:gsub("HOP", bad)))), bad)
    end
    assert.is_false((schema.validate((doc:gsub("HOP", hop):gsub('"done"', '"error"')))))
    local ping = '{"type":"ping","version":1,"target":"x","addr":"198.18.0.2","af":4,"protocol":"icmp",'
      .. '"size":56,"ttl":64,"wait":2,"interval":1,"probes":[],'
      .. '"summary":{"sent":1,"received":1,"errors":0,"loss":0},"stop_reason":"done","started":1,"duration":1}'
    assert.is_false((schema.validate(ping)))
    assert.is_true(schema.validate((ping:gsub('"loss":0', '"loss":0,"min":0.1,"avg":0.1,"max":0.1,"mdev":0'))))
    assert.is_false((schema.validate((ping:gsub('"protocol":"icmp"', '"protocol":"udp"')))))
  end)
end)
