-- sonde sweep over a real network: src - r1 - dst, where dst also answers
-- for every address of 198.19.0.0/16 and 2001:db8:ff::/112 (AnyIP: a local
-- route on its loopback), so that one host stands for 65 536.

local helpers = require "helpers"
local lab = require "lab"
local schema = require "schema"

local decode_lines = helpers.decode_lines

local function by_addr(recs)
  local t = {}
  for _, r in ipairs(recs) do
    assert.is_nil(t[r.addr], r.addr .. " twice")
    t[r.addr] = r
  end
  return t
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

helpers.lab_describe("sonde sweep", function()
  local l, dir

  setup(function()
    l = lab.chain{ routers = 1, v6 = true, name = "sweep" }
    l:check("dst", "ip route add local 198.19.0.0/16 dev lo")
    l:check("dst", "ip -6 route add local 2001:db8:ff::/112 dev lo")
    l:route("src", "198.19.0.0/16 via " .. l.hops[1].v4)
    l:route("src", "2001:db8:ff::/112 via " .. l.hops[1].v6)
    l:route("r1", "198.19.0.0/16 via " .. l.dst.v4)
    l:route("r1", "2001:db8:ff::/112 via " .. l.dst.v6)
    -- r1 answers net unreachable for 198.18.200.0/24, from a rule rather
    -- than a missing route: Linux sends the net unreachable of a packet it
    -- cannot route (ip_error()) at most once a second per source, a token
    -- bucket set by net.ipv4.route.error_cost, a host-wide sysctl that a
    -- namespace cannot change; and every other ICMP error r1 sends to src
    -- with icmp_ratelimit 0 empties that bucket, since both share src's
    -- inet_peer. Two tests less than a second apart would see the second
    -- net unreachable suppressed. A reject sends the same ICMP (type 3
    -- code 0, from r1's address on src's link) through icmp_send() alone.
    l:route("src", "198.18.200.0/24 via " .. l.hops[1].v4)
    l:nft("r1", [[
table ip sonde_unreach {
  chain prerouting {
    type filter hook prerouting priority 0;
    ip daddr 198.18.200.0/24 reject with icmp type net-unreachable
  }
}]])
    l:hosts("src", { ["dst.lab"] = l.dst.v4, ["r1.lab"] = l.hops[1].v4 })
    l:etc("src", "resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    l:sysctl("src", "net.ipv4.ping_group_range", "0 2147483647")
    -- files sonde reads or writes as nobody
    dir = lab.must("mktemp -d /tmp/" .. lab.prefix() .. "sweep.XXXXXX"):match("%S+")
    lab.must({ "chmod", "1777", dir })
  end)

  teardown(function()
    if l then l:destroy() end
    if dir then lab.run({ "rm", "-rf", dir }) end
  end)

  -- sonde sweep ARGS in src -> stdout, stderr, exit status
  local function sweep(args, prefix)
    local argv = { helpers.sonde(), "sweep" }
    for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
    if prefix then return l:exec("src", prefix .. " " .. lab.cmdline(argv)) end
    return l:exec("src", argv)
  end

  local function write(name, text)
    local path = dir .. "/" .. name
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    lab.must({ "chmod", "644", path })
    return path
  end

  local function valid(out)
    local ok, why = schema.validate(out)
    assert.is_true(ok, why)
  end

  it("sweeps 65 536 addresses, one record each, every one alive", function()
    -- a wait that a busy machine cannot outlast: every reply is counted
    local out, err, code = sweep{ "--rate", 0, "-w", 10, "-q", "198.19.0.0/16" }
    assert.are.equal(0, code, err)
    assert.are.equal("", err)
    local n, seen, alive = 0, {}, 0
    for line in out:gmatch("[^\n]+") do
      n = n + 1
      local addr = line:match('"addr":"([^"]+)"')
      assert(addr and not seen[addr], line)
      seen[addr] = true
      if line:find('"alive":true', 1, true) then alive = alive + 1 end
    end
    assert.are.equal(65536, n)
    assert.are.equal(65536, alive)
    assert.truthy(seen["198.19.0.0"] and seen["198.19.255.255"])
    valid(out:sub(1, out:find("\n", 200000, true)))
  end)

  it("says who is alive, who answered for another, who is silent and what failed (ICMP, IPv4 and IPv6)", function()
    local out, err, code = sweep{ "-w", 1, l.dst.v4, l.hops[1].v4, "198.18.1.9", "198.18.200.1",
      "198.18.9.1", l.dst.v6, "2001:db8:ff::7/128" }
    assert.are.equal(0, code, err)
    valid(out)
    local r = by_addr(decode_lines(out))
    assert.are.equal(7, count(r))
    for _, a in ipairs{ l.dst.v4, l.hops[1].v4, l.dst.v6, "2001:db8:ff::7" } do
      assert.is_true(r[a].alive, a)
      assert.are.equal("echo_reply", r[a].kind)
      assert.are.equal(a, r[a].from)
      assert.is_number(r[a].rtt)
    end
    assert.are.same({ false, "reply", "dest_unreachable", "net", l.hops[1].v4 },
      { r["198.18.200.1"].alive, r["198.18.200.1"].status, r["198.18.200.1"].kind,
        r["198.18.200.1"].code, r["198.18.200.1"].from })
    assert.are.equal("timeout", r["198.18.1.9"].status)
    assert.are.same({ "failed", "ENETUNREACH" }, { r["198.18.9.1"].status, r["198.18.9.1"].error.name })
    assert.truthy(err:find("4 of 7 targets alive", 1, true), err)
    assert.truthy(err:find("1 no answer, 1 answered otherwise, 1 failed", 1, true), err)
  end)

  it("-p tcp: an open port (SYN-ACK) and a closed one (RST) both say the host is up", function()
    local peer = l:spawn("dst", { helpers.labpeer(), "listen", "-p", "7000", "-t", "20" })
    peer:wait_for("^ready$", 5)
    local out, err, code = sweep{ "-p", "tcp", "--port", 7000, "-w", 2, l.dst.v4, "198.19.3.0/28" }
    assert.are.equal(0, code, err)
    valid(out)
    local r = by_addr(decode_lines(out))
    assert.are.equal(17, count(r))
    for a, rec in pairs(r) do
      assert.is_true(rec.alive, a)
      assert.are.equal(7000, rec.port)
      assert.are.equal("tcp", rec.protocol)
      assert.are.equal("tcp_synack", rec.kind, a) -- the listener takes every local address
    end
    peer:stop()
    out, err, code = sweep{ "-p", "tcp", "--port", 7001, "-w", 2, l.dst.v4, l.dst.v6 }
    assert.are.equal(0, code, err)
    valid(out)
    for _, rec in ipairs(decode_lines(out)) do
      assert.is_true(rec.alive)
      assert.are.equal("tcp_rst", rec.kind)
    end
  end)

  it("-p udp: the target's port unreachable says it is up; a router's net unreachable does not", function()
    local out, err, code = sweep{ "-p", "udp", "-w", 2, l.dst.v4, l.dst.v6, "198.19.4.0/29", "198.18.200.7" }
    assert.are.equal(0, code, err)
    valid(out)
    local r = by_addr(decode_lines(out))
    assert.are.equal(11, count(r))
    for a, rec in pairs(r) do
      assert.are.equal(33434, rec.port)
      if a == "198.18.200.7" then
        assert.is_false(rec.alive)
        assert.are.equal(l.hops[1].v4, rec.from, out:match('[^\n]*"198%.18%.200%.7"[^\n]*') .. "\n" .. err)
      else
        assert.is_true(rec.alive, a)
        assert.are.same({ "dest_unreachable", "port", a }, { rec.kind, rec.code, rec.from })
      end
    end
  end)

  it("--unprivileged sweeps through ICMP datagram sockets and error queues", function()
    for _, p in ipairs{ "icmp", "udp" } do
      local out, err, code = sweep{ "--unprivileged", "-p", p, "-w", 2, "-q", l.dst.v4, "198.19.5.0/30" }
      assert.are.equal(0, code, err)
      local recs = decode_lines(out)
      assert.are.equal(5, #recs)
      for _, rec in ipairs(recs) do assert.is_true(rec.alive, p .. " " .. rec.addr) end
    end
  end)

  it("reads --targets files and stdin: comments, blank lines and names; bad lines named by number and skipped", function()
    local path = write("targets.txt", table.concat({
      "# sweep targets",
      "198.19.6.0/30",
      "",
      "dst.lab        # a name, from /etc/hosts",
      "198.19.6.999",
      "nosuch.invalid",
      "198.19.6.1     # again: probed once",
      "two words here",
    }, "\n") .. "\n")
    local out, err, code = sweep({ "-q", "-w", 2, "--targets", path, "--targets", "-", "198.19.7.1" },
      "printf '198.19.7.2\\n# stdin\\nbad..name\\n' |")
    assert.are.equal(0, code, err)
    local r = by_addr(decode_lines(out))
    assert.are.equal(7, count(r))
    for _, a in ipairs{ "198.19.6.0", "198.19.6.3", l.dst.v4, "198.19.7.1", "198.19.7.2" } do
      assert.is_true(r[a].alive, a)
    end
    assert.truthy(err:find(path .. ":5: skipped '198.19.6.999': not an IPv4 address", 1, true), err)
    assert.truthy(err:find(path .. ":8: skipped 'two words here': more than one entry on the line", 1, true), err)
    assert.truthy(err:find("stdin:3: skipped 'bad..name'", 1, true), err)
    assert.truthy(err:find("skipped 'nosuch.invalid': cannot resolve", 1, true), err)
  end)

  it("--shard K/N: three processes cover 300 targets, each exactly once; the split follows --seed", function()
    local lines = { "198.19.8.0/24" }
    for i = 1, 44 do lines[#lines + 1] = "198.19.9." .. i end
    local path = write("300.txt", table.concat(lines, "\n") .. "\n")
    local function shards(seed)
      local sets = {}
      for k = 0, 2 do
        local out, err, code = sweep{ "-q", "--rate", 0, "--targets", path, "--shard", k .. "/3",
          "--seed", seed }
        assert.are.equal(0, code, err)
        sets[k + 1] = by_addr(decode_lines(out))
        assert.are.equal(100, count(sets[k + 1]))
      end
      return sets
    end
    local a = shards(7)
    local all = {}
    for k = 1, 3 do
      for addr, rec in pairs(a[k]) do
        assert.is_nil(all[addr], addr .. " in two shards")
        assert.is_true(rec.alive)
        all[addr] = k
      end
    end
    assert.are.equal(300, count(all))
    local again = shards(7)
    for k = 1, 3 do
      for addr in pairs(a[k]) do assert.truthy(again[k][addr], "seed 7 split differently") end
    end
    local other = shards(8)
    local moved = 0
    for addr in pairs(other[1]) do if not a[1][addr] then moved = moved + 1 end end
    assert(moved > 0, "seed 8 gave shard 0 the same targets as seed 7")
  end)

  it("writes text, csv, markdown and a user's format, to stdout or atomically to -o FILE", function()
    local targets = { "-w", 0.3, l.dst.v4, "198.18.1.9" }
    local out, err, code = sweep{ "--format", "text", unpack(targets) }
    assert.are.equal(0, code, err)
    assert.are.equal("", err)
    assert.truthy(out:find("^sweep of 2 targets, icmp, 10000 probes/s\n"), out)
    assert.truthy(out:find("\n" .. l.dst.v4:gsub("%.", "%%.") .. " +alive  echo_reply  [%d.]+ ms\n"), out)
    -- 198.18.1.9 does not exist: it times out, or, once an earlier probe
    -- has left the router's neighbour entry FAILED, the router answers
    -- host unreachable at once; both are right
    local unreachable = out:find("\n198%.18%.1%.9 +%-      dest_unreachable host from ") ~= nil
    assert.truthy(unreachable or out:find("\n198%.18%.1%.9 +%-      timeout\n"), out)
    assert.truthy(out:find("\n1 of 2 targets alive %(50%.0 %%%); " .. (unreachable
      and "0 no answer, 1 answered otherwise" or "1 no answer, 0 answered otherwise")
      .. ", 0 failed; [%d.]+ s, %d+ probes/s\n$"), out)

    out, err, code = sweep{ "--format", "csv", "-q", unpack(targets) }
    assert.are.equal(0, code, err)
    local rows = {}
    for row in out:gmatch("([^\r\n]*)\r\n") do rows[#rows + 1] = row end
    assert.are.equal(3, #rows)
    assert.are.equal("addr,alive,status,kind,code,from,rtt,reply_ttl,protocol,port,error", rows[1])

    out, err, code = sweep{ "--format", "markdown", unpack(targets) }
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^| addr | alive |"), out)
    assert.truthy(out:find("\n1 of 2 targets alive", 1, false), out)

    out, err, code = sweep{ "--format", helpers.root() .. "/examples/format_example.lua", unpack(targets) }
    assert.are.equal(0, code, err)
    assert.are.equal("# sonde sweep, icmp, 2 targets\n" .. l.dst.v4 .. "\n", out:match("^(.-\n.-\n)"))
    assert.truthy(out:find("\n# 1 of 2 targets alive %(50%.0 %%%); [^\n]+ probes/s\n$"), out)

    local file = dir .. "/result.jsonl"
    out, err, code = sweep{ "-o", file, unpack(targets) }
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    local f = assert(io.open(file))
    local text = f:read("*a")
    f:close()
    assert.are.equal(2, #decode_lines(text))
    valid(text)
    assert.are.equal("", (lab.run("ls -A " .. dir .. " | grep '\\.tmp$'")))

    out, err, code = sweep{ "-o", "/proc/nowhere/x.csv", unpack(targets) }
    assert.are.equal(3, code)
    assert.truthy(err:find("sonde sweep: -o: cannot create a file in /proc/nowhere", 1, true), err)
  end)

  it("--alive writes the alive targets only; the summary still counts all", function()
    local out, err, code = sweep{ "--alive", "-w", 0.3, l.dst.v4, "198.18.1.9", "198.18.1.10" }
    assert.are.equal(0, code, err)
    local recs = decode_lines(out)
    assert.are.equal(1, #recs)
    assert.are.equal(l.dst.v4, recs[1].addr)
    assert.truthy(err:find("1 of 3 targets alive", 1, true), err)
  end)

  it("shows a progress line on a terminal for runs over 2 s, and none with -q or without a terminal", function()
    local cmd = lab.cmdline{ helpers.sonde(), "sweep", "--rate", 100, "-w", 0.2, "198.19.10.0/24",
      "--shard", "0/1" }
    local function on_terminal(extra)
      -- script(1) gives sonde a terminal; stdout goes to /dev/null
      local out, err, code = l:exec("src", "script -qec " .. lab.shquote(cmd .. extra .. " >/dev/null")
        .. " /dev/null")
      assert.are.equal(0, code, err)
      return out
    end
    local tty = on_terminal("")
    assert.truthy(tty:find("\r\27%[Ksweep: %d+/256 %([%d.]+ %%%), %d+ alive, %d+ targets/s, %d+s left"), tty)
    assert.truthy(tty:find("sonde sweep: %d+ of 256 targets alive"), tty)
    local quiet = on_terminal(" -q")
    assert.are.equal("", quiet)
    local _, err, code = l:exec("src", cmd .. " >/dev/null")
    assert.are.equal(0, code)
    assert.truthy(err:find("^sonde sweep: %d+ of 256 targets alive"), err)
    assert.is_nil(err:find("\r", 1, true))
  end)

  it("ends at SIGINT with the records of the probes that ended, then the summary (130)", function()
    local out_file = dir .. "/int.jsonl"
    local p = l:spawn("src", { helpers.sonde(), "sweep", "--rate", 100, "198.19.11.0/24", "-o", out_file })
    local pid = assert(p:command_pid(5))
    lab.sleep(1)
    assert(os.execute("kill -INT " .. pid) == 0)
    assert.are.equal(130, p:wait(3))
    local _, err = p:output()
    local done = tonumber(err:match("interrupted after (%d+) of 256"))
    assert(done and done > 10 and done < 256, err)
    local f = assert(io.open(out_file))
    local text = f:read("*a")
    f:close()
    assert.are.equal(done, #decode_lines(text))
    valid(text)
  end)

  it("ends quietly, and soon, when its output pipe closes", function()
    -- 256 targets at 50/s would take 5 s
    local out, err, code = l:exec("src", "bash -c " .. lab.shquote("set -o pipefail; s=$(date +%s%N); "
      .. lab.cmdline{ helpers.sonde(), "sweep", "--rate", 50, "198.19.12.0/24" } .. " | head -n 1; rc=$?; "
      .. "echo ms=$(( ($(date +%s%N) - s) / 1000000 )) >&2; exit $rc"))
    assert.are.equal(0, code, err)
    local ms = tonumber(err:match("^ms=(%d+)\n$"))
    assert(ms, "sonde wrote to stderr: " .. err)
    assert(ms < 2500, "kept probing " .. ms .. " ms after its reader left")
    assert.are.equal(1, #decode_lines(out))
  end)

  it("refuses bad usage (2) and reports runtime errors (3), naming what is wrong", function()
    local cases = {
      { {}, 2, "sonde sweep: no targets (give addresses, prefixes or --targets FILE)" },
      { { "198.19.0.0/33" }, 2, "sonde sweep: TARGET: invalid value '198.19.0.0/33' (IPv4 prefix length must be from 0 to 32)" },
      { { "--port", "80", "198.19.0.1" }, 2, "sonde sweep: --port applies to -p tcp and -p udp, not icmp" },
      { { "--shard", "3/3", "198.19.0.1" }, 2, "sonde sweep: --shard: invalid value '3/3' (K must be from 0 to 2 (K counts from 0))" },
      { { "--format", "yaml", "198.19.0.1" }, 2, "sonde sweep: --format: invalid value 'yaml'" },
      { { "--targets", "/root/nothing-here" }, 3, "sonde sweep: --targets /root/nothing-here: cannot read:" },
      { { "-w", "0.2", "198.18.9.0/30" }, 3, "sonde sweep: every probe failed: ENETUNREACH: network is unreachable" },
    }
    for _, c in ipairs(cases) do
      local _, err, code = sweep(c[1])
      assert.are.equal(c[2], code, table.concat(c[1], " ") .. ": " .. err)
      assert.truthy(err:find(c[3], 1, true), err)
    end
  end)
end)
