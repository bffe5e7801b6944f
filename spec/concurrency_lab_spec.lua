-- Many probers on one host at once: pairs and crowds of sonde (every
-- strategy: classic, paris, dublin, mda; fixed and kernel-chosen source
-- ports; UDP, ICMP and TCP) beside Linux traceroute, mtr and ping, across
-- a five-hop path with real delays (sonde-netsim: every probe of every
-- process is in flight for tens of milliseconds, so their identities meet).
--
-- Every reply a prober reports must come from the router of its TTL (the
-- destination from TTL 5 on) and be of that router's kind: a reply taken
-- from another process's probe (a shared source port, a shared ICMP id)
-- shows as a wrong hop, a router past the fifth hop as a path longer than
-- it is.
-- Where two processes ask for one fixed source port, one of them holds it
-- and the other's probes are skipped (EADDRINUSE), never answered by the
-- first one's replies.

local sanitized = (os.getenv("SONDE_SANITIZE") or "") ~= ""
local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

local ROOT = helpers.root()
local NETSIM = helpers.build() .. "/sonde-netsim"
local HOPS = 5

-- family -> the hop addresses (TTL 1..5, 5 the destination) of its scenario
local PATHS = {
  [4] = { "198.18.210.1", "198.18.210.2", "198.18.210.3", "198.18.210.4", "198.18.210.50" },
  [6] = { "2001:db8:210::1", "2001:db8:210::2", "2001:db8:210::3", "2001:db8:210::4", "2001:db8:210::50" },
}
local NODE = { [4] = "sim", [6] = "sim6" }
local FINAL = { udp = "dest_unreachable", icmp = "echo_reply", tcp = "tcp_rst" }

-- Runs of one command per process, a marker line after each run.
local RUNS = 3
local MARK = "=== run end ==="

-- The part of a process's output that each run printed.
local function runs_of(out)
  local t = {}
  for chunk in (out .. "\n"):gmatch("(.-)\n" .. MARK .. "\n") do t[#t + 1] = chunk end
  return t
end

local function expect(fam, ttl, proto)
  local path = PATHS[fam]
  if ttl >= HOPS then return path[HOPS], FINAL[proto] end
  return path[ttl], "time_exceeded"
end

-- Wrong attributions in a sonde trace (classic, paris, or dublin's flows).
local function check_trace(t, fam, proto, bad, who)
  local traces = t.flows or { t }
  for _, f in ipairs(traces) do
    for _, hop in ipairs(f.hops) do
      for _, p in ipairs(hop.probes) do
        if p.status == "reply" then
          local addr, kind = expect(fam, hop.ttl, proto)
          if p.addr ~= addr or p.kind ~= kind then
            bad[#bad + 1] = ("%s: ttl %d %s %s"):format(who, hop.ttl, tostring(p.kind), tostring(p.addr))
          end
        elseif p.status == "failed" then
          bad[#bad + 1] = ("%s: ttl %d failed %s in %s"):format(who, hop.ttl, p.error and p.error.name or "?", p.error and tostring(p.error.call) or "?")
        end
      end
    end
  end
end

-- Wrong interfaces in an mda run: on this path every TTL has exactly one.
local function check_mda(t, fam, bad, who)
  for _, hop in ipairs(t.hops) do
    local addr = expect(fam, hop.ttl, "udp")
    if #hop.nodes > 1 then
      bad[#bad + 1] = ("%s: ttl %d has %d interfaces (a load balancer that is not there)"):format(who, hop.ttl, #hop.nodes)
    end
    for _, n in ipairs(hop.nodes) do
      if n.addr ~= addr then bad[#bad + 1] = ("%s: ttl %d %s"):format(who, hop.ttl, n.addr) end
    end
    if hop.ttl > HOPS and #hop.nodes > 0 then
      bad[#bad + 1] = ("%s: an interface at ttl %d"):format(who, hop.ttl)
    end
  end
end

-- traceroute -n: "TTL  ADDR  RTT ms ..." lines; every address on a line
-- must be that TTL's router.
local function check_traceroute(out, fam, bad, who)
  for line in out:gmatch("[^\n]+") do
    local ttl, rest = line:match("^%s*(%d+)%s+(.*)$")
    ttl = tonumber(ttl)
    if ttl then
      if ttl > HOPS and rest:match("[%x:.]+%d") then
        bad[#bad + 1] = ("%s: hop %d: %s"):format(who, ttl, rest)
      end
      local addr = expect(fam, ttl, "udp")
      for a in rest:gmatch("([%x:.]+)%s+[%d.]+%s+ms") do
        if a ~= addr then bad[#bad + 1] = ("%s: ttl %d %s"):format(who, ttl, a) end
      end
    end
  end
end

-- mtr -r -n: "  N.|-- ADDR  Loss% ..." lines.
local function check_mtr(out, fam, bad, who)
  local n = 0
  for ttl, addr in out:gmatch("\n%s*(%d+)%.%|%-%-%s+(%S+)") do
    ttl = tonumber(ttl)
    n = n + 1
    if addr ~= "???" and (ttl > HOPS or addr ~= expect(fam, ttl, "icmp")) then
      bad[#bad + 1] = ("%s: ttl %d %s"):format(who, ttl, addr)
    end
  end
  if n == 0 then bad[#bad + 1] = who .. ": no report: " .. out end
end

-- ping -n: every reply from the destination, none twice.
local function check_ping(out, fam, bad, who)
  local n = 0
  for from in out:gmatch("bytes from ([%x:.]+):") do
    n = n + 1
    if from ~= PATHS[fam][HOPS] then bad[#bad + 1] = ("%s: a reply from %s"):format(who, from) end
  end
  if out:match("DUP!") then bad[#bad + 1] = who .. ": duplicate replies" end
  if n == 0 then bad[#bad + 1] = who .. ": no reply: " .. out end
end

helpers.lab_describe("probers side by side on one host", function()
  local l, sims = nil, {}

  setup(function()
    for _, tool in ipairs{ "traceroute", "mtr", "ping" } do
      local path = lab.run{ "sh", "-c", "command -v " .. tool }
      assert(path:match("/"), tool .. " is not installed (Debian: traceroute, mtr-tiny, iputils-ping)")
    end
    l = lab.build{ name = "crowd", nodes = { "sim", "sim6" },
                   sysctls = { sim = { ["net.ipv4.ping_group_range"] = "0 2147483647" },
                               sim6 = { ["net.ipv4.ping_group_range"] = "0 2147483647" } } }
    for fam, scenario in pairs{ [4] = "crowd", [6] = "crowd6" } do
      sims[fam] = l:spawn(NODE[fam], { NETSIM, "--scenario",
        ROOT .. "/spec/fixtures/scenarios/" .. scenario .. ".json", "--max-time", "300" })
      sims[fam]:wait_for("^ready ", 5)
    end
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  -- A command run RUNS times in a row in one process tree, a marker after
  -- each run. kind: how its output is read.
  local function sonde_cmd(fam, args, kind, proto)
    local argv = { helpers.sonde() }
    for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
    argv[#argv + 1] = "-n"
    argv[#argv + 1] = "--format"
    argv[#argv + 1] = "json"
    argv[#argv + 1] = PATHS[fam][HOPS]
    return { argv = argv, kind = kind, proto = proto, fam = fam }
  end

  local function tool_cmd(fam, argv, kind)
    local a = {}
    for _, x in ipairs(argv) do a[#a + 1] = x end
    a[#a + 1] = PATHS[fam][HOPS]
    return { argv = a, kind = kind, fam = fam, tool = true }
  end

  -- Starts every command at once, waits for all, and returns the wrong
  -- attributions, and how many probes each outcome had.
  local function crowd(cmds)
    local procs = {}
    -- They all start together: each waits (5 s at most) for this file.
    local go = os.tmpname()
    os.remove(go)
    finally(function() os.remove(go) end)
    for i, c in ipairs(cmds) do
      local line = {}
      for _, a in ipairs(c.argv) do line[#line + 1] = lab.shquote(a) end
      local script = ("n=0; while [ ! -e %s ] && [ $n -lt 500 ]; do sleep 0.01; n=$((n+1)); done; "):format(lab.shquote(go))
        .. ("for i in %s; do %s; echo %s; done"):format(
        table.concat((function() local r = {} for k = 1, c.tool and 1 or RUNS do r[k] = k end return r end)(), " "),
        table.concat(line, " "), lab.shquote(MARK))
      procs[i] = l:spawn(NODE[c.fam], { "sh", "-c", script })
    end
    assert(io.open(go, "w")):close()
    local bad, outcomes = {}, {}
    for i, c in ipairs(cmds) do
      local p = procs[i]
      local code = p:wait(60)
      local out, err = p:output()
      local who = ("%d %s"):format(i, table.concat(c.argv, " "):gsub("^%S*/", ""))
      assert.is_not_nil(code, who .. " did not end")
      for _, run in ipairs(runs_of(out)) do
        if c.kind == "trace" or c.kind == "mda" then
          local ok, t = pcall(cjson.decode, run)
          assert.is_true(ok, who .. ": " .. run .. err)
          if c.kind == "trace" then
            check_trace(t, c.fam, c.proto, bad, who)
            for _, f in ipairs(t.flows or { t }) do
              for _, hop in ipairs(f.hops) do
                for _, pr in ipairs(hop.probes) do
                  outcomes[pr.status] = (outcomes[pr.status] or 0) + 1
                end
              end
            end
          else
            check_mda(t, c.fam, bad, who)
          end
        elseif c.kind == "traceroute" then
          check_traceroute(run, c.fam, bad, who)
        elseif c.kind == "mtr" then
          check_mtr(run, c.fam, bad, who)
        else
          check_ping(run, c.fam, bad, who)
        end
      end
    end
    return bad, outcomes
  end

  -- Runs `sonde trace --protocol icmp` with its first echo id candidate (its
  -- process id, mod 65536) already taken: an abstract unix socket named
  -- after it (another sonde's hold), or an ICMP datagram socket bound to
  -- it (ping's). -> the id the trace used, the id that was taken.
  local HOLD = [[
import json, os, socket, sys
sonde, dst, how = sys.argv[1], sys.argv[2], sys.argv[3]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    os.read(r, 1)
    os.execv(sonde, [sonde, "trace", "--protocol", "icmp", "-n", "-q", "1", "-m", "1", "--format", "json", dst])
os.close(r)
taken = pid & 0xffff
if how == "unix":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(chr(0) + "sonde/icmp-id/%d" % taken)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.bind(("0.0.0.0", taken))
os.write(w, b"x")
os.close(w)
_, status = os.waitpid(pid, 0)
print(taken)
]]

  for _, how in ipairs{ "unix", "ping" } do
    it(("gives a raw-socket ICMP trace an echo id that no one holds (%s)"):format(
        how == "unix" and "another sonde's" or "a ping socket's"), function()
      local out, err, code = l:exec(NODE[4], { "python3", "-c", HOLD, helpers.sonde(), PATHS[4][HOPS], how })
      assert.are.equal(0, code, err)
      local json, taken = out:match("^(.-)\n(%d+)\n$")
      assert.is_not_nil(json, out)
      local t = cjson.decode(json)
      local id = t.hops[1].probes[1].icmp_id
      assert.are_not.equal(tonumber(taken), id)
      -- the next candidate (process id + 7919): the first was tried
      assert.are.equal((tonumber(taken) + 7919) % 65536, id)
      assert.are.equal("time_exceeded", t.hops[1].probes[1].kind)
    end)
  end

  for _, fam in ipairs{ 4, 6 } do
    local F = "-" .. fam

    it(("pairs on one fixed UDP source port share no reply: paris, classic, dublin beside mda (IPv%d)"):format(fam), function()
      local base = 42000 + fam * 100
      local bad, outcomes = crowd{
        sonde_cmd(fam, { "trace", F, "--protocol", "udp", "--strategy", "paris", "--sport", base, "-q", "1" }, "trace", "udp"),
        sonde_cmd(fam, { "trace", F, "--protocol", "udp", "--strategy", "paris", "--sport", base, "-q", "3" }, "trace", "udp"),
        sonde_cmd(fam, { "trace", F, "--protocol", "udp", "--strategy", "classic", "--sport", base + 10, "-q", "1" }, "trace", "udp"),
        sonde_cmd(fam, { "trace", F, "--protocol", "udp", "--strategy", "classic", "--sport", base + 10, "-q", "2", "-f", "2" }, "trace", "udp"),
        sonde_cmd(fam, { "trace", F, "--protocol", "udp", "--strategy", "dublin", "--flows", "3", "--sport", base + 20 }, "trace", "udp"),
        sonde_cmd(fam, { "mda", F, "--sport", base + 20, "-w", "1" }, "mda"),
        sonde_cmd(fam, { "trace", F, "--protocol", "tcp", "--sport", base + 30, "-q", "1" }, "trace", "tcp"),
        sonde_cmd(fam, { "trace", F, "--protocol", "tcp", "--sport", base + 30, "-q", "2" }, "trace", "tcp"),
      }
      assert.are.same({}, bad)
      -- the pairs met: one of each held the port, the other was skipped
      -- (an ASan build starts too slowly for the pairs to meet every time:
      -- there, only that no reply was shared)
      if not sanitized then
        assert.is_true((outcomes.skipped or 0) > 0, "no probe was skipped: " .. cjson.encode(outcomes))
      end
      assert.is_true((outcomes.reply or 0) > 0)
    end)

    it(("a crowd on kernel-chosen ports and ICMP ids, with traceroute, mtr and ping, shares no reply (IPv%d)"):format(fam), function()
      local cmds = {}
      for q = 1, 3 do
        cmds[#cmds + 1] = sonde_cmd(fam, { "trace", F, "--protocol", "udp", "--strategy", "classic", "-q", q }, "trace", "udp")
      end
      for q = 1, 2 do
        cmds[#cmds + 1] = sonde_cmd(fam, { "trace", F, "--protocol", "icmp", "-q", q }, "trace", "icmp")
        cmds[#cmds + 1] = sonde_cmd(fam, { "trace", F, "--protocol", "icmp", "--strategy", "classic", "-q", q + 1 }, "trace", "icmp")
        cmds[#cmds + 1] = sonde_cmd(fam, { "trace", F, "--protocol", "tcp", "-q", q }, "trace", "tcp")
      end
      cmds[#cmds + 1] = sonde_cmd(fam, { "trace", F, "--protocol", "udp", "--strategy", "paris", "-q", "2" }, "trace", "udp")
      cmds[#cmds + 1] = tool_cmd(fam, { "traceroute", F, "-n", "-q", "3", "-w", "2", "-m", "8" }, "traceroute")
      cmds[#cmds + 1] = tool_cmd(fam, { "traceroute", F, "-I", "-n", "-q", "3", "-w", "2", "-m", "8" }, "traceroute")
      cmds[#cmds + 1] = tool_cmd(fam, { "mtr", F, "-r", "-n", "-c", "5", "-i", "0.2" }, "mtr")
      cmds[#cmds + 1] = tool_cmd(fam, { "ping", F, "-n", "-c", "15", "-i", "0.05" }, "ping")
      local bad, outcomes = crowd(cmds)
      assert.are.same({}, bad)
      assert.is_true((outcomes.reply or 0) > 0)
    end)

    it(("unprivileged probers beside privileged ones share no reply (IPv%d)"):format(fam), function()
      local function nobody(c)
        local a = {}
        for _, x in ipairs(helpers.AS_NOBODY) do a[#a + 1] = x end
        for _, x in ipairs(c.argv) do a[#a + 1] = x end
        c.argv = a
        return c
      end
      local bad, outcomes = crowd{
        nobody(sonde_cmd(fam, { "trace", F, "--protocol", "udp", "-q", "1" }, "trace", "udp")),
        nobody(sonde_cmd(fam, { "trace", F, "--protocol", "udp", "-q", "3" }, "trace", "udp")),
        nobody(sonde_cmd(fam, { "trace", F, "--protocol", "icmp", "-q", "1" }, "trace", "icmp")),
        nobody(sonde_cmd(fam, { "trace", F, "--protocol", "icmp", "-q", "2" }, "trace", "icmp")),
        nobody(sonde_cmd(fam, { "trace", F, "--protocol", "tcp", "-q", "2" }, "trace", "tcp")),
        sonde_cmd(fam, { "trace", F, "--protocol", "udp", "--strategy", "classic", "-q", "2" }, "trace", "udp"),
        sonde_cmd(fam, { "trace", F, "--protocol", "icmp", "-q", "3" }, "trace", "icmp"),
        tool_cmd(fam, { "ping", F, "-n", "-c", "15", "-i", "0.05" }, "ping"),
      }
      assert.are.same({}, bad)
      assert.is_true((outcomes.reply or 0) > 0)
    end)
  end
end)
