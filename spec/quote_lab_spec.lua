-- What the quote tells, on a real kernel: a router that rewrites the
-- probes' DSCP and ECN (nftables, as a middlebox bleaching or marking
-- traffic does) shows at the first hop after it, in every protocol and
-- family, and a clean path shows nothing, over many probes.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

local N = 4 -- routers; r2 rewrites, r3 is the first hop to quote the rewrite

local function fa(fam) return fam == 4 and "v4" or "v6" end

helpers.lab_describe("quoted header changes", function()
  local l

  setup(function()
    l = lab.chain{ routers = N, v6 = true, name = "quote" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  -- unreached: the destination may not answer; then the trace is classic
  -- (the kernel writes the UDP checksum: Paris names its probes by it)
  local function trace(fam, proto, q, format, unreached)
    local argv = { helpers.sonde(), "trace", "-n", "--protocol", proto, "-q", tostring(q),
      "-w", "1", "-m", tostring(N + 1), "--format", format or "json", l.dst[fa(fam)] }
    if unreached then table.insert(argv, 3, "--strategy"); table.insert(argv, 4, "classic") end
    local out, err, code = l:exec("src", argv)
    assert.is_true(code == 0 or (unreached and code == 1), err)
    if format then return out end
    local ok, why = schema.validate(out)
    assert.is_true(ok, why)
    return cjson.decode(out)
  end

  -- Every change of every reply, as "ttl field sent->seen".
  local function changes(t)
    local list, replies = {}, 0
    for _, hop in ipairs(t.hops) do
      for _, p in ipairs(hop.probes) do
        if p.status == "reply" then replies = replies + 1 end
        for _, c in ipairs(p.changes or {}) do
          list[#list + 1] = ("%d %s %s->%s"):format(hop.ttl, c.field, tostring(c.sent), tostring(c.seen))
        end
        if p.nat then list[#list + 1] = ("%d nat"):format(hop.ttl) end
      end
    end
    return list, replies
  end

  describe("on a clean path", function()
    for _, fam in ipairs{ 4, 6 } do
      for _, proto in ipairs{ "udp", "icmp", "tcp" } do
        it(("reports no change and no NAT over IPv%d/%s (10 probes a hop)"):format(fam, proto), function()
          local t = trace(fam, proto, 10)
          local list, replies = changes(t)
          assert.same({}, list)
          -- every router and the destination answered: the comparison ran
          assert.is_true(replies >= 10 * N, "replies: " .. replies)
        end)
      end
    end
  end)

  describe("behind a router that sets DSCP CS1 and ECN CE on the probes it forwards", function()
    setup(function()
      l:nft("r2", ([[
table inet middlebox {
  chain post {
    type filter hook postrouting priority 0; policy accept;
    ip daddr %s ip dscp set cs1 ip ecn set ce
    ip6 daddr %s ip6 dscp set cs1 ip6 ecn set ce
  }
}
]]):format(l.dst.v4, l.dst.v6))
    end)

    for _, fam in ipairs{ 4, 6 } do
      for _, proto in ipairs{ "udp", "icmp", "tcp" } do
        it(("shows them from hop 3 on, and nothing before, over IPv%d/%s"):format(fam, proto), function()
          local t = trace(fam, proto, 3)
          local before, after = 0, 0
          for _, hop in ipairs(t.hops) do
            for _, p in ipairs(hop.probes) do
              local got = {}
              for _, c in ipairs(p.changes or {}) do
                got[#got + 1] = ("%s %d->%d"):format(c.field, c.sent, c.seen)
              end
              -- the destination's TCP answer is a RST: no quote
              local quoted = p.quoted_ttl ~= nil
              if quoted and hop.ttl <= 2 then
                before = before + 1
                assert.same({}, got, "hop " .. hop.ttl)
              elseif quoted then
                after = after + 1
                assert.same({ "dscp 0->8", "ecn 0->3" }, got, "hop " .. hop.ttl)
              end
              assert.is_nil(p.nat, "hop " .. hop.ttl)
            end
          end
          assert.is_true(before >= 4, "replies before the rewrite: " .. before)
          assert.is_true(after >= 4, "replies after the rewrite: " .. after)
        end)
      end
    end

    it("says so in text once, under the first hop after the rewriting router", function()
      local out = trace(4, "udp", 2, "text")
      local lines, at = {}, {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      for i, line in ipairs(lines) do
        if line:find("[changed: dscp 0->8, ecn 0->3]", 1, true) then
          at[#at + 1] = lines[i - 1]:match("^%s*(%d+) ")
        end
      end
      assert.same({ "3" }, at, out)
    end)

    it("writes the changes in CSV", function()
      local out = trace(6, "icmp", 1, "csv")
      local n = 0
      for line in out:gmatch("[^\r\n]+") do
        if line:find("dscp 0->8, ecn 0->3", 1, true) then n = n + 1 end
      end
      assert.is_true(n >= 2, out) -- r3, r4 (and the destination's echo reply has no quote)
    end)
  end)

  -- MSS clamping (a router that lowers the MSS option of the SYNs it
  -- forwards, as PPPoE and VPN gateways do): seen in half-open SYN probes,
  -- whose options are the engine's own.
  describe("behind a router that clamps the MSS of SYNs to 1200", function()
    setup(function()
      l:nft("r2", ([[
table inet clamp {
  chain syns {
    type filter hook forward priority 0; policy accept;
    ip daddr %s tcp flags syn tcp option maxseg size set 1200
    ip6 daddr %s tcp flags syn tcp option maxseg size set 1200
  }
}
]]):format(l.dst.v4, l.dst.v6))
    end)

    for _, fam in ipairs{ 4, 6 } do
      it(("shows tcp_mss changed from hop 3 on (IPv%d, SYN mode)"):format(fam), function()
        local t = trace(fam, "tcp", 3)
        local after = 0
        for _, hop in ipairs(t.hops) do
          for _, p in ipairs(hop.probes) do
            if p.quoted_ttl then
              local mss
              for _, c in ipairs(p.changes or {}) do
                if c.field == "tcp_mss" then mss = c.sent .. "->" .. c.seen end
              end
              if hop.ttl <= 2 then
                assert.is_nil(mss, "hop " .. hop.ttl)
              else
                after = after + 1
                assert.are.equal((fam == 4 and "1460" or "1440") .. "->1200", mss, "hop " .. hop.ttl)
              end
            end
          end
        end
        assert.is_true(after >= 4, "replies after the clamp: " .. after)
      end)
    end
  end)

  -- Dublin traceroute's NAT evidence: a checksum that changed while the
  -- ports, addresses and payload are the probe's (a NAT that translated
  -- the probe and restored all but the checksum on the way back). Here r3
  -- rewrites the UDP checksum alone; the destination drops what it then
  -- receives. The trace is classic: a Paris trace names its UDP probes by
  -- their checksum, and a quote with another one is not its probe's.
  describe("behind a router that rewrites the UDP checksum and nothing else", function()
    setup(function()
      l:nft("r3", ([[
table inet natlike {
  chain post {
    type filter hook postrouting priority 0; policy accept;
    ip daddr %s udp checksum set 4660
    ip6 daddr %s udp checksum set 4660
  }
}
]]):format(l.dst.v4, l.dst.v6))
    end)

    for _, fam in ipairs{ 4, 6 } do
      it(("reports nat from hop 4 on, with the checksum among the changes (IPv%d/udp)"):format(fam), function()
        local t = trace(fam, "udp", 3, nil, true)
        local seen = 0
        for _, hop in ipairs(t.hops) do
          for _, p in ipairs(hop.probes) do
            if p.quoted_ttl then
              local fields = {}
              for _, c in ipairs(p.changes or {}) do fields[#fields + 1] = c.field end
              if hop.ttl <= 3 then
                assert.is_nil(p.nat, "hop " .. hop.ttl)
                assert.is_false(table.concat(fields, " "):find("udp_checksum", 1, true) ~= nil)
              else
                seen = seen + 1
                assert.is_true(p.nat, "hop " .. hop.ttl)
                assert.same({ "dscp", "ecn", "udp_checksum" }, fields)
              end
            end
          end
        end
        assert.is_true(seen >= 2, "replies from r4: " .. seen)
      end)
    end

    it("says [NAT] once in text, under hop 4", function()
      local out = trace(4, "udp", 2, "text", true)
      local lines, at = {}, {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      for i, line in ipairs(lines) do
        if line == "     [NAT]" then
          local j = i - 1
          while not lines[j]:match("^%s*%d+ ") do j = j - 1 end
          at[#at + 1] = lines[j]:match("^%s*(%d+) ")
        end
      end
      assert.same({ "4" }, at, out)
    end)
  end)
end)

-- Probes that carry chosen header fields (a script's e:probe): the IPv4
-- identification, DF and ECN ECT(1); the IPv6 flow label and ECT(1). A
-- router that clears DF, rewrites the identification and the flow label
-- and bleaches ECN shows at the first hop after it; without it, nothing.
local SCRIPT = [[
local sonde = require "sonde"
local d4, d6, maxttl = ...
local eng = assert(sonde.engine{})
eng:run(function()
  for ttl = 1, tonumber(maxttl) do
    local specs = {
      { dst = d4, proto = "udp", ttl = ttl, ip_id = 4200 + ttl, df = true, tos = 0xb9, wait = 1 },
      { dst = d4, proto = "icmp", ttl = ttl, ip_id = 4300 + ttl, df = true, tos = 0xb9, wait = 1 },
      { dst = d6, proto = "udp", ttl = ttl, flow_label = 0x12345, tos = 0xb9, wait = 1 },
      { dst = d6, proto = "icmp", ttl = ttl, flow_label = 0x12345, tos = 0xb9, wait = 1 },
      -- the kernel writes this one's header and checksum
      { dst = d4, proto = "udp", ttl = ttl, tos = 0xb9, dport = 33500, wait = 1 },
    }
    local names = { "v4udp", "v4icmp", "v6udp", "v6icmp", "v4kudp" }
    for i, r in ipairs(eng:probe_all(specs)) do
      local parts = {}
      for _, c in ipairs(r.changes or {}) do parts[#parts + 1] = c.field .. " " .. c.sent .. "->" .. c.seen end
      print(("%d %s %s %s %s%s"):format(ttl, names[i], r.status,
        r.quoted_ttl and "quoted" or "unquoted", table.concat(parts, ","), r.nat and " nat" or ""))
    end
  end
end)
]]

helpers.lab_describe("quoted header fields a probe chose", function()
  local l, script

  setup(function()
    l = lab.chain{ routers = N, v6 = true, name = "quotef" }
    local dir = helpers.temp_dir("quotef", "755")
    script = dir .. "/fields.lua"
    lab.write_file(script, SCRIPT)
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  -- "ttl family+proto" -> changes, for the quoted replies; and how many.
  local function run()
    local out, err, code = l:exec("src", { helpers.sonde(), "run", script, l.dst.v4, l.dst.v6, tostring(N + 1) })
    assert.are.equal(0, code, err)
    local got, quoted = {}, 0
    for ttl, what, status, q, changes, nat in out:gmatch("(%d+) (%S+) (%S+) (%S+) ?([^\n]-)( ?n?a?t?)\n") do
      if q == "quoted" then
        quoted = quoted + 1
        got[ttl .. " " .. what] = changes .. nat
      end
    end
    return got, quoted, out
  end

  it("finds nothing changed on a clean path (ip_id, DF, flow label, ECN, lengths, checksums)", function()
    for _ = 1, 3 do
      local got, quoted, out = run()
      for k, v in pairs(got) do assert.are.equal("", v, k .. "\n" .. out) end
      -- every router and the destination quoted the UDP probes, the routers the ICMP ones
      assert.is_true(quoted >= 3 * (N + 1) + 2 * N, out)
    end
  end)

  it("finds DF cleared, the identification and flow label rewritten and ECN bleached, from hop 3 on", function()
    l:nft("r2", ([[
table inet middlebox {
  chain post {
    type filter hook postrouting priority 0; policy accept;
    ip daddr %s ip frag-off set 0 ip id set 77 ip ecn set not-ect
    ip6 daddr %s ip6 flowlabel set 777 ip6 ecn set not-ect
  }
}
]]):format(l.dst.v4, l.dst.v6))
    local got, _, out = run()
    for ttl = 1, N + 1 do
      for _, what in ipairs{ "v4udp", "v4icmp", "v6udp", "v6icmp", "v4kudp" } do
        local v = got[ttl .. " " .. what]
        local id = (what == "v4udp" and 4200 or 4300) + ttl
        local want
        if ttl <= 2 then
          want = ""
        elseif what == "v4kudp" then
          want = "ecn 1->0" -- the kernel chose its identification and DF: unknown
        elseif what:sub(1, 2) == "v4" then
          want = ("ecn 1->0,ip_id %d->77,df 1->0"):format(id)
        else
          want = "ecn 1->0,flow_label 74565->777"
        end
        if v ~= nil or (ttl <= N) then
          assert.are.equal(want, v, ttl .. " " .. what .. "\n" .. out)
        end
      end
    end
  end)
end)
