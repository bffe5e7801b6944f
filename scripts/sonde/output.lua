-- sonde.output: where a command's results go, and which format writes them.
--
--   local output = require "sonde.output"
--   local fmt = assert(output.format("csv", { jsonl = "sonde.format.jsonl",
--                                             csv = "sonde.format.csv" }))
--   local out = assert(output.open(opts.output))   -- nil or "-": stdout
--   out:write(fmt.header(meta))
--   ...
--   assert(out:commit())                           -- or out:abort()
--
-- -o FILE is written atomically: the text goes to a new file next to FILE
-- (".FILE.sonde-<pid>-<n>.tmp" in the same directory, created exclusively,
-- so never through a link someone left there), which replaces FILE in one
-- rename() at commit. A reader sees the old FILE or the whole new one,
-- never a part; a run that fails (abort) leaves FILE as it was and removes
-- its temporary file. A FILE that is not a regular file (/dev/null, a
-- FIFO, /dev/stdout) is written as it is.
--
-- The file is created before sonde gives up its privileges (sonde.preopen),
-- so FILE may be wherever the user who ran the command may write, root's
-- home included, and it belongs to that user (under sudo: the user who ran
-- sudo).

local M = {}

-- The -o option of every command that writes results (a sonde.args entry).
M.OPTION = { "-o", "--output", arg = "FILE", type = "string",
  help = "write the results to FILE (atomically: a temporary file renamed over FILE at the end) instead of standard output" }

local preopen = require "sonde.preopen"

local fmt = string.format

---------------------------------------------------------------------------
-- Formats
---------------------------------------------------------------------------

-- Is `name` a path to a format file rather than a format's name?
function M.is_path(name)
  return name:find("/", 1, true) ~= nil or name:match("%.lua$") ~= nil
end

-- A format module is a table with record(rec, meta) -> text and, if it
-- wants them, header(meta) -> text and footer(summary, meta) -> text
-- (examples/format_example.lua). -> the module, or nil and why not.
function M.check_format(mod, what)
  if type(mod) ~= "table" then
    return nil, fmt("%s does not return a table (got %s)", what, type(mod))
  end
  if type(mod.record) ~= "function" then
    return nil, fmt("%s has no record(rec, meta) function", what)
  end
  for _, k in ipairs{ "header", "footer" } do
    if mod[k] ~= nil and type(mod[k]) ~= "function" then
      return nil, fmt("%s: %s must be a function (got %s)", what, k, type(mod[k]))
    end
  end
  return mod
end

-- The format `name`: one of `builtin` (name -> module name or module), or
-- a path to a Lua file that returns a format module. -> the module, or nil
-- and a message that names the value.
function M.format(name, builtin)
  if type(name) ~= "string" or name == "" then
    return nil, "no format given"
  end
  if M.is_path(name) then
    local chunk, err = preopen.loadfile(name)
    if not chunk then
      if err:find("No such file", 1, true) or err:find("cannot open", 1, true) then
        return nil, fmt("cannot read format file %s (%s)", name, err)
      end
      return nil, fmt("cannot load format file: %s", err)
    end
    local ok, mod = pcall(chunk)
    if not ok then return nil, fmt("format file %s failed: %s", name, tostring(mod)) end
    return M.check_format(mod, "format file " .. name)
  end
  local b = builtin and builtin[name]
  if b == nil then
    local names = {}
    for k in pairs(builtin or {}) do names[#names + 1] = k end
    table.sort(names)
    return nil, fmt("unknown format '%s' (expected %s, or a path to a Lua format file such as ./my.lua)",
      name, table.concat(names, ", "))
  end
  if type(b) == "string" then b = require(b) end
  return M.check_format(b, "format " .. name)
end

---------------------------------------------------------------------------
-- Writers
---------------------------------------------------------------------------

local Writer = {}
Writer.__index = Writer

-- dir of a path ("out.csv" -> ".").
local function dir_of(path)
  local dir = path:match("^(.*)/[^/]*$")
  if not dir then return "." end
  return dir == "" and "/" or dir
end

-- A writer for path (nil or "-": o.stdout, default io.stdout, which commit
-- flushes and never closes). -> writer, or nil and a message.
function M.open(path, o)
  o = o or {}
  if path == nil or path == "-" then
    return setmetatable({ f = o.stdout or io.stdout }, Writer)
  end
  local base = path:match("([^/]*)$")
  if base == "" or base == "." or base == ".." then
    return nil, fmt("%s: not a file name", path)
  end
  local out, err, _, where = preopen.output(path)
  if not out then
    if where == "dir" then
      return nil, fmt("cannot create a file in %s: %s", dir_of(path), err)
    end
    return nil, fmt("cannot open %s: %s", path, err)
  end
  return setmetatable({ f = out, out = true, path = path }, Writer)
end

-- Write text (nil or "" writes nothing). -> true, or nil and the message.
function Writer:write(text)
  if text == nil or text == "" then return true end
  if self.failed then return nil, self.failed end
  local ok, err = self.f:write(text)
  if not ok then
    self.failed = tostring(err)
    return nil, self.failed
  end
  return true
end

-- Flush what is buffered (stdout: so that a reader sees it now).
-- -> true, or nil and the message.
function Writer:flush()
  if self.failed then return nil, self.failed end
  local ok, err = self.f:flush()
  if not ok then
    self.failed = tostring(err)
    return nil, self.failed
  end
  return true
end

-- The file the writer replaces, or nil for stdout.
function Writer:target() return self.path end

-- Finish: stdout is flushed; a file is flushed, closed and renamed over
-- its path. -> true, or nil and the message (the temporary file is then
-- removed and the old file left as it was).
function Writer:commit()
  if self.done then return nil, "output already finished" end
  self.done = true
  if not self.out then return self:flush() end
  if self.failed then
    self.f:abort()
    return nil, fmt("cannot write %s: %s", self.path, self.failed)
  end
  local ok, err = self.f:commit()
  if not ok then return nil, fmt("cannot replace %s: %s", self.path, err) end
  return true
end

-- The end of a command's output: commit what was written (-o FILE replaces
-- FILE), or give up after a write error. A closed standard output (nobody
-- reads: `sonde ... | head`) -> false, quietly; any other failure raises
-- the CLI's runtime error and leaves FILE as it was. -> true.
function Writer:close()
  local function closed_pipe(err)
    return self.path == nil and tostring(err):find("Broken pipe", 1, true) ~= nil
  end
  local cli = require "sonde.cli"
  if self.failed then
    self:abort()
    if closed_pipe(self.failed) then return false end
    cli.runtime_error("%s: %s", self.path or "standard output", self.failed)
  end
  local ok, err = self:commit()
  if not ok then
    if closed_pipe(err) then return false end
    cli.runtime_error("-o: %s", err)
  end
  return true
end

-- Give up: a file's temporary copy is closed and removed (the old file
-- stays); stdout is left alone. Idempotent.
function Writer:abort()
  if self.done then return end
  self.done = true
  if self.out then self.f:abort() end
end

return M
