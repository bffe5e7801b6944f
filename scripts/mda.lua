-- sonde mda: every path of a load-balanced route, with the Multipath
-- Detection Algorithm (sonde.strategy.mda) over Paris UDP flows, as a
-- graph (sonde.format.mda for text, sonde.format.dot for DOT).

local cli = require "sonde.cli"
local defaults = require "sonde.defaults"
local target = require "sonde.target"
local output = require "sonde.output"
local campaign = require "sonde.campaign"
local json = require "sonde.json"
local tracer = require "sonde.trace"
local mda = require "sonde.strategy.mda"
local formats = require "sonde.format"
local kit = require "sonde.kit"
local header = require "sonde.header"

local FORMATS = formats.names{ "text", "json", "*", "dot" }

-- csv and markdown: one row per interface found (a node of the graph).
local COLUMNS = { "target", "addr", "ttl", "node", "name", "final", "flows", "sent", "next" }

local spec = {
  name = "mda",
  summary = "find every path of a load-balanced route (Multipath Detection Algorithm)",
  usage = "sonde mda [options] TARGET... | --targets FILE",
  description = [[
Discovers the interfaces at every hop towards TARGET and the links between them, however many paths load balancers spread flows over, with a stated confidence: the Multipath Detection Algorithm of Augustin, Friedman and Teixeira (IMC 2007), with the hop-level economies of MDA-Lite (Vermeulen et al., IMC 2018), as scamper's tracelb does.

Each flow is a UDP source port (flow N leaves from --sport + N - 1, to --port), and every probe of a flow is a Paris probe: the same ports, the UDP checksum naming the probe, so a load balancer sends all of a flow's probes the same way. Flows are reused hop after hop. At each hop, probes go through each interface of the hop before until, with k next hops found, n_k probes have found no other: n_k = 6, 11, 16, 21, 27, ... for --confidence 95 (8, 15, 21, 28, ... for 99), the number of probes that would miss a (k+1)-th next hop with probability at most 5 % (1 %). Where two hops in a row both have several interfaces, each interface gets its own n_k probes (flows through a given interface are found by probing new flows one hop before). The first hop (the source's gateway) is probed once, and a hop that is the destination once through each interface before it.

A probe without an answer is tried once more; a hop that never answers after n_1 flows is shown as *, and --gap-limit such hops in a row end the run.

Paris UDP probes leave from a raw socket: run as root or give the executable CAP_NET_RAW.

Formats (--format): text (the interfaces per TTL, the links, the probe count); json (one document: "type":"mda", the "mda" definition of scripts/sonde/schema/sonde.schema.json, with "probes_sent"); jsonl (that document as one line: mda writes nothing before the end); csv (a header row, then a row per interface found: target, addr, ttl, node (the interface's address), name, final (reached or unreachable, where the path ends), flows (how many flows went through it), sent (probes at its TTL), next (the interfaces it links to, space-separated)); markdown (the same rows as a table, then the probe count line); dot (a Graphviz digraph: sonde mda --format dot HOST | dot -Tsvg > paths.svg); or the path of a Lua format module (examples/format_example.lua: its record() gets the document, its footer() the summary). -o FILE writes to FILE atomically (a temporary file renamed over FILE at the end; when interrupted, FILE gets the graph found so far). Files named on the command line are opened before sonde gives up its privileges: anywhere the user who ran it may read or write, and FILE belongs to that user.

Several targets (names, addresses, CIDR prefixes, the lines of --targets files) are explored at once, --parallel at a time, on one engine; each graph is written when its run ends (text: one after the other; json: a document per line; jsonl, csv, markdown, dot: each target's records), a progress line shows on a terminal for runs longer than two seconds, and a line on standard error says how many destinations were reached (not with -q). The targets form a set, explored in a seeded order (--seed); --shard K/N explores one shard, as sonde trace does. The engine's counters ("counters") are given only for a single target.

Exit status: 0 the destination was reached (several targets: every one), 1 it was not (max TTL, gap limit, probe budget, or a router said it is unreachable), 2 usage error, 3 runtime error (no permission, no route, a name that does not resolve, -o not writable; with several targets: when every run stopped on such an error), 130 interrupted by SIGINT (129 SIGHUP, 131 SIGQUIT, 143 SIGTERM; the graph found so far is written first).]],
  options = campaign.options({
    target.IPV4_OPTION,
    target.IPV6_OPTION,
    { "-f", "--first-ttl", arg = "N", type = "int", min = 1, max = 255, default = 1,
      help = "TTL of the first hop probed" },
    { "-m", "--max-ttl", arg = "N", type = "int", min = 1, max = 255, default = 30,
      help = "largest TTL probed" },
    { nil, "--confidence", arg = "PERCENT", type = "int", choices = { "95", "99" }, default = "95",
      help = "confidence that no next hop was missed at each interface" },
    { "-w", "--wait", arg = "SECONDS", type = "number", min = 0.01, max = 60, default = "2",
      help = "how long to wait for the answer to one probe" },
    { nil, "--port", arg = "PORT", type = "int", min = 1, max = 65535, default = defaults.UDP_PORT,
      help = "UDP destination port of every probe" },
    { nil, "--sport", arg = "PORT", type = "int", min = 1024, max = 65535, default = defaults.FLOW_SPORT,
      help = "source port of the first flow (flow N: PORT + N - 1)" },
    { nil, "--gap-limit", arg = "N", type = "int", min = 0, max = 255, default = 3,
      help = "stop after N silent hops in a row; 0: never" },
    { nil, "--max-probes", arg = "N", type = "int", min = 1, max = 100000, default = 3000,
      help = "stop after N probes" },
    { "-N", "--sim-queries", arg = "N", type = "int", min = 1, max = 1024, default = 16,
      help = "probes in flight at once" },
    { "-n", key = "numeric", flag = true, help = "print addresses only, do not look up names" },
    { nil, "--format", arg = "FORMAT", type = "string", default = "text", check = formats.check(FORMATS),
      help = "output format: text, json (one document), jsonl (the document as one line), csv or markdown (a row per interface), dot (a Graphviz digraph), or the path of a Lua format module (see Formats above)" },
    output.OPTION,
    header.source_options()[1],
    header.source_options()[2],
  }, { parallel = 8, what = "targets explored" }),
  positionals = { { name = "TARGET", many = true, help = "host name, numeric address or CIDR prefix" } },
  exclusive = { { "ipv4", "ipv6" } },
  -- traceroute's letters that mean something else here: mda chooses how
  -- many probes each hop gets (--confidence), and ping's -c is a count
  hints = {
    ["-q"] = "the probes per hop follow from --confidence; quiet is --quiet",
    ["-c"] = "the confidence is --confidence 95|99; mda sends as many probes as it needs",
    ["-I"] = "mda probes with UDP (Paris flows)",
    ["-T"] = "mda probes with UDP (Paris flows)",
  },
  examples = {
    "sonde mda -n 198.18.5.2",
    "sonde mda --confidence 99 --format json 2001:db8:5::2",
    "sonde mda -n --format dot 198.18.5.2 | dot -Tsvg > paths.svg",
    "sonde mda -n --format csv -o interfaces.csv 198.18.5.2",
  },
}

-- Names of every node's address, looked up concurrently.
local function name_nodes(eng, doc)
  local want, names = {}, {}
  for _, h in ipairs(doc.hops) do
    for _, n in ipairs(h.nodes) do
      if names[n.addr] == nil then names[n.addr] = false; want[#want + 1] = n.addr end
    end
  end
  if #want == 0 then return end
  local left, ev = #want, eng:event()
  for _, a in ipairs(want) do
    eng:spawn(function()
      names[a] = eng:reverse(a, 1) or false
      left = left - 1
      if left == 0 then ev.fire() end
    end)
  end
  ev.wait()
  for _, h in ipairs(doc.hops) do
    for _, n in ipairs(h.nodes) do n.name = names[n.addr] or nil end
  end
end

-- Did the run fail because Paris UDP needs raw sockets?
local function unprivileged(e)
  return e and e.name == "ENOTSUP" and (e.call or ""):find("Paris", 1, true) ~= nil
end

-- The rows of csv and markdown: one per interface, with the interfaces
-- it links to.
local function rows_of(d)
  local rows = {}
  for _, h in ipairs(d.hops) do
    for _, n in ipairs(h.nodes) do
      local nexts = {}
      for _, l in ipairs(d.links) do
        if l.from == n.addr and l.from_ttl == h.ttl then nexts[#nexts + 1] = l.to end
      end
      rows[#rows + 1] = { target = d.target, addr = d.addr, ttl = h.ttl, node = n.addr,
        name = n.name, final = n.final, flows = #n.flows, sent = h.sent,
        next = #nexts > 0 and table.concat(nexts, " ") or nil }
    end
  end
  return rows
end

local function run(opts, ctx)
  if opts.first_ttl > opts.max_ttl then
    cli.usage_error("-f %d is above -m %d", opts.first_ttl, opts.max_ttl)
  end
  local stops = {}          -- [target address] = cancels its probes in flight
  local run = kit.start(opts, ctx, { cmd = "mda", what = "destinations reached",
    words = opts.target, own = { text = true, json = true, dot = true },
    engine = { window = 1024 },
    on_signal = function()
      for _, stop in pairs(stops) do stop() end
    end })
  local tg, sink, eng, tally = run.tg, run.sink, run.eng, run.tally
  local last                -- the last target's document
  local probes_sent = 0

  -- Explores one target: -> its mda document.
  local function explore(name, addr, af)
    local strat = header.apply(mda.new{ dst = addr, port = opts.port, sport = opts.sport, wait = opts.wait },
      opts)
    local started, t0 = os.time(), eng:now()
    local seq = 0
    local inflight = {}
    stops[addr] = function()
      for id in pairs(inflight) do eng:cancel(id) end
    end

    -- Sends a batch, at most -N in flight; outcomes in the batch's order.
    local function probe(list)
      local out, next_i, n_in, left = {}, 1, 0, #list
      local ev = eng:event()
      local launch
      local function finish(i, o)
        out[i] = o
        left = left - 1
        if left == 0 then ev.fire() end
      end
      local function convert(r)
        if r.status == "reply" then
          return { addr = r.addr, final = tracer.final(r, addr) or nil }
        elseif r.status == "skipped" then
          return { dead = true }
        elseif r.status == "failed" then
          if r.error and r.error.name == "ECANCELED" then return {} end
          return { error = r.error or { name = "UNKNOWN", message = "probe failed" } }
        end
        return {}
      end
      function launch()
        while n_in < opts.sim_queries and next_i <= #list do
          local i = next_i
          next_i = next_i + 1
          if run.signal then
            finish(i, {})
          else
            seq = seq + 1
            local rec = {}
            local id, perr, name = eng:probe_async(strat.spec(list[i].ttl, seq, list[i].flow), function(r)
              rec.done = true
              if rec.id then inflight[rec.id] = nil; n_in = n_in - 1 end
              finish(i, convert(r))
              launch()
            end)
            if not id then
              finish(i, { error = { name = name, message = perr } })
            elseif not rec.done then
              rec.id = id
              inflight[id] = true
              n_in = n_in + 1
            end
          end
        end
      end
      launch()
      if left > 0 then ev.wait() end
      return out
    end

    local res = mda.run{
      probe = probe, first_ttl = opts.first_ttl, max_ttl = opts.max_ttl,
      confidence = opts.confidence, gap_limit = opts.gap_limit,
      max_probes = opts.max_probes, max_flows = strat.max_flows,
      interrupted = function() return run.signal ~= nil end,
    }
    stops[addr] = nil
    local d = { type = "mda", version = 1, target = name, addr = addr, af = af,
      protocol = "udp", confidence = opts.confidence, first_ttl = opts.first_ttl,
      max_ttl = opts.max_ttl, sport = strat.sport, dport = strat.dport, wait = opts.wait,
      probes_sent = res.probes_sent, flows = res.flows, reached = res.reached,
      stop_reason = run.signal and "interrupted" or res.stop_reason,
      src = opts.source or eng:source(addr, opts.interface) or nil,
      hops = json.array{}, links = json.array{}, started = started, duration = eng:now() - t0 }
    if d.stop_reason == "error" then d.error = res.error end
    for _, h in ipairs(res.hops) do
      local nodes = json.array{}
      for _, n in ipairs(h.nodes) do
        nodes[#nodes + 1] = { addr = n.addr, flows = json.array(n.flows), final = n.final }
      end
      d.hops[#d.hops + 1] = { ttl = h.ttl, sent = h.sent, nodes = nodes }
    end
    for _, l in ipairs(res.links) do
      d.links[#d.links + 1] = { from = l.from, from_ttl = l.from_ttl, to = l.to,
        to_ttl = l.to_ttl, flows = json.array(l.flows) }
    end
    d.privileged = eng:privileged(af)
    if tg.single then
      local st = eng:stats()
      d.counters = { sent = st.sent, received = st.received, ignored = st.ignored,
        malformed = st.malformed, dropped = st.dropped }
    end
    if not opts.numeric and not run.signal then name_nodes(eng, d) end
    return d
  end

  -- Writes one target's graph in the chosen format.
  local function emit(doc)
    local summary = require("sonde.format.mda").summary(doc)
    tally:add(doc.reached, tg.single and summary or (doc.target .. ": " .. summary),
      doc.stop_reason == "error" and doc.error or nil)
    probes_sent = probes_sent + doc.probes_sent
    last = doc
    if opts.format == "json" then
      sink:write(json.encode(doc) .. "\n")
    elseif opts.format == "dot" then
      sink:write(require("sonde.format.dot").document(doc))
    elseif opts.format == "text" then
      sink:write((tally.targets > 1 and "\n" or "") .. require("sonde.format.mda").document(doc))
    else
      if tg.single then
        sink:start{ command = "mda", version = 1, columns = COLUMNS, target = doc.target,
          addr = doc.addr, af = doc.af, protocol = doc.protocol, confidence = doc.confidence,
          first_ttl = doc.first_ttl, max_ttl = doc.max_ttl, sport = doc.sport, dport = doc.dport,
          wait = doc.wait }
      end
      for _, row in ipairs(rows_of(doc)) do sink:row(row) end
      sink:event(doc)
    end
    sink:flush()
  end

  run:each{
    start = { command = "mda", version = 1, columns = COLUMNS, protocol = "udp",
      confidence = opts.confidence, first_ttl = opts.first_ttl, max_ttl = opts.max_ttl,
      sport = opts.sport, dport = opts.port, wait = opts.wait },
    one = function(name, addr, af)
      local doc = explore(name, addr, af)
      -- an interrupted target of several: only if something was found
      if tg.single or doc.stop_reason ~= "interrupted" or #doc.hops > 0 then emit(doc) end
    end,
  }

  local sum = { text = tally:text() }
  local d = last
  if tg.single and d then
    sum.probes_sent, sum.flows, sum.reached, sum.stop_reason, sum.error, sum.started,
      sum.duration = d.probes_sent, d.flows, d.reached, d.stop_reason, d.error, d.started,
      d.duration
  else
    sum.targets, sum.reached, sum.probes_sent = tally.targets, tally.ok, probes_sent
    sum.stop_reason = run.signal and "interrupted" or "done"
  end
  local status = run:finish(sum)
  if status == cli.EXIT.RUNTIME and unprivileged(tally.error) then
    ctx.stderr:write("sonde mda: its probes are Paris UDP probes, named by their checksum and "
      .. "sent from a raw socket, which needs root or CAP_NET_RAW\n")
  end
  return status
end

return { spec = spec, run = run }
