-- Output formats are pure functions from records to text (jsonl, csv,
-- markdown, sweep's text, a user's file), and -o FILE is written
-- atomically (sonde.output). No network: the lab specs (sweep_lab_spec)
-- run them on real output.

local json = require "sonde.json"
local cjson = require "cjson"
local jsonl = require "sonde.format.jsonl"
local csv = require "sonde.format.csv"
local markdown = require "sonde.format.markdown"
local text = require "sonde.format.sweep"
local output = require "sonde.output"
local sweep = require "sonde.strategy.sweep"
local helpers = require "helpers"
local lab = require "lab"

local META = { command = "sweep", version = 1, columns = sweep.COLUMNS, fields = sweep.FIELDS,
  protocol = "icmp", total = 3, shard = 0, shards = 1, rate = 100 }

local RECORDS = {
  { type = "sweep", version = 1, addr = "198.18.0.2", alive = true, protocol = "icmp",
    status = "reply", kind = "echo_reply", from = "198.18.0.2", rtt = 0.000123456, reply_ttl = 63 },
  { type = "sweep", version = 1, addr = "198.18.0.9", alive = false, protocol = "icmp",
    status = "reply", kind = "dest_unreachable", code = "host", from = "198.18.0.1",
    rtt = 0.0031, reply_ttl = 64 },
  { type = "sweep", version = 1, addr = "198.18.9.1", alive = false, protocol = "icmp",
    status = "failed", error = { name = "ENETUNREACH", message = "network is unreachable",
    call = "sendmsg" } },
  { type = "sweep", version = 1, addr = "2001:db8::5", alive = false, protocol = "icmp",
    status = "timeout" },
}

local function render(fmt, records, meta, summary)
  local out = {}
  if fmt.header then out[#out + 1] = fmt.header(meta) or "" end
  for _, r in ipairs(records) do out[#out + 1] = fmt.record(r, meta) or "" end
  if fmt.footer then out[#out + 1] = fmt.footer(summary or {}, meta) or "" end
  return table.concat(out)
end

local function lines(s, sep)
  local out = {}
  for l in s:gmatch("([^\n]*)" .. (sep or "\n")) do out[#out + 1] = l end
  return out
end

describe("jsonl", function()
  it("writes one JSON object per record and line, as sonde.json encodes it", function()
    local out = render(jsonl, RECORDS, META)
    local ls = lines(out)
    assert.are.equal(#RECORDS, #ls)
    for i, l in ipairs(ls) do
      assert.are.equal(json.encode(RECORDS[i]), l)
      assert.are.same(RECORDS[i], cjson.decode(l))
      assert.truthy(l:find('^{"type":"sweep","version":1,"addr":'))
    end
  end)

  it("keeps sonde.json's text whatever meta.fields says, even for a key it does not list", function()
    local rec = { type = "sweep", version = 1, addr = "198.18.0.2", extra = "x\n\"y\"", alive = true,
      nested = { 1, 2 }, n = -1.5 }
    assert.are.equal(json.encode(rec) .. "\n", jsonl.record(rec, META))
    assert.are.equal(json.encode(rec) .. "\n", jsonl.record(rec))
    assert.are.equal("[]\n", jsonl.record(json.array{}))
    for c = 0, 255 do
      local r = { k = "a" .. string.char(c) .. "b" }
      assert.are.equal(json.encode(r) .. "\n", jsonl.record(r, { fields = { "k" } }))
    end
  end)

  it("has neither header nor footer: shards' outputs merge by concatenation", function()
    assert.is_nil(jsonl.header)
    assert.is_nil(jsonl.footer)
  end)
end)

describe("csv", function()
  it("writes a header row and one row per record, CRLF, fields as JSON has them", function()
    local out = render(csv, RECORDS, META)
    local rows = lines(out, "\r\n")
    assert.are.equal(1 + #RECORDS, #rows)
    assert.are.equal("addr,alive,status,kind,code,from,rtt,reply_ttl,protocol,port,error", rows[1])
    assert.are.equal("198.18.0.2,true,reply,echo_reply,,198.18.0.2,0.000123456,63,icmp,,", rows[2])
    assert.are.equal("198.18.0.9,false,reply,dest_unreachable,host,198.18.0.1,0.0031,64,icmp,,", rows[3])
    assert.are.equal("198.18.9.1,false,failed,,,,,,icmp,,ENETUNREACH", rows[4])
    assert.are.equal("2001:db8::5,false,timeout,,,,,,icmp,,", rows[5])
  end)

  it("quotes a field with a comma, a quote or a line break (RFC 4180)", function()
    local meta = { columns = { "a", "b", "c", "d", "e" } }
    assert.are.equal('"x,y","say ""hi""","two\nlines","[1,2]",plain\r\n',
      csv.record({ a = "x,y", b = 'say "hi"', c = "two\nlines", d = { 1, 2 }, e = "plain" }, meta))
  end)

  it("needs the command's columns", function()
    assert.has_error(function() csv.record({}, {}) end)
  end)
end)

describe("markdown", function()
  it("writes a table: a header row, a rule, a row per record, the summary under it", function()
    local out = render(markdown, RECORDS, META, { text = "1 of 4 targets alive" })
    local ls = lines(out)
    assert.are.equal("| addr | alive | status | kind | code | from | rtt | reply_ttl | protocol | port | error |", ls[1])
    assert.are.equal("|---|---|---|---|---|---|---|---|---|---|---|", ls[2])
    assert.are.equal("| 198.18.0.2 | true | reply | echo_reply |  | 198.18.0.2 | 0.000123456 | 63 | icmp |  |  |", ls[3])
    assert.are.equal("| 198.18.9.1 | false | failed |  |  |  |  |  | icmp |  | ENETUNREACH |", ls[5])
    assert.are.equal("", ls[7])
    assert.are.equal("1 of 4 targets alive", ls[8])
  end)

  it("rounds times in milliseconds as the text output does, and keeps other numbers", function()
    local meta = { columns = { "rtt_ms", "loss", "n" } }
    assert.are.equal("| 0.447 | 33.3333333 | 3 |\n",
      markdown.record({ rtt_ms = 0.447281, loss = 100 / 3, n = 3 }, meta))
    assert.are.equal("| 12.000 |  |  |\n", markdown.record({ rtt_ms = 12 }, meta))
  end)

  it("keeps every row on one line: '|' escaped, line breaks made spaces", function()
    assert.are.equal("| a\\|b | two lines |\n",
      markdown.record({ x = "a|b", y = "two\nlines" }, { columns = { "x", "y" } }))
  end)
end)

describe("sweep's text format", function()
  it("writes a line per target: alive with its RTT, or what happened instead", function()
    local out = render(text, RECORDS, META, { text = "1 of 4 targets alive" })
    assert.are.same({
      "sweep of 3 targets, icmp, 100 probes/s",
      "198.18.0.2       alive  echo_reply  0.123 ms",
      "198.18.0.9       -      dest_unreachable host from 198.18.0.1  3.100 ms",
      "198.18.9.1       -      failed ENETUNREACH",
      "2001:db8::5      -      timeout",
      "1 of 4 targets alive",
    }, lines(out))
  end)

  it("names the shard and the port", function()
    assert.are.equal("sweep of 1 target (shard 2/3), tcp/443\n",
      text.header{ total = 1, shard = 2, shards = 3, protocol = "tcp", port = 443, rate = 0 })
  end)
end)

describe("choosing a format", function()
  local dir
  local BUILTIN = { jsonl = "sonde.format.jsonl", csv = "sonde.format.csv" }

  setup(function()
    dir = lab.must("mktemp -d /tmp/" .. lab.prefix() .. "formats.XXXXXX"):match("%S+")
  end)
  teardown(function()
    if dir then lab.run({ "rm", "-rf", dir }) end
  end)

  local function file(name, body)
    local path = dir .. "/" .. name
    local f = assert(io.open(path, "w"))
    f:write(body)
    f:close()
    return path
  end

  it("by name, among the command's", function()
    assert.are.equal(jsonl, output.format("jsonl", BUILTIN))
    local m, err = output.format("yaml", BUILTIN)
    assert.is_nil(m)
    assert.are.equal("unknown format 'yaml' (expected csv, jsonl, or a path to a Lua format file such as ./my.lua)", err)
  end)

  it("by path: a user's Lua file (a '/' or a .lua ending)", function()
    local path = file("mine.lua", "return { record = function(r) return r.addr .. '\\n' end }")
    local m = assert(output.format(path, BUILTIN))
    assert.are.equal("198.18.0.2\n", m.record(RECORDS[1], META))
    assert.is_true(output.is_path("./x.lua"))
    assert.is_true(output.is_path("my.lua"))
    assert.is_false(output.is_path("jsonl"))
  end)

  it("refuses a file that is missing, does not load, or is no format, saying why", function()
    for body_or_missing, why in pairs{
      [false] = "cannot read format file",
      ["return {"] = "cannot load format file",
      ["error('boom')"] = "boom",
      ["return 42"] = "does not return a table",
      ["return { header = function() end }"] = "has no record(rec, meta) function",
      ["return { record = print, footer = 'x' }"] = "footer must be a function",
    } do
      local path = body_or_missing and file("bad.lua", body_or_missing) or dir .. "/missing.lua"
      local m, err = output.format(path, BUILTIN)
      assert.is_nil(m)
      assert.truthy(err:find(why, 1, true), err)
    end
  end)

  it("examples/format_example.lua is one: the alive addresses, then the counts", function()
    local m = assert(output.format(helpers.root() .. "/examples/format_example.lua", BUILTIN))
    local out = render(m, RECORDS, META, { alive = 1, total = 4, duration = 0.5 })
    assert.are.equal("# sonde sweep, icmp, 3 targets\n198.18.0.2\n# 1 of 4 alive in 0.50 s\n", out)
  end)
end)

describe("-o FILE", function()
  local dir

  setup(function()
    dir = lab.must("mktemp -d /tmp/" .. lab.prefix() .. "output.XXXXXX"):match("%S+")
  end)
  teardown(function()
    if dir then lab.run({ "rm", "-rf", dir }) end
  end)

  local function read(path)
    local f = io.open(path, "r")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
  end

  local function listing()
    local out = lab.must("ls -A " .. lab.shquote(dir))
    local names = {}
    for n in out:gmatch("[^\n]+") do names[#names + 1] = n end
    table.sort(names)
    return names
  end

  before_each(function() lab.must("rm -rf " .. lab.shquote(dir) .. "/* " .. lab.shquote(dir) .. "/.??*") end)

  it("is written to a temporary file beside it, which replaces it at commit", function()
    local path = dir .. "/out.jsonl"
    local f = assert(io.open(path, "w"))
    f:write("old\n")
    f:close()
    local w = assert(output.open(path))
    assert(w:write("new 1\n"))
    assert(w:write("new 2\n"))
    assert(w:flush())
    -- while it runs, readers see the old file whole
    assert.are.equal("old\n", read(path))
    local names = listing()
    assert.are.equal(2, #names)
    assert.truthy(names[1]:match("^%.out%.jsonl%.sonde%-%d+%-%d+%.tmp$"), names[1])
    assert(w:commit())
    assert.are.equal("new 1\nnew 2\n", read(path))
    assert.are.same({ "out.jsonl" }, listing())
    local ok, err = w:commit()
    assert.is_nil(ok)
    assert.are.equal("output already finished", err)
  end)

  it("leaves the old file as it was when the run fails (abort)", function()
    local path = dir .. "/keep.csv"
    local f = assert(io.open(path, "w"))
    f:write("kept\n")
    f:close()
    local w = assert(output.open(path))
    w:write("half a run")
    w:abort()
    w:abort()
    assert.are.equal("kept\n", read(path))
    assert.are.same({ "keep.csv" }, listing())
  end)

  it("says why it cannot be written: no such directory, not a file name", function()
    local w, err = output.open(dir .. "/no/such/out.csv")
    assert.is_nil(w)
    assert.are.equal("cannot create a file in " .. dir .. "/no/such: ENOENT: No such file or directory", err)
    w, err = output.open(dir .. "/")
    assert.is_nil(w)
    assert.truthy(err:find("not a file name", 1, true))
  end)

  it("- or none is standard output, flushed at commit and never closed", function()
    local written, flushed = {}, 0
    local stdout = { write = function(_, s) written[#written + 1] = s; return true end,
                     flush = function() flushed = flushed + 1; return true end }
    local w = assert(output.open("-", { stdout = stdout }))
    assert.is_nil(w:target())
    w:write("a")
    w:write(nil)
    w:write("b")
    assert(w:commit())
    assert.are.same({ "a", "b" }, written)
    assert.are.equal(1, flushed)
  end)

  it("reports a write error once and refuses to go on", function()
    local stdout = { write = function() return nil, "Broken pipe" end, flush = function() return true end }
    local w = assert(output.open(nil, { stdout = stdout }))
    local ok, err = w:write("x")
    assert.is_nil(ok)
    assert.are.equal("Broken pipe", err)
    assert.is_nil((w:flush()))
  end)
end)
