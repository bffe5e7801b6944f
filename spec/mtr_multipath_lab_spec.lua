-- Multipath mtr over an ECMP diamond (spec/support/lab.lua's lab.diamond):
-- src — r1, which load-balances over r2 and r3 hashing L4 (addresses,
-- protocol, ports), which rejoin at r4 — dst. r2, and only r2, drops half
-- of the UDP probes that reach it (nftables numgen, in prerouting: those
-- that would expire there and those it would forward alike). Every flow of
-- `--strategy dublin` keeps its source port, so the kernel sends all of its
-- probes down one branch: flows through r2 lose about half their probes at
-- TTL 2 and beyond, flows through r3 lose none, and the hop-wide figure,
-- which mixes both, is neither.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

local ROUNDS = 40
local FLOWS = 8

-- r2 drops half of the probes (UDP to mtr's port 33434); the ICMP errors
-- that come back through it are left alone.
local LOSSY_BRANCH = [[
table inet sonde_branch {
  chain prerouting {
    type filter hook prerouting priority 0; policy accept;
    udp dport 33434 numgen random mod 2 == 0 counter drop
  }
}
]]

local function addr(fam, node) return fam == 4 and node.v4 or node.v6 end

helpers.lab_describe("sonde mtr --strategy dublin over an ECMP diamond with one lossy branch", function()
  local l

  setup(function()
    l = lab.diamond{ name = "mtrmp" }
    l:nft("r2", LOSSY_BRANCH)
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  -- The branch r1 sends a UDP flow from sport down: the kernel's own choice
  -- (`ip route get` hashes as forwarding does).
  local function branch_of(fam, sport)
    local out = l:check("r1", ("ip %s route get %s from %s iif to-src ipproto udp sport %d dport 33434")
      :format(fam == 6 and "-6" or "-4", addr(fam, l.dst), addr(fam, l.src), sport))
    local via = assert(out:match("via (%S+)"), out)
    for k, b in ipairs(l.branches) do
      if addr(fam, b) == via then return k end
    end
    error("no branch is " .. via)
  end

  local function mtr(args)
    local argv = { "mtr", "-n" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return helpers.sonde_in(l, argv)
  end

  for _, fam in ipairs{ 4, 6 } do
    it(("gives each flow its own loss at every hop over IPv%d: about half on the lossy branch, none on the other"):format(fam), function()
      local out, err, code = mtr{ "-u", "--strategy", "dublin", "--flows", FLOWS, "-c", ROUNDS,
        "-i", "0.05", "--wait", "2", "--format", "json", addr(fam, l.dst) }
      assert.are.equal(0, code, err)
      local ok, why = schema.validate(out)
      assert(ok, why)
      local doc = cjson.decode(out)
      assert.are.equal("dublin", doc.strategy)
      assert.are.equal(FLOWS, doc.flows)
      assert.are.equal(4, #doc.hops)
      -- which branch each flow takes, as the kernel hashes it
      local via, used = {}, {}
      for f, fl in ipairs(doc.hops[1].flows) do
        assert.are.equal(f, fl.flow)
        via[f] = branch_of(fam, fl.sport)
        used[via[f]] = true
      end
      assert.is_true(used[1] and used[2] or false,
        "the flows' source ports all hash to one branch: the spec cannot tell branches apart")

      local lossy_probes, lost = 0, 0
      for ttl, hop in ipairs(doc.hops) do
        assert.are.equal(ttl, hop.ttl)
        assert.are.equal(FLOWS, #hop.flows)
        local sent, received = 0, 0
        for f, fl in ipairs(hop.flows) do
          local where = ("TTL %d flow %d (branch %d)"):format(ttl, f, via[f])
          assert.are.equal(ROUNDS, fl.sent, where)
          sent, received = sent + fl.sent, received + fl.received
          if ttl == 1 or via[f] == 2 then
            assert.are.equal(0, fl.loss, where)
          else
            assert.is_true(fl.loss >= 20 and fl.loss <= 80, where .. ": loss " .. fl.loss)
            lossy_probes, lost = lossy_probes + fl.sent, lost + fl.sent - fl.received
          end
          if ttl == 2 then
            -- the flow's own path: the branch it hashes to answers it
            assert.are.equal(addr(fam, l.branches[via[f]]), fl.addr, where)
          elseif fl.received > 0 then
            assert.are.equal(addr(fam, l.hops[ttl][1]), fl.addr, where)
          end
          if fl.received > 0 then
            assert.is_true(fl.best <= fl.avg and fl.avg <= fl.worst, where)
          end
        end
        -- the hop's own figures are the sum of its flows'
        assert.are.equal(sent, hop.sent)
        assert.are.equal(received, hop.received)
      end
      assert.is_true(lossy_probes > 0)
    end)
  end

  it("shows each flow's figures under its hop in the report", function()
    local out, err, code = mtr{ "-r", "-u", "--strategy", "dublin", "--flows", FLOWS, "-c", 5,
      "-i", "0.05", "-o", "LSR", l.dst.v4 }
    assert.are.equal(0, code, err)
    local lines = helpers.lines(out)
    -- the header, then per hop its row and FLOWS flow lines (TTL 2: the
    -- second branch's address as well)
    local hop2
    for i, line in ipairs(lines) do
      if line:match("^%s+2%.|%-%- ") then hop2 = i end
    end
    assert(hop2, out)
    local seen = {}
    local i = hop2 + 1
    if lines[i]:match("`|%-%- ") then i = i + 1 end
    for f = 1, FLOWS do
      local n, host, loss, snt, rcv = lines[i + f - 1]:match("^    |  f(%d+) (%S+)%s+([%d.]+)%%%s+(%d+)%s+(%d+)$")
      assert(n, "flow line: " .. tostring(lines[i + f - 1]) .. "\n" .. out)
      assert.are.equal(f, tonumber(n))
      assert.are.equal(5, tonumber(snt))
      seen[host] = true
    end
    assert.is_true(seen[l.branches[1].v4] and seen[l.branches[2].v4] or false, out)
    -- the figures in the hop row's columns
    local function loss_end(line) return select(2, line:find("%d+%.%d%%")) end
    assert.are.equal(loss_end(lines[hop2]), loss_end(lines[i]), out)
  end)

  it("refuses --flows with another strategy and TCP flows, naming the option", function()
    local _, err, code = mtr{ "--strategy", "paris", "--flows", 4, "-c", 1, l.dst.v4 }
    assert.are.equal(2, code)
    assert.matches("--flows applies to --strategy dublin", err, 1, true)
    _, err, code = mtr{ "-T", "--strategy", "dublin", "-c", 1, l.dst.v4 }
    assert.are.equal(2, code)
    assert.matches("--strategy dublin takes UDP", err, 1, true)
  end)
end)
