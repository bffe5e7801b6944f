-- sonde trace: print the route packets take to a host.

local sonde = require "sonde"
local cli = require "sonde.cli"
local tracer = require "sonde.trace"
local retry = require "sonde.retry"
local target = require "sonde.target"

local function parse_wait(v)
  local parts = {}
  for p in (v .. ","):gmatch("([^,]*),") do parts[#parts + 1] = p end
  if #parts > 3 then return nil, "expected MAX[,HERE[,NEAR]]" end
  local out = { 5, 3, 10 }
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
  return out
end

local spec = {
  name = "trace",
  summary = "print the route packets take to a host",
  usage = "sonde trace [options] TARGET",
  description = [[
Sends probes with increasing TTL (hop limit) towards TARGET and reports, hop by hop, who answered and how fast, as traceroute does. Probes go out concurrently (-N at a time), lowest TTL first; a hop that does not answer costs only a short wait when the hops behind it answer (see -w).

Each probe ends in one outcome: a reply (time_exceeded from a router, or the destination's echo_reply, port unreachable, tcp_synack or tcp_rst), a timeout (shown as *), skipped (its source port was busy: it is re-issued under the next sequence) or failed (a local error, named, e.g. !ENETUNREACH).

Strategies (--strategy): classic varies the flow with every probe (the destination port for UDP, the source port for TCP), as traceroute does; on a load-balanced path its probes may take different branches, and a hop then shows several addresses that are not one path. paris keeps every probe of the trace in one flow (fixed ports; the UDP checksum or the ICMP sequence names the probe), so the trace shows one real path; Paris UDP needs raw sockets (root or CAP_NET_RAW), Paris TCP sends one probe at a time. dublin runs --flows Paris traces at once, each from its own source port (ICMP: its own checksum), and shows each flow's path and the graph they make together. The default is paris for UDP and ICMP, classic for TCP; without raw sockets, a UDP trace that did not ask for a strategy is classic.

Raw sockets are used to read ICMP errors: run as root or give the executable CAP_NET_RAW.

The trace stops when the destination answers, when a router says it is unreachable, at the maximum TTL (-m), or after --gap-limit silent hops in a row; stop_reason in the JSON output says which (reached, unreachable, max_ttl, gap_limit, error, interrupted).

Exit status: 0 the destination was reached, 1 it was not (max TTL, gap limit, or a router said it is unreachable), 2 usage error, 3 runtime error (no permission, no route, a name that does not resolve), 130 interrupted.]],
  options = {
    { "-p", "--protocol", arg = "PROTO", choices = { "udp", "icmp", "tcp" }, default = "udp",
      help = "probe protocol: UDP to closed ports, ICMP echo, or TCP SYN (connect)" },
    { "-4", key = "ipv4", flag = true, help = "use IPv4 only" },
    { "-6", key = "ipv6", flag = true, help = "use IPv6 only" },
    { "-f", "--first-ttl", arg = "N", type = "int", min = 1, max = 255, default = 1,
      help = "TTL of the first hop probed" },
    { "-m", "--max-ttl", arg = "N", type = "int", min = 1, max = 255, default = 30,
      help = "largest TTL probed" },
    { "-q", "--queries", arg = "N", type = "int", min = 1, max = 10, default = 3,
      help = "probes per hop" },
    { "-w", "--wait", arg = "MAX[,HERE,NEAR]", type = "string", default = "5,3,10", check = parse_wait,
      help = "wait at most MAX seconds for a probe; less: HERE times the RTT of a reply from the same hop, NEAR times the RTT of a reply from a later hop (as traceroute)" },
    { nil, "--gap-limit", arg = "N", type = "int", min = 0, max = 255, default = 5,
      help = "stop after N consecutive silent hops (every probe timed out) unless a hop beyond them answered; 0: never" },
    { "-N", "--sim-queries", arg = "N", type = "int", min = 1, max = 1024, default = 16,
      help = "probes in flight at once" },
    { nil, "--port", arg = "PORT", type = "int", min = 1, max = 65535,
      help = "destination port: the base port for UDP (default 33434, one more per probe), the port for TCP (default 80)" },
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
    { "-n", key = "numeric", flag = true, help = "print addresses only, do not look up hop names" },
    { nil, "--format", arg = "FORMAT", choices = { "text", "json", "dot" }, default = "text",
      help = "output format: text, one JSON document, or a Graphviz digraph of what answered (with dublin: the flows' merged graph)" },
  },
  positionals = { { name = "TARGET", required = true } },
  exclusive = { { "ipv4", "ipv6" }, { "privileged", "unprivileged" } },
  examples = {
    "sonde trace -n 198.18.8.2",
    "sonde trace -p icmp -6 2001:db8:8::2",
    "sonde trace -n --gap-limit 3 -w 1 198.18.8.2",
    "sonde trace -p tcp --port 443 --format json example.net",
    "sonde trace -n --strategy dublin --flows 8 198.18.8.2",
    "sonde trace -n --strategy classic -q 10 198.18.8.2",
  },
}

local function load_rule(path)
  local chunk, err = loadfile(path)
  if not chunk then cli.usage_error("--retry: %s", err) end
  local ok, rule = pcall(chunk)
  if not ok then cli.runtime_error("--retry %s: %s", path, tostring(rule)) end
  if type(rule) ~= "function" then
    cli.usage_error("--retry %s: the file must return a function (got %s)", path, type(rule))
  end
  return rule
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

-- The strategy instance for a run.
local function strategy_for(name, opts, addr, port)
  local mod = require("sonde.strategy." .. name)
  local o = { dst = addr, proto = opts.protocol, port = port, sport = opts.sport,
    bind = name == "classic" and opts.bind or nil, flows = opts.flows }
  if name == "classic" and opts.protocol == "tcp" then o.sport = o.sport or 33434 end
  return mod.new(o)
end

-- Did the trace fail because Paris UDP needs raw sockets?
local function paris_unprivileged(t)
  return t.stop_reason == "error" and t.error and t.error.name == "ENOTSUP"
    and (t.error.call or ""):find("Paris", 1, true) ~= nil
end

local function run(opts, ctx)
  local stream
  local strategy_given = opts.strategy ~= nil
  opts.strategy = opts.strategy or default_strategy(opts.protocol)
  if opts.flows and opts.strategy ~= "dublin" then
    cli.usage_error("--flows applies to --strategy dublin")
  end
  if opts.bind and strategy_given and opts.strategy ~= "classic" then
    cli.usage_error("--bind applies to --strategy classic (%s fixes the source port)", opts.strategy)
  end
  -- Dublin's text is a document (each flow's path, then the graph), not
  -- hops streamed as they complete.
  local fmt = require("sonde.format." ..
    ((opts.strategy == "dublin" and opts.format == "text") and "dublin" or opts.format))
  local family = opts.ipv4 and 4 or opts.ipv6 and 6 or nil
  local rule = opts.retry and load_rule(opts.retry) or retry.default
  if opts.first_ttl > opts.max_ttl then
    cli.usage_error("-f %d is above -m %d", opts.first_ttl, opts.max_ttl)
  end
  local eng, err = sonde.engine{ window = 1024, privileged = opts.privileged and "raw"
    or opts.unprivileged and "unprivileged" or "auto" }
  if not eng then cli.runtime_error("%s", err) end
  local signal, stopping
  target.on_interrupt(eng, function(name)
    signal = name
    if stopping then stopping() end
  end)
  local trace = eng:run(function()
    local addr, af = target.resolve(eng, opts.target, family)
    local port = opts.port or (opts.protocol == "tcp" and 80 or 33434)
    local meta = { target = opts.target, addr = addr, af = af, protocol = opts.protocol,
      port = opts.protocol ~= "icmp" and port or nil, max_ttl = opts.max_ttl,
      strategy = opts.strategy }
    -- Without raw sockets Paris UDP cannot tell its probes apart (ENOTSUP):
    -- a UDP trace that did not ask for a strategy is then classic, as
    -- traceroute's is. Known before the first probe with --unprivileged;
    -- otherwise from the first probe, which fails before anything is sent.
    local fallback = not strategy_given and opts.protocol == "udp" and opts.strategy == "paris"
    if fallback and opts.unprivileged then
      opts.strategy, meta.strategy, fallback = "classic", "classic", false
    end
    local names = not opts.numeric and namer(eng)
    local printer = eng:queue()
    stream = fmt.hop ~= nil
    if stream then
      ctx.stdout:write(fmt.header(meta))
      eng:spawn(function()
        for hop in printer.pop do
          if names then names(hop.probes) end
          ctx.stdout:write(fmt.hop(hop, meta))
          ctx.stdout:flush()
        end
      end)
    end
    local function trace_with(name)
      return tracer.run{
        eng = eng, dst = addr, af = af, proto = opts.protocol,
        strategy = strategy_for(name, opts, addr, port),
        first_ttl = opts.first_ttl, max_ttl = opts.max_ttl, queries = opts.queries,
        wait = opts.wait, sim = opts.sim_queries, rule = rule, gap_limit = opts.gap_limit,
        on_hop = stream and function(hop)
          -- the failed first attempt of a fallback is not shown
          if not (fallback and eng:privileged(af) == false) then printer.push(hop) end
        end or nil,
        interrupted = function() return signal ~= nil end,
        on_interrupt = function(stop) stopping = stop end,
      }
    end
    local t = trace_with(opts.strategy)
    if fallback and paris_unprivileged(t) and eng:privileged(af) == false then
      fallback = false
      opts.strategy, meta.strategy = "classic", "classic"
      t = trace_with("classic")
    end
    for k, v in pairs(meta) do t[k] = v end
    t.privileged = eng:privileged(af)
    t.src = eng:source(addr)
    local st = eng:stats()
    t.counters = { sent = st.sent, received = st.received, ignored = st.ignored,
      malformed = st.malformed, dropped = st.dropped }
    t.port = nil
    printer.close()
    if not stream and names then
      for _, hop in ipairs(t.hops) do names(hop.probes) end
    end
    -- The trace's source is the route's (above); per probe it would only
    -- repeat it (or, for Paris UDP sent from a raw socket, be unspecified).
    for _, hop in ipairs(t.hops) do
      for _, r in ipairs(hop.probes) do
        r.src = nil
        for _, e in ipairs(r.retries or {}) do e.src = nil end
      end
    end
    return t
  end)
  eng:close()
  if fmt.document then
    ctx.stdout:write(fmt.document(trace))
  else
    ctx.stdout:write(fmt.footer(trace))
  end
  if trace.stop_reason == "error" then
    ctx.stderr:write(string.format("sonde trace: %s: %s\n", trace.error.name, trace.error.message))
    if paris_unprivileged(trace) then
      ctx.stderr:write(string.format("sonde trace: the %s strategy sends UDP probes named by their "
        .. "checksum from a raw socket, which needs root or CAP_NET_RAW; without them use "
        .. "--strategy classic (or -p icmp, whose Paris probes need no privilege)\n", trace.strategy))
    elseif trace.error.name == "EACCES" and (trace.error.call or ""):find("IPPROTO_ICMP", 1, true) then
      ctx.stderr:write("sonde trace: ICMP datagram sockets are not allowed for this user's group: "
        .. "allow them with 'sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"', "
        .. "run with CAP_NET_RAW, or use -p udp or -p tcp\n")
    end
    return cli.EXIT.RUNTIME
  elseif trace.stop_reason == "interrupted" then
    return target.signal_status(signal)
  end
  return trace.reached and cli.EXIT.OK or cli.EXIT.NOT_REACHED
end

return { spec = spec, run = run }
