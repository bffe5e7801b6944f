-- sonde mtr: traceroute and ping at once. Rounds of probes to every hop
-- (sonde.strategy.mtr), per-hop loss and RTT statistics (sonde.stats), a
-- live table or a report (sonde.format.mtr).

local sonde = require "sonde"
local cli = require "sonde.cli"
local target = require "sonde.target"
local json = require "sonde.json"
local ping = require "sonde.strategy.ping"
local mtr = require "sonde.strategy.mtr"
local fmt = require "sonde.format.mtr"

local spec = {
  name = "mtr",
  summary = "trace the route to a host continuously, with loss and RTT statistics per hop",
  usage = "sonde mtr [options] TARGET",
  description = [[
Combines trace and ping, as mtr and Trippy do: every -i seconds a round of probes goes out, one to each TTL from -f up to the destination, and each hop's answers accumulate into its statistics: Loss% (probes without an answer), Snt (probes sent and ended), Last, Avg, Best and Wrst (round-trip times, ms), StDev (their sample standard deviation) and Javg (jitter: the mean absolute difference between consecutive RTTs). Rounds do not wait for each other; a probe gets -w seconds to be answered.

The first round probes every TTL up to -m; the lowest TTL at which the destination answers (or a router says it is unreachable) becomes the last hop, and later rounds stop there. A hop where several addresses answered (load balancing) lists the others below it.

On a terminal, without --report, the table is shown live and redrawn in place; press q (or Ctrl-C) to stop. Then, and in every other mode, the report is printed: the text report (as mtr --report), or with --format json one document, with --format csv one line per hop. Without a terminal the report is printed after the -c rounds.

Loss at a hop that the hops behind it do not show is usually the router limiting the ICMP errors it sends, not loss on the path.

Raw sockets read the ICMP answers: run as root or give the executable CAP_NET_RAW.

Exit status:

    0    the destination answered at least once
    1    it never did
    2    usage error
    3    runtime error: a name that does not resolve, no permission,
         a probe that could not be sent (no route)
    130  interrupted by SIGINT (143: SIGTERM); the report of what was
         collected (stop_reason "interrupted") comes first]],
  options = {
    { "-r", "--report", flag = true,
      help = "no live table: run -c rounds, then print the report" },
    { "-c", "--count", arg = "N", type = "int", min = 1, max = 1000000,
      help = "rounds (default: 10 with --report or without a terminal; the live table runs until q)" },
    { "-i", "--interval", arg = "SECONDS", type = "number", min = 0.01, max = 3600, default = "1",
      help = "time between the starts of two rounds" },
    { "-w", "--wait", arg = "SECONDS", type = "number", min = 0.001, max = 600, default = "2",
      help = "how long to wait for the answer to one probe" },
    { "-f", "--first-ttl", arg = "N", type = "int", min = 1, max = 255, default = 1,
      help = "TTL of the first hop probed" },
    { "-m", "--max-ttl", arg = "N", type = "int", min = 1, max = 255, default = 30,
      help = "largest TTL probed" },
    { "-p", "--protocol", arg = "PROTO", choices = { "icmp", "udp", "tcp" }, default = "icmp",
      help = "probe protocol: ICMP echo, UDP to a closed port, or TCP SYN" },
    { nil, "--port", arg = "PORT", type = "int", min = 1, max = 65535,
      help = "UDP: the first destination port, one more per probe (default 33434); TCP: the destination port (default 80)" },
    { "-4", key = "ipv4", flag = true, help = "use IPv4 only" },
    { "-6", key = "ipv6", flag = true, help = "use IPv6 only" },
    { "-n", key = "numeric", flag = true, help = "show addresses only, do not look up host names" },
    { nil, "--format", arg = "FORMAT", choices = { "text", "json", "csv" }, default = "text",
      help = "report format (json and csv imply --report)" },
  },
  positionals = { { name = "TARGET", required = true, help = "host name or numeric address" } },
  exclusive = { { "ipv4", "ipv6" } },
  examples = {
    "sonde mtr 198.18.8.2",
    "sonde mtr --report -c 20 -n 198.18.8.2",
    "sonde mtr -p udp -i 0.2 -c 50 --format json 2001:db8:8::2",
    "sonde mtr -p tcp --port 443 --format csv -c 10 -n 198.18.8.2",
  },
}

---------------------------------------------------------------------------
-- The terminal: only for the live table. stdin in cbreak mode (no echo, no
-- line buffering, signals kept so that Ctrl-C is still SIGINT), restored
-- on every way out of run().
---------------------------------------------------------------------------

local ffi = require "ffi"
pcall(ffi.cdef, [[
int isatty(int fd);
long read(int fd, void *buf, unsigned long count);
]])

local function isatty(fd)
  local ok, r = pcall(function() return ffi.C.isatty(fd) end)
  return ok and r == 1
end

local function command_output(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  if not p then return nil end
  local out = p:read("*a")
  p:close()
  return out
end

-- Puts the terminal on stdin in cbreak mode; returns a function that
-- restores it (nil when stdin is not a terminal: then only Ctrl-C stops).
local function cbreak()
  if not isatty(0) then return nil end
  local saved = (command_output("stty -g") or ""):match("^%s*([%x:]+)%s*$")
  if not saved then return nil end
  if not os.execute("stty -icanon -echo min 0 time 0 2>/dev/null") then return nil end
  return function() os.execute("stty " .. saved .. " 2>/dev/null") end
end

-- The keys typed since the last call ("" if none); never blocks (VMIN 0).
local function keys()
  local buf = ffi.new("char[16]")
  local n = ffi.C.read(0, buf, 16)
  if n <= 0 then return "" end
  return ffi.string(buf, n)
end

local function columns()
  local c = tonumber((command_output("stty size") or ""):match("%d+%s+(%d+)"))
  return c and c >= 20 and c or 80
end

local ESC = {
  enter = "\27[?1049h\27[?25l\27[H\27[2J",  -- alternate screen, no cursor
  leave = "\27[?25h\27[?1049l",             -- cursor back, main screen back
  home = "\27[H", eol = "\27[K", eos = "\27[J",
}

---------------------------------------------------------------------------

-- Looks up each new address once, concurrently; names[addr] = name.
local function namer(eng)
  local names, asked = {}, {}
  return names, function(addr)
    if asked[addr] then return end
    asked[addr] = true
    eng:spawn(function()
      names[addr] = eng:reverse(addr, 1) or nil
    end)
  end
end

local function hostname()
  local f = io.open("/proc/sys/kernel/hostname", "r")
  local h = f and f:read("*l")
  if f then f:close() end
  return h and h ~= "" and h or "localhost"
end

local function run(opts, ctx)
  local family = opts.ipv4 and 4 or opts.ipv6 and 6 or nil
  if opts.first_ttl > opts.max_ttl then
    cli.usage_error("-f %d is above -m %d", opts.first_ttl, opts.max_ttl)
  end
  if opts.port and opts.protocol == "icmp" then
    cli.usage_error("--port applies to -p udp and -p tcp, not icmp")
  end
  local live = not opts.report and opts.format == "text" and ctx.stdout == io.stdout and isatty(1)
  local count = opts.count or (not live and 10 or nil)

  local eng, err = sonde.engine{ window = 4096 }
  if not eng then cli.runtime_error("%s", err) end
  local signal, stop
  target.on_interrupt(eng, function(name)
    signal = name
    if stop then stop("interrupted") end
  end)

  local meta, st, names, lookup
  local restore, screen
  local function doc_of(state, now)
    local d = { type = "mtr", version = 1, rounds = state.rounds, reached = state.reached,
      stop_reason = state.stop_reason, error = state.error, src = state.src,
      hops = mtr.rows(state), started = state.started, duration = state.duration, now = now }
    for k, v in pairs(meta) do d[k] = v end
    for _, hop in ipairs(d.hops) do
      if hop.addr and names then hop.name = names[hop.addr] end
    end
    return d
  end

  local ok, perr = pcall(eng.run, eng, function()
    local addr, af = target.resolve(eng, opts.target, family)
    meta = { target = opts.target, addr = addr, af = af, protocol = opts.protocol,
      first_ttl = opts.first_ttl, max_ttl = opts.max_ttl, interval = opts.interval,
      wait = opts.wait }
    local strat = ping.new{ dst = addr, proto = opts.protocol, port = opts.port, wait = opts.wait }
    if opts.protocol ~= "icmp" then meta.port = strat.port end
    if not opts.numeric then names, lookup = namer(eng) end

    local version, running = 0, true
    local state                    -- the run's state, once it exists
    if live then
      restore = cbreak()
      screen = true
      ctx.stdout:write(ESC.enter)
      ctx.stdout:flush()
      local width = columns()
      eng:spawn(function()
        local shown = -1
        -- Redraw when something changed, look for q ten times a second;
        -- ends when the run does.
        while running do
          if restore and keys():find("[qQ]") and stop then stop("quit") end
          if state and version ~= shown then
            shown = version
            local lines = fmt.live(doc_of(state, os.time()), width)
            ctx.stdout:write(ESC.home, table.concat(lines, ESC.eol .. "\n"), ESC.eol, "\n", ESC.eos)
            ctx.stdout:flush()
          end
          if running then eng:sleep(0.1) end
        end
      end)
    end

    st = mtr.run{
      eng = eng, strategy = strat, dst = addr,
      first_ttl = opts.first_ttl, max_ttl = opts.max_ttl,
      count = count, interval = opts.interval,
      on_update = function(s)
        state = s
        version = version + 1
        if lookup then
          for _, hop in pairs(s.hops) do
            for _, a in ipairs(hop.addrs) do lookup(a) end
          end
        end
      end,
      on_stop = function(fn)
        stop = fn
        if signal then fn("interrupted") end
      end,
    }
    running = false
  end)
  -- Every way out: the terminal as it was.
  if screen then ctx.stdout:write(ESC.leave); ctx.stdout:flush() end
  if restore then restore() end
  eng:close()
  if not ok then error(perr, 0) end

  local doc = doc_of(st)
  doc.now = nil
  if opts.format == "json" then
    ctx.stdout:write(json.encode(doc), "\n")
  elseif opts.format == "csv" then
    ctx.stdout:write(fmt.csv(doc))
  else
    ctx.stdout:write(fmt.report(doc, hostname()))
  end
  ctx.stdout:flush()
  if st.stop_reason == "interrupted" then return target.signal_status(signal) end
  if st.stop_reason == "error" then
    ctx.stderr:write(string.format("sonde mtr: %s: %s\n", st.error.name, st.error.message))
    return cli.EXIT.RUNTIME
  end
  return st.reached and cli.EXIT.OK or cli.EXIT.NOT_REACHED
end

return { spec = spec, run = run }
