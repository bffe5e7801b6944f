-- core.probe_fields and core.engine_fields: the schemas the bindings read
-- the option tables with, as Lua sees them. Each entry's range and default
-- is what e:probe{} and core.engine{} actually accept (loopback only; every
-- probe is cancelled before it is sent).

local core = require "sonde.core"

local function by_name(list)
  local t = {}
  for _, f in ipairs(list) do t[f.name] = f end
  return t
end

local BASE = { dst = "127.0.0.1", proto = "udp" }

local function spec_with(name, value)
  local s = { dst = BASE.dst, proto = BASE.proto }
  s[name] = value
  -- fields the schema ties to tcp or to IPv6
  local f = by_name(core.probe_fields)[name]
  if f and f.only == "tcp" then s.proto = "tcp" end
  if f and f.only == "ipv6" then s.dst = "::1" end
  return s
end

describe("core.probe_fields", function()
  local eng
  before_each(function() eng = assert(core.engine()) end)
  after_each(function() eng:close() end)

  -- true, or false and the error raised or returned
  local function accepts(spec)
    local ok, id, msg = pcall(eng.probe, eng, spec, function() end)
    if ok and id then
      eng:cancel(id)
      return true
    end
    return false, ok and msg or id
  end

  it("lists every field e:probe accepts, each with a type and help", function()
    local fields = core.probe_fields
    assert.is_true(#fields >= 19)
    for _, f in ipairs(fields) do
      assert.is_string(f.name)
      assert.is_string(f.type)
      assert.is_string(f.help)
    end
    local ok, err = accepts(spec_with("not_a_field", 1))
    assert.is_false(ok)
    assert.matches("probe: unknown field 'not_a_field'", err)
  end)

  it("gives ranges that are exactly the accepted ones, and names the field beyond them", function()
    local checked = 0
    for _, f in ipairs(core.probe_fields) do
      if f.type == "integer" or f.type == "number" then
        assert.is_true(accepts(spec_with(f.name, f.min)), f.name .. " at its min")
        assert.is_true(accepts(spec_with(f.name, f.max)), f.name .. " at its max")
        local ok, err = accepts(spec_with(f.name, f.max + 1))
        assert.is_false(ok, f.name .. " over its max")
        assert.matches("field '" .. f.name .. "' must be from", err)
        ok, err = accepts(spec_with(f.name, f.min - 1))
        assert.is_false(ok, f.name .. " under its min")
        assert.matches("field '" .. f.name .. "'", err)
        checked = checked + 1
      elseif f.type == "string" then
        assert.is_true(accepts(spec_with(f.name, string.rep("x", f.max))), f.name .. " at its max")
        local ok, err = accepts(spec_with(f.name, string.rep("x", f.max + 1)))
        assert.is_false(ok, f.name .. " over its max")
        assert.matches("field '" .. f.name .. "' is longer than " .. f.max .. " bytes", err)
        checked = checked + 1
      end
    end
    assert.is_true(checked >= 14)
  end)

  it("gives the defaults a probe gets when the field is absent", function()
    local f = by_name(core.probe_fields)
    assert.are.equal(64, f.ttl.default)
    assert.are.equal(33434, f.dport.default)
    assert.are.equal(80, f.dport.default_tcp)
    local seen = {}
    for _, proto in ipairs { "udp", "tcp" } do
      local id = eng:probe({ dst = "127.0.0.1", proto = proto }, function(r) seen[proto] = r end)
      eng:cancel(id)
    end
    assert.are.equal(f.ttl.default, seen.udp.ttl)
    assert.are.equal(f.dport.default, seen.udp.dport)
    assert.are.equal(f.dport.default_tcp, seen.tcp.dport)
  end)

  it("lists the values of a choice, every one accepted", function()
    local f = by_name(core.probe_fields)
    assert.are.same({ "icmp", "udp", "tcp" }, f.proto.values)
    assert.is_true(f.proto.required)
    for _, v in ipairs(f.bind.values) do
      assert.is_true(accepts(spec_with("bind", v)), v)
    end
    local ok, err = accepts(spec_with("bind", "nope"))
    assert.is_false(ok)
    assert.matches("field 'bind' has an invalid value 'nope'", err)
  end)

  it("takes a pattern of 1 to 16 bytes in hex digits, and names the field otherwise", function()
    local f = by_name(core.probe_fields).pattern
    assert.are.equal("hex", f.type)
    assert.are.equal(16, f.max)
    assert.are.equal("udp,icmp", f.only)
    for _, v in ipairs { "ff", "00", "0123456789abcdefFEDCBA9876543210" } do
      assert.is_true(accepts { dst = "127.0.0.1", proto = "icmp", pattern = v }, v)
      assert.is_true(accepts { dst = "::1", proto = "udp", pattern = v }, v)
    end
    local bad = { "", "f", "fff", "zz", "0x", "ff ", string.rep("ab", 17), 255 }
    for _, v in ipairs(bad) do
      local ok, err = accepts { dst = "127.0.0.1", proto = "icmp", pattern = v }
      assert.is_false(ok, tostring(v))
      assert.matches("field 'pattern'", err, 1, true)
    end
    local ok, err = accepts { dst = "127.0.0.1", proto = "icmp", pattern = "zz" }
    assert.matches("probe: field 'pattern' must be pairs of hex digits, 1 to 16 bytes (got 'zz')", err, 1, true)
    ok, err = accepts { dst = "127.0.0.1", proto = "tcp", pattern = "ff" }
    assert.is_false(ok)
    assert.matches("field 'pattern' is for proto 'udp' and 'icmp'", err, 1, true)
    ok, err = accepts { dst = "127.0.0.1", proto = "udp", fill = 1, pattern = "ff" }
    assert.is_false(ok)
    assert.matches("without 'fill'", err, 1, true)
  end)

  it("takes true, false and \"probe\" (DF under the device MTU only), and says so", function()
    local f = by_name(core.probe_fields).df
    assert.are.equal("boolean", f.type)
    assert.are.same({ "probe" }, f.values)
    assert.matches("probe", f.help)
    for _, v in ipairs{ true, false, "probe" } do
      assert.is_true(accepts(spec_with("df", v)), tostring(v))
    end
    local ok, err = accepts(spec_with("df", "maybe"))
    assert.is_false(ok)
    assert.matches("field 'df'", err)
  end)
end)

describe("core.engine_fields", function()
  it("gives ranges that are exactly the accepted ones", function()
    for _, f in ipairs(core.engine_fields) do
      if f.type == "integer" or f.type == "number" then
        local e = assert(core.engine { [f.name] = f.max })
        e:close()
        assert.has_error(function() core.engine { [f.name] = f.max + 1 } end)
      end
    end
  end)

  it("bounds the engine's default wait as a probe's own wait: an hour", function()
    assert.are.equal(3600, by_name(core.engine_fields).wait.max)
    assert.are.equal(3600, by_name(core.probe_fields).wait.max)
  end)
end)
