-- sonde.campaign's tally: the exit status and the end's lines on standard
-- error of the commands on sonde.kit (ping's rule, trace's, sweep's).

local campaign = require "sonde.campaign"

-- A ctx whose stderr collects what is written.
local function ctx()
  local lines = {}
  return { stderr = { write = function(_, ...)
    for _, s in ipairs{ ... } do lines[#lines + 1] = s end
  end } }, function() return table.concat(lines) end
end

local ERR = { name = "ENETUNREACH", message = "network is unreachable" }

describe("sonde.campaign.tally", function()
  describe("every target must answer (ping, tcping, mtr, mda)", function()
    it("is 1 when one did not, with the count line after the rest", function()
      local t = campaign.tally("ping", "targets answered")
      t:add(true, "a")
      t:add(false, "b")
      local c, err = ctx()
      assert.are.equal(1, t:status(c, nil, true))
      assert.are.equal("sonde ping: 1 of 2 targets answered\n", err())
    end)
    it("is 3 with the error, and no count line, when every target failed locally", function()
      local t = campaign.tally("ping", "targets answered")
      t:add(false, "a", ERR)
      t:add(false, "b", ERR)
      local c, err = ctx()
      assert.are.equal(3, t:status(c, nil, true))
      assert.are.equal("sonde ping: ENETUNREACH: network is unreachable\n", err())
    end)
    it("is the signal's, saying nothing", function()
      local t = campaign.tally("ping", "targets answered")
      t:add(true, "a")
      local c, err = ctx()
      assert.are.equal(143, t:status(c, "SIGTERM", true))
      assert.are.equal("", err())
    end)
  end)

  describe("errors explained per target (trace)", function()
    local function traces(n_ok, n_failed, total)
      local t = campaign.tally("trace", "targets reached", { explained = "traces" })
      for _ = 1, n_ok do t:add(true) end
      for _ = 1, n_failed do t:add(false, nil, ERR) end
      t.total = total
      return t
    end
    it("counts the errors past the first three, then the targets, even when interrupted", function()
      local t = traces(1, 4, 10)
      local c, err = ctx()
      assert.are.equal(130, t:status(c, "SIGINT", true))
      assert.are.equal("sonde trace: ... 4 traces stopped on an error in all\n"
        .. "sonde trace: 1 of 10 targets reached\n", err())
    end)
    it("is 3 when every trace stopped on an error, repeating none", function()
      local t = traces(0, 2, 2)
      local c, err = ctx()
      assert.are.equal(3, t:status(c, nil, true))
      assert.are.equal("sonde trace: 0 of 2 targets reached\n", err())
    end)
    it("counts the targets not run as not reached", function()
      local t = traces(2, 0, 3)
      local c = ctx()
      assert.are.equal(1, t:status(c, nil, false))
      assert.are.equal(0, traces(3, 0, 3):status(c, nil, false))
    end)
    it("says nothing at all when quiet (nobody reads the output)", function()
      local t = traces(0, 5, 5)
      local c, err = ctx()
      assert.are.equal(3, t:status(c, nil, true, true))
      assert.are.equal("", err())
    end)
  end)

  describe("any target answering will do (sweep)", function()
    local function sweep(done, alive, failed, err)
      local t = campaign.tally("sweep", "targets alive", { any = true, failed = "every probe failed" })
      t:sum(done, alive, failed, err)
      t.line = "summary"
      return t
    end
    it("is 0 when one is alive, after its line", function()
      local c, err = ctx()
      assert.are.equal(0, sweep(256, 1, 0):status(c, nil, true))
      assert.are.equal("sonde sweep: summary\n", err())
    end)
    it("is 1 when none is", function()
      local c = ctx()
      assert.are.equal(1, sweep(256, 0, 3, ERR):status(c, nil, false))
    end)
    it("is 3 when every probe failed locally, the line first", function()
      local c, err = ctx()
      assert.are.equal(3, sweep(4, 0, 4, ERR):status(c, nil, true))
      assert.are.equal("sonde sweep: summary\n"
        .. "sonde sweep: every probe failed: ENETUNREACH: network is unreachable\n", err())
    end)
    it("is the signal's, after its line", function()
      local c, err = ctx()
      assert.are.equal(129, sweep(4, 2, 0):status(c, "SIGHUP", true))
      assert.are.equal("sonde sweep: summary\n", err())
    end)
  end)
end)
