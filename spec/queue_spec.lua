-- Engine:queue, the hand-over between a producer and a consumer coroutine
-- (trace's text output: hops pushed as they end, written by a consumer
-- that may wait for their names meanwhile).

local sonde = require "sonde"

describe("an engine queue", function()
  it("hands over every item in order when pushes and pops interleave", function()
    local eng = assert(sonde.engine{})
    local q, got = nil, {}
    eng:run(function()
      q = eng:queue()
      eng:spawn(function()
        for v in q.pop do
          got[#got + 1] = v
          -- a consumer that is busy now and then (as with a name lookup)
          if v % 3 == 0 then eng:sleep(0.002) end
        end
      end)
      for i = 1, 40 do
        q.push(i)
        if i % 7 == 0 then eng:sleep(0.005) end
      end
      q.close()
    end)
    eng:close()
    local want = {}
    for i = 1, 40 do want[i] = i end
    assert.are.same(want, got)
  end)

  it("gives what was pushed before close, then ends", function()
    local eng = assert(sonde.engine{})
    local got = {}
    eng:run(function()
      local q = eng:queue()
      q.push("a")
      q.push("b")
      q.close()
      for v in q.pop do got[#got + 1] = v end
    end)
    eng:close()
    assert.are.same({ "a", "b" }, got)
  end)
end)
