-- sonde trace: print the route packets take to a host.

local cli = require "sonde.cli"
local tracer = require "sonde.trace"
local retry = require "sonde.retry"
local target = require "sonde.target"
local campaign = require "sonde.campaign"
local header = require "sonde.header"
local output = require "sonde.output"
local json = require "sonde.json"
local defaults = require "sonde.defaults"
local formats = require "sonde.format"
local quote = require "sonde.quote"
local kit = require "sonde.kit"
local asn = require "sonde.asn"

-- trace's own formats: text (streamed hop by hop; Dublin's a document),
-- json (the document) and dot (the graph); the bundled ones take a trace
-- as a record (jsonl, a user's module) or its probes as rows (csv,
-- markdown).
local OWN = { text = "sonde.format.text", json = "sonde.format.json", dot = "sonde.format.dot" }
local check_format = formats.check(formats.names{ "text", "json", "*", "dot" })

-- The garbage collector during a campaign. Every running trace keeps its
-- results until it is written, and writing makes much short-lived text: a
-- cycle starts as soon as the last one ends (LuaJIT's default pause, 200,
-- lets the heap grow to twice what was live first) and runs in steps twice
-- the default size, so that little garbage piles up meanwhile. In `make
-- bench` this halves the campaign's peak RSS, for some 15 % more CPU time.
local CAMPAIGN_GC_PAUSE, CAMPAIGN_GC_STEPMUL = 100, 400

local function parse_wait(v)
  local parts = {}
  for p in (v .. ","):gmatch("([^,]*),") do parts[#parts + 1] = p end
  if #parts > 4 then return nil, "expected MAX[,HERE[,NEAR[,MIN]]]" end
  local out = { 5, 3, 10, 0 }
  for i, p in ipairs(parts) do
    local n = tonumber(p)
    if p ~= "" then
      if not n or n ~= n or n < 0 or n == math.huge then
        return nil, "'" .. p .. "' is not a non-negative number"
      end
      out[i] = n
    end
  end
  if out[1] <= 0 or out[1] > 60 then return nil, "MAX must be above 0 and at most 60 seconds" end
  if out[4] > out[1] then return nil, "MIN must not be above MAX" end
  return out
end

local spec = {
  name = "trace",
  summary = "print the route packets take to a host",
  usage = "sonde trace [options] TARGET... [PACKETLEN] | --targets FILE",
  description = [[
Sends probes with increasing TTL (hop limit) towards TARGET and reports, hop by hop, who answered and how fast, as traceroute does. Probes go out concurrently (-N at a time), lowest TTL first; a hop that does not answer costs only a short wait when the hops behind it answer (see -w).

The wait (-w MAX,HERE,NEAR,MIN): every probe waits MAX seconds at most. Once a hop H answers with round-trip time R, the probes still open at H and before it are given up at max(MIN, max(F * R, SRTT + 4 * RTTVAR) + 10 ms) after they were sent (MAX at most), where F is HERE at H and NEAR before it, and SRTT and RTTVAR are H's smoothed RTT and RTT variation as TCP's retransmission timer keeps them (RFC 6298). A probe given up on stays open until MAX: a reply that comes before the trace ends counts, and the trace reads what has arrived and waits 10 ms more before it reports the still unanswered ones as timeouts (*).

Each probe ends in one outcome: a reply (time_exceeded from a router, or the destination's echo_reply, port unreachable, tcp_synack or tcp_rst), a timeout (shown as *), skipped (its source port was busy: it is re-issued under the next sequence) or failed (a local error, named, e.g. !ENETUNREACH).

Strategies (--strategy): classic varies the flow with every probe (the destination port for UDP, the source port for TCP), as traceroute does; on a load-balanced path its probes may take different branches, and a hop then shows several addresses that are not one path. paris keeps every probe of the trace in one flow (fixed ports; the UDP checksum or the ICMP sequence names the probe), so the trace shows one real path; Paris UDP needs raw sockets (root or CAP_NET_RAW), Paris TCP sends one probe at a time. dublin runs --flows Paris traces at once, each from its own source port (ICMP: its own checksum), and shows each flow's path and the graph they make together. The default is paris for UDP and ICMP, classic for TCP; without raw sockets, a UDP trace that did not ask for a strategy is classic.

Raw sockets are used to read ICMP errors: run as root or give the executable CAP_NET_RAW.

The trace stops when the destination answers, when a router says it is unreachable, at the maximum TTL (-m), or after --gap-limit silent hops in a row (once the hop after them is silent too, the probes already sent beyond it have had their chance, and nothing beyond answered; the text output ends with a line that says so); stop_reason in the JSON output says which (reached, unreachable, max_ttl, gap_limit, error, interrupted).

traceroute's habits hold: -q is the probes per hop, -f the first TTL, -m the largest, -w the wait, -n no names, -N the probes in flight, -s the source address and -i the interface the probes leave by (--source, --interface), -I ICMP echo probes, -T TCP SYN probes, -U UDP probes to one port (53 unless -p), -p the destination port, -F don't fragment, -t the TOS byte, and a number after the target is the packet length in bytes, IP and transport headers included (traceroute's default, 60 for IPv4 UDP, is sonde's too: 32 payload bytes). sonde's own name for the protocol is --protocol udp|icmp|tcp. With -A (or --as) every hop's origin AS is looked up as mtr -z does (a DNS TXT query in Team Cymru's convention, or --as-file, a pfx2as table) and shown before its name, [AS64500] (nothing when no answer came). Differences that remain: -P (raw IP protocols) and -M (methods) are not taken; -p with -I (traceroute's first ICMP sequence number) is refused; --quiet is only a long option.

Path MTU discovery (--mtu) works as traceroute --mtu's: one probe at a time, DF set, the first PACKETLEN bytes long (default 65000); a probe that is too big goes out again at the MTU that was named (the outgoing device's, when the host itself cannot send it; the next hop's, from a router's frag needed or packet too big; RFC 1191's next lower plateau when an old router names none), and the hop prints F=MTU after that probe. The path MTU the kernel has learnt does not limit the probes (IP_PMTUDISC_PROBE), so the router that is the bottleneck answers on every run. JSON: mtu on that hop and pmtu on that probe, path_mtu on the trace.

A host name with both IPv4 and IPv6 addresses is traced over IPv4, as traceroute does; -6 traces it over IPv6.

Exit status: 0 the destination was reached, 1 it was not (max TTL, gap limit, or a router said it is unreachable), 2 usage error, 3 runtime error (no permission, no route, a name that does not resolve), 130 interrupted by SIGINT (129 SIGHUP, 131 SIGQUIT, 143 SIGTERM; what was traced is written first).]],
  options = campaign.options(header.options({
    { nil, "--protocol", arg = "PROTO", choices = { "udp", "icmp", "tcp" },
      help = "probe protocol: UDP to closed ports (the default), ICMP echo, or TCP SYN" },
    { "-I", "--icmp", flag = true, help = "ICMP echo probes (--protocol icmp), as traceroute -I" },
    { "-T", "--tcp", flag = true, help = "TCP SYN probes (--protocol tcp; port 80 unless -p), as traceroute -T" },
    { "-U", "--udp", flag = true,
      help = "UDP probes to one port, 53 unless -p (--protocol udp --port 53), as traceroute -U" },
    { "-F", key = "dont_fragment", flag = true, help = "don't fragment (--df yes), as traceroute -F" },
    target.IPV4_OPTION,
    target.IPV6_OPTION,
    { "-f", "--first-ttl", arg = "N", type = "int", min = 1, max = 255, default = 1,
      help = "TTL of the first hop probed" },
    { "-m", "--max-ttl", arg = "N", type = "int", min = 1, max = 255, default = 30,
      help = "largest TTL probed" },
    { "-q", "--queries", arg = "N", type = "int", min = 1, max = 10, default = 3,
      help = "probes per hop" },
    { "-w", "--wait", arg = "MAX[,HERE,NEAR,MIN]", type = "string", default = "5,3,10,0", check = parse_wait,
      help = "wait at most MAX seconds for a probe; once its hop (later hops) answered with RTT R: max(HERE (NEAR) * R, SRTT + 4 * RTTVAR) + 10 ms after it was sent (RFC 6298 estimates of that hop's RTT), never less than MIN seconds; a reply to a probe given up on still counts until the trace ends" },
    { nil, "--gap-limit", arg = "N", type = "int", min = 0, max = 255, default = 5,
      help = "stop after N consecutive silent hops (every probe timed out) once the next hop is silent too and the probes sent beyond it had their chance, unless a hop beyond them answered; 0: never" },
    { "-N", "--sim-queries", arg = "N", type = "int", min = 1, max = 1024, default = 16,
      help = "probes in flight at once" },
    { "-p", "--port", arg = "PORT", type = "int", min = 1, max = 65535,
      help = "destination port, as traceroute -p: the base port for UDP (default 33434, one more per probe with --strategy classic), the port for TCP (default 80); not with ICMP" },
    defaults.tcp_mode_option(),
    { nil, "--sport", arg = "PORT", type = "int", min = 1, max = 65535,
      help = "source port: classic TCP: the base (source port = base + sequence, default 33434); paris: every probe's (UDP: default chosen by the kernel; TCP: default 33434); dublin: the first flow's (flow N: PORT + N - 1, default 33456)" },
    { nil, "--bind", arg = "POLICY", choices = { "sequence", "fixed", "kernel" },
      help = "TCP: source-port binding: sequence (base + sequence, the default), fixed (--sport for every probe), kernel (port 0)" },
    { nil, "--strategy", arg = "NAME", choices = { "classic", "paris", "dublin" },
      help = "trace strategy (a module in sonde/strategy/): classic (a flow per probe), paris (one flow for the whole trace), dublin (--flows Paris flows side by side); default: paris for UDP and ICMP, classic for TCP" },
    { nil, "--flows", arg = "N", type = "int", min = 1, max = 64,
      help = "dublin: how many flows (default 4)" },
    { nil, "--retry", arg = "FILE", type = "string",
      help = "a Lua file returning a retry rule function(result, probe) -> 'accept'|'reissue' (see examples/retry_rule.lua)" },
    { nil, "--privileged", flag = true,
      help = "require raw sockets (root or CAP_NET_RAW) and fail without them" },
    { nil, "--unprivileged", flag = true,
      help = "never use raw sockets: ICMP datagram sockets and socket error queues (the default when raw sockets are not allowed)" },
    { nil, "--mtu", key = "mtu", flag = true,
      help = "discover the path MTU hop by hop, as traceroute --mtu: one probe at a time (-N 1) with DF set, the first PACKETLEN bytes (default 65000) long; a probe that is too big (over the outgoing device's MTU, or a router's frag needed / packet too big) goes out again at the MTU named, and the hop shows F=MTU after that probe; UDP and ICMP" },
    { "-n", key = "numeric", flag = true, help = "print addresses only, do not look up hop names" },
    { "-A", key = "as_lookups", flag = true,
      help = "the origin AS of every hop, as traceroute -A shows it ([AS64500]; --as and the options below)" },
    asn.OPTIONS[1], asn.OPTIONS[2], asn.OPTIONS[3], asn.OPTIONS[4],
    { nil, "--format", arg = "FORMAT", type = "string", default = "text", check = check_format,
      help = "output format: text; json (one document; with several targets, one per line); jsonl (one trace per line); csv and markdown (one row per probe); dot (a Graphviz digraph of what answered; with dublin: the flows' merged graph); or the path of a Lua format module (examples/format_example.lua)" },
    output.OPTION,
    { nil, "--rate", arg = "PPS", type = "number", min = 0, max = 10000000, default = "0",
      help = "probes per second for the whole run (0: no limit)" },
    { nil, "--window", arg = "N", type = "int", min = 1, max = 1000000, default = 1024,
      help = "probes in flight at most, for the whole run" },
  }, { source = "-s", interface = "-i", tos = "-t" }), { parallel = 32, what = "traces" }),
  positionals = { { name = "TARGET", many = true } },
  exclusive = { { "ipv4", "ipv6" }, { "privileged", "unprivileged" },
                { "icmp", "tcp", "udp", "protocol" }, { "dont_fragment", "df" } },
  -- traceroute's options that sonde trace does not take, and what to write
  hints = {
    ["-P"] = "raw IP protocols are not probed; use -I (ICMP), -T (TCP), -U or the default (UDP)",
    ["-M"] = "use -I (icmp), -T (tcp), -U (udp) or --protocol",
  },
  examples = {
    "sonde trace -n 198.18.8.2",
    "sonde trace -I -6 2001:db8:8::2",
    "sonde trace -n --gap-limit 3 -w 1 198.18.8.2",
    "sonde trace -T -p 443 --format json example.net",
    "sonde trace -n --strategy dublin --flows 8 198.18.8.2",
    "sonde trace -n --strategy classic -q 10 198.18.8.2",
    "sonde trace -n -I 198.18.8.2 1400",
  },
}

local function load_rule(path)
  local chunk, err = require("sonde.preopen").loadfile(path)
  if not chunk then cli.usage_error("--retry: %s", err) end
  local ok, rule = pcall(chunk)
  if not ok then cli.runtime_error("--retry %s: %s", path, tostring(rule)) end
  if type(rule) ~= "function" then
    cli.usage_error("--retry %s: the file must return a function (got %s)", path, type(rule))
  end
  return rule
end

-- The origin AS of the addresses in a hop (asn.lookup's, asked once per
-- address per run): each probe that answered gets asn and as_prefix, or
-- none when no answer came within wait seconds.
local function as_namer(lookup, wait)
  return function(probes)
    for _, r in ipairs(probes) do
      if r.addr then lookup.ask(r.addr) end
    end
    lookup.settle(wait)
    for _, r in ipairs(probes) do
      local a = r.addr and lookup.get(r.addr)
      if a then r.asn, r.as_prefix = a.asn, a.prefix end
    end
  end
end

-- Names of the addresses in a hop, looked up concurrently, cached per run.
local function namer(eng)
  local cache = {}
  return function(probes)
    local wanted = {}
    for _, r in ipairs(probes) do
      if r.addr and cache[r.addr] == nil then wanted[#wanted + 1] = r.addr end
    end
    if #wanted > 0 then
      local left, ev = #wanted, eng:event()
      for _, a in ipairs(wanted) do
        cache[a] = false
        eng:spawn(function()
          cache[a] = eng:reverse(a, 1) or false
          left = left - 1
          if left == 0 then ev.fire() end
        end)
      end
      if left > 0 then ev.wait() end
    end
    for _, r in ipairs(probes) do
      if r.addr and cache[r.addr] then r.name = cache[r.addr] end
    end
  end
end

-- The strategy when --strategy is absent: paris for UDP and ICMP, classic
-- for TCP (Paris TCP sends one probe at a time).
local function default_strategy(proto)
  return proto == "tcp" and "classic" or "paris"
end

-- traceroute's PACKETLEN counts the IP header and the probe's own (UDP
-- and ICMP: 8 bytes); the engine's size is the payload after them.
local IP_HEADER = { [4] = 20, [6] = 40 }
local PROBE_HEADER = 8

-- The payload bytes of a PACKETLEN for family af, or nil and why not.
local function payload_of(len, af, strategy)
  local payload = len - IP_HEADER[af] - PROBE_HEADER
  -- Paris names a probe by its checksum, which two payload bytes carry
  local least = strategy == "classic" and 1 or 2
  if payload < least then
    return nil, string.format("too small for IPv%d: at least %d (headers %d, payload %d)",
      af, IP_HEADER[af] + PROBE_HEADER + least, IP_HEADER[af] + PROBE_HEADER, least)
  end
  return payload
end

-- traceroute --mtu's first packet length without PACKETLEN: the largest it
-- sends; the outgoing device's MTU cuts it down at the first probe.
local MTU_START = 65000

-- The path MTU discovery settings of a trace to family af (sonde.trace's
-- pmtu option), or nil without --mtu.
local function pmtu_for(opts, af, strategy)
  if not opts.mtu then return nil end
  local headers = IP_HEADER[af] + PROBE_HEADER
  return { size = opts.packetlen or MTU_START, headers = headers,
    least = headers + (strategy == "classic" and 1 or 2) }
end

-- The strategy instance for a run (af: the destination's family).
local function strategy_for(name, opts, addr, port, tcp_mode, af)
  local mod = require("sonde.strategy." .. name)
  local o = { dst = addr, proto = opts.protocol, port = port, sport = opts.sport,
    bind = name == "classic" and opts.bind or nil, flows = opts.flows, tcp_mode = tcp_mode }
  if name == "classic" and opts.protocol == "tcp" then o.sport = o.sport or defaults.TCP_SPORT end
  if opts.packetlen then o.size = assert(payload_of(opts.packetlen, af, name)) end
  return header.apply(mod.new(o), opts)
end

-- Did the trace fail because Paris UDP needs raw sockets?
local function paris_unprivileged(t)
  return t.stop_reason == "error" and t.error and t.error.name == "ENOTSUP"
    and (t.error.call or ""):find("Paris", 1, true) ~= nil
end

-- The columns of csv and markdown: one row per probe.
local COLUMNS = { "target", "addr", "ttl", "q", "status", "kind", "code", "hop", "hop_name", "rtt_ms",
  "reply_ttl", "error", "seq", "sport", "dport", "changes", "nat", "ext" }
-- with --mtu, one more: the size a probe went out again at (F=)
local MTU_COLUMNS = { unpack(COLUMNS) }
MTU_COLUMNS[#MTU_COLUMNS + 1] = "mtu"

-- A trace's probes as rows for csv and markdown.
local function rows_of(t)
  local rows = {}
  for _, hop in ipairs(t.hops) do
    for q, r in ipairs(hop.probes) do
      rows[#rows + 1] = { target = t.target, addr = t.addr, ttl = hop.ttl, q = q,
        status = r.status, kind = r.kind, code = r.code, hop = r.addr, hop_name = r.name,
        rtt_ms = r.rtt and r.rtt * 1000 or nil, reply_ttl = r.reply_ttl,
        error = r.error and r.error.name or nil, seq = r.seq, sport = r.sport, dport = r.dport,
        changes = r.changes and quote.changes_text(r.changes) or nil, nat = r.nat,
        ext = r.ext and quote.ext_list_text(r.ext) or nil, mtu = r.pmtu }
    end
  end
  return rows
end

-- The messages that go with a trace that stopped on an error.
local function explain_error(t, ctx)
  ctx.stderr:write(string.format("sonde trace: %s: %s: %s\n", t.target, t.error.name, t.error.message))
  if paris_unprivileged(t) then
    ctx.stderr:write(string.format("sonde trace: the %s strategy sends UDP probes named by their "
      .. "checksum from a raw socket, which needs root or CAP_NET_RAW; without them use "
      .. "--strategy classic (or -I, ICMP, whose Paris probes need no privilege)\n", t.strategy))
  elseif t.error.name == "EACCES" and (t.error.call or ""):find("IPPROTO_ICMP", 1, true) then
    ctx.stderr:write("sonde trace: ICMP datagram sockets are not allowed for this user's group: "
      .. "allow them with 'sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"', "
      .. "run with CAP_NET_RAW, or use UDP or TCP (-U, -T)\n")
  end
end

-- Trace one target (inside eng:run), at addr (family af). run = the
-- run's shared state: opts, rule, names (reverse lookups, or nil),
-- interrupted(), on_stop (gets the function that stops this trace), on_hop
-- (streamed hops, or nil), on_header(meta) (or nil), campaign (what the
-- traces of a campaign learn from each other, or nil). Returns the trace
-- table that --format json writes (the "trace" definition of
-- sonde.schema.json).
local function trace_one(eng, run, name, addr, af)
  local opts = run.opts
  local port = opts.port or (opts.protocol == "tcp" and defaults.TCP_PORT or defaults.UDP_PORT)
  local strategy = opts.strategy
  local meta = { target = name, addr = addr, af = af, protocol = opts.protocol,
    port = opts.protocol ~= "icmp" and port or nil, max_ttl = opts.max_ttl,
    strategy = strategy }
  -- Without raw sockets Paris UDP cannot tell its probes apart (ENOTSUP):
  -- a UDP trace that did not ask for a strategy is then classic, as
  -- traceroute's is. Known before the first probe with --unprivileged;
  -- otherwise from the first probe, which fails before anything is sent.
  local fallback = not run.strategy_given and opts.protocol == "udp" and strategy == "paris"
  if fallback and opts.unprivileged then
    strategy, meta.strategy, fallback = "classic", "classic", false
  end
  if run.on_header then run.on_header(meta) end
  local function trace_with(sname)
    return tracer.run{
      eng = eng, dst = addr, af = af, proto = opts.protocol,
      strategy = strategy_for(sname, opts, addr, port,
        opts.protocol == "tcp" and eng:tcp_mode(af) or nil, af),
      first_ttl = opts.first_ttl, max_ttl = opts.max_ttl, queries = opts.queries,
      wait = opts.wait, sim = opts.sim_queries, rule = run.rule, gap_limit = opts.gap_limit,
      on_hop = run.on_hop and function(hop)
        -- the failed first attempt of a fallback is not shown
        if not (fallback and eng:privileged(af) == false) then run.on_hop(hop, meta) end
      end or nil,
      interrupted = run.interrupted,
      on_interrupt = run.on_stop,
      campaign = run.campaign,
      pmtu = pmtu_for(opts, af, sname),
    }
  end
  local t = trace_with(strategy)
  if fallback and paris_unprivileged(t) and eng:privileged(af) == false then
    strategy, meta.strategy, fallback = "classic", "classic", false
    t = trace_with("classic")
  end
  for k, v in pairs(meta) do t[k] = v end
  t.port = nil
  -- the EACCES of an ICMP datagram socket is no firewall's (explain_error
  -- gives the sysctl that allows it)
  if t.error and target.icmp_hint(t.error) then t.error.message = target.ICMP_REFUSED end
  t.privileged = eng:privileged(af)
  -- The trace's source: --source, or the route's (over --interface: what
  -- the probes were bound to); per probe it would only repeat it.
  t.src = opts.source or eng:source(addr, opts.interface)
  for _, hop in ipairs(t.hops) do
    for _, r in ipairs(hop.probes) do
      r.src = nil
      local earlier = r.retries
      if earlier then
        for _, e in ipairs(earlier) do e.src = nil end
      end
    end
    if run.names and not run.on_hop then run.names(hop.probes) end
  end
  return t
end

-- One target given as such, in a format that is one document: the trace
-- as it goes (text streams hop by hop: each hop is printed as it ends, its
-- names looked up meanwhile, while the trace goes on), then the footer or
-- the document. -> the job (sonde.kit's one).
local function single_job(kr, st)
  local opts, eng, sink = kr.opts, kr.eng, kr.sink
  -- Dublin's text is a document (each flow's path, then the graph), not
  -- hops streamed as they complete.
  local fmt = require((opts.strategy == "dublin" and opts.format == "text")
    and "sonde.format.dublin" or OWN[opts.format])
  return function(name, addr, af)
    local printer, drained = eng:queue(), eng:event()
    local job = setmetatable({ on_stop = function(stop) st.stop = stop end }, { __index = st })
    if fmt.hop then
      local meta
      job.on_header = function(m)
        meta = m
        sink:write(fmt.header(m))
      end
      job.on_hop = function(hop) printer.push(hop) end
      eng:spawn(function()
        for hop in printer.pop do
          if st.names then st.names(hop.probes) end
          sink:write(fmt.hop(hop, meta))
          sink:flush()
        end
        drained.fire()
      end)
    else
      drained.fire()
    end
    local t = trace_one(eng, job, name, addr, af)
    local stats = eng:stats()
    t.counters = { sent = stats.sent, received = stats.received, ignored = stats.ignored,
      malformed = stats.malformed, dropped = stats.dropped }
    printer.close()
    drained.wait() -- the hops the printer holds go out before the footer
    sink:write(fmt.document and fmt.document(t) or fmt.footer(t))
    sink:flush()
    local err = t.stop_reason == "error" and t.error or nil
    if err then explain_error(t, kr.ctx) end
    kr.tally:add(t.reached, nil, err)
  end
end

-- Several targets (or a format that writes records): traces run
-- concurrently, --parallel at a time, on one engine under --rate and
-- --window, learning from each other where destinations lie
-- (tracer.campaign); each is written in the chosen format as soon as it is
-- done. -> the job (sonde.kit's one).
local function campaign_job(kr, st, stops)
  local opts, eng, sink, tally, ctx = kr.opts, kr.eng, kr.sink, kr.tally, kr.ctx
  local rows = sink.rows
  st.campaign = tracer.campaign()

  local function emit(t, meta)
    if opts.format == "text" then
      local fmt = require("sonde.format.text")
      local parts = { fmt.header(meta) }
      for _, hop in ipairs(t.hops) do parts[#parts + 1] = fmt.hop(hop, meta) end
      parts[#parts + 1] = fmt.footer(t)
      sink:write(table.concat(parts) .. (tally.total > 1 and "\n" or ""))
    elseif opts.format == "json" then
      sink:write(json.encode(t) .. "\n")
    elseif rows then
      for _, row in ipairs(rows_of(t)) do sink:record(row) end
    else
      sink:record(t)
    end
  end

  return function(name, addr)
    local meta
    local job = setmetatable({ on_header = function(m) meta = m end,
      on_stop = function(stop) stops[addr] = stop end }, { __index = st })
    -- a target is named as it was given: a host name by its name, an
    -- address or a prefix's address by the address
    local t = trace_one(eng, job, name, target.resolve(eng, addr, st.family))
    stops[addr] = nil
    local err = t.stop_reason == "error" and t.error or nil
    if err and tally.failed < campaign.EXPLAINED then explain_error(t, ctx) end
    tally:add(t.reached, nil, err)
    if t.stop_reason ~= "interrupted" or #t.hops > 0 then emit(t, meta) end
  end
end

-- The engine's largest payload (core.probe_fields' size).
local function size_max()
  for _, f in ipairs(require("sonde.core").probe_fields) do
    if f.name == "size" then return f.max end
  end
end

-- traceroute's "host [packetlen]": a number after the targets is the
-- packet length (a target is never all digits). Takes it off the words
-- into opts.packetlen; a length no probe can have is a usage error.
local function take_packetlen(opts)
  local words = opts.target
  if #words < 2 or not words[#words]:match("^%d+$") then return end
  local len = table.remove(words)
  opts.packetlen = tonumber(len)
  if #len > 6 or opts.packetlen > 65535 then
    cli.usage_error("PACKETLEN: invalid value '%s' (expected a packet length up to 65535)", len)
  end
  if opts.protocol == "tcp" then
    cli.usage_error("PACKETLEN %s: a TCP probe is a SYN with no payload; a length goes with UDP or ICMP (-I)", len)
  end
  local max = size_max()
  for _, af in ipairs{ 4, 6 } do
    if not (af == 6 and opts.ipv4) and not (af == 4 and opts.ipv6) then
      local payload, why = payload_of(opts.packetlen, af, opts.strategy)
      if not payload then cli.usage_error("PACKETLEN %s: %s", len, why) end
      if max and payload > max then
        cli.usage_error("PACKETLEN %s: the engine sends at most %d payload bytes (a packet of %d for IPv%d)",
          len, max, max + IP_HEADER[af] + PROBE_HEADER, af)
      end
    end
  end
end

-- traceroute's method letters (-I, -T, -U) and -F, as --protocol,
-- --port and --df say them.
local function take_method(opts)
  if opts.icmp then opts.protocol = "icmp" end
  if opts.tcp then opts.protocol = "tcp" end
  if opts.udp then
    opts.protocol = "udp"
    opts.port = opts.port or 53 -- traceroute -U: one port, 53 unless -p
  end
  opts.protocol = opts.protocol or "udp"
  if opts.dont_fragment then opts.df = "yes" end
  if opts.port and opts.protocol == "icmp" then
    cli.usage_error("-p %d: ICMP echo probes have no port (traceroute -I -p sets the first sequence number, which sonde chooses itself)", opts.port)
  end
end

local function run(opts, ctx)
  take_method(opts)
  header.source_family(opts, opts.target) -- --source fixes the family, as traceroute -s
  local strategy_given = opts.strategy ~= nil
  opts.strategy = opts.strategy or default_strategy(opts.protocol)
  take_packetlen(opts)
  if opts.flows and opts.strategy ~= "dublin" then
    cli.usage_error("--flows applies to --strategy dublin")
  end
  if opts.strategy == "dublin" then
    -- flow N leaves from --sport + N - 1: every flow's port must exist
    local dublin = require "sonde.strategy.dublin"
    local flows, sport = opts.flows or dublin.DEFAULT_FLOWS, opts.sport or dublin.SPORT
    if sport + flows - 1 > 65535 then
      cli.usage_error("--sport %d with %d flows: flow %d would leave from port %d (at most 65535: --sport %d or lower)",
        sport, flows, flows, sport + flows - 1, 65536 - flows)
    end
  end
  if opts.bind and strategy_given and opts.strategy ~= "classic" then
    cli.usage_error("--bind applies to --strategy classic (%s fixes the source port)", opts.strategy)
  end
  if opts.first_ttl > opts.max_ttl then
    cli.usage_error("-f %d is above -m %d", opts.first_ttl, opts.max_ttl)
  end
  if opts.mtu and opts.protocol == "tcp" then
    cli.usage_error("--mtu: a TCP probe is a SYN with no payload, whose size cannot vary; use UDP or ICMP (-I)")
  end
  if opts.mtu and opts.strategy == "dublin" then
    cli.usage_error("--mtu sends one probe at a time along one flow: not with --strategy dublin")
  end
  -- the traces' shared state
  local st = { opts = opts, strategy_given = strategy_given,
    family = opts.ipv4 and 4 or opts.ipv6 and 6 or nil,
    rule = opts.retry and load_rule(opts.retry) or retry.default }
  local stops = {}          -- [target] = the function that stops its trace

  -- One target given as such, and a format that is one document: the trace
  -- as it goes (text streams hop by hop). Everything else is a campaign:
  -- text and json are written here, the others through their module's
  -- header/record/footer (dot's graph, a user's module included).
  local one_doc = opts.format == "text" or opts.format == "json" or opts.format == "dot"
  local kr = kit.start(opts, ctx, {
    cmd = "trace", what = "targets reached", words = opts.target, as_list = not one_doc,
    -- a name with IPv4 and IPv6 addresses is traced over IPv4, as
    -- traceroute does (getaddrinfo's first IPv4 answer)
    prefer = 4,
    own = OWN, modules = { dot = OWN.dot }, flush = false,
    engine = { rate = opts.rate, window = opts.window,
      privileged = opts.privileged and "raw" or opts.unprivileged and "unprivileged" or "auto" },
    check = function(tg)
      if opts.strategy == "dublin" and not tg.single then
        cli.usage_error("--strategy dublin traces one target (its output is a graph)")
      end
    end,
    on_signal = function()
      if st.stop then st.stop() end
      for _, stop in pairs(stops) do stop() end
    end,
    -- each trace's error is said as it comes; then how many in all, and
    -- "K of N targets reached" for several (also when interrupted), unless
    -- nobody reads the output any more
    tally = { explained = "traces" },
    say = function(kr) return not opts.quiet and (kr.tally.total or 1) > 1 end,
    closed = "quiet",
  })
  st.interrupted = function() return kr.signal ~= nil end
  st.names = not opts.numeric and namer(kr.eng) or nil
  if opts.as_lookups or opts.as then
    opts.as = true
    local as_table
    if opts.as_file then
      local text, err = require("sonde.preopen").read(opts.as_file)
      if not text then cli.runtime_error("--as-file %s: %s", opts.as_file, tostring(err)) end
      as_table, err = asn.parse_pfx2as(text)
      if not as_table then cli.usage_error("--as-file %s: %s", opts.as_file, err) end
    end
    local names = st.names
    local ases = as_namer(asn.lookup{ eng = kr.eng, zone = opts.as_zone, zone6 = opts.as_zone6,
      table = as_table, timeout = 3 }, 5)
    st.names = function(probes)
      if names then names(probes) end
      ases(probes)
    end
  end

  if kr.tg.single then
    kr:each{ one = single_job(kr, st) }
    return kr:finish(nil)
  end

  local pause, stepmul
  kr:each{
    one = campaign_job(kr, st, stops),
    on_total = function(total)
      kr.tally.total = total
      kr.sink:start{ command = "trace", version = 1, columns = kr.sink.rows and (opts.mtu and MTU_COLUMNS or COLUMNS) or nil,
        total = total, protocol = opts.protocol, strategy = opts.strategy }
    end,
    before = function()
      pause = collectgarbage("setpause", CAMPAIGN_GC_PAUSE)
      stepmul = collectgarbage("setstepmul", CAMPAIGN_GC_STEPMUL)
    end,
    teardown = function()
      if pause then
        collectgarbage("setpause", pause)
        collectgarbage("setstepmul", stepmul)
      end
    end,
  }
  local tally = kr.tally
  return kr:finish{ total = tally.total or 0, done = tally.targets, reached = tally.ok,
    errors = tally.failed,
    text = string.format("%d of %d targets reached", tally.ok, tally.total or 0) }
end

return { spec = spec, run = run }
