-- sonde watch: continuous path monitoring. Rounds of probes to many targets
-- on one engine, per-hop statistics (as mtr keeps them), each target's path
-- (Paris by default), JSON Lines events (sonde.watch.monitor), Prometheus
-- metrics over HTTP (sonde.watch.metrics, core.http_listen), and a deeper
-- measurement attached to path and reachability events
-- (sonde.watch.round.diagnose).

local core = require "sonde.core"
local cli = require "sonde.cli"
local target = require "sonde.target"
local output = require "sonde.output"
local campaign = require "sonde.campaign"
local json = require "sonde.json"
local kit = require "sonde.kit"
local targets = require "sonde.targets"
local monitor = require "sonde.watch.monitor"
local metrics = require "sonde.watch.metrics"
local round = require "sonde.watch.round"

local spec = {
  name = "watch",
  summary = "monitor the paths to many hosts: events on changes and loss, Prometheus metrics",
  usage = "sonde watch [options] TARGET... | --targets FILE",
  description = [[
Runs rounds of probes to every target until stopped (SIGINT, SIGTERM), or for --rounds rounds, or for --duration seconds. A round sends -q probes to every TTL from 1 up to the destination (up to -m until the destination is known, and again after a round in which it did not answer), all at once, as one mtr round does; targets run side by side on one engine, their rounds -i seconds apart, their starts spread over the first interval.

Each target's path is the addresses at each TTL up to the destination. --strategy paris (the default) keeps every probe of a target in one flow, so that load balancers send them all one way and a round sees one consistent path; dublin spreads the -q probes of a TTL over 4 flows (use -q 4 or more) and sees the branches those flows take; mda explores every branch at every hop each round (UDP, costly: for few targets).

Events, one JSON object per line (standard output, or -o FILE), each with "type", "version", "time" (Unix seconds), "target", "addr" and "round":
  path_change        the path differs from the one known: "first_ttl" (the first TTL that differs), "old" and "new" ([{"ttl","addrs"}]), "old_hops", "new_hops"; a TTL where nothing answered is not a change
  reachability       "state": "lost" after --lost-after rounds in a row without an answer from the destination, "regained" when it answers again
  loss               the destination's loss over the last --window rounds reached --loss-threshold percent ("state": "start"; "from_ttl": the first TTL from which every hop loses as much, where the path loss starts) or fell below half of it ("end"); "loss_ratio", "threshold", "window"
  rtt_shift          the destination's RTT level moved: its recent average is --rtt-factor times above (or below) the baseline and more than --rtt-min milliseconds away from it: "direction", "baseline", "recent" (seconds)
  icmp_rate_limited  a hop loses at least --rate-margin points more than a hop behind it (or the destination) does: the router limits or deprioritises the ICMP errors it sends, and the loss is not loss on the path ("state": "start" or "end", "ttl", "hop_addr", "loss_ratio", "behind_loss_ratio")
  reload             the targets after SIGHUP: "added", "removed", "targets", or "error"
A path_change or reachability event carries "diagnosis": a Dublin trace (4 flows) or an MDA (--diagnose) to the target, run when the event fires, at most once per --diagnose-every seconds per target and two at a time ("skipped": "rate_limited" when it could not run).

Metrics: --listen ADDR:PORT serves the Prometheus text format at /metrics (libmicrohttpd, on a thread of its own: a slow or broken client cannot delay a probe; at most 64 connections, 16 per client address, 10 s idle timeout). Per target: sonde_watch_reachable, sonde_watch_path_hops, sonde_watch_rtt_seconds (histogram), sonde_watch_loss_ratio, sonde_watch_path_changes_total, sonde_watch_last_path_change_timestamp_seconds, sonde_watch_rounds_total; per target and TTL: sonde_watch_hop_loss_ratio, sonde_watch_hop_rtt_seconds, sonde_watch_hop_icmp_rate_limited, sonde_watch_hop_info (the address, as a label of a series of value 1); sonde_watch_events_total by type. The text is rendered every --interval seconds (at least every 5 s). A port below 1024 is bound before sonde gives up its privileges; any other after.

SIGHUP reads the --targets files again and starts and stops targets to match (a target that stays keeps its statistics). Files named on the command line are read before sonde gives up its privileges, but a reload happens after: started as root, sonde reads them again as the unprivileged user it runs as (nobody), so a --targets file that is to be reloaded must be readable by that user. SIGINT, SIGTERM and SIGQUIT stop the run: probes in flight are cancelled, the output is committed.

Raw sockets read the ICMP answers: run as root or give the executable CAP_NET_RAW.

Exit status:

    0    stopped by --rounds or --duration, every destination answering
    1    stopped so, some destination not answering at the end
    2    usage error
    3    runtime error: no permission, --listen address in use or not local, -o not writable
    130  stopped by SIGINT (131 SIGQUIT, 143 SIGTERM)]],
  options = campaign.options({
    { "-i", "--interval", arg = "SECONDS", type = "number", min = 0.05, max = 86400, default = "10",
      help = "time between the starts of two rounds to a target" },
    { "-q", "--queries", arg = "N", type = "int", min = 1, max = 16, default = 3,
      help = "probes per TTL per round" },
    { "-w", "--wait", arg = "SECONDS", type = "number", min = 0.01, max = 60, default = "2",
      help = "how long to wait for the answer to one probe" },
    { "-m", "--max-ttl", arg = "N", type = "int", min = 1, max = 64, default = 30,
      help = "largest TTL probed" },
    { "-p", "--protocol", arg = "PROTO", choices = { "icmp", "udp", "tcp" }, default = "icmp",
      help = "probe protocol" },
    { nil, "--port", arg = "PORT", type = "int", min = 1, max = 65535,
      help = "UDP or TCP destination port" },
    { nil, "--strategy", arg = "NAME", choices = { "paris", "dublin", "mda" }, default = "paris",
      help = "how a round sees the path: paris (one flow), dublin (4 flows), mda (every branch; UDP)" },
    { nil, "--rounds", arg = "N", type = "int", min = 1, max = 100000000,
      help = "stop after N rounds to each target (default: until stopped)" },
    { nil, "--duration", arg = "SECONDS", type = "number", min = 0.1, max = 31536000,
      help = "stop after SECONDS (default: until stopped)" },
    { nil, "--window", arg = "N", type = "int", min = 2, max = 1000, default = monitor.DEFAULTS.window,
      help = "rounds over which loss and RTT are figured" },
    { nil, "--loss-threshold", arg = "PERCENT", type = "number", min = 0.1, max = 100,
      default = tostring(monitor.DEFAULTS.loss_threshold), help = "destination loss that is a loss event" },
    { nil, "--rtt-factor", arg = "X", type = "number", min = 1.01, max = 1000,
      default = tostring(monitor.DEFAULTS.rtt_factor), help = "RTT shift: recent above X times the baseline (or below 1/X)" },
    { nil, "--rtt-min", arg = "MS", type = "number", min = 0, max = 60000,
      default = tostring(monitor.DEFAULTS.rtt_min * 1000), help = "RTT shift: and at least MS milliseconds away" },
    { nil, "--lost-after", arg = "N", type = "int", min = 1, max = 1000,
      default = monitor.DEFAULTS.lost_after, help = "rounds without the destination before it is lost" },
    { nil, "--rate-margin", arg = "POINTS", type = "number", min = 1, max = 100,
      default = tostring(monitor.DEFAULTS.rate_margin),
      help = "a hop losing this many percentage points more than a hop behind it is ICMP rate limiting" },
    { nil, "--diagnose", arg = "HOW", choices = { "dublin", "mda", "none" }, default = "dublin",
      help = "the measurement attached to path_change and reachability events" },
    { nil, "--diagnose-every", arg = "SECONDS", type = "number", min = 0, max = 86400, default = "300",
      help = "at most one diagnosis per target per SECONDS" },
    { nil, "--listen", arg = "ADDR:PORT", type = "string",
      help = "serve Prometheus metrics at http://ADDR:PORT/metrics (numeric address; [v6]:port)" },
    target.IPV4_OPTION,
    target.IPV6_OPTION,
    { nil, "--format", arg = "FORMAT", type = "string", default = "jsonl", choices = { "jsonl" },
      help = "events format: jsonl" },
    output.OPTION,
  }, { parallel = 4096, what = "targets watched" }),
  positionals = { { name = "TARGET", many = true, help = "host name, numeric address or CIDR prefix" } },
  exclusive = { { "ipv4", "ipv6" } },
  examples = {
    "sonde watch -i 5 --listen 127.0.0.1:9464 198.18.8.2 198.18.9.2",
    "sonde watch --targets /etc/sonde/targets --listen [::1]:9464 -o /var/log/sonde/events.jsonl",
    "sonde watch --rounds 20 -i 1 --strategy dublin -q 4 198.18.8.2",
  },
}

-- "ADDR:PORT" or "[V6]:PORT" -> host, port; or nil, why.
local function parse_listen(v)
  local host, port = v:match("^%[([^%]]+)%]:(%d+)$")
  if not host then host, port = v:match("^([^:]+):(%d+)$") end
  if not host then return nil, "expected ADDR:PORT or [IPv6]:PORT" end
  port = tonumber(port)
  if port > 65535 then return nil, "port above 65535" end
  if not target.family(host) then return nil, "the address must be numeric" end
  return host, port
end

-- The listener bound before the privileges were dropped (a port below
-- 1024), or the error that binding gave.
local early

-- Before the drop (sonde.cli): bind a --listen port below 1024 now.
local function prepare(opts)
  if not opts.listen then return end
  local host, port = parse_listen(opts.listen)
  if host and port < 1024 then
    local srv, err = core.http_listen(host, port)
    early = { srv = srv, err = err }
  end
end

-- The collector's pace for a process that runs for days: a full cycle
-- once the heap has grown by its live size (the default lets it double
-- first), so that RSS stays near what the targets' statistics hold.
local GC_PAUSE, GC_STEPMUL = 100, 400

local function run(opts, ctx)
  collectgarbage("setpause", GC_PAUSE)
  collectgarbage("setstepmul", GC_STEPMUL)
  local lhost, lport
  if opts.listen then
    lhost, lport = parse_listen(opts.listen)
    if not lhost then cli.usage_error("--listen: invalid value '%s' (%s)", opts.listen, lport) end
  end
  if opts.strategy == "mda" and opts.protocol ~= "udp" then
    cli.usage_error("--strategy mda probes with UDP: give -p udp")
  end
  local stopping = false
  local wake = {}              -- sleeping coroutines' events -> { token, rec }
  local inflight = {}          -- probe id -> true
  local eng
  local stop_all

  local run = kit.start(opts, ctx, { cmd = "watch", what = "destinations answering",
    words = opts.target, as_list = true, own = { jsonl = true },
    engine = { window = 4096 },
    signals = { "SIGINT", "SIGTERM", "SIGQUIT" },
    on_signal = function() stop_all() end })
  eng = run.eng
  local sink, tally = run.sink, run.tally

  -- The metrics server: bound now (or before the drop), started on its
  -- thread.
  local srv
  if opts.listen then
    local err
    if early then srv, err = early.srv, early.err else srv, err = core.http_listen(lhost, lport) end
    if not srv then
      eng:close()
      sink:abort()
      cli.runtime_error("--listen %s: %s", opts.listen, err)
    end
    local ok, serr = srv:start{ connection_limit = 64, per_ip_limit = 16, timeout = 10 }
    if not ok then
      srv:close()
      eng:close()
      sink:abort()
      cli.runtime_error("--listen %s: %s", opts.listen, serr)
    end
  end

  local wall0, t0 = os.time(), eng:now()
  local function now() return wall0 + (eng:now() - t0) end
  local deadline = opts.duration and t0 + opts.duration
  local counts = {}            -- events written, by type
  local watched = {}           -- addr -> the target's record
  local order = {}             -- the records, in start order
  local diag_running = 0

  local function emit(ev, rec)
    ev.version = 1
    ev.time = ev.time or math.floor(now())
    if rec then
      ev.target, ev.addr, ev.round = rec.name, rec.addr, rec.m.rounds
    end
    counts[ev.type] = (counts[ev.type] or 0) + 1
    sink:write(json.encode(ev) .. "\n")
    sink:flush()
    if not sink:ok() then stop_all() end
  end

  -- Sleep until eng:now() reaches t, or the run (or the target) stops.
  local function nap_until(t, rec)
    local d = t - eng:now()
    if d <= 0 or stopping or rec.stopped then return end
    local ev = eng:event()
    local token = eng:after(d, function() wake[ev] = nil; ev.fire() end)
    wake[ev] = { token = token, rec = rec }
    ev.wait()
  end
  -- Wake the sleepers (all, or those of stopped targets).
  local function wake_up(all)
    for ev, w in pairs(wake) do
      if all or w.rec.stopped then
        wake[ev] = nil
        eng:cancel_timer(w.token)
        ev.fire()
      end
    end
  end
  local timers = {}            -- the run's own timers (--duration)
  local all_done = false       -- every target's rounds are over
  function stop_all()
    stopping = true
    for id in pairs(inflight) do eng:cancel(id) end
    wake_up(true)
  end
  -- Every target is done (--rounds): the run's timers would keep it going.
  local function check_done()
    for _, rec in ipairs(order) do if not rec.done then return end end
    all_done = true
    wake_up(true)
    for k, token in pairs(timers) do
      timers[k] = nil
      eng:cancel_timer(token)
    end
  end

  local function diagnose(rec, ev)
    if opts.diagnose == "none" then return end
    local t = eng:now()
    if diag_running >= 2 or (rec.diag_at and t - rec.diag_at < opts.diagnose_every) then
      ev.diagnosis = { skipped = "rate_limited" }
      return
    end
    rec.diag_at = t
    diag_running = diag_running + 1
    local ok, res = pcall(round.diagnose, { eng = eng, how = opts.diagnose, dst = rec.addr,
      af = rec.af, proto = opts.diagnose == "mda" and "udp" or opts.protocol, port = opts.port,
      wait = opts.wait, max_ttl = opts.max_ttl,
      stopped = function() return stopping or rec.stopped end })
    diag_running = diag_running - 1
    ev.diagnosis = ok and res or { error = { name = "EDIAGNOSIS", message = tostring(res) } }
  end

  local function watch_one(rec, offset)
    local strat = round.strategy{ strategy = opts.strategy, proto = opts.protocol, dst = rec.addr,
      port = opts.port, wait = opts.wait, flows = 4 }
    local seq = { n = 0 }
    local next_t = eng:now() + offset
    local last_reached = false
    nap_until(next_t, rec)
    while not stopping and not rec.stopped and (not opts.rounds or rec.m.rounds < opts.rounds)
        and not (deadline and eng:now() >= deadline) do
      next_t = next_t + opts.interval
      local limit = last_reached and rec.m.final_ttl or opts.max_ttl
      local r = round.run{ eng = eng, strat = strat, strategy = opts.strategy, dst = rec.addr,
        limit = limit, queries = opts.queries, seq = seq,
        stopped = function() return stopping or rec.stopped end,
        track = function(id) inflight[id] = true end,
        untrack = function(id) inflight[id] = nil end }
      if stopping or rec.stopped then break end
      for _, p in ipairs(r.probes) do
        if p.status == "failed" and p.error and p.error.name ~= "ECANCELED" then
          rec.error = rec.error or p.error
        end
      end
      r.time = now()
      local events = rec.m:round(r)
      last_reached = rec.m.reachable == true and rec.m.misses == 0
      for _, ev in ipairs(events) do
        if ev.type == "path_change" or ev.type == "reachability" then diagnose(rec, ev) end
        emit(ev, rec)
      end
      if deadline and next_t > deadline then next_t = deadline end
      nap_until(next_t, rec)
    end
    rec.done = true
    if not rec.stopped then check_done() end
  end

  local function start(addr, name, offset)
    local rec = { addr = addr, name = name or addr, af = target.family(addr),
      m = monitor.new{ target = name or addr, addr = addr, queries = opts.queries,
        window = opts.window, loss_threshold = opts.loss_threshold, rtt_factor = opts.rtt_factor,
        rtt_min = opts.rtt_min / 1000, lost_after = opts.lost_after,
        rate_margin = opts.rate_margin } }
    watched[addr] = rec
    order[#order + 1] = rec
    eng:spawn(function() watch_one(rec, offset) end)
  end

  -- The targets of the list, as { [addr] = name } (shard, seed).
  local function addresses(list)
    local named = campaign.resolve_names(eng, list, ctx, "watch", run.family)
    local n, lerr = list:finish()
    if not n then return nil, lerr end
    local iter = list:iter{ seed = opts.seed, shard = opts.shard and opts.shard[1] or 0,
      shards = opts.shard and opts.shard[2] or 1 }
    local set, count = {}, 0
    for addr in iter do set[addr] = named[addr] or addr; count = count + 1 end
    return set, count
  end

  -- The metrics text, rendered from a coroutine (sliced: the loop reads
  -- replies in between) or at the end (in one go).
  -- -> the CPU seconds it took (the slices, not the pauses between them).
  local function render(sliced)
    if not srv then return 0 end
    local live = {}
    local cpu, c0 = 0, os.clock()
    for _, rec in ipairs(order) do
      if not rec.stopped then live[#live + 1] = rec.m end
    end
    srv:set(metrics.render(live, { events = counts,
      pause = sliced and function()
        cpu = cpu + (os.clock() - c0)
        eng:sleep(0)
        c0 = os.clock()
      end or nil }))
    return cpu + (os.clock() - c0)
  end

  -- SIGHUP: read the --targets files again (with the rights sonde has now).
  local function reload()
    if stopping then return end
    if #opts.targets == 0 then
      emit{ type = "reload", error = { name = "ENOENT", message = "no --targets file to reload" } }
      return
    end
    eng:spawn(function()
      local list = targets.list()
      for _, w in ipairs(opts.target) do list:add(w) end
      for _, path in ipairs(opts.targets) do
        -- io.open gives strerror's text only: its name is told from it
        local f, err = io.open(path, "rb")
        if not f then
          emit{ type = "reload", error = { name = err:match("Permission denied") and "EACCES"
            or err:match("No such file") and "ENOENT" or "EIO", message = err } }
          return
        end
        local text = f:read("*a")
        f:close()
        local bad = list:add_lines(text:gmatch("[^\n]*"), path)
        for _, b in ipairs(bad) do
          ctx.stderr:write(("sonde watch: %s:%d: skipped '%s': %s\n"):format(b.source, b.line,
            b.text, b.reason))
        end
      end
      local set, err = addresses(list)
      if not set then
        emit{ type = "reload", error = { name = "EINVAL", message = err } }
        return
      end
      local added, removed = {}, {}
      for addr, rec in pairs(watched) do
        if not set[addr] then
          rec.stopped = true
          removed[#removed + 1] = rec.name
          watched[addr] = nil
        end
      end
      local keep = {}
      for _, rec in ipairs(order) do if not rec.stopped then keep[#keep + 1] = rec end end
      order = keep
      for addr, name in pairs(set) do
        if not watched[addr] then
          added[#added + 1] = name
          start(addr, name, 0)
        end
      end
      table.sort(added)
      table.sort(removed)
      emit{ type = "reload", added = json.array(added), removed = json.array(removed),
        targets = #order }
      wake_up(false)
      render(true)
    end)
  end
  eng:on_signal("SIGHUP", reload)

  local ok, perr = pcall(eng.run, eng, function()
    local set, count = addresses(run.tg.list)
    if not set then cli.usage_error("%s", count) end
    if count == 0 then cli.usage_error("no targets left to probe") end
    local i = 0
    local addrs = {}
    for addr in pairs(set) do addrs[#addrs + 1] = addr end
    table.sort(addrs)
    for _, addr in ipairs(addrs) do
      start(addr, set[addr], count > 1 and opts.interval * i / count or 0)
      i = i + 1
    end
    -- The metrics text: rendered every interval (at most 5 s apart), and
    -- at least ten times as long apart as a rendering takes (thousands of
    -- targets), until every target is done.
    if srv then
      local every = math.min(opts.interval, 5)
      local me = {}
      eng:spawn(function()
        while not stopping and not all_done do
          local took = render(true)
          nap_until(eng:now() + math.max(every, 10 * took), me)
        end
      end)
    end
    -- --duration: stop at the deadline
    if deadline then
      timers.deadline = eng:after(opts.duration, function()
        timers.deadline = nil
        stop_all()
      end)
    end
  end)
  render()
  if srv then srv:close() end
  eng:close()
  if not ok then
    sink:abort()
    error(perr, 0)
  end
  for _, rec in ipairs(order) do
    tally:add(rec.m.reachable == true, rec.name, rec.error)
  end
  return run:finish(nil)
end

return { spec = spec, run = run, prepare = prepare }
