-- Hostile input: while a trace runs, a router floods the prober with forged
-- and malformed ICMP (garbage and truncated quotes, quotes of other
-- destinations and of ports the prober never used, bogus RFC 4884 lengths,
-- wrong checksums, stray echo replies). Nothing of it is attributed to a
-- probe: the trace's result is what it is without the flood, the flood is
-- counted, and nothing crashes.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

-- Addresses, kinds and statuses, probe by probe.
local function shape(t)
  local s = {}
  for _, hop in ipairs(t.hops) do
    for q, p in ipairs(hop.probes) do
      s[#s + 1] = ("%d.%d %s %s %s"):format(hop.ttl, q, p.status, tostring(p.kind), tostring(p.addr))
    end
  end
  return s
end

helpers.lab_describe("a trace under a flood of forged ICMP errors", function()
  local l

  setup(function()
    l = lab.chain{ routers = 3, silent = { 2 }, v6 = true, name = "forged" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function trace(proto, dst)
    -- MIN 0.3 s: the two runs compared probe by probe must not differ by
    -- a slow reply given up under load (traceroute's NEAR rule)
    local out, err, code = l:exec("src", { helpers.sonde(), "trace", "-n", "--protocol", proto,
      "-w", "2,3,10,0.3", "--format", "json", dst })
    assert.are.equal(0, code, err)
    return cjson.decode(out)
  end

  for _, fam in ipairs{ 4, 6 } do
    for _, proto in ipairs{ "udp", "icmp", "tcp" } do
      it(("over %s/IPv%d gives the same hops as without it, and counts it"):format(proto, fam), function()
        local dst = fam == 4 and l.dst.v4 or l.dst.v6
        local victim = fam == 4 and l.src.v4 or l.src.v6
        local quiet = trace(proto, dst)
        local args = { helpers.build() .. "/forge", "-d", victim, "-t", dst, "-r", "4000", "-s", "8",
          "-S", tostring(fam * 10 + #proto) }
        if fam == 6 then table.insert(args, 2, "-6") end
        local flood = l:spawn("r1", args)
        flood:wait_for("^ready$", 5)
        lab.sleep(0.2)
        local t = trace(proto, dst)
        lab.sleep(0.1)
        local code = flood:stop()
        assert.are.same(shape(quiet), shape(t))
        assert.is_true(t.reached)
        assert.is_true(t.counters.ignored + t.counters.malformed > 0,
          "the flood was not seen: " .. cjson.encode(t.counters))
        assert.is_true(code == nil or code == 0 or code == 143, "forge exited " .. tostring(code))
      end)
    end
  end
end)

-- Forged copies of the probes themselves: a router (r1) reads each probe as
-- it passes and at once answers with a time exceeded error that quotes the
-- probe, altered so that it is not the probe's answer, sent from an
-- address of its own that no probe's hop has (its far side). Every
-- variant reaches the prober's raw ICMP socket; Linux also hands it to the
-- socket that sent the probe when its quote's addresses and ports find one
-- (the kernel checks neither the IP version nor the fragment offset), so
-- the error-queue path (TCP connect probes, unprivileged UDP and ICMP) meets
-- them too. A forgery attributed shows as a reply from the wrong address
-- or of the wrong kind for its TTL: none may be. A probe whose connect the
-- kernel ended on a forgery (its TCP accepts any quote whose 4-tuple and
-- sequence number match) has no answer left to take: a timeout, never a hop.
-- The hop behind r1 is silent: there the forgeries are the only answers.
helpers.lab_describe("forged quotes of the probes themselves", function()
  local l
  local N = 3 -- routers

  setup(function()
    -- r2 is silent: the forgeries about its probes are the only answers
    -- they get, and nothing real races them there
    l = lab.chain{ routers = N, silent = { 2 }, v6 = true, name = "forgedq" }
    l:sysctl("src", "net.ipv4.ping_group_range", "0 2147483647")
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function fa(fam) return fam == 4 and "v4" or "v6" end

  -- The replies whose address is not the router of their TTL (the
  -- destination past the last router), or whose kind is not the one that
  -- router or the destination gives. Each is a forgery attributed.
  local DST_KIND = { udp = "dest_unreachable", icmp = "echo_reply", tcp = "tcp_rst" }
  local function wrong(t, fam, proto)
    local bad = {}
    for _, hop in ipairs(t.hops) do
      for _, p in ipairs(hop.probes) do
        if p.status == "reply" then
          local want = l.hops[math.min(hop.ttl, N + 1)][fa(fam)]
          local kind = hop.ttl <= N and "time_exceeded" or DST_KIND[proto]
          if p.addr ~= want or p.kind ~= kind then
            bad[#bad + 1] = ("ttl %d: %s %s"):format(hop.ttl, tostring(p.kind), tostring(p.addr))
          end
        end
      end
    end
    return bad
  end

  local function trace(fam, proto, unpriv)
    local args = { helpers.sonde(), "trace", "-n", "--protocol", proto, "-q", "2", "-w", "0.5",
      "-m", tostring(N + 2), "--format", "json", l.dst[fa(fam)] }
    if unpriv then
      local a = {}
      for _, x in ipairs(helpers.AS_NOBODY) do a[#a + 1] = x end
      for _, x in ipairs(args) do a[#a + 1] = x end
      args = a
    end
    local out, err, code = l:exec("src", args)
    assert.is_true(code == 0 or code == 1, err)
    local t = cjson.decode(out)
    assert.are.equal(not unpriv, t.privileged)
    return t
  end

  -- What each variant is delivered through: the raw socket always; the
  -- error queue (unprivileged runs, and TCP connect probes) where the
  -- prober can tell it from its own probe with what the kernel shows of
  -- the quote (see engine/errqueue.c).
  local MODES = {
    { "foreign", errqueue = true },
    { "frag", errqueue = true },
    { "te1", errqueue = true },
    { "version" },
    { "exthdr", v6only = true },
  }

  for _, fam in ipairs{ 4, 6 } do
    for _, m in ipairs(MODES) do
      local mode = m[1]
      if not (m.v6only and fam == 4) then
        it(("attributes none of the %s quotes over IPv%d (udp, icmp, tcp%s)"):format(
            mode, fam, m.errqueue and "; raw socket and error queue" or "; raw socket"), function()
          -- r1's far side: no probe's hop
          local from = fam == 4 and "198.18.1.1" or "2001:db8:1::1"
          local args = { helpers.build() .. "/forge", "-d", l.src[fa(fam)], "-t", l.dst[fa(fam)],
            "-M", mode, "-F", from, "-r", "2000", "-s", "40" }
          if fam == 6 then table.insert(args, 2, "-6") end
          local forge = l:spawn("r1", args)
          finally(function() forge:stop() end)
          forge:wait_for("^ready$", 5)
          local bad, runs, refused = {}, 0, 0
          for _, proto in ipairs{ "udp", "icmp", "tcp" } do
            for _, unpriv in ipairs(m.errqueue and { false, true } or { false }) do
              -- Not checked: an ICMPv4 echo request quoted with another
              -- source, read from an ICMP datagram socket's error queue.
              -- Linux finds that socket by the echo id alone and hands
              -- over the ICMP message without the IP header before it; the
              -- ICMPv4 checksum does not cover the addresses (ICMPv6's
              -- does, and is checked).
              if not (mode == "foreign" and fam == 4 and proto == "icmp" and unpriv) then
              local t = trace(fam, proto, unpriv)
              runs = runs + 1
              refused = refused + t.counters.ignored + t.counters.malformed
              for _, b in ipairs(wrong(t, fam, proto)) do
                bad[#bad + 1] = ("%s%s: %s"):format(proto, unpriv and " (unprivileged)" or "", b)
              end
              -- r1 still answered: a forgery refused leaves the real answer
              -- to be taken (r1's kernel answers before the forger can)
              local seen = false
              for _, p in ipairs(t.hops[1].probes) do
                if p.status == "reply" then seen = true end
              end
              assert.is_true(seen, proto .. ": r1 lost its real answer")
              end
            end
          end
          local code = forge:stop()
          assert.is_true(code == nil or code == 0 or code == 143, "forge exited " .. tostring(code))
          assert.are.same({}, bad)
          assert.are.equal(m.errqueue and (mode == "foreign" and fam == 4 and 5 or 6) or 3, runs)
          assert.is_true(refused > 0, "no forgery reached the prober")
        end)
      end
    end
  end
end)
