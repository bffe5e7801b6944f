-- The fuzz targets (spec/fuzz/) over their seed corpus, on every run of the
-- specs: each seed is one input, run once (what `make fuzz` mutates from),
-- under the fuzzers' own ASan + UBSan build. A parser that reads out of
-- bounds, or reports what the bytes do not say, on any seed fails here
-- without waiting for a fuzzing session to find it.
local helpers = require "helpers"

local function seeds()
  local dir = helpers.root() .. "/spec/fuzz/corpus"
  local p = assert(io.popen("ls '" .. dir .. "'"))
  local list = {}
  for name in p:lines() do list[#list + 1] = "'" .. dir .. "/" .. name .. "'" end
  p:close()
  return list
end

describe("the fuzz targets over the seed corpus", function()
  local list = seeds()

  it("has seeds of every parser: ICMP of both families and raw TCP segments", function()
    local joined = table.concat(list, " ")
    assert.matches("/v4%-", joined)
    assert.matches("/v6%-", joined)
    assert.matches("/syn%-v4%-", joined)
    assert.matches("/syn%-v6%-", joined)
  end)

  for _, target in ipairs{ "fuzz_packet", "fuzz_quote", "fuzz_syn" } do
    it(("runs %s on each seed without a finding"):format(target), function()
      local exe = helpers.build() .. "/fuzz/" .. target
      assert.truthy(io.open(exe, "r"), exe .. " is not built (make test-tools)")
      local p = assert(io.popen(("'%s' -runs=1 %s 2>&1; echo \"exit=$?\""):format(
        exe, table.concat(list, " "))))
      local out = p:read("*a")
      p:close()
      assert.matches("exit=0\n$", out, out)
      local _, ran = out:gsub("Executed [^\n]* in %d+ ms", "")
      assert.are.equal(#list, ran, out)
    end)
  end
end)
