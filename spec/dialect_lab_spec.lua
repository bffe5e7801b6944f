-- Each command speaks the dialect of the tool it replaces: traceroute's
-- and iputils ping's command lines, typed as users type them, run through
-- the real tool and through sonde on the same lab, and what they mean
-- compared (the hops, the counts, the errors), not only the exit status.
-- Chain: src - r1 - r2 - dst, the link r1 - r2 with an MTU of 1280.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

local function has(tool)
  local _, _, code = lab.run({ "sh", "-c", "command -v " .. tool })
  return code == 0
end

-- "N packets transmitted, M received" -> N, M (iputils' and sonde's line).
local function counts(out)
  local sent, received = out:match("(%d+) packets transmitted, (%d+) received")
  return tonumber(sent), tonumber(received)
end

-- The hop lines of traceroute's (or sonde trace's) text: { [ttl] = { addresses } }.
local function hops(out)
  local t = {}
  for line in out:gmatch("[^\n]+") do
    local ttl, rest = line:match("^%s*(%d+)%s+(.*)$")
    if ttl then
      local addrs = {}
      for a in rest:gmatch("(%d+%.%d+%.%d+%.%d+)") do addrs[#addrs + 1] = a end
      t[tonumber(ttl)] = addrs
    end
  end
  return t
end

helpers.lab_describe("the replaced tools' command lines, through sonde", function()
  local l, DST, R1, R2, NOBODY

  setup(function()
    l = lab.chain{ routers = 2, v6 = true, name = "dialect" }
    DST, R1, R2 = l.dst.v4, l.hops[1].v4, l.hops[2].v4
    NOBODY = "198.18.2.3"   -- on dst's link, nobody's: no answer
    for _, side in ipairs{ { "r1", "to-r2" }, { "r2", "to-r1" } } do
      lab.must({ "ip", "-n", l:nsname(side[1]), "link", "set", side[2], "mtu", "1280" })
    end
    -- iputils ping as nobody needs ICMP datagram sockets
    l:sysctl("src", "net.ipv4.ping_group_range", "0 2147483647")
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function tool(argv, nobody)
    local full = {}
    if nobody then for _, a in ipairs(helpers.AS_NOBODY) do full[#full + 1] = a end end
    for _, a in ipairs(argv) do full[#full + 1] = a end
    return l:exec("src", full)
  end

  -- The same words after "ping"/"traceroute" given to sonde ping / trace.
  local function sonde(cmd, words, nobody)
    local argv = { helpers.sonde(), cmd }
    for _, w in ipairs(words) do argv[#argv + 1] = w end
    return tool(argv, nobody)
  end

  describe("iputils ping", function()
    it("-c 3 -i 0.2: three sent, three received, by both", function()
      local words = { "-c", "3", "-i", "0.2", DST }
      local out, err, code = sonde("ping", words)
      assert.are.equal(0, code, err)
      assert.are.same({ 3, 3 }, { counts(out) })
      if has("ping") then
        local pout = tool({ "ping", unpack(words) })
        assert.are.same({ counts(pout) }, { counts(out) })
      end
    end)

    it("-w 1 -i 0.2: the deadline ends the run after a second, as iputils' does", function()
      local words = { "-w", "1", "-i", "0.2", DST }
      local out, err, code = sonde("ping", words)
      assert.are.equal(0, code, err)
      local sent, received = counts(out)
      -- 0, 0.2, ... 0.8 s: five probes; a busy machine may fit one fewer
      assert.is_true(sent >= 4 and sent <= 6, "sent " .. tostring(sent))
      assert.are.equal(sent, received)
      local ms = tonumber(out:match("packet loss, time (%d+)ms"))
      assert.is_true(ms >= 900 and ms < 1500, "time " .. tostring(ms))
      if has("ping") then
        local psent = counts(tool({ "ping", unpack(words) }))
        assert.is_true(math.abs(psent - sent) <= 1, ("iputils %d, sonde %d"):format(psent, sent))
      end
    end)

    it("-c 2 -w 5: with a deadline -c counts replies, and the run ends once they came", function()
      local out, err, code = sonde("ping", { "-c", "2", "-w", "5", "-i", "0.1", DST })
      assert.are.equal(0, code, err)
      assert.are.same({ 2, 2 }, { counts(out) })
      assert.is_true(tonumber(out:match("time (%d+)ms")) < 1000)
    end)

    it("-c 2 -W 0.5 to an address nobody answers: 2 sent, 0 received, exit 1 in both", function()
      local words = { "-c", "2", "-i", "0.2", "-W", "0.5", NOBODY }
      local out, _, code = sonde("ping", words)
      assert.are.equal(1, code)
      assert.are.same({ 2, 0 }, { counts(out) })
      assert.matches("100%% packet loss", out)
      if has("ping") then
        local pout, _, pcode = tool({ "ping", unpack(words) })
        assert.are.equal(pcode, code)
        assert.are.same({ counts(pout) }, { counts(out) })
      end
    end)

    it("-q: the start line and the statistics only", function()
      local out, err, code = sonde("ping", { "-q", "-c", "2", "-i", "0.1", DST })
      assert.are.equal(0, code, err)
      assert.is_nil(out:find("icmp_seq=", 1, true))
      assert.matches("^PING ", out)
      assert.are.same({ 2, 2 }, { counts(out) })
    end)

    it("-n is accepted; -D puts the Unix time before each line", function()
      local out, err, code = sonde("ping", { "-n", "-D", "-c", "1", DST })
      assert.are.equal(0, code, err)
      local stamp = out:match("\n%[(%d+%.%d+)%] 64 bytes from ")
      assert.truthy(stamp, out)
      assert.is_true(math.abs(tonumber(stamp) - os.time()) < 30)
    end)

    it("-M do -s 1400 over a 1280-byte link: nothing received, the MTU named", function()
      local words = { "-M", "do", "-s", "1400", "-c", "2", "-i", "0.2", "-W", "1", DST }
      local out, _, code = sonde("ping", words)
      assert.are.equal(1, code)
      assert.are.equal(0, select(2, counts(out)))
      -- r1 says so (frag needed, mtu 1280), or the kernel, which learnt it
      assert.truthy(out:find("mtu = 1280", 1, true) or out:find("EMSGSIZE: local error: message too long, mtu=1280", 1, true), out)
      if has("ping") then
        local pout, _, pcode = tool({ "ping", unpack(words) })
        assert.are.equal(pcode, code)
        assert.are.equal(0, select(2, counts(pout)))
      end
      -- -M dont: fragmented, answered; iputils' largest size too
      out, _, code = sonde("ping", { "-M", "dont", "-s", "1400", "-c", "1", DST })
      assert.are.equal(0, code, out)
      out, _, code = sonde("ping", { "-s", "65507", "-c", "1", "-W", "2", DST })
      assert.are.equal(0, code, out)
      assert.matches("65515 bytes from " .. DST:gsub("%.", "%%."), out)
      -- 1252 + 28 = 1280: fits the smallest link with DF
      out, _, code = sonde("ping", { "-M", "do", "-s", "1252", "-c", "1", DST })
      assert.are.equal(0, code, out)
      _, _, code = sonde("ping", { "-s", "65508", "-c", "1", DST })
      assert.are.equal(2, code)
    end)

    it("-i 0.001 and -f are root's: a user is refused with exit 2, as by iputils", function()
      for _, words in ipairs{ { "-c", "3", "-i", "0.001", DST }, { "-f", "-c", "3", DST } } do
        local _, err, code = sonde("ping", words, true)
        assert.are.equal(2, code, err)
        assert.matches("cannot flood", err)
        if has("ping") then
          local _, _, pcode = tool({ "ping", unpack(words) }, true)
          assert.are.equal(2, pcode)
        end
      end
      -- root may: -f prints a dot per probe, a backspace per answer
      local out, err, code = sonde("ping", { "-f", "-c", "20", DST })
      assert.are.equal(0, code, err)
      assert.are.same({ 20, 20 }, { counts(out) })
      local _, dots = out:gsub("%.", "")
      assert.is_true(dots >= 20)
    end)

    it("a malformed address is a usage error (exit 2) in both", function()
      for _, bad in ipairs{ "300.1.1.1", "1.2.3.04", "2001:db8::zz", "[::1]" } do
        local _, err, code = sonde("ping", { "-c", "1", bad })
        assert.are.equal(2, code, bad .. ": " .. err)
        assert.is_nil(err:find("traceback", 1, true), err)
        assert.matches("invalid value", err)
      end
      local _, err, code = sonde("ping", { "-c", "1", "" })
      assert.are.equal(2, code, err)
      assert.matches("empty", err)
    end)

    -- the lab's own /15: were the bound ever lost, nothing would leave the lab
    it("a prefix over the bound refuses to start without --max-targets, and says how many", function()
      local _, err, code = sonde("ping", { "-c", "1", "198.18.0.0/15" })
      assert.are.equal(2, code)
      assert.matches("131072 addresses", err)
      assert.matches("%-%-max%-targets", err)
    end)

    it("every probe failing locally: N transmitted, +N errors, 100% loss", function()
      local out, _, code = sonde("ping", { "-c", "2", "-i", "0.1", "198.19.255.1" })
      assert.are.equal(3, code)
      assert.matches("2 packets transmitted, 0 received, %+2 errors, 100%% packet loss", out)
    end)

    it("refused ICMP sockets name net.ipv4.ping_group_range, not a firewall", function()
      l:sysctl("src", "net.ipv4.ping_group_range", "1 0")
      finally(function() l:sysctl("src", "net.ipv4.ping_group_range", "0 2147483647") end)
      local out, err, code = sonde("ping", { "-c", "1", DST }, true)
      assert.are.equal(3, code, out)
      assert.matches("net%.ipv4%.ping_group_range", err)
      assert.is_nil(err:find("firewall", 1, true), err)
      out, err, code = sonde("sweep", { DST }, true)
      assert.are.equal(3, code, out)
      assert.matches("net%.ipv4%.ping_group_range", err)
    end)
  end)

  describe("traceroute", function()
    it("-n -q 1 -m 3: one probe per hop, the same hops as traceroute's", function()
      local words = { "-n", "-q", "1", "-m", "3", DST }
      local out, err, code = sonde("trace", words)
      assert.are.equal(0, code, err)
      local got = hops(out)
      assert.are.same({ { R1 }, { R2 }, { DST } }, got)
      if has("traceroute") then
        assert.are.same(hops((tool({ "traceroute", unpack(words) }))), got)
      end
    end)

    it("-n -f 2 -q 2: starts at hop 2, two probes a hop", function()
      local words = { "-n", "-f", "2", "-q", "2", DST }
      local out, err, code = sonde("trace", words)
      assert.are.equal(0, code, err)
      local got = hops(out)
      assert.is_nil(got[1])
      assert.are.same({ R2 }, got[2])   -- the same address: named once
      assert.truthy(out:find("\n 2  " .. R2:gsub("%.", "%%.") .. "  [%d.]+ ms  [%d.]+ ms\n"), out)
      if has("traceroute") then
        assert.are.same(hops((tool({ "traceroute", unpack(words) }))), got)
      end
    end)

    it("HOST PACKETLEN is the packet length: 1400 with DF stops at the 1280 link, 1200 passes", function()
      -- forget the path MTU the pings above taught the kernel: r1 must say it
      lab.must({ "ip", "-n", l:nsname("src"), "route", "flush", "cache" })
      local out, err, code = sonde("trace", { "-n", "-q", "1", "--df", "yes", DST, "1400" })
      assert.are.equal(1, code, err)
      assert.matches("!F%-1280", out)
      out, err, code = sonde("trace", { "-n", "-q", "1", "--df", "yes", DST, "1200" })
      assert.are.equal(0, code, err)
      if has("traceroute") then
        lab.must({ "ip", "-n", l:nsname("src"), "route", "flush", "cache" })
        local tout = tool({ "traceroute", "-n", "-q", "1", "-F", DST, "1400" })
        assert.matches("!F%-1280", tout)
      end
    end)

    it("--mtu HOST: F=1500 at hop 1, F=1280 beyond the 1280 link, as traceroute --mtu", function()
      local function marks(out)
        local m = {}
        for ttl, f in out:gmatch("\n%s*(%d+)%s[^\n]-F=(%d+)") do m[tonumber(ttl)] = tonumber(f) end
        return m
      end
      local words = { "-n", "--mtu", DST }
      local out, err, code = sonde("trace", words)
      assert.are.equal(0, code, err)
      assert.are.same({ [1] = 1500, [2] = 1280 }, marks(out), out)
      assert.are.same({ { R1 }, { R2 }, { DST } }, hops(out))
      if has("traceroute") then
        assert.are.same(marks((tool({ "traceroute", unpack(words) }))), marks(out))
      end
    end)

    it("-A: each hop's origin AS before it, as traceroute -A shows it (offline: --as-file)", function()
      local path = helpers.readable_file("198.18.0.0\t24\t64500\n198.18.1.0\t24\t64501\n"
        .. "198.18.0.0\t15\t64999\n")
      finally(function() os.remove(path) end)
      local out, err, code = sonde("trace", { "-n", "-A", "--as-file", path, "-q", "1", DST })
      assert.are.equal(0, code, err)
      assert.matches("\n 1  %[AS64500%] " .. R1:gsub("%.", "%%.") .. "  ", out)
      assert.matches("\n 2  %[AS64501%] " .. R2:gsub("%.", "%%.") .. "  ", out)
      assert.matches("\n 3  %[AS64999%] " .. DST:gsub("%.", "%%.") .. "  ", out)   -- longest prefix
    end)

    -- traceroute's method letters and -p, -F, -t, typed as traceroute
    -- users type them: the same hops, and the packets they describe (the
    -- JSON says which protocol and port each probe had)
    for _, words in ipairs{
      { "-I" }, { "-T" }, { "-T", "-p", "22" }, { "-U" }, { "-U", "-p", "5353" }, { "-p", "40000" },
      { "-t", "184" },
    } do
      it(table.concat(words, " ") .. ": what traceroute " .. table.concat(words, " ") .. " means", function()
        local argv = { "-n", "-q", "1" }
        for _, w in ipairs(words) do argv[#argv + 1] = w end
        argv[#argv + 1] = DST
        local out, err, code = sonde("trace", argv)
        assert.are.equal(0, code, err)
        assert.are.same({ { R1 }, { R2 }, { DST } }, hops(out))
        if has("traceroute") then
          assert.are.same(hops((tool({ "traceroute", unpack(argv) }))), hops(out))
        end
        local jargv = { "--format", "json" }
        for _, w in ipairs(argv) do jargv[#jargv + 1] = w end
        local t = cjson.decode((sonde("trace", jargv)))
        local proto, port = "udp", nil
        for i, w in ipairs(words) do
          if w == "-I" then proto = "icmp" elseif w == "-T" then proto = "tcp"
          elseif w == "-U" then port = port or 53 elseif w == "-p" then port = tonumber(words[i + 1]) end
        end
        if proto == "tcp" then port = port or 80 end
        assert.are.equal(proto, t.protocol)
        local last = t.hops[#t.hops].probes[1]
        if port then
          -- UDP's base port grows by one per probe under --strategy classic
          -- (sonde's Paris default keeps it); TCP's and -U's port is fixed
          assert.is_true(last.dport >= port and last.dport < port + 3, tostring(last.dport))
        end
        if words[1] == "-t" then
          -- the TOS byte went out: nothing on this clean path changed it
          for _, hop in ipairs(t.hops) do
            for _, pr in ipairs(hop.probes) do assert.is_nil(pr.changes, cjson.encode(pr)) end
          end
        end
      end)
    end

    it("-F with a packet length: don't fragment, as traceroute -F", function()
      lab.must({ "ip", "-n", l:nsname("src"), "route", "flush", "cache" })
      local out, err, code = sonde("trace", { "-n", "-q", "1", "-F", DST, "1400" })
      assert.are.equal(1, code, err)
      assert.matches("!F%-1280", out)
    end)

    it("traceroute's letters sonde does not take get a hint, exit 2; so does -p with ICMP", function()
      local _, err, code = sonde("trace", { "-P", "17", "-n", DST })
      assert.are.equal(2, code)
      assert.matches("use %-I %(ICMP%), %-T %(TCP%), %-U", err)
      _, err, code = sonde("trace", { "-I", "-p", "5", DST })
      assert.are.equal(2, code)
      assert.matches("ICMP echo probes have no port", err)
      _, err, code = sonde("trace", { "-I", "-T", DST })
      assert.are.equal(2, code)
      assert.matches("%-I", err)
    end)

    it("--flows with --sport past port 65535 is a usage error, not a traceback", function()
      local _, err, code = sonde("trace", { "--strategy", "dublin", "--flows", "64", "--sport", "65500", DST })
      assert.are.equal(2, code)
      assert.matches("65535", err)
      assert.is_nil(err:find("traceback", 1, true))
    end)
  end)

  describe("tcping", function()
    it("numbers attempts from 1, as ping, and a skipped attempt (port busy) is not loss", function()
      local hold = l:spawn("src", { helpers.labpeer(), "hold-port", "-p", "40001", "-t", "20" })
      finally(function() hold:stop() end)
      hold:wait_for("^ready$", 5)
      local out, err, code = sonde("tcping", { "-c", "3", "-i", "0", "--bind", "sequence",
        "--sport", "40000", DST, "9" })
      assert.are.equal(1, code, err)        -- nothing listens on 9: refused
      assert.matches("seq=1 refused", out)
      assert.matches("seq=2 skipped EADDRINUSE", out)
      assert.matches("seq=3 refused", out)
      assert.matches("\n2 attempts, 0 succeeded, 100%.0%% loss, 1 skipped %(source port busy%)", out)
    end)
  end)

  describe("a link-local IPv6 address with its zone", function()
    it("is probed on its link by ping, trace, tcping and mda", function()
      lab.must({ "ip", "-n", l:nsname("src"), "addr", "add", "fe80::a/64", "dev", "to-r1", "nodad" })
      lab.must({ "ip", "-n", l:nsname("r1"), "addr", "add", "fe80::b/64", "dev", "to-src", "nodad" })
      local zoned = "fe80::b%to-r1"
      local out, err, code = sonde("ping", { "-c", "2", "-i", "0.1", zoned })
      assert.are.equal(0, code, err)
      assert.are.same({ 2, 2 }, { counts(out) })
      out, err, code = sonde("trace", { "-n", "-q", "1", zoned })
      assert.are.equal(0, code, err)
      assert.matches("\n 1  fe80::b  [%d.]+ ms\n", out)   -- reached, no !P
      out, err, code = sonde("tcping", { "-c", "1", zoned, "9" })
      assert.are.equal(1, code, err)
      assert.matches("seq=1 refused", out)                  -- r1 itself answered
      out, err, code = sonde("mda", { "-n", zoned })
      assert.are.equal(0, code, err)
      -- an interface this host does not have is a usage error
      out, err, code = sonde("ping", { "-c", "1", "fe80::b%nosuchif" })
      assert.are.equal(2, code)
      assert.matches("no interface 'nosuchif'", err)
    end)
  end)

  describe("mtr -p (split mode)", function()
    -- The last line of each TTL: { [ttl] = "NAME LOSS RECEIVED SENT" }, and
    -- whether every line had mtr's shape (integers after the name).
    local function split_lines(out)
      local last, shaped = {}, true
      for line in out:gsub("\r", ""):gmatch("[^\n]+") do
        local ttl, rest = line:match("^(%d+) (.*)$")
        if ttl then
          local head = rest == "???" and rest or rest:match("^(%S+ %d+ %d+ %d+) %d+ %d+ %d+$")
          if not head then shaped = false end
          last[tonumber(ttl)] = head or rest
        elseif not line:match("^%-%d+$") then
          shaped = false
        end
      end
      return last, shaped
    end

    it("writes mtr's split lines, the last of each hop as mtr -p's; -p is no protocol any more", function()
      local out, err, code = sonde("mtr", { "-p", "-n", "-c", "3", "-i", "0.2", DST })
      assert.are.equal(0, code, err)
      local got, shaped = split_lines(out)
      assert.is_true(shaped, out)
      assert.are.same({ R1 .. " 0 3 3", R2 .. " 0 3 3", DST .. " 0 3 3" }, got)
      if has("mtr") then
        -- mtr's split mode writes only to a terminal
        local pty = helpers.root() .. "/spec/support/in_pty.py"
        local tout = tool({ "/usr/bin/python3", pty, "9", "q", "/usr/bin/mtr", "-p", "-n", "-c", "3",
          "-i", "0.2", DST })
        local tdoc = require("cjson").decode(tout)
        local tgot, tshaped = split_lines(tdoc.out)
        assert.is_true(tshaped, tdoc.out)
        assert.are.same(tgot, got)
      end
      -- the protocol is --protocol (or -u, -T); -p udp is now a second target
      out, err, code = sonde("mtr", { "-p", "udp", DST })
      assert.are.equal(2, code, out)
      assert.matches("%-%-protocol", err)
      out, err, code = sonde("mtr", { "--protocol", "udp", "-r", "-n", "-c", "1", DST })
      assert.are.equal(0, code, err)
      out, err, code = sonde("mtr", { "-p", "-r", DST })
      assert.are.equal(2, code)
      assert.matches("not with %-r", err)
    end)
  end)

  describe("ICMP datagram sockets refused to nobody (net.ipv4.ping_group_range)", function()
    it("trace, mtr and watch name the sysctl, not a firewall; mtr shows no ??? row, exit 3", function()
      l:sysctl("src", "net.ipv4.ping_group_range", "1 0")
      finally(function() l:sysctl("src", "net.ipv4.ping_group_range", "0 2147483647") end)
      local function refused(err)
        assert.matches("net%.ipv4%.ping_group_range", err)
        assert.matches("sysctl %-w", err)                     -- how to allow them
        assert.is_nil(err:find("firewall", 1, true), err)
        local _, hints = err:gsub("sysctl %-w", "")
        assert.are.equal(1, hints, err)                        -- said once
      end
      local out, err, code = sonde("trace", { "-n", "-q", "1", "-I", DST }, true)
      assert.are.equal(3, code, out)
      refused(err)
      out, err, code = sonde("mtr", { "-n", "-r", "-c", "1", DST }, true)
      assert.are.equal(3, code, out)
      refused(err)
      assert.is_nil(out:find("???", 1, true), out)
      assert.is_nil(out:find("|--", 1, true), out)           -- no hop rows at all
      out, err, code = sonde("mtr", { "-n", "-c", "1", "--format", "json", DST }, true)
      assert.are.equal(3, code, out)
      refused(err)
      local doc = require("cjson").decode(out)
      assert.are.same({}, doc.hops)
      assert.are.equal("EACCES", doc.error.name)
      assert.matches("ping_group_range", doc.error.message)
      out, err, code = sonde("watch", { "--rounds", "1", "-i", "0.2", DST }, true)
      assert.are.equal(3, code, out)
      refused(err)
      out, err, code = sonde("ping", { "-c", "1", DST }, true)
      assert.are.equal(3, code, out)
      refused(err)
      out, err, code = sonde("sweep", { DST }, true)
      assert.are.equal(3, code, out)
      refused(err)
    end)
  end)

  describe("a host name with both an IPv4 and an IPv6 address", function()
    it("is traced over IPv4 as traceroute does, pinged and mtr'd over IPv6 as ping and mtr do; -4/-6 force", function()
      -- the name from the lab's /etc/hosts; a resolver nobody runs, so that
      -- nothing else is ever asked
      l:etc("src", "hosts", "127.0.0.1 localhost\n" .. DST .. " dual.lab\n" .. l.dst.v6 .. " dual.lab\n")
      l:etc("src", "resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
      local v4, v6 = DST:gsub("%.", "%%."), l.dst.v6:gsub("%-", "%%-")
      -- "to NAME (ADDR)" of trace's and traceroute's header, "(ADDR)" of ping's
      local function header_addr(out) return out:match("%((%x[%x:.]*)%)") end
      local out, err, code = sonde("trace", { "-n", "-q", "1", "dual.lab" })
      assert.are.equal(0, code, err)
      assert.are.equal(DST, header_addr(out), out)
      out, err, code = sonde("trace", { "-n", "-q", "1", "-6", "dual.lab" })
      assert.are.equal(0, code, err)
      assert.are.equal(l.dst.v6, header_addr(out), out)
      out, err, code = sonde("ping", { "-c", "1", "dual.lab" })
      assert.are.equal(0, code, err)
      assert.matches("%(" .. v6 .. "%)", out)
      out, err, code = sonde("ping", { "-c", "1", "-4", "dual.lab" })
      assert.are.equal(0, code, err)
      assert.matches("%(" .. v4 .. "%)", out)
      out, err, code = sonde("mtr", { "-n", "-r", "-c", "1", "dual.lab" })
      assert.are.equal(0, code, err)
      assert.matches("\n%s+1%.|%-%- " .. l.hops[1].v6:gsub("%-", "%%-") .. " ", out)
      -- the real tools, on the same name
      if has("traceroute") then
        assert.are.equal(DST, header_addr((tool({ "traceroute", "-n", "-q", "1", "dual.lab" }))))
      end
      if has("ping") then
        assert.matches("%(" .. v6 .. "%)", (tool({ "ping", "-c", "1", "dual.lab" })))
      end
      if has("mtr") then
        assert.matches("\n%s+1%.|%-%- " .. l.hops[1].v6:gsub("%-", "%%-") .. " ",
          (tool({ "mtr", "-n", "-r", "-c", "1", "dual.lab" })))
      end
    end)
  end)

  describe("zoned link-local targets in a list", function()
    it("are probed on their link from a targets file and by sweep; a zone that is no interface is skipped", function()
      lab.must({ "ip", "-n", l:nsname("src"), "addr", "replace", "fe80::1:a/64", "dev", "to-r1", "nodad" })
      lab.must({ "ip", "-n", l:nsname("r1"), "addr", "replace", "fe80::1:b/64", "dev", "to-src", "nodad" })
      local path = helpers.readable_file("fe80::1:b%to-r1\nfe80::1:c%to-r1\nfe80::1:b%nosuchif\n")
      finally(function() os.remove(path) end)
      local out, err, code = sonde("sweep", { "-w", "1", "--format", "csv", "--targets", path })
      assert.are.equal(0, code, err)    -- one alive
      assert.matches("fe80::1:b%%to%-r1,true,reply,echo_reply,,fe80::1:b,", out)
      assert.matches("fe80::1:c%%to%-r1,false,timeout,", out)
      assert.matches(":3: skipped 'fe80::1:b%%nosuchif': no interface 'nosuchif'", err)
      out, err, code = sonde("ping", { "-c", "1", "-W", "1", "--targets", path })
      assert.are.equal(1, code, err)    -- one of two answered
      assert.matches("1 of 2 targets answered", err)
      assert.matches("fe80::1:b%%to%-r1 ping statistics ---\n1 packets transmitted, 1 received", out)
      -- on the command line, among several: a bad zone is a usage error
      out, err, code = sonde("sweep", { "fe80::1:b%to-r1", "fe80::1:b%nosuchif" })
      assert.are.equal(2, code)
      assert.matches("no interface 'nosuchif'", err)
    end)
  end)

  describe("the other commands", function()
    it("sweep takes -4/-6; mda's confidence is --confidence only and -q is not quiet", function()
      local _, err, code = sonde("sweep", { "-6", "198.18.2.0/30" })
      assert.are.equal(2, code)
      assert.matches("IPv4 target, but %-6", err)
      _, err, code = sonde("mda", { "-c", "99", DST })
      assert.are.equal(2, code)
      assert.matches("%-%-confidence", err)
      _, err, code = sonde("mda", { "-q", DST })
      assert.are.equal(2, code)
      assert.matches("%-%-quiet", err)
    end)
  end)
end)

-- A source address and an interface, as traceroute (-s, -i) and iputils
-- ping (-I ADDR, -I IFACE) take them, on lab.multihomed: hop 1 is ra
-- (198.18.0.2) from the route's source, rb (198.18.1.2) from 198.18.1.1
-- or by interface to-rb.
helpers.lab_describe("a source address and an interface, as traceroute and ping take them", function()
  local m, DST, RB, B

  setup(function()
    m = lab.multihomed{ name = "dialsrc" }
    DST, RB, B = m.dst.v4, m.rb.v4, m.b.v4
  end)

  teardown(function()
    if m then m:destroy() end
  end)

  local function run(argv)
    return m:exec("src", argv)
  end

  local function both(tool_argv)
    local sonde_argv = { helpers.sonde(), tool_argv[1] == "traceroute" and "trace" or "ping" }
    for i = 2, #tool_argv do sonde_argv[#sonde_argv + 1] = tool_argv[i] end
    local sout, serr, scode = run(sonde_argv)
    local tout, terr, tcode
    if has(tool_argv[1]) then tout, terr, tcode = run(tool_argv) end
    return sout, serr, scode, tout, terr, tcode
  end

  for _, how in ipairs{ { "-s", "198.18.1.1" }, { "-i", "to-rb" } } do
    it(("traceroute -n -q 1 %s %s HOST: hop 1 is rb, as traceroute's"):format(how[1], how[2]), function()
      local out, err, code, tout = both{ "traceroute", "-n", "-q", "1", how[1], how[2], DST }
      assert.are.equal(0, code, err .. out)
      local h = hops(out)
      assert.are.same({ RB }, h[1], out)
      assert.are.same({ DST }, h[2], out)
      if tout then assert.are.same(hops(tout), h, tout .. "\n" .. out) end
    end)
  end

  for _, how in ipairs{ "198.18.1.1", "to-rb" } do
    it(("ping -I %s -c 2 HOST: two sent, two received, the source named as iputils does"):format(how), function()
      local out, err, code, tout = both{ "ping", "-I", how, "-c", "2", DST }
      assert.are.equal(0, code, err .. out)
      assert.are.same({ 2, 2 }, { counts(out) })
      local iface = how == "to-rb" and "to-rb" or ""
      assert.is_truthy(out:find("from " .. B .. " " .. iface .. ":", 1, true), out)
      if tout then
        assert.are.same({ counts(tout) }, { counts(out) })
        assert.are.equal(tout:match("^[^\n]*"), out:match("^[^\n]*"))
      end
    end)
  end

  it("a source that is not this host's: both refuse, sonde naming EADDRNOTAVAIL and the address", function()
    local out, err, code, _, terr, tcode = both{ "traceroute", "-n", "-s", "198.18.250.250", DST }
    assert.are.equal(3, code, err .. out)          -- a system error (traceroute: exit 1)
    assert.matches("EADDRNOTAVAIL", err)
    assert.matches("198%.18%.250%.250", err)
    if tcode then assert.are_not.equal(0, tcode, terr) end
    out, err, code, _, terr, tcode = both{ "ping", "-I", "198.18.250.250", "-c", "1", DST }
    assert.are.equal(3, code, err .. out)          -- iputils: exit 2
    assert.matches("EADDRNOTAVAIL.*198%.18%.250%.250", err)
    if tcode then assert.are_not.equal(0, tcode, terr) end
  end)

  it("an unknown interface: both refuse, sonde naming ENODEV and the interface", function()
    for _, argv in ipairs{ { "traceroute", "-n", "-i", "nosuchdev", DST }, { "ping", "-I", "nosuchdev", "-c", "1", DST } } do
      local out, err, code, _, terr, tcode = both(argv)
      assert.are.equal(3, code, err .. out)
      assert.matches("ENODEV.*nosuchdev", err)
      if tcode then assert.are_not.equal(0, tcode, terr) end
    end
  end)

  it("-s with an address of the other family than the target is a usage error", function()
    local _, err, code = run{ helpers.sonde(), "trace", "-n", "-s", B, m.dst.v6 }
    assert.are.equal(2, code, err)
    assert.matches("IPv4", err)
  end)
end)
