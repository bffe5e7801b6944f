-- Least privilege that holds, wherever sonde is cloned.
--
-- Started as root, sonde opens what its command line names, then runs as
-- an unprivileged user; run through a setcap binary it drops every
-- capability. These specs check both halves: a folder only root can enter
-- (root's home is mode 0700) works for every file a command line names,
-- and scripts that try to reach the raw sockets around the engine's API
-- get nowhere — an nftables counter at the next hop sees no forged packet.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

local shquote = lab.shquote
local sanitized = os.getenv("SONDE_SANITIZE") ~= nil and os.getenv("SONDE_SANITIZE") ~= ""

local write = lab.write_file

local function owner(path)
  return lab.must({ "stat", "-c", "%u:%g", path }):match("%S+")
end

-- Names of the files in dir (temporary files included).
local function listing(dir)
  return lab.must("ls -A " .. shquote(dir))
end

helpers.lab_describe("sonde cloned into a folder only root can enter", function()
  local l, dir

  setup(function()
    l = lab.chain{ routers = 2, v6 = false, name = "privdir" }
    dir = helpers.temp_dir("privdir")
    -- The build and the scripts as a clone in root's home has them.
    lab.must({ "mkdir", "-p", dir .. "/sonde/build" })
    lab.must({ "cp", helpers.sonde(), dir .. "/sonde/build/sonde" })
    lab.must({ "cp", "-r", helpers.root() .. "/scripts", dir .. "/sonde/scripts" })
    write(dir .. "/format.lua", [[
return { record = function(rec) return "hops " .. #(rec.hops or {}) .. "\n" end }
]])
    write(dir .. "/retry.lua", "return function() return \"accept\" end\n")
    write(dir .. "/targets.txt", l.dst.v4 .. "\n")
    write(dir .. "/script.lua", [[
local sonde = require "sonde"
local eng = assert(sonde.engine{})
local r
eng:run(function() r = eng:probe{ dst = arg[1], proto = "icmp", ttl = 1, wait = 2 } end)
print(r.status, r.kind, r.addr)
return r.status == "reply" and 0 or 1
]])
  end)

  teardown(function()
    if l then l:destroy() end
    if dir then lab.run({ "rm", "-rf", dir }) end
  end)

  local function sonde(args, env)
    local argv = { "env" }
    for k, v in pairs(env or {}) do argv[#argv + 1] = k .. "=" .. v end
    argv[#argv + 1] = dir .. "/sonde/build/sonde"
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return l:exec("src", argv)
  end

  it("loads its own scripts: --version, list and a trace", function()
    local out, err, code = sonde{ "--version" }
    assert.are.equal(0, code, err)
    assert.matches("^sonde %d", out)
    out, err, code = sonde{ "list" }
    assert.are.equal(0, code, err)
    assert.matches("trace", out)
    out, err, code = sonde{ "trace", "-n", "-q", "1", l.dst.v4 }
    assert.are.equal(0, code, err)
    assert.matches("\n 3  " .. l.dst.v4:gsub("%.", "%%.") .. "  ", out)
  end)

  it("reads --format, --retry and --targets files there and writes -o there, owned by root", function()
    local out, err, code = sonde{ "trace", "-n", "-q", "1", "--format", dir .. "/format.lua",
      "--retry", dir .. "/retry.lua", "--targets", dir .. "/targets.txt", "-o", dir .. "/out.txt" }
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    assert.are.equal("hops 3\n", lab.read_file(dir .. "/out.txt"))
    assert.are.equal("0:0", owner(dir .. "/out.txt"))
    assert.is_nil(listing(dir):find("%.tmp"), "a temporary file was left: " .. listing(dir))
  end)

  it("replaces an existing -o file atomically, and leaves it alone when the run fails", function()
    write(dir .. "/keep.txt", "old\n")
    local _, err, code = sonde{ "trace", "-n", "-q", "1", "--format", "json", "-o", dir .. "/keep.txt", l.dst.v4 }
    assert.are.equal(0, code, err)
    assert.are.equal(l.dst.v4, cjson.decode(lab.read_file(dir .. "/keep.txt")).addr)
    write(dir .. "/keep.txt", "old\n")
    -- a format file that fails: nothing is written, FILE stays
    local _, err2, code2 = sonde{ "trace", "-n", "-q", "1", "--format", dir .. "/missing.lua",
      "-o", dir .. "/keep.txt", l.dst.v4 }
    assert.are.equal(2, code2)
    assert.matches("missing%.lua", err2)
    assert.are.equal("old\n", lab.read_file(dir .. "/keep.txt"))
    assert.is_nil(listing(dir):find("%.tmp"), "a temporary file was left: " .. listing(dir))
  end)

  it("runs `sonde run FILE` from there", function()
    local out, err, code = sonde{ "run", dir .. "/script.lua", l.dst.v4 }
    assert.are.equal(0, code, err)
    assert.matches("^reply\ttime_exceeded\t" .. l.hops[1].v4:gsub("%.", "%%."), out)
  end)

  it("gives -o to the sudo user under sudo", function()
    local _, err, code = sonde({ "trace", "-n", "-q", "1", "-o", dir .. "/sudo.txt", l.dst.v4 },
      { SUDO_USER = "nobody", SUDO_UID = "65534", SUDO_GID = "65534" })
    assert.are.equal(0, code, err)
    assert.are.equal("65534:65534", owner(dir .. "/sudo.txt"))
    assert.matches("^trace to ", lab.read_file(dir .. "/sudo.txt"))
  end)

  it("writes -o /dev/null and -o /dev/stdout in place", function()
    local out, err, code = sonde{ "trace", "-n", "-q", "1", "-o", "/dev/null", l.dst.v4 }
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    out, err, code = sonde{ "trace", "-n", "-q", "1", "--format", "json", "-o", "/dev/stdout", l.dst.v4 }
    assert.are.equal(0, code, err)
    assert.are.equal(l.dst.v4, cjson.decode(out).addr)
  end)
end)

-- Everything a script might try to get at the raw sockets or run machine
-- code of its own. Each attempt prints "name<TAB>outcome"; "blocked" is
-- the only right outcome. The probe at the end is the legitimate way, and
-- must work.
local HOSTILE = [[
local dir, dst = arg[1], arg[2]
local function try(name, fn)
  local ok, res = pcall(fn)
  if ok and res then print(name .. "\tGOT THROUGH: " .. tostring(res))
  else print(name .. "\tblocked") end
end
try("require ffi", function()
  local ffi = require "ffi"
  ffi.cdef "int sendto(int, const void *, size_t, int, const void *, int);"
  for fd = 3, 64 do ffi.C.sendto(fd, "x", 1, 0, nil, 0) end
  return "ffi"
end)
try("ffi global", function() return ffi or jit and jit.ffi end)
try("package.loadlib", function()
  return package.loadlib(dir .. "/evil.so", "luaopen_evil")
end)
try("require C module", function()
  package.cpath = dir .. "/?.so"
  return require "evil"
end)
try("re-added C searcher", function()
  for _, f in pairs(package.loaders) do
    local ok, r = pcall(f, "evil")
    if ok and type(r) == "function" then return r() end
  end
end)
local dumped = string.dump(function() return "bytecode ran" end)
try("load bytecode", function() local f = load(dumped) return f and f() end)
try("loadstring bytecode", function() local f = loadstring(dumped) return f and f() end)
local bc = io.open(dir .. "/bc.lua", "wb")
if bc then bc:write(dumped) bc:close() end
try("loadfile bytecode", function() local f = loadfile(dir .. "/bc.lua") return f and f() end)
try("dofile bytecode", function() return dofile(dir .. "/bc.lua") end)
try("require bytecode", function()
  local saved = package.path
  package.path = dir .. "/?.lua"
  local ok, r = pcall(require, "bc")
  package.path = saved
  return ok and r
end)
try("write /proc/self/mem", function() return io.open("/proc/self/mem", "r+") end)
try("write /proc/<pid>/mem", function()
  return io.open("/proc/" .. require("sonde.core").pid() .. "/mem", "w")
end)
try("shell sendto", function()
  -- a child gets no descriptor (all are close-on-exec) and no privilege
  return os.execute("exec 3<>/dev/null; ping -c 1 -W 1 -I 198.18.77.77 " .. dst
    .. " >/dev/null 2>&1") == 0 and "child pinged from a forged source"
end)
local sonde = require "sonde"
local eng = assert(sonde.engine{})
-- A source that is not one of this host's: the probe fails with
-- EADDRNOTAVAIL before anything is sent, on the ordinary sockets and on
-- the raw IPPROTO_RAW one (ip_id: the engine writes the IPv4 header, and
-- the kernel would send whatever source it carries), and in SYN mode.
local function foreign(spec)
  local r
  spec.dst, spec.ttl, spec.src, spec.wait = dst, 1, "198.18.77.77", 1
  eng:run(function() r = eng:probe(spec) end)
  if r and r.status == "failed" and r.error and r.error.name == "EADDRNOTAVAIL" then return nil end
  return "probe " .. tostring(r and r.status) .. " " .. tostring(r and r.error and r.error.name)
end
try("probe with a foreign src", function() return foreign{ proto = "icmp" } end)
try("IP_HDRINCL probe (ip_id) with a foreign src", function()
  return foreign{ proto = "udp", ip_id = 4242 }
end)
try("SYN probe with a foreign src", function()
  return foreign{ proto = "tcp", tcp_mode = "syn", dport = 80 }
end)
local r
eng:run(function() r = eng:probe{ dst = dst, proto = "icmp", ttl = 1, wait = 2 } end)
print("legitimate probe\t" .. r.status .. "\t" .. tostring(r.kind))
print("privileged\t" .. tostring(eng:privileged(4)))
]]

-- A C module that would prove it ran by creating a file.
local EVIL_C = [[
#include <stdio.h>
int luaopen_evil(void *L) {
  FILE *f = fopen(MARK, "w");
  if (f) fclose(f);
  return 0;
}
]]

-- Outside Lua, with every privilege: the send-only raw UDP sockets that
-- sonde opens keep their drop-all filter whatever the process tries.
local LOCKCHECK_C = [[
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include "sonde.h"
int main(void) {
  struct sock_filter all = BPF_STMT(BPF_RET | BPF_K, 0xffff);
  struct sock_fprog prog = {1, &all};
  int fd, raw_udp = 0, held = 0, dummy = 0;
  if (sonde_raw_preopen() < 0) return 2;
  for (fd = 3; fd < 64; fd++) {
    int type, proto;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_RAW) continue;
    len = sizeof(proto);
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) != 0 || proto != IPPROTO_UDP) continue;
    raw_udp++;
    if (setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &dummy, sizeof(dummy)) != 0 && errno == EPERM &&
        setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0 && errno == EPERM)
      held++;
  }
  printf("%d %d\n", raw_udp, held);
  sonde_raw_release();
  return 0;
}
]]

helpers.lab_describe("the raw sockets' filters", function()
  it("cannot be detached or replaced, even by privileged code in the process", function()
    if sanitized then
      pending("the check links the plain library")
      return
    end
    local dir = helpers.temp_dir("lock")
    local ok, err = pcall(function()
      write(dir .. "/lock.c", LOCKCHECK_C)
      lab.must({ "cc", "-o", dir .. "/lock", "-I", helpers.root() .. "/engine/include", dir .. "/lock.c",
        helpers.build() .. "/libsonde.a", "-luv", "-lpthread" })
      local out = lab.must({ dir .. "/lock" })
      local found, held = out:match("(%d+) (%d+)")
      assert.are.equal("2", found, "expected a raw UDP socket per family: " .. out)
      assert.are.equal(found, held, out)
    end)
    lab.run({ "rm", "-rf", dir })
    assert(ok, err)
  end)
end)

helpers.lab_describe("hostile scripts", function()
  local l, dir, capdir

  setup(function()
    l = lab.chain{ routers = 1, v6 = false, name = "hostile" }
    dir = helpers.temp_dir("hostile", "1777")
    write(dir .. "/hostile.lua", HOSTILE)
    write(dir .. "/evil.c", EVIL_C)
    lab.must({ "cc", "-shared", "-fPIC", "-DMARK=\"" .. dir .. "/EVIL-RAN\"", "-o", dir .. "/evil.so", dir .. "/evil.c" })
    lab.must({ "chmod", "755", dir .. "/evil.so" })
    -- r1 counts what src sends: from its own address, and from any other
    l:nft("r1", [[
table inet hostile {
  counter own { }
  counter forged { }
  chain pre {
    type filter hook prerouting priority -500; policy accept;
    iifname "to-src" ip saddr 198.18.0.1 counter name own
    iifname "to-src" ip saddr != 198.18.0.1 counter name forged
  }
}
]])
    -- the setcap binary, with its scripts beside it, as make install SETCAP=1 leaves it
    capdir = helpers.temp_dir("setcap", "755")
    lab.must({ "mkdir", "-p", capdir .. "/bin" })
    lab.must({ "cp", helpers.sonde(), capdir .. "/bin/sonde" })
    lab.must({ "cp", "-r", helpers.root() .. "/scripts", capdir .. "/scripts" })
    lab.must({ "chmod", "-R", "a+rX", capdir })
    lab.must({ "setcap", "cap_net_raw+ep", capdir .. "/bin/sonde" })
  end)

  teardown(function()
    if l then l:destroy() end
    if dir then lab.run({ "rm", "-rf", dir }) end
    if capdir then lab.run({ "rm", "-rf", capdir }) end
  end)

  local function counters()
    local out = l:check("r1", { "nft", "list", "counters", "table", "inet", "hostile" })
    local c = {}
    for name, n in out:gmatch("counter ([%w_]+) {%s*packets (%d+)") do c[name] = tonumber(n) end
    return c
  end

  local function check(out, err, code)
    assert.are.equal(0, code, err .. out)
    local attempts = 0
    for line in out:gmatch("[^\n]+") do
      local name, outcome = line:match("^([^\t]+)\t(.*)$")
      if name and name ~= "legitimate probe" and name ~= "privileged" then
        attempts = attempts + 1
        assert.are.equal("blocked", outcome, name)
      end
    end
    assert.are.equal(16, attempts, out)
    assert.matches("legitimate probe\treply\ttime_exceeded", out)
    assert.matches("privileged\ttrue", out)
    assert.is_nil(lab.read_file(dir .. "/EVIL-RAN"), "the C module ran")
  end

  local function run_hostile(who)
    l:check("r1", { "nft", "reset", "counters", "table", "inet", "hostile" })
    local argv = {}
    for _, a in ipairs(who) do argv[#argv + 1] = a end
    for _, a in ipairs{ "run", dir .. "/hostile.lua", dir, l.dst.v4 } do argv[#argv + 1] = a end
    local out, err, code = l:exec("src", argv)
    local c = counters()
    return out, err, code, c
  end

  it("started as root: every way around the engine is shut, nothing forged leaves", function()
    local out, err, code, c = run_hostile{ helpers.sonde() }
    check(out, err, code)
    assert.are.equal(0, c.forged)
    assert.is_true(c.own >= 1, "the legitimate probe was not counted")
  end)

  it("through a setcap binary run by nobody: the same", function()
    if sanitized then
      pending("an ASan binary does not run with file capabilities (LD_PRELOAD is ignored)")
      return
    end
    local who = {}
    for _, a in ipairs(helpers.AS_NOBODY) do who[#who + 1] = a end
    who[#who + 1] = capdir .. "/bin/sonde"
    local out, err, code, c = run_hostile(who)
    check(out, err, code)
    assert.are.equal(0, c.forged)
    assert.is_true(c.own >= 1, "the legitimate probe was not counted")
  end)
end)
