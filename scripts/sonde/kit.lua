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
-- A strategy that probes every target of the list in one loop of its own
-- (a sweep: one probe per address, a sender thread) gives the loop instead
-- of a job per target: run:each{ all = function(progress) ... end }, inside
-- eng:run, with the progress line to show; its counts go to run.tally
-- (tally:sum).
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
--      signals (the signals that end the run; default all four),
--      check(tg) (a usage check on the targets, before any file is created),
--      missing (the message when no target is given, sonde.campaign.collect),
--      modules and flush (sonde.format.sink's), tally (sonde.campaign.tally's
--      options), say(run) (write the end's line on stderr? default: with a
--      list of targets, unless --quiet), closed (a closed standard output:
--      nil goes on as usual, "quiet" says nothing more on stderr, a number
--      is the exit status), prefer (4 or 6: the family a host name with
--      both resolves to without -4/-6, sonde.target.pick; nil: the
--      resolver's first)
-- -> the run.
function M.start(opts, ctx, o)
  require("sonde.header").source_family(opts, o.words) -- --source fixes the family
  local run = setmetatable({ opts = opts, ctx = ctx, cmd = o.cmd, o = o,
    family = opts.ipv4 and 4 or opts.ipv6 and 6 or nil }, Run)
  run.tg = campaign.collect(o.words, opts, ctx, o.cmd, o.as_list, o.name, o.missing)
  if o.check then o.check(run.tg) end
  run.sink = formats.sink{ format = opts.format, output = opts.output, stdout = ctx.stdout,
    own = o.own, modules = o.modules, flush = o.flush }
  local eopts = o.engine
  if opts.tcp_mode and opts.tcp_mode ~= "auto" then
    eopts = {}
    for k, v in pairs(o.engine or {}) do eopts[k] = v end
    eopts.tcp_mode = opts.tcp_mode
  end
  local eng, err = sonde.engine(eopts)
  -- --tcp-mode syn without raw sockets: said once, before any probe
  if eng and opts.tcp_mode == "syn" and (opts.protocol == nil or opts.protocol == "tcp") then
    local mode, merr = eng:tcp_mode(run.family or 4)
    if not mode then
      eng:close()
      eng, err = nil, "--tcp-mode syn: " .. merr
    end
  end
  if not eng then
    run.sink:abort()
    cli.runtime_error("%s", err)
  end
  run.eng = eng
  target.on_interrupt(eng, function(name)
    run.signal = name
    if o.on_signal then o.on_signal(name) end
  end, o.signals)
  run.tally = campaign.tally(o.cmd, o.what, o.tally)
  return run
end

-- Is the run stopping (a signal came)?
function Run:stopped()
  return self.signal ~= nil
end

-- The loop: inside eng:run, o.one(name, addr, af) for the single target
-- or every target of the list (sonde.campaign.for_targets: at most
-- --parallel at once, with a progress line unless o.progress is false;
-- with several targets, sink:start(o.start) first; o.on_total(total),
-- once the list's size is known). o.all(progress) instead: the command's
-- own loop over the whole list. o.before() and o.after(), if given, run
-- inside eng:run before and after the targets; o.teardown(), after
-- eng:run, before the engine closes (on every way out). An error inside
-- gives the sink up (FILE left as it was) and goes on.
function Run:each(o)
  local sink, progress = self.sink, nil
  local ok, perr = pcall(self.eng.run, self.eng, function()
    if o.before then o.before() end
    -- a source or interface refused ends the run before any probe
    local header = require "sonde.header"
    if o.all then
      if self.opts.source then header.preflight(self.eng, self.opts.source, self.opts) end
      progress = campaign.progress(self.ctx, self.opts.quiet, self.opts.output)
      sink.before = progress.before_output
      o.all(progress)
    else
      local one = o.one
      progress = campaign.for_targets(self.eng, self.tg, self.ctx, {
        cmd = self.cmd, opts = self.opts, family = self.family, prefer = self.o.prefer,
        sink = sink, one = function(name, addr, af)
          header.preflight(self.eng, addr, self.opts)
          return one(name, addr, af)
        end,
        progress = o.progress, on_total = o.on_total,
        stopped = function() return self.signal ~= nil end,
        start = o.start and function() sink:start(o.start) end,
      })
    end
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
  local sink, o = self.sink, self.o
  if sink.module and summary then sink:finish(nil, summary) end
  sink:flush()
  local closed = not sink:close()
  if closed and type(o.closed) == "number" then return o.closed end
  local say
  if o.say then say = o.say(self) else say = self.tg.list and not self.opts.quiet end
  return self.tally:status(self.ctx, self.signal, say, closed and o.closed == "quiet")
end

return M
