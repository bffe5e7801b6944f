-- sonde.campaign: what commands that probe many targets share: reading
-- target files (bad lines reported with their number and skipped),
-- resolving host names concurrently, and the progress line on a terminal.

local cli = require "sonde.cli"

local M = {}

local fmt = string.format

M.MAX_BAD_LINES = 20 -- reported one by one; the rest are counted

-- An option check (sonde.args) for --shard K/N: -> { K, N } or nil, why.
function M.check_shard(v)
  local k, n = require("sonde.targets").parse_shard(v)
  if not k then return nil, n end
  return { k, n }
end

-- Is standard output (1) or standard error (2) a terminal?
function M.isatty(fd)
  return require("sonde.core").isatty(fd)
end

function M.duration_text(s)
  if s >= 3600 then return fmt("%dh%02dm", s / 3600, (s % 3600) / 60) end
  if s >= 60 then return fmt("%dm%02ds", s / 60, s % 60) end
  return fmt("%ds", math.ceil(s))
end

-- Add the entries of every file in `files` ("-": standard input) to a
-- sonde.targets list. A line that is not an entry is reported on stderr
-- with its file and line number, and skipped; an unreadable file is a
-- runtime error. `cmd` names the command in messages.
function M.read_target_files(list, files, ctx, cmd)
  local bad_total = 0
  for _, path in ipairs(files) do
    local lines, source
    if path == "-" then
      lines, source = io.stdin:lines(), "stdin"
    else
      local err
      lines, err = require("sonde.preopen").lines(path)
      if not lines then
        cli.runtime_error("--targets %s: cannot read: %s", path, tostring(err))
      end
      source = path
    end
    local ok, bad = pcall(list.add_lines, list, lines, source)
    if not ok then cli.runtime_error("--targets %s: %s", path, tostring(bad)) end
    for _, b in ipairs(bad) do
      bad_total = bad_total + 1
      if bad_total <= M.MAX_BAD_LINES then
        ctx.stderr:write(fmt("sonde %s: %s:%d: skipped '%s': %s\n", cmd, b.source, b.line,
          require("sonde.targets").escape(b.text:match("^%s*(.-)%s*$")), b.reason))
      end
    end
  end
  if bad_total > M.MAX_BAD_LINES then
    ctx.stderr:write(fmt("sonde %s: ... and %d more bad lines, skipped\n", cmd,
      bad_total - M.MAX_BAD_LINES))
  end
end

-- Resolve every name of the list at once (at most 64 lookups in flight),
-- inside eng:run(), and add the first address of each (of `family`, 4 or
-- 6, if given; else of `prefer` if it has one: sonde.target.pick). A name
-- that does not resolve is reported and skipped.
-- -> { [address] = the name it came from }.
function M.resolve_names(eng, list, ctx, cmd, family, prefer)
  local names, named = list:names(), {}
  if #names == 0 then return named end
  local addrs, nexti = {}, 0
  local left = math.min(64, #names)
  local all = eng:event()
  for _ = 1, left do
    eng:spawn(function()
      while nexti < #names do
        nexti = nexti + 1
        local i = nexti
        local got, err = eng:resolve(names[i], family)
        if got and got[1] then
          addrs[i] = require("sonde.target").pick(got, family, prefer) or got[1]
        else
          ctx.stderr:write(fmt("sonde %s: skipped '%s': cannot resolve: %s\n", cmd, names[i],
            tostring(err or "no address")))
        end
      end
      left = left - 1
      if left == 0 then all.fire() end
    end)
  end
  all.wait()
  for i = 1, #names do
    if addrs[i] then
      assert(list:add(addrs[i]))
      named[addrs[i]] = named[addrs[i]] or names[i]
    end
  end
  return named
end

-- The options of a command that takes several targets, after its own:
-- --targets, --parallel (o.parallel: its default; o.what: what runs at
-- once, "pings"), --shard, --seed and --quiet (with -q when o.q).
-- The most addresses a run probes unless --max-targets says more: a /16.
M.MAX_TARGETS = 65536

function M.options(own, o)
  local all = {}
  for _, opt in ipairs(own) do all[#all + 1] = opt end
  all[#all + 1] = { nil, "--targets", arg = "FILE", type = "string", list = true,
    help = "read targets from FILE, one per line (- for standard input; # comments and blank lines ignored; a bad line is reported with its number and skipped)" }
  all[#all + 1] = { nil, "--parallel", arg = "N", type = "int", min = 1, max = 4096,
    default = o.parallel, help = "with several targets: " .. o.what .. " at once" }
  all[#all + 1] = { nil, "--shard", arg = "K/N", type = "string", check = M.check_shard,
    help = "probe only shard K (from 0) of N of the targets: a seeded permutation splits them so that N processes with the same targets and --seed cover each exactly once (in a Kubernetes Indexed Job, K is JOB_COMPLETION_INDEX)" }
  all[#all + 1] = { nil, "--seed", arg = "S", type = "int", min = 0, max = 4294967295, default = 0,
    help = "the seed of the permutation (--shard) and of the targets' order" }
  all[#all + 1] = { nil, "--max-targets", arg = "N", type = "int", min = 1, max = 4294967296,
    default = M.MAX_TARGETS,
    help = "refuse to start when the targets (after --shard) are more than N addresses, and say how many they are: a /8 or 0.0.0.0/0 given by mistake does not start" }
  all[#all + 1] = { o.q and "-q" or nil, "--quiet", flag = true,
    help = "no progress line and no summary on standard error" }
  return all
end

-- The targets of a command that takes several: the words given as TARGET
-- and the --targets files. -> { single = word } when one target was given
-- as such (a name or an address: no file, no prefix, no --shard), which
-- the command probes as it always did; else { list = a sonde.targets list }
-- (bad lines of files reported and skipped; a bad word is a usage error).
-- as_list: always the list. name: the words' name in messages ("TARGET").
-- missing: the message when there is no target at all (default "missing
-- NAME (or --targets FILE)"); with as_list it comes after the words and the
-- files were read, as a sweep says it.
function M.collect(words, opts, ctx, cmd, as_list, name, missing)
  name = name or "TARGET"
  local none = #words == 0 and #opts.targets == 0
  if none and not missing then
    cli.usage_error("missing %s (or --targets FILE)", name)
  end
  local targets = require "sonde.targets"
  if not as_list and #words == 1 and #opts.targets == 0 and not opts.shard
      and not words[1]:find("/", 1, true) then
    local w = words[1]
    -- a link-local address with its zone is probed as given (the zone
    -- names the link); anything else must be an address or a host name
    local _, zone = targets.split_zone(w)
    if zone then
      -- the zone must name an interface of this host (or its index)
      local why = targets.zone_problem(zone)
      if why then
        cli.usage_error("%s: invalid value '%s' (%s)", name, targets.escape(w), why)
      end
    else
      local ok, why = targets.parse(w)
      if not ok then cli.usage_error("%s: invalid value '%s' (%s)", name, targets.escape(w), why) end
    end
    return { single = w }
  end
  local list = targets.list()
  for _, t in ipairs(words) do
    local ok, why = list:add(t)
    if not ok then cli.usage_error("%s: invalid value '%s' (%s)", name, targets.escape(t), why) end
  end
  M.read_target_files(list, opts.targets, ctx, cmd)
  if none then cli.usage_error("%s", missing) end
  return { list = list }
end

-- The order of a list's targets, inside eng:run(): its names resolved
-- (M.resolve_names), the list finished (no target left is a usage error),
-- then its seeded permutation, cut to shard K of N (shard: { K, N } or nil);
-- more than max_targets addresses (if given) is a usage error that says
-- how many they are.
-- -> iter (the next address, or nil), total (of the shard), n (of the
-- list), named ({ [address] = the name it came from }).
function M.order(eng, list, ctx, cmd, family, seed, shard, max_targets, prefer)
  local named = M.resolve_names(eng, list, ctx, cmd, family, prefer)
  local n, lerr = list:finish()
  if not n then cli.usage_error("%s", lerr) end
  if n == 0 then cli.usage_error("no targets left to probe") end
  local iter, total = list:iter{ seed = seed, shard = shard and shard[1] or 0,
    shards = shard and shard[2] or 1 }
  if max_targets and total > max_targets then
    cli.usage_error("the targets are %.0f addresses%s, more than --max-targets %.0f: "
      .. "give --max-targets %.0f to probe them all", total,
      shard and fmt(" (shard %d/%d)", shard[1], shard[2]) or "", max_targets, total)
  end
  return iter, total, n, named
end

-- Runs o.job(addr, name) for every target of `list`, each in its own
-- coroutine, at most o.parallel at once, inside eng:run(); returns when
-- every job has returned. Names are resolved first (a name: the one the
-- address came from; nil for addresses and prefixes). No job starts once
-- o.stopped() is true. With o.progress (M.progress), a progress line
-- counts the jobs done.
--   o: cmd ("trace"), family (4, 6 or nil), prefer (sonde.target.pick), seed,
--      shard ({ K, N } or nil),
--      parallel, job, stopped, progress, on_total(total) (before any job)
-- -> the number of targets (of the shard).
function M.each(eng, list, ctx, o)
  local iter, total, _, named = M.order(eng, list, ctx, o.cmd, o.family, o.seed, o.shard,
    o.max_targets, o.prefer)
  if o.on_total then o.on_total(total) end
  local started, running, done, all = eng:now(), 0, 0, eng:event()
  local tick -- the progress timer's token, cancelled at the end
  local function ticker()
    tick = nil
    if running == 0 then return end
    local elapsed = eng:now() - started
    o.progress.show(fmt("sonde %s: %s", o.cmd, M.rate_text(done, total, elapsed)), elapsed)
    tick = eng:after(0.5, ticker)
  end
  local start_next
  function start_next()
    local addr = not (o.stopped and o.stopped()) and iter() or nil
    if not addr then
      if running == 0 then all.fire() end
      return
    end
    running = running + 1
    eng:spawn(function()
      o.job(addr, named[addr])
      running = running - 1
      done = done + 1
      start_next()
    end)
  end
  for _ = 1, math.min(o.parallel, total) do start_next() end
  if o.progress then tick = eng:after(0.5, ticker) end
  if running > 0 then all.wait() end
  -- Done: the next tick would keep the loop up to half a second longer.
  if tick then eng:cancel_timer(tick) end
  return total
end

-- The progress line: shown on a terminal (standard error) for runs longer
-- than two seconds, unless quiet. Results written to the same terminal
-- first erase it (p:clear()). show(text, elapsed) redraws it.
function M.progress(ctx, quiet, to_file)
  local terminal = not quiet and ctx.stderr == io.stderr and M.isatty(2)
  local p = {
    terminal = terminal,
    -- results on the same terminal: erase the line before writing them
    shared = terminal and not to_file and ctx.stdout == io.stdout and M.isatty(1),
    showing = false,
  }
  function p.clear()
    if p.showing then
      ctx.stderr:write("\r\27[K")
      p.showing = false
    end
  end
  function p.show(text, elapsed)
    if p.terminal and elapsed >= 2 then
      ctx.stderr:write("\r\27[K", text)
      p.showing = true
    end
  end
  function p.before_output()
    if p.shared then p.clear() end
  end
  return p
end

-- The loop of a command that takes one target or several (M.collect's
-- answer, tg), inside eng:run(): o.one(name, addr, af) for the single
-- target (resolved here: a name that does not resolve is a runtime error),
-- or, after o.start() if given, for every target of the list through
-- M.each (--parallel, --seed, --shard and --quiet of o.opts), with a
-- progress line unless o.progress is false; results written through
-- o.sink erase it first. No target starts once o.stopped() is true (the
-- sink's write failures stop it too). o.on_total(total), if given, once
-- the list's names are resolved, before the first target (M.each).
--   o: cmd, opts, family, prefer (sonde.target.pick), sink, one, start,
--      on_total, stopped, progress
-- -> the progress line (to clear() when the run is over), or nil.
function M.for_targets(eng, tg, ctx, o)
  if tg.single then
    local addr, af = require("sonde.target").resolve(eng, tg.single, o.family, o.prefer)
    o.one(tg.single, addr, af)
    return nil
  end
  if o.start then o.start() end
  local opts, progress = o.opts, nil
  if o.progress ~= false then
    progress = M.progress(ctx, opts.quiet, opts.output)
    o.sink.before = progress.before_output
  end
  M.each(eng, tg.list, ctx, {
    cmd = o.cmd, family = o.family, prefer = o.prefer, seed = opts.seed, shard = opts.shard,
    parallel = opts.parallel, max_targets = opts.max_targets, progress = progress,
    on_total = o.on_total,
    stopped = function() return o.stopped() or not o.sink:ok() end,
    job = function(addr, name) o.one(name or addr, addr, require("sonde.target").family(addr)) end,
  })
  return progress
end

-- What a command that probes several targets found, and its exit status.
--   local tally = campaign.tally("ping", "targets answered")
--   tally:add(ok, line, err)  -- a target done: did it answer (reach, connect)?
--                             -- its summary line; err: the local error that
--                             -- stopped it (no route...), or nil
--   tally:text()              -- the targets' lines, for a footer's summary
--   return tally:status(ctx, signal, several and not opts.quiet)
--
-- o (optional) for the commands that say what happened before the status
-- is decided (also when interrupted, also when every target failed):
--   explained  the noun of the targets' runs ("traces"): the command
--              reported each local error as it came (the first
--              M.EXPLAINED); the end adds "... N traces stopped on an
--              error in all" past them, and repeats none
--   any        0 when at least one target answered (a sweep), not every
--   failed     the words before the error when every target failed
--              ("every probe failed")
-- tally.total (the targets there were, set by the command) counts the
-- ones not run as not answered; tally.line, the line said at the end
-- instead of "K of N WHAT"; tally.hinted, set by a command that already
-- said how to allow refused ICMP datagram sockets (sonde.target.icmp_hint).
local Tally = {}
Tally.__index = Tally

M.EXPLAINED = 3 -- local errors a command reports one by one; the rest are counted

function M.tally(cmd, what, o)
  o = o or {}
  return setmetatable({ cmd = cmd, what = what, targets = 0, ok = 0, failed = 0, lines = {},
    explained = o.explained, any = o.any, failed_words = o.failed }, Tally)
end

function Tally:add(ok, line, err)
  self.targets = self.targets + 1
  if ok then self.ok = self.ok + 1 end
  if err then
    self.failed = self.failed + 1
    self.error = self.error or err
  end
  self.lines[#self.lines + 1] = line
end

-- A strategy that probes every target in one loop (a sweep) gives its
-- counts at once: targets done, answered, failed locally (err: the first
-- such error).
function Tally:sum(targets, ok, failed, err)
  self.targets, self.ok, self.failed = targets, ok, failed
  self.error = self.error or err
end

function Tally:text()
  return table.concat(self.lines, "\n\n")
end

-- The line at the end: tally.line, or "sonde CMD: K of N WHAT".
function Tally:say(ctx)
  if self.line then
    ctx.stderr:write(fmt("sonde %s: %s\n", self.cmd, self.line))
  else
    ctx.stderr:write(fmt("sonde %s: %d of %d %s\n", self.cmd, self.ok, self.total or self.targets,
      self.what))
  end
end

-- The exit status: the signal's; 3 (the error on stderr) when every target
-- stopped on a local error; 0 when every target answered; 1 otherwise.
-- say: write "sonde CMD: K of N WHAT" (tally.line) on stderr first; with
-- o.explained or o.any, before anything else (also when interrupted).
-- quiet: nothing on stderr at all (nobody reads the output any more).
function Tally:status(ctx, signal, say, quiet)
  local first = self.explained or self.any
  if first and not quiet then
    if self.explained and self.failed > M.EXPLAINED then
      ctx.stderr:write(fmt("sonde %s: ... %d %s stopped on an error in all\n", self.cmd,
        self.failed, self.explained))
    end
    if say then self:say(ctx) end
  end
  if signal then return require("sonde.target").signal_status(signal) end
  if self.any and self.ok > 0 then return cli.EXIT.OK end
  if self.failed > 0 and self.failed == self.targets and self.error then
    if not self.explained and not quiet then
      -- refused ICMP datagram sockets: the sysctl, not a firewall
      local target = require("sonde.target")
      local hint = target.icmp_hint(self.error)
      ctx.stderr:write(fmt("sonde %s: %s%s: %s\n", self.cmd,
        self.failed_words and self.failed_words .. ": " or "", self.error.name,
        hint and target.ICMP_REFUSED or self.error.message))
      if hint and not self.hinted then ctx.stderr:write(fmt("sonde %s: %s\n", self.cmd, hint)) end
    end
    return cli.EXIT.RUNTIME
  end
  if say and not first and not quiet then self:say(ctx) end
  if self.any then return cli.EXIT.NOT_REACHED end
  return self.ok == (self.total or self.targets) and cli.EXIT.OK or cli.EXIT.NOT_REACHED
end

-- "123/2000 (6.2 %), 41 per second, 45s left"
function M.rate_text(done, total, elapsed)
  local rate = elapsed > 0 and done / elapsed or 0
  local left = rate > 0 and (total - done) / rate or 0
  return fmt("%d/%d (%.1f %%), %.0f per second, %s left", done, total,
    total > 0 and 100 * done / total or 100, rate, M.duration_text(left))
end

return M
