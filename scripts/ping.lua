-- sonde ping: is the host up, and how far away is it? ICMP echo, UDP to a
-- closed port, or TCP SYN, one probe per round (sonde.strategy.ping).

local cli = require "sonde.cli"
local defaults = require "sonde.defaults"
local target = require "sonde.target"
local output = require "sonde.output"
local campaign = require "sonde.campaign"
local header = require "sonde.header"
local json = require "sonde.json"
local stats = require "sonde.stats"
local strategy = require "sonde.strategy.ping"
local formats = require "sonde.format"
local kit = require "sonde.kit"

local FORMATS = formats.names{ "text", "json" }

-- csv and markdown: one row per probe.
-- -p PATTERN as iputils reads it: 1 to 32 hex digits taken two at a
-- time from the left (a last lone digit is a byte of its own: "abc" is
-- 0xab 0x0c), at most 16 bytes. The bytes as pairs of hex digits (the
-- probe's pattern field), or nil and why. A protocol name is sonde's -p
-- of other commands: say where it went.
local function check_pattern(v)
  if v == "icmp" or v == "udp" or v == "tcp" then
    return nil, "-p is the pattern (iputils); use --protocol " .. v
  end
  if not v:match("^%x+$") or #v > 32 then
    return nil, "patterns must be specified as 1 to 32 hex digits"
  end
  local bytes = {}
  for pair in v:gmatch("%x%x?") do bytes[#bytes + 1] = string.format("%02x", tonumber(pair, 16)) end
  return table.concat(bytes)
end

local COLUMNS = { "target", "addr", "protocol", "seq", "status", "kind", "code", "from", "rtt_ms",
  "ttl", "reply_ttl", "icmp_seq", "sport", "dport", "error" }

local spec = {
  name = "ping",
  summary = "send probes to a host and report replies, loss and round-trip times",
  usage = "sonde ping [options] TARGET... | --targets FILE",
  description = [[
Sends one probe to TARGET every -i seconds (-c times, or until interrupted) and prints each outcome as it arrives, then a summary: how many probes went out, how many the destination answered, the loss, and the minimum, average, maximum and mean deviation of the round-trip times, as ping(8) does.

With --protocol icmp (the default) the probe is an ICMP echo request and the answer an echo reply. With --protocol udp it is a UDP datagram to a port that should be closed (33434, one more per probe, as traceroute); the destination answers with ICMP port unreachable. With --protocol tcp it is a TCP SYN to --port (80): a SYN-ACK (open) or a RST (closed) both say the host is up. A probe gets -W seconds to be answered; the next one does not wait for it.

The options mean what they mean to iputils ping: -c count, -i interval, -w deadline (the whole run ends after that many seconds; with -c, it ends once -c replies came or at the deadline, whichever is first), -W the wait for one answer, -s payload bytes, -t TTL, -q quiet (the start and the statistics only), -n numeric (sonde ping never looks names up: accepted, changes nothing), -D a [unix time] before each line, -M do|want|dont (path MTU discovery: don't fragment, the kernel's choice, may fragment), -f flood (root only: a '.' per probe sent, a backspace per answer, 100 probes a second unless -i says otherwise). -p PATTERN fills the ICMP or UDP payload with up to 16 bytes given as 1 to 32 hex digits (-p ff, -p 0123456789abcdef), repeated from the payload's first byte, and text output starts with PATTERN: 0x.. as iputils does; sonde keeps its 4-byte nonce in the payload's first bytes (after the two bytes a held checksum adjusts) where iputils keeps its timestamp, so the pattern shows from the fifth byte on (iputils: from the seventeenth). -p is not for TCP probes. The probe protocol is --protocol icmp|udp|tcp (sonde's -p elsewhere: here -p is iputils' pattern). An interval under 2 ms (-i 0.001, -i 0) is root's alone, as iputils has it. -I ADDR|IFACE sends from that address (--source) or by that interface (--interface). Differences that remain: -Q (use --tos), -R, -T and -O are not taken; a probe left unanswered prints a 'no answer' line (iputils' -O habit).

An answer from somewhere else (a router's time exceeded when -t is too small, a host or network unreachable, a filter's administratively prohibited) is printed as an error from that address and does not count as received. A probe that could not be sent (no route, no permission) is printed with its error (ENETUNREACH, EPERM, ...).

Several targets (addresses, host names, CIDR prefixes such as 198.18.0.0/28, and the lines of --targets files) are pinged at once, --parallel at a time, on one engine: each text line then starts with its target ("198.18.8.2: 64 bytes from ..."), each target's statistics come when its pings end, and on standard error a progress line (targets done out of the total, the rate, the time left; on a terminal, for runs longer than two seconds) and at the end a line that says how many targets answered (neither with -q). The targets form a set, probed in a seeded order (--seed); --shard K/N pings one shard of them, as sonde trace does.

Raw sockets read the ICMP answers: run as root or give the executable CAP_NET_RAW.

Formats (--format): text (ping's lines as the outcomes arrive, then the statistics); json (one document at the end: "type":"ping", every probe in sequence order, the summary); jsonl (a "ping_probe" line per probe as its outcome arrives, the outcome under "probe", then the ping document as the last line; both are definitions of scripts/sonde/schema/sonde.schema.json); csv (a header row, then a row per probe as it ends: target, addr, protocol, seq, status, kind, code, from (who answered), rtt_ms, ttl, reply_ttl, icmp_seq, sport, dport, error); markdown (the same rows as a table, then the statistics line); or the path of a Lua format module (examples/format_example.lua: its record() gets the jsonl lines, its footer() the summary). -o FILE writes to FILE atomically (a temporary file renamed over FILE at the end; when interrupted, FILE gets what was collected). Files named on the command line are opened before sonde gives up its privileges: anywhere the user who ran it may read or write, and FILE belongs to that user.

With several targets, json writes one document per target (a line each, as each target's pings end), jsonl and a format module get each target's document when its pings end, and the footer's summary counts the targets (targets, answered) and gives each one's statistics line (text).

Exit status:

    0    the destination answered at least one probe (several targets:
         every target did)
    1    it answered none (several: some target answered none)
    2    usage error
    3    runtime error: a name that does not resolve (several targets: it
         is reported and skipped), no permission, every probe failed
         locally (no route), -o not writable
    130  interrupted by SIGINT (129 SIGHUP, 131 SIGQUIT, 143 SIGTERM); the summary comes first]],
  options = campaign.options(header.options({
    { nil, "--protocol", arg = "PROTO", choices = { "icmp", "udp", "tcp" }, default = "icmp",
      help = "probe protocol: ICMP echo, UDP to a closed port, or TCP SYN" },
    { "-p", key = "pattern", arg = "PATTERN", check = check_pattern,
      help = "ICMP/UDP: fill the payload with up to 16 bytes given as 1 to 32 hex digits (iputils' -p; the protocol is --protocol)" },
    { "-c", "--count", arg = "N", type = "int", min = 1, max = 100000000,
      help = "stop after N probes (default: until interrupted); with -w, after N replies" },
    { "-i", "--interval", arg = "SECONDS", type = "number", min = 0, max = 3600,
      help = "time between the starts of two probes (default 1; -f: 0.01); under 0.002 for root only" },
    { "-w", "--deadline", arg = "SECONDS", type = "number", min = 0.001, max = 2147483,
      help = "end the run after SECONDS, however many probes went out or came back (iputils' -w)" },
    { "-W", "--wait", arg = "SECONDS", type = "number", min = 0.001, max = 600, default = "2",
      help = "how long to wait for the answer to one probe (iputils' -W)" },
    { "-n", key = "numeric", flag = true,
      help = "numeric output only (sonde ping never looks names up: accepted for iputils' habit)" },
    { "-D", key = "timestamp", flag = true,
      help = "text: print the time (Unix seconds, microseconds) before each line, as [1700000000.123456]" },
    { "-M", arg = "PMTUDISC", key = "pmtudisc", choices = { "do", "want", "dont" },
      help = "path MTU discovery: do (don't fragment: --df yes), want (the kernel's choice), dont (may be fragmented: --df no)" },
    { "-f", key = "flood", flag = true,
      help = "flood (root only): 100 probes a second (or -i), a '.' per probe sent and a backspace per answer instead of lines" },
    { "-t", "--ttl", arg = "N", type = "int", min = 1, max = 255, default = defaults.TTL,
      help = "TTL (IPv6: hop limit) of the probes" },
    { "-s", "--size", arg = "BYTES", type = "int", min = 1, max = 65507, default = 56,
      help = "ICMP and UDP payload bytes (an ICMP echo is 8 bytes more)" },
    { nil, "--port", arg = "PORT", type = "int", min = 1, max = 65535,
      help = "UDP: the first destination port, one more per probe (default 33434); TCP: the destination port (default 80)" },
    defaults.tcp_mode_option(),
    target.IPV4_OPTION,
    target.IPV6_OPTION,
    { nil, "--format", arg = "FORMAT", type = "string", default = "text", check = formats.check(FORMATS),
      help = "output format: text as it goes, json (one document at the end), jsonl (a line per probe, then the document), csv or markdown (a row per probe), or the path of a Lua format module (see Formats above)" },
    output.OPTION,
    { "-I", key = "bind_to", arg = "ADDR|IFACE", check = header.check_bind_to,
      help = "as iputils ping -I: a numeric address is --source, anything else --interface" },
  }, {}), { parallel = 256, what = "targets pinged", q = true }),
  positionals = { { name = "TARGET", many = true, help = "host name, numeric address or CIDR prefix" } },
  exclusive = { { "ipv4", "ipv6" }, { "pmtudisc", "df" } },
  -- iputils ping's options that sonde ping does not take
  hints = {
    ["-Q"] = "write --tos N",
    ["-O"] = "sonde ping always reports a probe left unanswered",
    ["-R"] = "the record-route option is not supported",
    ["-T"] = "the timestamp option is not supported",
  },
  examples = {
    "sonde ping -c 5 198.18.8.2",
    "sonde ping --protocol tcp --port 443 -c 3 -i 0.2 2001:db8:8::2",
    "sonde ping --protocol udp -t 3 -c 1 198.18.8.2",
    "sonde ping -p ff -c 2 198.18.8.2",
    "sonde ping -c 10 --format json 198.18.8.2",
    "sonde ping -c 100 -i 0.2 --format csv -o rtt.csv 198.18.8.2",
    "sonde ping -c 3 -i 0.2 198.18.8.2 198.18.9.0/29 2001:db8:8::2",
  },
}

-- ping's words for an answer that is not the destination's.
local UNREACH_TEXT = {
  net = "Destination Net Unreachable", host = "Destination Host Unreachable",
  protocol = "Destination Protocol Unreachable", port = "Destination Port Unreachable",
  frag_needed = "Frag needed and DF set", source_route = "Source Route Failed",
  prohibited = "Packet filtered", net_unknown = "Destination Net Unknown",
  host_unknown = "Destination Host Unknown", precedence = "Precedence Violation",
  beyond_scope = "Beyond Scope of Source Address", address = "Address Unreachable",
  policy = "Source Address Failed Ingress/Egress Policy",
  reject_route = "Reject Route to Destination", other = "Destination Unreachable",
}

local function error_text(r)
  if r.kind == "time_exceeded" then return "Time to live exceeded" end
  if r.kind == "dest_unreachable" then
    local t = UNREACH_TEXT[r.code] or "Destination Unreachable"
    if r.code == "frag_needed" and r.mtu then t = t .. " (mtu = " .. r.mtu .. ")" end
    return t
  end
  if r.kind == "packet_too_big" then return "Packet too big: mtu=" .. tostring(r.mtu or "?") end
  if r.kind == "param_problem" then return "Parameter problem" end
  if r.kind == "self_connect" then return "connected to itself (self-connect)" end
  if r.kind == "reset" then return "connection reset" end
  return r.kind
end

local function ms(s) return string.format("%.3f", s * 1000) end

-- One outcome as a line of text.
local function line(r, o)
  local seqname = o.protocol .. "_seq=" .. r.seq
  local ttl = r.reply_ttl and (" ttl=" .. r.reply_ttl) or ""
  if r.status == "reply" and strategy.answered(r, o.addr) then
    if r.kind == "echo_reply" then
      return string.format("%d bytes from %s: %s%s time=%s ms\n", o.size + 8, r.addr,
        seqname, ttl, ms(r.rtt))
    end
    local what
    if r.kind == "tcp_synack" then what = "open (SYN-ACK)"
    elseif r.kind == "tcp_rst" then what = "closed (RST)"
    elseif r.kind == "udp_reply" then what = "open (UDP reply)"
    elseif r.code == "port" then what = "closed (port unreachable)"
    else what = "protocol unreachable" end
    return string.format("from %s: %s port %d %s%s time=%s ms\n", r.addr, seqname,
      r.dport or o.port, what, ttl, ms(r.rtt))
  elseif r.status == "reply" then
    return string.format("From %s %s %s\n", r.addr or "?", seqname, error_text(r))
  elseif r.status == "timeout" then
    return string.format("no answer for %s within %g s\n", seqname, o.wait)
  end
  local e = r.error or { name = "UNKNOWN", message = "unknown error" }
  if e.name == "EMSGSIZE" then
    -- iputils: "local error: message too long, mtu=1280"
    return string.format("%s %s: %s: local error: message too long%s\n", seqname, r.status,
      e.name, r.mtu and (", mtu=" .. r.mtu) or " (over the path MTU this host knows)")
  end
  return string.format("%s %s: %s: %s\n", seqname, r.status, e.name, e.message)
end

-- The summary of the outcomes, as iputils counts them: sent counts every
-- probe that was tried (answered, timed out, or failed locally: a send
-- that fails is a packet transmitted and lost, "+N errors"), received
-- those the destination answered, errors the answers from elsewhere and
-- the probes that failed. A probe skipped before it was sent (its source
-- port was busy) is neither sent nor lost.
local function summarize(results, dst)
  local series = stats.series()
  local errors, failed = 0, 0
  for _, r in ipairs(results) do
    if r.status == "reply" and strategy.answered(r, dst) then
      series:add(r.rtt)
    elseif r.status ~= "skipped" then
      series:add(nil)
      if r.status ~= "timeout" then errors = errors + 1 end
      if r.status == "failed" then failed = failed + 1 end
    end
  end
  local s = series:summary()
  return { sent = s.sent, received = s.received, errors = errors, loss = s.loss,
    min = s.best, avg = s.avg, max = s.worst, mdev = s.mdev }, failed
end

local function own_pid()
  return require("sonde.core").pid()
end

-- The statistics, as ping prints them: "N packets transmitted, ..." and,
-- when something answered, "rtt min/avg/max/mdev = ... ms" (nil otherwise).
local function statistics(summary, duration)
  local counts = string.format("%d packets transmitted, %d received, %s%g%% packet loss, time %dms",
    summary.sent, summary.received,
    summary.errors > 0 and ("+" .. summary.errors .. " errors, ") or "",
    summary.loss, math.floor(duration * 1000 + 0.5))
  local rtt
  if summary.received > 0 then
    rtt = string.format("rtt min/avg/max/mdev = %s/%s/%s/%s ms",
      ms(summary.min), ms(summary.avg), ms(summary.max), ms(summary.mdev))
  end
  return counts, rtt
end

-- A probe's outcome as a csv/markdown row.
local function row_of(r, meta)
  return { target = meta.target, addr = meta.addr, protocol = meta.protocol, seq = r.seq,
    status = r.status, kind = r.kind, code = r.code, from = r.addr,
    rtt_ms = r.rtt and r.rtt * 1000 or nil, ttl = r.ttl, reply_ttl = r.reply_ttl,
    icmp_seq = r.icmp_seq, sport = r.sport, dport = r.dport,
    error = r.error and r.error.name or nil }
end

-- A probe's outcome as a jsonl line: the outcome without the source
-- address (the document names it once), under "probe".
local function event_of(r, meta)
  local p = {}
  for k, v in pairs(r) do
    if k ~= "src" and k ~= "id" then p[k] = v end
  end
  return { type = "ping_probe", version = 1, target = meta.target, addr = meta.addr,
    protocol = meta.protocol, probe = p }
end

-- The ping document of one target.
local function document(meta, out, summary)
  local doc = { type = "ping", version = 1, probes = json.array{}, summary = summary,
    stop_reason = out.stop_reason, started = out.started, duration = out.duration }
  for k, v in pairs(meta) do doc[k] = v end
  for _, r in ipairs(out.results) do
    doc.src = doc.src or r.src
    r.src = nil
    doc.probes[#doc.probes + 1] = r
  end
  return doc
end

-- iputils' limit for users: no interval under 2 ms, so no flood.
local MIN_USER_INTERVAL = 0.002

-- Before the privileges are dropped: is the user root? (-f and intervals
-- under 2 ms are root's alone, as iputils has them: the uid that ran it,
-- not a capability.)
local function prepare(opts)
  opts.root = require("sonde.core").uid() == 0
end

local function run(opts, ctx)
  if opts.port and opts.protocol == "icmp" then
    cli.usage_error("--port applies to --protocol udp and --protocol tcp, not icmp")
  end
  if opts.pattern and opts.protocol == "tcp" then
    cli.usage_error("-p %s: the pattern fills ICMP and UDP payloads, not --protocol tcp", opts.pattern)
  end
  if opts.flood and not opts.root then
    cli.usage_error("-f: cannot flood; only root may (minimal interval allowed for a user is 2 ms)")
  end
  opts.interval = opts.interval or (opts.flood and 0.01 or 1)
  if opts.interval < MIN_USER_INTERVAL and not opts.root then
    cli.usage_error("-i %g: cannot flood; minimal interval allowed for a user is 2 ms (0.002)",
      opts.interval)
  end
  local size_max
  for _, f in ipairs(require("sonde.core").probe_fields) do
    if f.name == "size" then size_max = f.max end
  end
  if size_max and opts.size > size_max and opts.protocol ~= "tcp" then
    cli.usage_error("-s %d: the engine sends at most %d payload bytes", opts.size, size_max)
  end
  if opts.pmtudisc == "do" then opts.df = "yes"
  elseif opts.pmtudisc == "dont" then opts.df = "no" end
  local timestamp = opts.timestamp and function()
    return string.format("[%.6f] ", require("sonde.core").time())
  end or function() return "" end
  local shown = opts.format == "text" and not opts.quiet and not opts.flood
  local hinted = false
  local text = opts.format == "text"
  local stops = {}          -- [target] = the function that stops its pings
  local function stop_all()
    for _, stop in pairs(stops) do stop() end
  end
  local run = kit.start(opts, ctx, { cmd = "ping", what = "targets answered",
    words = opts.target, own = { text = true, json = true }, engine = { window = 1024 },
    on_signal = stop_all })
  local tg, sink, eng, tally = run.tg, run.sink, run.eng, run.tally
  -- iputils names the pattern once, before its first line (not with -q)
  if text and opts.pattern and not opts.quiet then
    sink:write("PATTERN: 0x" .. opts.pattern .. "\n")
  end
  local icmp_id = own_pid() % 65535 + 1
  local last                -- the last target's figures

  -- Pings one target to the end (or the signal) and writes its results;
  -- with several targets, text lines start with the target's name.
  local function ping_one(name, addr, af)
    local prefix = tg.single and "" or (name .. ": ")
    local strat = header.apply(strategy.new{ dst = addr, proto = opts.protocol, port = opts.port,
      size = opts.protocol ~= "tcp" and opts.size or nil, wait = opts.wait, icmp_id = icmp_id,
      pattern = opts.pattern }, opts)
    local meta = { target = name, addr = addr, af = af, protocol = opts.protocol,
      port = opts.protocol ~= "icmp" and strat.port or nil,
      size = opts.protocol ~= "tcp" and opts.size or nil, pattern = opts.pattern,
      ttl = opts.ttl, wait = opts.wait, interval = opts.interval, count = opts.count }
    if text then
      local head
      -- -I: iputils names the source and the interface ("from SRC IFACE:")
      local from = ""
      if opts.source or opts.interface then
        from = string.format(" from %s %s:", opts.source or eng:source(addr, opts.interface) or "?",
          opts.interface or "")
      end
      if opts.protocol == "icmp" then
        head = string.format("PING %s (%s)%s %d(%d) bytes of data.", name, addr, from,
          opts.size, opts.size + 8 + (af == 4 and 20 or 40))
      elseif opts.protocol == "udp" then
        head = string.format("PING %s (%s) udp port %d+, %d bytes of data.", name,
          addr, strat.port, opts.size)
      else
        head = string.format("PING %s (%s) tcp port %d.", name, addr, strat.port)
      end
      sink:write(head .. "\n")
      sink:flush()
    end
    if tg.single then
      local fmeta = { command = "ping", version = 1, columns = COLUMNS }
      for k, v in pairs(meta) do fmeta[k] = v end
      sink:start(fmeta)
    end
    local out = strategy.run{
      eng = eng, strategy = strat, ttl = opts.ttl, count = opts.count,
      interval = opts.interval,
      deadline = opts.deadline,
      answered = function(r) return r.status == "reply" and strategy.answered(r, addr) end,
      on_sent = opts.flood and text and function()
        sink:write(".")
        sink:flush()
      end or nil,
      on_result = function(r)
        local hint = r.error and target.icmp_hint(r.error)
        if hint then
          r.error.message = target.ICMP_REFUSED
          if not hinted then
            hinted = true
            run.tally.hinted = true   -- said once: not again at the end
            ctx.stderr:write("sonde ping: ", hint, "\n")
          end
        end
        if opts.format == "json" then
          -- the document at the end holds the outcomes
        elseif text and opts.flood then
          if r.status == "reply" and strategy.answered(r, addr) then sink:write("\b") end
          sink:flush()
        elseif shown then
          sink:write(timestamp() .. prefix .. line(r, meta))
          sink:flush()
        elseif text then
          -- quiet: the start and the statistics only
        else
          sink:event(event_of(r, meta))
          sink:row(row_of(r, meta))
        end
        -- nobody reads any more (a closed pipe, a full disk): stop
        if not sink:ok() then stop_all() end
      end,
      interrupted = function() return run.signal ~= nil end,
      on_interrupt = function(stop) stops[addr] = stop end,
    }
    stops[addr] = nil

    local summary, failed = summarize(out.results, addr)
    local counts, rtt = statistics(summary, out.duration)
    tally:add(summary.received > 0, prefix .. counts .. (rtt and ("; " .. rtt) or ""),
      failed > 0 and failed == #out.results and out.results[1].error or nil)
    last = { summary = summary, out = out }
    local doc = document(meta, out, summary)
    if text then
      sink:write(string.format("%s--- %s ping statistics ---\n", tg.single and "\n" or "", name))
      sink:write(counts .. "\n")
      if rtt then sink:write(rtt .. "\n") end
    elseif opts.format == "json" then
      sink:write(json.encode(doc) .. "\n")
    else
      sink:event(doc)
    end
    sink:flush()
  end

  run:each{
    one = ping_one,
    start = { command = "ping", version = 1, columns = COLUMNS, protocol = opts.protocol,
      ttl = opts.ttl, wait = opts.wait, interval = opts.interval, count = opts.count },
  }

  -- the footer's summary: one target's figures; several targets' counts
  local sum = { stop_reason = run.signal and "interrupted" or "done", text = tally:text() }
  if tg.single and last then
    local out = last.out
    sum.stop_reason, sum.started, sum.duration = out.stop_reason, out.started, out.duration
    for k, v in pairs(last.summary) do sum[k] = v end
  else
    sum.targets, sum.answered = tally.targets, tally.ok
  end
  return run:finish(sum)
end

return { spec = spec, run = run, prepare = prepare }
