-- The OS services of sonde.core (pid, isatty, listdir, the terminal reader
-- e:tty), which let the bundled scripts run in a Lua state without FFI and
-- without starting a shell; and a check that no bundled script reaches for
-- either again.

local helpers = require "helpers"
local cjson = require "cjson"
local core = require "sonde.core"

local ROOT = helpers.root()
local PTY = ROOT .. "/spec/support/in_pty.py"

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- A Lua script for a child luajit that finds sonde.core and the library of
-- this tree. -> its path; the caller removes it.
local function child_script(body)
  local path = os.tmpname()
  write_file(path, ("package.cpath = %q .. package.cpath\npackage.path = %q .. package.path\n")
    :format(helpers.build() .. "/lua/?.so;", ROOT .. "/scripts/?.lua;" .. ROOT .. "/scripts/?/init.lua;")
    .. body)
  return path
end

-- Runs the shell command cmd in a new pseudo-terminal (spec/support/in_pty.py)
-- and types key after delay seconds. -> the decoded report: out, code,
-- timeout, echo, icanon.
local function in_pty(delay, key, cmd)
  local out, err, code = helpers.run{ "/usr/bin/python3", PTY, tostring(delay), key, "/bin/sh", "-c", cmd }
  assert.are.equal(0, code, err)
  return cjson.decode(out)
end

-- The text between the lines "<name>{" and "}<name>" of a pty's output
-- (which ends its lines with "\r\n").
local function section(out, name)
  return (out:gsub("\r\n", "\n"):match("\n?" .. name .. "{\n(.-)}" .. name .. "\n"))
end

-- cmd between two `stty -a`: -> the report, the terminal's settings before
-- and after.
local function with_stty(delay, key, cmd)
  local r = in_pty(delay, key, "echo 'before{'; stty -a; echo '}before'; " .. cmd
    .. "; echo \"code=$?\"; echo 'after{'; stty -a; echo '}after'")
  local before, after = section(r.out, "before"), section(r.out, "after")
  assert.truthy(before, r.out)
  assert.truthy(after, r.out)
  return r, before, after, tonumber(r.out:match("code=(%d+)"))
end

describe("sonde.core.pid", function()
  it("is this process's id, as the kernel numbers it", function()
    local f = assert(io.open("/proc/self/stat"))
    local stat = f:read("*l")
    f:close()
    assert.are.equal(tonumber(stat:match("^(%d+)")), core.pid())
  end)
end)

describe("sonde.core.isatty", function()
  it("answers for standard input, output and error only: another number is an error", function()
    for fd = 0, 2 do assert.is_boolean(core.isatty(fd)) end
    for _, fd in ipairs{ 3, -1, 255, 2 ^ 40 } do
      local ok, err = pcall(core.isatty, fd)
      assert.is_false(ok)
      assert.matches("0, 1 or 2", err)
    end
    assert.is_false(pcall(core.isatty))
  end)

  it("is true on a terminal, false on a pipe or /dev/null", function()
    local script = child_script([[
local core = require "sonde.core"
io.stderr:write("tty=", tostring(core.isatty(0)), ",", tostring(core.isatty(1)), ",",
  tostring(core.isatty(2)), "\n")
]])
    local r = in_pty(9, "x", helpers.luajit() .. " " .. helpers.shquote(script))
    local out, _, code = helpers.run(helpers.luajit() .. " " .. helpers.shquote(script) .. " 2>&1 | cat")
    os.remove(script)
    assert.matches("tty=true,true,true", r.out)
    assert.are.equal(0, code)
    assert.matches("tty=false,false,false", out)
  end)
end)

describe("sonde.core.listdir", function()
  local dir

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(helpers.run("mkdir " .. helpers.shquote(dir)) ~= nil)
    for _, name in ipairs{ "b.lua", "a.lua", ".hidden", "C", "10", "with space" } do
      write_file(dir .. "/" .. name, "")
    end
  end)

  after_each(function()
    for _, name in ipairs{ "b.lua", "a.lua", ".hidden", "C", "10", "with space" } do
      os.remove(dir .. "/" .. name)
    end
    os.remove(dir)
  end)

  it("lists every name but . and .., sorted bytewise", function()
    assert.are.same({ ".hidden", "10", "C", "a.lua", "b.lua", "with space" }, core.listdir(dir))
  end)

  it("fails the sonde.core way: nil, \"ENAME: message: path\", \"ENAME\"", function()
    local t, msg, name = core.listdir(dir .. "/none")
    assert.is_nil(t)
    assert.are.equal("ENOENT", name)
    assert.are.equal("ENOENT: no such file or directory: " .. dir .. "/none", msg)
    t, msg, name = core.listdir(dir .. "/a.lua")
    assert.is_nil(t)
    assert.are.equal("ENOTDIR", name)
    assert.matches("^ENOTDIR: ", msg)
    assert.is_false(pcall(core.listdir, nil))
  end)

  it("leaves no descriptor open, listed or failed", function()
    local before = helpers.fd_count()
    for _ = 1, 50 do
      assert.is_table(core.listdir(dir))
      assert.is_nil(core.listdir(dir .. "/none"))
    end
    assert.are.equal(before, helpers.fd_count())
  end)
end)

describe("engine:tty", function()
  it("without a terminal on standard input: nil, ENOTTY; the engine still closes clean", function()
    local script = child_script([[
local sonde = require "sonde"
local e = assert(sonde.engine())
local r, msg, name = e:tty{ on_key = print }
print(tostring(r), msg, name)
print("unknown field", pcall(e.tty, e, { on_kye = print }))
print("not a function", pcall(e.tty, e, { on_key = 1 }))
print("close", e:close())
]])
    local out, err, code = helpers.run(helpers.luajit() .. " " .. helpers.shquote(script))
    os.remove(script)
    assert.are.equal(0, code, err)
    assert.matches("nil\tENOTTY: inappropriate ioctl for device\tENOTTY\n", out, 1, true)
    assert.matches("unknown field\tfalse\t[^\n]*tty: unknown field 'on_kye'\n", out)
    assert.matches("not a function\tfalse\t[^\n]*tty: field 'on_key' must be a function", out)
    assert.matches("close\ttrue\n", out, 1, true)
  end)

  it("delivers key presses to a callback in raw mode, and close() gives the terminal back once", function()
    local script = child_script([[
local sonde = require "sonde"
local e = assert(sonde.engine())
local r, token
r = assert(e:tty{ on_key = function(keys)
  print("key=" .. keys)
  print("close1", r:close())
  e:cancel_timer(token)
end })
print("size", r:winsize())
print("reader", tostring(r))
token = e:after(8, function() print("no key") end)
assert(e:run(function() return true end))
print("close2", r:close())
print("reader", tostring(r))
print("winsize after", r:winsize())
print("engine", e:close())
]])
    local r, before, after, code = with_stty(1.0, "x", helpers.luajit() .. " " .. helpers.shquote(script))
    os.remove(script)
    assert.is_false(r.timeout, r.out)
    assert.are.equal(0, code, r.out)
    local out = r.out:gsub("\r\n", "\n")
    assert.matches("\nkey=x\nclose1\ttrue\n", out, 1, true)
    -- raw mode: the terminal did not echo the key (one x: the line above)
    local run = out:match("}before\n(.*)code=")
    assert.are.equal(1, select(2, run:gsub("x", "")), run)
    assert.matches("\nsize\t%d+\t%d+\n", out)
    assert.matches("reader\tsonde.tty (open)\n", out, 1, true)
    assert.matches("close2\tnil\ttty already closed\n", out, 1, true)
    assert.matches("reader\tsonde.tty (closed)\n", out, 1, true)
    assert.matches("winsize after\tnil\tEBADF: bad file descriptor\tEBADF\n", out, 1, true)
    assert.matches("engine\ttrue\n", out, 1, true)
    assert.are.equal(before, after)
  end)

  it("leaves no descriptor behind: libuv's reopened terminal is closed with the reader", function()
    local script = child_script([[
local sonde = require "sonde"
local core = require "sonde.core"
local function fds() return #core.listdir("/proc/self/fd") end
local function cycle(close_reader)
  local e = assert(sonde.engine())
  local r = assert(e:tty{ on_key = print })
  if close_reader then assert(r:close()) end
  assert(e:close())
end
cycle(true)   -- libuv's process-wide signal pipe opens once, here
local before = fds()
for i = 1, 20 do cycle(i % 2 == 0) end
print("fds", before, fds())
]])
    local r = in_pty(9, "x", helpers.luajit() .. " " .. helpers.shquote(script))
    os.remove(script)
    assert.is_false(r.timeout, r.out)
    local before, after = r.out:match("fds\t(%d+)\t(%d+)")
    assert.truthy(before, r.out)
    assert.are.equal(before, after)
  end)

  it("calls on_resize with the new size when the window changes (SIGWINCH)", function()
    local script = child_script([[
local sonde = require "sonde"
local e = assert(sonde.engine())
local r, token
r = assert(e:tty{ on_resize = function(cols, rows)
  print("resized", cols, rows)
  print("winsize", r:winsize())
  e:cancel_timer(token)
  r:close()
end })
token = e:after(5, function() print("no SIGWINCH") end)
-- the terminal's size changes: the kernel sends SIGWINCH to its foreground
-- processes, this one included
assert(io.popen("stty cols 101 rows 31 </dev/tty")):close()
assert(e:run(function() return true end))
print("engine", e:close())
]])
    local r = in_pty(9, "x", "stty cols 80 rows 24; " .. helpers.luajit() .. " " .. helpers.shquote(script))
    os.remove(script)
    assert.is_false(r.timeout, r.out)
    local out = r.out:gsub("\r\n", "\n")
    assert.matches("resized\t101\t31\nwinsize\t101\t31\n", out, 1, true)
    assert.matches("engine\ttrue\n", out, 1, true)
  end)

  it("is closed by the engine's close, by garbage collection, and at exit", function()
    local script = child_script([[
local sonde = require "sonde"
local function mode()
  local p = io.popen("stty -g")
  local m = p:read("*a")
  p:close()
  return m
end
local saved = mode()
local e = assert(sonde.engine())
-- the engine's close: the reader is closed with it, once
local r = assert(e:tty{})
print("engine", e:close())
print("after engine", tostring(r), r:close())
print("mode back", mode() == saved)
-- a reader nobody holds: its finalizer
e = assert(sonde.engine())
;(function() assert(e:tty{ on_key = print }) end)()
collectgarbage()
collectgarbage()
print("mode back after gc", mode() == saved)
print("engine", e:close())
-- exit with a reader open and nothing closed: uv_tty_reset_mode at exit
e = assert(sonde.engine())
r = assert(e:tty{})
print("raw", mode() ~= saved)
io.stdout:flush()
os.exit(7)
]])
    -- os.exit with an engine open on purpose: no leak report under ASan
    local r, before, after, code = with_stty(9, "x", "ASAN_OPTIONS=detect_leaks=0 "
      .. helpers.luajit() .. " " .. helpers.shquote(script))
    os.remove(script)
    assert.is_false(r.timeout, r.out)
    assert.are.equal(7, code, r.out)
    local out = r.out:gsub("\r\n", "\n")
    assert.matches("\nengine\ttrue\nafter engine\tsonde.tty (closed)\tnil\ttty already closed\n", out, 1, true)
    assert.matches("\nmode back\ttrue\n", out, 1, true)
    assert.matches("\nmode back after gc\ttrue\nengine\ttrue\n", out, 1, true)
    assert.are.equal(before, after)
    assert.is_true(r.echo)
    assert.is_true(r.icanon)
  end)

  it("gives the terminal back when a callback fails with the reader open", function()
    local script = child_script([[
local sonde = require "sonde"
local e = assert(sonde.engine())
local r = assert(e:tty{ on_key = function() error("boom in on_key") end })
e:after(8, function() end)
print(e.core:run())
]])
    local r, before, after, code = with_stty(1.0, "x", helpers.luajit() .. " " .. helpers.shquote(script))
    os.remove(script)
    assert.is_false(r.timeout, r.out)
    assert.are.equal(0, code, r.out)
    assert.matches("boom in on_key", r.out)
    assert.are.equal(before, after)
  end)
end)

describe("the bundled scripts", function()
  -- What would reach past sonde.core: LuaJIT's FFI, a shell, the process's
  -- own /proc entries.
  local FORBIDDEN = { 'require "ffi"', "require 'ffi'", 'require("ffi")', "require('ffi')",
    "require%s*%(?%s*[\"']ffi[\"']", "io.popen", "os.execute", "/proc/self" }

  local function files_under(dir, list)
    list = list or {}
    for _, name in ipairs(assert(core.listdir(dir))) do
      local path = dir .. "/" .. name
      if core.listdir(path) then
        files_under(path, list)
      else
        list[#list + 1] = path
      end
    end
    return list
  end

  it("use neither LuaJIT's FFI, nor a shell, nor /proc/self", function()
    local files = files_under(ROOT .. "/scripts")
    assert.is_true(#files > 10)
    local found = {}
    for _, path in ipairs(files) do
      local f = assert(io.open(path))
      local text = f:read("*a")
      f:close()
      for i, pat in ipairs(FORBIDDEN) do
        -- the one pattern with magic characters is a Lua pattern, the others plain
        local plain = i ~= 5
        if text:find(pat, 1, plain) then
          found[#found + 1] = path:sub(#ROOT + 2) .. ": " .. pat
        end
      end
    end
    assert.are.same({}, found)
  end)
end)
