-- A long run: 200 000 probes through one engine (ICMP and UDP, every TTL of
-- a chain), with the process's memory and descriptors sampled while it
-- runs. After warm-up neither grows.

-- make check's ASan build keeps freed memory in quarantine (up to 256 MB):
-- its RSS says nothing about sonde's own memory.
local sanitized = (os.getenv("SONDE_SANITIZE") or "") ~= ""
local helpers = require "helpers"
local lab = require "lab"

local ROUNDS, PER_ROUND = 200, 1000

local SCRIPT = [[
local sonde = require "sonde"
local dst, rounds, per = arg[1], tonumber(arg[2]), tonumber(arg[3])
local eng = assert(sonde.engine{ window = 256 })
local replies, other = 0, 0
eng:run(function()
  for round = 1, rounds do
    local specs = {}
    for i = 1, per do
      local udp = i % 2 == 0
      specs[i] = { dst = dst, proto = udp and "udp" or "icmp", ttl = i % 4 + 1, wait = 2,
        dport = udp and (33434 + i) or nil }
    end
    for _, r in ipairs(eng:probe_all(specs)) do
      if r.status == "reply" then replies = replies + 1 else other = other + 1 end
    end
    io.write("round ", round, "\n")
    io.flush()
  end
end)
print("replies " .. replies .. " other " .. other)
eng:close()
]]

local function status_field(pid, key)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return tonumber(text:match(key .. ":%s*(%d+)"))
end

helpers.lab_describe("a soak of 200 000 probes", function()
  local l

  setup(function()
    l = lab.chain{ routers = 3, v6 = false, name = "soak" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  it("keeps memory and descriptors flat after warm-up, and every probe answered", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(SCRIPT)
    f:close()
    assert(os.execute("chmod 644 " .. lab.shquote(path)) == 0)
    local p = l:spawn("src", { helpers.sonde(), "run", "--timeout", "120", path, l.dst.v4,
      tostring(ROUNDS), tostring(PER_ROUND) })
    finally(function() p:stop(); os.remove(path) end)
    local pid = assert(p:command_pid(5))
    helpers.wait_until(function()
      local c = io.open("/proc/" .. pid .. "/comm")
      local comm = c and c:read("*l")
      if c then c:close() end
      return comm == "sonde" or comm == nil
    end, 5, "sonde to start")
    local samples = {}
    for _ = 1, 1200 do -- at most 120 s
      local rss = status_field(pid, "VmRSS")
      if not rss then break end
      local out = p:output()
      local round = tonumber(out:match(".*round (%d+)\n") or "0")
      local listed, fds = pcall(helpers.fd_count, pid)
      if not listed then
        -- it ended between the two reads: the run is over (else: the error)
        assert(status_field(pid, "VmRSS") == nil, fds)
        break
      end
      samples[#samples + 1] = { round = round, rss = rss, fds = fds }
      lab.sleep(0.1)
    end
    local code = p:wait(10)
    local out, err = p:output()
    assert.are.equal(0, code, err)
    local replies, other = out:match("replies (%d+) other (%d+)")
    replies, other = tonumber(replies), tonumber(other)
    assert.are.equal(ROUNDS * PER_ROUND, replies + other)
    assert.is_true(replies >= 0.999 * ROUNDS * PER_ROUND, ("only %d replies"):format(replies))
    -- Warm-up: the first quarter of the rounds.
    local base
    local most_rss, fds, after = 0, {}, 0
    for _, s in ipairs(samples) do
      if s.round >= ROUNDS / 4 and s.fds then
        base = base or s
        after = after + 1
        most_rss = math.max(most_rss, s.rss)
        fds[s.fds] = true
      end
    end
    assert.is_true(after >= 5, ("only %d samples after warm-up (of %d)"):format(after, #samples))
    if not sanitized then
      assert.is_true(most_rss - base.rss <= 2048,
        ("RSS grew from %d kB to %d kB after warm-up"):format(base.rss, most_rss))
    end
    local n = 0
    for k in pairs(fds) do n = n + 1 end
    assert.is_true(n <= 2, "descriptor count varied after warm-up")
  end)
end)
