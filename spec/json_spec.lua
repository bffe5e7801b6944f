-- sonde.json writes every JSON document sonde prints: byte for byte stable
-- text (keys sorted, "type" and "version" first), explicit arrays, strings
-- escaped as RFC 8259 requires and nothing else touched. No network.

local json = require "sonde.json"
local cjson = require "cjson"

describe("sonde.json.encode", function()
  it("puts type and version first, then the keys in byte order", function()
    assert.are.equal('{"type":"trace","version":1,"Z":0,"a":1,"a_b":2,"ab":3,"b":{"x":[],"y":{}}}',
      json.encode{ b = { y = {}, x = json.array{} }, ab = 3, a_b = 2, a = 1, Z = 0,
        version = 1, type = "trace" })
    assert.are.equal('{"version":2,"a":true}', json.encode{ a = true, version = 2 })
    assert.are.equal('{"type":"x"}', json.encode{ type = "x" })
  end)

  it("writes a marked list as an array, empty or not, and a plain list as one too", function()
    assert.are.equal("[]", json.encode(json.array{}))
    assert.are.equal("{}", json.encode{})
    assert.are.equal('[1,"a",[],{"k":false}]', json.encode{ 1, "a", json.array{}, { k = false } })
  end)

  it("escapes quotes, backslashes and control characters, and nothing else", function()
    assert.are.equal('"plain 198.18.0.2"', json.encode("plain 198.18.0.2"))
    assert.are.equal([["a\"b\\c/d"]], json.encode('a"b\\c/d'))
    assert.are.equal([["\b\f\n\r\t\u0000\u0001\u001f\u007f"]],
      json.encode("\b\f\n\r\t\0\1\31\127"))
    assert.are.equal([["del\u007f"]], json.encode("del\127"))
    assert.are.equal([["tab\t"]], json.encode("tab\t"))
    -- UTF-8 (and any byte above 127) passes as it is
    assert.are.equal('"h\195\169 \226\130\172"', json.encode("h\195\169 \226\130\172"))
    -- in keys too
    assert.are.equal('{"a\\"b":1,"line\\n":2}', json.encode{ ['a"b'] = 1, ["line\n"] = 2 })
    for _, s in ipairs{ "", "x", "\"", "\\", "a\0b", ("q"):rep(300) .. "\n", "\127\128\255" } do
      assert.are.equal(s, cjson.decode(json.encode{ s = s }).s)
    end
  end)

  it("writes integers without a fraction and other numbers with 9 digits", function()
    assert.are.equal("[0,-3,64,4294967295,9007199254740991,1.5e-07,0.123456789,9.00719925e+15]",
      json.encode{ 0, -3, 64, 4294967295, 2^53 - 1, 1.5e-7, 0.1234567891, 2^53 })
  end)

  it("refuses what JSON cannot say, naming it", function()
    for _, c in ipairs{ { 0 / 0, "cannot encode nan" }, { math.huge, "cannot encode inf" },
                        { -math.huge, "cannot encode -inf" } } do
      local v, msg = c[1], c[2]
      local ok, err = pcall(json.encode, { x = v })
      assert.is_false(ok)
      assert.are.equal("sonde.json: " .. msg, err)
    end
    local ok, err = pcall(json.encode, { [true] = 1 })
    assert.is_false(ok)
    assert.are.equal("sonde.json: object key of type boolean", err)
    ok, err = pcall(json.encode, { f = print })
    assert.is_false(ok)
    assert.are.equal("sonde.json: cannot encode a function", err)
  end)

  it("gives the same text after a refusal and for documents of any size", function()
    local small = { type = "t", version = 1, hops = json.array{ { ttl = 1 } } }
    local want = '{"type":"t","version":1,"hops":[{"ttl":1}]}'
    assert.are.equal(want, json.encode(small))
    assert.is_false(pcall(json.encode, { json.array{ 1, 2, 3 }, { [1.5] = 0 } }))
    assert.are.equal(want, json.encode(small))
    local big = json.array{}
    for i = 1, 5000 do big[i] = { i = i, s = "x" } end
    local text = json.encode(big)
    assert.are.equal(5000, #cjson.decode(text))
    assert.are.equal('{"i":5000,"s":"x"}]', text:sub(-19))
    assert.are.equal(want, json.encode(small))
  end)
end)

describe("sonde.json.encode_into", function()
  it("appends the pieces of the same text to a list, and says how many it holds", function()
    local v = { type = "trace", version = 1, hops = json.array{ { ttl = 1, rtt = 0.25 } } }
    local out = { "prefix " }
    local n = json.encode_into(v, out, 1)
    out[n + 1] = "\n"
    assert.are.equal("prefix " .. json.encode(v) .. "\n", table.concat(out, "", 1, n + 1))
  end)
end)
