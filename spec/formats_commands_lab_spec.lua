-- --format and -o on every command that probes one target (tcping, ping,
-- mtr, mda), against real runs over a chain src - r1 - r2 - dst: jsonl
-- lines as they happen (valid against the schema), csv and markdown rows,
-- a user's format module, -o FILE written atomically, also when
-- interrupted, and left as it was when the run fails.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

local function esc(s) return (s:gsub("%p", "%%%0")) end

-- A directory sonde can write after it has dropped to nobody (spec/run
-- removes /tmp/<prefix>* should it be left behind).
local function tmpdir()
  local dir = lab.run("mktemp -d /tmp/" .. lab.prefix() .. "fmtcmd.XXXXXX"):match("%S+")
  assert(os.execute("chmod 777 " .. lab.shquote(dir)) == 0)
  return dir
end

-- A file sonde can read as nobody.
local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  assert(os.execute("chmod 644 " .. lab.shquote(path)) == 0)
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Lines of text; sep "\r\n" for CSV.
local lines, decode_lines = helpers.lines, helpers.decode_lines

local function split(row)
  local t = {}
  for f in (row .. ","):gmatch("([^,]*),") do t[#t + 1] = f end
  return t
end

-- The cells of a markdown row "| a | b |".
local function cells(row)
  local t = {}
  for c in row:sub(2):gmatch(" ?(.-) ?|") do t[#t + 1] = c end
  return t
end

-- A user's format module: a header naming the command and the target, the
-- type of every record, the summary's text.
local USER_FORMAT = [[
return {
  name = "types",
  header = function(meta)
    return "# " .. meta.command .. " " .. meta.target .. " " .. tostring(meta.version) .. "\n"
  end,
  record = function(rec) return rec.type .. "\n" end,
  footer = function(summary) return "# " .. tostring(summary.text) .. "\n" end,
}
]]

local FAILING_FORMAT = [[
return { record = function() error("this format fails") end }
]]

describe("the schema's jsonl line kinds", function()
  local attempt = '{"type":"tcping_attempt","version":1,"target":"x","addr":"198.18.0.2","port":80,'
    .. '"attempt":{"status":"timeout","seq":0,"ttl":64}}'
  local probe = '{"type":"ping_probe","version":1,"target":"x","addr":"198.18.0.2","protocol":"icmp",'
    .. '"probe":{"status":"reply","kind":"echo_reply","addr":"198.18.0.2","rtt":0.001,"seq":1,"ttl":64}}'
  local round = '{"type":"mtr_round","version":1,"target":"x","addr":"198.18.0.2","round":1,'
    .. '"probes":[{"status":"timeout","seq":1,"ttl":1}]}'

  it("accepts a tcping attempt, a ping probe and an mtr round", function()
    local ok, why = schema.validate(attempt .. "\n" .. probe .. "\n" .. round .. "\n")
    assert.is_true(ok, why)
  end)

  it("rejects an unknown field, a missing outcome, a bad probe, round 0", function()
    for _, doc in ipairs{
      (attempt:gsub('"port":80', '"port":80,"extra":1')),
      (attempt:gsub(',"attempt":{[^}]*}', '')),
      (probe:gsub('"protocol":"icmp"', '"protocol":"sctp"')),
      (probe:gsub('"status":"reply"', '"status":"timeout"')),   -- a timeout has no kind
      (round:gsub('"round":1', '"round":0')),
      (round:gsub('"version":1', '"version":2')),
    } do
      local ok, why = schema.validate(doc)
      assert.is_false(ok, doc)
      assert.truthy(why and #why > 0)
    end
  end)
end)

helpers.lab_describe("--format and -o on tcping, ping, mtr and mda", function()
  local l, dir, peer, userfmt, failfmt

  setup(function()
    l = lab.chain{ routers = 2, v6 = true, name = "fmtcmd" }
    dir = tmpdir()
    userfmt = dir .. "/types.lua"
    write(userfmt, USER_FORMAT)
    failfmt = dir .. "/fails.lua"
    write(failfmt, FAILING_FORMAT)
    peer = l:spawn("dst", { helpers.labpeer(), "echo", "-p", "7000", "-t", "50" })
    peer:wait_for("^ready$", 5)
  end)

  teardown(function()
    if peer then peer:stop() end
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

  -- No temporary file of -o left in dir.
  local function no_temporary()
    assert.is_nil(lab.run("ls -A " .. lab.shquote(dir)):find("%.tmp"))
  end

  -- Runs sonde in the background, interrupts it with SIGINT after `after`
  -- seconds; -> exit code.
  local function interrupted(args, after)
    local argv = { helpers.sonde() }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local p = l:spawn("src", argv)
    local pid = assert(p:command_pid(5))
    lab.sleep(after)
    assert(os.execute("kill -INT " .. pid) == 0)
    local code = p:wait(5)
    local _, err = p:output()
    return code, err
  end

  describe("sonde tcping", function()
    it("jsonl: a tcping_attempt line per attempt, then the document, all valid", function()
      local out, err, code = sonde{ "tcping", "-c", "3", "-i", "0", "--format", "jsonl", l.dst.v4, "7000" }
      assert.are.equal(0, code, err)
      valid(out)
      local ls = decode_lines(out)
      assert.are.equal(4, #ls)
      local doc = ls[4]
      assert.are.equal("tcping", doc.type)
      assert.are.equal(3, #doc.attempts)
      for i = 1, 3 do
        local a = ls[i]
        assert.are.equal("tcping_attempt", a.type)
        assert.are.equal(1, a.version)
        assert.are.same({ l.dst.v4, l.dst.v4, 7000 }, { a.target, a.addr, a.port })
        assert.are.equal(i, a.attempt.seq)   -- numbered from 1, as ping's
        assert.are.equal("tcp_synack", a.attempt.kind)
        assert.are.same(doc.attempts[i], a.attempt)
      end
    end)

    it("csv and markdown: a header, a row per attempt; markdown ends with the statistics", function()
      local out, err, code = sonde{ "tcping", "-c", "2", "-i", "0", "--format", "csv", l.dst.v4, "7000" }
      assert.are.equal(0, code, err)
      local rows = lines(out, "\r\n")
      assert.are.equal("target,addr,port,seq,status,kind,code,from,rtt_ms,sport,matched,error", rows[1])
      assert.are.equal(3, #rows)
      for i = 2, 3 do
        local f = split(rows[i])
        assert.are.same({ l.dst.v4, l.dst.v4, "7000", tostring(i - 1), "reply", "tcp_synack", "", l.dst.v4 },
          { unpack(f, 1, 8) })
        assert.is_true(tonumber(f[9]) > 0 and tonumber(f[9]) < 500)
      end
      -- a closed port: refused, the error named
      out, err, code = sonde{ "tcping", "-c", "1", "--format", "markdown", l.dst.v6, "9" }
      assert.are.equal(1, code, err)
      local ls = lines(out)
      assert.are.equal("target", cells(ls[1])[1])
      assert.matches("^|%-%-%-|", ls[2])
      local c = cells(ls[3])
      assert.are.same({ "reply", "tcp_rst", "ECONNREFUSED" }, { c[5], c[6], c[12] })
      assert.are.equal("", ls[4])
      assert.are.equal("1 attempts, 0 succeeded, 100.0% loss", ls[5])
      assert.are.equal(5, #ls)
    end)

    it("writes through a user's format module: header, every jsonl record, footer", function()
      local out, err, code = sonde{ "tcping", "-c", "2", "-i", "0", "--format", userfmt, l.dst.v4, "7000" }
      assert.are.equal(0, code, err)
      local ls = lines(out)
      assert.are.equal("# tcping " .. l.dst.v4 .. " 1", ls[1])
      assert.are.same({ "tcping_attempt", "tcping_attempt", "tcping" }, { ls[2], ls[3], ls[4] })
      assert.matches("^# 2 attempts, 2 succeeded, 0%.0%% loss, min/avg/max/stddev = ", ls[5])
      assert.are.equal(5, #ls)
    end)

    it("-o FILE: nothing on stdout, the file replaced at the end", function()
      local path = dir .. "/tcping.json"
      write(path, "old\n")
      local out, err, code = sonde{ "tcping", "-c", "1", "--format", "json", "-o", path, l.dst.v4, "7000" }
      assert.are.equal(0, code, err)
      assert.are.equal("", out)
      local doc = cjson.decode(read(path))
      assert.are.equal("tcping", doc.type)
      no_temporary()
    end)

    it("on SIGINT commits to -o what it collected: the attempts, then the document (exit 130)", function()
      local path = dir .. "/tcping-int.jsonl"
      local code, err = interrupted({ "tcping", "-c", "1000", "-i", "0.1", "--format", "jsonl", "-o", path,
        l.dst.v4, "7000" }, 0.6)
      assert.are.equal(130, code, err)
      local text = assert(read(path))
      valid(text)
      local ls = decode_lines(text)
      local doc = ls[#ls]
      assert.are.equal("tcping", doc.type)
      assert.are.equal("interrupted", doc.stop_reason)
      assert.is_true(#doc.attempts >= 2, #doc.attempts .. " attempts")
      assert.are.equal(#doc.attempts + 1, #ls)
      no_temporary()
    end)
  end)

  describe("sonde ping", function()
    for _, proto in ipairs{ "icmp", "udp", "tcp" } do
      it(("jsonl over %s: a ping_probe line per probe, then the document, all valid"):format(proto), function()
        local out, err, code = sonde{ "ping", "--protocol", proto, "-c", "3", "-i", "0.02", "--format", "jsonl", l.dst.v6 }
        assert.are.equal(0, code, err)
        valid(out)
        local ls = decode_lines(out)
        assert.are.equal(4, #ls)
        local doc = ls[4]
        assert.are.equal("ping", doc.type)
        local seqs = {}
        for i = 1, 3 do
          local p = ls[i]
          assert.are.equal("ping_probe", p.type)
          assert.are.same({ l.dst.v6, l.dst.v6, proto }, { p.target, p.addr, p.protocol })
          assert.are.equal("reply", p.probe.status)
          assert.is_nil(p.probe.src)
          seqs[p.probe.seq] = p.probe
        end
        for _, q in ipairs(doc.probes) do assert.are.same(q, seqs[q.seq]) end
      end)
    end

    it("csv: a row per probe; markdown: the table and ping's statistics", function()
      local out, err, code = sonde{ "ping", "-c", "2", "-i", "0.02", "--format", "csv", l.dst.v4 }
      assert.are.equal(0, code, err)
      local rows = lines(out, "\r\n")
      assert.are.equal("target,addr,protocol,seq,status,kind,code,from,rtt_ms,ttl,reply_ttl,icmp_seq,sport,dport,error",
        rows[1])
      assert.are.equal(3, #rows)
      local seen = {}
      for i = 2, 3 do
        local f = split(rows[i])
        assert.are.same({ l.dst.v4, l.dst.v4, "icmp" }, { f[1], f[2], f[3] })
        assert.are.same({ "reply", "echo_reply", "", l.dst.v4, "64", "62" }, { f[5], f[6], f[7], f[8], f[10], f[11] })
        seen[f[4]] = true
      end
      assert.is_true(seen["1"] and seen["2"])
      -- TTL 1: r1 answers time exceeded; the row says who
      out, err, code = sonde{ "ping", "-c", "1", "-t", "1", "--format", "markdown", l.dst.v4 }
      assert.are.equal(1, code, err)
      local ls = lines(out)
      local c = cells(ls[3])
      assert.are.same({ "reply", "time_exceeded", l.hops[1].v4 }, { c[5], c[6], c[8] })
      assert.matches("^1 packets transmitted, 0 received, %+1 errors, 100%% packet loss, time %d+ms$", ls[5])
    end)

    it("writes through a user's format module", function()
      local out, err, code = sonde{ "ping", "-c", "2", "-i", "0.02", "--format", userfmt, l.dst.v4 }
      assert.are.equal(0, code, err)
      local ls = lines(out)
      assert.are.same({ "# ping " .. l.dst.v4 .. " 1", "ping_probe", "ping_probe", "ping" },
        { ls[1], ls[2], ls[3], ls[4] })
      assert.matches("^# 2 packets transmitted, 2 received, 0%% packet loss, time %d+ms; rtt min/avg/max/mdev = ", ls[5])
    end)

    it("on SIGINT commits to -o the rows collected and the statistics (exit 130)", function()
      local path = dir .. "/ping-int.md"
      local code, err = interrupted({ "ping", "-i", "0.1", "--format", "markdown", "-o", path, l.dst.v4 }, 0.6)
      assert.are.equal(130, code, err)
      local ls = lines(assert(read(path)))
      assert.is_true(#ls >= 6, #ls .. " lines")
      local n = #ls - 4        -- header, rule, blank line, statistics
      assert.matches(("^%d packets transmitted, %d received, 0%%%% packet loss"):format(n, n), ls[#ls])
      no_temporary()
    end)
  end)

  describe("sonde mtr", function()
    it("jsonl: an mtr_round line per round with each TTL's outcome up to the destination, then the document", function()
      local out, err, code = sonde{ "mtr", "-n", "-c", "3", "-i", "0.05", "--format", "jsonl", l.dst.v4 }
      assert.are.equal(0, code, err)
      valid(out)
      local ls = decode_lines(out)
      assert.are.equal(4, #ls)
      assert.are.equal("mtr", ls[4].type)
      assert.are.equal(3, ls[4].rounds)
      local want = { l.hops[1].v4, l.hops[2].v4, l.dst.v4 }
      for i = 1, 3 do
        local r = ls[i]
        assert.are.equal("mtr_round", r.type)
        assert.are.equal(i, r.round)
        assert.are.equal(3, #r.probes)
        for ttl, p in ipairs(r.probes) do
          assert.are.equal(ttl, p.ttl)
          assert.are.equal(want[ttl], p.addr)
        end
      end
    end)

    it("csv keeps its report; markdown: a row per hop and the rounds line", function()
      local out, err, code = sonde{ "mtr", "-n", "-c", "2", "-i", "0.05", "--format", "csv", l.dst.v4 }
      assert.are.equal(0, code, err)
      local rows = lines(out, "\r\n")
      assert.are.equal("target,ttl,addr,name,loss_pct,sent,received,last_ms,avg_ms,best_ms,worst_ms,stddev_ms,jitter_ms",
        rows[1])
      assert.are.equal(4, #rows)
      out, err, code = sonde{ "mtr", "-n", "-c", "2", "-i", "0.05", "--protocol", "udp", "--format", "markdown", l.dst.v6 }
      assert.are.equal(0, code, err)
      local ls = lines(out)
      assert.are.same({ "target", "ttl", "addr" }, { unpack(cells(ls[1]), 1, 3) })
      for ttl, a in ipairs{ l.hops[1].v6, l.hops[2].v6, l.dst.v6 } do
        local c = cells(ls[2 + ttl])
        assert.are.same({ tostring(ttl), a, "0", "2", "2" }, { c[2], c[3], c[5], c[6], c[7] })
      end
      assert.are.equal("", ls[6])
      assert.are.equal(("2 rounds to %s (%s), destination reached"):format(l.dst.v6, l.dst.v6), ls[7])
    end)

    it("writes through a user's format module", function()
      local out, err, code = sonde{ "mtr", "-n", "-c", "2", "-i", "0.05", "--format", userfmt, l.dst.v4 }
      assert.are.equal(0, code, err)
      assert.are.same({ "# mtr " .. l.dst.v4 .. " 1", "mtr_round", "mtr_round", "mtr",
        ("# 2 rounds to %s (%s), destination reached"):format(l.dst.v4, l.dst.v4) }, lines(out))
    end)

    it("on SIGINT commits to -o the rounds that ended, then the document (exit 130)", function()
      local path = dir .. "/mtr-int.jsonl"
      local code, err = interrupted({ "mtr", "-n", "-c", "1000", "-i", "0.1", "--format", "jsonl",
        "--output", path, l.dst.v4 }, 0.6)
      assert.are.equal(130, code, err)
      local text = assert(read(path))
      valid(text)
      local ls = decode_lines(text)
      local doc = ls[#ls]
      assert.are.equal("mtr", doc.type)
      assert.are.equal("interrupted", doc.stop_reason)
      assert.is_true(#ls >= 3, #ls .. " lines")
      for i = 1, #ls - 1 do assert.are.equal(i, ls[i].round) end
      assert.is_true(#ls - 1 <= doc.rounds)
      no_temporary()
    end)
  end)

  describe("sonde mda", function()
    it("jsonl: the document as one valid line", function()
      local out, err, code = sonde{ "mda", "-n", "--format", "jsonl", l.dst.v4 }
      assert.are.equal(0, code, err)
      valid(out)
      local ls = decode_lines(out)
      assert.are.equal(1, #ls)
      assert.are.equal("mda", ls[1].type)
      assert.is_true(ls[1].reached)
    end)

    it("csv and markdown: a row per interface with the interfaces it links to", function()
      local out, err, code = sonde{ "mda", "-n", "--format", "csv", l.dst.v6 }
      assert.are.equal(0, code, err)
      local rows = lines(out, "\r\n")
      assert.are.equal("target,addr,ttl,node,name,final,flows,sent,next", rows[1])
      assert.are.equal(4, #rows)
      local path = { l.hops[1].v6, l.hops[2].v6, l.dst.v6 }
      for ttl = 1, 3 do
        local f = split(rows[1 + ttl])
        assert.are.same({ tostring(ttl), path[ttl], "", ttl == 3 and "reached" or "", path[ttl + 1] or "" },
          { f[3], f[4], f[5], f[6], f[9] })
      end
      out, err, code = sonde{ "mda", "-n", "--format", "markdown", l.dst.v4 }
      assert.are.equal(0, code, err)
      local ls = lines(out)
      assert.are.equal(7, #ls)
      assert.matches("^%d+ probes, %d+ flows %(source ports %d+%-%d+%), destination reached$", ls[7])
    end)

    it("writes through a user's format module, and dot to -o", function()
      local out, err, code = sonde{ "mda", "-n", "--format", userfmt, l.dst.v4 }
      assert.are.equal(0, code, err)
      local ls = lines(out)
      assert.are.same({ "# mda " .. l.dst.v4 .. " 1", "mda" }, { ls[1], ls[2] })
      assert.matches("^# %d+ probes, ", ls[3])
      local path = dir .. "/paths.dot"
      out, err, code = sonde{ "mda", "-n", "--format", "dot", "-o", path, l.dst.v4 }
      assert.are.equal(0, code, err)
      assert.are.equal("", out)
      local dot = assert(read(path))
      assert.matches('^digraph "sonde mda ' .. esc(l.dst.v4) .. '"', dot)
      assert.truthy(dot:find(('"%s" -> "%s"'):format(l.hops[2].v4, l.dst.v4), 1, true))
    end)

    it("on SIGINT commits to -o the interfaces found so far (exit 130)", function()
      -- nobody has 198.18.2.9: r2 answers nothing for seconds (ARP), hops
      -- 1 and 2 answer at once
      local path = dir .. "/mda-int.csv"
      local code, err = interrupted({ "mda", "-n", "-w", "3", "--format", "csv", "-o", path, "198.18.2.9" }, 0.6)
      assert.are.equal(130, code, err)
      local rows = lines(assert(read(path)), "\r\n")
      assert.are.equal("target,addr,ttl,node,name,final,flows,sent,next", rows[1])
      assert.are.same({ "1", l.hops[1].v4 }, { unpack(split(rows[2]), 3, 4) })
      assert.are.same({ "2", l.hops[2].v4 }, { unpack(split(rows[3]), 3, 4) })
      no_temporary()
    end)
  end)

  describe("when something goes wrong", function()
    it("rejects an unknown format and an unreadable format file (exit 2)", function()
      for _, cmd in ipairs{ { "tcping", l.dst.v4, "7000" }, { "ping", l.dst.v4 }, { "mtr", l.dst.v4 },
                             { "mda", l.dst.v4 } } do
        local name = table.remove(cmd, 1)
        local _, err, code = sonde{ name, "--format", "yaml", unpack(cmd) }
        assert.are.equal(2, code, err)
        assert.matches("sonde " .. name .. ": %-%-format: invalid value 'yaml' %(expected text, json, jsonl, csv, markdown", err)
        _, err, code = sonde{ name, "--format", dir .. "/none.lua", unpack(cmd) }
        assert.are.equal(2, code, err)
        assert.matches("cannot read format file", err)
      end
    end)

    it("leaves -o FILE as it was when the format fails (exit 3) or -o cannot be written", function()
      local path = dir .. "/kept.txt"
      for _, args in ipairs{
        { "tcping", "-c", "1", l.dst.v4, "7000" },
        { "ping", "-c", "1", l.dst.v4 },
        { "mtr", "-n", "-c", "1", l.dst.v4 },
        { "mda", "-n", l.dst.v4 },
      } do
        write(path, "kept\n")
        local argv = { args[1], "--format", failfmt, "--output", path }  -- mtr's -o: its fields
        for i = 2, #args do argv[#argv + 1] = args[i] end
        local out, err, code = sonde(argv)
        assert.are.equal(3, code, err)
        assert.matches("this format fails", err)
        assert.are.equal("", out)
        assert.are.equal("kept\n", read(path))
        no_temporary()
      end
      -- a directory that does not exist: refused before anything is sent
      local closed = dir .. "/missing"
      local out, err, code = sonde{ "ping", "-c", "1", "-o", closed .. "/x", l.dst.v4 }
      assert.are.equal(3, code, err)
      assert.are.equal("", out)
      assert.matches("sonde ping: %-o: cannot create a file in " .. esc(closed) .. ": ENOENT", err)
      assert.is_nil(read(closed .. "/x"))
    end)

    it("documents every format and -o in each command's help", function()
      for _, cmd in ipairs{ "tcping", "ping", "mtr", "mda" } do
        local out, err, code = sonde{ "help", cmd }
        assert.are.equal(0, code, err)
        assert.matches("Formats %(%-%-format", out)
        for _, f in ipairs{ "text", "json", "jsonl", "csv", "markdown", "format_example.lua" } do
          assert.truthy(out:find(f, 1, true), cmd .. " help lacks " .. f)
        end
        -- mtr's -o is mtr's field order: its file is --output alone
        assert.matches(cmd == "mtr" and "%-%-output FILE" or "%-o, %-%-output FILE", out)
      end
    end)
  end)
end)
