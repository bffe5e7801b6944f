-- Source ports and TCP errors on a real kernel: a busy source port
-- (EADDRINUSE: skipped), an exhausted ephemeral range (EADDRNOTAVAIL:
-- failed), a self-connect, and what the kernel reports when TCP goes wrong
-- (ECONNREFUSED, EHOSTUNREACH, ETIMEDOUT, ECONNRESET, EPIPE). Each case is set up in a chain of namespaces, src - r1 - dst, and probed
-- with `sonde tcping` / `sonde trace` (JSON) and with a Lua script run by
-- `sonde run` (the same probe through the Lua API). Every case checks that
-- both name the outcome the same way, and that sonde survives it: an exit
-- status of its own (0, 1 or 3), never a signal, never a traceback.
--
-- Every case runs in both TCP modes: connect (a connect() per probe) and
-- syn (one half-open SYN on a raw socket, its source port held by a bound
-- stream socket). The port policy is the same in both; where the kernel
-- answers differently (a TIME_WAIT, a self-connect), each mode's case says
-- what it sees and why.
--
-- Ports used (one set per case, so that cases never meet):
--   src  40000..40010  sequence ports of the busy-port traces
--        41000..41299  TIME_WAIT cases
--        40500..40501  the exhausted ephemeral range (syn mode: 40502..40503;
--                      the connect-mode case leaves its ports in TIME_WAIT)
--        40600         the self-connect range
--   dst  9010 listener (TIME_WAIT), 9100 listener (exhausted range),
--        9200 closed, 9300 resets, 9400/9401 close, 9500 drops SYNs (nftables),
--        9600 listens and never answers
--   r1   9700 rejected with admin-prohibited (nftables, forward)
--   src  output: 9800 SYN dropped, 9801 rejected admin-prohibited,
--        udp 9900 dropped (nftables)

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local sonde_lib = require "sonde"

-- One probe through the Lua API: `sonde run PROBE key=value ...` prints the
-- result of eng:probe{...} as JSON.
local PROBE_SCRIPT = [[
local sonde = require "sonde"
local json = require "sonde.json"
local spec = { proto = "tcp", ttl = 64, wait = 2 }
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  if k == "payload" or k == "expect" or k == "dst" or k == "proto" or k == "bind" or k == "tcp_mode" then
    spec[k] = v
  else
    spec[k] = assert(tonumber(v), a)
  end
end
local eng = assert(sonde.engine())
local r = eng:run(function() return eng:probe(spec) end)
assert(eng:close())
r.id, r.src = nil, nil
io.stdout:write(json.encode(r), "\n")
]]

local NFT_DST = [[
table inet portbind {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 9500 drop
  }
}
]]

local NFT_R1 = [[
table inet portbind {
  chain forward {
    type filter hook forward priority 0; policy accept;
    meta nfproto ipv4 tcp dport 9700 reject with icmp type admin-prohibited
    meta nfproto ipv6 tcp dport 9700 reject with icmpv6 type admin-prohibited
  }
}
]]

local NFT_SRC = [[
table inet portbind {
  chain output {
    type filter hook output priority 0; policy accept;
    tcp dport 9800 drop
    meta nfproto ipv4 tcp dport 9801 reject with icmp type admin-prohibited
    meta nfproto ipv6 tcp dport 9801 reject with icmpv6 type admin-prohibited
    udp dport 9900 drop
  }
}
]]

-- "status kind code ENAME", leaving out what the result does not have:
-- "reply tcp_rst ECONNREFUSED", "skipped EADDRINUSE", "timeout".
local function outcome(r)
  local parts = { r.status }
  if r.kind then parts[#parts + 1] = r.kind end
  if r.code then parts[#parts + 1] = r.code end
  if r.error then parts[#parts + 1] = r.error.name end
  return table.concat(parts, " ")
end

local function fam_addr(fam, node) return fam == 4 and node.v4 or node.v6 end

-- labpeer's arguments, with -6 after the mode for IPv6
local function with6(fam, args)
  if fam == 6 then table.insert(args, 2, "-6") end
  return args
end

helpers.lab_describe("source ports and TCP errors on a real kernel (src - r1 - dst)", function()
  local l, script, range0
  local mode = "connect" -- the TCP mode of the cases being run (see the end)

  setup(function()
    l = lab.chain{ routers = 1, v6 = true, name = "portbind" }
    l:nft("dst", NFT_DST)
    l:nft("r1", NFT_R1)
    l:nft("src", NFT_SRC)
    script = ("/tmp/%s%s-portbind-probe.lua"):format(lab.prefix(), l.base)
    l.files[#l.files + 1] = script
    local f = assert(io.open(script, "w"))
    f:write(PROBE_SCRIPT)
    f:close()
    range0 = l:check("src", "sysctl -n net.ipv4.ip_local_port_range"):gsub("%s+", " "):match("^%s*(.-)%s*$")
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  -- Runs sonde in src. Whatever the case, sonde must survive it: an exit
  -- status of its own, never death by a signal (SIGPIPE: 141), no traceback.
  local function sonde(args, codes)
    local argv = { helpers.sonde() }
    for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
    local out, err, code = l:exec("src", argv)
    assert(code >= 0 and code < 128,
      ("sonde %s ended by a signal or crashed (exit %d): %s"):format(table.concat(args, " "), code, err))
    assert(not err:find("traceback", 1, true), "sonde printed a traceback: " .. err)
    if codes then
      local allowed = {}
      for _, c in ipairs(codes) do allowed[c] = true end
      assert(allowed[code], ("sonde %s: exit %d (expected %s); stderr: %s"):format(
        table.concat(args, " "), code, table.concat(codes, " or "), err))
    end
    return out, err, code
  end

  -- sonde tcping --format json ARGS -> the attempts, the exit status
  local function tcping(args, codes)
    local argv = { "tcping", "--format", "json", "--tcp-mode", mode }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local out, _, code = sonde(argv, codes)
    local t = cjson.decode(out)
    assert.are.equal("tcping", t.type)
    return t.attempts, code, t
  end

  -- sonde trace --format json ARGS -> the trace, the exit status, stderr
  local function trace(args, codes)
    local argv = { "trace", "-n", "--format", "json", "--tcp-mode", mode }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local out, err, code = sonde(argv, codes)
    return cjson.decode(out), code, err
  end

  -- eng:probe{...} in a script run by `sonde run` -> the Lua result
  local function lua_probe(spec)
    local argv = { "run", script }
    for k, v in pairs(spec) do argv[#argv + 1] = k .. "=" .. tostring(v) end
    if (spec.proto or "tcp") == "tcp" then argv[#argv + 1] = "tcp_mode=" .. mode end
    local out = sonde(argv, { 0 })
    return cjson.decode(out)
  end

  -- The Lua API and the JSON output name an outcome identically.
  local function same(json_r, lua_r)
    assert.are.equal(outcome(json_r), outcome(lua_r))
    assert.are.equal(json_r.attempts, lua_r.attempts)
    if json_r.error then assert.are.equal(json_r.error.call, lua_r.error.call) end
  end

  local function peer(node, args)
    local argv = { helpers.labpeer() }
    for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
    local p = l:spawn(node, argv)
    p:wait_for("^ready$", 5)
    return p
  end

  local function set_range(r)
    l:sysctl("src", "net.ipv4.ip_local_port_range", r)
  end

  local function every_probe(t, fn)
    for _, hop in ipairs(t.hops) do
      for q, p in ipairs(hop.probes) do fn(p, hop, q) end
    end
  end

  -- The cases, in TCP mode m ("connect" or "syn").
  local function cases(m)
    ---------------------------------------------------------------------------
    describe("a TCP probe whose sequence source port is busy", function()
      for _, fam in ipairs{ 4, 6 } do
        it(("is skipped with EADDRINUSE from bind(), in Lua and in JSON alike (IPv%d)"):format(fam), function()
          local hold = peer("src", with6(fam, { "hold-port", "-p", 40001, "-t", 20 }))
          finally(function() hold:stop() end)
          local dst = fam_addr(fam, l.dst)
          -- attempt 0 from 40000 (refused: nothing listens on 9200), attempt 1 from 40001
          local attempts, code = tcping({ "-c", 2, "-i", 0, "--bind", "sequence", "--sport", 40000, dst, 9200 }, { 1 })
          assert.are.equal("reply tcp_rst ECONNREFUSED", outcome(attempts[1]))
          assert.are.equal("skipped EADDRINUSE", outcome(attempts[2]))
          assert.are.equal("bind", attempts[2].error.call)
          assert.are.equal(1, code)
          local r = lua_probe{ dst = dst, dport = 9200, bind = "sequence", sport = 40000, seq = 1 }
          same(attempts[2], r)
        end)

        it(("is re-issued under the next sequence; the trace still completes, every hop whole (IPv%d)"):format(fam), function()
          local hold = peer("src", with6(fam, { "hold-port", "-p", 40001, "-t", 20 }))
          finally(function() hold:stop() end)
          local t, code = trace({ "--protocol", "tcp", "--sport", 40000, "--port", 9200, fam_addr(fam, l.dst) }, { 0 })
          assert.are.equal(0, code)
          assert.is_true(t.reached)
          assert.are.equal("reached", t.stop_reason)
          assert.are.equal(2, #t.hops)
          local seqs, n = {}, 0
          every_probe(t, function(p, hop)
            assert.are.equal(3, #hop.probes)
            assert.are.equal("reply", p.status)
            assert.are.equal(hop.ttl == 1 and "time_exceeded" or "tcp_rst", p.kind)
            assert.are.equal(40000 + p.seq, p.sport)
            assert.is_nil(seqs[p.seq], "sequence used twice")
            seqs[p.seq] = true
            n = n + 1
          end)
          -- The probe of sequence 1 (port 40001) was never sent: what the
          -- trace keeps is its re-issue, under a sequence of its own; the
          -- skipped outcome itself is not kept (replaced, see the report).
          assert.are.equal(6, n)
          assert.is_nil(seqs[1])
          local second = t.hops[1].probes[2]
          assert.is_true(second.seq > 5, "hop 1's 2nd probe is the re-issue")
          assert.is_nil(second.attempts)
        end)
      end

      it("after 3 re-issues into busy ports the skipped outcome is kept and shown, and the trace goes on", function()
        local holds = {}
        finally(function() for _, h in ipairs(holds) do h:stop() end end)
        for port = 40001, 40004 do
          holds[#holds + 1] = peer("src", { "hold-port", "-p", port, "-t", 20 })
        end
        -- one probe at a time: hop 1's 2nd probe meets 40001, then is
        -- re-issued from 40002, 40003, 40004 (the default rule's 3 re-issues)
        local args = { "--protocol", "tcp", "-N", 1, "--sport", 40000, "--port", 9200, l.dst.v4 }
        local t, code = trace(args, { 0 })
        assert.are.equal(0, code)
        assert.is_true(t.reached)
        local p = t.hops[1].probes
        assert.are.equal(3, #p)
        assert.are.equal("reply time_exceeded", outcome(p[1]))
        assert.are.equal("skipped EADDRINUSE", outcome(p[2]))
        assert.are.equal(4, p[2].seq)
        assert.are.equal("reply time_exceeded", outcome(p[3]))
        assert.are.equal(5, p[3].seq)
        assert.are.same({ 6, 7, 8 }, { t.hops[2].probes[1].seq, t.hops[2].probes[2].seq, t.hops[2].probes[3].seq })
        local text = sonde({ "trace", "-n", "--tcp-mode", m, unpack(args) }, { 0 })
        -- shown like a "*": " skipped(EADDRINUSE)" in place of an RTT
        assert.matches("\n 1  [%d.]+  [%d.]+ ms skipped%(EADDRINUSE%)  [%d.]+ ms\n", text)
      end)

      it("names the port that was busy when it is skipped (sport = base + sequence)", function()
        local hold = peer("src", { "hold-port", "-p", 40003, "-t", 20 })
        finally(function() hold:stop() end)
        local r = lua_probe{ dst = l.dst.v4, dport = 9200, bind = "sequence", sport = 40000, seq = 3 }
        assert.are.equal("skipped EADDRINUSE", outcome(r))
        assert.are.equal(40003, r.sport)
      end)
    end)

    ---------------------------------------------------------------------------
    describe("a TCP probe whose source port is in TIME_WAIT", function()
      local listeners = {}

      setup(function()
        listeners[1] = peer("dst", { "listen", "-p", 9010, "-t", 60 })
        listeners[2] = peer("dst", { "listen", "-6", "-p", 9010, "-t", 60 })
      end)

      teardown(function()
        for _, p in ipairs(listeners) do p:stop() end
      end)

      -- Leaves src:SPORT -> dst:9010 in TIME_WAIT (src closed first).
      local function time_wait(fam, sport, reuseport)
        local argv = { helpers.labpeer(), "time-wait", "-s", sport, "-t", 5 }
        if reuseport then argv[#argv + 1] = "-P" end
        argv[#argv + 1] = fam_addr(fam, l.dst)
        argv[#argv + 1] = 9010
        local out, err, code = l:exec("src", argv)
        assert.are.equal(0, code, err)
        assert.matches("ready", out)
        local ss = l:check("src", { "ss", "-tan", "state", "time-wait", "sport", "= :" .. sport })
        assert.matches(":" .. sport, ss, "no TIME_WAIT on port " .. sport)
      end

      -- TCP timestamps off in src while a TIME_WAIT is made: Linux recycles a
      -- TIME_WAIT with timestamps for a socket bound to its port.
      local function without_timestamps(fn)
        l:sysctl("src", "net.ipv4.tcp_timestamps", 0)
        local ok, err = pcall(fn)
        l:sysctl("src", "net.ipv4.tcp_timestamps", 1)
        if not ok then error(err, 0) end
      end

      for _, fam in ipairs{ 4, 6 } do
        -- a TIME_WAIT lasts 60 s: each mode makes its own
        local base = (fam == 4 and 41000 or 41100) + (m == "syn" and 50 or 0)
        it(("is skipped with EADDRINUSE when the TIME_WAIT fails bind() (the old socket had no SO_REUSEPORT) (IPv%d)"):format(fam), function()
          time_wait(fam, base, false)
          local attempts, code = tcping({ "-c", 1, "--bind", "fixed", "--sport", base, fam_addr(fam, l.dst), 9010 }, { 1 })
          assert.are.equal("skipped EADDRINUSE", outcome(attempts[1]))
          assert.are.equal("bind", attempts[1].error.call)
          assert.are.equal(1, code)
          same(attempts[1], lua_probe{ dst = fam_addr(fam, l.dst), dport = 9010, bind = "fixed", sport = base })
        end)

        it(("goes out when the TIME_WAIT had SO_REUSEPORT and TCP timestamps (Linux recycles it) (IPv%d)"):format(fam), function()
          time_wait(fam, base + 1, true)
          if m == "syn" then
            -- The port is held by a socket without SO_REUSEADDR or
            -- SO_REUSEPORT, which no TIME_WAIT lets bind(): a SYN from a
            -- 4-tuple the peer may still remember is never sent.
            local attempts = tcping({ "-c", 1, "--bind", "fixed", "--sport", base + 1, fam_addr(fam, l.dst), 9010 }, { 1 })
            assert.are.equal("skipped EADDRINUSE", outcome(attempts[1]))
            assert.are.equal("bind", attempts[1].error.call)
            return
          end
          local attempts = tcping({ "-c", 1, "--bind", "fixed", "--sport", base + 1, fam_addr(fam, l.dst), 9010 }, { 0 })
          assert.are.equal("reply tcp_synack", outcome(attempts[1]))
          assert.are.equal(base + 1, attempts[1].sport)
        end)

        -- what the kernel tells a plain client: once, in connect mode
        local it_once = m == "connect" and it or function() end
        it_once(("meets a kernel that says EADDRNOTAVAIL at connect(), not EADDRINUSE, for a TIME_WAIT with SO_REUSEPORT and no timestamps (IPv%d)"):format(fam), function()
          -- What Linux itself reports, seen by a plain client (labpeer):
          -- bind() succeeds (SO_REUSEPORT on both), connect() finds the
          -- 4-tuple taken (__inet_check_established) and says EADDRNOTAVAIL.
          without_timestamps(function() time_wait(fam, base + 2, true) end)
          local out = l:exec("src", { helpers.labpeer(), "client", "-P", "-s", base + 2, "-t", 5,
            fam_addr(fam, l.dst), 9010 })
          assert.matches("^connect EADDRNOTAVAIL\n", out)
        end)

        it(("is skipped (its port is busy), not failed, when the TIME_WAIT fails connect() (IPv%d)"):format(fam), function()
          -- Linux says EADDRNOTAVAIL at connect() for a 4-tuple held in
          -- TIME_WAIT on a port of our choosing; sonde reports the busy port.
          without_timestamps(function() time_wait(fam, base + 3, true) end)
          local r = lua_probe{ dst = fam_addr(fam, l.dst), dport = 9010, bind = "fixed", sport = base + 3 }
          assert.are.equal("skipped", r.status)
          assert.are.equal("EADDRINUSE", r.error.name)
          -- syn: the held port's bind() meets the TIME_WAIT
          assert.are.equal(m == "syn" and "bind" or "connect", r.error.call)
          -- and in a trace: sequence 1 (TTL 2 with -q 1) is base+4 + 1, re-issued
          without_timestamps(function() time_wait(fam, base + 5, true) end)
          local t, code = trace({ "--protocol", "tcp", "-q", 1, "-N", 1, "--sport", base + 4, "--port", 9010,
            fam_addr(fam, l.dst) }, { 0, 1, 3 })
          assert.are.equal(0, code)
          assert.is_true(t.reached)
          local p = t.hops[2].probes[1]
          assert.are.equal("skipped", p.retries[1].status)
          assert.are.equal(base + 5, p.retries[1].sport)
        end)
      end
    end)

    ---------------------------------------------------------------------------
    describe("a TCP probe with a kernel-chosen port when the ephemeral range is exhausted", function()
      for _, fam in ipairs{ 4, 6 } do
        it(("fails with EADDRNOTAVAIL after 3 attempts (two retries, as Go's), never skipped (IPv%d)"):format(fam), function()
          local listener = peer("dst", with6(fam, { "listen", "-p", 9100, "-t", 20 }))
          local conns
          finally(function()
            if conns then conns:stop() end
            listener:stop()
            set_range(range0)
          end)
          local lo = m == "syn" and 40502 or 40500
          set_range(("%d %d"):format(lo, lo + 1))
          conns = peer("src", { "connect", "-n", 2, "-t", 20, fam_addr(fam, l.dst), 9100 })
          local held = conns:output()
          assert.matches(":" .. lo .. " ", held)
          assert.matches(":" .. lo + 1 .. " ", held)

          -- every attempt failed here, not on the network: a runtime error
          local attempts, code = tcping({ "-c", 2, "-i", 0, "--bind", "kernel", fam_addr(fam, l.dst), 9100 }, { 3 })
          for _, a in ipairs(attempts) do
            assert.are.equal("failed EADDRNOTAVAIL", outcome(a))
            if m == "syn" then
              -- bind() to port 0 finds no free port (Linux: EADDRINUSE,
              -- named as the exhaustion it is); nothing spurious to retry
              assert.are.equal("bind", a.error.call)
              assert.is_true(a.attempts == nil or a.attempts == 1)
            else
              assert.are.equal("connect", a.error.call)
              assert.are.equal(3, a.attempts)
            end
          end
          assert.are.equal(3, code)
          same(attempts[1], lua_probe{ dst = fam_addr(fam, l.dst), dport = 9100, bind = "kernel" })

          -- a trace stops at the first failed probe and names the error
          local t, tcode, err = trace({ "--protocol", "tcp", "--bind", "kernel", "--port", 9100, fam_addr(fam, l.dst) }, { 3 })
          assert.are.equal(3, tcode)
          assert.are.equal("error", t.stop_reason)
          assert.are.equal("EADDRNOTAVAIL", t.error.name)
          assert.matches("EADDRNOTAVAIL", err)
          every_probe(t, function(p) assert.are_not.equal("skipped", p.status) end)
        end)
      end
    end)

    ---------------------------------------------------------------------------
    describe("a TCP probe to this host's own port, with a one-port range equal to it (a self-connect)", function()
      for _, fam in ipairs{ 4, 6 } do
        it(("reports self_connect after 3 attempts, never an open port; tcping exits 1 (IPv%d)"):format(fam), function()
          finally(function() set_range(range0) end)
          set_range("40600 40600")
          local me = fam_addr(fam, l.src)
          local attempts, code = tcping({ "-c", 2, "-i", 0, me, 40600 }, { 1 })
          if m == "syn" then
            -- A SYN from 40600 to 40600 cannot connect to itself: no
            -- socket of ours is in SYN-SENT. The kernel answers for the
            -- port, bound by us and not listening, with RST: closed.
            for _, a in ipairs(attempts) do
              assert.are.equal("reply tcp_rst ECONNREFUSED", outcome(a))
              assert.are.equal(40600, a.sport)
            end
            assert.are.equal(1, code)
            same(attempts[1], lua_probe{ dst = me, dport = 40600, bind = "kernel" })
            local text = sonde({ "tcping", "--tcp-mode", "syn", "-c", 1, me, 40600 }, { 1 })
            assert.matches(" refused ", text)
            assert.matches("1 attempts, 0 succeeded", text)
            return
          end
          for _, a in ipairs(attempts) do
            assert.are.equal("reply self_connect", outcome(a))
            assert.are.equal(3, a.attempts)
            assert.are.equal(40600, a.sport)
          end
          assert.are.equal(1, code)
          same(attempts[1], lua_probe{ dst = me, dport = 40600, bind = "kernel" })
          local text = sonde({ "tcping", "-c", 1, me, 40600 }, { 1 })
          assert.matches(" self_connect ", text)
          assert.matches("1 attempts, 0 succeeded", text)
        end)
      end

      it(m == "syn" and "makes a TCP trace report the host reached, its port closed"
          or "does not make a TCP trace report the host reached", function()
        finally(function() set_range(range0) end)
        set_range("40600 40600")
        local t, code = trace({ "--protocol", "tcp", "--bind", "kernel", "-N", 1, "-q", 1, "-m", 2,
          "--port", 40600, l.src.v4 }, { 0, 1 })
        if m == "syn" then
          -- this host answered its own SYN with RST: reached, port closed
          assert.are.equal(0, code)
          assert.is_true(t.reached)
          assert.are.equal(1, #t.hops)
          assert.are.equal("reply tcp_rst ECONNREFUSED", outcome(t.hops[1].probes[1]))
          return
        end
        assert.are.equal(1, code)
        assert.is_false(t.reached)
        assert.are.equal("max_ttl", t.stop_reason)
        assert.are.equal(2, #t.hops)
        every_probe(t, function(p)
          assert.are.equal("reply self_connect", outcome(p))
          assert.are.equal(3, p.attempts)
        end)
      end)
    end)

    ---------------------------------------------------------------------------
    describe("what the kernel reports when TCP goes wrong", function()
      for _, fam in ipairs{ 4, 6 } do
        local v = ("(IPv%d)"):format(fam)
        -- A connection's cases (--payload, --expect) and UDP's: connect mode.
        local it_connect = m == "connect" and it or function() end

        it("a closed port: tcp_rst with ECONNREFUSED, from the destination " .. v, function()
          local dst = fam_addr(fam, l.dst)
          local attempts, code = tcping({ "-c", 1, dst, 9200 }, { 1 })
          assert.are.equal("reply tcp_rst ECONNREFUSED", outcome(attempts[1]))
          assert.are.equal(dst, attempts[1].addr)
          assert.are.equal(1, code)
          same(attempts[1], lua_probe{ dst = dst, dport = 9200 })
        end)

        it_connect("a peer that resets the connection: reset with ECONNRESET " .. v, function()
          local p = peer("dst", with6(fam, { "reset", "-p", 9300, "-d", 0.2, "-t", 20 }))
          finally(function() p:stop() end)
          local dst = fam_addr(fam, l.dst)
          local attempts, code = tcping({ "-c", 2, "-i", 0, "--expect", "y", dst, 9300 }, { 1 })
          for _, a in ipairs(attempts) do
            assert.are.equal("reply reset ECONNRESET", outcome(a))
            assert.is_true(a.connected)
          end
          assert.are.equal(1, code)
          same(attempts[1], lua_probe{ dst = dst, dport = 9300, expect = "y" })
        end)

        it_connect("a peer that closed (FIN) before we write again: reset with EPIPE (send) " .. v, function()
          -- -d 0.2: the peer reads our payload, then closes with a FIN; our
          -- second write meets its RST, and the socket says EPIPE.
          local p = peer("dst", with6(fam, { "close", "-p", 9400, "-d", 0.2, "-t", 20 }))
          finally(function() p:stop() end)
          local dst = fam_addr(fam, l.dst)
          local attempts, code = tcping({ "-c", 3, "-i", 0, "--payload", "x", "--expect", "y", dst, 9400 }, { 1 })
          assert.are.equal(3, #attempts)
          for _, a in ipairs(attempts) do
            assert.are.equal("reply reset EPIPE", outcome(a))
            assert.are.equal("send", a.error.call)
            assert.is_true(a.connected)
          end
          assert.are.equal(1, code)
          same(attempts[1], lua_probe{ dst = dst, dport = 9400, payload = "x", expect = "y" })
        end)

        it_connect("a peer that closes at once, 50 times while we write: reset (EPIPE or ECONNRESET), never death by SIGPIPE " .. v, function()
          -- Whether the peer's close() sends a FIN (we then get EPIPE) or an
          -- RST (our payload arrived unread: ECONNRESET) is a race here.
          local p = peer("dst", with6(fam, { "close", "-p", 9401, "-t", 20 }))
          finally(function() p:stop() end)
          local attempts, code = tcping({ "-c", 50, "-i", 0, "--payload", "x", "--expect", "y",
            fam_addr(fam, l.dst), 9401 }, { 1 })
          assert.are.equal(50, #attempts)
          for _, a in ipairs(attempts) do
            local o = outcome(a)
            assert(o == "reply reset EPIPE" or o == "reply reset ECONNRESET", o)
          end
          assert.are.equal(1, code)
        end)

        it_connect("a peer that accepts and then says nothing: the read times out within -w, connected " .. v, function()
          -- nothing is reported by the kernel without FIN or RST: the reader
          -- must time out itself
          local p = peer("dst", with6(fam, { "listen", "-p", 9600, "-t", 20 }))
          finally(function() p:stop() end)
          local dst = fam_addr(fam, l.dst)
          local t0 = sonde_lib.now()
          local attempts, code = tcping({ "-c", 1, "-w", 0.5, "--payload", "x", "--expect", "y", dst, 9600 }, { 1 })
          local elapsed = sonde_lib.now() - t0
          assert.are.equal("timeout", outcome(attempts[1]))
          assert.is_true(attempts[1].connected)
          assert.is_true(elapsed >= 0.5 and elapsed < 2, "took " .. elapsed .. " s")
          assert.are.equal(1, code)
          same(attempts[1], lua_probe{ dst = dst, dport = 9600, payload = "x", expect = "y", wait = 0.5 })
        end)

        it("a silent peer (SYN dropped): timeout within -w, not the kernel's SYN retries " .. v, function()
          local dst = fam_addr(fam, l.dst)
          local t0 = sonde_lib.now()
          local attempts, code = tcping({ "-c", 1, "-w", 0.5, dst, 9500 }, { 1 })
          local elapsed = sonde_lib.now() - t0
          assert.are.equal("timeout", outcome(attempts[1]))
          assert.is_true(elapsed >= 0.5 and elapsed < 2, "took " .. elapsed .. " s")
          assert.are.equal(1, code)
          same(attempts[1], lua_probe{ dst = dst, dport = 9500, wait = 0.5 })
        end)

        it("a router that rejects with admin-prohibited: dest_unreachable prohibited, from the router " .. v, function()
          local dst = fam_addr(fam, l.dst)
          local attempts, code = tcping({ "-c", 1, dst, 9700 }, { 1 })
          assert.are.equal("reply dest_unreachable prohibited", outcome(attempts[1]))
          assert.are.equal(fam_addr(fam, l.hops[1]), attempts[1].addr)
          assert.are.equal(1, code)
          same(attempts[1], lua_probe{ dst = dst, dport = 9700 })
          -- a trace ends there: hop 2 is the router saying !X
          local t, tcode = trace({ "--protocol", "tcp", "-q", 1, "--port", 9700, dst }, { 1 })
          assert.are.equal(1, tcode)
          assert.are.equal("unreachable", t.stop_reason)
          assert.are.equal(2, #t.hops)
          assert.are.equal("reply time_exceeded", outcome(t.hops[1].probes[1]))
          assert.are.equal("reply dest_unreachable prohibited", outcome(t.hops[2].probes[1]))
          assert.are.equal(fam_addr(fam, l.hops[1]), t.hops[2].probes[1].addr)
        end)

        it("a local firewall that drops the SYN: connect() reports nothing on Linux, the attempt times out within -w " .. v, function()
          -- tcp_connect() ignores the SYN's transmit error (EPERM from
          -- netfilter) and relies on retransmission: no EPERM ever reaches
          -- connect()'s caller for TCP.
          local dst = fam_addr(fam, l.dst)
          local t0 = sonde_lib.now()
          local attempts = tcping({ "-c", 1, "-w", 0.5, dst, 9800 }, { 1 })
          local elapsed = sonde_lib.now() - t0
          assert.are.equal("timeout", outcome(attempts[1]))
          assert.is_true(elapsed < 2, "took " .. elapsed .. " s")
          same(attempts[1], lua_probe{ dst = dst, dport = 9800, wait = 0.5 })
        end)

        it("a local firewall that rejects the SYN with admin-prohibited: dest_unreachable prohibited, from this host " .. v, function()
          local dst = fam_addr(fam, l.dst)
          local attempts = tcping({ "-c", 1, dst, 9801 }, { 1 })
          assert.are.equal("reply dest_unreachable prohibited", outcome(attempts[1]))
          assert.are.equal(fam_addr(fam, l.src), attempts[1].addr)
          same(attempts[1], lua_probe{ dst = dst, dport = 9801 })
        end)

        it_connect("a local firewall that drops a UDP probe: failed with EPERM (sendmsg); the trace stops, exit 3 " .. v, function()
          local dst = fam_addr(fam, l.dst)
          local t, code, err = trace({ "--protocol", "udp", "--port", 9900, "-q", 1, dst }, { 3 })
          assert.are.equal(3, code)
          assert.are.equal("error", t.stop_reason)
          assert.are.equal("EPERM", t.error.name)
          assert.matches("EPERM", err)
          local p = t.hops[1].probes[1]
          assert.are.equal("failed EPERM", outcome(p))
          assert.are.equal("sendmsg", p.error.call)
          same(p, lua_probe{ proto = "udp", dst = dst, dport = 9900, ttl = 1 })
        end)
      end

      it("no route to the target: failed with ENETUNREACH (connect)", function()
        local attempts, code = tcping({ "-c", 1, "198.19.255.1", 80 }, { 3 })
        assert.are.equal("failed ENETUNREACH", outcome(attempts[1]))
        assert.are.equal("connect", attempts[1].error.call)
        assert.are.equal(3, code)
        same(attempts[1], lua_probe{ dst = "198.19.255.1", dport = 80 })
      end)
    end)
  end

  for _, m in ipairs{ "connect", "syn" } do
    describe(("(%s mode)"):format(m), function()
      setup(function() mode = m end)
      cases(m)
    end)
  end
end)
