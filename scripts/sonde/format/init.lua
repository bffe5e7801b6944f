-- sonde.format: --format and -o for the commands that probe one target
-- (tcping, ping, mtr, mda): which formats a command offers, and the sink
-- its results go through. The formats themselves are the modules beside
-- this file (pure functions, examples/format_example.lua); the sink only
-- decides which of their functions gets what, and writes what they return
-- through sonde.output (-o FILE: a temporary file renamed over FILE at the
-- end, also when the run was interrupted; nothing, on an error).
--
--   local formats = require "sonde.format"
--   local NAMES = { "text", "json", "jsonl", "csv", "markdown" }
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
--   own        the names the command writes itself (its text, its JSON
--              document, mda's dot): sink:write(text) and sink:flush();
--              start, event, row and finish do nothing for them
--   jsonl      every event record as a line as it happens (a tcping
--              attempt, a ping probe, an mtr round), then the final
--              document as the last line (finish)
--   a user's   the same records as jsonl, through record(rec, meta); then
--   module     footer(summary, meta)
--   csv,       header(meta) (meta.columns), one row per attempt, probe,
--   markdown   hop or interface (sink:row), footer(summary, meta):
--              markdown writes summary.text under the table

local campaign = require "sonde.campaign"
local cli = require "sonde.cli"
local output = require "sonde.output"

local M = {}

-- The bundled format modules a command may offer besides its own.
M.MODULES = {
  jsonl = "sonde.format.jsonl",
  csv = "sonde.format.csv",
  markdown = "sonde.format.markdown",
}

-- The formats whose records are rows (meta.columns).
M.ROWS = { csv = true, markdown = true }

-- A check function for the --format option of sonde.args: one of `names`
-- (a list, in the order the message gives them) or the path of a Lua
-- format module (a value with a '/' or ending in .lua).
function M.check(names)
  local set = {}
  for _, n in ipairs(names) do set[n] = true end
  return campaign.format_check(set, table.concat(names, ", "))
end

local Sink = {}
Sink.__index = Sink

-- A sink for format `o.format`, written to `o.output` (nil or "-": o.stdout).
-- o.own: the set of format names the command writes itself. A format file
-- that cannot be loaded is a usage error, -o that cannot be created a
-- runtime error (both raised through sonde.cli, before anything is sent).
function M.sink(o)
  local name, form, rows = o.format, nil, false
  if not (o.own and o.own[name]) then
    local builtin = {}
    for k, v in pairs(M.MODULES) do
      if not (o.own and o.own[k]) then builtin[k] = v end
    end
    local err
    form, err = output.format(name, builtin)
    if not form then cli.usage_error("--format: %s", err) end
    rows = M.ROWS[name] == true
  end
  local out, oerr = output.open(o.output, { stdout = o.stdout })
  if not out then cli.runtime_error("-o: %s", oerr) end
  return setmetatable({ name = name, module = form, rows = rows, out = out }, Sink)
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
  self:flush()
end

-- A row, for csv and markdown; written at once.
function Sink:row(row)
  if not self.rows then return end
  self:write(call(self, self.module.record, row, self.meta))
  self:flush()
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
