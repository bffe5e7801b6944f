-- A NAT that rewrites the probes' source address (and port) and leaves the
-- ICMP errors about them as the routers beyond wrote them, on a real
-- kernel: r2 rewrites statelessly with nftables (no connection tracking,
-- so nothing translates the quotes back, as RFC 5508 would have a NAT do;
-- Linux masquerade does, and leaves nothing to see). The routers beyond
-- quote the rewritten source; sonde takes those quotes as its probes' only
-- with proof that no other host or process can give (its nonce in full, a
-- SYN's whole sequence number, a TTL spent on the way), flags nat at the
-- first hop that shows it, and nothing on a clean path or before the NAT.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

local N = 4 -- routers; r2 rewrites, r3 is the first hop to quote the rewrite
local NAT = { [4] = "198.18.200.1", [6] = "2001:db8:c8::1" }
local PORT, ECHO_ID = 40000, 4242

local function fa(fam) return fam == 4 and "v4" or "v6" end

-- The stateless NAT on r2: the probes to dst leave with NAT's address
-- (and, with ports, source port PORT and echo id ECHO_ID); what comes back
-- to NAT's address is readdressed to src before routing. Rewriting the
-- address adjusts the IP and transport checksums (nftables does both).
local function ruleset(l, ports)
  local post = {}
  for _, fam in ipairs{ 4, 6 } do
    local ip, icmp = fam == 4 and "ip" or "ip6", fam == 4 and "icmp" or "icmpv6"
    local src, dst = l.src[fa(fam)], l.dst[fa(fam)]
    post[#post + 1] = ("%s saddr %s %s daddr %s %s saddr set %s"):format(ip, src, ip, dst, ip, NAT[fam])
    if ports then
      local match = ("%s saddr %s %s daddr %s"):format(ip, NAT[fam], ip, dst)
      post[#post + 1] = ("%s udp sport set %d"):format(match, PORT)
      post[#post + 1] = ("%s tcp sport set %d"):format(match, PORT)
      post[#post + 1] = ("%s %s type echo-request %s id set %d"):format(match, icmp, icmp, ECHO_ID)
    end
  end
  return ([[
table inet stateless
delete table inet stateless
table inet stateless {
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    notrack
    ip daddr %s ip daddr set %s
    ip6 daddr %s ip6 daddr set %s
  }
  chain post {
    type filter hook postrouting priority 0; policy accept;
    %s
  }
}
]]):format(NAT[4], l.src.v4, NAT[6], l.src.v6, table.concat(post, "\n    "))
end

-- The probes of a trace: traces[fam][proto] = the decoded JSON (valid per
-- the schema). extra: more arguments before the target.
local function trace(l, fam, proto, q, extra, format)
  local argv = { helpers.sonde(), "trace", "-n", "--protocol", proto, "-q", tostring(q), "-w", "1",
    "-m", tostring(N + 1), "--format", format or "json" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = l.dst[fa(fam)]
  local out, err, code = l:exec("src", argv)
  -- the destination's answers to a rewritten port or id go to that port
  assert.is_true(code == 0 or code == 1, err)
  if format then return out end
  local ok, why = schema.validate(out)
  assert.is_true(ok, why)
  return cjson.decode(out)
end

-- UDP is traced as Paris (sonde's default: the probe named by its held
-- checksum, which the NAT adjusts), as classic (the kernel's checksum) and
-- as Dublin.
-- Dublin: flows side by side, each from its own source port, its probes
-- named by their checksums (which a NAT adjusts for the port it writes).
local VARIANTS = {
  { "udp" }, { "udp", { "--strategy", "classic" }, "udp classic" },
  { "udp", { "--strategy", "dublin", "--flows", "4" }, "udp dublin" }, { "icmp" }, { "tcp" },
}

helpers.lab_describe("a stateless NAT that rewrites the probes' source", function()
  local l

  setup(function()
    l = lab.chain{ routers = N, v6 = true, name = "nat" }
    -- the routers beyond r2 and dst send what is addressed to the NAT's
    -- addresses back towards r2 (link k-1 joins node k-1 to node k)
    for k = 3, N + 1 do
      local node = k <= N and ("r" .. k) or "dst"
      l:route(node, ("198.18.200.0/24 via 198.18.%d.1"):format(k - 1))
      l:route(node, ("2001:db8:c8::/64 via 2001:db8:%x::1"):format(k - 1))
    end
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  describe("on a clean path", function()
    for _, fam in ipairs{ 4, 6 } do
      for _, v in ipairs(VARIANTS) do
        it(("flags no nat over IPv%d/%s (10 probes a hop)"):format(fam, v[3] or v[1]), function()
          local t = trace(l, fam, v[1], 10, v[2])
          local replies = 0
          for _, hop in ipairs(t.hops) do
            for _, p in ipairs(hop.probes) do
              if p.status == "reply" then replies = replies + 1 end
              assert.is_nil(p.nat, "hop " .. hop.ttl)
              assert.is_nil(p.quoted_src, "hop " .. hop.ttl)
            end
          end
          assert.is_true(replies >= 10 * N, "replies: " .. replies)
        end)
      end
    end
  end)

  -- What each reply with a quote shows, hop by hop: "nat" plus the
  -- changes, or "" for none.
  local function marks(t, fam)
    local by = {}
    for _, hop in ipairs(t.hops) do
      for _, p in ipairs(hop.probes) do
        if p.quoted_ttl then
          local parts = {}
          for _, c in ipairs(p.changes or {}) do
            parts[#parts + 1] = ("%s %s->%s"):format(c.field, tostring(c.sent), tostring(c.seen))
          end
          if p.nat then
            table.insert(parts, 1, "nat")
            assert.are.equal(NAT[fam], p.quoted_src, "hop " .. hop.ttl)
          end
          by[hop.ttl] = by[hop.ttl] or {}
          table.insert(by[hop.ttl], { text = table.concat(parts, ", "), p = p })
        end
      end
    end
    return by
  end

  for _, ports in ipairs{ false, true } do
    describe(ports and "that also rewrites the source port (ICMP: the echo id)"
                   or "that rewrites the source address alone", function()
      setup(function() l:nft("r2", ruleset(l, ports)) end)

      for _, fam in ipairs{ 4, 6 } do
        for _, v in ipairs(VARIANTS) do
          local proto = v[1]
          it(("shows nat from hop 3 on, and nothing before, over IPv%d/%s"):format(fam, v[3] or proto), function()
            local t = trace(l, fam, proto, 3, v[2])
            local by = marks(t, fam)
            local before, after = 0, 0
            for ttl, list in pairs(by) do
              for _, m in ipairs(list) do
                if ttl <= 2 then
                  before = before + 1
                  assert.are.equal("", m.text, "hop " .. ttl)
                else
                  after = after + 1
                  local want = "nat, src " .. l.src[fa(fam)] .. "->" .. NAT[fam]
                  if ports and proto == "icmp" then
                    want = want .. (", icmp_id %d->%d"):format(m.p.icmp_id, ECHO_ID)
                  elseif ports then
                    want = want .. (", sport %d->%d"):format(m.p.sport, PORT)
                  end
                  -- the checksum the NAT adjusted is no further change
                  assert.are.equal(want, m.text, "hop " .. ttl)
                end
              end
            end
            assert.is_true(before >= 5, "replies before the NAT: " .. before)
            assert.is_true(after >= 5, "replies beyond the NAT: " .. after)
            -- every router beyond it answered, from its own address
            for k = 3, N do
              assert.is_truthy(by[k], "hop " .. k .. " did not answer")
              for _, m in ipairs(by[k]) do assert.are.equal(l.hops[k][fa(fam)], m.p.addr) end
            end
          end)
        end
      end

      it("says so in text once, under hop 3", function()
        local out = trace(l, 4, "udp", 2, nil, "text")
        local lines, nat, changed = {}, {}, {}
        for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
        local hop
        for _, line in ipairs(lines) do
          hop = line:match("^%s*(%d+) ") or hop
          if line == "     [NAT]" then nat[#nat + 1] = hop end
          if line:find("[changed: src " .. l.src.v4 .. "->" .. NAT[4], 1, true) then
            changed[#changed + 1] = hop
          end
        end
        assert.same({ "3" }, nat, out)
        assert.same({ "3" }, changed, out)
      end)

      -- The kernel finds a UDP socket by the quoted addresses and ports:
      -- an error quoting the NAT's address reaches none (a documented
      -- limit of the error-queue path, not faked).
      if not ports then
        it("leaves the hops beyond it unanswered without raw sockets (UDP)", function()
          for _, fam in ipairs{ 4, 6 } do
            local argv = {}
            for _, a in ipairs(helpers.AS_NOBODY) do argv[#argv + 1] = a end
            for _, a in ipairs{ helpers.sonde(), "trace", "-n", "-q", "2", "-w", "0.5", "-m", tostring(N),
                                "--format", "json", l.dst[fa(fam)] } do
              argv[#argv + 1] = a
            end
            local out, err, code = l:exec("src", argv)
            assert.are.equal(1, code, err)
            local t = cjson.decode(out)
            assert.is_false(t.privileged)
            for _, hop in ipairs(t.hops) do
              for _, p in ipairs(hop.probes) do
                if hop.ttl <= 2 then
                  assert.are.equal(l.hops[hop.ttl][fa(fam)], p.addr, "hop " .. hop.ttl)
                else
                  assert.are.equal("timeout", p.status, "hop " .. hop.ttl)
                end
              end
            end
          end
        end)
      end
    end)
  end

  -- Quotes that name the NAT's source but not our probe (another process
  -- behind the same NAT sent the packet): a forger on r3 answers every
  -- packet that passes it towards dst with a time exceeded whose quote is
  -- that packet as the NAT rewrote it, but for the nonce (the payload's
  -- first bytes, a SYN's high half of the sequence number), from an
  -- address of r3 that is no hop. r4 is silent: the forgeries about its
  -- probes are their only answers.
  describe("beyond which another packet's quote names the NAT's source", function()
    setup(function()
      l:nft("r2", ruleset(l, false))
      l:nft("r4", lab.SILENT_RULESET)
    end)

    for _, fam in ipairs{ 4, 6 } do
      it(("attributes none of those quotes over IPv%d (udp, icmp, tcp)"):format(fam), function()
        local from = fam == 4 and "198.18.3.1" or "2001:db8:3::1"
        local args = { helpers.build() .. "/forge", "-d", NAT[fam], "-t", l.dst[fa(fam)],
          "-M", "nonce", "-F", from, "-r", "2000", "-s", "30" }
        if fam == 6 then table.insert(args, 2, "-6") end
        local forge = l:spawn("r3", args)
        finally(function() forge:stop() end)
        forge:wait_for("^ready$", 5)
        local bad, refused, nat = {}, 0, 0
        for _, v in ipairs(VARIANTS) do
          local t = trace(l, fam, v[1], 2, v[2])
          refused = refused + t.counters.ignored
          for _, hop in ipairs(t.hops) do
            for _, p in ipairs(hop.probes) do
              if p.status == "reply" then
                local want = l.hops[hop.ttl][fa(fam)]
                if hop.ttl == 4 or p.addr ~= want then
                  bad[#bad + 1] = ("%s ttl %d: %s %s"):format(v[3] or v[1], hop.ttl, tostring(p.kind), tostring(p.addr))
                end
                if p.nat then nat = nat + 1 end
              end
            end
          end
        end
        assert.are.same({}, bad)
        assert.is_true(refused > 0, "no forgery reached the prober")
        -- the real answers beyond the NAT were still taken as nat
        assert.is_true(nat >= 8, "nat replies: " .. nat)
      end)
    end
  end)
end)
