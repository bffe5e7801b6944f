-- The script state of the `sonde` executable: load, loadstring, loadfile
-- and dofile keep their Lua 5.1 / LuaJIT meaning (chunk names, an
-- environment argument, reader functions), text only.

local helpers = require "helpers"
local lab = require "lab"

local SCRIPT = [[
local env = { x = 42 }
local function check(what, got, want)
  if got ~= want then error(what .. ": got " .. tostring(got) .. ", want " .. tostring(want), 0) end
end
check("load with env", load("return x", "=c", "t", env)(), 42)
check("load with mode", load("return x", "=c", "t")(), nil)
check("load with a name", load("return x", "=c")(), nil)
check("load", load("return 1 + 1")(), 2)
check("loadstring", loadstring("return 3")(), 3)
check("three-part concatenation", load("return function(s) return '# ' .. tostring(s) .. '!' end",
  "@x", "t")()(5), "# 5!")
local path = arg[1]
check("loadfile with env", loadfile(path, "t", env)(), 42)
check("loadfile with mode", loadfile(path, "t")(), nil)
check("loadfile", loadfile(path)(), nil)
check("dofile", dofile(path), nil)
local parts, i = { "return ", "x" }, 0
check("load from a reader", load(function() i = i + 1 return parts[i] end, "=r", "t", env)(), 42)
local f, err = load("return (", "=broken")
check("syntax error", f, nil)
check("its message", err:match("^broken:1:") ~= nil, true)
f, err = load(string.dump(function() end))
check("bytecode", f, nil)
check("its message", err, "attempt to load chunk with wrong mode")
print("ok")
]]

describe("the sonde executable's script state", function()
  it("keeps the loaders' meanings, text only", function()
    local dir = helpers.temp_dir("sandbox", "755")
    local ok, e = pcall(function()
      lab.write_file(dir .. "/x.lua", "return x")
      lab.write_file(dir .. "/script.lua", SCRIPT)
      local out, err, code = helpers.run({ helpers.sonde(), "run", dir .. "/script.lua", dir .. "/x.lua" })
      assert.are.equal(0, code, err)
      assert.are.equal("ok\n", out)
    end)
    lab.run({ "rm", "-rf", dir })
    assert(ok, e)
  end)
end)
