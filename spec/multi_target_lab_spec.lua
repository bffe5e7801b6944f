-- Several targets on every command that takes one (ping, tcping, mtr,
-- mda; trace has its own campaign specs): names, addresses and CIDR
-- prefixes on the command line and in --targets files, each target probed
-- once, concurrently on one engine, each one's results written, shards
-- that cover the targets exactly once, and SIGINT that still writes all.
-- Over a chain src - r1 - r2 - dst.

local helpers = require "helpers"
local lab = require "lab"
local schema = require "schema"
local cjson = require "cjson"

local lines, decode_lines = helpers.lines, helpers.decode_lines

local function by(docs, field)
  local t = {}
  for _, d in ipairs(docs) do
    assert.is_nil(t[d[field]], "twice: " .. tostring(d[field]))
    t[d[field]] = d
  end
  return t
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

helpers.lab_describe("several targets on ping, tcping, mtr and mda", function()
  local l, peer, peer6, dir
  -- r1's address facing src, under a name in src's hosts file; r2's
  -- interface facing dst (198.18.2.1) and nobody (198.18.2.0) make the /31.
  local R1, R2_FAR, NOBODY = "198.18.0.2", "198.18.2.1", "198.18.2.0"

  setup(function()
    l = lab.chain{ routers = 2, v6 = true, name = "multi" }
    l:hosts("src", { ["r1.lab"] = R1 })
    peer = l:spawn("dst", { helpers.labpeer(), "echo", "-p", "7000", "-t", "60" })
    peer:wait_for("^ready$", 5)
    peer6 = l:spawn("dst", { helpers.labpeer(), "echo", "-6", "-p", "7000", "-t", "60" })
    peer6:wait_for("^ready$", 5)
    dir = lab.run("mktemp -d /tmp/" .. lab.prefix() .. "multi.XXXXXX"):match("%S+")
    -- sonde, started as root, writes -o files as nobody
    assert(os.execute("chmod 777 " .. lab.shquote(dir)) == 0)
  end)

  teardown(function()
    if peer then peer:stop() end
    if peer6 then peer6:stop() end
    if l then l:destroy() end
    if dir then os.execute("rm -rf " .. lab.shquote(dir)) end
  end)

  local function sonde(args)
    local argv = { helpers.sonde() }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return l:exec("src", argv)
  end

  local function valid(text)
    local ok, why = schema.validate(text)
    assert.is_true(ok, why)
  end

  -- A --targets file sonde can read after dropping to nobody.
  local function targets_file(name, text)
    local path = dir .. "/" .. name
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    assert(os.execute("chmod 644 " .. lab.shquote(path)) == 0)
    return path
  end

  describe("sonde ping", function()
    it("pings names, addresses and a prefix at once: a document per target, each valid", function()
      local out, err, code = sonde{ "ping", "-c", "2", "-i", "0.05", "-W", "0.5", "--format", "json",
        l.dst.v4, "r1.lab", NOBODY .. "/31", l.dst.v6 }
      assert.are.equal(1, code, err)   -- 198.18.2.0 answers nothing
      valid(out)
      local docs = by(decode_lines(out), "addr")
      assert.are.equal(5, count(docs))
      assert.are.equal("r1.lab", docs[R1].target)
      assert.are.equal(l.dst.v6, docs[l.dst.v6].target)
      for _, a in ipairs{ l.dst.v4, R1, R2_FAR, l.dst.v6 } do
        assert.are.same({ 2, 2 }, { docs[a].summary.sent, docs[a].summary.received }, a)
        for _, p in ipairs(docs[a].probes) do assert.are.equal(a, p.addr) end
      end
      assert.are.same({ 2, 0 }, { docs[NOBODY].summary.sent, docs[NOBODY].summary.received })
      assert.matches("sonde ping: 4 of 5 targets answered", err)
    end)

    it("text: every line names its target, every target gets its statistics; 0 when all answer", function()
      local out, err, code = sonde{ "ping", "-c", "3", "-i", "0.05", l.dst.v4, R1 }
      assert.are.equal(0, code, err)
      for _, a in ipairs{ l.dst.v4, R1 } do
        local replies = 0
        for ln in out:gmatch("[^\n]+") do
          if ln:find("^" .. a:gsub("%.", "%%.") .. ": %d+ bytes from " .. a:gsub("%.", "%%.")) then
            replies = replies + 1
          end
        end
        assert.are.equal(3, replies, out)
        assert.matches("%-%-%- " .. a:gsub("%.", "%%.") .. " ping statistics %-%-%-\n3 packets transmitted, 3 received", out)
      end
    end)

    it("csv: one header row, the rows of every target; --quiet: nothing on stderr", function()
      local out, err, code = sonde{ "ping", "-c", "2", "-i", "0.05", "-q", "--format", "csv",
        l.dst.v4, l.dst.v6 }
      assert.are.equal(0, code, err)
      assert.are.equal("", err)
      local rows = lines(out, "\r\n")
      assert.are.equal(5, #rows)
      assert.matches("^target,addr,protocol,seq,", rows[1])
      local seen = {}
      for i = 2, 5 do
        local addr = rows[i]:match("^[^,]*,([^,]*),")
        seen[addr] = (seen[addr] or 0) + 1
      end
      assert.are.same({ [l.dst.v4] = 2, [l.dst.v6] = 2 }, seen)
    end)

    it("shards of a prefix cover each address exactly once", function()
      local seen = {}
      for k = 0, 2 do
        local out, err = sonde{ "ping", "-c", "1", "-W", "0.3", "-q", "--format", "json",
          "--shard", k .. "/3", "--seed", "7", "198.18.2.0/30" }
        valid(out)
        for _, d in ipairs(decode_lines(out)) do
          assert.is_nil(seen[d.addr], d.addr .. " twice: " .. err)
          seen[d.addr] = k
        end
      end
      assert.are.equal(4, count(seen))
    end)

    it("shows a progress line on a terminal for a run longer than two seconds, then erases it", function()
      local path = dir .. "/progress.json"
      local out, err, code = l:exec("src", { "/usr/bin/python3", helpers.root() .. "/spec/support/in_pty.py",
        "60", "x", helpers.sonde(), "ping", "-c", "2", "-i", "1", "--parallel", "1", "--format", "json",
        "-o", path, l.dst.v4, l.dst.v6, R1 })
      assert.are.equal(0, code, err)
      local r = cjson.decode(out)
      assert.is_false(r.timeout, r.out)
      assert.are.equal(0, r.code, r.out)
      assert.matches("\r\27%[Ksonde ping: [12]/3 %([%d.]+ %%%), [%d.]+ per second, %d+s left", r.out)
      assert.matches("\r\27%[Ksonde ping: 3 of 3 targets answered\r?\n$", r.out)
      local f = assert(io.open(path))
      local text = f:read("*a")
      f:close()
      assert.are.equal(3, #decode_lines(text))
    end)

    it("SIGINT stops every target and still writes each one's statistics (exit 130)", function()
      local p = l:spawn("src", { helpers.sonde(), "ping", "-i", "0.05", l.dst.v4, l.dst.v6, R1 })
      local pid = assert(p:command_pid(5))
      lab.sleep(0.6)
      assert(os.execute("kill -INT " .. pid) == 0)
      assert.are.equal(130, p:wait(5))
      local out = p:output()
      for _, a in ipairs{ l.dst.v4, l.dst.v6, R1 } do
        assert.matches("%-%-%- " .. a:gsub("[%.%-]", "%%%0") .. " ping statistics %-%-%-\n%d+ packets transmitted", out)
      end
    end)
  end)

  describe("sonde tcping", function()
    it("takes HOST... PORT and a --targets file: a jsonl attempt per try, a document per host", function()
      local file = targets_file("hosts", "# the destination, both families\n" .. l.dst.v4 .. "\n\n" .. l.dst.v6 .. "\nnot an address!\n")
      local out, err, code = sonde{ "tcping", "-c", "2", "-i", "0", "--format", "jsonl",
        "--targets", file, "7000" }
      assert.are.equal(0, code, err)
      assert.matches(":5: skipped 'not an address!'", err)
      valid(out)
      local docs, attempts = {}, {}
      for _, rec in ipairs(decode_lines(out)) do
        if rec.type == "tcping" then docs[#docs + 1] = rec
        else attempts[rec.addr] = (attempts[rec.addr] or 0) + 1 end
      end
      assert.are.same({ [l.dst.v4] = 2, [l.dst.v6] = 2 }, attempts)
      docs = by(docs, "addr")
      for _, a in ipairs{ l.dst.v4, l.dst.v6 } do
        assert.are.same({ 2, 2 }, { docs[a].summary.sent, docs[a].summary.ok })
      end
    end)

    it("several hosts with --bind sequence: each host its own source ports; 1 when one refuses", function()
      local out, err, code = sonde{ "tcping", "-c", "2", "-i", "0", "--bind", "sequence", "--sport", "42000",
        "--format", "json", l.dst.v4, R1, "7000" }
      assert.are.equal(1, code, err)   -- r1 does not listen on 7000: refused
      valid(out)
      local docs = by(decode_lines(out), "addr")
      assert.are.equal("tcp_synack", docs[l.dst.v4].attempts[1].kind)
      assert.are.equal("tcp_rst", docs[R1].attempts[1].kind)
      local ports = {}
      for _, d in pairs(docs) do
        for _, a in ipairs(d.attempts) do
          assert.is_nil(ports[a.sport], "source port used twice: " .. a.sport)
          ports[a.sport] = true
          assert.is_true(a.sport >= 42000 and a.sport < 42004)
        end
      end
      assert.matches("sonde tcping: 1 of 2 targets connected", err)
    end)
  end)

  describe("sonde mtr", function()
    it("--report on two targets: a document each, both reached", function()
      local out, err, code = sonde{ "mtr", "--report", "-c", "2", "-i", "0.05", "--wait", "0.5", "-n",
        "--format", "json", l.dst.v4, l.dst.v6 }
      assert.are.equal(0, code, err)
      valid(out)
      local docs = by(decode_lines(out), "addr")
      for _, a in ipairs{ l.dst.v4, l.dst.v6 } do
        local d = docs[a]
        assert.is_true(d.reached)
        assert.are.equal(2, d.rounds)
        assert.are.equal(3, #d.hops)
        assert.are.equal(a, d.hops[3].addr)
      end
      assert.matches("sonde mtr: 2 of 2 destinations reached", err)
    end)

    it("csv: one header row, then every target's hops", function()
      local out, err, code = sonde{ "mtr", "-c", "1", "-i", "0.05", "--wait", "0.5", "-n", "--format", "csv",
        l.dst.v4, R1 }
      assert.are.equal(0, code, err)
      local rows = lines(out, "\r\n")
      assert.matches("^target,ttl,addr", rows[1])
      assert.are.equal(1 + 3 + 1, #rows, out)
      for i = 2, #rows do assert.is_nil(rows[i]:find("^target,")) end
    end)
  end)

  describe("sonde mda", function()
    it("explores two targets: a graph each, with its own probe count", function()
      local out, err, code = sonde{ "mda", "-n", "-w", "0.5", "--format", "json", l.dst.v4, l.dst.v6 }
      assert.are.equal(0, code, err)
      valid(out)
      local docs = by(decode_lines(out), "addr")
      for _, a in ipairs{ l.dst.v4, l.dst.v6 } do
        local d = docs[a]
        assert.is_true(d.reached)
        assert.are.equal(3, #d.hops)
        assert.is_true(d.probes_sent >= 3)
        assert.is_nil(d.counters)      -- the engine's: for a single target only
      end
    end)

    it("text: each graph in turn; an unresolvable name is reported and skipped", function()
      local out, err, code = sonde{ "mda", "-n", "-w", "0.5", l.dst.v4, "nowhere.invalid" }
      assert.are.equal(0, code, err)
      assert.matches("skipped 'nowhere.invalid': cannot resolve", err)
      local _, graphs = out:gsub("%d+ probes, %d+ flows", "")
      assert.are.equal(1, graphs, out)
    end)
  end)

  it("every command names a bad target on the command line (exit 2)", function()
    for _, argv in ipairs{ { "ping", l.dst.v4, "198.18.0.0/99" }, { "tcping", "198.18.0.0/99", "80" },
        { "mtr", "198.18.0.0/99" }, { "mda", "198.18.0.0/99" } } do
      local _, err, code = sonde(argv)
      assert.are.equal(2, code, err)
      assert.matches((argv[1] == "tcping" and "HOST" or "TARGET") .. ": invalid value '198.18.0.0/99'", err)
    end
    local _, err, code = sonde{ "tcping", "443" }
    assert.are.equal(2, code, err)
    assert.matches("missing HOST %(or %-%-targets FILE%)", err)
  end)
end)
