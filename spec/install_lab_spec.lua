-- make install: the executable, the scripts, the C library (static and
-- shared), its header and sonde.pc, and the Lua module — each used from a
-- temporary PREFIX the way a user would: examples/embed.c built with
-- pkg-config and run in the lab, luajit loading the module, the installed
-- sonde finding its scripts. Then make uninstall.

local helpers = require "helpers"
local lab = require "lab"

local root = helpers.root()
local sanitized = os.getenv("SONDE_SANITIZE") ~= nil and os.getenv("SONDE_SANITIZE") ~= ""
-- make check installs its ASan build: luajit must load the ASan runtime
-- first (spec/run preloads it for busted only, not for what specs run)
local preload = sanitized and ("LD_PRELOAD=" .. lab.shquote(
  lab.must("gcc -print-file-name=libasan.so"):match("%S+")) .. " ") or ""

-- make ARGS in the repository: through the top Makefile's include of
-- bindings/install.mk, or with the fragment named when the Makefile does
-- not include it (yet).
local function make(args)
  local argv = { "make", "-s", "--no-print-directory", "-C", root }
  local mk = lab.read_file(root .. "/Makefile") or ""
  if not mk:find("bindings/install.mk", 1, true) then
    for _, a in ipairs{ "-f", "Makefile", "-f", "bindings/install.mk" } do argv[#argv + 1] = a end
  end
  local b = os.getenv("SONDE_BUILD")
  if b and b ~= "" then argv[#argv + 1] = "BUILD=" .. b end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return lab.run(argv)
end

local function version()
  local m = lab.read_file(root .. "/Makefile")
  return m:match("\nVERSION%s*:=%s*(%S+)")
end

-- Every file and link under dir (relative paths, sorted).
local function tree(dir)
  local out = lab.must("cd " .. lab.shquote(dir) .. " && find . ! -type d | sort")
  local files = {}
  for f in out:gmatch("%./([^\n]+)") do files[#files + 1] = f end
  return files
end

helpers.lab_describe("make install", function()
  local l, dir, prefix, stage, pcpath

  setup(function()
    l = lab.chain{ routers = 1, v6 = true, name = "install" }
    l:sysctl("src", "net.ipv4.ping_group_range", "0 2147483647")
    -- a temporary PREFIX that nobody can read (sonde started as root runs
    -- its scripts as nobody)
    dir = lab.must("mktemp -d /tmp/" .. lab.prefix() .. "install.XXXXXX"):match("%S+")
    lab.must({ "chmod", "755", dir })
    prefix = dir .. "/prefix"
    stage = dir .. "/stage"
    pcpath = "PKG_CONFIG_PATH=" .. lab.shquote(prefix .. "/lib/pkgconfig")
    local out, err, code = make{ "install", "PREFIX=" .. prefix }
    assert(code == 0, "make install failed:\n" .. out .. err)
  end)

  teardown(function()
    if l then l:destroy() end
    if dir then lab.run({ "rm", "-rf", dir }) end
  end)

  it("installs the executable, the libraries with their soname links, the header, sonde.pc, the scripts and the Lua module", function()
    local v = version()
    local files = {}
    for _, f in ipairs(tree(prefix)) do files[f] = true end
    for _, f in ipairs{ "bin/sonde", "include/sonde.h", "lib/libsonde.a", "lib/libsonde.so",
        "lib/libsonde.so.0", "lib/libsonde.so." .. v, "lib/pkgconfig/sonde.pc",
        "share/sonde/scripts/sweep.lua", "share/sonde/scripts/trace.lua",
        "share/sonde/scripts/sonde/init.lua", "share/sonde/scripts/sonde/targets.lua",
        "share/sonde/scripts/sonde/schema/sonde.schema.json",
        "share/lua/5.1/sonde/init.lua", "share/lua/5.1/sonde/format/jsonl.lua",
        "lib/lua/5.1/sonde/core.so" } do
      assert.is_true(files[f] or false, f .. " not installed")
    end
    assert.are.equal("libsonde.so.0", lab.must({ "readlink", prefix .. "/lib/libsonde.so" }):match("%S+"))
    assert.are.equal("libsonde.so." .. v, lab.must({ "readlink", prefix .. "/lib/libsonde.so.0" }):match("%S+"))
    assert.truthy(lab.must({ "readelf", "-d", prefix .. "/lib/libsonde.so." .. v })
      :find("Library soname: [libsonde.so.0]", 1, true))
    local pc = lab.read_file(prefix .. "/lib/pkgconfig/sonde.pc")
    assert.truthy(pc:find("prefix=" .. prefix .. "\n", 1, true), pc)
    assert.truthy(pc:find("\nVersion: " .. v .. "\n", 1, true), pc)
    assert.truthy(pc:find("\nRequires: libuv\n", 1, true), pc)
    -- the installed header is the repository's
    assert.are.equal(lab.read_file(root .. "/engine/include/sonde.h"), lab.read_file(prefix .. "/include/sonde.h"))
    assert.are.equal("755", lab.must({ "stat", "-c", "%a", prefix .. "/bin/sonde" }):match("%d+"))
    assert.are.equal("644", lab.must({ "stat", "-c", "%a", prefix .. "/share/sonde/scripts/sweep.lua" }):match("%d+"))
  end)

  describe("examples/embed.c, built with pkg-config --cflags --libs sonde", function()
    local cflags = sanitized and " -fsanitize=address,undefined" or ""

    setup(function()
      local _, err, code = lab.run(pcpath .. " cc -Wall -Wextra -Werror" .. cflags .. " -o "
        .. lab.shquote(dir .. "/embed") .. " " .. lab.shquote(root .. "/examples/embed.c")
        .. " $(" .. pcpath .. " pkg-config --cflags --libs sonde)")
      assert(code == 0, "cc failed: " .. err)
    end)

    local function embed(args, how)
      local cmd = "LD_LIBRARY_PATH=" .. lab.shquote(prefix .. "/lib") .. " " .. (how or "")
        .. lab.cmdline{ dir .. "/embed" } .. " " .. table.concat(args, " ")
      return l:exec("src", cmd)
    end

    -- The line of a probe, spaces collapsed, without its RTT: "ttl=1
    -- status=reply kind=time_exceeded addr=198.18.0.2".
    local function outcome(out, proto)
      for line in out:gmatch("[^\n]+") do
        local rest = line:match("^" .. proto .. " +(.*)$")
        if rest then return (rest:gsub(" rtt=.*$", ""):gsub("%s+", " ")) end
      end
    end

    it("gets its flags from the installed sonde.pc and links the installed libsonde.so.0", function()
      local flags = lab.must(pcpath .. " pkg-config --cflags --libs sonde")
      assert.truthy(flags:find("-I" .. prefix .. "/include", 1, true), flags)
      assert.truthy(flags:find("-L" .. prefix .. "/lib -lsonde", 1, true), flags)
      assert.truthy(flags:find("-luv", 1, true), flags)
      local ldd = lab.must("LD_LIBRARY_PATH=" .. lab.shquote(prefix .. "/lib") .. " ldd " .. lab.shquote(dir .. "/embed"))
      assert.truthy(ldd:find("libsonde.so.0 => " .. prefix .. "/lib/libsonde.so.0", 1, true), ldd)
    end)

    it("runs its probes on its own uv loop in the lab, then closes the loop cleanly (IPv4)", function()
      local out, err, code = embed{ l.dst.v4 }
      assert.are.equal(0, code, out .. err)
      assert.are.equal("ttl=64 status=reply kind=echo_reply addr=" .. l.dst.v4, outcome(out, "icmp"))
      assert.are.equal("ttl=1 status=reply kind=time_exceeded addr=" .. l.hops[1].v4, outcome(out, "udp"))
      assert.are.equal("ttl=64 status=reply kind=tcp_rst addr=" .. l.dst.v4, outcome(out, "tcp"))
      assert.truthy(out:find("\nengine: 3 sent, 3 replies, 0 timeouts, 0 failed; loop closed\n$"), out)
    end)

    it("reaches the destination when TTL is enough, and a listening port (IPv6)", function()
      local peer = l:spawn("dst", { helpers.labpeer(), "listen", "-6", "-p", "7000", "-t", "20" })
      peer:wait_for("^ready$", 5)
      local out, err, code = embed{ l.dst.v6, 2, 7000 }
      peer:stop()
      assert.are.equal(0, code, out .. err)
      assert.are.equal("ttl=64 status=reply kind=echo_reply addr=" .. l.dst.v6, outcome(out, "icmp"))
      assert.are.equal("ttl=2 status=reply kind=dest_unreachable code=port addr=" .. l.dst.v6, outcome(out, "udp"))
      assert.are.equal("ttl=64 status=reply kind=tcp_synack addr=" .. l.dst.v6, outcome(out, "tcp"))
    end)

    it("runs unprivileged (ping socket, error queues) for an ordinary user", function()
      lab.must({ "chmod", "755", dir .. "/embed" })
      local out, err, code = embed({ l.dst.v4 }, "setpriv --reuid=65534 --regid=65534 --clear-groups ")
      assert.are.equal(0, code, out .. err)
      assert.are.equal("ttl=64 status=reply kind=echo_reply addr=" .. l.dst.v4, outcome(out, "icmp"))
      assert.are.equal("ttl=1 status=reply kind=time_exceeded addr=" .. l.hops[1].v4, outcome(out, "udp"))
    end)

    it("reports local errors as outcomes, and still closes cleanly", function()
      local out, err, code = embed{ "198.18.77.1" }
      assert.are.equal(0, code, out .. err)
      assert.truthy(out:find("icmp ttl=64 status=failed kind=- addr=- rtt=- error=ENETUNREACH\n", 1, true), out)
      assert.truthy(out:find("loop closed\n$"), out)
      local _
      _, err, code = embed{ "not-an-address" }
      assert.are.equal(2, code)
      assert.truthy(err:find("TARGET must be a numeric address", 1, true))
    end)

    it("also links statically against libsonde.a (pkg-config --static)", function()
      local static = dir .. "/embed-static"
      local _, err, code = lab.run(pcpath .. " cc -Wall" .. cflags .. " -o " .. lab.shquote(static) .. " "
        .. lab.shquote(root .. "/examples/embed.c") .. " $(" .. pcpath .. " pkg-config --cflags sonde)"
        .. " $(" .. pcpath .. " pkg-config --static --libs sonde | sed 's/-lsonde/-Wl,-Bstatic -lsonde -Wl,-Bdynamic/')")
      assert.are.equal(0, code, err)
      assert.is_nil(lab.must({ "ldd", static }):find("libsonde", 1, true))
      local out, err2, code2 = l:exec("src", { static, l.dst.v4 })
      assert.are.equal(0, code2, out .. err2)
      assert.truthy(out:find("loop closed\n$"), out)
    end)
  end)

  it("luajit loads the installed module with LUA_PATH and LUA_CPATH from the prefix, and probes with it", function()
    local env = "LUA_PATH=" .. lab.shquote(prefix .. "/share/lua/5.1/?.lua;" .. prefix .. "/share/lua/5.1/?/init.lua;;")
      .. " LUA_CPATH=" .. lab.shquote(prefix .. "/lib/lua/5.1/?.so;;")
    local script = [[
      local sonde = require "sonde"
      print(package.searchpath("sonde", package.path))
      print(package.searchpath("sonde.core", package.cpath))
      print(sonde.version().sonde)
      local eng = assert(sonde.engine{ wait = 1 })
      local r = eng:run(function() return eng:probe{ dst = DST, proto = "icmp" } end)
      print(r.status, r.kind, r.addr)
      assert(eng:close())
    ]]
    script = script:gsub("DST", string.format("%q", l.dst.v4))
    local out, err, code = l:exec("src", "cd / && " .. env .. " " .. preload .. "luajit -e "
      .. lab.shquote(script))
    assert.are.equal(0, code, err)
    assert.are.same({ prefix .. "/share/lua/5.1/sonde/init.lua", prefix .. "/lib/lua/5.1/sonde/core.so",
      version(), "reply\techo_reply\t" .. l.dst.v4 }, (function()
        local t = {}
        for line in out:gmatch("[^\n]+") do t[#t + 1] = line end
        return t
      end)())
  end)

  it("puts the module where Debian's LuaJIT looks by default when PREFIX=/usr/local (DESTDIR staging)", function()
    local _, err, code = make{ "install", "DESTDIR=" .. stage, "PREFIX=/usr/local" }
    assert.are.equal(0, code, err)
    -- LuaJIT's own default package.path / cpath, each template moved under
    -- DESTDIR: what plain `luajit -e 'require "sonde"'` would search
    local script = [[
      local stage = STAGE
      local function staged(p)
        local out = {}
        for t in p:gmatch("[^;]+") do
          if t:sub(1, 11) == "/usr/local/" then out[#out + 1] = stage .. t end
        end
        return table.concat(out, ";")
      end
      package.path, package.cpath = staged(package.path), staged(package.cpath)
      local sonde = require "sonde"
      print(package.searchpath("sonde", package.path))
      print(package.searchpath("sonde.core", package.cpath))
    ]]
    script = script:gsub("STAGE", string.format("%q", stage))
    local out, err2, code2 = lab.run("cd / && env -u LUA_PATH -u LUA_CPATH " .. preload
      .. "luajit -e " .. lab.shquote(script))
    assert.are.equal(0, code2, err2)
    assert.are.equal(stage .. "/usr/local/share/lua/5.1/sonde/init.lua\n"
      .. stage .. "/usr/local/lib/lua/5.1/sonde/core.so\n", out)
    local pc = lab.read_file(stage .. "/usr/local/lib/pkgconfig/sonde.pc")
    assert.truthy(pc:find("^prefix=/usr/local\n"), pc)
  end)

  it("the installed sonde finds its commands under PREFIX/share/sonde/scripts and runs them", function()
    local sonde = prefix .. "/bin/sonde"
    local out, err, code = lab.run("env -u SONDE_SCRIPTS " .. lab.cmdline{ sonde, "--version" })
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^sonde " .. version():gsub("%.", "%%.") .. " %(LuaJIT"), out)
    out, err, code = lab.run("env -u SONDE_SCRIPTS " .. lab.cmdline{ sonde, "list" })
    assert.are.equal(0, code, err)
    assert.truthy(out:find("\n  sweep ", 1, true), out)
    assert.truthy(out:find("\n  trace ", 1, true), out)
    out = lab.run("env -u SONDE_SCRIPTS COLUMNS=200 " .. lab.cmdline{ sonde, "help" })
    assert.truthy(out:gsub("\n", " "):find(prefix .. "/bin/../share/sonde/scripts", 1, true), out)
    out, err, code = l:exec("src", "env -u SONDE_SCRIPTS " .. lab.cmdline{ sonde, "sweep", "-q", "-w", "0.5",
      l.dst.v4, l.dst.v6 })
    assert.are.equal(0, code, err)
    assert.are.equal(2, select(2, out:gsub('"alive":true', "")))
  end)

  it("SETCAP=1 gives the installed sonde CAP_NET_RAW: raw sockets for an ordinary user", function()
    local _, err, code = make{ "install", "DESTDIR=" .. stage, "PREFIX=/usr/local", "SETCAP=1" }
    assert.are.equal(0, code, err)
    local staged = stage .. "/usr/local/bin/sonde"
    assert.truthy(lab.must({ "getcap", staged }):find("cap_net_raw=ep", 1, true))
    local as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups env -u SONDE_SCRIPTS "
    local out, err2, code2 = l:exec("src", as_nobody .. lab.cmdline{ staged, "sweep", "--privileged",
      "-q", "-w", "0.5", l.dst.v4 })
    assert.are.equal(0, code2, err2)
    assert.truthy(out:find('"alive":true', 1, true), out)
    -- without the capability, --privileged is refused
    out, err2, code2 = l:exec("src", as_nobody .. lab.cmdline{ prefix .. "/bin/sonde", "sweep",
      "--privileged", "-w", "0.5", l.dst.v4 })
    assert.are.equal(3, code2, out .. err2)
    assert.truthy((out .. err2):find("EPERM", 1, true), out .. err2)
  end)

  it("make uninstall removes what it installed, and nothing else", function()
    local keep = prefix .. "/share/sonde/scripts/my_own.lua"
    local f = assert(io.open(keep, "w"))
    f:write("return {}\n")
    f:close()
    lab.must({ "touch", prefix .. "/lib/other.so" })
    local _, err, code = make{ "uninstall", "PREFIX=" .. prefix }
    assert.are.equal(0, code, err)
    assert.are.same({ "lib/other.so", "share/sonde/scripts/my_own.lua" }, tree(prefix))
    _, err, code = make{ "uninstall", "DESTDIR=" .. stage, "PREFIX=/usr/local" }
    assert.are.equal(0, code, err)
    assert.are.same({}, tree(stage))
  end)
end)
