-- The engine's route-source cache (sonde__route_src, eng:source): the
-- source address the kernel would choose towards each destination, kept
-- per destination in a small hashed table. Paris UDP checksums are
-- computed over it, so a wrong answer for one destination would corrupt
-- that destination's probes. In one namespace, routes that name their
-- source send 198.18.60.0/24 from 198.18.50.1 and 198.18.61.0/24 from
-- 198.18.51.1 (IPv6 likewise); asking for 300 destinations of both,
-- interleaved and twice over, must give each its own source. Nothing is
-- sent: the answer comes from connect() on a UDP socket.

local helpers = require "helpers"
local lab = require "lab"

local SCRIPT = [[
local sonde = require "sonde"
local eng = assert(sonde.engine{})
eng:run(function()
  for round = 1, 2 do
    for i = 0, 149 do
      for _, net in ipairs{ 60, 61 } do
        local a4 = ("198.18.%d.%d"):format(net, i)
        local a6 = ("2001:db8:%d::%x"):format(net, i + 1)
        print(round, a4, eng:source(a4), a6, eng:source(a6))
      end
    end
  end
end)
eng:close()
]]

helpers.lab_describe("the source address towards each of many destinations", function()
  local l

  setup(function()
    l = lab.build{ name = "rsrc", nodes = { "host" } }
    for _, cmd in ipairs{
      "ip link set lo up",
      "ip addr add 198.18.50.1/32 dev lo", "ip addr add 198.18.51.1/32 dev lo",
      "ip -6 addr add 2001:db8:50::1/128 dev lo nodad", "ip -6 addr add 2001:db8:51::1/128 dev lo nodad",
      "ip route add 198.18.60.0/24 dev lo src 198.18.50.1",
      "ip route add 198.18.61.0/24 dev lo src 198.18.51.1",
      "ip -6 route add 2001:db8:60::/64 dev lo src 2001:db8:50::1",
      "ip -6 route add 2001:db8:61::/64 dev lo src 2001:db8:51::1",
    } do
      l:check("host", cmd)
    end
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  it("is the route's source for every destination, however they interleave", function()
    local path = helpers.readable_file(SCRIPT)
    local out, err, code = l:exec("host", { helpers.sonde(), "run", path })
    os.remove(path)
    assert.are.equal(0, code, err)
    local want = { ["60"] = { "198.18.50.1", "2001:db8:50::1" }, ["61"] = { "198.18.51.1", "2001:db8:51::1" } }
    local n = 0
    for round, a4, s4, a6, s6 in out:gmatch("(%d)\t(%S+)\t(%S+)\t(%S+)\t(%S+)\n") do
      local net = a4:match("^198%.18%.(%d+)%.")
      assert.are.same(want[net], { s4, s6 }, ("round %s: %s, %s"):format(round, a4, a6))
      n = n + 1
    end
    assert.are.equal(600, n, out .. err)
  end)
end)
