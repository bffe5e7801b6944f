-- sonde.format: the one registry of output formats, and the sink every
-- bundled command writes its results through. The formats themselves are
-- the modules beside this file (pure functions, examples/format_example.lua);
-- the sink only decides which of their functions gets what, and writes what
-- they return through sonde.output (-o FILE: a temporary file renamed over
-- FILE at the end, also when the run was interrupted; nothing, on an error).
--
-- A format is either one of a command's own (its text, its JSON document,
-- a graph: what only that command can write, declared by the command) or
-- one of M.BUNDLED, which every command offers: a new bundled format is
-- its module beside this file and one line in M.BUNDLED.
--
--   local formats = require "sonde.format"
--   local NAMES = formats.names{ "text", "json" }   -- own, then the bundled
--   option: { nil, "--format", arg = "FORMAT", type = "string",
--             default = "text", check = formats.check(NAMES) }
--   local sink = formats.sink{ format = opts.format, output = opts.output,
--     stdout = ctx.stdout, own = { text = true, json = true } }
--   -- inside eng:run, once the target is known:
--   sink:start(meta)            -- a module's header(meta)
--   sink:event(rec)             -- each event record as it happens
--   sink:row(row)               -- each row (meta.columns) as it happens
--   sink:finish(doc, summary)   -- the final document, then the footer
--   -- after it:
--   sink:close()                -- commit (or abort on a write error)
--
-- Which records a format gets:
--   own        the names the command writes itself (sink:write(text) and
--              sink:flush()); start, event, row and finish do nothing for
--              them, unless the command gives the module (o.modules: a
--              name -> module, e.g. sweep's text), which then gets the
--              records as jsonl does
--   jsonl      every event record as a line as it happens (a tcping
--              attempt, a ping probe, an mtr round), then the final
--              document as the last line (finish)
--   a user's   the same records as jsonl, through record(rec, meta); then
--   module     footer(summary, meta)
--   csv,       header(meta) (meta.columns), one row per attempt, probe,
--   markdown   hop or interface (sink:row), footer(summary, meta):
--              markdown writes summary.text under the table

local cli = require "sonde.cli"
local output = require "sonde.output"

local M = {}

-- The bundled formats every command offers besides its own, in the order
-- messages and help give them. rows: its records are rows (meta.columns),
-- which the command passes to sink:row; else the command's event records
-- and documents, passed to sink:event.
M.BUNDLED = {
  { name = "jsonl", module = "sonde.format.jsonl" },
  { name = "csv", module = "sonde.format.csv", rows = true },
  { name = "markdown", module = "sonde.format.markdown", rows = true },
}

local BY_NAME = {}
for _, f in ipairs(M.BUNDLED) do BY_NAME[f.name] = f end

-- The names a command's --format offers: `own` (a list of its own
-- formats), with the bundled ones where "*" stands (after `own` when it
-- has none), in that order.
function M.names(own)
  local names, placed = {}, false
  local function bundled()
    for _, f in ipairs(M.BUNDLED) do names[#names + 1] = f.name end
    placed = true
  end
  for _, n in ipairs(own) do
    if n == "*" then bundled() else names[#names + 1] = n end
  end
  if not placed then bundled() end
  return names
end

-- A check function for the --format option of sonde.args: one of `names`
-- (a list, in the order the message gives them) or the path of a Lua
-- format module (a value with a '/' or ending in .lua).
function M.check(names)
  local set = {}
  for _, n in ipairs(names) do set[n] = true end
  local expected = table.concat(names, ", ")
  return function(v)
    if set[v] or output.is_path(v) then return v end
    return nil, "expected " .. expected .. " or the path of a Lua format module"
  end
end

local Sink = {}
Sink.__index = Sink

-- A sink for format `o.format`, written to `o.output` (nil or "-": o.stdout).
-- o.own: the set of format names the command writes itself; o.modules:
-- name -> module (or module name) of the command's own formats that are
-- modules. o.flush = false: event and row leave flushing to the command
-- (many records a second: a campaign, a sweep). A format file that cannot
-- be loaded is a usage error, -o that cannot be created a runtime error
-- (both raised through sonde.cli, before anything is sent).
function M.sink(o)
  local name, form, rows = o.format, nil, false
  local own = o.own or {}
  if not own[name] or (o.modules and o.modules[name]) then
    local builtin = {}
    for _, f in ipairs(M.BUNDLED) do
      if not own[f.name] then builtin[f.name] = f.module end
    end
    for k, v in pairs(o.modules or {}) do builtin[k] = v end
    local err
    form, err = output.format(name, builtin)
    if not form then cli.usage_error("--format: %s", err) end
    rows = not own[name] and BY_NAME[name] ~= nil and BY_NAME[name].rows == true
  end
  local out, oerr = output.open(o.output, { stdout = o.stdout })
  if not out then cli.runtime_error("-o: %s", oerr) end
  return setmetatable({ name = name, module = form, rows = rows, out = out,
    flush_each = o.flush ~= false }, Sink)
end

-- Is nothing gone wrong writing so far? (A command stops probing when it
-- has: nobody reads the rest.)
function Sink:ok()
  return self.write_error == nil
end

-- Does the format take event records (jsonl, a user's module)?
function Sink:events()
  return self.module ~= nil and not self.rows
end

-- Write text (nil or "" writes nothing); the first error is kept.
-- sink.before, if set, is called first (a progress line erases itself).
function Sink:write(text)
  if self.write_error or text == nil or text == "" then return end
  if self.before then self.before() end
  local ok, err = self.out:write(text)
  if not ok then self.write_error = err end
end

-- Flush what is written (so that a reader of standard output sees it now).
function Sink:flush()
  if self.write_error then return end
  local ok, err = self.out:flush()
  if not ok then self.write_error = err end
end

-- fn(...) of the format module. An error in it (a user's module may have
-- one) ends the run: FILE is left as it was, and the error goes on, with
-- its traceback, to the command's caller (exit status 3).
local function call(self, fn, ...)
  local ok, res = xpcall(fn, debug.traceback, ...)
  if not ok then
    self.out:abort()
    error(res, 0)
  end
  return res
end

-- A module's header(meta); meta is kept for the records and the footer.
function Sink:start(meta)
  self.meta = meta
  if self.module and self.module.header then self:write(call(self, self.module.header, meta)) end
end

-- An event record, for jsonl and a user's module; written at once.
function Sink:event(rec)
  if not self:events() then return end
  self:write(call(self, self.module.record, rec, self.meta))
  if self.flush_each then self:flush() end
end

-- A row, for csv and markdown; written at once.
function Sink:row(row)
  if not self.rows then return end
  self:write(call(self, self.module.record, row, self.meta))
  if self.flush_each then self:flush() end
end

-- A record for whichever module the format is (rows or events), with no
-- more than the module's record() and the write: the path of a run that
-- writes a record per probe (a sweep). An error in the module goes on as
-- it is, to the command's caller (exit status 3).
function Sink:record(rec)
  self:write(self.module.record(rec, self.meta))
end

-- The end: the final document as a record (jsonl, a user's module), then
-- the module's footer(summary, meta).
function Sink:finish(doc, summary)
  if not self.module then return end
  if not self.rows and doc then self:write(call(self, self.module.record, doc, self.meta)) end
  if self.module.footer then
    self:write(call(self, self.module.footer, summary or {}, self.meta))
  end
end

-- Commit what was written: -o FILE replaces FILE now. A closed standard
-- output (nobody reads) ends quietly (-> false); any other write error is
-- a runtime error, and FILE is left as it was. -> true.
function Sink:close()
  return self.out:close()
end

-- Give up (the run failed): FILE is left as it was, its temporary file
-- removed.
function Sink:abort()
  self.out:abort()
end

return M
