-- sonde mtr: traceroute and ping at once. Rounds of probes to every hop
-- (sonde.strategy.mtr), per-hop loss and RTT statistics (sonde.stats), a
-- live table or a report (sonde.format.mtr).

local cli = require "sonde.cli"
local target = require "sonde.target"
local output = require "sonde.output"
local campaign = require "sonde.campaign"
local header = require "sonde.header"
local json = require "sonde.json"
local ping = require "sonde.strategy.ping"
local paris = require "sonde.strategy.paris"
local dublin = require "sonde.strategy.dublin"
local defaults = require "sonde.defaults"
local mtr = require "sonde.strategy.mtr"
local fmt = require "sonde.format.mtr"
local formats = require "sonde.format"
local kit = require "sonde.kit"
local asn = require "sonde.asn"
local preopen = require "sonde.preopen"

local FORMATS = formats.names{ "text", "json" }

-- csv and markdown: one row per hop, these columns. CSV writes the
-- fractional figures with 6 significant digits, as mtr's own CSV does.
local COLUMNS = { "target", "ttl", "addr", "name", "loss_pct", "sent", "received",
  "last_ms", "avg_ms", "best_ms", "worst_ms", "stddev_ms", "jitter_ms" }
local PRECISION = { loss_pct = 6, last_ms = 6, avg_ms = 6, best_ms = 6, worst_ms = 6,
  stddev_ms = 6, jitter_ms = 6 }

local spec = {
  name = "mtr",
  summary = "trace the route to a host continuously, with loss and RTT statistics per hop",
  usage = "sonde mtr [options] TARGET... | --targets FILE",
  description = [[
Combines trace and ping, as mtr and Trippy do: every -i seconds a round of probes goes out, one to each TTL from -f up to the destination, and each hop's answers accumulate into its statistics: Loss% (probes without an answer), Snt (probes sent and ended), Last, Avg, Best and Wrst (round-trip times, ms), StDev (their sample standard deviation) and Javg (jitter: the mean absolute difference between consecutive RTTs). Rounds do not wait for each other; a probe gets --wait seconds to be answered.

The first round probes every TTL up to -m; the lowest TTL at which the destination answers (or a router says it is unreachable) becomes the last hop, and later rounds stop there. A hop where several addresses answered (load balancing) lists the others below it.

On a terminal, without --report, the table is shown live and redrawn in place; keys as mtr's: p pause, r reset, d display mode (statistics or each hop's history), n names, j jitter fields, ? help, q (or Ctrl-C) stop. Then, and in every other mode, the report is printed: the text report (as mtr --report), or with --format json one document, with --format csv one line per hop. Without a terminal the report is printed after the -c rounds.

Formats (--format; every one but text implies --report): text (the report); json (one document: "type":"mtr", each hop's figures, RTTs in seconds); jsonl (an "mtr_round" line per round once every probe of the round has ended, in round order: the round's number and each TTL's outcome under "probes"; then the mtr document as the last line; both are definitions of scripts/sonde/schema/sonde.schema.json); csv (a header row, then a row per hop: target, ttl, addr, name, loss_pct, sent, received, last_ms, avg_ms, best_ms, worst_ms, stddev_ms, jitter_ms); markdown (the same rows as a table, then a line with the rounds and whether the destination answered); or the path of a Lua format module (examples/format_example.lua: its record() gets the jsonl lines, its footer() the summary). --output FILE writes the report to FILE atomically (a temporary file renamed over FILE at the end; when interrupted, FILE gets what was collected); the live table, if any, stays on the terminal. Files named on the command line are opened before sonde gives up its privileges: anywhere the user who ran it may read or write, and FILE belongs to that user.

Several targets (names, addresses, CIDR prefixes, the lines of --targets files) run at once, --parallel at a time, on one engine: the live table shows each one's, one under the other, and each report is written when its rounds end (after the live table, if any): text reports one after the other, json a document per line, csv one header row then every target's hops, jsonl and a format module each target's rounds and document. On standard error: a progress line (targets done out of the total; on a terminal, for runs longer than two seconds, not over the live table) and at the end a line that says how many destinations were reached (neither with -q). The targets form a set, run in a seeded order (--seed); --shard K/N runs one shard of them, as sonde trace does.

Loss at a hop that the hops behind it do not show is usually the router limiting the ICMP errors it sends, not loss on the path.

Raw sockets read the ICMP answers: run as root or give the executable CAP_NET_RAW.

Exit status:

    0    the destination answered at least once (several targets: each
         one did)
    1    it never did (several: some destination never did)
    2    usage error
    3    runtime error: a name that does not resolve, no permission,
         a probe that could not be sent (no route), -o not writable
    130  interrupted by SIGINT (129 SIGHUP, 131 SIGQUIT, 143 SIGTERM); the report of what was
         collected (stop_reason "interrupted") comes first]],
  options = campaign.options(header.options({
    { "-r", "--report", flag = true,
      help = "no live table: run -c rounds, then print the report" },
    { "-w", "--report-wide", flag = true,
      help = "the report, host names never cut (mtr -w); implies --report" },
    { "-c", "--count", arg = "N", type = "int", min = 1, max = 1000000,
      help = "rounds (default: 10 with --report or without a terminal; the live table runs until q)" },
    { "-i", "--interval", arg = "SECONDS", type = "number", min = 0.01, max = 3600, default = "1",
      help = "time between the starts of two rounds" },
    { nil, "--wait", arg = "SECONDS", type = "number", min = 0.001, max = 600, default = "2",
      help = "how long to wait for the answer to one probe (mtr's -w is --report-wide)" },
    { "-f", "--first-ttl", arg = "N", type = "int", min = 1, max = 255, default = 1,
      help = "TTL of the first hop probed" },
    { "-m", "--max-ttl", arg = "N", type = "int", min = 1, max = 255, default = 30,
      help = "largest TTL probed" },
    { nil, "--protocol", arg = "PROTO", choices = { "icmp", "udp", "tcp" }, default = "icmp",
      help = "probe protocol: ICMP echo, UDP to a closed port, or TCP SYN (as mtr's -u and -T; mtr's -p is --split)" },
    { "-p", "--split", flag = true,
      help = "mtr's split mode, for front-ends that read mtr: as outcomes come in, a line per hop whose figures changed, \"TTL NAME LOSS RECEIVED SENT BEST AVG WORST\" (LOSS in thousandths of a percent, times in whole ms, ??? for a hop whose probes are done and nobody answered, with -b \"NAME ADDR\"), and \"-TTL\" for a hop that went away; no report. One target" },
    { "-T", "--tcp", flag = true, help = "TCP SYN probes (as --protocol tcp)" },
    { "-u", "--udp", flag = true, help = "UDP probes (as --protocol udp)" },
    { "-P", "--port", arg = "PORT", type = "int", min = 1, max = 65535,
      help = "UDP: the first destination port, one more per probe (default 33434); TCP: the destination port (default 80)" },
    defaults.tcp_mode_option(),
    { "-s", "--psize", arg = "BYTES", type = "int", min = 30, max = 1448,
      help = "the size of each probe packet, IP and ICMP or UDP headers included, as mtr's -s: at least 30 bytes (IPv4) or 50 (IPv6), so that 2 bytes of payload remain to name the probe; at most a payload of 1400 bytes; not with -T (a TCP probe is a bare SYN). Default: 60 (IPv4), 80 (IPv6): 32 bytes of payload" },
    { nil, "--strategy", arg = "NAME", choices = { "classic", "paris", "dublin" },
      help = "classic (default: a new flow per probe, as mtr: UDP varies the destination port), paris (every probe in one flow: one path through load balancers), dublin (--flows Paris flows side by side: each flow's own figures at each hop, shown under it); paris and dublin take -u or ICMP (Paris UDP needs raw sockets)" },
    { nil, "--flows", arg = "N", type = "int", min = 1, max = dublin.MAX_FLOWS,
      help = "dublin: how many flows (default 4); each leaves from its own source port (ICMP: its own checksum); alone it means --strategy dublin" },
    target.IPV4_OPTION,
    target.IPV6_OPTION,
    { "-n", "--no-dns", key = "numeric", flag = true, help = "show addresses only, do not look up host names" },
    { "-b", "--show-ips", flag = true, help = "show host names and addresses: name (addr)" },
    { nil, "--dns-wait", arg = "SECONDS", type = "number", min = 0, max = 60, default = "5",
      help = "how long a report waits, after the last round, for names and AS numbers still being looked up" },
    { "-o", "--order", arg = "FIELDS", type = "string", default = fmt.DEFAULT_FIELDS,
      check = function(v)
        local ok, err = fmt.fields(v)
        if not ok then return nil, err end
        return v
      end,
      help = "the fields shown and their order, by mtr's letters: L loss, D dropped, R received, S sent, N last, B best, A average, W worst, V standard deviation, G geometric mean, J jitter, M mean jitter, X worst jitter, I interarrival jitter, space a gap (default \"LS NABWV\")" },
    { "-e", "--mpls", flag = true, help = "show the MPLS label stacks routers quoted (RFC 4950) under their hop" },
    { "-z", "--aslookup", flag = true, help = "show the origin AS of every hop (as --as)" },
    asn.OPTIONS[1], asn.OPTIONS[2], asn.OPTIONS[3], asn.OPTIONS[4],
    { "-j", "--json", flag = true, help = "as --format json" },
    { "-C", "--csv", flag = true, help = "mtr's CSV (implies --report): a header Mtr_Version,Start_Time,Status,Host,Hop,Ip,[Asn,] then the -o fields' titles, and a line per hop: times in ms and loss with 2 decimals; --format csv is sonde's own columns" },
    { nil, "--format", arg = "FORMAT", type = "string", default = "text", check = formats.check(FORMATS),
      help = "report format: text, json, jsonl (a line per round, then the document), csv or markdown (a row per hop), or the path of a Lua format module (see Formats above); all but text imply --report" },
    { nil, "--output", arg = "FILE", type = "string", help = output.OPTION.help .. " (mtr's -o is --order)" },
  }, { source = "-a", interface = "-I", also = { "--address" } }), { parallel = 16, what = "targets", q = true }),
  positionals = { { name = "TARGET", many = true, help = "host name, numeric address or CIDR prefix" } },
  exclusive = { { "ipv4", "ipv6" }, { "tcp", "udp" }, { "json", "csv" } },
  -- mtr's options that sonde mtr does not take (yet)
  hints = {
    ["-x"] = "mtr's XML report is not supported: write -j (JSON) or -C (CSV)",
    ["--xml"] = "mtr's XML report is not supported: write -j (JSON) or -C (CSV)",
    ["-t"] = "mtr's curses interface is the live table: run without -r on a terminal",
    ["-g"] = "the GTK interface is not supported: run without -r on a terminal",
  },
  examples = {
    "sonde mtr 198.18.8.2",
    "sonde mtr --report -c 20 -n 198.18.8.2",
    "sonde mtr -rwbzc 10 198.18.8.2",
    "sonde mtr -r -c 5 -o LSDR -n 198.18.8.2",
    "sonde mtr -u -i 0.2 -c 50 --format json 2001:db8:8::2",
    "sonde mtr --protocol tcp --port 443 --format csv -c 10 -n 198.18.8.2",
    "sonde mtr -p -n -c 5 198.18.8.2",
    "sonde mtr -c 60 -n --format jsonl --output rounds.jsonl 198.18.8.2",
    "sonde mtr --report -c 5 -n 198.18.8.2 198.18.9.2 2001:db8:8::2",
  },
}

---------------------------------------------------------------------------
-- The terminal: only for the live table. Keys come from eng:tty (raw mode
-- on standard input, a callback per key press; the mode is put back on
-- every way out of run(), and by the engine's close and at exit as well).
---------------------------------------------------------------------------

local core = require "sonde.core"
local floor = math.floor

-- The live table's width: the terminal's, unless it is too narrow or
-- unknown (0 columns: a terminal nobody sized).
local function usable_width(columns)
  return columns and columns >= 20 and columns or 80
end

local ESC = {
  enter = "\27[?1049h\27[?25l\27[H\27[2J",  -- alternate screen, no cursor
  leave = "\27[?25h\27[?1049l",             -- cursor back, main screen back
  home = "\27[H", eol = "\27[K", eos = "\27[J",
}

-- The live table's key legend (once, for every target) and its help page.
local LEGEND = "Keys: p pause  r reset  d display  n names  j jitter  ? help  q quit"
local HELP = {
  "sonde mtr: the keys of the live table",
  "",
  "  p   pause: no new rounds until p again (probes in flight still end)",
  "  r   reset: every hop's statistics start again from nothing",
  "  d   display: statistics, or each hop's recent history (. to 9: its",
  "      RTT between the hop's best and worst; ? lost)",
  "  n   names: host names on or off",
  "  j   the jitter fields (DR AGJMXI) instead of -o's, or back",
  "  ?   this page, or back",
  "  q   quit: the report of what was collected is printed",
  "",
  "Ctrl-C ends the run as SIGINT does (exit 130), Ctrl-\\ as SIGQUIT (131).",
}

-- mtr's j key: the jitter fields.
local JITTER_FIELDS = assert(fmt.fields("DR AGJMXI"))

---------------------------------------------------------------------------

-- Looks up each new address once per run, all at once (c-ares: /etc/hosts
-- first, without waiting for the network); names[addr] = name. Each lookup
-- may take up to `bound` seconds; on_name() is called when a name arrives
-- (the live table redraws). settle(seconds) returns once every lookup asked
-- for so far has ended, or after seconds: a report names what arrived.
local function namer(eng, bound, on_name)
  local names, asked, pending, waiters = {}, {}, 0, {}
  local function lookup(addr)
    if asked[addr] then return end
    asked[addr] = true
    pending = pending + 1
    eng:spawn(function()
      names[addr] = eng:reverse(addr, bound) or nil
      pending = pending - 1
      if names[addr] and on_name then on_name() end
      if pending == 0 then
        local w = waiters
        waiters = {}
        for _, ev in ipairs(w) do ev.fire() end
      end
    end)
  end
  local function settle(seconds)
    if pending == 0 then return end
    local ev = eng:event()
    waiters[#waiters + 1] = ev
    local token = eng:after(seconds, ev.fire)
    ev.wait()
    eng:cancel_timer(token)
  end
  return names, lookup, settle
end

local function hostname()
  local f = io.open("/proc/sys/kernel/hostname", "r")
  local h = f and f:read("*l")
  if f then f:close() end
  return h and h ~= "" and h or "localhost"
end

-- Round lines (jsonl, a user's format): what each probe of a round ended
-- in, written once every probe of the round has ended, in round order.
-- sonde.strategy.mtr knows rounds but not the outcomes' order, so the
-- recorder sits around what it is given: the strategy (a round starts
-- with its probe at first_ttl; spec() tells which round a sequence number
-- belongs to) and the engine (whose probe_async callbacks see each
-- outcome). o: eng, first_ttl, limit() (the last TTL still counted: the
-- destination's, once found), emit(round, probes).
-- -> { strategy = wrap(strategy), eng = the engine to run on, close() }.
local function round_recorder(o)
  local eng = o.eng
  local rounds, by_seq, flow_of = {}, {}, {}
  local started, next_out, closed = 0, 1, false

  local function flush()
    while not closed do
      local r = rounds[next_out]
      if not r or r.open or r.pending > 0 then return end
      local probes = json.array{}
      for _, p in ipairs(r.probes) do
        if p.ttl <= o.limit() then probes[#probes + 1] = p end
      end
      table.sort(probes, function(a, b)
        if a.ttl ~= b.ttl then return a.ttl < b.ttl end
        return (a.flow or 0) < (b.flow or 0)
      end)
      rounds[next_out] = nil
      o.emit(next_out, probes)
      next_out = next_out + 1
    end
  end

  local function record(round, ttl, flow, r)
    -- cancelled: ours (beyond the destination, or stopped), not an outcome
    if r.status == "failed" and r.error and r.error.name == "ECANCELED" then return end
    local p = {}
    for k, v in pairs(r) do
      if k ~= "src" and k ~= "id" then p[k] = v end
    end
    p.ttl = p.ttl or ttl
    p.flow = flow
    round.probes[#round.probes + 1] = p
  end

  local rec = {}
  function rec.strategy(strat)
    return setmetatable({ spec = function(ttl, seq, flow)
      if ttl == o.first_ttl and (flow or 1) == 1 then
        started = started + 1
        local n = started
        rounds[n] = { open = true, pending = 0, probes = {} }
        -- the round's probes are all sent before the loop runs again
        eng:after(0, function()
          if rounds[n] then rounds[n].open = false end
          flush()
        end)
      end
      by_seq[seq] = started
      flow_of[seq] = flow
      return strat.spec(ttl, seq, flow)
    end }, { __index = strat })
  end
  rec.eng = setmetatable({
    probe_async = function(_, spec, fn)
      local round = rounds[by_seq[spec.seq] or 0]
      local flow = flow_of[spec.seq]
      by_seq[spec.seq], flow_of[spec.seq] = nil, nil
      if round then round.pending = round.pending + 1 end
      local id, err, name = eng:probe_async(spec, function(r)
        -- counted before fn (which may end the run: close() then writes
        -- the rest), written after it (fn may find the destination, and
        -- what lies beyond it is left out)
        if round then
          round.pending = round.pending - 1
          record(round, spec.ttl, flow, r)
        end
        fn(r)
        if round then flush() end
      end)
      if not id and round then
        round.pending = round.pending - 1
        record(round, spec.ttl, flow, { status = "failed", ttl = spec.ttl, seq = spec.seq,
          error = { name = name, message = err } })
      end
      return id, err, name
    end,
  }, { __index = function(_, k)
    local v = eng[k]
    if type(v) == "function" then
      return function(_, ...) return v(eng, ...) end
    end
    return v
  end })
  -- The run is over: every round still open is complete.
  function rec.close()
    for _, r in pairs(rounds) do r.open = false end
    flush()
    closed = true
  end
  return rec
end

-- The line under a markdown report: rounds, and what became of the run.
-- mtr's split mode (its split.c): a writer of the lines for one target.
-- Called with the hops' rows after every update, it writes "TTL LINE" for
-- each hop whose line changed since it last wrote one, and "-TTL" for each
-- hop beyond the last one now (a trace that got shorter). LINE is
-- "NAME LOSS RECEIVED SENT BEST AVG WORST" as mtr 0.95 writes it: LOSS in
-- thousandths of a percent and the times in whole milliseconds, both cut
-- down to an integer as mtr's C does; NAME (name_of(addr)) ??? where
-- nobody answered the probes done.
local function split_writer(sink, name_of)
  local lines, top = {}, 0   -- [ttl] = the line written last; the highest TTL written
  local function ms(s) return s and floor(floor(s * 1e6 + 0.5) / 1000) or 0 end
  return function(rows)
    local out = {}
    local last = #rows > 0 and rows[#rows].ttl or 0
    for ttl = top, last + 1, -1 do
      out[#out + 1] = string.format("-%d\n", ttl)
      lines[ttl] = nil
    end
    top = math.min(top, last)
    for _, row in ipairs(rows) do
      -- (a TTL none of whose probes is done yet has nothing to say)
      local line = row.sent > 0 and "???" or lines[row.ttl]
      if row.addr then
        line = string.format("%s %d %d %d %d %d %d", name_of(row.addr),
          floor((row.loss or 0) * 1000), row.received, row.sent,
          ms(row.best), ms(row.avg), ms(row.worst))
      end
      if line and line ~= lines[row.ttl] then
        out[#out + 1] = string.format("%d %s\n", row.ttl, line)
        lines[row.ttl] = line
        if row.ttl > top then top = row.ttl end
      end
    end
    if #out > 0 then
      sink:write(table.concat(out))
      sink:flush()
    end
  end
end

local function summary_text(doc)
  local t = string.format("%d round%s to %s (%s), %s", doc.rounds, doc.rounds == 1 and "" or "s",
    doc.target, doc.addr, doc.reached and "destination reached" or "destination not reached")
  if doc.stop_reason == "interrupted" or doc.stop_reason == "quit" then
    t = t .. " (" .. doc.stop_reason .. ")"
  elseif doc.stop_reason == "error" and doc.error then
    t = t .. string.format(" (stopped: %s: %s)", doc.error.name, doc.error.message)
  end
  return t
end

-- A hop as a csv or markdown row (COLUMNS).
local function row_of(doc, hop)
  local function m(v) return v and v * 1000 or nil end
  return { target = doc.target, ttl = hop.ttl, addr = hop.addr, name = hop.name,
    loss_pct = hop.loss, sent = hop.sent, received = hop.received, last_ms = m(hop.last),
    avg_ms = m(hop.avg), best_ms = m(hop.best), worst_ms = m(hop.worst),
    stddev_ms = m(hop.stddev), jitter_ms = m(hop.jitter) }
end

local function run(opts, ctx)
  -- mtr's spellings of sonde's options
  if opts.tcp then opts.protocol = "tcp" end
  if opts.udp then opts.protocol = "udp" end
  if opts.json then opts.format = "json" end
  -- -C: mtr's CSV, written as the text report is (--format csv is sonde's)
  if opts.csv and opts.format ~= "text" then
    cli.usage_error("-C is mtr's CSV, --format %s another format: give one of them", opts.format)
  end
  if opts.csv then opts.report = true end
  if opts.report_wide then opts.report = true end
  if opts.split and (opts.report or opts.format ~= "text") then
    cli.usage_error("-p (--split) writes mtr's split lines, not a report: not with %s",
      opts.csv and "-C" or opts.report_wide and "-w" or opts.report and "-r" or "--format " .. opts.format)
  end
  local show = { fields = assert(fmt.fields(opts.order)), wide = opts.report_wide,
    show_ips = opts.show_ips, numeric = opts.numeric, asn = opts.aslookup or opts.as,
    mpls = opts.mpls }
  local as_table
  if opts.as_file then
    local text, err = preopen.read(opts.as_file)
    if not text then cli.runtime_error("--as-file: %s", err) end
    as_table, err = asn.parse_pfx2as(text)
    if not as_table then cli.usage_error("--as-file %s: %s", opts.as_file, err) end
    show.asn = true
  end
  if opts.first_ttl > opts.max_ttl then
    cli.usage_error("-f %d is above -m %d", opts.first_ttl, opts.max_ttl)
  end
  if opts.flows and not opts.strategy then opts.strategy = "dublin" end
  if opts.flows and opts.strategy ~= "dublin" then
    cli.usage_error("--flows applies to --strategy dublin, not %s", opts.strategy)
  end
  local multipath = opts.strategy == "paris" or opts.strategy == "dublin"
  if multipath and opts.protocol == "tcp" then
    -- one flow is one 4-tuple, and the engine's TCP probes are connect()s:
    -- two with the same 4-tuple cannot be in flight at once, and an mtr
    -- round has a probe in flight at every TTL
    cli.usage_error("--strategy %s takes UDP (-u) or ICMP probes, not TCP: the probes of one TCP flow share one 4-tuple and cannot be in flight together", opts.strategy)
  end
  if opts.psize and opts.protocol == "tcp" then
    cli.usage_error("-s applies to ICMP and UDP probes: a TCP probe is a bare SYN")
  end
  if opts.port and opts.protocol == "icmp" then
    cli.usage_error("--port applies to UDP and TCP probes (-u, -T, --protocol), not icmp")
  end
  local stops = {}          -- [target address] = stops its rounds (with a reason)
  local controls = {}       -- [target address] = its rounds' pause(on) and reset()
  local function stop_all(why)
    for _, stop in pairs(stops) do stop(why) end
  end
  local run = kit.start(opts, ctx, { cmd = "mtr", what = "destinations reached",
    words = opts.target, own = { text = true, json = true },
    engine = { window = 4096 },
    check = function(tg)
      if opts.split and not tg.single then
        cli.usage_error("-p is mtr's split mode (--split), for one target; the probe protocol is --protocol PROTO (or -u, -T)")
      end
    end,
    on_signal = function() stop_all("interrupted") end })
  local tg, sink, eng, tally = run.tg, run.sink, run.eng, run.tally
  local live = not opts.report and not opts.split and opts.format == "text" and
    ctx.stdout == io.stdout and core.isatty(1)
  local count = opts.count or (not live and 10 or nil)

  local version = 0         -- bumped on every update (the live table redraws)
  local names, lookup, settle
  if not opts.numeric then
    names, lookup, settle = namer(eng, math.max(opts.dns_wait, 0.1), function() version = version + 1 end)
  end
  local as_of
  if show.asn then
    as_of = asn.lookup{ eng = eng, zone = opts.as_zone, zone6 = opts.as_zone6, table = as_table,
      timeout = math.max(opts.dns_wait, 0.1) }
  end
  local views = {}          -- each target's meta and state, in start order
  local reports = {}        -- the live table's reports, written after it
  local last                -- the last target's report

  -- text: the report or the live table, which show more than the JSON
  -- document holds (the names of a hop's other addresses, label stacks,
  -- the recent outcomes).
  local function doc_of(meta, state, now, text)
    local d = { type = "mtr", version = 1, rounds = state.rounds, reached = state.reached,
      stop_reason = state.stop_reason, error = state.error, src = state.src,
      hops = mtr.rows(state), started = state.started, duration = state.duration, now = now }
    for k, v in pairs(meta) do
      if k ~= "flow_ids" then d[k] = v end
    end
    for _, hop in ipairs(d.hops) do
      if hop.addr and names then hop.name = names[hop.addr] end
      -- each flow named by what sets it apart: its source port (ICMP: its
      -- checksum)
      for f, fl in ipairs(hop.flows or {}) do
        local id = meta.flow_ids and meta.flow_ids[f]
        if id then fl.sport, fl.checksum = id.sport, id.checksum end
      end
      local a = hop.addr and as_of and as_of.get(hop.addr)
      if a then hop.asn, hop.as_prefix = a.asn, a.prefix end
      if text then
        hop.names = names
        local h = state.hops[hop.ttl]
        if h then hop.history, hop.mpls = h.history, h.mpls and { h.mpls } end
      end
    end
    return d
  end

  -- Writes one target's report in the chosen format.
  local function emit(doc)
    local err = doc.stop_reason == "error" and doc.error or nil
    -- the EACCES of an ICMP datagram socket is no firewall's: say which
    -- sysctl refuses it (the hint follows on stderr, sonde.campaign)
    if err and target.icmp_hint(err) then err.message = target.ICMP_REFUSED end
    -- Every probe failed locally (no socket, no route): no hop was probed,
    -- and a row of ??? would say one was silent. mtr cannot start then;
    -- here the error is said on stderr, the text and CSV have no rows, the
    -- JSON document no hops.
    local sent = false
    for _, hop in ipairs(doc.hops) do
      if hop.sent > 0 then sent = true break end
    end
    if err and not sent then doc.hops = json.array{} end
    tally:add(doc.reached, summary_text(doc), err)
    last = doc
    if opts.split or (err and not sent and opts.format == "text") then
      -- nothing to show: split mode said everything as it came
    elseif opts.format == "json" then
      sink:write(json.encode(doc) .. "\n")
    elseif opts.format == "text" and opts.csv then
      sink:write((tally.targets == 1 and fmt.csv_header(show) or "")
        .. fmt.csv_rows(doc, show, "sonde-" .. core.version().sonde))
    elseif opts.format == "text" then
      sink:write((tally.targets > 1 and "\n" or "") .. fmt.report(doc, hostname(), show))
    else
      for _, hop in ipairs(doc.hops) do sink:row(row_of(doc, hop)) end
      sink:event(doc)
    end
    sink:flush()
  end

  -- mtr's -s is the whole packet: the payload is what the IP header (20
  -- bytes, IPv6 40) and the ICMP or UDP header (8) leave of it.
  local function payload(af)
    if not opts.psize then return nil end
    local hdr = (af == 6 and 40 or 20) + 8
    local n = opts.psize - hdr
    if n < 2 then
      cli.usage_error("-s %d: an IPv%d probe needs at least %d bytes (%d of headers, 2 of payload)",
        opts.psize, af, hdr + 2, hdr)
    elseif n > 1400 then
      cli.usage_error("-s %d: an IPv%d probe carries at most %d bytes (a payload of 1400)",
        opts.psize, af, hdr + 1400)
    end
    return n
  end

  -- Runs the rounds to one target until -c, q or the run.signal: -> its report.
  local function mtr_one(name, addr, af)
    local meta = { target = name, addr = addr, af = af, protocol = opts.protocol,
      first_ttl = opts.first_ttl, max_ttl = opts.max_ttl, interval = opts.interval,
      wait = opts.wait }
    local strat, nflows
    if multipath then
      -- paris: one flow; dublin: --flows of them, each a Paris flow
      local so = { dst = addr, proto = opts.protocol, wait = opts.wait, size = payload(af),
        port = opts.protocol ~= "icmp" and defaults.port(opts.protocol, opts.port) or nil,
        flows = opts.flows }
      local inst
      if opts.strategy == "dublin" then
        inst = dublin.new(so)
      else
        local p = paris.new(so)
        p.flow = 1
        inst = { flows = { p }, spec = function(ttl, seq) return p.spec(ttl, seq) end }
      end
      nflows = #inst.flows
      meta.strategy, meta.flows = opts.strategy, nflows
      meta.port = so.port
      meta.flow_ids = {}
      for f, fl in ipairs(inst.flows) do meta.flow_ids[f] = dublin.describe(fl) end
      strat = header.apply(inst, opts)
    else
      strat = header.apply(ping.new{ dst = addr, proto = opts.protocol, port = opts.port,
        wait = opts.wait, size = payload(af) }, opts)
      if opts.protocol ~= "icmp" then meta.port = strat.port end
      meta.strategy = opts.strategy
    end
    if tg.single then
      local fmeta = { command = "mtr", version = 1, columns = COLUMNS, precision = PRECISION,
        count = count }
      for k, v in pairs(meta) do fmeta[k] = v end
      sink:start(fmeta)
    end
    local view = { meta = meta }
    views[#views + 1] = view
    local split = opts.split and split_writer(sink, function(a)
      if show.numeric or not names then return a end
      local n = names[a] or a
      return show.show_ips and n .. " " .. a or n
    end)
    local probing, rounds = eng, nil
    if sink:events() then
      rounds = round_recorder{ eng = eng, first_ttl = opts.first_ttl,
        limit = function() return view.state and view.state.limit or opts.max_ttl end,
        emit = function(n, probes)
          sink:event{ type = "mtr_round", version = 1, target = name, addr = addr,
            round = n, probes = probes }
          -- nobody reads any more (a closed pipe, a full disk): stop
          if not sink:ok() then stop_all("quit") end
        end }
      strat, probing = rounds.strategy(strat), rounds.eng
    end
    local st = mtr.run{
      eng = probing, strategy = strat, dst = addr, flows = nflows,
      first_ttl = opts.first_ttl, max_ttl = opts.max_ttl,
      count = count, interval = opts.interval,
      on_update = function(state)
        view.state = state
        version = version + 1
        if split then split(mtr.rows(state)) end
        for _, hop in pairs(state.hops) do
          for _, a in ipairs(hop.addrs) do
            if lookup then lookup(a) end
            if as_of then as_of.ask(a) end
          end
        end
      end,
      on_stop = function(fn, control)
        stops[addr] = fn
        controls[addr] = control
        if run.signal then fn("interrupted") end
      end,
    }
    stops[addr] = nil
    controls[addr] = nil
    view.state = st
    if split then split(mtr.rows(st)) end   -- the last outcomes' lines
    if rounds then rounds.close() end
    -- names and AS numbers still on their way: waited for, within --dns-wait
    if not run.signal then
      local t0 = eng:now()
      if settle then settle(opts.dns_wait) end
      if as_of then as_of.settle(math.max(0, opts.dns_wait - (eng:now() - t0))) end
    end
    local doc = doc_of(meta, st, nil, opts.format == "text")
    doc.now = nil
    if live then reports[#reports + 1] = doc else emit(doc) end
  end

  local reader, screen
  local running = true
  local function show_live()
    local width = 80
    local mode, help, paused = "stats", false, false
    local fields_default = show.fields
    local function redraw() version = version + 1 end
    -- mtr's keys. Ctrl-C and Ctrl-\, bytes in raw mode, are the SIGINT and
    -- SIGQUIT they are in the terminal's usual mode: the report,
    -- interrupted, exit 130 or 131.
    local KEYS = {
      q = function() stop_all("quit") end,
      p = function()
        paused = not paused
        for _, c in pairs(controls) do c.pause(paused) end
      end,
      r = function() for _, c in pairs(controls) do c.reset() end end,
      d = function() mode = mode == "stats" and "history" or "stats" end,
      n = function() show.numeric = not show.numeric end,
      j = function()
        show.fields = show.fields == JITTER_FIELDS and fields_default or JITTER_FIELDS
      end,
      ["?"] = function() help = not help end,
      h = function() help = not help end,
    }
    reader = eng:tty{
      on_key = function(keys)
        if not keys then return end
        local sig = keys:find("\3", 1, true) and "SIGINT"
          or keys:find("\28", 1, true) and "SIGQUIT"
        if sig then
          if not run.signal then
            run.signal = sig
            stop_all("interrupted")
          end
          return
        end
        for k in keys:gmatch(".") do
          local fn = KEYS[k:lower()]
          if fn then fn() end
        end
        redraw()
      end,
      on_resize = function(columns)
        width = usable_width(columns)
        redraw()
      end,
    }
    if reader then width = usable_width(reader:winsize()) end
    screen = true
    ctx.stdout:write(ESC.enter)
    ctx.stdout:flush()
    eng:spawn(function()
      local shown = -1
      -- Redraw when something changed, at most ten times a second; ends
      -- when the run does.
      while running do
        if version ~= shown then
          shown = version
          local lines = {}
          local o = { fields = show.fields, show_ips = show.show_ips, numeric = show.numeric,
            asn = show.asn, mpls = show.mpls, mode = mode, paused = paused }
          for _, v in ipairs(views) do
            if v.state then
              if #lines > 0 then lines[#lines + 1] = "" end
              -- one key legend, under the first target's title
              o.keys = #lines == 0 and LEGEND or nil
              for _, l in ipairs(fmt.live(doc_of(v.meta, v.state, os.time(), true), width, o)) do
                lines[#lines + 1] = l
              end
            end
          end
          if help then
            local h = {}
            for _, l in ipairs(HELP) do h[#h + 1] = l:sub(1, width) end
            lines = h
          end
          ctx.stdout:write(ESC.home, table.concat(lines, ESC.eol .. "\n"), ESC.eol, "\n", ESC.eos)
          ctx.stdout:flush()
        end
        if running then eng:sleep(0.1) end
      end
    end)
  end
  run:each{
    one = mtr_one,
    progress = not live,  -- no progress line over the live table
    start = { command = "mtr", version = 1, columns = COLUMNS, precision = PRECISION, count = count,
      protocol = opts.protocol, first_ttl = opts.first_ttl, max_ttl = opts.max_ttl,
      interval = opts.interval, wait = opts.wait },
    before = live and show_live or nil,
    after = function() running = false end,
    -- Every way out: the terminal as it was.
    teardown = function()
      if screen then ctx.stdout:write(ESC.leave); ctx.stdout:flush() end
      if reader then reader:close() end
    end,
  }

  for _, doc in ipairs(reports) do emit(doc) end
  local d = last
  local sum = { text = tally:text() }
  if tg.single and d then
    sum.rounds, sum.reached, sum.stop_reason, sum.error, sum.started, sum.duration =
      d.rounds, d.reached, d.stop_reason, d.error, d.started, d.duration
  else
    sum.targets, sum.reached = tally.targets, tally.ok
    sum.stop_reason = run.signal and "interrupted" or "done"
  end
  return run:finish(sum)
end

return { spec = spec, run = run }
