-- The sonde executable: usage errors, exit codes, script errors. Nothing
-- here sends a probe.

local helpers = require "helpers"
local lab = require "lab"

local script = helpers.readable_file

local function sonde(argv)
  local parts = { lab.shquote(helpers.sonde()) }
  for _, a in ipairs(argv) do parts[#parts + 1] = lab.shquote(a) end
  return lab.run(table.concat(parts, " "))
end

describe("sonde trace given bad input", function()
  local cases = {
    { { "trace", "-m", "abc", "198.18.0.1" }, "sonde trace: %-m: invalid value 'abc' %(expected an integer from 1 to 255%)" },
    { { "trace", "-m", "0", "198.18.0.1" }, "%-m: invalid value '0'" },
    { { "trace", "-q", "11", "198.18.0.1" }, "%-q: invalid value '11'" },
    { { "trace", "--protocol", "sctp", "198.18.0.1" }, "%-%-protocol: invalid value 'sctp' %(expected one of: udp, icmp, tcp%)" },
    { { "trace", "-w", "x", "198.18.0.1" }, "%-w: invalid value 'x'" },
    { { "trace", "-w", "1,3,10,2", "198.18.0.1" }, "%-w: invalid value '1,3,10,2' %(MIN must not be above MAX%)" },
    { { "trace", "--port", "70000", "198.18.0.1" }, "%-%-port: invalid value '70000'" },
    { { "trace", "--bogus", "198.18.0.1" }, "unknown option '%-%-bogus'" },
    { { "trace" }, "missing TARGET" },
    { { "trace", "-4", "-6", "198.18.0.1" }, "%-4 and %-6 cannot be used together" },
    { { "trace", "-6", "198.18.0.1" }, "198%.18%.0%.1 is an IPv4 address, but %-6 was given" },
    { { "trace", "-f", "9", "-m", "3", "198.18.0.1" }, "%-f 9 is above %-m 3" },
    { { "trace", "--retry", "/nonexistent/rule.lua", "198.18.0.1" }, "%-%-retry: cannot open /nonexistent/rule%.lua" },
    { { "nosuchcommand" }, "unknown command 'nosuchcommand'" },
  }
  for _, c in ipairs(cases) do
    it("exits 2 naming the problem: sonde " .. table.concat(c[1], " "), function()
      local out, err, code = sonde(c[1])
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.matches(c[2], err)
    end)
  end
end)

describe("the sonde executable", function()
  it("prints its version and the versions of LuaJIT and libuv", function()
    local out, _, code = sonde{ "--version" }
    assert.are.equal(0, code)
    assert.matches("^sonde %d+%.%d+%.%d+ %(LuaJIT [^,]+, libuv %d+%.%d+", out)
  end)

  it("lists the bundled commands", function()
    local out, _, code = sonde{ "list" }
    assert.are.equal(0, code)
    assert.matches("trace%s+print the route packets take to a host", out)
  end)

  it("documents every trace option in sonde help trace", function()
    local out, _, code = sonde{ "help", "trace" }
    assert.are.equal(0, code)
    for _, opt in ipairs{ "--protocol", "-4", "-6", "--first-ttl", "--max-ttl", "--queries",
        "--wait", "--port", "--sport", "--format", "Exit status" } do
      assert.truthy(out:find(opt, 1, true), "help lacks " .. opt)
    end
  end)

  it("runs a user's script with its arguments (sonde run)", function()
    local path = script("local a, b = ...\nio.write(a, '+', b, '\\n')\nreturn 7\n")
    local out, _, code = sonde{ "run", path, "x", "y" }
    os.remove(path)
    assert.are.equal(7, code)
    assert.are.equal("x+y\n", out)
  end)

  it("gives a script error a traceback with file:line and exit 3", function()
    local path = script([[
local sonde = require "sonde"
local eng = sonde.engine()
eng:run(function()
  eng:sleep(0.001)
  error("boom in a coroutine")
end)
]])
    local out, err, code = sonde{ "run", path }
    os.remove(path)
    assert.are.equal(3, code)
    assert.are.equal("", out)
    assert.matches(path:gsub("%p", "%%%0") .. ":5: boom in a coroutine", err)
    assert.matches("stack traceback", err)
  end)
end)
