-- sonde watch in the lab: a real Prometheus server scrapes it, a route that
-- changes mid-run is one path_change event, a router that drops some of its
-- ICMP errors is icmp_rate_limited and not loss, SIGHUP reloads the targets
-- (read as nobody), and thousands of AnyIP targets keep memory and
-- descriptors flat.

-- make check's ASan build keeps freed memory in quarantine (up to 256 MB):
-- its RSS says nothing about sonde's own memory.
local sanitized = (os.getenv("SONDE_SANITIZE") or "") ~= ""
local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

-- Every event line sonde wrote so far (a last line without its end is not
-- one yet).
local function events(p)
  local out = p:output()
  local t = {}
  for _, line in ipairs(helpers.lines(out)) do t[#t + 1] = cjson.decode(line) end
  return t
end

local function of_type(evs, ty)
  local t = {}
  for _, e in ipairs(evs) do if e.type == ty then t[#t + 1] = e end end
  return t
end

-- GET url from inside node (curl, bounded) -> body, or nil.
local function get(l, node, url)
  local out, _, code = l:exec(node, { "curl", "-s", "-f", "--max-time", "2", url })
  if code ~= 0 then return nil end
  return out
end

-- The value of the first sample of a series in exposition text.
local function sample(text, series)
  local esc = series:gsub("[%.%-%+%[%]%(%)%%%*%?%^%$]", "%%%0")
  local v = text and text:match("\n" .. esc .. " (%S+)")
  return v and tonumber(v)
end

local function watch_argv(args)
  local argv = { helpers.sonde(), "watch" }
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  return argv
end

-- RSS (kB) of a process.
local function rss_kb(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+)"))
end

helpers.lab_describe("sonde watch scraped by Prometheus", function()
  local l, dir
  setup(function()
    l = lab.chain{ routers = 2, v6 = false, name = "watchprom" }
    dir = helpers.temp_dir("prom")
  end)
  teardown(function()
    if l then l:destroy() end
    if dir then os.execute("rm -rf '" .. dir .. "'") end
  end)

  it("serves series that Prometheus stores and returns through its HTTP API, and promtool accepts", function()
    local listen = l.src.v4 .. ":9464"
    local w = l:spawn("src", watch_argv{ "-i", "0.5", "-q", "2", "-m", "8", "--duration", "60",
      "--listen", listen, l.dst.v4 })
    local metrics = helpers.wait_until(function()
      local body = get(l, "src", "http://" .. listen .. "/metrics")
      return body and sample(body, ('sonde_watch_path_hops{target="%s"}'):format(l.dst.v4)) and body
    end, 15, "sonde watch's first rounds")
    assert.are.equal(3, sample(metrics, ('sonde_watch_path_hops{target="%s"}'):format(l.dst.v4)))
    assert.are.equal(1, sample(metrics, ('sonde_watch_reachable{target="%s"}'):format(l.dst.v4)))
    assert.are.equal(0, sample(metrics, ('sonde_watch_path_changes_total{target="%s"}'):format(l.dst.v4)))
    assert.truthy(metrics:find(('sonde_watch_hop_info{target="%s",ttl="1",addr="%s"} 1'):format(
      l.dst.v4, l.hops[1].v4), 1, true))

    -- promtool reads the exposition as Prometheus would, and lints it
    local expo = dir .. "/metrics.txt"
    lab.write_file(expo, metrics)
    local out, err, code = lab.run("promtool check metrics < '" .. expo .. "'")
    assert.are.equal(0, code, out .. err)

    -- a real Prometheus, scraping every second
    lab.write_file(dir .. "/prometheus.yml", ([[
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: sonde
    static_configs:
      - targets: ['%s']
]]):format(listen))
    local prom = l:spawn("src", { "prometheus", "--config.file=" .. dir .. "/prometheus.yml",
      "--storage.tsdb.path=" .. dir .. "/data", "--web.listen-address=127.0.0.1:9090",
      "--log.level=warn" })
    local api = "http://127.0.0.1:9090/api/v1/query?query="
    local res = helpers.wait_until(function()
      local body = get(l, "src", api .. "sonde_watch_reachable")
      local doc = body and cjson.decode(body)
      return doc and doc.status == "success" and #doc.data.result > 0 and doc
    end, 30, "Prometheus to store a scrape", 0.25)
    local r = res.data.result[1]
    assert.are.equal(l.dst.v4, r.metric.target)
    assert.are.equal("sonde", r.metric.job)
    assert.are.equal("1", r.value[2])
    io.stderr:write("\nPrometheus /api/v1/query?query=sonde_watch_reachable: ",
      cjson.encode(res), "\n")
    -- a histogram quantile over the RTT histogram answers too
    local q = helpers.wait_until(function()
      local body = get(l, "src", api .. "histogram_quantile(0.9,sonde_watch_rtt_seconds_bucket)")
      local doc = body and cjson.decode(body)
      return doc and doc.status == "success" and #doc.data.result > 0 and doc
    end, 10, "a histogram quantile", 0.25)
    local v = tonumber(q.data.result[1].value[2])
    assert.is_true(v > 0 and v <= 2.5, "0.9 quantile " .. tostring(v))
    -- up (Prometheus's own view of the scrape): every scrape worked
    local body = get(l, "src", api .. "up")
    assert.are.equal("1", cjson.decode(body).data.result[1].value[2])
    prom:stop()
    assert.are.equal(143, w:stop())
  end)
end)

helpers.lab_describe("sonde watch while a route changes", function()
  local l
  setup(function()
    l = lab.diamond{ width = 2, v6 = false, name = "watchroute" }
    -- r1 sends dst's link down branch 1 alone (no multipath) for now
    l:check("r1", ("ip route replace 198.18.5.0/24 via %s"):format(l.branches[1].v4))
  end)
  teardown(function()
    if l then l:destroy() end
  end)

  it("writes one path_change within two rounds, with a Dublin trace, and counts it", function()
    local listen = l.src.v4 .. ":9465"
    local w = l:spawn("src", watch_argv{ "-i", "0.5", "-q", "2", "-m", "8", "--duration", "60",
      "--diagnose-every", "0", "--listen", listen, l.dst.v4 })
    local series = ('sonde_watch_rounds_total{target="%s"}'):format(l.dst.v4)
    helpers.wait_until(function()
      return (sample(get(l, "src", "http://" .. listen .. "/metrics"), series) or 0) >= 3
    end, 15, "three rounds")
    assert.are.same({}, of_type(events(w), "path_change"))
    -- the next hop swapped: branch 2 from now on
    l:check("r1", ("ip route replace 198.18.5.0/24 via %s"):format(l.branches[2].v4))
    local swapped = sample(get(l, "src", "http://" .. listen .. "/metrics"), series)
    local ev = helpers.wait_until(function() return of_type(events(w), "path_change")[1] end, 15,
      "a path_change event")
    -- rounds are counted when they end: the round in flight at the swap,
    -- then at most two more
    assert.is_true(ev.round <= swapped + 3, ("round %d, swapped after %d"):format(ev.round, swapped))
    assert.are.equal(2, ev.first_ttl)
    assert.are.same({ l.branches[1].v4 }, ev.old[2].addrs)
    assert.are.same({ l.branches[2].v4 }, ev.new[2].addrs)
    assert.are.equal(4, ev.new_hops)
    assert.are.equal("dublin", ev.diagnosis.strategy)
    assert.is_true(ev.diagnosis.reached)
    io.stderr:write("\npath_change event: ", cjson.encode(ev), "\n")
    local text = helpers.wait_until(function()
      local body = get(l, "src", "http://" .. listen .. "/metrics")
      return sample(body, ('sonde_watch_path_changes_total{target="%s"}'):format(l.dst.v4)) == 1 and body
    end, 10, "the counter at 1")
    assert.truthy(sample(text, ('sonde_watch_last_path_change_timestamp_seconds{target="%s"}'):format(l.dst.v4)) > 0)
    -- a few more rounds: the new path is the known one, no second event
    local now = sample(text, series)
    helpers.wait_until(function()
      return (sample(get(l, "src", "http://" .. listen .. "/metrics"), series) or 0) >= now + 3
    end, 15, "three more rounds")
    assert.are.equal(143, w:stop())
    assert.are.equal(1, #of_type(events(w), "path_change"))
    assert.are.same({}, of_type(events(w), "reachability"))
  end)
end)

helpers.lab_describe("sonde watch over a router that drops some of its ICMP errors", function()
  local l
  setup(function()
    l = lab.chain{ routers = 3, v6 = false, name = "watchrl" }
    -- r2 lets 2 of every 5 of its time-exceeded errors out, in turn (a
    -- counter, not chance): its line shows 60 % loss, the path through it
    -- loses nothing. Any 6 errors in a row hold 2 that went out, so r2 has
    -- answered by the time its loss can be judged (5 probes, 2 rounds of
    -- -q 3). A random drop lost all of the first 6 one run in twenty
    -- (0.6^6): the event then rightly named no address (a silent hop).
    l:nft("r2", [[
table inet sonde_rl {
  chain output {
    type filter hook output priority 0; policy accept;
    icmp type time-exceeded numgen inc mod 5 < 3 counter drop
  }
}
]])
  end)
  teardown(function()
    if l then l:destroy() end
  end)

  it("is icmp_rate_limited at that hop, and no loss event", function()
    local out, err, code = helpers.sonde_in(l, { "watch", "-i", "0.2", "-q", "3", "-m", "8",
      "--rounds", "10", "--window", "10", "--diagnose", "none", l.dst.v4 })
    assert.are.equal(0, code, err)
    local evs = {}
    for _, line in ipairs(helpers.lines(out)) do evs[#evs + 1] = cjson.decode(line) end
    local rl = of_type(evs, "icmp_rate_limited")
    assert.is_true(#rl >= 1, out)
    for _, e in ipairs(rl) do
      assert.are.equal(2, e.ttl)
      assert.are.equal(l.hops[2].v4, e.hop_addr)
    end
    assert.are.equal("start", rl[1].state)
    assert.is_nil(rl[1].silent)        -- r2 answered some: a lossy hop, not a silent one
    assert.is_true(rl[1].loss_ratio >= 0.2)
    assert.are.equal(0, rl[1].behind_loss_ratio)
    assert.are.same({}, of_type(evs, "loss"))
    assert.are.same({}, of_type(evs, "path_change"))
    assert.are.same({}, of_type(evs, "reachability"))
  end)

  it("calls loss that carries on to the destination loss, from the hop where it starts", function()
    -- r2 now drops 60 % of what it forwards toward dst: hop 3 and dst lose too
    l:nft("r2", [[
table inet sonde_fwd {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip daddr 198.18.2.0/23 numgen random mod 100 < 60 counter drop
  }
}
]])
    local out, err, code = helpers.sonde_in(l, { "watch", "-i", "0.2", "-q", "3", "-m", "8",
      "--rounds", "10", "--window", "10", "--lost-after", "10", "--diagnose", "none", l.dst.v4 })
    l:check("r2", "nft delete table inet sonde_fwd")
    assert.is_true(code == 0 or code == 1, err)
    local evs = {}
    for _, line in ipairs(helpers.lines(out)) do evs[#evs + 1] = cjson.decode(line) end
    local loss = of_type(evs, "loss")
    assert.is_true(#loss >= 1, out)
    assert.are.equal("start", loss[1].state)
    assert.are.equal(0.2, loss[1].threshold)
    assert.is_true(loss[1].loss_ratio >= 0.2)
    for _, e in ipairs(of_type(evs, "icmp_rate_limited")) do
      assert.are_not.equal(3, e.ttl)   -- hop 3's loss carries on: not rate limiting
    end
  end)
end)

helpers.lab_describe("sonde watch reloading its targets on SIGHUP", function()
  local l, file
  setup(function()
    l = lab.chain{ routers = 1, v6 = false, name = "watchhup" }
  end)
  teardown(function()
    if l then l:destroy() end
    if file then os.remove(file) end
  end)

  it("reads the file again as nobody, starts the new target and stops the removed one", function()
    -- readable by nobody: sonde reads it again after dropping to nobody
    file = helpers.readable_file(l.dst.v4 .. "\n")
    local w = l:spawn("src", watch_argv{ "-i", "0.3", "-q", "1", "-m", "4", "--duration", "30",
      "--diagnose", "none", "--targets", file })
    local pid = assert(w:command_pid(5))
    lab.sleep(0.8)
    lab.write_file(file, l.hops[1].v4 .. "\n")
    assert(os.execute("kill -HUP " .. pid) == 0)
    local ev = helpers.wait_until(function() return of_type(events(w), "reload")[1] end, 5, "reload")
    assert.are.same({ l.hops[1].v4 }, ev.added)
    assert.are.same({ l.dst.v4 }, ev.removed)
    assert.are.equal(1, ev.targets)
    assert.is_true(w:running())
    -- a file nobody may not read: the reload fails, the targets stay
    assert(os.execute("chmod 600 '" .. file .. "'") == 0)
    assert(os.execute("kill -HUP " .. pid) == 0)
    local bad = helpers.wait_until(function() return of_type(events(w), "reload")[2] end, 5, "reload")
    assert.are.equal("EACCES", bad.error.name)
    assert.are.equal(143, w:stop())
  end)
end)

helpers.lab_describe("sonde watch over 2048 AnyIP targets", function()
  local l
  setup(function()
    l = lab.chain{ routers = 1, v6 = false, name = "watchsoak" }
    l:check("src", "ip route add 198.19.0.0/16 via " .. l.hops[1].v4)
    l:check("r1", "ip route add 198.19.0.0/16 via " .. l.dst.v4)
    l:check("dst", "ip route add local 198.19.0.0/16 dev lo")
  end)
  teardown(function()
    if l then l:destroy() end
  end)

  it("keeps RSS and descriptors flat over its rounds", function()
    local listen = l.src.v4 .. ":9466"
    local w = l:spawn("src", watch_argv{ "-i", "1", "-q", "1", "-m", "4", "-w", "2",
      "--window", "3", "--duration", "60", "--diagnose", "none", "--listen", listen,
      "198.19.0.0/21" })
    local pid = assert(w:command_pid(5))
    local series = 'sonde_watch_rounds_total{target="198.19.7.255"}'
    -- warm-up: every target's window full (--window 3), and one more round
    helpers.wait_until(function()
      return (sample(get(l, "src", "http://" .. listen .. "/metrics"), series) or 0) >= 4
    end, 30, "four rounds to every target", 0.5)
    local rss, fds = {}, {}
    for i = 1, 8 do
      rss[i], fds[i] = rss_kb(pid), helpers.fd_count(pid)
      -- a scrape in between, as Prometheus would
      assert.truthy(get(l, "src", "http://" .. listen .. "/metrics"))
      lab.sleep(1.5)
    end
    local body = get(l, "src", "http://" .. listen .. "/metrics")
    local rounds = sample(body, series)
    assert.are.equal(2048, sample(body, "sonde_watch_targets"))
    table.sort(rss)
    io.stderr:write(("\nsoak: 2048 targets, RSS %d..%d kB, fds %s, rounds %d\n"):format(rss[1],
      rss[#rss], table.concat(fds, ","), rounds))
    assert.is_true(rounds >= 8, "rounds " .. tostring(rounds))
    -- flat: within 16 MB after the warm-up (the collector's swing over a
    -- heap of some 60 MB), descriptors unchanged
    if not sanitized then
      assert.is_true(rss[#rss] - rss[1] <= 16384, ("RSS %d..%d kB"):format(rss[1], rss[#rss]))
    end
    for i = 2, #fds do assert.are.equal(fds[1], fds[i]) end
    assert.are.equal(143, w:stop())
  end)
end)
