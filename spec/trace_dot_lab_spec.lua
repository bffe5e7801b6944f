-- trace --format dot: one target's graph as a document, several targets'
-- graphs one after the other (each trace a record of the sink).

local helpers = require "helpers"
local lab = require "lab"

helpers.lab_describe("sonde trace --format dot", function()
  local l

  setup(function()
    l = lab.chain{ routers = 1, v6 = false, name = "dot" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  it("draws one digraph for one target and one per target for several", function()
    local out, err, code = helpers.sonde_in(l, { "trace", "-n", "-q", "1", "--format", "dot", l.dst.v4 })
    assert.are.equal(0, code, err)
    local _, n = out:gsub("digraph ", "")
    assert.are.equal(1, n, out)
    assert.truthy(out:find(('"%s" -> "%s"'):format(l.hops[1].v4, l.dst.v4), 1, true), out)
    out, err, code = helpers.sonde_in(l, { "trace", "-n", "-q", "1", "--format", "dot", l.dst.v4, l.hops[1].v4 })
    assert.are.equal(0, code, err)
    _, n = out:gsub("digraph ", "")
    assert.are.equal(2, n, out)
    assert.matches('digraph "sonde trace ' .. l.hops[1].v4:gsub("%.", "%%.") .. '"', out)
    assert.matches("}\n$", out)
  end)
end)
