-- sonde ping -p PATTERN (iputils' payload pattern) on the wire: the next
-- hop counts, with nftables payload matches, the 4-byte windows of each
-- probe's payload that hold the pattern, for ICMP and UDP, IPv4 and IPv6,
-- as root (raw sockets) and as nobody (ICMP datagram sockets, UDP); the
-- replies are still matched (the engine's nonce is intact). Side by side
-- with iputils ping -p on the same lab: which windows hold the pattern in
-- each tool's echo requests, and where they disagree.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

local esc, lines_of = helpers.esc, helpers.text_lines

local SIZE = 56                      -- payload bytes (ping's default)
local WINDOWS = SIZE / 4             -- 4-byte windows of the payload
local PATTERNS = { "ff", "0123456789abcdef" }

-- The bytes of hex digits.
local function bytes_of(hex)
  local t = {}
  for pair in hex:gmatch("%x%x") do t[#t + 1] = tonumber(pair, 16) end
  return t
end

-- The 32-bit value of window w (payload bytes 4w..4w+3) filled with pat
-- from the payload's first byte, as hex.
local function window_value(pat, w)
  local b, s = bytes_of(pat), {}
  for j = 0, 3 do s[#s + 1] = ("%02x"):format(b[(4 * w + j) % #b + 1]) end
  return "0x" .. table.concat(s)
end

helpers.lab_describe("sonde ping -p PATTERN on the wire", function()
  local l

  setup(function()
    l = lab.chain{ routers = 1, v6 = true, name = "pingpat" }
    -- unprivileged ICMP: datagram sockets for every group
    l:sysctl("src", "net.ipv4.ping_group_range", "0 2147483647")
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  -- A fresh table of counters on r1 for the requests from src to dst of
  -- proto (icmp, udp) and family fam: c_all counts them, c_wN those whose
  -- payload window N holds pat.
  local function count_on_r1(proto, fam, pat)
    l:exec("r1", { "nft", "delete", "table", "inet", "sonde_pat" })
    local dst = fam == 4 and ("ip daddr " .. l.dst.v4) or ("ip6 daddr " .. l.dst.v6)
    local sel
    if proto == "udp" then
      sel = dst .. " meta l4proto udp"
    elseif fam == 4 then
      sel = dst .. " icmp type echo-request"
    else
      sel = dst .. " icmpv6 type echo-request"
    end
    local decl, rules = { "  counter c_all {}" }, { "    " .. sel .. " counter name c_all" }
    for w = 0, WINDOWS - 1 do
      decl[#decl + 1] = ("  counter c_w%d {}"):format(w)
      -- the transport header is 8 bytes (UDP; ICMP echo): 64 bits
      rules[#rules + 1] = ("    %s @th,%d,32 %s counter name c_w%d"):format(sel, 64 + 32 * w,
        window_value(pat, w), w)
    end
    l:nft("r1", ("table inet sonde_pat {\n%s\n  chain pat_fwd {\n"
      .. "    type filter hook forward priority 0; policy accept;\n%s\n  }\n}\n"):format(
      table.concat(decl, "\n"), table.concat(rules, "\n")))
  end

  -- The counters: packets counted by c_all, and the set of windows that
  -- every one of them filled with the pattern.
  local function read_r1()
    local out = l:check("r1", { "nft", "-j", "list", "counters", "table", "inet", "sonde_pat" })
    local n, full = {}, {}
    for _, item in ipairs(cjson.decode(out).nftables) do
      if item.counter then n[item.counter.name] = item.counter.packets end
    end
    for w = 0, WINDOWS - 1 do
      if n.c_all > 0 and n["c_w" .. w] == n.c_all then full[w] = true end
    end
    return n.c_all, full
  end

  local function sonde(args, who) return helpers.sonde_in(l, args, who) end

  for _, who in ipairs { "root", "nobody" } do
    for _, proto in ipairs { "icmp", "udp" } do
      for _, fam in ipairs { 4, 6 } do
        for _, pat in ipairs(PATTERNS) do
          it(("puts -p %s in every %s/IPv%d probe as %s, after the nonce, and matches the replies")
              :format(pat, proto, fam, who), function()
            local dst = helpers.addr(fam, l.dst)
            count_on_r1(proto, fam, pat)
            local out, err, code = sonde({ "ping", "--protocol", proto, "-p", pat, "-c", "3",
              "-i", "0.05", "-W", "2", dst }, who == "nobody" and helpers.AS_NOBODY or nil)
            assert.are.equal(0, code, err)
            local lines = lines_of(out)
            assert.are.equal("PATTERN: 0x" .. pat, lines[1])
            assert.matches("^PING " .. esc(dst), lines[2])
            assert.matches("^3 packets transmitted, 3 received, 0%% packet loss", lines[#lines - 1])
            local all, full = read_r1()
            assert.are.equal(3, all)
            -- window 0 is the nonce's; the pattern fills every other one
            assert.is_nil(full[0])
            for w = 1, WINDOWS - 1 do
              assert.is_true(full[w], ("window %d (bytes %d..%d)"):format(w, 4 * w, 4 * w + 3))
            end
          end)
        end
      end
    end
  end

  it("names the pattern in the JSON document, as hex bytes (-p abc: 0xab 0x0c)", function()
    count_on_r1("udp", 6, "ab0c")
    local out, err, code = sonde{ "ping", "--protocol", "udp", "-p", "ABC", "-c", "2", "-i", "0.05",
      "--format", "json", l.dst.v6 }
    assert.are.equal(0, code, err)
    local ok, why = schema.validate(out)
    assert.is_true(ok, why)
    local doc = cjson.decode(out)
    assert.are.equal("ab0c", doc.pattern)
    assert.are.same({ 2, 2 }, { doc.summary.sent, doc.summary.received })
    local all, full = read_r1()
    assert.are.equal(2, all)
    for w = 1, WINDOWS - 1 do assert.is_true(full[w], "window " .. w) end
  end)

  it("sends the pattern nowhere without -p (the counters can tell)", function()
    count_on_r1("icmp", 4, "ff")
    local _, err, code = sonde{ "ping", "-c", "2", "-i", "0.05", l.dst.v4 }
    assert.are.equal(0, code, err)
    local all, full = read_r1()
    assert.are.equal(2, all)
    assert.are.same({}, full)
  end)

  -- iputils ping writes its timestamp (16 bytes on 64-bit Linux) in the
  -- payload's first bytes and fills from byte 0 under it; sonde writes its
  -- 4-byte nonce there. Same phase, so windows past both agree.
  for _, fam in ipairs { 4, 6 } do
    it(("agrees with iputils ping -p on IPv%d but for the first 16 bytes"):format(fam), function()
      local dst = helpers.addr(fam, l.dst)
      local disagree = {}
      for _, pat in ipairs(PATTERNS) do
        count_on_r1("icmp", fam, pat)
        local iout, ierr, icode = l:exec("src", { "ping", "-p", pat, "-c", "2", "-i", "0.2",
          "-W", "2", dst })
        assert.are.equal(0, icode, ierr)
        local iall, ifull = read_r1()
        assert.are.equal(2, iall)
        count_on_r1("icmp", fam, pat)
        local out, err, code = sonde{ "ping", "-p", pat, "-c", "2", "-i", "0.2", dst }
        assert.are.equal(0, code, err)
        local all, full = read_r1()
        assert.are.equal(2, all)
        -- the first line is the same: PATTERN: 0x..
        assert.are.equal(lines_of(iout)[1], lines_of(out)[1])
        for w = 0, WINDOWS - 1 do
          if (full[w] or false) ~= (ifull[w] or false) then
            disagree[#disagree + 1] = ("%s:w%d(sonde %s, iputils %s)"):format(pat, w,
              tostring(full[w] or false), tostring(ifull[w] or false))
          end
        end
      end
      -- sonde has the pattern in bytes 4..15, iputils its timestamp: three
      -- windows per pattern, and no other disagreement.
      assert.are.equal(3 * #PATTERNS, #disagree, table.concat(disagree, " "))
      for _, d in ipairs(disagree) do
        assert.matches(":w[123]%(sonde true, iputils false%)$", d)
      end
      print(("\n  IPv%d sonde vs iputils -p, %d-byte payload, windows that differ: %s"):format(
        fam, SIZE, table.concat(disagree, " ")))
    end)
  end
end)
