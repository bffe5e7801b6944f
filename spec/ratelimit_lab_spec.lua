-- Routers that keep Linux's default ICMP rate limits (a token bucket per
-- destination: a burst of 6, then one error a second) answer only some of
-- a burst of probes. What they do not answer is loss, reported as
-- timeouts: never as errors, never a failed run.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

helpers.lab_describe("a trace through ICMP rate-limited routers", function()
  local l

  setup(function()
    l = lab.chain{ routers = 2, v6 = true, ratelimit = true, name = "ratelimit" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  for _, c in ipairs{ { "udp", 4 }, { "icmp", 4 }, { "udp", 6 } } do
    it(("reports the rate limit as timeouts (%s/IPv%d)"):format(c[1], c[2]), function()
      -- 10 probes per hop at once: more than a router's burst
      local out, err, code = l:exec("src", { helpers.sonde(), "trace", "-n", "--protocol", c[1], "-q", "10",
        "-N", "64", "-w", "1", "--format", "json", c[2] == 4 and l.dst.v4 or l.dst.v6 })
      assert.is_true(code == 0 or code == 1, "exit " .. tostring(code) .. ": " .. err)
      assert.are.equal("", err)
      local t = cjson.decode(out)
      local timeouts, replies = 0, 0
      for _, hop in ipairs(t.hops) do
        for _, p in ipairs(hop.probes) do
          assert.is_true(p.status == "reply" or p.status == "timeout",
            ("hop %d: %s %s"):format(hop.ttl, p.status, p.error and p.error.name or ""))
          if p.status == "timeout" then timeouts = timeouts + 1 else replies = replies + 1 end
        end
      end
      -- the limit did bite (the routers answered part of the burst) ...
      assert.is_true(timeouts > 0, "no probe was rate limited")
      assert.is_true(replies > 0)
      -- ... and every reply that came is from the right hop (a router's
      -- bucket refills at one a second, so an earlier spec may have left
      -- it empty: which probes are answered is not the point)
      for _, hop in ipairs(t.hops) do
        local want = hop.ttl <= 2 and l.hops[hop.ttl] or l.dst
        for _, p in ipairs(hop.probes) do
          if p.status == "reply" then
            assert.are.equal(c[2] == 4 and want.v4 or want.v6, p.addr)
          end
        end
      end
    end)
  end
end)
