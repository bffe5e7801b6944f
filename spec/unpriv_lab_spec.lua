-- Unprivileged mode (ICMP datagram sockets, socket error queues) and least
-- privilege (raw sockets opened first, then no user id 0 and no capability).

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

local AS_NOBODY = helpers.AS_NOBODY

local readable_file = helpers.readable_file

local STATUS_SCRIPT = [[
for line in io.lines("/proc/self/status") do
  local k, v = line:match("^(%w+):%s*(.-)%s*$")
  if k == "Uid" or k == "CapEff" or k == "CapPrm" or k == "CapAmb" or k == "NoNewPrivs" then
    print(k .. "=" .. v)
  end
end
]]

local function status_of(out)
  local t = {}
  for k, v in out:gmatch("(%w+)=([^\n]*)") do t[k] = v end
  return t
end

helpers.lab_describe("sonde without privileges", function()
  local l

  setup(function()
    l = lab.chain{ routers = 3, silent = { 2 }, v6 = true, name = "unpriv" }
    l:sysctl("src", "net.ipv4.ping_group_range", "0 2147483647")
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function sonde(prefix, args)
    local argv = {}
    for _, a in ipairs(prefix or {}) do argv[#argv + 1] = a end
    argv[#argv + 1] = helpers.sonde()
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return l:exec("src", argv)
  end

  -- Addresses and kinds, probe by probe: what must not depend on privilege.
  local function shape(t)
    local s = {}
    for _, hop in ipairs(t.hops) do
      for q, p in ipairs(hop.probes) do
        s[#s + 1] = ("%d.%d %s %s %s"):format(hop.ttl, q, p.status, tostring(p.kind), tostring(p.addr))
      end
    end
    return s
  end

  for _, proto in ipairs{ "udp", "icmp", "tcp" } do
    for _, fam in ipairs{ 4, 6 } do
      it(("traces %s over IPv%d as nobody with the same result as root, privileged:false"):format(proto, fam), function()
        local dst = fam == 4 and l.dst.v4 or l.dst.v6
        -- MIN 0.3 s: the runs are compared probe by probe (see trace_lab_spec)
        local args = { "trace", "-n", "--protocol", proto, "-w", "5,3,10,0.3", "--format", "json", dst }
        local out, err, code = sonde(AS_NOBODY, args)
        assert.are.equal(0, code, err)
        local t = cjson.decode(out)
        assert.is_false(t.privileged)
        assert.is_true(t.reached)
        assert.are.equal(4, #t.hops)
        assert.are.equal(l.hops[1][fam == 4 and "v4" or "v6"], t.hops[1].probes[1].addr)
        assert.are.equal("timeout", t.hops[2].probes[1].status)
        local rout = sonde(nil, args)
        local r = cjson.decode(rout)
        assert.is_true(r.privileged)
        assert.are.same(shape(r), shape(t))
      end)
    end
  end

  it("fails ICMP clearly when ping sockets are not allowed, naming the sysctl; UDP still works", function()
    l:sysctl("src", "net.ipv4.ping_group_range", "1 0")
    local out, err, code = sonde(AS_NOBODY, { "trace", "-n", "--protocol", "icmp", "--format", "json", l.dst.v4 })
    local uout, uerr, ucode = sonde(AS_NOBODY, { "trace", "-n", "--protocol", "udp", l.dst.v4 })
    l:sysctl("src", "net.ipv4.ping_group_range", "0 2147483647")
    assert.are.equal(3, code)
    assert.matches("EACCES", err)
    assert.matches("net%.ipv4%.ping_group_range", err)
    assert.matches("use UDP or TCP %(%-U, %-T%)", err)
    local t = cjson.decode(out)
    assert.are.equal("error", t.stop_reason)
    assert.matches("IPPROTO_ICMP", t.error.call)
    assert.are.equal(0, ucode, uerr)
    assert.matches("\n 4  " .. l.dst.v4:gsub("%.", "%%."), uout)
  end)

  it("refuses --privileged without raw sockets, naming EPERM", function()
    local _, err, code = sonde(AS_NOBODY, { "trace", "-n", "--privileged", l.dst.v4 })
    assert.are.equal(3, code)
    assert.matches("EPERM: operation not permitted %(raw sockets need root or CAP_NET_RAW", err)
  end)

  it("started as root, runs scripts as nobody with no capability left", function()
    local path = readable_file(STATUS_SCRIPT)
    local out, err, code = sonde(nil, { "run", path })
    assert.are.equal(0, code, err)
    local st = status_of(out)
    assert.matches("^65534%s+65534%s+65534%s+65534$", st.Uid)
    assert.are.equal("0000000000000000", st.CapEff)
    assert.are.equal("0000000000000000", st.CapPrm)
    assert.are.equal("0000000000000000", st.CapAmb)
    assert.are.equal("1", st.NoNewPrivs)
    -- ... and still traces with the raw sockets it opened first.
    local tout = sonde(nil, { "trace", "-n", "--protocol", "icmp", "--format", "json", l.dst.v4 })
    assert.is_true(cjson.decode(tout).privileged)
    out = sonde(nil, { "--user", "daemon", "run", path })
    assert.matches("^1%s", status_of(out).Uid)
    -- started through sudo, it becomes the user who ran sudo
    out = sonde({ "env", "SUDO_USER=daemon" }, { "run", path })
    assert.matches("^1%s", status_of(out).Uid)
    out = sonde({ "env", "SUDO_USER=root" }, { "run", path })
    os.remove(path)
    assert.matches("^65534%s", status_of(out).Uid)
  end)

  it("with a file capability (cap_net_raw) opens raw sockets, then drops it", function()
    local dir = lab.run("mktemp -d /tmp/" .. lab.prefix() .. "cap.XXXXXX"):match("%S+")
    local exe = dir .. "/sonde"
    assert(os.execute("cp " .. lab.shquote(helpers.sonde()) .. " " .. lab.shquote(exe)
      .. " && chmod 755 " .. lab.shquote(dir) .. " && setcap cap_net_raw+ep " .. lab.shquote(exe)) == 0)
    local path = readable_file(STATUS_SCRIPT)
    local env = { "env", "SONDE_SCRIPTS=" .. helpers.public_root() .. "/scripts" }
    local function run_cap(args)
      local argv = {}
      for _, a in ipairs(AS_NOBODY) do argv[#argv + 1] = a end
      for _, a in ipairs(env) do argv[#argv + 1] = a end
      argv[#argv + 1] = exe
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      return l:exec("src", argv)
    end
    local out, err, code = run_cap{ "run", path }
    local tout, terr, tcode = run_cap{ "trace", "-n", "--protocol", "icmp", "--format", "json", l.dst.v4 }
    os.remove(path)
    os.execute("rm -rf " .. lab.shquote(dir))
    assert.are.equal(0, code, err)
    assert.are.equal("0000000000000000", status_of(out).CapEff)
    assert.are.equal("0000000000000000", status_of(out).CapPrm)
    assert.are.equal(0, tcode, terr)
    assert.is_true(cjson.decode(tout).privileged)
  end)
end)
