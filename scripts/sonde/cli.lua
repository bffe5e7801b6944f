-- sonde.cli: the dispatcher behind the `sonde` executable.
--
--   sonde COMMAND [options] [arguments]   runs scripts/COMMAND.lua
--   sonde run FILE.lua [arguments]        runs a user's script
--   sonde list | help [COMMAND] | version | --version | --help
--
-- A command module returns { spec = <sonde.args spec>, run = function(opts,
-- ctx) ... return exit_code end }, where ctx = { name, argv, stdout, stderr,
-- scripts_dir }. Loading a command module must have no side effect: `list`
-- and `help` load every one of them to read its summary.
--
-- Results go to stdout, messages and errors to stderr.

local args = require "sonde.args"
local preopen = require "sonde.preopen"

local M = {}

M.VERSION = "unknown" -- the version is the engine's: sonde.core.version().sonde
M.EXIT = { OK = 0, NOT_REACHED = 1, USAGE = 2, RUNTIME = 3, INTERRUPTED = 130 }

local EXIT = M.EXIT
local concat, insert = table.concat, table.insert
local fmt = string.format
local unpack = unpack or table.unpack

local BUILTINS = { run = true, list = true, help = true, version = true }

local function message_of(msg, ...)
  if select("#", ...) > 0 then return fmt(msg, ...) end
  return tostring(msg)
end

-- Raises a usage error (exit 2) from a command: a bad target, a combination
-- of options the spec cannot express. Arguments as string.format.
function M.usage_error(msg, ...)
  error({ usage = true, message = message_of(msg, ...) }, 0)
end

-- Raises a runtime error (exit 3): privilege, resolution, I/O. The message
-- is printed without a traceback.
function M.runtime_error(msg, ...)
  error({ runtime = true, message = message_of(msg, ...) }, 0)
end

---------------------------------------------------------------------------
-- Where the commands are
---------------------------------------------------------------------------

local function parent_of_library(path)
  if not path then return nil end
  local dir = path:match("^(.*)/sonde/cli%.lua$")
  if dir then return dir == "" and "/" or dir end
  if path == "sonde/cli.lua" then return "." end
  return nil
end

-- The scripts directory: the explicit one, else $SONDE_SCRIPTS, else the
-- directory that holds this library's sonde/ directory.
function M.scripts_dir(explicit)
  if explicit and explicit ~= "" then return explicit end
  local env = os.getenv("SONDE_SCRIPTS")
  if env and env ~= "" then return env end
  local source = debug.getinfo(1, "S").source
  local dir = source:sub(1, 1) == "@" and parent_of_library(source:sub(2))
  if dir then return dir end
  if package.searchpath then
    dir = parent_of_library(package.searchpath("sonde.cli", package.path))
    if dir then return dir end
  end
  return "."
end

-- Names of the bundled commands in dir, sorted (none when dir cannot be
-- read).
local function command_names(dir)
  local names = {}
  for _, file in ipairs(require("sonde.core").listdir(dir) or {}) do
    local name = file:match("^([a-z][a-z0-9_%-]*)%.lua$")
    if name and not BUILTINS[name] then insert(names, name) end
  end
  return names
end

-- Loads command `name` from dir. Returns the module; or nil, the message,
-- and true when the command does not exist.
local function load_command(dir, name)
  if not name:match("^[a-z][a-z0-9_%-]*$") or BUILTINS[name] then
    return nil, fmt("unknown command '%s' (see 'sonde list')", name), true
  end
  local path = dir .. "/" .. name .. ".lua"
  local f = io.open(path, "r")
  if not f then
    return nil, fmt("unknown command '%s' (see 'sonde list')", name), true
  end
  f:close()
  local chunk, err = loadfile(path)
  if not chunk then return nil, "cannot load command: " .. err end
  local ok, mod = pcall(chunk, name)
  if not ok then return nil, "cannot load command: " .. tostring(mod) end
  if type(mod) ~= "table" or type(mod.spec) ~= "table" or type(mod.run) ~= "function" then
    return nil, fmt("%s does not return { spec = ..., run = function }", path)
  end
  if mod.spec.name == nil then mod.spec.name = name end
  return mod
end

---------------------------------------------------------------------------
-- Running a command or a script under the error policy
---------------------------------------------------------------------------

local THIS_FILE = debug.getinfo(1, "S").short_src

-- The traceback without the dispatcher's own frames below the script.
local function trim_traceback(tb)
  local out = {}
  for line in tb:gmatch("[^\n]+") do
    if line:find(THIS_FILE, 1, true) and line:match("^%s") then break end
    if line:match("^%s*%[C%]: in function 'xpcall'") then break end
    insert(out, line)
  end
  return concat(out, "\n")
end

-- LuaJIT raises "not enough memory" when an allocation fails (require
-- wraps it in "error loading module ..."): the environment's limit (ulimit
-- -v, a cgroup), not a bug in a script, so no traceback.
local function out_of_memory(msg)
  return msg:match("not enough memory%s*$") ~= nil
end

local function on_error(err)
  if type(err) == "table" and (err.usage or err.runtime) then return err end
  local msg = type(err) == "table" and err.message and tostring(err.message) or tostring(err)
  if out_of_memory(msg) then
    return { runtime = true,
             message = "ENOMEM: not enough memory (is the address-space limit, ulimit -v, too low?)" }
  end
  return { bug = true, message = msg, traceback = trim_traceback(debug.traceback(msg, 2)) }
end

local function prefixed(name, msg)
  local prefix = "sonde " .. name .. ": "
  if msg:sub(1, #prefix) == prefix then return msg end
  return prefix .. msg
end

local function to_exit_code(name, rc)
  if rc == nil or rc == true then return EXIT.OK end
  if rc == false then return EXIT.NOT_REACHED end
  if type(rc) == "number" and rc == math.floor(rc) and rc >= 0 and rc <= 255 then
    return rc
  end
  return nil, fmt("sonde %s: returned %s, which is not an exit code", name, tostring(rc))
end

local function usage_hint(ctx, name)
  ctx.stderr:write("Try 'sonde help ", name, "'.\n")
end

-- Calls fn() under xpcall and turns its outcome into an exit code.
local function guarded(ctx, name, fn)
  local ok, rc = xpcall(fn, on_error)
  if ok then
    local code, err = to_exit_code(name, rc)
    if code then return code end
    ctx.stderr:write(err, "\n")
    return EXIT.RUNTIME
  end
  local e = rc
  if e.usage then
    ctx.stderr:write(prefixed(name, e.message), "\n")
    usage_hint(ctx, name)
    return EXIT.USAGE
  end
  if e.runtime then
    ctx.stderr:write(prefixed(name, e.message), "\n")
    return EXIT.RUNTIME
  end
  ctx.stderr:write(prefixed(name, e.traceback), "\n")
  return EXIT.RUNTIME
end

-- Give up the privileges sonde was started with (sonde.preopen says
-- why only now). -> true, or false after reporting why not (exit 3).
local function drop_privileges(ctx, name)
  local ok, err = require("sonde.core").drop_privileges()
  if ok then return true end
  ctx.stderr:write(prefixed(name, err), "\n")
  return false
end

---------------------------------------------------------------------------
-- Built-in commands
---------------------------------------------------------------------------

local function version_line()
  local luajit = jit and jit.version or _VERSION
  local libuv = "libuv unavailable"
  local version = M.VERSION
  local ok, core = pcall(require, "sonde.core")
  if ok and type(core) == "table" and type(core.version) == "function" then
    local got, v = pcall(core.version)
    if got and type(v) == "table" then
      version = v.sonde and tostring(v.sonde) or version
      if v.luajit then
        luajit = tostring(v.luajit)
        if not luajit:match("^LuaJIT") then luajit = "LuaJIT " .. luajit end
      end
      if v.libuv then libuv = "libuv " .. tostring(v.libuv) end
    end
  end
  return fmt("sonde %s (%s, %s)", version, luajit, libuv)
end

local function cmd_version(ctx, rest)
  if rest[1] then
    ctx.stderr:write(fmt("sonde version: unexpected argument '%s'\n", rest[1]))
    return EXIT.USAGE
  end
  ctx.stdout:write(version_line(), "\n")
  return EXIT.OK
end

-- Rows { "  name", summary } for every bundled command; broken ones are
-- reported on stderr and make the result false.
local function command_rows(ctx)
  local rows, all_ok = {}, true
  for _, name in ipairs(command_names(ctx.scripts_dir)) do
    local mod, err = load_command(ctx.scripts_dir, name)
    if mod then
      insert(rows, { "  " .. name, mod.spec.summary or "" })
    else
      insert(rows, { "  " .. name, "(cannot be loaded)" })
      ctx.stderr:write(fmt("sonde: command '%s': %s\n", name, err))
      all_ok = false
    end
  end
  return rows, all_ok
end

local function cmd_list(ctx, rest)
  if rest[1] then
    ctx.stderr:write(fmt("sonde list: unexpected argument '%s'\n", rest[1]))
    return EXIT.USAGE
  end
  local rows, all_ok = command_rows(ctx)
  if #rows > 0 then ctx.stdout:write(args.table_rows(rows), "\n") end
  return all_ok and EXIT.OK or EXIT.RUNTIME
end

local BUILTIN_HELP = {
  run = [[
sonde run - run a Lua script with the sonde library

Usage: sonde run [--timeout SECONDS] FILE.lua [ARGS...]

The script gets ARGS as `...` and as the table `arg` (arg[0] is FILE.lua);
its globals stay in its own environment. If it returns a number, that is the
exit status; false means 1; anything else 0. An error ends it with status 3
and a traceback; sonde.cli's usage_error() ends it with status 2.

--timeout SECONDS ends a script that runs longer (a loop that never ends,
a wait for something that never comes): it fails with "script exceeded its
time limit" (status 3), or, if it runs no more Lua code to fail in, is
ended a second later with a message (status 3).
]],
  list = [[
sonde list - list the bundled commands with their summaries

Usage: sonde list
]],
  help = [[
sonde help - show general help, or the help of a command

Usage: sonde help [COMMAND]
]],
  version = [[
sonde version - print the versions of sonde, LuaJIT and libuv

Usage: sonde version
       sonde --version
]],
}

local function general_help(ctx)
  local out = {
    "sonde - probe networks with scriptable strategies",
    "",
    "Usage: sonde COMMAND [options] [arguments]",
    "       sonde run FILE.lua [arguments]",
    "       sonde list | help [COMMAND] | version",
    "",
  }
  local rows = command_rows(ctx)
  if #rows > 0 then
    insert(out, "Commands:")
    insert(out, args.table_rows(rows))
    insert(out, "")
  end
  insert(out, "Built in:")
  insert(out, args.table_rows({
    { "  run FILE.lua [ARGS]", "run a Lua script" },
    { "  list", "list the bundled commands" },
    { "  help [COMMAND]", "show this help, or the help of COMMAND" },
    { "  version, --version", "print the versions of sonde, LuaJIT and libuv" },
  }))
  insert(out, "")
  insert(out, args.wrap("Every command takes -h/--help. Results are written to standard "
    .. "output, messages and errors to standard error. Commands are read from "
    .. ctx.scripts_dir .. " (set SONDE_SCRIPTS to use another directory).", 78, "", ""))
  insert(out, "")
  insert(out, "Exit status:")
  insert(out, args.table_rows({
    { "  0", "done (for traces: the target was reached)" },
    { "  1", "done, but the target was not reached" },
    { "  2", "usage error" },
    { "  3", "runtime error (privilege, name resolution, I/O, script error)" },
    { "  130", "interrupted by SIGINT (129 SIGHUP, 131 SIGQUIT, 143 SIGTERM): what was collected is written first" },
  }))
  return concat(out, "\n") .. "\n"
end

local function cmd_help(ctx, rest)
  local name = rest[1]
  if not name then
    ctx.stdout:write(general_help(ctx))
    return EXIT.OK
  end
  if rest[2] then
    ctx.stderr:write(fmt("sonde help: unexpected argument '%s'\n", rest[2]))
    return EXIT.USAGE
  end
  if BUILTIN_HELP[name] then
    ctx.stdout:write(BUILTIN_HELP[name])
    return EXIT.OK
  end
  local mod, err, unknown = load_command(ctx.scripts_dir, name)
  if not mod then
    ctx.stderr:write("sonde: ", err, "\n")
    return unknown and EXIT.USAGE or EXIT.RUNTIME
  end
  return guarded(ctx, name, function()
    ctx.stdout:write(args.help(mod.spec))
    return EXIT.OK
  end)
end

local function cmd_run(ctx, rest)
  local timeout
  local opt = rest[1] and rest[1]:match("^%-%-timeout=?(.*)$")
  if opt then
    local value = opt ~= "" and opt or rest[2]
    local n = tonumber(value or "")
    if not n or n ~= math.floor(n) or n < 1 then
      ctx.stderr:write(fmt("sonde run: --timeout: invalid value '%s' (expected whole seconds, at least 1)\n",
        tostring(value)))
      return EXIT.USAGE
    end
    timeout = n
    rest = { unpack(rest, opt ~= "" and 2 or 3) }
  end
  local file = rest[1]
  if not file then
    ctx.stderr:write("sonde run: missing FILE.lua\n")
    usage_hint(ctx, "run")
    return EXIT.USAGE
  end
  if file == "-h" or file == "--help" then
    ctx.stdout:write(BUILTIN_HELP.run)
    return EXIT.OK
  end
  local chunk, err = preopen.loadfile(file)
  if not chunk then
    ctx.stderr:write("sonde run: ", err, "\n")
    return EXIT.RUNTIME
  end
  if not drop_privileges(ctx, "run") then return EXIT.RUNTIME end
  local script_args = { [0] = file }
  for i = 2, #rest do script_args[i - 1] = rest[i] end
  setfenv(chunk, setmetatable({ arg = script_args }, { __index = _G }))
  if timeout then require("sonde.core").deadline(timeout) end
  return guarded(ctx, "run", function()
    return chunk(unpack(script_args, 1, #script_args))
  end)
end

local function cmd_script(ctx, name, rest)
  local mod, err, unknown = load_command(ctx.scripts_dir, name)
  if not mod then
    ctx.stderr:write(unknown and "sonde: " or ("sonde " .. name .. ": "), err, "\n")
    return unknown and EXIT.USAGE or EXIT.RUNTIME
  end
  ctx.name = name
  local opts, perr
  local code = guarded(ctx, name, function()
    opts, perr = args.parse(mod.spec, rest)
    return EXIT.OK
  end)
  if code ~= EXIT.OK then return code end
  if not opts then
    ctx.stderr:write(perr, "\n")
    if not perr:find("'sonde help " .. name .. "'", 1, true) then usage_hint(ctx, name) end
    return EXIT.USAGE
  end
  if opts.help then
    ctx.stdout:write(args.help(mod.spec))
    return EXIT.OK
  end
  preopen.prepare(opts)
  -- a command's own privileged step (watch: a --listen port below 1024)
  if mod.prepare then mod.prepare(opts) end
  if not drop_privileges(ctx, name) then return EXIT.RUNTIME end
  return guarded(ctx, name, function() return mod.run(opts, ctx) end)
end

---------------------------------------------------------------------------
-- Entry point
---------------------------------------------------------------------------

local function context(options)
  if type(options) == "string" then options = { scripts_dir = options } end
  options = options or {}
  return {
    stdout = options.stdout or io.stdout,
    stderr = options.stderr or io.stderr,
    scripts_dir = M.scripts_dir(options.scripts_dir),
  }
end

local function dispatch(ctx, argv)
  local first = argv[1]
  local rest = { unpack(argv, 2, #argv) }
  if first == nil then
    ctx.stderr:write(general_help(ctx))
    return EXIT.USAGE
  end
  if first == "--version" or first == "version" then return cmd_version(ctx, rest) end
  if first == "-h" or first == "--help" or first == "help" then return cmd_help(ctx, rest) end
  if first == "list" then return cmd_list(ctx, rest) end
  if first == "run" then return cmd_run(ctx, rest) end
  if first:sub(1, 1) == "-" then
    ctx.stderr:write(fmt("sonde: unknown option '%s' (see 'sonde help')\n", first))
    return EXIT.USAGE
  end
  return cmd_script(ctx, first, rest)
end

-- Runs the sonde command line argv (the arguments after the program name)
-- and returns the exit status. `options` is optional: a scripts directory,
-- or a table { scripts_dir =, stdout =, stderr = } (anything with :write).
-- Never raises.
function M.main(argv, options)
  local ctx = context(options)
  ctx.argv = argv or {}
  local ok, code = xpcall(function() return dispatch(ctx, ctx.argv) end, debug.traceback)
  if ok then return code end
  pcall(ctx.stderr.write, ctx.stderr, "sonde: internal error: ", tostring(code), "\n")
  return EXIT.RUNTIME
end

return M
