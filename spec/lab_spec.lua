-- Specs of the test lab itself (spec/support/lab.lua, helpers.lua): the
-- namespaces it builds, the addresses it promises, and that it leaves
-- nothing behind.

local helpers = require "helpers"
local lab = require "lab"

-- The namespaces this process made (other runs may work beside us).
local function netns_set()
  local set, own = {}, lab.own_prefix()
  for _, name in ipairs(lab.netns_list()) do
    if name:sub(1, #own) == own then set[name] = true end
  end
  return set
end

local function starting_with(prefix)
  local names = {}
  for _, name in ipairs(lab.netns_list()) do
    if name:sub(1, #prefix) == prefix then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

local function exists(path)
  local _, _, code = helpers.run({ "test", "-e", path })
  return code == 0
end

-- ping with a TTL (hop limit): -> exit code, output
local function ping(l, addr, ttl)
  local argv = { "ping", "-n", "-c1", "-W1" }
  if addr:find(":", 1, true) then argv[#argv + 1] = "-6" end
  if ttl then
    argv[#argv + 1] = "-t"
    argv[#argv + 1] = tostring(ttl)
  end
  argv[#argv + 1] = addr
  local out, err, code = l:exec("src", argv)
  return code, out .. err
end

describe("spec helpers", function()
  it("run returns stdout, stderr and the exit status", function()
    local out, err, code = helpers.run("echo out; echo err >&2; exit 3")
    assert.are.equal("out\n", out)
    assert.are.equal("err\n", err)
    assert.are.equal(3, code)
  end)

  it("run takes an argv table and quotes it", function()
    local out, _, code = helpers.run({ "printf", "%s|", "a b", "it's", "$HOME" })
    assert.are.equal(0, code)
    assert.are.equal("a b|it's|$HOME|", out)
  end)

  it("fd_count sees a descriptor opened and closed in this process", function()
    local before = helpers.fd_count()
    local f = assert(io.open("/dev/null"))
    assert.are.equal(before + 1, helpers.fd_count())
    f:close()
    assert.are.equal(before, helpers.fd_count())
  end)

  it("sonde() is a copy any user may run of the build under test ($SONDE_BUILD, else build/)", function()
    local build = os.getenv("SONDE_BUILD")
    build = (build and build ~= "") and build or "build"
    if build:sub(1, 1) ~= "/" then build = helpers.root() .. "/" .. build end
    local copy = helpers.sonde()
    assert.are.equal(helpers.public_root() .. "/bin/sonde", copy)
    assert.are.equal(lab.must({ "sha256sum", build .. "/sonde" }):match("^%x+"),
      lab.must({ "sha256sum", copy }):match("^%x+"))
    -- nobody can reach it and its scripts, wherever the checkout is
    if helpers.lab_enabled() then
      local out, err, code = lab.run({ "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        copy, "--version" })
      assert.are.equal(0, code, err)
      assert.matches("^sonde ", out)
    end
    assert.truthy(exists(helpers.root() .. "/spec/support/helpers.lua"))
  end)
end)

helpers.lab_describe("lab.chain of 3 routers, IPv4 and IPv6, hop 2 silent", function()
  local l
  local before

  setup(function()
    before = netns_set()
    l = lab.chain{ routers = 3, silent = { 2 }, v6 = true, name = "spec" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  it("names its namespaces after the run's prefix", function()
    local names = { l.ns.src, l.ns.r[1], l.ns.r[2], l.ns.r[3], l.ns.dst }
    local now = netns_set()
    for _, name in ipairs(names) do
      assert.are.equal(lab.prefix(), name:sub(1, #lab.prefix()))
      assert.is_true(now[name], name .. " exists")
      assert.is_nil(before[name])
    end
  end)

  it("gives each hop the address of its interface facing src", function()
    assert.are.same({ "198.18.0.2", "198.18.1.2", "198.18.2.2", "198.18.3.2" },
      { l.hops[1].v4, l.hops[2].v4, l.hops[3].v4, l.hops[4].v4 })
    assert.are.same({ "2001:db8::2", "2001:db8:1::2", "2001:db8:2::2", "2001:db8:3::2" },
      { l.hops[1].v6, l.hops[2].v6, l.hops[3].v6, l.hops[4].v6 })
    assert.are.equal(l.dst, l.hops[4])
    assert.are.same({ "198.18.0.1", "2001:db8::1" }, { l.src.v4, l.src.v6 })
    assert.are.same({ "198.18.3.2", "2001:db8:3::2" }, { l.dst.v4, l.dst.v6 })
    local facing = { "to-src", "to-r1", "to-r2" }
    for k = 1, 3 do
      local out = l:check("r" .. k, { "ip", "-o", "addr", "show", "dev", facing[k] })
      assert.truthy(out:find(" " .. l.hops[k].v4 .. "/24", 1, true), out)
      assert.truthy(out:find(" " .. l.hops[k].v6 .. "/64", 1, true), out)
    end
  end)

  it("reaches every hop and the destination from src", function()
    for k = 1, 4 do
      for _, addr in ipairs({ l.hops[k].v4, l.hops[k].v6 }) do
        local code, out = ping(l, addr)
        assert.are.equal(0, code, out)
      end
    end
  end)

  it("answers time-exceeded from each hop's src-facing address, except the silent hop", function()
    for _, k in ipairs({ 1, 3 }) do
      local _, out = ping(l, l.dst.v4, k)
      assert.truthy(out:find("From " .. l.hops[k].v4 .. " icmp_seq=1 Time to live exceeded", 1, true), out)
      _, out = ping(l, l.dst.v6, k)
      assert.truthy(out:find("From " .. l.hops[k].v6 .. " icmp_seq=1 Time exceeded", 1, true), out)
    end
    for _, addr in ipairs({ l.dst.v4, l.dst.v6 }) do
      local code, out = ping(l, addr, 2)
      assert.are.equal(1, code, out)
      assert.falsy(out:find("From ", 1, true), out)
    end
  end)

  it("drops time-exceeded with nftables on the silent hop only, which still forwards", function()
    ping(l, l.dst.v4, 2)
    ping(l, l.dst.v6, 2)
    local rules = l:check("r2", { "nft", "list", "ruleset" })
    local v4 = tonumber(rules:match("icmp type time%-exceeded counter packets (%d+) bytes %d+ drop"))
    local v6 = tonumber(rules:match("icmpv6 type time%-exceeded counter packets (%d+) bytes %d+ drop"))
    assert.truthy(v4 and v4 > 0, rules)
    assert.truthy(v6 and v6 > 0, rules)
    assert.truthy(rules:find("hook output"), rules)
    assert.truthy(l.silent[2])
    for _, k in ipairs({ 1, 3 }) do
      assert.are.equal("", l:check("r" .. k, { "nft", "list", "ruleset" }))
    end
    assert.are.equal("1\n", l:check("r2", { "sysctl", "-n", "net.ipv4.ip_forward" }))
  end)

  it("lifts the ICMP error rate limits in every namespace", function()
    for _, ns in ipairs({ "src", "r1", "r2", "r3", "dst" }) do
      local out = l:check(ns, { "sysctl", "-n", "net.ipv4.icmp_ratelimit", "net.ipv4.icmp_msgs_per_sec",
                                "net.ipv4.icmp_msgs_burst", "net.ipv6.icmp.ratelimit" })
      assert.are.equal("0\n1000000\n1000000\n0\n", out, ns)
    end
  end)

  it("has no tentative IPv6 address (no duplicate address detection)", function()
    for _, ns in ipairs({ "src", "r1", "r2", "r3", "dst" }) do
      assert.are.equal("", l:check(ns, { "ip", "-6", "-o", "addr", "show", "tentative" }))
      assert.are.equal("0\n", l:check(ns, { "sysctl", "-n", "net.ipv6.conf.default.accept_dad" }))
    end
  end)

  it("leaves the destination's UDP ports closed: a datagram gets port unreachable", function()
    local out = l:check("src", { helpers.labpeer(), "client", "-u", "-t", "5", l.dst.v4, "33434",
                                 "send=probe", "recv" })
    assert.truthy(out:find("\nrecv ECONNREFUSED\n", 1, true), out)
    out = l:check("src", { helpers.labpeer(), "client", "-u", "-t", "5", l.dst.v6, "33434",
                           "send=probe", "recv" })
    assert.truthy(out:find("\nrecv ECONNREFUSED\n", 1, true), out)
  end)

  it("runs commands inside a namespace: exec -> stdout, stderr, exit status", function()
    local out, err, code = l:exec("dst", "ip -o -4 addr show dev to-r3; echo oops >&2; exit 7")
    assert.truthy(out:find(l.dst.v4, 1, true), out)
    assert.are.equal("oops\n", err)
    assert.are.equal(7, code)
    assert.has_error(function() l:check("dst", "exit 4") end)
    -- all of a command string runs inside the namespace
    assert.are.equal(l.ns.dst .. "\n", l:check("dst", "true; ip netns identify"))
    assert.are.equal(l.ns.src .. "\n", l:check("src", "echo x | ip netns identify"))
    assert.has_error(function() l:exec("nowhere", "true") end)
  end)

  it("sets sysctls inside one namespace", function()
    l:sysctl("src", "net.ipv4.ip_local_port_range", "40000 40010")
    assert.are.equal("40000\t40010\n", l:check("src", { "sysctl", "-n", "net.ipv4.ip_local_port_range" }))
    assert.are_not.equal("40000\t40010\n", l:check("dst", { "sysctl", "-n", "net.ipv4.ip_local_port_range" }))
  end)

  it("writes /etc/netns/NS/hosts, seen as /etc/hosts inside", function()
    l:hosts("src", { target = l.dst.v4, target6 = l.dst.v6 })
    assert.are.equal(l.dst.v4 .. "      target\n", l:check("src", { "getent", "hosts", "target" }))
    assert.are.equal(l.dst.v6 .. "   target6\n", l:check("src", { "getent", "hosts", "target6" }))
    assert.truthy(exists("/etc/netns/" .. l.ns.src .. "/hosts"))
  end)

  it("writes other /etc files for a namespace", function()
    local path = l:etc("src", "resolv.conf", "nameserver 127.0.0.1\n")
    assert.are.equal("/etc/netns/" .. l.ns.src .. "/resolv.conf", path)
    assert.are.equal("nameserver 127.0.0.1\n", l:check("src", { "cat", "/etc/resolv.conf" }))
  end)

  it("knows the pid of a spawned command, for fd counts", function()
    local p, c
    finally(function()                   -- busted keeps one finally per spec
      if c then c:stop() end
      p:stop()
    end)
    p = l:spawn("dst", { helpers.labpeer(), "listen", "-p", "7000" })
    p:wait_for("^ready$", 5)
    local pid = p:command_pid()
    assert.truthy(pid)
    assert.truthy((helpers.run({ "cat", "/proc/" .. pid .. "/comm" })):match("^labpeer"))
    local before = helpers.fd_count(pid)
    c = l:spawn("src", { helpers.labpeer(), "connect", l.dst.v4, "7000" })
    c:wait_for("^ready$", 5)
    helpers.wait_until(function() return helpers.fd_count(pid) == before + 1 end, 5, "the accepted fd")
    c:stop()
    helpers.wait_until(function() return helpers.fd_count(pid) == before end, 5, "the fd to be closed")
  end)

  it("spawns a process in a namespace and stops it", function()
    local p = l:spawn("dst", "echo started; exec sleep 30")
    p:wait_for("^started$", 5)
    assert.is_true(p:running())
    local pids = helpers.run({ "ip", "netns", "pids", l.ns.dst })
    assert.truthy(pids:match("%d"), "a process runs in " .. l.ns.dst)
    p:stop()
    assert.is_false(p:running())
    assert.are.equal("", (helpers.run({ "ip", "netns", "pids", l.ns.dst })))
    p:stop()                             -- twice is fine
  end)

  it("reports the exit status of a spawned process that ends by itself", function()
    local p = l:spawn("src", { "sh", "-c", "echo bye; exit 5" })
    assert.are.equal(5, p:wait(5))
    assert.are.equal("bye\n", (p:output()))
  end)
end)

helpers.lab_describe("lab:destroy", function()
  it("removes every namespace, process and file, and can be called again", function()
    local l = lab.chain{ routers = 1, v6 = false, name = "gone" }
    local names = { l.ns.src, l.ns.r[1], l.ns.dst }
    local p = l:spawn("r1", { "sleep", "30" })
    l:hosts("src", { peer = l.dst.v4 })
    local hosts_dir = "/etc/netns/" .. l.ns.src
    assert.truthy(exists(hosts_dir))
    assert.truthy(exists(p.dir))
    assert.is_true(p:running())
    assert.is_nil(l.hops[1].v6)

    l:destroy()
    local now = netns_set()
    for _, name in ipairs(names) do assert.is_nil(now[name], name .. " still exists") end
    assert.is_false(p:running())
    assert.falsy(exists(hosts_dir))
    assert.falsy(exists(p.dir))
    assert.has_no_error(function() l:destroy() end)
  end)

  it("cleans up after a build that fails, and names the failing command", function()
    local before = netns_set()
    local ok, err = pcall(lab.build, {
      name = "broken", nodes = { "a", "b" },
      links = { { "a", "b", v4 = { "198.18.0.1/24", "198.18.0.300/24" } } },
    })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("addr add 198.18.0.300/24", 1, true), err)
    assert.falsy(tostring(err):find("cleaning up failed", 1, true), err)
    assert.are.same(before, netns_set())
  end)

  it("refuses an interface name longer than 15 characters, and cleans up", function()
    local before = netns_set()
    local ok, err = pcall(lab.build, {
      name = "long", nodes = { "a", "b" },
      links = { { "a", "b", names = { "a-very-long-interface", "b" } } },
    })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("at most 15", 1, true), err)
    assert.are.same(before, netns_set())
  end)
end)

helpers.lab_describe("lab.lua from the shell", function()
  it("up prints the chain as shell variables; down removes everything under the name", function()
    local name = lab.prefix() .. "cli"
    local script = helpers.root() .. "/spec/support/lab.lua"
    finally(function() helpers.run({ "luajit", script, "down", name }) end)
    local out, err, code = helpers.run({ "luajit", script, "up", name, "--routers", "2", "--silent", "1" })
    assert.are.equal(0, code, err)
    local vars = {}
    for k, v in out:gmatch("([%w_]+)=([^\n]*)") do vars[k] = v end
    assert.are.equal(name .. "-src", vars.SRC_NS)
    assert.are.equal(name .. "-dst", vars.DST_NS)
    assert.are.equal(name .. "-r2", vars.R2_NS)
    assert.are.equal("198.18.0.2", vars.HOP1_V4)
    assert.are.equal("2001:db8:1::2", vars.HOP2_V6)
    assert.are.equal("198.18.2.2", vars.DST_V4)
    assert.are.equal("2001:db8:2::2", vars.DST_V6)
    assert.are.same({ name .. "-dst", name .. "-r1", name .. "-r2", name .. "-src" }, starting_with(name))
    local _, _, pcode = helpers.run({ "ip", "netns", "exec", vars.SRC_NS, "ping", "-n", "-c1", "-W1", vars.DST_V4 })
    assert.are.equal(0, pcode)

    _, err, code = helpers.run({ "luajit", script, "down", name })
    assert.are.equal(0, code, err)
    assert.are.same({}, starting_with(name))
  end)

  it("up with a bad option prints usage and exits 2", function()
    local _, err, code = helpers.run({ "luajit", helpers.root() .. "/spec/support/lab.lua", "up",
                                       lab.prefix() .. "bad", "--routers" })
    assert.are.equal(2, code)
    assert.truthy(err:find("usage:", 1, true), err)
    assert.are.same({}, starting_with(lab.prefix() .. "bad"))
  end)
end)
