-- sonde trace over many targets: several on the command line, --targets
-- files, CIDR prefixes, shards; traces run concurrently on one engine and
-- are written as each finishes.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"
local schema = require "schema"

-- A file or directory that sonde can read and write after it has dropped
-- to nobody.
local function tmpdir()
  local dir = lab.run("mktemp -d /tmp/" .. lab.prefix() .. "campaign.XXXXXX"):match("%S+")
  assert(os.execute("chmod 777 " .. lab.shquote(dir)) == 0)
  return dir
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  assert(os.execute("chmod 644 " .. lab.shquote(path)) == 0)
end

local function lines(text)
  local t = {}
  for line in text:gmatch("[^\r\n]+") do t[#t + 1] = line end
  return t
end

helpers.lab_describe("sonde trace with many targets", function()
  local l, dir

  setup(function()
    l = lab.chain{ routers = 2, v6 = false, name = "campaign" }
    -- 198.19.0.0/23 behind r2, every address answered by dst (AnyIP)
    l:route("src", "198.19.0.0/23 via " .. l.hops[1].v4)
    l:route("r1", "198.19.0.0/23 via " .. l.hops[2].v4)
    l:route("r2", "198.19.0.0/23 via " .. l.dst.v4)
    l:route("dst", "local 198.19.0.0/23 dev lo")
    dir = tmpdir()
  end)

  teardown(function()
    if l then l:destroy() end
    if dir then os.execute("rm -rf " .. lab.shquote(dir)) end
  end)

  local function sonde(args)
    local argv = { helpers.sonde(), "trace", "-n", "-q", "1" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return l:exec("src", argv)
  end

  local function traces(out)
    local t = {}
    for _, line in ipairs(lines(out)) do t[#t + 1] = cjson.decode(line) end
    return t
  end

  it("traces every target given, one JSON line each as it finishes, valid against the schema", function()
    local out, err, code = sonde{ "--format", "jsonl", l.dst.v4, "198.19.0.7", "198.19.1.200" }
    assert.are.equal(0, code, err)
    local ts = traces(out)
    assert.are.equal(3, #ts)
    local seen = {}
    for _, t in ipairs(ts) do
      assert.is_true(t.reached)
      assert.are.equal(3, #t.hops)
      seen[t.addr] = true
    end
    assert.is_true(seen[l.dst.v4] and seen["198.19.0.7"] and seen["198.19.1.200"])
    assert.is_true(schema.validate(out))
    assert.matches("3 of 3 targets reached", err)
  end)

  it("reads --targets files: comments and blank lines ignored, a bad line named by its number and skipped", function()
    local path = dir .. "/targets.txt"
    write(path, "# lab targets\n198.19.0.1\n\n198.19.0.2   # the second\nnot an address!\n198.19.0.0/30\n")
    local out, err, code = sonde{ "--format", "jsonl", "--targets", path }
    assert.are.equal(0, code, err)
    assert.matches(path:gsub("%p", "%%%0") .. ":5: skipped 'not an address!'", err)
    -- 198.19.0.1 and .2 given twice (alone and in the /30): traced once
    local addrs = {}
    for _, t in ipairs(traces(out)) do addrs[#addrs + 1] = t.addr end
    table.sort(addrs)
    assert.are.same({ "198.19.0.0", "198.19.0.1", "198.19.0.2", "198.19.0.3" }, addrs)
  end)

  it("expands a CIDR prefix and reads targets from standard input", function()
    local out, err, code = l:exec("src", "printf '198.19.1.0/28\\n' | " .. helpers.sonde()
      .. " trace -n -q 1 --format jsonl --targets -")
    assert.are.equal(0, code, err)
    assert.are.equal(16, #traces(out))
  end)

  it("splits 300 targets into 3 shards that cover each exactly once", function()
    local seen, total = {}, 0
    for k = 0, 2 do
      local out, err, code = sonde{ "--format", "jsonl", "--quiet", "--shard", k .. "/3", "--seed", "42",
        "198.19.0.0/24", "198.19.1.0/26", "198.19.1.64/28", "198.19.1.80/30" }
      assert.are.equal(0, code, err)
      for _, t in ipairs(traces(out)) do
        assert.is_nil(seen[t.addr], t.addr .. " in two shards")
        seen[t.addr] = k
        total = total + 1
        assert.is_true(t.reached)
      end
    end
    assert.are.equal(256 + 64 + 16 + 4, total)
    -- the same seed splits the same way again
    local again = traces((sonde{ "--format", "jsonl", "--quiet", "--shard", "1/3", "--seed", "42",
      "198.19.0.0/24", "198.19.1.0/26", "198.19.1.64/28", "198.19.1.80/30" }))
    for _, t in ipairs(again) do assert.are.equal(1, seen[t.addr]) end
  end)

  it("writes -o FILE atomically, and one CSV row per probe", function()
    local path = dir .. "/out.csv"
    local out, err, code = sonde{ "--format", "csv", "-o", path, "198.19.0.9", "198.19.0.10" }
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    local rows = lines(assert(io.open(path)):read("*a"))
    assert.are.equal("target,addr,ttl,q,status,kind,code,hop,hop_name,rtt_ms,reply_ttl,error,seq,sport,dport,changes,nat,ext", rows[1])
    assert.are.equal(1 + 2 * 3, #rows)
    -- no temporary file is left beside it
    local left = lab.run("ls -A " .. lab.shquote(dir))
    assert.is_nil(left:find("%.tmp"))
  end)

  it("writes through a user's format module", function()
    local path = dir .. "/fmt.lua"
    write(path, [[
return {
  header = function(meta) return "# " .. meta.command .. " " .. meta.total .. "\n" end,
  record = function(t) return t.addr .. " " .. (t.reached and "reached" or "not") .. "\n" end,
  footer = function(s) return "# " .. s.reached .. "/" .. s.total .. "\n" end,
}
]])
    local out, err, code = sonde{ "--format", path, "198.19.0.20", "198.19.0.21" }
    assert.are.equal(0, code, err)
    local ls = lines(out)
    assert.are.equal("# trace 2", ls[1])
    table.sort(ls, function(a, b) return a < b end)
    assert.are.same({ "# 2/2", "# trace 2", "198.19.0.20 reached", "198.19.0.21 reached" }, ls)
  end)

  it("exits 1 when some targets are not reached, naming the error of the one that failed", function()
    local out, err, code = sonde{ "--format", "jsonl", "198.19.0.30", "198.30.0.1" }
    assert.are.equal(1, code)
    assert.matches("198%.30%.0%.1: ENETUNREACH", err)
    assert.are.equal(2, #traces(out))
  end)

  it("shows a progress line on a terminal for a run of more than two seconds, and none otherwise", function()
    -- r1 forwards nothing to 198.19.1.240/30: each trace waits its full
    -- -w 1 for hop 2, one trace at a time, about four seconds in all
    l:nft("r1", [[
table inet sonde_quiet {
  chain forward_drop {
    type filter hook forward priority 0;
    ip daddr 198.19.1.240/30 drop
  }
}]])
    local cmd = helpers.sonde() .. " trace -n -q 1 -m 2 -w 1 --parallel 1 --format jsonl 198.19.1.240/30"
    local out, err, code = l:exec("src", "script -qec " .. lab.shquote(cmd .. " >/dev/null") .. " /dev/null")
    -- script(1) copies the terminal, sonde's standard error, to its stdout
    assert.are.equal(1, code, out .. err)
    assert.matches("sonde trace: %d/4 %(", out)
    local _, err2, code2 = l:exec("src", cmd)
    assert.are.equal(1, code2)
    assert.is_nil(err2:find("/4 (", 1, true))
    l:exec("r1", { "nft", "delete", "table", "inet", "sonde_quiet" })
  end)
end)
