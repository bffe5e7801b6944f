-- What the quote tells, on a real kernel: a router that rewrites the
-- probes' DSCP and ECN (nftables, as a middlebox bleaching or marking
-- traffic does) shows at the first hop after it, in every protocol and
-- family, and a clean path shows nothing, over many probes.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

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

  local function trace(fam, proto, q, format)
    local out, err, code = l:exec("src", { helpers.sonde(), "trace", "-n", "-p", proto, "-q", tostring(q),
      "-w", "1", "-m", tostring(N + 1), "--format", format or "json", l.dst[fa(fam)] })
    assert.is_true(code == 0, err)
    return format and out or cjson.decode(out)
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
end)
