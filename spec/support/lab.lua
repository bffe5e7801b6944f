-- spec/support/lab.lua: real networks inside one machine, for lab specs.
--
-- A lab is a set of network namespaces joined by veth pairs. Its rules:
-- probes go only to addresses inside namespaces the spec made itself
-- (198.18.0.0/15, 2001:db8::/32) or to loopback; every loop is bounded;
-- namespaces carry a per-run prefix and are removed on every exit path.
-- Everything here shells out to `ip`,
-- `nft` and `sysctl`; every command's result is checked and a failure raises
-- an error that quotes the command and what it printed.  Plain Lua 5.1 /
-- LuaJIT, no C modules, no globals.
--
--   local lab = require "lab"
--   local l = lab.chain{ routers = 3, silent = { 2 }, v6 = true, name = "trace" }
--   l.hops[1].v4, l.hops[1].v6    -- router 1's address facing src
--   l.dst.v4, l.dst.v6, l.src.v4  -- end hosts
--   l.ns.src, l.ns.dst, l.ns.r[2] -- namespace names
--   local out, err, code = l:exec("src", { "ping", "-c1", "-W1", l.dst.v4 })
--   l:check("src", "ip route")    -- stdout, or raises with the output
--   local peer = l:spawn("dst", { "build/labpeer", "listen", "-p", "80" })
--   peer:wait_for("^ready$", 5)   -- also :wait(t), :stop(), :output(),
--                                 -- :running(), :command_pid()
--   l:sysctl("src", "net.ipv4.ip_local_port_range", "40000 40003")
--   l:nft("dst", "table inet t { ... }")
--   l:hosts("src", { ["far.lab"] = l.dst.v4 })   -- /etc/netns/NS/hosts
--   l:etc("src", "resolv.conf", "nameserver 127.0.0.1\n")
--   l:destroy()                   -- idempotent; also runs when the lab is
--                                 -- garbage collected or the process ends
--
-- Other topologies: lab.build{ nodes, links, routes, routers, nft, ... }
-- (see lab.build below; lab.chain is written on top of it).
--
-- Address plan of a chain (link i joins node i and node i+1, src = node 0,
-- router k = node k, dst = node N+1):
--   IPv4 198.18.i.1/24 (left end) and 198.18.i.2/24 (right end)
--   IPv6 2001:db8:i::1/64 and 2001:db8:i::2/64 (i in hex; link 0 is
--   2001:db8::/64, the canonical spelling, as inet_ntop writes it)
-- so router k answers from 198.18.(k-1).2 / 2001:db8:(k-1)::2, the address of
-- its interface facing src.  Routes are specific (one per link), so an
-- address outside the plan is unreachable rather than looping.
--
-- Namespace names: <SONDE_LAB_PREFIX><pid>-<counter>[-<name>]-<node>.  The
-- prefix is set per run by spec/run, which deletes everything starting with
-- it on every exit path.
--
-- From the shell:
--   luajit spec/support/lab.lua up NAME [--routers N] [--silent K,...] [--no-v6] [--ratelimit]
--   luajit spec/support/lab.lua down NAME

local lab = {}
lab.__index = lab

local DEFAULT_PREFIX = "sdlab-"
local POLL = 0.02            -- seconds between two looks at something we wait for

-- ---------------------------------------------------------------------------
-- Shell plumbing

local function shquote(s)
  s = tostring(s)
  if s:match("^[%w%%+,./:@_-]+$") then return s end
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end
lab.shquote = shquote

-- A command is either a string for `sh -c` or an argv table (quoted here).
local function cmdline(cmd)
  if type(cmd) == "table" then
    local parts = {}
    for i = 1, #cmd do parts[i] = shquote(cmd[i]) end
    return table.concat(parts, " ")
  end
  assert(type(cmd) == "string", "command must be a string or an argv table")
  return cmd
end
lab.cmdline = cmdline

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
lab.read_file = read_file

local function write_file(path, text)
  local f, err = io.open(path, "wb")
  if not f then error("cannot write " .. path .. ": " .. tostring(err), 2) end
  f:write(text)
  f:close()
end
lab.write_file = write_file

local tmp_counter = 0
local self_pid, default_prefix

-- A fresh temporary path, /tmp/<prefix><pid>-t<n>: spec/run removes
-- /tmp/<prefix>* at the end of a run, should one be left behind.
local function tmpname()
  tmp_counter = tmp_counter + 1
  return ("/tmp/%s%s-t%d"):format(default_prefix(), self_pid(), tmp_counter)
end

-- run(cmd) -> stdout, stderr, exit code.  Never raises for a failing command.
-- stdin is /dev/null; stderr goes through a temporary file that is removed
-- before returning.
local function run(cmd)
  local errf = tmpname()
  local p, perr = io.popen("( " .. cmdline(cmd) .. "\n) </dev/null 2>" .. shquote(errf)
                           .. "; printf '\\n:%d' $?")
  if not p then
    os.remove(errf)
    return "", "lab: cannot start a shell: " .. tostring(perr), -1
  end
  local out = p:read("*a") or ""
  p:close()
  local err = read_file(errf) or ""
  os.remove(errf)
  local body, code = out:match("^(.*)\n:(%d+)$")
  if not body then return out, err, -1 end
  return body, err, tonumber(code)
end
lab.run = run

local function failure(cmd, out, err, code)
  local msg = ("lab: command failed (exit %s): %s"):format(tostring(code), cmdline(cmd))
  if out ~= "" then msg = msg .. "\nstdout: " .. out end
  if err ~= "" then msg = msg .. "\nstderr: " .. err end
  return msg
end

-- must(cmd) -> stdout; raises with the command and its output on failure.
local function must(cmd)
  local out, err, code = run(cmd)
  if code ~= 0 then error(failure(cmd, out, err, code), 0) end
  return out
end
lab.must = must

local function sleep(seconds)
  os.execute("sleep " .. string.format("%.3f", seconds))
end
lab.sleep = sleep

-- This process's pid (a string).
local pid_cache
function self_pid()
  if not pid_cache then
    local stat = read_file("/proc/self/stat")
    pid_cache = stat and stat:match("^(%d+)") or tostring(os.time())
  end
  return pid_cache
end
lab.pid = self_pid

-- /proc/PID/stat -> state letter, start time (clock ticks since boot).
local function proc_stat(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return nil end
  local rest = stat:match("%) (.*)$")
  if not rest then return nil end
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- rest starts at field 3 (state); starttime is field 22
  return fields[1], fields[20]
end

-- ---------------------------------------------------------------------------
-- Namespaces by name (also used by `down`)

local function netns_list()
  local out = must({ "ip", "netns", "list" })
  local names = {}
  for line in out:gmatch("[^\n]+") do
    local name = line:match("^(%S+)")
    if name then names[#names + 1] = name end
  end
  return names
end
lab.netns_list = netns_list

local function starts_with(s, prefix) return s:sub(1, #prefix) == prefix end

-- Kills every process inside namespace `ns` (TERM, then KILL), bounded.
local function kill_netns_pids(ns)
  for round = 1, 2 do
    local out = run({ "ip", "netns", "pids", ns })
    local pids = {}
    for pid in out:gmatch("%d+") do pids[#pids + 1] = pid end
    if #pids == 0 then return end
    run("kill -" .. (round == 1 and "TERM" or "KILL") .. " " .. table.concat(pids, " ") .. " 2>/dev/null")
    for _ = 1, math.floor(2 / POLL) do
      local left = run({ "ip", "netns", "pids", ns })
      local alive = false
      for pid in left:gmatch("%d+") do
        local state = proc_stat(pid)
        if state and state ~= "Z" then alive = true end
      end
      if not alive then return end
      sleep(POLL)
    end
  end
end

-- Deletes namespace `ns` after killing what runs in it.  Returns an error
-- message or nil.
local function delete_netns(ns)
  kill_netns_pids(ns)
  local out, err, code = run({ "ip", "netns", "delete", ns })
  if code ~= 0 then return failure({ "ip", "netns", "delete", ns }, out, err, code) end
  return nil
end

-- Removes every namespace and /etc/netns entry whose name starts with
-- `prefix`.  Returns the list of namespaces removed.
function lab.down(prefix)
  assert(type(prefix) == "string" and #prefix >= 3 and prefix:match("^[%w][%w._-]*$"),
         "lab.down: the name prefix must be at least 3 characters of [A-Za-z0-9._-]")
  local removed, errors = {}, {}
  for _, ns in ipairs(netns_list()) do
    if starts_with(ns, prefix) then
      local e = delete_netns(ns)
      if e then errors[#errors + 1] = e else removed[#removed + 1] = ns end
    end
  end
  run("rm -rf /etc/netns/" .. shquote(prefix) .. "*")
  if #errors > 0 then error(table.concat(errors, "\n"), 0) end
  return removed
end

-- ---------------------------------------------------------------------------
-- Lab objects

local counter = 0

function default_prefix()
  return os.getenv("SONDE_LAB_PREFIX") or DEFAULT_PREFIX
end
lab.prefix = default_prefix

-- The start of every namespace name this process makes with lab.new.
function lab.own_prefix()
  return default_prefix() .. self_pid() .. "-"
end

-- A name a namespace or interface may carry.
local function check_name(what, s, max)
  if type(s) ~= "string" or not s:match("^[%w][%w._-]*$") or (max and #s > max) then
    error(("lab: invalid %s %q (letters, digits, . _ -%s)"):format(
      what, tostring(s), max and (", at most " .. max .. " characters") or ""), 3)
  end
end

-- lab.new{ name = "x" } -> an empty lab (no namespaces yet).  Its base name is
-- prefix .. pid .. "-" .. counter .. "-" .. name, or opts.base verbatim.
function lab.new(opts)
  opts = opts or {}
  local base = opts.base
  if not base then
    counter = counter + 1
    base = lab.own_prefix() .. counter
    if opts.name then base = base .. "-" .. opts.name end
  end
  check_name("lab name", base)
  local self = setmetatable({
    base = base,
    ns = { r = {} },       -- node key -> namespace name; ns.r[k] for routers
    nodes = {},            -- node keys, in creation order
    created = {},          -- namespace names that exist because of us
    procs = {},            -- spawned handles
    files = {},            -- paths (files or directories) to remove
    links = {},
    destroyed = false,
  }, lab)
  -- A sentinel whose finalizer destroys the lab when it is garbage
  -- collected or when the Lua state closes, unless it was kept (`up`).
  if newproxy then
    local sentinel = newproxy(true)
    getmetatable(sentinel).__gc = function()
      if not self.keep then pcall(self.destroy, self) end
    end
    self._sentinel = sentinel
  end
  return self
end

-- Accepts a node key ("src", "r1", "dst") or a full namespace name.
function lab:nsname(node)
  if self.ns[node] and type(self.ns[node]) == "string" then return self.ns[node] end
  for _, name in ipairs(self.created) do
    if name == node then return name end
  end
  error(("lab: unknown node or namespace %q"):format(tostring(node)), 3)
end

-- Adds a namespace for node `key`.
function lab:add_node(key)
  check_name("node name", key)
  local name = self.base .. "-" .. key
  if self.ns[key] then error("lab: node " .. key .. " added twice", 2) end
  must({ "ip", "netns", "add", name })
  self.created[#self.created + 1] = name
  self.nodes[#self.nodes + 1] = key
  self.ns[key] = name
  must({ "ip", "-n", name, "link", "set", "lo", "up" })
  return name
end

local function is_v6(addr) return addr:find(":", 1, true) ~= nil end

-- Joins nodes a and b with a veth pair.  opts: names = { ifa, ifb }
-- (default "to-<peer>"), v4 = { "A/len", "B/len" }, v6 = { "A/len", "B/len" }.
function lab:link(a, b, opts)
  opts = opts or {}
  local na, nb = self:nsname(a), self:nsname(b)
  local ifa = opts.names and opts.names[1] or ("to-" .. b)
  local ifb = opts.names and opts.names[2] or ("to-" .. a)
  check_name("interface name", ifa, 15)
  check_name("interface name", ifb, 15)
  must({ "ip", "-n", na, "link", "add", ifa, "type", "veth", "peer", "name", ifb, "netns", nb })
  for _, fam in ipairs({ "v4", "v6" }) do
    local addrs = opts[fam]
    if addrs then
      for i, ns in ipairs({ na, nb }) do
        local argv = { "ip", "-n", ns, "addr", "add", addrs[i], "dev", i == 1 and ifa or ifb }
        if fam == "v6" then argv[#argv + 1] = "nodad" end
        must(argv)
      end
    end
  end
  must({ "ip", "-n", na, "link", "set", ifa, "up" })
  must({ "ip", "-n", nb, "link", "set", ifb, "up" })
  self.links[#self.links + 1] = { a = a, b = b, ifa = ifa, ifb = ifb }
end

-- Adds a route in node `node`: "198.18.3.0/24 via 198.18.0.2" or any
-- `ip route add` arguments; IPv6 when the text contains a colon.
function lab:route(node, spec)
  local argv = { "ip", "-n", self:nsname(node) }
  if is_v6(spec) then argv[#argv + 1] = "-6" end
  argv[#argv + 1] = "route"
  argv[#argv + 1] = "add"
  for w in spec:gmatch("%S+") do argv[#argv + 1] = w end
  must(argv)
end

-- Sets sysctls in a namespace: lab:sysctl(node, key, value) or
-- lab:sysctl(node, { [key] = value, ... }).
function lab:sysctl(node, key, value)
  local settings = type(key) == "table" and key or { [key] = value }
  local argv = { "ip", "netns", "exec", self:nsname(node), "sysctl", "-q", "-w" }
  local keys = {}
  for k in pairs(settings) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = tostring(settings[k])
    if not k:match("^[%w._/-]+$") or v:find("[\n=]") then
      error(("lab:sysctl: invalid setting %q = %q"):format(k, v), 2)
    end
    argv[#argv + 1] = k .. "=" .. v
  end
  if #keys > 0 then must(argv) end
end

-- Loads an nftables ruleset (text, as for `nft -f`) into a namespace.
function lab:nft(node, ruleset)
  local ns = self:nsname(node)
  local path = tmpname()
  write_file(path, ruleset)
  local out, err, code = run({ "ip", "netns", "exec", ns, "nft", "-f", path })
  os.remove(path)
  if code ~= 0 then
    error(failure({ "ip", "netns", "exec", ns, "nft", "-f", "<ruleset>" }, out, err, code)
          .. "\nruleset:\n" .. ruleset, 0)
  end
end

-- Writes /etc/netns/NS/NAME, which `ip netns exec` bind-mounts over
-- /etc/NAME inside the namespace (hosts, resolv.conf, ...).  Removed at
-- destroy, as is everything else under /etc/netns/NS.
function lab:etc(node, name, text)
  local ns = self:nsname(node)
  check_name("file name", name)
  local dir = "/etc/netns/" .. ns
  must({ "mkdir", "-p", dir })
  write_file(dir .. "/" .. name, text)
  return dir .. "/" .. name
end

-- Writes /etc/netns/NS/hosts (seen as /etc/hosts inside the namespace).
-- map: { name = address }; localhost is always there.
function lab:hosts(node, map)
  local names = {}
  for name in pairs(map) do names[#names + 1] = name end
  table.sort(names)
  local lines = { "127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback" }
  for _, name in ipairs(names) do lines[#lines + 1] = map[name] .. " " .. name end
  return self:etc(node, "hosts", table.concat(lines, "\n") .. "\n")
end

-- The command line that runs cmd inside namespace ns: a string goes to
-- `sh -c` inside the namespace, so that all of it ("a; b", pipes) runs
-- there and nothing of it in the root namespace.
local function in_netns(ns, cmd)
  return "ip netns exec " .. shquote(ns) .. " "
    .. (type(cmd) == "table" and cmdline(cmd) or ("sh -c " .. shquote(cmdline(cmd))))
end

-- Runs a command (string or argv table) inside a namespace:
-- -> stdout, stderr, exit code.
function lab:exec(node, cmd)
  return run(in_netns(self:nsname(node), cmd))
end

-- As exec, but raises on a non-zero exit; -> stdout.
function lab:check(node, cmd)
  return must(in_netns(self:nsname(node), cmd))
end

-- ---------------------------------------------------------------------------
-- Background processes

local Proc = {}
Proc.__index = Proc

local function alive(pid, start)
  local state, st = proc_stat(pid)
  return state ~= nil and state ~= "Z" and st == start
end

-- Starts `cmd` in the background inside a namespace, in its own session (so
-- that :stop() reaches its children too), with stdout and stderr captured in
-- files.  -> handle with :stop(), :wait(t), :wait_for(pattern, t),
-- :output(), :running(), :command_pid().  The lab stops it at destroy.
function lab:spawn(node, cmd)
  local ns = self:nsname(node)
  local dir = must("mktemp -d " .. shquote("/tmp/" .. default_prefix() .. "XXXXXX")):match("^%s*(.-)%s*$")
  self.files[#self.files + 1] = dir
  local inner = in_netns(ns, cmd)
  -- The wrapper shell records the exit status; its TERM trap makes it wait
  -- for the command and still write the status when the group is signalled.
  local wrapper = "trap : TERM INT; " .. inner .. " >" .. shquote(dir .. "/out") .. " 2>"
    .. shquote(dir .. "/err") .. " </dev/null; echo $? >" .. shquote(dir .. "/rc")
  local out = must("setsid sh -c " .. shquote(wrapper) .. " >/dev/null 2>&1 </dev/null & echo $!")
  local pid = out:match("(%d+)")
  if not pid then error("lab:spawn: no process id from the shell: " .. out, 2) end
  local _, start = proc_stat(pid)
  local h = setmetatable({ pid = pid, start = start, dir = dir, ns = ns, cmd = cmdline(cmd), lab = self }, Proc)
  self.procs[#self.procs + 1] = h
  return h
end

function Proc:running()
  if self.start == nil then return false end
  return alive(self.pid, self.start)
end

-- The pid of the command itself (`pid` is the shell that waits for it and
-- records its exit status), e.g. for helpers.fd_count.  Waits at most
-- `timeout` seconds (default 5) for it to exist; -> pid, or nil.
function Proc:command_pid(timeout)
  for _ = 0, math.ceil((timeout or 5) / POLL) do
    if not self:running() then return nil end
    local kids = read_file("/proc/" .. self.pid .. "/task/" .. self.pid .. "/children")
    if kids == nil then kids = run({ "pgrep", "-P", self.pid }) end
    local pid = kids:match("%d+")
    if pid then return pid end
    sleep(POLL)
  end
  return nil
end

-- -> stdout, stderr captured so far.
function Proc:output()
  return read_file(self.dir .. "/out") or "", read_file(self.dir .. "/err") or ""
end

local function exit_code(self)
  local rc = read_file(self.dir .. "/rc")
  return rc and tonumber(rc:match("%d+"))
end

-- Waits (at most `timeout` seconds, default 5) for the process to end.
-- -> exit code, or nil, "timeout".
function Proc:wait(timeout)
  for _ = 0, math.ceil((timeout or 5) / POLL) do
    local rc = exit_code(self)
    if rc then return rc end
    if not self:running() then
      rc = exit_code(self)
      return rc, rc == nil and "no exit status" or nil
    end
    sleep(POLL)
  end
  return nil, "timeout"
end

-- Waits (at most `timeout` seconds, default 5) until a line of its stdout
-- matches the Lua pattern.  Raises with its output if it ends first or the
-- time runs out; -> the matching line.
function Proc:wait_for(pattern, timeout)
  timeout = timeout or 5
  for i = 0, math.ceil(timeout / POLL) do
    local out = self:output()
    for line in out:gmatch("[^\n]*") do
      if line:match(pattern) then return line end
    end
    if i > 0 and not self:running() then break end
    sleep(POLL)
  end
  local out, err = self:output()
  error(("lab: %q never printed a line matching %q (%s; exit %s)\nstdout: %s\nstderr: %s"):format(
    self.cmd, pattern, self:running() and ("still running after " .. timeout .. " s") or "ended",
    tostring(exit_code(self)), out, err), 2)
end

-- Stops the process group (TERM, then KILL after 2 s) and waits for it.
-- Idempotent.  -> exit code if known.
function Proc:stop()
  if not self.stopped then
    self.stopped = true
    for _, sig in ipairs({ "TERM", "KILL" }) do
      if not self:running() then break end
      run("kill -" .. sig .. " -" .. self.pid .. " 2>/dev/null")  -- dash: no "--"
      for _ = 1, math.floor(2 / POLL) do
        if not self:running() then break end
        sleep(POLL)
      end
    end
    if self:running() then
      error(("lab: process %s (%s) survived SIGKILL"):format(self.pid, self.cmd), 2)
    end
  end
  return exit_code(self)
end

-- ---------------------------------------------------------------------------
-- Waiting for links, teardown

-- Waits (bounded) until every veth is up and no IPv6 address is tentative.
function lab:wait_ready(timeout)
  timeout = timeout or 5
  local last
  for _ = 0, math.ceil(timeout / POLL) do
    last = nil
    for _, key in ipairs(self.nodes) do
      local ns = self.ns[key]
      local links = must({ "ip", "-n", ns, "-o", "link", "show", "type", "veth" })
      for line in links:gmatch("[^\n]+") do
        if not line:find("state UP", 1, true) then last = ns .. ": " .. line end
      end
      local tentative = must({ "ip", "-n", ns, "-6", "-o", "addr", "show", "tentative" })
      if tentative:match("%S") then last = ns .. ": " .. tentative end
    end
    if not last then return end
    sleep(POLL)
  end
  error("lab: links not ready after " .. timeout .. " s: " .. last, 2)
end

-- Removes every namespace, process and file the lab made.  Idempotent; tries
-- everything, then raises if something could not be removed.
function lab:destroy()
  if self.destroyed then return end
  local errors = {}
  for i = #self.procs, 1, -1 do
    local ok, err = pcall(Proc.stop, self.procs[i])
    if not ok then errors[#errors + 1] = tostring(err) end
  end
  local paths = { "rm", "-rf", "--" }
  for i = #self.created, 1, -1 do
    local ok, err = pcall(delete_netns, self.created[i])
    if not ok or err then errors[#errors + 1] = tostring(err) end
    paths[#paths + 1] = "/etc/netns/" .. self.created[i]
  end
  for i = #self.files, 1, -1 do paths[#paths + 1] = self.files[i] end
  if #paths > 3 then
    local out, err, code = run(paths)
    if code ~= 0 then errors[#errors + 1] = failure(paths, out, err, code) end
  end
  self.destroyed = true
  if #errors > 0 then error(table.concat(errors, "\n"), 2) end
end

-- Builds a lab from a description, destroying whatever was made if a step
-- fails (and re-raising).  spec = {
--   name, base,                       -- see lab.new
--   nodes = { "src", "r1", "dst" },
--   routers = { r1 = true },          -- forwarding on
--   links = { { "src", "r1", v4 = {...}, v6 = {...}, names = {...} }, ... },
--   routes = { src = { "198.18.1.0/24 via 198.18.0.2", ... }, ... },
--   sysctls = { node = { key = value } },
--   nft = { node = "ruleset" },
--   ratelimit = false,                -- true keeps the kernel's ICMP limits
-- }
function lab.build(spec)
  local self = lab.new{ name = spec.name, base = spec.base }
  local ok, err = pcall(function()
    for _, key in ipairs(spec.nodes) do
      self:add_node(key)
      local s = {
        -- addresses usable at once: no duplicate address detection
        ["net.ipv6.conf.all.accept_dad"] = 0,
        ["net.ipv6.conf.default.accept_dad"] = 0,
      }
      if not spec.ratelimit then
        -- the defaults limit ICMP errors (1000/s and a 50 burst per
        -- namespace, plus a per-destination token bucket)
        s["net.ipv4.icmp_ratelimit"] = 0
        s["net.ipv4.icmp_msgs_per_sec"] = 1000000
        s["net.ipv4.icmp_msgs_burst"] = 1000000
        s["net.ipv6.icmp.ratelimit"] = 0
      end
      if spec.routers and spec.routers[key] then
        s["net.ipv4.ip_forward"] = 1
        s["net.ipv6.conf.all.forwarding"] = 1
        s["net.ipv6.conf.default.forwarding"] = 1
        -- time-exceeded comes from the interface the probe came in on
        s["net.ipv4.icmp_errors_use_inbound_ifaddr"] = 1
        s["net.ipv4.conf.all.rp_filter"] = 0
        s["net.ipv4.conf.default.rp_filter"] = 0
      end
      for k, v in pairs(spec.sysctls and spec.sysctls[key] or {}) do s[k] = v end
      self:sysctl(key, s)
    end
    for _, l in ipairs(spec.links or {}) do self:link(l[1], l[2], l) end
    for _, key in ipairs(spec.nodes) do
      for _, r in ipairs(spec.routes and spec.routes[key] or {}) do self:route(key, r) end
    end
    for _, key in ipairs(spec.nodes) do
      if spec.nft and spec.nft[key] then self:nft(key, spec.nft[key]) end
    end
    self:wait_ready()
  end)
  if not ok then
    local ok2, err2 = pcall(self.destroy, self)
    if not ok2 then err = tostring(err) .. "\n(and cleaning up failed: " .. tostring(err2) .. ")" end
    error(err, 0)
  end
  return self
end

-- The ruleset of a silent hop: it forwards, but its time-exceeded errors
-- never leave it.
lab.SILENT_RULESET = [[
table inet sonde_lab_silent {
  chain output {
    type filter hook output priority 0; policy accept;
    icmp type time-exceeded counter drop
    icmpv6 type time-exceeded counter drop
  }
}
]]

local function v4(link, side) return ("198.18.%d.%d"):format(link, side) end
-- canonical (inet_ntop) spelling: link 0 is 2001:db8::/64
local function v6net(link) return link == 0 and "2001:db8::" or ("2001:db8:%x::"):format(link) end
local function v6(link, side) return v6net(link) .. side end

-- lab.chain{ routers = N (default 3), silent = { k, ... }, v6 = true,
--            ratelimit = false, name = "...", base = "..." }
-- src — r1 — … — rN — dst.  Fields: ns.src, ns.dst, ns.r[k], ns[key];
-- src/dst = { v4, v6, ns }; hops[k] = { v4, v6, ns } for router k (its
-- interface facing src) and hops[N+1] = dst; routers = N; silent = { [k]=true }.
function lab.chain(opts)
  opts = opts or {}
  local n = opts.routers or 3
  assert(type(n) == "number" and n >= 0 and n <= 250 and n % 1 == 0,
         "lab.chain: routers must be an integer from 0 to 250")
  local with_v6 = opts.v6 ~= false
  local silent = {}
  for _, k in ipairs(opts.silent or {}) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
      error(("lab.chain: silent hop %s is not a router (1..%d)"):format(tostring(k), n), 2)
    end
    silent[k] = true
  end
  local keys = { "src" }
  for k = 1, n do keys[#keys + 1] = "r" .. k end
  keys[#keys + 1] = "dst"

  local spec = { name = opts.name or "chain", base = opts.base, nodes = keys,
                 routers = {}, links = {}, routes = {}, nft = {},
                 ratelimit = opts.ratelimit, sysctls = opts.sysctls }
  for k = 1, n do spec.routers["r" .. k] = true end
  for i = 0, n do
    spec.links[#spec.links + 1] = {
      keys[i + 1], keys[i + 2],
      v4 = { v4(i, 1) .. "/24", v4(i, 2) .. "/24" },
      v6 = with_v6 and { v6(i, 1) .. "/64", v6(i, 2) .. "/64" } or nil,
    }
  end
  -- node p reaches link i (not its own) through its neighbour on that side
  for p = 0, n + 1 do
    local routes = {}
    for i = 0, n do
      if i > p then
        routes[#routes + 1] = ("198.18.%d.0/24 via %s"):format(i, v4(p, 2))
        if with_v6 then routes[#routes + 1] = ("%s/64 via %s"):format(v6net(i), v6(p, 2)) end
      elseif i < p - 1 then
        routes[#routes + 1] = ("198.18.%d.0/24 via %s"):format(i, v4(p - 1, 1))
        if with_v6 then routes[#routes + 1] = ("%s/64 via %s"):format(v6net(i), v6(p - 1, 1)) end
      end
    end
    spec.routes[keys[p + 1]] = routes
  end
  for k in pairs(silent) do spec.nft["r" .. k] = lab.SILENT_RULESET end

  local self = lab.build(spec)
  self.routers = n
  self.silent = silent
  self.v6 = with_v6
  local function host(key, link, side)
    return { ns = self.ns[key], v4 = v4(link, side), v6 = with_v6 and v6(link, side) or nil }
  end
  self.src = host("src", 0, 1)
  self.dst = host("dst", n, 2)
  self.hops = {}
  for k = 1, n do
    self.ns.r[k] = self.ns["r" .. k]
    self.hops[k] = host("r" .. k, k - 1, 2)
  end
  self.hops[n + 1] = self.dst
  return self
end

-- lab.diamond{ width = 2 (2..8), v6 = true, hash = "l4" | "fields",
--              seed = N | false, name = "...", base = "...",
--              nft = { node = "ruleset" }, sysctls = { node = {...} } }
-- An ECMP "diamond": src — r1, which load-balances over `width` routers in
-- parallel (r2 .. r(width+1)), which rejoin at the next router — dst.  With
-- width 2: src — r1 — {r2, r3} — r4 — dst.
--
--   TTL 1   r1                       (the split)
--   TTL 2   r2 | r3 | ...            (one of the branches, per flow)
--   TTL 3   the join router          (one address, whatever the branch)
--   TTL 4   dst
--
-- r1 routes dst's link with one multipath route (`nexthop via B1 nexthop
-- via B2 ...`) and hashes on L4 (net.ipv4/ipv6.fib_multipath_hash_policy =
-- 1: addresses, protocol and ports), so a UDP or TCP flow (its 5-tuple)
-- keeps one branch and different ports may take different ones.  ICMP has
-- no ports: the kernel hashes echo requests on addresses and protocol only,
-- so every ICMP probe of a run takes the same branch. hash = "fields" uses
-- policy 3 with the same fields taken from the headers (addresses,
-- protocol, ports): with policy 1 a forwarded packet whose sender's socket
-- gave it a flow hash (TCP: a random one per socket, kept across veth) is
-- balanced by that hash, so only "fields" balances TCP by its ports.
-- The hash seed (net.ipv4.fib_multipath_hash_seed, kernels from 6.11) is
-- fixed (seed, default 2) so that a flow takes the same branch on every
-- run: specs that need "both branches within n probes" are then
-- deterministic; seed = false keeps the kernel's random one.
--
-- Address plan (link i: 198.18.i.1 left end, 198.18.i.2 right end; IPv6
-- 2001:db8:i::1 / ::2 as in lab.chain):
--   link 0          src — r1
--   link k          r1 — branch k            (k = 1 .. width)
--   link width+k    branch k — join
--   link 2*width+1  join — dst
-- A branch answers from its interface facing r1 (198.18.k.2).  The join
-- router answers from one address whatever branch the probe came in by: it
-- has one route back (through branch 1), and its ICMP errors take the
-- address of the interface they leave from (icmp_errors_use_inbound_ifaddr
-- = 0), so it reads as one node where the branches rejoin.
--
-- Fields: ns.src, ns.dst, ns.r[k], ns[key]; src, dst = { v4, v6, ns };
-- split = r1's { v4, v6, ns }; branches[k] = branch k's; join = the join
-- router's; hops[ttl] = list of the nodes that may answer at that TTL
-- ({ split }, branches, { join }, { dst }); split_ttl = 2 (the TTL whose
-- answer depends on the flow); width.
local HASH_POLICY = { l4 = 1, fields = 3 }
-- policy 3's fields: source and destination address, protocol, source and
-- destination port (no flow label)
local FIELDS = "0x0037"
local DEFAULT_SEED = 2

function lab.diamond(opts)
  opts = opts or {}
  local w = opts.width or 2
  assert(type(w) == "number" and w >= 2 and w <= 8 and w % 1 == 0,
         "lab.diamond: width must be an integer from 2 to 8")
  local with_v6 = opts.v6 ~= false
  local policy = HASH_POLICY[opts.hash or "l4"]
  if not policy then
    error(("lab.diamond: hash %q is not one of l4, fields"):format(tostring(opts.hash)), 2)
  end
  -- The hash seed (IPv4 and IPv6; kernels from 6.11): by default fixed, so
  -- that which flow takes which branch is the same on every run; false:
  -- the kernel's, random per namespace.
  local seed = opts.seed == nil and DEFAULT_SEED or opts.seed
  local join = "r" .. (w + 2)
  local keys = { "src", "r1" }
  for k = 1, w do keys[#keys + 1] = "r" .. (k + 1) end
  keys[#keys + 1] = join
  keys[#keys + 1] = "dst"
  local last = 2 * w + 1                     -- the join — dst link

  local spec = { name = opts.name or "diamond", base = opts.base, nodes = keys,
                 routers = {}, links = {}, routes = {}, nft = opts.nft or {},
                 ratelimit = opts.ratelimit, sysctls = {} }
  local function link(a, b, i)
    spec.links[#spec.links + 1] = { a, b,
      v4 = { v4(i, 1) .. "/24", v4(i, 2) .. "/24" },
      v6 = with_v6 and { v6(i, 1) .. "/64", v6(i, 2) .. "/64" } or nil }
  end
  link("src", "r1", 0)
  for k = 1, w do link("r1", "r" .. (k + 1), k) end
  for k = 1, w do link("r" .. (k + 1), join, w + k) end
  link(join, "dst", last)

  -- routes(node, { [link] = gateway link/side or a list of them })
  local function add(node, i, via, src)
    local r = spec.routes[node] or {}
    spec.routes[node] = r
    local l4, l6 = ("198.18.%d.0/24"):format(i), v6net(i) .. "/64"
    if #via == 1 then
      local s4 = src and (" src " .. v4(src[1], src[2])) or ""
      local s6 = src and (" src " .. v6(src[1], src[2])) or ""
      r[#r + 1] = l4 .. " via " .. v4(via[1][1], via[1][2]) .. s4
      if with_v6 then r[#r + 1] = l6 .. " via " .. v6(via[1][1], via[1][2]) .. s6 end
    else
      local m4, m6 = { l4 }, { l6 }
      for _, g in ipairs(via) do
        m4[#m4 + 1] = "nexthop via " .. v4(g[1], g[2])
        m6[#m6 + 1] = "nexthop via " .. v6(g[1], g[2])
      end
      r[#r + 1] = table.concat(m4, " ")
      if with_v6 then r[#r + 1] = table.concat(m6, " ") end
    end
  end
  local all_branches = {}
  for k = 1, w do all_branches[k] = { k, 2 } end
  for i = 1, last do add("src", i, { { 0, 2 } }) end
  for k = 1, w do add("r1", w + k, { { k, 2 } }) end
  add("r1", last, all_branches)             -- the split
  for k = 1, w do
    local b = "r" .. (k + 1)
    add(b, 0, { { k, 1 } })
    for j = 1, w do
      if j ~= k then
        add(b, j, { { k, 1 } })
        add(b, w + j, { { w + k, 2 } })
      end
    end
    add(b, last, { { w + k, 2 } })
  end
  -- Back through branch 1, and from one address: IPv6 takes the source of
  -- an ICMPv6 error from the interface the packet came in on unless the
  -- route back names one (icmp6_send, "a more meaningful saddr").
  for i = 0, w do add(join, i, { { w + 1, 1 } }, { w + 1, 2 }) end
  for i = 0, last - 1 do add("dst", i, { { last, 1 } }) end

  for i = 1, #keys do
    local key = keys[i]
    if key ~= "src" and key ~= "dst" then
      spec.routers[key] = true
      spec.sysctls[key] = {
        ["net.ipv4.fib_multipath_hash_policy"] = policy,
        ["net.ipv6.fib_multipath_hash_policy"] = policy,
      }
      if policy == 3 then
        spec.sysctls[key]["net.ipv4.fib_multipath_hash_fields"] = FIELDS
        spec.sysctls[key]["net.ipv6.fib_multipath_hash_fields"] = FIELDS
      end
      if seed and read_file("/proc/sys/net/ipv4/fib_multipath_hash_seed") then
        spec.sysctls[key]["net.ipv4.fib_multipath_hash_seed"] = seed
      end
    end
  end
  spec.sysctls[join]["net.ipv4.icmp_errors_use_inbound_ifaddr"] = 0
  for node, s in pairs(opts.sysctls or {}) do
    spec.sysctls[node] = spec.sysctls[node] or {}
    for k, v in pairs(s) do spec.sysctls[node][k] = v end
  end

  local self = lab.build(spec)
  self.width = w
  self.v6 = with_v6
  local function host(key, i, side)
    return { ns = self.ns[key], v4 = v4(i, side), v6 = with_v6 and v6(i, side) or nil }
  end
  self.src = host("src", 0, 1)
  self.dst = host("dst", last, 2)
  self.split = host("r1", 0, 2)
  self.branches = {}
  for k = 1, w do self.branches[k] = host("r" .. (k + 1), k, 2) end
  self.join = host(join, w + 1, 2)
  self.hops = { { self.split }, self.branches, { self.join }, { self.dst } }
  self.split_ttl = 2
  for i, key in ipairs(keys) do
    if key:match("^r%d+$") then self.ns.r[i - 1] = self.ns[key] end
  end
  return self
end

-- lab.multihomed{ name = "...", base = "...", nft = { node = "ruleset" } }
-- A host with several uplinks, for a probe's source address and interface:
--
--   src to-ra (198.18.0.1, 2001:db8::1)   — ra (198.18.0.2) — dst (198.18.2.2)
--   src to-rb (198.18.1.1, 2001:db8:1::1) — rb (198.18.1.2) — dst (198.18.3.2)
--   src to-vr (198.18.4.1, 2001:db8:4::1) — vt (198.18.4.2; vt's own
--       address 198.18.5.5 / 2001:db8:5::5 on its loopback)
--
-- (IPv6: 2001:db8:i::1/::2 on link i as lab.chain has it.) src's main table
-- reaches dst's link 198.18.2.0/24 through ra (metric 100) and, worse,
-- through rb (metric 200): only what is bound to to-rb takes rb. A policy
-- rule sends what leaves from 198.18.1.1 (2001:db8:1::1) through rb (table
-- 100), as a multihomed host is set up. So hop 1 says which way a probe
-- went. vt's 198.18.5.5 is routed in table 10 only: where the kernel has
-- VRFs, to-vr is enslaved to vrf-x (table 10), and only what is bound to
-- to-vr (or vrf-x) is routed by that table; a kernel without CONFIG_NET_VRF
-- gets the same from the rule a VRF installs for itself, made by hand
-- ("oif to-vr lookup 10"). Fields: ns.*; src, a, b, vr (src's addresses
-- towards ra, rb and vt: { v4, v6 }), ra, rb, dst, vt (each { v4, v6 });
-- vrf (true when vrf-x is a real VRF).
function lab.multihomed(opts)
  opts = opts or {}
  local function pair(link, side) return { v4 = v4(link, side), v6 = v6(link, side) } end
  local function link(a, b, i, names)
    return { a, b, names = names,
             v4 = { v4(i, 1) .. "/24", v4(i, 2) .. "/24" },
             v6 = { v6(i, 1) .. "/64", v6(i, 2) .. "/64" } }
  end
  local self = lab.build{
    name = opts.name or "multihomed", base = opts.base,
    nodes = { "src", "ra", "rb", "dst", "vt" },
    routers = { ra = true, rb = true },
    sysctls = { src = { ["net.ipv4.ping_group_range"] = "0 2147483647" } },
    links = { link("src", "ra", 0), link("src", "rb", 1), link("ra", "dst", 2), link("rb", "dst", 3),
              link("src", "vt", 4, { "to-vr", "to-src" }) },
    routes = {
      src = { "198.18.2.0/24 via 198.18.0.2 metric 100", "2001:db8:2::/64 via 2001:db8::2 metric 100",
              "198.18.2.0/24 via 198.18.1.2 metric 200", "2001:db8:2::/64 via 2001:db8:1::2 metric 200",
              "198.18.2.0/24 via 198.18.1.2 table 100", "2001:db8:2::/64 via 2001:db8:1::2 table 100" },
      rb = { "198.18.2.0/24 via 198.18.3.2", "2001:db8:2::/64 via 2001:db8:3::2" },
      dst = { "198.18.0.0/24 via 198.18.2.1", "2001:db8::/64 via 2001:db8:2::1",
              "198.18.1.0/24 via 198.18.3.1", "2001:db8:1::/64 via 2001:db8:3::1" },
      vt = { "198.18.0.0/16 via 198.18.4.1", "2001:db8::/32 via 2001:db8:4::1" },
    },
    nft = opts.nft,
  }
  local ok, err = pcall(function()
    self:check("src", "ip rule add from 198.18.1.1 lookup 100")
    self:check("src", "ip -6 rule add from 2001:db8:1::1 lookup 100")
    self:check("vt", "ip addr add 198.18.5.5/32 dev lo")
    self:check("vt", "ip addr add 2001:db8:5::5/128 dev lo nodad")
    local _, _, code = self:exec("src", "ip link add vrf-x type vrf table 10")
    self.vrf = code == 0
    if self.vrf then
      self:check("src", "ip link set vrf-x up")
      self:check("src", "ip link set to-vr master vrf-x")
    else
      self:check("src", "ip rule add oif to-vr lookup 10")
      self:check("src", "ip -6 rule add oif to-vr lookup 10")
    end
    self:check("src", "ip route add 198.18.5.5/32 via 198.18.4.2 table 10")
    self:check("src", "ip -6 route add 2001:db8:5::5/128 via 2001:db8:4::2 table 10")
  end)
  if not ok then
    pcall(self.destroy, self)
    error(err, 0)
  end
  self.a, self.b, self.vr = pair(0, 1), pair(1, 1), pair(4, 1)
  self.src = self.a
  self.ra, self.rb = pair(0, 2), pair(1, 2)
  self.dst = pair(2, 2)
  self.vt = { v4 = "198.18.5.5", v6 = "2001:db8:5::5" }
  return self
end

-- Shell variables describing a chain or a diamond (for `up`).
function lab:shell_vars()
  local lines = {}
  local function put(k, v) if v then lines[#lines + 1] = k .. "=" .. shquote(v) end end
  put("LAB_NAME", self.base)
  if self.width then
    put("WIDTH", self.width)
    put("SRC_NS", self.ns.src)
    put("DST_NS", self.ns.dst)
    for _, n in ipairs{ { "SRC", self.src }, { "DST", self.dst }, { "SPLIT", self.split },
                        { "JOIN", self.join } } do
      put(n[1] .. "_V4", n[2].v4)
      put(n[1] .. "_V6", n[2].v6)
    end
    for k, b in ipairs(self.branches) do
      put("BRANCH" .. k .. "_V4", b.v4)
      put("BRANCH" .. k .. "_V6", b.v6)
    end
    return table.concat(lines, "\n") .. "\n"
  end
  put("ROUTERS", self.routers)
  put("SRC_NS", self.ns.src)
  put("DST_NS", self.ns.dst)
  put("SRC_V4", self.src.v4)
  put("SRC_V6", self.src.v6)
  put("DST_V4", self.dst.v4)
  put("DST_V6", self.dst.v6)
  for k = 1, self.routers do
    put("R" .. k .. "_NS", self.ns.r[k])
    put("HOP" .. k .. "_V4", self.hops[k].v4)
    put("HOP" .. k .. "_V6", self.hops[k].v6)
  end
  return table.concat(lines, "\n") .. "\n"
end

-- ---------------------------------------------------------------------------
-- Command line

local USAGE = [[
usage: luajit spec/support/lab.lua up NAME [--routers N] [--silent K,...] [--no-v6] [--ratelimit]
       luajit spec/support/lab.lua up NAME --diamond [--width N] [--hash l4|fields] [--no-v6]
       luajit spec/support/lab.lua down NAME
`up` builds the chain src — r1 — … — rN — dst in namespaces NAME-src, NAME-r1, …
and prints it as shell variables (SRC_NS, DST_V4, HOP1_V4, …); with --diamond,
the ECMP diamond of lab.diamond (SRC_NS, DST_V4, SPLIT_V4, BRANCH1_V4, JOIN_V4,
…); `down` removes every namespace and /etc/netns entry whose name starts with
NAME.
]]

local function main(argv)
  local cmd, name = argv[1], argv[2]
  if (cmd ~= "up" and cmd ~= "down") or not name then
    io.stderr:write(USAGE)
    return 2
  end
  if cmd == "down" then
    local ok, res = pcall(lab.down, name)
    if not ok then io.stderr:write(tostring(res), "\n") return 1 end
    for _, ns in ipairs(res) do io.stderr:write("removed ", ns, "\n") end
    return 0
  end
  local opts = { base = name }
  local i = 3
  while argv[i] do
    local a = argv[i]
    if a == "--routers" and tonumber(argv[i + 1]) then
      opts.routers = tonumber(argv[i + 1]); i = i + 2
    elseif a == "--silent" and argv[i + 1] and argv[i + 1]:match("^%d+[%d,]*$") then
      opts.silent = {}
      for k in argv[i + 1]:gmatch("%d+") do opts.silent[#opts.silent + 1] = tonumber(k) end
      i = i + 2
    elseif a == "--no-v6" then
      opts.v6 = false; i = i + 1
    elseif a == "--ratelimit" then
      opts.ratelimit = true; i = i + 1
    elseif a == "--diamond" then
      opts.diamond = true; i = i + 1
    elseif a == "--width" and tonumber(argv[i + 1]) then
      opts.width = tonumber(argv[i + 1]); i = i + 2
    elseif a == "--hash" and (argv[i + 1] == "l4" or argv[i + 1] == "fields") then
      opts.hash = argv[i + 1]; i = i + 2
    else
      io.stderr:write("lab.lua: bad option or value: ", a, "\n", USAGE)
      return 2
    end
  end
  local ok, res = pcall(opts.diamond and lab.diamond or lab.chain, opts)
  if not ok then io.stderr:write(tostring(res), "\n") return 1 end
  res.keep = true            -- outlive this process; `down NAME` removes it
  io.stdout:write(res:shell_vars())
  return 0
end

-- Run as a script (`luajit spec/support/lab.lua ...`), not through require.
if arg and arg[0] and arg[0]:match("lab%.lua$") and select("#", ...) == #arg
   and (... == nil or ... == arg[1]) then
  os.exit(main(arg))
end

return lab
