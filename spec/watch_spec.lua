-- sonde watch's parts without a network: the monitor's events from rounds
-- given as tables, the exposition as promtool reads it, and the HTTP
-- server (core.http_listen) against clients that send nothing, send
-- garbage, or come in crowds.

local monitor = require "sonde.watch.monitor"
local metrics = require "sonde.watch.metrics"
local core = require "sonde.core"
local lab = require "lab"
local helpers = require "helpers"

-- A round over a chain: addrs[ttl] answers at each TTL (the last is the
-- destination); lost[ttl] = how many of the q probes there get no answer;
-- rtt: the destination's RTT.
local function round(m, addrs, o)
  o = o or {}
  local probes = {}
  for ttl, a in ipairs(addrs) do
    local final = ttl == #addrs and "reached" or nil
    for k = 1, m.queries do
      if k <= ((o.lost or {})[ttl] or 0) then
        probes[#probes + 1] = { ttl = ttl, status = "timeout" }
      else
        probes[#probes + 1] = { ttl = ttl, status = "reply", addr = a, rtt = final and (o.rtt or 0.01) or 0.005,
          final = final, kind = final and "echo_reply" or "time_exceeded" }
      end
    end
  end
  return m:round{ time = o.time or 1000, limit = #addrs, probes = probes }
end

local function types(evs)
  local t = {}
  for _, e in ipairs(evs) do t[#t + 1] = e.type .. (e.state and ("/" .. e.state) or "") end
  return t
end

local A = { "10.0.0.1", "10.0.1.1", "10.0.2.1", "192.0.2.9" }
local B = { "10.0.0.1", "10.0.9.1", "10.0.2.1", "192.0.2.9" }

describe("sonde.watch.monitor", function()
  it("says nothing while the path stays, and path_change with the first TTL that differs when it moves", function()
    local m = monitor.new{ target = "t", addr = "192.0.2.9", queries = 3 }
    for _ = 1, 5 do assert.are.same({}, round(m, A)) end
    local ev = round(m, B, { time = 2000 })
    assert.are.same({ "path_change" }, types(ev))
    assert.are.equal(2, ev[1].first_ttl)
    assert.are.same({ "10.0.1.1" }, ev[1].old[2].addrs)
    assert.are.same({ "10.0.9.1" }, ev[1].new[2].addrs)
    assert.are.equal(1, m.changes)
    assert.are.equal(2000, m.last_change)
    assert.are.same({}, round(m, B))
  end)

  it("takes a TTL where nothing answered for no change", function()
    local m = monitor.new{ target = "t", addr = "192.0.2.9", queries = 3 }
    round(m, A)
    assert.are.same({}, round(m, A, { lost = { [2] = 3 } }))
    assert.are.equal(0, m.changes)
  end)

  it("waits for a second round before a destination one TTL further with nothing between is a longer path", function()
    local m = monitor.new{ target = "t", addr = "192.0.2.9", queries = 1 }
    round(m, A)
    local longer = { A[1], A[2], A[3], "10.0.3.1", A[4] }
    -- TTL 4 silent, destination at 5: its probe at 4 may have been lost
    assert.are.same({}, round(m, longer, { lost = { [4] = 1 } }))
    assert.are.same({ "path_change" }, types(round(m, longer, { lost = { [4] = 1 } })))
  end)

  it("is lost after --lost-after rounds without the destination, and regained at its first answer", function()
    local m = monitor.new{ target = "t", addr = "192.0.2.9", queries = 2, lost_after = 2 }
    round(m, A)
    local dead = { lost = { [4] = 2 } }
    assert.are.same({}, round(m, A, dead))
    -- all lost in two rounds of three: loss over the window too
    assert.are.same({ "reachability/lost", "loss/start" }, types(round(m, A, dead)))
    assert.are.same({}, round(m, A, dead))
    assert.are.same({ "reachability/regained" }, types(round(m, A)))
  end)

  it("is loss at the destination over the window, from the hop where it starts, and ends below half the threshold", function()
    local m = monitor.new{ target = "t", addr = "192.0.2.9", queries = 4, window = 4 }
    for _ = 1, 4 do round(m, A) end
    local evs = {}
    for _ = 1, 4 do
      for _, e in ipairs(round(m, A, { lost = { [3] = 2, [4] = 2 } })) do evs[#evs + 1] = e end
    end
    assert.are.same({ "loss/start" }, types(evs))
    assert.are.equal(3, evs[1].from_ttl)
    assert.are.equal(0.2, evs[1].threshold)
    evs = {}
    for _ = 1, 4 do
      for _, e in ipairs(round(m, A)) do evs[#evs + 1] = e end
    end
    assert.are.same({ "loss/end" }, types(evs))
  end)

  it("tells ICMP rate limiting at a hop (loss that the hops behind do not show) from path loss", function()
    local m = monitor.new{ target = "t", addr = "192.0.2.9", queries = 4, window = 5 }
    local evs = {}
    for _ = 1, 5 do
      for _, e in ipairs(round(m, A, { lost = { [2] = 3 } })) do evs[#evs + 1] = e end
    end
    assert.are.same({ "icmp_rate_limited/start" }, types(evs))
    assert.are.equal(2, evs[1].ttl)
    assert.are.equal("10.0.1.1", evs[1].hop_addr)
    assert.are.equal(0, evs[1].behind_loss_ratio)
    -- the same loss at hop 2 that carries on to the destination: path loss
    local p = monitor.new{ target = "t", addr = "192.0.2.9", queries = 4, window = 5 }
    evs = {}
    for _ = 1, 5 do
      for _, e in ipairs(round(p, A, { lost = { [2] = 3, [3] = 3, [4] = 3 } })) do evs[#evs + 1] = e end
    end
    assert.are.same({ "loss/start" }, types(evs))
    assert.are.equal(2, evs[1].from_ttl)
  end)

  it("does not call two hops that lose alike rate limiting when they differ by chance", function()
    -- 60 % and 40 % of 10 probes: 20 points apart, but z < 3
    assert.is_false(monitor.clearly_above({ sent = 10, received = 4 }, { sent = 10, received = 6 }))
    assert.is_true(monitor.clearly_above({ sent = 30, received = 12 }, { sent = 30, received = 30 }))
  end)

  it("is rtt_shift when the destination's RTT level moves past factor and minimum", function()
    local m = monitor.new{ target = "t", addr = "192.0.2.9", queries = 1, window = 5 }
    for _ = 1, 6 do assert.are.same({}, round(m, A, { rtt = 0.010 })) end
    local evs = {}
    for _ = 1, 4 do
      for _, e in ipairs(round(m, A, { rtt = 0.050 })) do evs[#evs + 1] = e end
    end
    assert.are.same({ "rtt_shift" }, types(evs))
    assert.are.equal("up", evs[1].direction)
    assert.is_true(evs[1].recent > 1.5 * evs[1].baseline)
  end)
end)

describe("sonde.watch.metrics", function()
  it("renders an exposition that promtool accepts, with bounded labels", function()
    local ms = {}
    for i = 1, 3 do
      local m = monitor.new{ target = i == 3 and 'odd "name"\\x' or ("t" .. i), addr = "192.0.2.9", queries = 2 }
      for _ = 1, 3 do round(m, A, { lost = { [2] = 1 } }) end
      ms[i] = m
    end
    local text = metrics.render(ms, { events = { path_change = 2, loss = 1 } })
    assert.truthy(text:find('sonde_watch_path_hops{target="t1"} 4', 1, true))
    assert.truthy(text:find('sonde_watch_hop_loss_ratio{target="t1",ttl="2"} 0.5', 1, true))
    assert.truthy(text:find('sonde_watch_rtt_seconds_bucket{target="t1",le="+Inf"} 6', 1, true))
    assert.truthy(text:find('target="odd \\"name\\"\\\\x"', 1, true))
    assert.truthy(text:find('sonde_watch_events_total{type="path_change"} 2', 1, true))
    local path = os.tmpname()
    lab.write_file(path, text)
    local out, err, code = lab.run("promtool check metrics < '" .. path .. "'")
    os.remove(path)
    assert.are.equal(0, code, out .. err)
  end)

  it("lets the caller's loop run between slices of targets", function()
    local ms = {}
    for i = 1, 200 do
      ms[i] = monitor.new{ target = "t" .. i, addr = "x", queries = 1 }
    end
    local pauses = 0
    metrics.render(ms, { pause = function() pauses = pauses + 1 end })
    assert.are.equal(math.floor(200 / metrics.SLICE), pauses)
  end)
end)

describe("core.http_listen", function()
  local function curl(args)
    local argv = { "curl", "-s", "--max-time", "3" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return lab.run(argv)
  end

  it("serves the document at /metrics, 503 before one, 404 and 405 otherwise; closes once", function()
    local fds = helpers.fd_count()
    local srv = assert(core.http_listen("127.0.0.1", 0))
    local host, port = srv:address()
    assert.are.equal("127.0.0.1", host)
    assert(srv:start{ timeout = 2 })
    local base = "http://127.0.0.1:" .. port
    assert.are.equal("503", (curl{ "-o", "/dev/null", "-w", "%{http_code}", base .. "/metrics" }))
    srv:set("a 1\n")
    assert.are.equal("a 1\n", (curl{ base .. "/metrics" }))
    assert.are.equal("404", (curl{ "-o", "/dev/null", "-w", "%{http_code}", base .. "/nope" }))
    assert.are.equal("405", (curl{ "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", base .. "/metrics" }))
    local ctype = curl{ "-o", "/dev/null", "-w", "%{content_type}", base .. "/metrics" }
    assert.are.equal("text/plain; version=0.0.4; charset=utf-8", ctype)
    assert.is_true(srv:close())
    assert.are.same({ nil, "server already closed" }, { srv:close() })
    assert.are.equal(fds, helpers.fd_count())
  end)

  it("names what binding failed with", function()
    local a = assert(core.http_listen("127.0.0.1", 0))
    local _, port = a:address()
    local b, err, name = core.http_listen("127.0.0.1", port)
    assert.is_nil(b)
    assert.are.equal("EADDRINUSE", name)
    assert.truthy(err:find("^EADDRINUSE: "))
    local _, _, name2 = core.http_listen("192.0.2.1", 0)
    assert.are.equal("EADDRNOTAVAIL", name2)
    assert.has_error(function() core.http_listen("localhost", 0) end)
    a:close()
  end)

  it("answers while idle and garbage-sending clients hold connections, and drops them after the timeout", function()
    local srv = assert(core.http_listen("127.0.0.1", 0))
    local _, port = srv:address()
    assert(srv:start{ connection_limit = 8, per_ip_limit = 8, timeout = 1 })
    srv:set("b 2\n")
    -- 6 clients that connect and say nothing, 2 that send garbage slowly
    -- (python, bounded: each ends after 4 s)
    local script = ([[
import socket, time
held = []
for i in range(8):
    s = socket.create_connection(("127.0.0.1", %d))
    if i >= 6: s.send(b"GARBAGE \x00\xff\r\n")
    held.append(s)
time.sleep(4)
]]):format(port)
    local path = os.tmpname()
    lab.write_file(path, script)
    local bg = io.popen("timeout 10 python3 '" .. path .. "' 2>&1; echo done")
    lab.sleep(0.3)
    -- the table is full now: a new client waits until the idle ones are
    -- timed out (1 s), then gets its answer, well before they leave (4 s)
    local t0 = os.time()
    local out = curl{ "--max-time", "3", "http://127.0.0.1:" .. port .. "/metrics" }
    assert.are.equal("b 2\n", out)
    assert.is_true(os.time() - t0 <= 3)
    assert.are.equal("done", bg:read("*a"):match("(%S+)%s*$"))
    bg:close()
    os.remove(path)
    srv:close()
  end)
end)

describe("examples/watch", function()
  local dir = helpers.root() .. "/examples/watch/"

  it("has a Prometheus config and rules that promtool accepts", function()
    local out, err, code = lab.run({ "promtool", "check", "config", dir .. "prometheus.yml" })
    assert.are.equal(0, code, out .. err)
    out, err, code = lab.run({ "promtool", "check", "rules", dir .. "sonde-watch-rules.yml" })
    assert.are.equal(0, code, out .. err)
  end)

  it("names in its dashboard and rules only series that sonde watch exports", function()
    local known = {}
    for _, f in ipairs(metrics.FAMILIES) do
      known[f[1]] = true
      if f[2] == "histogram" then
        for _, s in ipairs{ "_bucket", "_sum", "_count" } do known[f[1] .. s] = true end
      end
    end
    local cjson = require "cjson"
    local dash = cjson.decode((assert(lab.read_file(dir .. "grafana-dashboard.json"))))
    local used = 0
    local texts = { assert(lab.read_file(dir .. "sonde-watch-rules.yml")) }
    for _, p in ipairs(dash.panels) do
      for _, t in ipairs(p.targets or {}) do texts[#texts + 1] = t.expr end
    end
    for _, v in ipairs(dash.templating.list) do
      if type(v.query) == "string" then texts[#texts + 1] = v.query end
    end
    for _, text in ipairs(texts) do
      for name in text:gmatch("sonde_watch_[%w_]+") do
        used = used + 1
        assert.is_true(known[name] == true, name .. " is not a series sonde watch exports")
      end
    end
    assert.is_true(used >= 12)
  end)
end)
