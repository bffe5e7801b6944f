-- The JSON that sonde writes, validated against its schema: real output of
-- real runs (lab and loopback), and documents that must be rejected.

local helpers = require "helpers"
local lab = require "lab"
local schema = require "schema"

describe("the JSON schema", function()
  it("rejects a document with an unknown field, a wrong status or a null", function()
    local good = '{"type":"tcping","version":1,"target":"x","addr":"127.0.0.1","port":80,'
      .. '"attempts":[{"status":"timeout","seq":0,"ttl":64}],'
      .. '"summary":{"sent":1,"ok":0,"loss":100},"stop_reason":"done"}'
    assert.is_true(schema.validate(good))
    local bad = {
      good:gsub('"port":80', '"port":80,"extra":1'),
      good:gsub('"status":"timeout"', '"status":"lost"'),
      good:gsub('"addr":"127.0.0.1"', '"addr":null'),
      good:gsub('"addr":"127.0.0.1"', '"addr":"999.1.1.1"'),
      good:gsub('"status":"timeout"', '"status":"failed"'), -- failed needs error
    }
    for _, doc in ipairs(bad) do
      local ok, why = schema.validate(doc)
      assert.is_false(ok, doc)
      assert.truthy(why and #why > 0)
    end
  end)
end)

helpers.lab_describe("sonde's JSON output against the schema", function()
  local l

  setup(function()
    l = lab.chain{ routers = 3, silent = { 2 }, v6 = true, name = "schema" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function sonde(args)
    local argv = { helpers.sonde() }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return l:exec("src", argv)
  end

  for _, proto in ipairs{ "udp", "icmp", "tcp" } do
    for _, fam in ipairs{ 4, 6 } do
      it(("validates a %s/IPv%d trace with a silent hop"):format(proto, fam), function()
        local out, err, code = sonde{ "trace", "-n", "--protocol", proto, "--format", "json",
          fam == 4 and l.dst.v4 or l.dst.v6 }
        assert.are.equal(0, code, err)
        assert.is_true(schema.validate(out))
      end)
    end
  end

  it("validates traces that stop at max_ttl, on an error and with reverse names", function()
    for _, args in ipairs{
      { "trace", "-n", "-m", "1", "--format", "json", l.dst.v4 },
      { "trace", "-n", "--format", "json", "198.19.255.1" },
      { "trace", "-m", "2", "--format", "json", l.dst.v4 },
    } do
      local out = sonde(args)
      local ok, why = schema.validate(out)
      assert.is_true(ok, why)
    end
  end)

  it("validates ping documents with the payload sizes iputils takes (-s 1472, -s 8000)", function()
    for _, args in ipairs{
      { "ping", "-c", "1", "-s", "1472", "--format", "json", l.dst.v4 },
      { "ping", "-c", "1", "-s", "8000", "--format", "json", l.dst.v6 },
    } do
      local out, err, code = sonde(args)
      assert.are.equal(0, code, err)
      local ok, why = schema.validate(out)
      assert.is_true(ok, why)
    end
  end)

  it("validates tcping attempts of every kind", function()
    local peer = l:spawn("dst", { helpers.labpeer(), "echo", "-p", "7000", "-t", "20" })
    peer:wait_for("^ready$", 5)
    for _, args in ipairs{
      { "tcping", "-c", "2", "-i", "0", "--format", "json", l.dst.v4, "7000" },
      { "tcping", "-c", "1", "--payload", "hello", "--expect", "hello", "--format", "json", l.dst.v4, "7000" },
      { "tcping", "-c", "1", "-w", "0.3", "--expect", "never", "--format", "json", l.dst.v4, "7000" },
      { "tcping", "-c", "2", "-i", "0", "--format", "json", l.dst.v6, "9" },
    } do
      local out = sonde(args)
      local ok, why = schema.validate(out)
      assert.is_true(ok, why)
    end
    peer:stop()
  end)
end)
