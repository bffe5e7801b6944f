-- sonde tcping: TCP connect latency, attempt after attempt.

local cli = require "sonde.cli"
local defaults = require "sonde.defaults"
local target = require "sonde.target"
local output = require "sonde.output"
local campaign = require "sonde.campaign"
local header = require "sonde.header"
local json = require "sonde.json"
local formats = require "sonde.format"
local kit = require "sonde.kit"

local FORMATS = formats.names{ "text", "json" }

-- csv and markdown: one row per attempt.
local COLUMNS = { "target", "addr", "port", "seq", "status", "kind", "code", "from", "rtt_ms",
  "sport", "matched", "error" }

local spec = {
  name = "tcping",
  summary = "measure TCP connect latency to a port",
  usage = "sonde tcping [options] HOST... PORT | --targets FILE PORT",
  description = [[
Connects to HOST:PORT again and again (-c times, one every -i seconds) and reports each attempt's outcome and the connect time (SYN to SYN-ACK), then min/avg/max and loss, like tcping and paping.

With --payload the text is written once connected; with --expect the reply is read until the text appears. An attempt succeeds when the connection is established (and, with --expect, the text arrived).

Every attempt ends in one outcome, named as trace's probes are: tcp_synack (connected), tcp_rst (refused: the host answered, the port is closed), reset (ECONNRESET: the peer reset the connection; EPIPE: it had closed and we wrote), closed (the peer closed before the expected text), dest_unreachable (a router or the host said so), timeout (no answer within -w: sonde never waits for the kernel's SYN retries), skipped (the source port was busy), failed (a local error, named: EADDRNOTAVAIL, ENETUNREACH, ...), self_connect (the kernel connected the socket to itself; never counted as open).

Several hosts (names, addresses, CIDR prefixes such as 198.18.0.0/28, and the lines of --targets files; PORT is the last word) are tried at once, --parallel at a time, on one engine: each text line then starts with its host, each host's statistics come when its attempts end, and on standard error a progress line (hosts done out of the total, the rate, the time left; on a terminal, for runs longer than two seconds) and at the end a line that says how many hosts accepted a connection (neither with -q). The hosts form a set, tried in a seeded order (--seed); --shard K/N tries one shard of them, as sonde trace does. With --bind sequence, each host gets its own -c source ports (--sport + the attempts before it). json then writes a document per host (a line each), jsonl and a format module get each host's document when its attempts end, and the footer's summary counts the hosts (targets, succeeded).

Formats (--format): text (a line per attempt as it ends, then the statistics); json (one document at the end: "type":"tcping", the attempts and the summary); jsonl (a "tcping_attempt" line per attempt as it ends, with the attempt's outcome under "attempt", then the tcping document as the last line; both are definitions of scripts/sonde/schema/sonde.schema.json); csv (a header row, then a row per attempt as it ends: target, addr, port, seq, status, kind, code, from (who answered), rtt_ms, sport, matched, error); markdown (the same rows as a table, then the statistics line); or the path of a Lua format module (examples/format_example.lua: its record() gets the jsonl lines, its footer() the summary). -o FILE writes to FILE atomically (a temporary file renamed over FILE at the end; when interrupted, FILE gets the attempts made). Files named on the command line are opened before sonde gives up its privileges: anywhere the user who ran it may read or write, and FILE belongs to that user.

Exit status: 0 at least one attempt succeeded (several hosts: for every host), 1 none did (several: for some host), 2 usage error, 3 runtime error (a name that does not resolve: with several hosts it is reported and skipped; every attempt failed locally, e.g. ENETUNREACH or EADDRNOTAVAIL; -o not writable), 130 interrupted by SIGINT (129 SIGHUP, 131 SIGQUIT, 143 SIGTERM; the statistics come first).]],
  options = campaign.options(header.options({
    { "-c", "--count", arg = "N", type = "int", min = 1, max = 1000000, default = 4,
      help = "number of attempts" },
    { "-i", "--interval", arg = "SECONDS", type = "number", min = 0, max = 3600, default = "1",
      help = "time between the starts of two attempts" },
    { "-w", "--wait", arg = "SECONDS", type = "number", min = 0.001, max = 600, default = "2",
      help = "how long one attempt may take (connect, and the reply with --expect)" },
    target.IPV4_OPTION,
    target.IPV6_OPTION,
    { nil, "--bind", arg = "POLICY", choices = { "kernel", "sequence", "fixed" }, default = "kernel",
      help = "source port: kernel (port 0), sequence (--sport for attempt 1, one more for each next), fixed (--sport)" },
    { nil, "--sport", arg = "PORT", type = "int", min = 1, max = 65535,
      help = "source port (fixed) or its base (sequence)" },
    { nil, "--ttl", arg = "N", type = "int", min = 1, max = 255, default = defaults.TTL,
      help = "TTL of the SYN" },
    { nil, "--payload", arg = "TEXT", type = "string",
      help = "write TEXT once connected (\\r, \\n and \\t are understood)" },
    { nil, "--expect", arg = "TEXT", type = "string",
      help = "read until TEXT arrives (\\r, \\n and \\t are understood)" },
    defaults.tcp_mode_option("connect"),
    { nil, "--format", arg = "FORMAT", type = "string", default = "text", check = formats.check(FORMATS),
      help = "output format: text, json, jsonl (a line per attempt, then the document), csv or markdown (a row per attempt), or the path of a Lua format module (see Formats above)" },
    output.OPTION,
  }, {}), { parallel = 64, what = "targets connected to", q = true }),
  positionals = { { name = "HOST", many = true, help = "host name, numeric address or CIDR prefix" },
    { name = "PORT", required = true, type = "int", min = 1, max = 65535 } },
  exclusive = { { "ipv4", "ipv6" } },
  examples = {
    "sonde tcping -c 10 198.18.8.2 80",
    "sonde tcping --payload 'GET / HTTP/1.0\\r\\n\\r\\n' --expect 'HTTP/1.' 198.18.8.2 80",
    "sonde tcping --bind sequence --sport 40000 -i 0.2 2001:db8:8::2 443",
    "sonde tcping -c 100 -i 0.1 --format jsonl -o attempts.jsonl 198.18.8.2 443",
    "sonde tcping -c 3 198.18.8.2 198.18.9.0/29 2001:db8:8::2 22",
    "sonde tcping --targets web-servers.txt -c 1 -q --format csv 443",
  },
}

local ESCAPES = { r = "\r", n = "\n", t = "\t", ["\\"] = "\\" }

local function unescape(s)
  return s and (s:gsub("\\(.)", function(c) return ESCAPES[c] or "\\" .. c end))
end

local function succeeded(r, expecting)
  return r.status == "reply" and r.kind == "tcp_synack" and (not expecting or r.matched)
end

local function describe(r)
  if r.status == "reply" then
    local what = r.kind
    if r.kind == "tcp_synack" then what = r.matched and "connected, reply matched" or "connected"
    elseif r.kind == "tcp_rst" then what = "refused (port closed)"
    elseif r.kind == "closed" then
      -- the server answered and closed (FIN): a normal end, not a reset
      what = (r.received or 0) > 0
        and string.format("connected, closed by the peer after %d bytes, no match", r.received)
        or "connected, closed by the peer (EOF)"
    elseif r.kind == "dest_unreachable" then what = "unreachable (" .. r.code .. ") from " .. (r.addr or "?")
    end
    if r.error then what = what .. " " .. r.error.name end
    return what
  elseif r.status == "timeout" then
    return r.connected and "timeout (connected, no matching reply)" or "timeout"
  end
  return r.status .. " " .. (r.error and (r.error.name .. ": " .. r.error.message) or "")
end

-- The figures of the attempts. An attempt skipped before it was sent (its
-- source port was busy: EADDRINUSE) was never tried, so it is neither sent
-- nor lost; it is counted apart.
local function summary(results, expecting)
  local s = { sent = 0, ok = 0, skipped = 0 }
  local sum, sq = 0, 0
  for _, r in ipairs(results) do
    if r.status == "skipped" then
      s.skipped = s.skipped + 1
    else
      s.sent = s.sent + 1
    end
    if succeeded(r, expecting) then
      s.ok = s.ok + 1
      local t = r.rtt
      s.min = math.min(s.min or t, t)
      s.max = math.max(s.max or t, t)
      sum, sq = sum + t, sq + t * t
    end
  end
  s.loss = s.sent > 0 and (s.sent - s.ok) / s.sent * 100 or 0
  if s.ok > 0 then
    s.avg = sum / s.ok
    s.stddev = math.sqrt(math.max(0, sq / s.ok - s.avg * s.avg))
  end
  return s
end

-- The statistics line: "4 attempts, 4 succeeded, 0.0% loss, min/avg/max/stddev = ... ms"
-- ("..., 1 skipped (source port busy)" after the loss when some were).
local function statistics(s)
  local t = string.format("%d attempts, %d succeeded, %.1f%% loss", s.sent, s.ok, s.loss)
  if s.skipped > 0 then
    t = t .. string.format(", %d skipped (source port busy)", s.skipped)
  end
  if s.ok > 0 then
    t = t .. string.format(", min/avg/max/stddev = %.3f/%.3f/%.3f/%.3f ms",
      s.min * 1000, s.avg * 1000, s.max * 1000, s.stddev * 1000)
  end
  return t
end

-- An attempt as a csv/markdown row.
local function row_of(r, host, addr, port)
  return { target = host, addr = addr, port = port, seq = r.seq, status = r.status,
    kind = r.kind, code = r.code, from = r.addr, rtt_ms = r.rtt and r.rtt * 1000 or nil,
    sport = r.sport, matched = r.matched, error = r.error and r.error.name or nil }
end

local function run(opts, ctx)
  if opts.tcp_mode ~= "connect" and (opts.payload or opts.expect) then
    cli.usage_error("--%s needs a connection: --tcp-mode connect (a SYN carries no data)",
      opts.payload and "payload" or "expect")
  end
  if opts.bind ~= "kernel" and not opts.sport then
    cli.usage_error("--bind %s needs --sport", opts.bind)
  end
  local payload, expect = unescape(opts.payload), unescape(opts.expect)
  local text = opts.format == "text"
  local current = {}        -- [target address] = its attempt in progress
  local run
  run = kit.start(opts, ctx, { cmd = "tcping", what = "targets connected", words = opts.host,
    name = "HOST", own = { text = true, json = true },
    on_signal = function()
      for _, id in pairs(current) do run.eng:cancel(id) end
    end })
  local tg, sink, eng, tally = run.tg, run.sink, run.eng, run.tally
  local last                -- the last target's figures
  -- A sequence-bound source port is --sport + the attempt's number: with
  -- several targets at once, each gets its own range of -c ports.
  local base = 0

  -- Connects to one target -c times and writes the attempts as they end,
  -- then the statistics (with several targets, text lines start with the
  -- target's name).
  local function tcping_one(name, addr)
    local prefix = tg.single and "" or (name .. ": ")
    local results = json.array{}
    local first_seq = base
    base = base + opts.count
    if text then
      sink:write(string.format("tcping %s (%s) port %d\n", name, addr, opts.port))
    end
    local meta = { command = "tcping", version = 1, columns = COLUMNS, target = name,
      addr = addr, port = opts.port, count = opts.count, interval = opts.interval,
      wait = opts.wait, ttl = opts.ttl, bind = opts.bind, sport = opts.sport }
    if tg.single then sink:start(meta) end
    for seq = 0, opts.count - 1 do
      if run.signal or not sink:ok() then break end
      local started = eng:now()
      local ev = eng:event()
      local nseq = first_seq + seq
      local id, perr2, pname = eng:probe_async(header.fields(opts, { dst = addr, proto = "tcp",
        dport = opts.port, ttl = opts.ttl, wait = opts.wait, bind = opts.bind, sport = opts.sport,
        seq = opts.bind == "sequence" and nseq % (65536 - opts.sport) or nseq,
        payload = payload, expect = expect }), function(r) ev.fire(r) end)
      local r
      if id then
        current[addr] = id
        r = ev.wait()
        current[addr] = nil
      else
        r = { status = "failed", error = { name = pname, message = perr2 } }
      end
      if run.signal and r.error and r.error.name == "ECANCELED" then break end
      r.id, r.src = nil, nil
      -- attempts are numbered from 1, as ping numbers its probes
      r.seq = seq + 1
      results[#results + 1] = r
      if text then
        sink:write(string.format("%s%s:%d seq=%d %s%s\n", prefix, addr, opts.port, r.seq,
          describe(r), r.rtt and string.format(" time=%.3f ms", r.rtt * 1000) or ""))
        sink:flush()
      else
        sink:event{ type = "tcping_attempt", version = 1, target = name, addr = addr,
          port = opts.port, attempt = r }
        sink:row(row_of(r, name, addr, opts.port))
      end
      local rest = opts.interval - (eng:now() - started)
      if seq < opts.count - 1 and rest > 0 and not run.signal then eng:sleep(rest) end
    end
    local s = summary(results, expect ~= nil)
    local failed = 0
    for _, r in ipairs(results) do
      if r.status == "failed" then failed = failed + 1 end
    end
    tally:add(s.ok > 0, prefix .. statistics(s),
      failed > 0 and failed == #results and results[1].error or nil)
    last = s
    local stop_reason = run.signal and "interrupted" or "done"
    if text then
      sink:write(string.format("--- %s port %d tcping statistics ---\n", name, opts.port))
      sink:write(statistics(s) .. "\n")
    else
      local doc = { type = "tcping", version = 1, target = name, addr = addr, port = opts.port,
        attempts = results, summary = s, stop_reason = stop_reason }
      if opts.format == "json" then
        sink:write(json.encode(doc) .. "\n")
      else
        sink:event(doc)
      end
    end
    sink:flush()
  end

  run:each{
    one = tcping_one,
    start = { command = "tcping", version = 1, columns = COLUMNS, port = opts.port,
      count = opts.count, interval = opts.interval, wait = opts.wait, ttl = opts.ttl,
      bind = opts.bind, sport = opts.sport },
  }
  local sum = { stop_reason = run.signal and "interrupted" or "done", text = tally:text() }
  if tg.single and last then
    for k, v in pairs(last) do sum[k] = v end
  else
    sum.targets, sum.succeeded = tally.targets, tally.ok
  end
  -- every attempt failed here (no route, no port), not on the network: 3
  return run:finish(sum)
end

return { spec = spec, run = run }
