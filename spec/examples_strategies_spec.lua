-- The custom strategies in examples/ do what their comments say, run as
-- users run them: `sonde run examples/FILE.lua ARGS` (as root, so sonde
-- drops to nobody before the script runs: the examples must be readable
-- by nobody, as files in the repository are).
--   paris_traceroute.lua  over an ECMP diamond: one path, whatever the run
--   firewall_finder.lua   over a chain whose r2 drops forwarded TCP/443
--   doubletree.lua        over a chain whose destination answers for
--                         198.19.0.0/16: later targets skip known hops

local helpers = require "helpers"
local lab = require "lab"

local function example(name) return helpers.public_root() .. "/examples/" .. name end

local function run(l, file, args)
  local argv = { helpers.sonde(), "run", example(file) }
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  local out, err, code = l:exec("src", argv)
  assert(not err:find("traceback", 1, true), err)
  return out, err, code
end

local function lines(s)
  local t = {}
  for line in s:gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

helpers.lab_describe("examples/paris_traceroute.lua over an ECMP diamond", function()
  local l

  setup(function()
    l = lab.diamond{ name = "exparis" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  for _, c in ipairs{ { "udp", 4 }, { "udp", 6 }, { "icmp", 4 }, { "icmp", 6 } } do
    local proto, fam = c[1], c[2]
    it(("prints one address per hop, a branch at hop 2, and reaches the target (%s, IPv%d)"):format(proto, fam), function()
      local dst = fam == 4 and l.dst.v4 or l.dst.v6
      local out, err, code = run(l, "paris_traceroute.lua", { dst, proto })
      assert.are.equal(0, code, err)
      local t = lines(out)
      assert.are.equal(4, #t)
      local want = { l.split, nil, l.join, l.dst }
      for ttl, line in ipairs(t) do
        local addrs = {}
        for a in line:gmatch(" ([%x:.]+%x)  ") do addrs[#addrs + 1] = a end
        assert.are.equal(1, #addrs, line)            -- one address for 3 probes: one path
        assert.matches("^ " .. ttl .. " ", line)
        local a = addrs[1]
        if ttl == 2 then
          local b1, b2 = l.branches[1], l.branches[2]
          assert.truthy(a == (fam == 4 and b1.v4 or b1.v6) or a == (fam == 4 and b2.v4 or b2.v6), a)
        else
          assert.are.equal(fam == 4 and want[ttl].v4 or want[ttl].v6, a)
        end
        local n = 0
        for _ in line:gmatch(" ms") do n = n + 1 end
        assert.are.equal(3, n, line)
      end
    end)
  end

  it("is well under 100 lines", function()
    local n = 0
    for _ in io.lines(example("paris_traceroute.lua")) do n = n + 1 end
    assert.is_true(n < 100, n .. " lines")
  end)

  it("says why without raw sockets (UDP)", function()
    local out, err, code = l:exec("src", { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
      helpers.sonde(), "run", example("paris_traceroute.lua"), l.dst.v4, "udp" })
    assert.are.equal(3, code, out)
    assert.matches("ENOTSUP", err)
  end)
end)

helpers.lab_describe("examples/firewall_finder.lua and examples/doubletree.lua over a chain", function()
  local l

  setup(function()
    l = lab.chain{ routers = 4, v6 = false, name = "exfw" }
    -- r2 filters what it forwards: TCP to port 443 goes no further
    l:nft("r2", [[
table inet exfw {
  chain forward {
    type filter hook forward priority 0; policy accept;
    tcp dport 443 counter drop
  }
}
]])
    -- dst answers for 198.19.0.0/16 (AnyIP), routed along the chain
    l:route("dst", "local 198.19.0.0/16 dev lo")
    l:route("src", "198.19.0.0/16 via " .. l.hops[1].v4)
    for k = 1, 4 do l:route("r" .. k, "198.19.0.0/16 via " .. l.hops[k + 1].v4) end
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  it("names the hop that drops TCP/443 (r2) and the hop behind it", function()
    local out, err, code = run(l, "firewall_finder.lua", { l.dst.v4 })
    assert.are.equal(0, code, err)
    local t = lines(out)
    assert.are.equal(("firewall: hop 2 %s (drops tcp/443 it forwards; hop 3 %s answers tcp/80)")
      :format(l.hops[2].v4, l.hops[3].v4), t[#t])
    assert.matches("^ 1  tcp/80: " .. l.hops[1].v4:gsub("%.", "%%.") .. "   tcp/443: " .. l.hops[1].v4:gsub("%.", "%%."), t[1])
    assert.matches("tcp/443: %*$", t[3])
  end)

  it("finds no firewall for a port that passes", function()
    local out, err, code = run(l, "firewall_finder.lua", { l.dst.v4, 8443 })
    assert.are.equal(1, code, err)
    assert.matches("no firewall: tcp/8443 reaches " .. l.dst.v4:gsub("%.", "%%.") .. "\n$", out)
  end)

  it("probes every hop for the first target, and only from the middle on for the others", function()
    local targets = { "198.19.0.1", "198.19.0.2", "198.19.7.9" }
    local out, err, code = run(l, "doubletree.lua", { 3, unpack(targets) })
    assert.are.equal(0, code, err)
    local t = lines(out)
    assert.are.equal("198.19.0.1: probed hops 1-5 (5 hops)", t[1])
    for k = 1, 4 do assert.are.equal(("%4d  %s"):format(k, l.hops[k].v4), t[1 + k]) end
    assert.are.equal("   5  198.19.0.1", t[6])
    assert.are.equal(("198.19.0.2: probed hops 3-5 (3 hops); stopped at hop 3: %s seen by the trace to 198.19.0.1")
      :format(l.hops[3].v4), t[7])
    assert.are.equal(("198.19.7.9: probed hops 3-5 (3 hops); stopped at hop 3: %s seen by the trace to 198.19.0.1")
      :format(l.hops[3].v4), t[11])
    assert.are.equal("total: 11 probes for 3 targets (a probe per hop of every full trace: 15)", t[#t])
  end)
end)
