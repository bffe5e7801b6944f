-- spec/bench/bench.lua: `make bench` - sonde and its peers side by side, in
-- one run, on one lab, with ratios. Never a timed assertion: a table and
-- bench/results.json.
--
-- The lab: src - r1 ... r8 - dst, r4 silent, ICMP rate limits lifted, and
-- 198.19.0.0/16 answered by dst (AnyIP: a local route on its loopback).
-- Every measurement runs inside src (spec/bench/measure.lua), interleaved,
-- repeated; medians are reported.

local lab = require "lab"
local helpers = require "helpers"
local cjson = require "cjson"

local ROOT = helpers.root()
local SONDE = helpers.sonde()
local OUT_DIR = ROOT .. "/bench"
local REPS = tonumber(os.getenv("BENCH_REPS") or "5")
-- The campaign and the sweep take longer (scamper's campaign: 11 s a run):
-- 3 runs each unless BENCH_REPS says otherwise.
local LONG_REPS = tonumber(os.getenv("BENCH_REPS") or "3")
local CAMPAIGN_TARGETS = 2000
-- The cost section runs the campaign's first COST_TARGETS targets under
-- callgrind (about 50 times slower than natively: 200 traces take ~10 s).
local COST_TARGETS = tonumber(os.getenv("BENCH_COST_TARGETS") or "200")
-- BENCH_ONLY=single,campaign,tcp,sweep,cost,rtt runs a subset.
local ONLY = os.getenv("BENCH_ONLY")
local function wanted(name) return not ONLY or ONLY:find(name, 1, true) ~= nil end

local function say(fmt, ...) io.stderr:write(fmt:format(...), "\n") end

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

local function write(path, text, mode)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  os.execute(("chmod %s %s"):format(mode or "644", lab.shquote(path)))
end

-- Runs a plan inside the namespace of `node`; -> per case, the runs.
local function measure(l, tmp, plan)
  local pfile, rfile = tmp .. "/plan.json", tmp .. "/result.json"
  write(pfile, cjson.encode(plan))
  local cmd = ("ip netns exec %s luajit %s %s %s"):format(lab.shquote(l:nsname("src")),
    lab.shquote(ROOT .. "/spec/bench/measure.lua"), lab.shquote(pfile), lab.shquote(rfile))
  local _, err, code = lab.run(cmd)
  if code ~= 0 then error("measure failed: " .. err) end
  io.stderr:write(err)
  return cjson.decode(assert(io.open(rfile)):read("*a"))
end

local function summarize(runs)
  local wall, cpu, rss, ok = {}, {}, {}, 0
  for i, r in ipairs(runs) do
    wall[i], cpu[i], rss[i] = r.wall, r.user + r.sys, r.maxrss_kb
  end
  return { wall = median(wall), cpu = median(cpu), maxrss_kb = median(rss),
    status = runs[1].status, runs = #runs }
end

local function have(cmd) return select(3, lab.run("command -v " .. cmd)) == 0 end

-- A section: cases measured together; the first case is sonde, ratios are
-- sonde / peer (below 1: sonde is faster).
local function section(l, tmp, title, reps, cases, check)
  say("%s", title)
  local usable = {}
  for _, c in ipairs(cases) do
    if have(c.argv[1]) then usable[#usable + 1] = c else say("  %s: %s not installed", c.name, c.argv[1]) end
  end
  local plan = { reps = reps, cases = { { name = "(launcher)", argv = { "true" } } } }
  for _, c in ipairs(usable) do plan.cases[#plan.cases + 1] = c end
  local raw = measure(l, tmp, plan)
  local floor = summarize(raw["(launcher)"]).maxrss_kb
  local rows = {}
  for _, c in ipairs(usable) do
    local s = summarize(raw[c.name])
    s.name = c.name
    s.maxrss_kb = math.max(0, s.maxrss_kb - floor)
    s.note = check and check(c) or nil
    rows[#rows + 1] = s
  end
  return { title = title, rows = rows, rss_floor_kb = floor }
end

local function ratio(a, b) return (a and b and b > 0) and a / b or nil end

local function table_text(sec)
  local out = { ("%s\n"):format(sec.title),
    ("  %-34s %10s %10s %10s %8s  %s\n"):format("tool", "wall s", "cpu s", "rss MB*", "sonde/x", "note") }
  local s = sec.rows[1]
  for _, r in ipairs(sec.rows) do
    out[#out + 1] = ("  %-34s %10.3f %10.3f %10.1f %8s  %s\n"):format(r.name, r.wall, r.cpu,
      r.maxrss_kb / 1024, r == s and "" or ("%.3g"):format(ratio(s.wall, r.wall) or 0), r.note or ""):gsub(" +\n$", "\n")
  end
  return table.concat(out)
end

local function slurp(path)
  local f = io.open(path)
  if not f then return "" end
  local text = f:read("*a")
  f:close()
  return text
end

local function count(text, pat)
  local n = 0
  for _ in text:gmatch(pat) do n = n + 1 end
  return n
end

-- RTT accuracy: sonde-netsim answers hop k after a known delay; each tool's
-- mean RTT per hop is compared with it (median of |error| over the hops).
local RTT_SCENARIO = ROOT .. "/spec/fixtures/scenarios/issue9.json"
local RTT_DELAYS = { [1] = 7, [2] = 19, [5] = 41 } -- ms, from the scenario

local function mean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return #xs > 0 and s / #xs or nil
end

local function rtt_section()
  local l = lab.build{ name = "benchrtt", nodes = { "sim" } }
  local ok, res = pcall(function()
    local sim = l:spawn("sim", { helpers.build() .. "/sonde-netsim", "--scenario", RTT_SCENARIO,
      "--max-time", "120" })
    sim:wait_for("^ready ", 5)
    local target = "198.18.200.50"
    local per_tool = {}
    -- one probe at a time, as traceroute -N 1 and mtr send them; short
    -- waits: the scenario's hops 3 and 4 are silent
    local out = l:check("sim", { SONDE, "trace", "-n", "--protocol", "icmp", "-q", "10", "-N", "1",
      "-w", "0.5", "-m", "5", "--format", "json", target })
    local t, got = cjson.decode(out), {}
    for _, hop in ipairs(t.hops) do
      local xs = {}
      for _, p in ipairs(hop.probes) do if p.rtt then xs[#xs + 1] = p.rtt * 1000 end end
      got[hop.ttl] = mean(xs)
    end
    per_tool[#per_tool + 1] = { "sonde trace --protocol icmp -q 10 -N 1", got }
    sim:stop()
    sim = l:spawn("sim", { helpers.build() .. "/sonde-netsim", "--scenario", RTT_SCENARIO,
      "--max-time", "120" })
    sim:wait_for("^ready ", 5)
    if have("traceroute") then
      got = {}
      -- (its exit status aside: what it printed is what it measured)
      out = l:exec("sim", { "traceroute", "-n", "-I", "-q", "10", "-N", "1", "-w", "0.5", "-m", "5",
        target })
      for line in out:gmatch("[^\n]+") do
        local ttl = tonumber(line:match("^%s*(%d+)%s"))
        if ttl then
          local xs = {}
          for ms in line:gmatch("([%d.]+) ms") do xs[#xs + 1] = tonumber(ms) end
          got[ttl] = mean(xs)
        end
      end
      per_tool[#per_tool + 1] = { "traceroute -I -q 10 -N 1", got }
      sim:stop()
      sim = l:spawn("sim", { helpers.build() .. "/sonde-netsim", "--scenario", RTT_SCENARIO,
        "--max-time", "120" })
      sim:wait_for("^ready ", 5)
    end
    if have("mtr") then
      got = {}
      out = l:exec("sim", { "mtr", "-n", "--report", "-c", "10", "-i", "0.2", target })
      for line in out:gmatch("[^\n]+") do
        local ttl, rest = line:match("^%s*(%d+)%.|%-%-%s+%S+%s+(.*)$")
        if ttl then
          local cols = {}
          for x in rest:gmatch("[%d.]+") do cols[#cols + 1] = tonumber(x) end
          got[tonumber(ttl)] = cols[4] -- Loss% Snt Last Avg ...
        end
      end
      per_tool[#per_tool + 1] = { "mtr --report -c 10", got }
    end
    sim:stop()
    local rows = {}
    for _, pt in ipairs(per_tool) do
      local errs, shown = {}, {}
      for ttl, d in pairs(RTT_DELAYS) do
        if pt[2][ttl] then
          errs[#errs + 1] = math.abs(pt[2][ttl] - d)
          shown[#shown + 1] = ("hop %d %.2f/%d"):format(ttl, pt[2][ttl], d)
        end
      end
      table.sort(shown)
      rows[#rows + 1] = { name = pt[1], median_abs_error_ms = median(errs),
        max_abs_error_ms = math.max(unpack(errs)), hops = table.concat(shown, ", ") }
    end
    return { title = "RTT accuracy on sonde-netsim (issue9.json: 7, 19 and 41 ms)", rows = rows }
  end)
  l:destroy()
  if not ok then error(res, 0) end
  return res
end

local function rtt_text(sec)
  local out = { sec.title, "\n", ("  %-34s %14s %14s  %s\n"):format("tool", "median |err| ms",
    "max |err| ms", "mean RTT/delay") }
  for _, r in ipairs(sec.rows) do
    out[#out + 1] = ("  %-34s %14.2f %14.2f  %s\n"):format(r.name, r.median_abs_error_ms,
      r.max_abs_error_ms, r.hops)
  end
  return table.concat(out)
end

-- Cost: instructions per probe, and where they go. perf's hardware counters
-- are not always there (not on VMs without a PMU), so callgrind counts the
-- instructions executed in user space (Ir; the kernel's share of a probe,
-- the system calls, is not in it). The campaign runs twice under callgrind,
-- with COST_TARGETS targets and with one: the second is the fixed cost
-- (start-up, loading the scripts), and the difference, over the difference
-- in probes, the cost of one more probe. Each object's own instructions
-- (self cost) are sorted into parts (spec/bench/callgrind.lua): libluajit
-- (the interpreter, GC, trace compiler) and the code the JIT wrote (callgrind
-- finds it in no file: "???") are Lua's share.
local callgrind = dofile(ROOT .. "/spec/bench/callgrind.lua")

-- Probes in a campaign's JSONL output: every probe of every hop, and the
-- earlier outcomes a retry rule re-issued.
local function count_probes(text)
  local probes, traces, reached = 0, 0, 0
  for line in text:gmatch("[^\n]+") do
    local ok, t = pcall(cjson.decode, line)
    if ok and type(t) == "table" and t.type == "trace" then
      traces = traces + 1
      if t.reached then reached = reached + 1 end
      for _, hop in ipairs(t.hops or {}) do
        for _, p in ipairs(hop.probes or {}) do
          probes = probes + 1 + (type(p.retries) == "table" and #p.retries or 0)
        end
      end
    end
  end
  return probes, traces, reached
end

local function cost_section(l, tmp, targets)
  local title = ("cost: instructions per probe (valgrind --tool=callgrind), the campaign's first %d targets")
    :format(COST_TARGETS)
  say("%s", title)
  if not (COST_TARGETS >= 2 and COST_TARGETS <= #targets) then
    error(("BENCH_COST_TARGETS: from 2 to %d, not %s"):format(#targets, COST_TARGETS), 0)
  end
  if not have("valgrind") then
    say("  valgrind not installed")
    return nil
  end
  -- sonde started as root switches to --user before Lua runs, and callgrind
  -- writes its file at exit, as that user: a directory of its own (not
  -- sticky, not world-writable) and files made beforehand, owned by it.
  local user = "nobody"
  local dir = tmp .. "/cost"
  lab.must(("mkdir -m 755 %s && chown %s %s"):format(lab.shquote(dir), user, lab.shquote(dir)))
  local function callgrind_run(n)
    local tfile = ("%s/targets-%d.txt"):format(dir, n)
    local list = {}
    for i = 1, n do list[i] = targets[i] end
    write(tfile, table.concat(list, "\n") .. "\n")
    local cgout = ("%s/callgrind-%d.out"):format(dir, n)
    lab.must(("touch %s && chown %s %s && chmod 644 %s"):format(lab.shquote(cgout), user,
      lab.shquote(cgout), lab.shquote(cgout)))
    local t0 = os.time()
    local out, err, code = l:exec("src", { "valgrind", "--tool=callgrind", "--vgdb=no",
      "--smc-check=all-non-file", "--callgrind-out-file=" .. cgout,
      SONDE, "--user", user, "trace", "-n", "-q", "1", "--format", "jsonl", "--targets", tfile })
    if code ~= 0 and code ~= 1 then
      error(("callgrind run (%d targets) exited %d:\n%s"):format(n, code, err), 0)
    end
    local prof, perr = callgrind.read(cgout)
    if not prof then error("callgrind: " .. tostring(perr), 0) end
    local probes, traces, reached = count_probes(out)
    if traces ~= n then
      error(("callgrind run: %d traces out of %d targets"):format(traces, n), 0)
    end
    say("  callgrind, %d target%s: %d probes, %d reached, Ir %d, %d s", n, n == 1 and "" or "s",
      probes, reached, prof.total, os.time() - t0)
    return { targets = n, probes = probes, reached = reached, ir = prof.total,
      parts = callgrind.classify(prof, { exe = SONDE }) }
  end
  local full = callgrind_run(COST_TARGETS)
  local one = callgrind_run(1)
  local marginal = { targets = full.targets - one.targets, probes = full.probes - one.probes,
    ir = full.ir - one.ir, parts = {} }
  for k, v in pairs(full.parts) do marginal.parts[k] = v - one.parts[k] end
  local rows = {}
  for _, r in ipairs({ full, one, marginal }) do
    local lua = r.parts.luajit + r.parts.jit
    rows[#rows + 1] = { targets = r.targets, probes = r.probes, reached = r.reached, ir = r.ir,
      ir_per_probe = r.probes > 0 and r.ir / r.probes or nil, parts = r.parts,
      lua_share = r.ir > 0 and lua / r.ir or nil }
  end
  rows[1].name = ("%d targets"):format(full.targets)
  rows[2].name = "1 target (the fixed cost)"
  rows[3].name = ("difference (%d more traces: the cost of probing)"):format(marginal.targets)
  local names = {}
  for _, p in ipairs(callgrind.PARTS) do names[p[1]] = p[2] end
  return { title = title, kind = "callgrind", rows = rows, part_names = names,
    command = "sonde trace -n -q 1 --format jsonl --targets FILE",
    valgrind = "valgrind --tool=callgrind --vgdb=no --smc-check=all-non-file",
    lua_parts = { "luajit", "jit" } }
end

local function commas(n)
  local s = ("%d"):format(n)
  local neg, digits = s:match("^(%-?)(%d+)$")
  return neg .. digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end

local function cost_text(sec)
  local out = { sec.title, "\n", ("  %-56s %14s %7s %10s %6s\n"):format(sec.command, "Ir", "probes",
    "Ir/probe", "Lua") }
  for _, r in ipairs(sec.rows) do
    out[#out + 1] = ("  %-56s %14s %7d %10s %5.1f%%\n"):format(r.name, commas(r.ir), r.probes,
      r.ir_per_probe and commas(math.floor(r.ir_per_probe + 0.5)) or "-", 100 * (r.lua_share or 0))
  end
  local full, diff = sec.rows[1], sec.rows[3]
  out[#out + 1] = ("  %-56s %14s %17s\n"):format("share of Ir (each object's own instructions)",
    full.name, "difference")
  for _, p in ipairs(callgrind.PARTS) do
    local k = p[1]
    out[#out + 1] = ("  %-56s %13.1f%% %16.1f%%\n"):format(p[2], 100 * full.parts[k] / full.ir,
      100 * diff.parts[k] / diff.ir)
  end
  out[#out + 1] = "  Lua: the LuaJIT VM and the code its JIT wrote. Instructions in user space only.\n"
  return table.concat(out)
end

local function main()
  if select(3, lab.run("id -u")) ~= 0 or lab.run("id -u"):match("%d+") ~= "0" then
    error("make bench needs root (it builds network namespaces)")
  end
  os.execute("mkdir -p " .. lab.shquote(OUT_DIR))
  local tmp = lab.run("mktemp -d /tmp/" .. lab.prefix() .. "bench.XXXXXX"):match("%S+")
  os.execute("chmod 755 " .. lab.shquote(tmp))
  local l = lab.chain{ routers = 8, silent = { 4 }, v6 = false, name = "bench" }
  local ok, err = pcall(function()
    -- 198.19.0.0/16 behind the last router, answered by dst
    l:route("src", "198.19.0.0/16 via " .. l.hops[1].v4)
    for k = 1, 7 do l:route("r" .. k, "198.19.0.0/16 via " .. l.hops[k + 1].v4) end
    l:route("r8", "198.19.0.0/16 via " .. l.dst.v4)
    l:route("dst", "local 198.19.0.0/16 dev lo")
    local dst = l.dst.v4
    local sections = {}

    if wanted("single") then
    sections[#sections + 1] = section(l, tmp, "single trace (default options), 8 routers, hop 4 silent", REPS, {
      { name = "sonde trace -n", argv = { SONDE, "trace", "-n", dst } },
      { name = "traceroute -n", argv = { "traceroute", "-n", dst } },
      { name = "mtr -n --report -c 1", argv = { "mtr", "-n", "--report", "-c", "1", dst } },
      { name = "scamper -c trace", argv = { "scamper", "-c", "trace", "-i", dst } },
    })
    end

    -- 2000 targets spread over the /16
    local targets = {}
    for i = 0, CAMPAIGN_TARGETS - 1 do
      local n = (i * 32749) % 65536
      targets[#targets + 1] = ("198.19.%d.%d"):format(math.floor(n / 256), n % 256)
    end
    local tfile = tmp .. "/targets.txt"
    write(tfile, table.concat(targets, "\n") .. "\n")
    local cout = tmp .. "/campaign.jsonl"
    if wanted("campaign") then
    sections[#sections + 1] = section(l, tmp, ("campaign: %d traces, one each"):format(CAMPAIGN_TARGETS), LONG_REPS, {
      { name = "sonde trace --targets -q 1", argv = { SONDE, "trace", "-n", "-q", "1", "--format", "jsonl",
        "--targets", tfile }, stdout = cout },
      { name = "xargs -P 64 traceroute -n -q1", argv = { "sh", "-c",
        "xargs -P 64 -n 1 traceroute -n -q1 < " .. lab.shquote(tfile) } },
      { name = "scamper -p 10000 -c trace", argv = { "scamper", "-p", "10000", "-c", "trace", "-f", tfile } },
    }, function(c)
      if c.stdout then
        return ("%d/%d reached"):format(count(slurp(c.stdout), '"reached":true'), CAMPAIGN_TARGETS)
      end
    end)
    end

    -- The same campaign with TCP probes to port 80 (dst answers RST: the
    -- destination reached): sonde's half-open SYNs against traceroute -T's
    -- and scamper's, which send raw SYNs too.
    local tcout = tmp .. "/tcp-campaign.jsonl"
    if wanted("tcp") then
    sections[#sections + 1] = section(l, tmp, ("tcp campaign: %d traces, one each, TCP SYN to port 80"):format(
      CAMPAIGN_TARGETS), LONG_REPS, {
      { name = "sonde trace --protocol tcp --targets -q 1", argv = { SONDE, "trace", "-n", "-q", "1", "--protocol", "tcp",
        "--tcp-mode", "syn", "--port", "80", "--format", "jsonl", "--targets", tfile }, stdout = tcout },
      { name = "xargs -P 64 traceroute -T -n -q1", argv = { "sh", "-c",
        "xargs -P 64 -n 1 traceroute -T -p 80 -n -q1 < " .. lab.shquote(tfile) } },
      { name = "scamper -p 10000 trace -P tcp", argv = { "scamper", "-p", "10000", "-c",
        "trace -P tcp -d 80", "-f", tfile } },
    }, function(c)
      if c.stdout then
        return ("%d/%d reached"):format(count(slurp(c.stdout), '"reached":true'), CAMPAIGN_TARGETS)
      end
    end)
    end

    local sout, zout, nout = tmp .. "/sweep.jsonl", tmp .. "/zmap.txt", tmp .. "/nmap.txt"
    -- zmap writes Ethernet frames itself: it needs the gateway's MAC
    local mac = l:check("r1", { "cat", "/sys/class/net/to-src/address" })
    if wanted("sweep") then
    sections[#sections + 1] = section(l, tmp, "sweep: ICMP echo to 65 536 addresses", LONG_REPS, {
      -- the same rate as zmap's
      { name = "sonde sweep --rate 150000", argv = { SONDE, "sweep", "-q", "--protocol", "icmp", "--rate", "150000",
        "198.19.0.0/16" }, stdout = sout },
      { name = "zmap -M icmp_echoscan", argv = { "zmap", "-M", "icmp_echoscan", "-q", "-b", "/dev/null",
        "-r", "150000", "-c", "1", "-i", "to-r1", "-G", (mac:gsub("%s", "")), "-o", zout,
        "198.19.0.0/16" } },
      { name = "nmap -sn -PE --min-rate 100000", argv = { "nmap", "-sn", "-PE", "-n", "--min-rate", "100000",
        "-oG", nout, "198.19.0.0/16" } },
    }, function(c)
      if c.name:find("^sonde") then
        return ("%d answered"):format(count(slurp(sout), '"alive":true'))
      elseif c.name:find("^zmap") then
        return ("%d answered"):format(count(slurp(zout), "\n"))
      else
        return ("%d answered"):format(count(slurp(nout), "Status: Up"))
      end
    end)
    end

    if wanted("cost") then
      sections[#sections + 1] = cost_section(l, tmp, targets)
    end

    local text = {}
    for _, s in ipairs(sections) do
      text[#text + 1] = s.kind == "callgrind" and cost_text(s) or table_text(s)
    end
    if wanted("rtt") then
      local r = rtt_section()
      sections[#sections + 1] = r
      text[#text + 1] = rtt_text(r)
    end
    local cpu = slurp("/proc/cpuinfo"):match("model name%s*:%s*([^\n]-)%s*\n")
    local machine = lab.run("uname -srm"):gsub("%s+$", "") .. ", " ..
      (cpu and cpu .. ", " or "") .. lab.run("nproc"):gsub("%s+$", "") .. " cores"
    io.stdout:write(("sonde bench on %s (medians of interleaved runs)\n\n"):format(machine))
    io.stdout:write(table.concat(text, "\n"))
    io.stdout:write("\n* peak RSS above the launcher's own (measured with `true`): Linux\n"
      .. "  counts a child's memory from before exec() in its peak.\n")
    write(OUT_DIR .. "/results.json", cjson.encode{ machine = machine, date = os.date("!%Y-%m-%dT%H:%M:%SZ"),
      sections = sections })
    say("\nwritten: %s", OUT_DIR .. "/results.json")
  end)
  l:destroy()
  os.execute("rm -rf " .. lab.shquote(tmp))
  if not ok then error(err, 0) end
end

main()
