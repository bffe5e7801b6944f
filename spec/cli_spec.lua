-- sonde.cli: the dispatcher behind the `sonde` executable, tested with fake
-- command modules in a temporary scripts directory.

local cli = require "sonde.cli"

-- A stream that remembers what is written to it.
local function buffer()
  local b = { parts = {} }
  function b:write(...)
    for i = 1, select("#", ...) do self.parts[#self.parts + 1] = tostring(select(i, ...)) end
    return self
  end
  function b:text() return table.concat(self.parts) end
  return b
end

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function make_dir()
  local path = os.tmpname()
  os.remove(path)
  local status = os.execute("mkdir '" .. path .. "'")
  assert(status == 0 or status == true, "cannot create " .. path)
  return path
end

-- Removes dir and the files this spec wrote in it (no recursive rm).
local function remove_dir(dir, files)
  for _, name in ipairs(files) do os.remove(dir .. "/" .. name) end
  assert(os.remove(dir))
end

local DEMO = [[
local cli = require "sonde.cli"
return {
  spec = {
    summary = "a command for the specs",
    options = {
      { "-m", "--max", arg = "N", type = "int", min = 1, max = 9, default = 3, help = "how many" },
      { "-p", "--proto", arg = "P", choices = { "udp", "tcp" }, default = "udp", help = "protocol" },
    },
    positionals = { { name = "TARGET", required = true, help = "where to" } },
    examples = { "sonde demo -m 2 198.18.8.2" },
  },
  run = function(opts, ctx)
    local t = opts.target
    if t == "late-usage" then cli.usage_error("bad target '%s'", t) end
    if t == "late-runtime" then cli.runtime_error("cannot resolve '%s'", t) end
    if t == "prefixed" then cli.runtime_error("sonde demo: already prefixed") end
    if t == "bug" then local none = nil; return none.field end
    if t == "raw-table" then error({ message = "table without a kind" }) end
    if t == "nil" then return nil end
    if t == "false" then return false end
    if t == "text" then return "yes" end
    if t == "huge" then return 300 end
    if t == "ctx" then
      ctx.stdout:write(ctx.name, " ", ctx.scripts_dir, " ", table.concat(ctx.argv, ","), "\n")
      return 0
    end
    ctx.stdout:write("target=", t, " max=", opts.max, "\n")
    return t == "unreachable" and 1 or 0
  end,
}
]]

local QUIET = [[
return { spec = { summary = "does nothing", options = {} }, run = function() return 0 end }
]]

local BADSPEC = [[
return { spec = { summary = "has a bad spec", options = { { "-n" } } }, run = function() return 0 end }
]]

describe("sonde.cli", function()
  local dir, out, err
  local files = { "demo.lua", "quiet.lua", "badspec.lua", "Upper.lua", "notes.txt" }

  local function main(...)
    out, err = buffer(), buffer()
    return cli.main({ ... }, { scripts_dir = dir, stdout = out, stderr = err })
  end

  setup(function()
    dir = make_dir()
    write_file(dir .. "/demo.lua", DEMO)
    write_file(dir .. "/quiet.lua", QUIET)
    write_file(dir .. "/badspec.lua", BADSPEC)
    write_file(dir .. "/Upper.lua", QUIET)
    write_file(dir .. "/notes.txt", "not a command")
  end)

  teardown(function() remove_dir(dir, files) end)

  it("creates no global when loaded and used", function()
    local before = {}
    for k in pairs(_G) do before[k] = true end
    package.loaded["sonde.cli"] = nil
    local fresh = require "sonde.cli"
    fresh.main({ "demo", "x" }, { scripts_dir = dir, stdout = buffer(), stderr = buffer() })
    fresh.main({ "help" }, { scripts_dir = dir, stdout = buffer(), stderr = buffer() })
    for k in pairs(_G) do
      assert.is_true(before[k], "new global '" .. tostring(k) .. "'")
    end
  end)

  it("exposes the exit codes", function()
    assert.same({ OK = 0, NOT_REACHED = 1, USAGE = 2, RUNTIME = 3, INTERRUPTED = 130 }, cli.EXIT)
  end)

  describe("a command", function()
    it("runs with its parsed options and returns its exit code", function()
      assert.equal(0, main("demo", "-m", "5", "198.18.8.2"))
      assert.equal("target=198.18.8.2 max=5\n", out:text())
      assert.equal("", err:text())
    end)

    it("returns 1 when it says the target was not reached", function()
      assert.equal(1, main("demo", "unreachable"))
    end)

    it("gets a context with its name, the scripts directory, argv and the streams", function()
      assert.equal(0, main("demo", "ctx"))
      assert.equal("demo " .. dir .. " demo,ctx\n", out:text())
    end)

    it("that returns nothing has succeeded (0); false means not reached (1)", function()
      assert.equal(0, main("demo", "nil"))
      assert.equal(1, main("demo", "false"))
    end)

    it("that returns something other than an exit code is a runtime error (3)", function()
      assert.equal(3, main("demo", "text"))
      assert.equal("sonde demo: returned yes, which is not an exit code\n", err:text())
      assert.equal(3, main("demo", "huge"))
    end)
  end)

  describe("a usage error in a command's arguments", function()
    it("prints the parser's message and a hint on stderr, and exits 2", function()
      assert.equal(2, main("demo", "-m", "abc", "x"))
      assert.equal("sonde demo: -m: invalid value 'abc' (expected an integer from 1 to 9)\n"
        .. "Try 'sonde help demo'.\n", err:text())
      assert.equal("", out:text())
    end)

    it("names a choice that is not allowed", function()
      assert.equal(2, main("demo", "-p", "sctp", "x"))
      assert.truthy(err:text():find("sonde demo: -p: invalid value 'sctp' (expected one of: udp, tcp)", 1, true))
    end)

    it("names a missing value", function()
      assert.equal(2, main("demo", "x", "--max"))
      assert.truthy(err:text():find("sonde demo: option --max needs a value (N)\n", 1, true))
    end)

    it("names a missing positional", function()
      assert.equal(2, main("demo"))
      assert.equal("sonde demo: missing TARGET\nTry 'sonde help demo'.\n", err:text())
    end)

    it("names an unknown option once, without repeating the hint", function()
      assert.equal(2, main("demo", "--bogus", "x"))
      assert.equal("sonde demo: unknown option '--bogus' (see 'sonde help demo')\n", err:text())
    end)
  end)

  describe("an error raised by a command", function()
    it("from usage_error() exits 2 with its message and the hint", function()
      assert.equal(2, main("demo", "late-usage"))
      assert.equal("sonde demo: bad target 'late-usage'\nTry 'sonde help demo'.\n", err:text())
      assert.equal("", out:text())
    end)

    it("from runtime_error() exits 3 with its message and no traceback", function()
      assert.equal(3, main("demo", "late-runtime"))
      assert.equal("sonde demo: cannot resolve 'late-runtime'\n", err:text())
    end)

    it("is not prefixed twice", function()
      assert.equal(3, main("demo", "prefixed"))
      assert.equal("sonde demo: already prefixed\n", err:text())
    end)

    it("that is a script bug exits 3 with file:line and a traceback", function()
      assert.equal(3, main("demo", "bug"))
      local text = err:text()
      assert.truthy(text:find("^sonde demo: [^\n]*demo%.lua:%d+: attempt to index"), text)
      assert.truthy(text:find("stack traceback:", 1, true), text)
      assert.truthy(text:find("demo%.lua:%d+: in function"), text)
      assert.equal("", out:text())
    end)

    it("leaves the dispatcher's own frames out of the traceback", function()
      main("demo", "bug")
      assert.is_nil(err:text():find("sonde/cli.lua", 1, true), err:text())
      assert.is_nil(err:text():find("xpcall", 1, true), err:text())
    end)

    it("that is some other table uses its message, with a traceback", function()
      assert.equal(3, main("demo", "raw-table"))
      assert.truthy(err:text():find("^sonde demo: table without a kind\nstack traceback:"), err:text())
    end)

    it("is raised by the helpers as tables a command can recognise", function()
      local ok, e = pcall(cli.usage_error, "bad %s", "x")
      assert.is_false(ok)
      assert.same({ usage = true, message = "bad x" }, e)
      ok, e = pcall(cli.runtime_error, "100% broken")
      assert.same({ runtime = true, message = "100% broken" }, e)
    end)
  end)

  describe("a command with a broken spec", function()
    it("is a runtime error (3) naming the spec problem", function()
      assert.equal(3, main("badspec"))
      assert.truthy(err:text():find("^sonde badspec: args spec 'badspec': option %-n must have"), err:text())
    end)
  end)

  describe("an unknown command", function()
    it("exits 2 pointing to 'sonde list'", function()
      assert.equal(2, main("nope"))
      assert.equal("sonde: unknown command 'nope' (see 'sonde list')\n", err:text())
    end)

    it("includes names that could escape the scripts directory", function()
      assert.equal(2, main("../demo"))
      assert.equal("sonde: unknown command '../demo' (see 'sonde list')\n", err:text())
      assert.equal(2, main("Upper"))
    end)

    it("includes an unknown global option", function()
      assert.equal(2, main("--bogus"))
      assert.equal("sonde: unknown option '--bogus' (see 'sonde help')\n", err:text())
    end)
  end)

  describe("a command that cannot be loaded", function()
    local bad_dir
    setup(function()
      bad_dir = make_dir()
      write_file(bad_dir .. "/syntax.lua", "return {\n")
      write_file(bad_dir .. "/shape.lua", "return 42\n")
      write_file(bad_dir .. "/good.lua", QUIET)
    end)
    teardown(function() remove_dir(bad_dir, { "syntax.lua", "shape.lua", "good.lua" }) end)

    local function bad_main(...)
      out, err = buffer(), buffer()
      return cli.main({ ... }, { scripts_dir = bad_dir, stdout = out, stderr = err })
    end

    it("is a runtime error (3) with the Lua message", function()
      assert.equal(3, bad_main("syntax"))
      assert.truthy(err:text():find("^sonde syntax: cannot load command: .*syntax%.lua:2:"), err:text())
    end)

    it("is a runtime error (3) when it does not return a spec and a run function", function()
      assert.equal(3, bad_main("shape"))
      assert.truthy(err:text():find("does not return { spec = ..., run = function }", 1, true))
    end)

    it("is listed as such, the reason on stderr, and 'list' exits 3", function()
      assert.equal(3, bad_main("list"))
      assert.equal("  good    does nothing\n  shape   (cannot be loaded)\n  syntax  (cannot be loaded)\n",
        out:text())
      assert.truthy(err:text():find("sonde: command 'syntax': cannot load command:", 1, true))
    end)
  end)

  describe("sonde list", function()
    it("prints every command with its summary, sorted, on stdout", function()
      assert.equal(0, main("list"))
      assert.equal("  badspec  has a bad spec\n"
        .. "  demo     a command for the specs\n"
        .. "  quiet    does nothing\n", out:text())
      assert.equal("", err:text())
    end)

    it("reads the directory itself: no shell, whatever the directory's name", function()
      local odd = make_dir() .. " it's $(odd)"
      assert(os.rename(odd:sub(1, -#" it's $(odd)" - 1), odd))
      write_file(odd .. "/quiet.lua", QUIET)
      local popen, execute = io.popen, os.execute
      io.popen = function() error("io.popen called") end
      os.execute = function() error("os.execute called") end
      out, err = buffer(), buffer()
      local ok, code = pcall(cli.main, { "list" }, { scripts_dir = odd, stdout = out, stderr = err })
      io.popen, os.execute = popen, execute
      remove_dir(odd, { "quiet.lua" })
      assert.is_true(ok, code)
      assert.equal(0, code)
      assert.equal("  quiet  does nothing\n", out:text())
    end)

    it("takes no argument", function()
      assert.equal(2, main("list", "x"))
      assert.equal("sonde list: unexpected argument 'x'\n", err:text())
    end)
  end)

  describe("sonde help", function()
    it("prints the general help on stdout and exits 0", function()
      assert.equal(0, main("help"))
      local text = out:text()
      assert.truthy(text:find("Usage: sonde COMMAND [options] [arguments]", 1, true))
      assert.truthy(text:find("sonde run FILE.lua", 1, true))
      assert.truthy(text:find("  demo     a command for the specs", 1, true))
      assert.truthy(text:find("Exit status:", 1, true))
      for _, line in ipairs({ "  0    done", "  1    done, but the target was not reached",
                              "  2    usage error", "  3    runtime error", "  130  interrupted" }) do
        assert.truthy(text:find(line, 1, true), line)
      end
      assert.equal("", err:text())
    end)

    it("is also given by --help and -h", function()
      assert.equal(0, main("--help"))
      local help = out:text()
      assert.equal(0, main("-h"))
      assert.equal(help, out:text())
    end)

    it("with no command at all goes to stderr and exits 2", function()
      assert.equal(2, main())
      assert.equal("", out:text())
      assert.truthy(err:text():find("Usage: sonde COMMAND", 1, true))
    end)

    it("of a command prints that command's help", function()
      assert.equal(0, main("help", "demo"))
      local text = out:text()
      assert.truthy(text:find("^sonde demo %- a command for the specs\n"))
      assert.truthy(text:find("-m, --max N", 1, true))
      assert.truthy(text:find("(default: 3)", 1, true))
      assert.truthy(text:find("one of: udp, tcp", 1, true))
      assert.truthy(text:find("sonde demo -m 2 198.18.8.2", 1, true))
    end)

    it("of a command is the same as the command's -h and --help", function()
      main("help", "demo")
      local help = out:text()
      assert.equal(0, main("demo", "-h"))
      assert.equal(help, out:text())
      assert.equal(0, main("demo", "x", "--help"))
      assert.equal(help, out:text())
    end)

    it("of a built-in command describes it", function()
      assert.equal(0, main("help", "run"))
      assert.truthy(out:text():find("Usage: sonde run [--timeout SECONDS] FILE.lua", 1, true))
    end)

    it("of an unknown command exits 2", function()
      assert.equal(2, main("help", "nope"))
      assert.equal("sonde: unknown command 'nope' (see 'sonde list')\n", err:text())
    end)
  end)

  describe("sonde --version", function()
    local saved_loaded, saved_preload

    before_each(function()
      saved_loaded, saved_preload = package.loaded["sonde.core"], package.preload["sonde.core"]
    end)

    after_each(function()
      package.loaded["sonde.core"], package.preload["sonde.core"] = saved_loaded, saved_preload
    end)

    it("prints the versions reported by sonde.core", function()
      package.loaded["sonde.core"] = {
        version = function() return { sonde = "0.1.0", luajit = "LuaJIT 2.1.1700008891", libuv = "1.44.2" } end,
      }
      assert.equal(0, main("--version"))
      assert.equal("sonde 0.1.0 (LuaJIT 2.1.1700008891, libuv 1.44.2)\n", out:text())
    end)

    it("is the same as 'sonde version'", function()
      package.loaded["sonde.core"] = {
        version = function() return { sonde = "0.1.0", luajit = "2.1.0", libuv = "1.44.2" } end,
      }
      assert.equal(0, main("version"))
      assert.equal("sonde 0.1.0 (LuaJIT 2.1.0, libuv 1.44.2)\n", out:text())
    end)

    it("falls back to what Lua knows when sonde.core cannot be loaded", function()
      package.loaded["sonde.core"] = nil
      package.preload["sonde.core"] = function() error("no engine here") end
      assert.equal(0, main("--version"))
      local lua = jit and jit.version or _VERSION
      assert.equal("sonde " .. cli.VERSION .. " (" .. lua .. ", libuv unavailable)\n", out:text())
      assert.equal("", err:text())
    end)

    it("falls back when sonde.core has no version()", function()
      package.loaded["sonde.core"] = {}
      assert.equal(0, main("--version"))
      assert.truthy(out:text():find("libuv unavailable", 1, true))
    end)
  end)

  describe("sonde run FILE.lua", function()
    local script_files = {}

    local function script(name, text)
      local path = dir .. "/" .. name
      write_file(path, text)
      script_files[#script_files + 1] = path
      return path
    end

    teardown(function()
      for _, path in ipairs(script_files) do os.remove(path) end
    end)

    it("passes the arguments as ... and as arg, with arg[0] the file", function()
      local path = script("args.lua", [[
        local a, b = ...
        if a == "x" and b == "y" and select("#", ...) == 2
          and arg[0]:match("args%.lua$") and arg[1] == "x" and arg[2] == "y" then
          return 0
        end
        return 9
      ]])
      assert.equal(0, main("run", path, "x", "y"))
    end)

    it("returns the script's numeric return value as the exit code", function()
      assert.equal(7, main("run", script("seven.lua", "return 7")))
    end)

    it("exits 0 when the script returns nothing", function()
      assert.equal(0, main("run", script("nothing.lua", "local x = 1")))
    end)

    it("keeps the script's globals out of the global table", function()
      assert.equal(0, main("run", script("globals.lua", "leaked_by_script = true; return 0")))
      assert.is_nil(rawget(_G, "leaked_by_script"))
    end)

    it("lets the script require sonde modules", function()
      assert.equal(0, main("run", script("req.lua", [[
        return require("sonde.args").parse({ name = "s", options = {} }, {}) and 0 or 1
      ]])))
    end)

    it("turns an error into exit 3 with the message and a traceback", function()
      local path = script("boom.lua", "local function f()\n  error('boom')\nend\nf()\n")
      assert.equal(3, main("run", path))
      local text = err:text()
      assert.truthy(text:find("^sonde run: [^\n]*boom%.lua:2: boom\nstack traceback:"), text)
      assert.truthy(text:find("boom%.lua:4: in main chunk") or text:find("boom%.lua:4:"), text)
    end)

    it("turns usage_error() into exit 2", function()
      local path = script("usage.lua", "require('sonde.cli').usage_error('need a host')")
      assert.equal(2, main("run", path))
      assert.equal("sonde run: need a host\nTry 'sonde help run'.\n", err:text())
    end)

    it("reports a syntax error with exit 3", function()
      assert.equal(3, main("run", script("syntax.lua", "return {")))
      assert.truthy(err:text():find("^sonde run: [^\n]*syntax%.lua:1:"), err:text())
    end)

    it("reports a missing file with exit 3", function()
      assert.equal(3, main("run", dir .. "/absent.lua"))
      assert.truthy(err:text():find("^sonde run: cannot open"), err:text())
    end)

    it("needs a file: exit 2", function()
      assert.equal(2, main("run"))
      assert.equal("sonde run: missing FILE.lua\nTry 'sonde help run'.\n", err:text())
    end)
  end)

  describe("the scripts directory", function()
    local ffi = require "ffi"
    pcall(ffi.cdef, [[
      int setenv(const char *name, const char *value, int overwrite);
      int unsetenv(const char *name);
    ]])

    it("is by default the directory that holds sonde/cli.lua", function()
      local found = cli.scripts_dir()
      if os.getenv("SONDE_SCRIPTS") then return end
      local f = io.open(found .. "/sonde/cli.lua")
      assert.truthy(f, found)
      f:close()
    end)

    it("is taken from SONDE_SCRIPTS when set", function()
      local old = os.getenv("SONDE_SCRIPTS")
      ffi.C.setenv("SONDE_SCRIPTS", dir, 1)
      out, err = buffer(), buffer()
      local code = cli.main({ "demo", "x" }, { stdout = out, stderr = err })
      if old then ffi.C.setenv("SONDE_SCRIPTS", old, 1) else ffi.C.unsetenv("SONDE_SCRIPTS") end
      assert.equal(0, code)
      assert.equal("target=x max=3\n", out:text())
    end)

    it("may be given as a plain string", function()
      assert.equal(dir, cli.scripts_dir(dir))
    end)
  end)
end)
