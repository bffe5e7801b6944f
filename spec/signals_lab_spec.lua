-- Ending early: SIGINT and SIGTERM give the partial result and the right
-- exit status within a fraction of a second; a closed stdout ends quietly.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

helpers.lab_describe("sonde interrupted", function()
  local l

  setup(function()
    -- Hops 2 and 3 silent, and a destination that does not exist: a trace
    -- that would wait its full -w 5 for most probes.
    l = lab.chain{ routers = 3, silent = { 2, 3 }, v6 = false, name = "signals" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  for _, sig in ipairs{ { "INT", 130 }, { "TERM", 143 } } do
    it(("by SIG%s writes what it has with stop_reason interrupted and exits %d"):format(sig[1], sig[2]), function()
      local p = l:spawn("src", { helpers.sonde(), "trace", "-n", "-m", "10", "--format", "json", "198.18.3.9" })
      local pid = assert(p:command_pid(5))
      lab.sleep(0.4)
      assert(os.execute("kill -" .. sig[1] .. " " .. pid) == 0)
      local code = p:wait(2)
      assert.are.equal(sig[2], code)
      local out, err = p:output()
      assert.are.equal("", err)
      local t = cjson.decode(out)
      assert.are.equal("interrupted", t.stop_reason)
      assert.is_false(t.reached)
      assert.are.equal(l.hops[1].v4, t.hops[1].probes[1].addr)
      assert.is_true(t.duration < 1.5, "took " .. t.duration)
    end)
  end

  it("prints the hops it finished in text, then 'trace interrupted'", function()
    local p = l:spawn("src", { helpers.sonde(), "trace", "-n", "-m", "10", "198.18.3.9" })
    local pid = assert(p:command_pid(5))
    lab.sleep(0.4)
    assert(os.execute("kill -INT " .. pid) == 0)
    assert.are.equal(130, p:wait(2))
    local out = p:output()
    assert.matches("^trace to 198%.18%.3%.9", out)
    assert.matches("\n 1  " .. l.hops[1].v4:gsub("%.", "%%.") .. "  ", out)
    assert.matches("trace interrupted\n$", out)
  end)

  it("ends quietly when its output pipe closes (never dies of SIGPIPE)", function()
    local out, err, code = l:exec("src", "bash -c " .. lab.shquote("set -o pipefail; "
      .. helpers.sonde() .. " trace -n " .. l.dst.v4 .. " | head -c 10"))
    assert.are.equal(0, code)
    assert.are.equal("trace to 1", out)
    assert.are.equal("", err)
  end)
end)
