-- sonde.kit: the skeleton every bundled command that probes one target or
-- several is written on:
--
--   options -> targets -> a job per target -> records -> sink -> summary
--   -> exit status
--
-- The command gives what is its own (its options, the job that probes one
-- target and writes its records, the summary); the kit does the rest the
-- same way for every command: the targets (sonde.campaign.collect: one
-- given as such, or a list with --targets, --parallel, --shard, --seed,
-- --quiet), the sink (sonde.format: --format and -o, opened before
-- anything is sent), the engine, SIGINT/SIGTERM/SIGHUP/SIGQUIT (the run
-- stops, what was collected is written and committed, exit 128 + N), the
-- progress line, and the exit status (sonde.campaign's tally).
--
--   local kit = require "sonde.kit"
--   local run = kit.start(opts, ctx, {
--     cmd = "ping", what = "targets answered",   -- "sonde ping: 3 of 4 ..."
--     words = opts.target,                       -- the TARGET words
--     own = { text = true, json = true },        -- formats it writes itself
--     engine = { window = 1024 },                -- sonde.engine's options
--     on_signal = function(name) ... end,        -- stop what runs
--   })
--   -- run.tg (the targets), run.sink, run.eng, run.tally, run.signal (the
--   -- signal's name once one came), run.family (4, 6 or nil)
--   run:each{ one = function(name, addr, af) ... end, start = meta }
--   return run:finish(summary)  -- the footer's summary (a format module's)
--
-- A new command on an existing strategy is one file in scripts/: its
-- sonde.args spec, and a run(opts, ctx) that does the above.

local sonde = require "sonde"
local cli = require "sonde.cli"
local target = require "sonde.target"
local campaign = require "sonde.campaign"
local formats = require "sonde.format"

local M = {}

local Run = {}
Run.__index = Run

-- Targets, sink and engine for a command, in that order: a usage error
-- (a bad target, an unknown format) before any file is created, and -o
-- created before the engine (which may be refused: the sink is then
-- given up, FILE left as it was).
--   o: cmd, what (the tally's words), words (the TARGET words), as_list,
--      name (the words' name in messages: "HOST"), own (the set of formats
--      the command writes itself), engine (sonde.engine's options),
--      on_signal(name) (stop what runs; run.signal is set before),
--      signals (the signals that end the run; default all four)
-- -> the run.
function M.start(opts, ctx, o)
  local run = setmetatable({ opts = opts, ctx = ctx, cmd = o.cmd,
    family = opts.ipv4 and 4 or opts.ipv6 and 6 or nil }, Run)
  run.tg = campaign.collect(o.words, opts, ctx, o.cmd, o.as_list, o.name)
  run.sink = formats.sink{ format = opts.format, output = opts.output, stdout = ctx.stdout,
    own = o.own }
  local eng, err = sonde.engine(o.engine)
  if not eng then
    run.sink:abort()
    cli.runtime_error("%s", err)
  end
  run.eng = eng
  target.on_interrupt(eng, function(name)
    run.signal = name
    if o.on_signal then o.on_signal(name) end
  end, o.signals)
  run.tally = campaign.tally(o.cmd, o.what)
  return run
end

-- Is the run stopping (a signal came)?
function Run:stopped()
  return self.signal ~= nil
end

-- The loop: inside eng:run, o.one(name, addr, af) for the single target
-- or every target of the list (sonde.campaign.for_targets: at most
-- --parallel at once, with a progress line unless o.progress is false;
-- with several targets, sink:start(o.start) first). o.before() and
-- o.after(), if given, run inside eng:run before and after the targets;
-- o.teardown(), after eng:run, before the engine closes (on every way out).
-- An error inside gives the sink up (FILE left as it was) and goes on.
function Run:each(o)
  local sink, progress = self.sink, nil
  local ok, perr = pcall(self.eng.run, self.eng, function()
    if o.before then o.before() end
    progress = campaign.for_targets(self.eng, self.tg, self.ctx, {
      cmd = self.cmd, opts = self.opts, family = self.family, sink = sink, one = o.one,
      progress = o.progress,
      stopped = function() return self.signal ~= nil end,
      start = o.start and function() sink:start(o.start) end,
    })
    if o.after then o.after() end
  end)
  if progress then progress.clear() end
  if o.teardown then o.teardown() end
  self.eng:close()
  if not ok then
    sink:abort()
    error(perr, 0)
  end
end

-- The end: a format module's footer gets `summary` (nil: no footer), the
-- output is committed (-o FILE replaced), and the exit status is the
-- tally's (the signal's; 3 when every target stopped on a local error; 0
-- when every target answered; 1 otherwise), with "sonde CMD: K of N ..."
-- on standard error for several targets unless --quiet.
function Run:finish(summary)
  local sink = self.sink
  if sink.module and summary then sink:finish(nil, summary) end
  sink:flush()
  sink:close()
  return self.tally:status(self.ctx, self.signal, self.tg.list and not self.opts.quiet)
end

return M
