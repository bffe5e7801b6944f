-- sonde run with scripts that never end, or misbehave: clear messages and
-- the right exit status, within bounded time.

local helpers = require "helpers"
local lab = require "lab"

local script = helpers.readable_file

local function sonde(argv)
  local parts = { lab.shquote(helpers.sonde()) }
  for _, a in ipairs(argv) do parts[#parts + 1] = lab.shquote(a) end
  local t0 = os.time()
  local out, err, code = lab.run(table.concat(parts, " "))
  return out, err, code, os.time() - t0
end

describe("sonde run --timeout", function()
  it("ends interpreted Lua with 'exceeded its time limit', status 3, and a traceback", function()
    -- debug.getinfo is not compiled by LuaJIT: the loop stays in the
    -- interpreter, where the deadline's hook runs.
    local path = script("local g = debug.getinfo\nfor i = 1, 1e12 do g(1, 'l') end\n")
    local _, err, code, took = sonde{ "run", "--timeout", "1", path }
    os.remove(path)
    assert.are.equal(3, code)
    assert.matches("script exceeded its time limit %(%-%-timeout%)", err)
    assert.matches(":2: in main chunk", err)
    assert.is_true(took <= 3, "took " .. took .. " s")
  end)

  it("ends a compiled loop that runs no more hooks a second later, with a message", function()
    local path = script("local n = 0\nwhile true do n = n + 1 end\n")
    local _, err, code, took = sonde{ "run", "--timeout=1", path }
    os.remove(path)
    assert.are.equal(3, code)
    assert.matches("exceeded %-%-timeout and did not stop", err)
    assert.is_true(took <= 4, "took " .. took .. " s")
  end)

  it("ends a script that waits for something that does not come", function()
    local path = script('local sonde = require "sonde"\nlocal e = sonde.engine()\n'
      .. 'e:run(function() e:sleep(600) end)\n')
    local _, err, code, took = sonde{ "run", "--timeout", "1", path }
    os.remove(path)
    assert.are.equal(3, code)
    assert.matches("%-%-timeout", err)
    assert.is_true(took <= 4, "took " .. took .. " s")
  end)

  it("rejects a timeout that is not whole seconds, naming it", function()
    local _, err, code = sonde{ "run", "--timeout", "0.5", "x.lua" }
    assert.are.equal(2, code)
    assert.matches("%-%-timeout: invalid value '0%.5'", err)
  end)
end)

describe("sonde run given a script that misbehaves", function()
  it("reports a yield outside any engine as an error, status 3", function()
    local path = script("coroutine.yield(5)\n")
    local _, err, code = sonde{ "run", path }
    os.remove(path)
    assert.are.equal(3, code)
    assert.matches("attempt to yield across C%-call boundary", err)
  end)

  it("reports a syntax error with file and line, status 3", function()
    local path = script("local x = \n")
    local _, err, code = sonde{ "run", path }
    os.remove(path)
    assert.are.equal(3, code)
    assert.matches(":2: unexpected symbol near '<eof>'", err)
  end)

  it("reports a script that returns something that is not a status", function()
    local path = script("return {}\n")
    local _, err, code = sonde{ "run", path }
    os.remove(path)
    assert.are.equal(3, code)
    assert.truthy(#err > 0)
  end)
end)
