-- sonde.args: the option parser every bundled command uses.

local args = require "sonde.args"

local function wait_triple(v)
  local t = {}
  for part in (v .. ","):gmatch("([^,]*),") do
    local n = tonumber(part)
    if not n or n < 0 then return nil, "expected MAX[,HERE,NEAR], seconds >= 0" end
    t[#t + 1] = n
  end
  if #t > 3 then return nil, "at most three numbers" end
  return t
end

local function trace_spec()
  return {
    name = "trace",
    summary = "print the route packets take to a host",
    usage = "sonde trace [options] TARGET",
    description = [[
      Sends probes with increasing TTL towards TARGET and prints, for each
      hop, who answered and how long it took.

      A hop where nobody answers is printed as stars, like traceroute(8).

          sonde trace -n 198.18.8.2
    ]],
    options = {
      { "-p", "--protocol", arg = "PROTO", choices = { "udp", "icmp", "tcp" }, default = "udp",
        help = "probe protocol" },
      { "-f", "--first-ttl", arg = "N", type = "int", min = 1, max = 255, default = 1,
        help = "TTL of the first hop" },
      { "-m", "--max-ttl", arg = "N", type = "int", min = 1, max = 255, default = 30,
        help = "maximum number of hops" },
      { "-w", "--wait", arg = "MAX[,HERE,NEAR]", type = "string", default = "5,3,10",
        check = wait_triple, help = "how long to wait for a reply, in seconds" },
      { "-4", key = "ipv4", flag = true, help = "use IPv4" },
      { "-6", key = "ipv6", flag = true, help = "use IPv6" },
      { "-n", key = "numeric", flag = true, help = "print addresses, not names" },
      { nil, "--sport", arg = "PORT", type = "int", min = 1, max = 65535,
        help = "source port" },
      { "-q", "--queries", arg = "N", type = "int", min = 1, max = 10, default = 3 },
      { nil, "--rate", arg = "PPS", type = "number", min = 0, help = "probes per second" },
      { nil, "--offset", arg = "N", type = "int", help = "a signed number" },
      { "-v", "--verbose", count = true, help = "say more" },
      { "-o", "--output", arg = "FILE", help = "write to FILE" },
      { nil, "--via", arg = "HOP", list = true, help = "a hop to go through" },
    },
    positionals = { { name = "TARGET", required = true, help = "host name or address" } },
    exclusive = { { "ipv4", "ipv6" } },
    examples = { "sonde trace -n 198.18.8.2", "sonde trace -p tcp --sport 443 example.net" },
  }
end

local spec

before_each(function() spec = trace_spec() end)

local function parse(...)
  return args.parse(spec, { ... })
end

describe("sonde.args", function()
  it("creates no global when loaded and used", function()
    local before = {}
    for k in pairs(_G) do before[k] = true end
    package.loaded["sonde.args"] = nil
    local fresh = require "sonde.args"
    fresh.parse(trace_spec(), { "-n4m5", "--rate=2.5", "x" })
    fresh.parse(trace_spec(), { "--bogus" })
    fresh.help(trace_spec())
    for k in pairs(_G) do
      assert.is_true(before[k], "new global '" .. tostring(k) .. "'")
    end
  end)
end)

describe("a command line without options", function()
  it("gives every option its default", function()
    local o = assert(parse("198.18.8.2"))
    assert.equal("udp", o.protocol)
    assert.equal(30, o.max_ttl)
    assert.equal(3, o.queries)
    assert.equal(1, o.first_ttl)
  end)

  it("sets flags to false and counts to 0", function()
    local o = assert(parse("x"))
    assert.is_false(o.ipv4)
    assert.is_false(o.numeric)
    assert.equal(0, o.verbose)
  end)

  it("leaves an option without default nil", function()
    local o = assert(parse("x"))
    assert.is_nil(o.sport)
    assert.is_nil(o.rate)
  end)

  it("gives a list option an empty list", function()
    assert.same({}, assert(parse("x")).via)
  end)

  it("turns the string default of a list option into a one-element list", function()
    spec.options[#spec.options].default = "hop1"
    assert.same({ "hop1" }, assert(parse("x")).via)
  end)

  it("runs a string default through the check, like a given value", function()
    assert.same({ 5, 3, 10 }, assert(parse("x")).wait)
  end)

  it("does not share a list default between parses", function()
    spec.options[#spec.options].default = { "a" }
    local one = assert(parse("x"))
    table.insert(one.via, "b")
    assert.same({ "a" }, assert(parse("x")).via)
  end)
end)

describe("option keys", function()
  it("are the long name without dashes, '-' turned into '_'", function()
    assert.equal(7, assert(parse("--max-ttl", "7", "x")).max_ttl)
  end)

  it("are the explicit key when one is given", function()
    assert.is_true(assert(parse("-4", "x")).ipv4)
  end)

  it("are the short letter when there is no long name", function()
    local s = { name = "t", options = { { "-x", flag = true } } }
    assert.is_true(assert(args.parse(s, { "-x" })).x)
  end)
end)

describe("an option value", function()
  it("may follow as the next word: -m 5", function()
    assert.equal(5, assert(parse("-m", "5", "x")).max_ttl)
  end)

  it("may be glued to the short option: -m5", function()
    assert.equal(5, assert(parse("-m5", "x")).max_ttl)
  end)

  it("may follow the long option: --max-ttl 5", function()
    assert.equal(5, assert(parse("--max-ttl", "5", "x")).max_ttl)
  end)

  it("may be attached with '=': --max-ttl=5", function()
    assert.equal(5, assert(parse("--max-ttl=5", "x")).max_ttl)
  end)

  it("may be a negative number: --offset -1", function()
    assert.equal(-1, assert(parse("--offset", "-1", "x")).offset)
  end)

  it("may be a negative number glued to the short option", function()
    local o, err = parse("-m-1", "x")
    assert.is_nil(o)
    assert.equal("sonde trace: -m: invalid value '-1' (expected an integer from 1 to 255)", err)
  end)

  it("may start with '-' when written with '=': --output=-x", function()
    assert.equal("-x", assert(parse("--output=-x", "x")).output)
  end)

  it("may be a lone '-' (standard output)", function()
    assert.equal("-", assert(parse("-o", "-", "x")).output)
  end)

  it("keeps the last one when the option is repeated", function()
    assert.equal(9, assert(parse("-m", "5", "-m", "9", "x")).max_ttl)
  end)

  it("is required: 'option -m needs a value (N)'", function()
    local o, err = parse("x", "-m")
    assert.is_nil(o)
    assert.equal("sonde trace: option -m needs a value (N)", err)
  end)

  it("is not taken from a following option", function()
    local o, err = parse("-m", "-n", "x")
    assert.is_nil(o)
    assert.equal("sonde trace: option -m needs a value (N)", err)
  end)

  it("is missing under the long name when the long form was used", function()
    local _, err = parse("x", "--max-ttl")
    assert.equal("sonde trace: option --max-ttl needs a value (N)", err)
  end)

  it("may be empty with '=', and is then checked like any other", function()
    local _, err = parse("--max-ttl=", "x")
    assert.equal("sonde trace: --max-ttl: invalid value '' (expected an integer from 1 to 255)", err)
  end)
end)

describe("an integer option", function()
  it("rejects 'abc' naming the option and the value", function()
    local o, err = parse("-m", "abc", "x")
    assert.is_nil(o)
    assert.equal("sonde trace: -m: invalid value 'abc' (expected an integer from 1 to 255)", err)
  end)

  it("names the long option when the long form was used", function()
    local _, err = parse("--max-ttl", "abc", "x")
    assert.equal("sonde trace: --max-ttl: invalid value 'abc' (expected an integer from 1 to 255)", err)
  end)

  it("rejects '1.5'", function()
    local _, err = parse("-m", "1.5", "x")
    assert.equal("sonde trace: -m: invalid value '1.5' (expected an integer from 1 to 255)", err)
  end)

  it("rejects hexadecimal '0x10': integers are decimal only", function()
    local _, err = parse("-m", "0x10", "x")
    assert.equal("sonde trace: -m: invalid value '0x10' (expected an integer from 1 to 255)", err)
  end)

  it("rejects '1e2' and ' 5'", function()
    assert.is_nil((parse("-m", "1e2", "x")))
    assert.is_nil((parse("-m", " 5", "x")))
  end)

  it("accepts leading zeros and a plus sign as decimal", function()
    assert.equal(10, assert(parse("-m", "010", "x")).max_ttl)
    assert.equal(5, assert(parse("-m", "+5", "x")).max_ttl)
  end)

  it("accepts both ends of its range", function()
    assert.equal(1, assert(parse("-m", "1", "x")).max_ttl)
    assert.equal(255, assert(parse("-m", "255", "x")).max_ttl)
  end)

  it("rejects a value just outside its range", function()
    local _, low = parse("-m", "0", "x")
    local _, high = parse("-m", "256", "x")
    assert.equal("sonde trace: -m: invalid value '0' (expected an integer from 1 to 255)", low)
    assert.equal("sonde trace: -m: invalid value '256' (expected an integer from 1 to 255)", high)
  end)

  it("without a range says only 'expected an integer'", function()
    local _, err = parse("--offset", "x1", "x")
    assert.equal("sonde trace: --offset: invalid value 'x1' (expected an integer)", err)
  end)
end)

describe("a number option", function()
  it("accepts fractions and exponents", function()
    assert.equal(2.5, assert(parse("--rate", "2.5", "x")).rate)
    assert.equal(0.5, assert(parse("--rate", ".5", "x")).rate)
    assert.equal(1000, assert(parse("--rate=1e3", "x")).rate)
  end)

  it("rejects a value under its minimum", function()
    local _, err = parse("--rate", "-1.5", "x")
    assert.equal("sonde trace: --rate: invalid value '-1.5' (expected a number >= 0)", err)
  end)

  it("rejects 'inf', 'nan' and hexadecimal", function()
    for _, v in ipairs({ "inf", "nan", "0x10", "1..2", "" }) do
      local _, err = parse("--rate=" .. v, "x")
      assert.equal("sonde trace: --rate: invalid value '" .. v .. "' (expected a number >= 0)", err)
    end
  end)
end)

describe("an option with choices", function()
  it("accepts one of them", function()
    assert.equal("tcp", assert(parse("-p", "tcp", "x")).protocol)
  end)

  it("rejects another value, listing the choices", function()
    local o, err = parse("-p", "sctp", "x")
    assert.is_nil(o)
    assert.equal("sonde trace: -p: invalid value 'sctp' (expected one of: udp, icmp, tcp)", err)
  end)
end)

describe("an option with a check function", function()
  it("stores what the check returns", function()
    assert.same({ 2, 1, 4 }, assert(parse("-w", "2,1,4", "x")).wait)
  end)

  it("rejects the value with the check's reason", function()
    local _, err = parse("--wait", "2,x", "x")
    assert.equal("sonde trace: --wait: invalid value '2,x' "
      .. "(expected MAX[,HERE,NEAR], seconds >= 0)", err)
  end)

  it("without a reason says only 'invalid value'", function()
    spec.options[4].check = function(v) if v ~= "1" then return v end end
    local _, err = parse("-w", "1", "x")
    assert.equal("sonde trace: -w: invalid value '1'", err)
  end)
end)

describe("flags", function()
  it("are set by their short name", function()
    assert.is_true(assert(parse("-n", "x")).numeric)
  end)

  it("combine in one word: -n4", function()
    local o = assert(parse("-n4", "x"))
    assert.is_true(o.numeric)
    assert.is_true(o.ipv4)
  end)

  it("may end with an option that takes the rest as its value: -nm5", function()
    local o = assert(parse("-nm5", "x"))
    assert.is_true(o.numeric)
    assert.equal(5, o.max_ttl)
  end)

  it("may end with an option that takes the next word: -nm 5", function()
    assert.equal(5, assert(parse("-nm", "5", "x")).max_ttl)
  end)

  it("reject a value given with '='", function()
    local _, err = parse("--verbose=2", "x")
    assert.equal("sonde trace: option --verbose takes no value", err)
  end)

  it("name the unknown letter in a cluster", function()
    local _, err = parse("-nz", "x")
    assert.equal("sonde trace: unknown option '-z' (see 'sonde help trace')", err)
  end)
end)

describe("a counted flag", function()
  it("counts every occurrence: -vvv --verbose", function()
    assert.equal(4, assert(parse("-vvv", "--verbose", "x")).verbose)
  end)
end)

describe("a list option", function()
  it("collects its values in order", function()
    assert.same({ "a", "b" }, assert(parse("--via", "a", "--via=b", "x")).via)
  end)
end)

describe("unknown options", function()
  it("are named with a pointer to the help", function()
    local o, err = parse("--bogus", "x")
    assert.is_nil(o)
    assert.equal("sonde trace: unknown option '--bogus' (see 'sonde help trace')", err)
  end)

  it("are named without their value", function()
    local _, err = parse("--bogus=1", "x")
    assert.equal("sonde trace: unknown option '--bogus' (see 'sonde help trace')", err)
  end)

  it("are not abbreviations of known ones", function()
    local _, err = parse("--max", "5", "x")
    assert.equal("sonde trace: unknown option '--max' (see 'sonde help trace')", err)
  end)

  it("include a digit that is not an option, such as -1, when some short option is a digit", function()
    local _, err = parse("-1", "x")
    assert.equal("sonde trace: unknown option '-1' (see 'sonde help trace')", err)
  end)
end)

describe("positionals", function()
  it("are stored under their lower-cased name and in opts.positional", function()
    local o = assert(parse("198.18.8.2"))
    assert.equal("198.18.8.2", o.target)
    assert.same({ "198.18.8.2" }, o.positional)
  end)

  it("may come before, between and after options", function()
    local o = assert(parse("-n", "x", "-m", "4"))
    assert.equal("x", o.target)
    assert.equal(4, o.max_ttl)
  end)

  it("include everything after '--'", function()
    local o = assert(parse("--", "-n"))
    assert.equal("-n", o.target)
    assert.is_false(o.numeric)
  end)

  it("include a lone '-'", function()
    assert.equal("-", assert(parse("-")).target)
  end)

  it("include negative numbers when no short option is a digit", function()
    local s = { name = "calc", options = {}, positionals = { { name = "N", type = "int" } } }
    assert.equal(-3, assert(args.parse(s, { "-3" })).n)
  end)

  it("name the one that is missing", function()
    local o, err = parse("-n")
    assert.is_nil(o)
    assert.equal("sonde trace: missing TARGET", err)
  end)

  it("name the one that is too many, with the usage", function()
    local _, err = parse("a", "b")
    assert.equal("sonde trace: unexpected argument 'b' (usage: sonde trace [options] TARGET)", err)
  end)

  it("check their type and name themselves in the message", function()
    local s = { name = "calc", positionals = { { name = "COUNT", type = "int", min = 1 } } }
    local _, err = args.parse(s, { "zero" })
    assert.equal("sonde calc: COUNT: invalid value 'zero' (expected an integer >= 1)", err)
  end)

  describe("marked many", function()
    local many = {
      name = "scan",
      options = { { "-n", key = "numeric", flag = true } },
      positionals = { { name = "PORT", required = true }, { name = "TARGETS", many = true, required = true } },
    }

    it("collect the rest into a list", function()
      local o = assert(args.parse(many, { "80", "a", "-n", "b" }))
      assert.equal("80", o.port)
      assert.same({ "a", "b" }, o.targets)
      assert.same({ "80", "a", "b" }, o.positional)
    end)

    it("name themselves when required and absent", function()
      local _, err = args.parse(many, { "80" })
      assert.equal("sonde scan: missing TARGETS", err)
    end)

    it("are an empty list when optional and absent", function()
      local s = { name = "ls", positionals = { { name = "FILES", many = true } } }
      assert.same({}, assert(args.parse(s, {})).files)
    end)

    describe("before a required one", function()
      local ping = { name = "tcping",
        positionals = { { name = "HOST", many = true },
          { name = "PORT", required = true, type = "int", min = 1, max = 65535 } } }

      it("leave it the last word", function()
        local o = assert(args.parse(ping, { "a", "b", "443" }))
        assert.same({ "a", "b" }, o.host)
        assert.equal(443, o.port)
        o = assert(args.parse(ping, { "443" }))
        assert.same({}, o.host)
        assert.equal(443, o.port)
      end)

      it("do not hide that it is missing or wrong", function()
        assert.equal("sonde tcping: missing PORT", select(2, args.parse(ping, {})))
        assert.equal("sonde tcping: PORT: invalid value 'b' (expected an integer from 1 to 65535)",
          select(2, args.parse(ping, { "a", "b" })))
      end)

      it("show in the usage line", function()
        assert.equal("sonde tcping [HOST...] PORT", args.usage(ping))
      end)
    end)
  end)

  it("are unexpected in a command that takes none", function()
    local s = { name = "list", options = {} }
    local _, err = args.parse(s, { "x" })
    assert.equal("sonde list: unexpected argument 'x' (usage: sonde list)", err)
  end)

  it("may be optional, with a default", function()
    local s = { name = "p", positionals = { { name = "COUNT", type = "int", default = "4" } } }
    assert.equal(4, assert(args.parse(s, {})).count)
    assert.equal(9, assert(args.parse(s, { "9" })).count)
  end)
end)

describe("exclusive options", function()
  it("may be given one at a time", function()
    assert.is_true(assert(parse("-6", "x")).ipv6)
  end)

  it("are named when given together", function()
    local o, err = parse("-4", "-6", "x")
    assert.is_nil(o)
    assert.equal("sonde trace: -4 and -6 cannot be used together", err)
  end)

  it("are named as the user wrote them", function()
    spec.options[5][2] = "--ipv4"
    local _, err = parse("-6", "--ipv4", "x")
    assert.equal("sonde trace: -6 and --ipv4 cannot be used together", err)
  end)

  it("are told apart from their defaults: a default does not count as given", function()
    spec.exclusive = { { "max_ttl", "sport" } }
    assert.truthy(parse("--sport", "33434", "x"))
    local _, err = parse("-m", "5", "--sport", "1", "x")
    assert.equal("sonde trace: -m and --sport cannot be used together", err)
  end)
end)

describe("-h and --help", function()
  it("ask for help anywhere on the line", function()
    assert.is_true(assert(parse("x", "-h")).help)
    assert.is_true(assert(parse("--help")).help)
  end)

  it("win over other errors on the line", function()
    assert.is_true(assert(parse("-m", "abc", "--bogus", "--help")).help)
  end)

  it("count in a cluster of flags", function()
    assert.is_true(assert(parse("-nh")).help)
  end)

  it("are positionals after '--'", function()
    local o = assert(parse("--", "-h"))
    assert.is_nil(o.help)
    assert.equal("-h", o.target)
  end)
end)

describe("a spec with a mistake", function()
  local function bad(options, extra)
    local s = { name = "bad", options = options }
    for k, v in pairs(extra or {}) do s[k] = v end
    return function() args.parse(s, {}) end
  end

  it("raises when an option is neither flag, count nor takes an arg", function()
    assert.has_error(bad({ { "-n", help = "forgot flag = true" } }),
      "args spec 'bad': option -n must have exactly one of flag, count or arg")
  end)

  it("raises when two options share a name", function()
    assert.has_error(bad({ { "-n", flag = true }, { "-n", "--num", flag = true } }),
      "args spec 'bad': option -n is defined twice")
  end)

  it("raises when two options share a key", function()
    assert.has_error(bad({ { "-a", key = "x", flag = true }, { "-b", key = "x", flag = true } }),
      "args spec 'bad': key 'x' is used by both -a and -b")
  end)

  it("raises when an option and a positional share a key", function()
    assert.has_error(bad({ { nil, "--target", arg = "T" } }, { positionals = { { name = "TARGET" } } }),
      "args spec 'bad': key 'target' is used by both --target and TARGET")
  end)

  it("raises when it redefines -h", function()
    assert.has_error(bad({ { "-h", "--hops", arg = "N" } }),
      "args spec 'bad': option -h, --hops: -h and --help are reserved")
  end)

  it("raises on an unknown type", function()
    assert.has_error(bad({ { "-n", arg = "N", type = "float" } }),
      "args spec 'bad': option -n: unknown type 'float'")
  end)

  it("raises when exclusive names an unknown key", function()
    assert.has_error(bad({ { "-a", flag = true } }, { exclusive = { { "a", "b" } } }),
      "args spec 'bad': exclusive names unknown key 'b'")
  end)

  it("raises when a positional after a many one is optional, or many too", function()
    assert.has_error(bad({}, { positionals = { { name = "A", many = true }, { name = "B" } } }),
      "args spec 'bad': positional B: one after a many one must be required")
    assert.has_error(bad({}, { positionals = { { name = "A", many = true },
      { name = "B", many = true, required = true } } }),
      "args spec 'bad': positional B: only one may be many")
  end)

  it("raises when a string default does not pass its own check", function()
    assert.has_error(bad({ { "-m", arg = "N", type = "int", default = "lots" } }),
      "args spec 'bad': bad default for -m: sonde bad: -m: invalid value 'lots' (expected an integer)")
  end)
end)

describe("the help text", function()
  local text
  before_each(function() text = args.help(spec) end)

  local function has(s) assert.truthy(text:find(s, 1, true), "help lacks: " .. s .. "\n" .. text) end

  it("starts with the command and its summary, then the usage line", function()
    assert.equal("sonde trace - print the route packets take to a host\n\n"
      .. "Usage: sonde trace [options] TARGET\n", text:sub(1, 90))
  end)

  it("contains the description, re-wrapped, with verbatim blocks kept", function()
    has("  Sends probes with increasing TTL towards TARGET and prints, for each hop,\n"
      .. "  who answered and how long it took.\n")
    has("\n      sonde trace -n 198.18.8.2\n")
  end)

  it("lists every option with its short and long name and its argument", function()
    has("  -p, --protocol PROTO")
    has("  -m, --max-ttl N")
    has("  -w, --wait MAX[,HERE,NEAR]")
    has("      --sport PORT")
    has("  -4 ")
    has("  -h, --help")
  end)

  it("shows defaults", function()
    has("(default: udp)")
    has("(default: 30)")
    has("(default: 5,3,10)")
  end)

  it("does not show the default of a flag or a count", function()
    assert.is_nil(text:find("default: false", 1, true))
    assert.is_nil(text:find("default: 0", 1, true))
  end)

  it("lists choices and ranges", function()
    has("one of: udp, icmp, tcp")
    has("from 1 to 255")
    has(">= 0")
  end)

  it("marks repeatable options", function()
    has("say more; repeatable")
  end)

  it("aligns the help of the options in one column", function()
    local col
    for line in text:gmatch("[^\n]+") do
      local left, right = line:match("^(  %-[^ ].-%s%s+)(%S.*)$")
      if left and line:match("^  %-") then
        col = col or #left
        assert.equal(col, #left, line)
      end
    end
    assert.truthy(col)
  end)

  it("lists the positionals with their help", function()
    has("Arguments:\n  TARGET  host name or address")
  end)

  it("ends with the examples", function()
    assert.truthy(text:find("Examples:\n  sonde trace %-n 198%.18%.8%.2\n"
      .. "  sonde trace %-p tcp %-%-sport 443 example%.net\n$"))
  end)

  it("keeps every line within 78 columns", function()
    for line in text:gmatch("[^\n]+") do
      assert.is_true(#line <= 78, line)
    end
  end)

  it("keeps '(default: X)' on one line", function()
    spec.options[1].help = string.rep("word ", 9)
    for line in args.help(spec):gmatch("[^\n]+") do
      assert.is_nil(line:match("%(default:$"), line)
    end
  end)

  it("puts the help of a very long option on the next line", function()
    table.insert(spec.options, { nil, "--a-very-long-option-name", arg = "SOMETHING", help = "long one" })
    local help = args.help(spec)
    assert.truthy(help:find("\n      %-%-a%-very%-long%-option%-name SOMETHING\n%s+long one\n"), help)
  end)

  it("builds a usage line when the spec has none", function()
    local s = { name = "scan", options = { { "-n", flag = true } },
                positionals = { { name = "PORT", required = true }, { name = "TARGETS", many = true } } }
    assert.equal("sonde scan [options] PORT [TARGETS...]", args.usage(s))
  end)
end)

describe("an option the replaced tool knows and the command spells otherwise", function()
  local s = { name = "trace", options = { { "-p", "--protocol", arg = "PROTO" } },
              positionals = { { name = "TARGET", required = true } },
              hints = { ["-I"] = "use -p icmp", ["--mtu"] = "not supported yet" } }

  it("is refused with the hint, short or long, in a cluster too", function()
    local _, err = args.parse(s, { "-I", "h" })
    assert.equal("sonde trace: unknown option '-I': use -p icmp (see 'sonde help trace')", err)
    _, err = args.parse(s, { "--mtu", "h" })
    assert.truthy(err:find("'--mtu': not supported yet", 1, true), err)
    _, err = args.parse(s, { "--mtu=1", "h" })
    assert.truthy(err:find("'--mtu': not supported yet", 1, true), err)
  end)

  it("without a hint is the plain unknown option", function()
    local _, err = args.parse(s, { "-Z", "h" })
    assert.equal("sonde trace: unknown option '-Z' (see 'sonde help trace')", err)
  end)
end)
