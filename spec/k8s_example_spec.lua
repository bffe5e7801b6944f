-- examples/k8s: the Kubernetes Indexed Job that shards a sonde sweep
-- campaign, and its merge step. No Kubernetes here: the Job's YAML is read
-- as text (its completions and the --shard of its command must agree), then
-- its container command runs, exactly as written, once per index
-- K = 0 .. N-1 in a lab namespace whose far end answers for a whole /24
-- (AnyIP), and the merge step checks that every target came back once.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

local ROOT = helpers.root()
local JOB = ROOT .. "/examples/k8s/campaign-job.yaml"
local MERGE = ROOT .. "/examples/k8s/merge.lua"

local function esc(s) return (s:gsub("%p", "%%%0")) end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function lines_of(text)
  local t = {}
  for l in text:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- The YAML documents of a file (split at "---" lines), each as its lines.
local function documents(text)
  local docs, cur = {}, {}
  for _, l in ipairs(lines_of(text)) do
    if l:match("^%-%-%-%s*$") then
      if #cur > 0 then docs[#docs + 1] = cur end
      cur = {}
    elseif not l:match("^%s*#") then
      cur[#cur + 1] = l
    end
  end
  if #cur > 0 then docs[#docs + 1] = cur end
  return docs
end

local function kind_of(doc)
  for _, l in ipairs(doc) do
    local k = l:match("^kind:%s*(%S+)")
    if k then return k end
  end
end

-- The first value of `key: value` in a document (any indentation).
local function value(doc, key)
  for _, l in ipairs(doc) do
    local v = l:match("^%s*%-?%s*" .. esc(key) .. ":%s*(.-)%s*$")
    if v and v ~= "" then return (v:gsub("%s+#.*$", "")) end
  end
end

-- The text of the block scalar ("key: |" or "- |") that starts at line i,
-- without its indentation.
local function block_at(doc, i)
  local out, indent = {}, nil
  local own = #doc[i]:match("^(%s*)")
  for j = i + 1, #doc do
    local l = doc[j]
    if l:match("%S") then
      local ind = #l:match("^(%s*)")
      if ind <= own then break end
      indent = indent or ind
      out[#out + 1] = l:sub(indent + 1)
    else
      out[#out + 1] = ""
    end
  end
  while out[#out] == "" do out[#out] = nil end
  return table.concat(out, "\n") .. "\n"
end

-- The block scalar under `key: |`, or the first "- |" after a line `key:`.
local function block(doc, key)
  for i, l in ipairs(doc) do
    if l:match("^%s*" .. esc(key) .. ":%s*|%s*$") then return block_at(doc, i) end
    if l:match("^%s*" .. esc(key) .. ":%s*$") and doc[i + 1] and doc[i + 1]:match("^%s*%- |%s*$") then
      return block_at(doc, i + 1)
    end
  end
end

-- The env of the container: name -> value.
local function env_of(doc)
  local env = {}
  for i, l in ipairs(doc) do
    local name = l:match("^%s*%- name:%s*(%S+)%s*$")
    local v = name and doc[i + 1] and doc[i + 1]:match("^%s*value:%s*(%S+)%s*$")
    if v then env[name] = v end
  end
  return env
end

-- The parts of the example a run needs, checked against each other.
local function job_parts()
  local docs = documents(read(JOB))
  local parts = {}
  for _, d in ipairs(docs) do
    local k = kind_of(d)
    if k == "Job" then parts.job = d
    elseif k == "ConfigMap" then parts.configmap = d
    elseif k == "PersistentVolumeClaim" then parts.pvc = d end
  end
  assert(parts.job and parts.configmap, "the YAML has a Job and a ConfigMap")
  parts.script = assert(block(parts.job, "args"), "the container's args: a block")
  parts.env = env_of(parts.job)
  parts.targets = assert(block(parts.configmap, "targets.txt"), "the ConfigMap's targets.txt")
  return parts
end

describe("examples/k8s/campaign-job.yaml", function()
  it("is an Indexed Job whose completions, parallelism and --shard N agree", function()
    local p = job_parts()
    assert.are.equal("Indexed", value(p.job, "completionMode"))
    local n = tonumber(value(p.job, "completions"))
    local par = tonumber(value(p.job, "parallelism"))
    assert.is_true(n and n >= 2, "completions")
    assert.is_true(par and par >= 1 and par <= n, "parallelism from 1 to completions")
    local k, shards = p.script:match('%-%-shard "%$(JOB_COMPLETION_INDEX)/(%d+)"')
    assert.are.equal("JOB_COMPLETION_INDEX", k)
    assert.are.equal(n, tonumber(shards))
    assert.truthy(p.script:match("%-%-seed %d+"), "a fixed --seed")
    assert.truthy(p.script:match("sonde sweep ") or p.script:match("sonde trace "))
    assert.truthy(p.script:find('%-%-targets "%$TARGETS"'))
    assert.truthy(p.script:find('%-%-format jsonl'))
    -- one JSON Lines file per shard on the shared volume
    assert.truthy(p.script:find('%-o "%$RESULTS/shard%-%$JOB_COMPLETION_INDEX%.jsonl"'))
  end)

  it("mounts the ConfigMap's targets file where TARGETS says, results on a shared volume, with NET_RAW", function()
    local p = job_parts()
    local used
    for i, l in ipairs(p.job) do
      if l:match("^%s*configMap:%s*$") then used = p.job[i + 1]:match("name:%s*(%S+)") end
    end
    assert.are.equal(value(p.configmap, "name"), used)
    local dirname, base = p.env.TARGETS:match("^(.*)/([^/]+)$")
    assert.are.equal("targets.txt", base)
    local mounts = {}
    for i, l in ipairs(p.job) do
      local name = l:match("^%s*%- name:%s*(%S+)%s*$")
      local path = name and p.job[i + 1] and p.job[i + 1]:match("^%s*mountPath:%s*(%S+)")
      if path then mounts[name] = path end
    end
    assert.are.equal(dirname, mounts.targets)
    assert.are.equal(p.env.RESULTS, mounts.results)
    assert.truthy(table.concat(p.job, "\n"):find("claimName:%s*sonde%-results"))
    assert.are.equal("[ReadWriteMany]", value(p.pvc, "accessModes"))
    local add = value(p.job, "add")
    assert.truthy(add and add:find("NET_RAW", 1, true), "capabilities add NET_RAW")
  end)
end)

helpers.lab_describe("the Kubernetes example's command, run for every index in a lab", function()
  local l, dir, parts, n, targets_file

  setup(function()
    parts = job_parts()
    n = tonumber(value(parts.job, "completions"))
    -- the lab's rule: the example's targets are lab addresses only
    for _, line in ipairs(lines_of(parts.targets)) do
      local entry = line:gsub("#.*$", ""):match("^%s*(.-)%s*$")
      if entry ~= "" then
        local a, b, len = entry:match("^198%.(%d+)%.(%d+)%.%d+/(%d+)$")
        assert(a and (a == "18" or a == "19") and tonumber(len) >= 16,
          "the example's targets must lie in 198.18.0.0/15 to run in the lab: " .. entry)
        assert(b)
      end
    end
    l = lab.chain{ routers = 1, v6 = false, name = "k8s" }
    -- 198.19.0.0/24 behind r1, every address answered by dst (AnyIP)
    l:route("src", "198.19.0.0/24 via " .. l.hops[1].v4)
    l:route("r1", "198.19.0.0/24 via " .. l.dst.v4)
    l:route("dst", "local 198.19.0.0/24 dev lo")
    dir = lab.run("mktemp -d /tmp/" .. lab.prefix() .. "k8s.XXXXXX"):match("%S+")
    -- the ConfigMap's file, readable by nobody; the results volume,
    -- writable by nobody
    assert(os.execute("chmod 755 " .. lab.shquote(dir) .. " && mkdir -m 777 "
      .. lab.shquote(dir .. "/results")) == 0)
    targets_file = dir .. "/targets.txt"
    local f = assert(io.open(targets_file, "w"))
    f:write(parts.targets)
    f:close()
    assert(os.execute("chmod 644 " .. lab.shquote(targets_file)) == 0)
  end)

  teardown(function()
    if l then l:destroy() end
    if dir then os.execute("rm -rf " .. lab.shquote(dir)) end
  end)

  local function shard(k) return ("%s/results/shard-%d.jsonl"):format(dir, k) end

  local function merge(files)
    local argv = { helpers.sonde(), "run", MERGE, "-o", dir .. "/results/merged.jsonl", targets_file }
    for _, f in ipairs(files) do argv[#argv + 1] = f end
    return helpers.run(argv)
  end

  it("covers every target of the /24 exactly once, and the merge step says so", function()
    local seen, total = {}, 0
    for k = 0, n - 1 do
      -- the container's command, as written, with the pod's environment
      local cmd = ("JOB_COMPLETION_INDEX=%d TARGETS=%s RESULTS=%s PATH=%s:\"$PATH\" sh -c %s"):format(
        k, lab.shquote(targets_file), lab.shquote(dir .. "/results"), lab.shquote(helpers.build()),
        lab.shquote(parts.script))
      local out, err, code = l:exec("src", cmd)
      assert.are.equal(0, code, err)
      assert.are.equal("", out)
      for line in read(shard(k)):gmatch("[^\n]+") do
        local r = cjson.decode(line)
        assert.are.equal("sweep", r.type)
        assert.is_true(r.alive, line)
        assert.is_nil(seen[r.addr], r.addr .. " in two shards")
        seen[r.addr] = k
        total = total + 1
      end
    end
    assert.are.equal(256, total)
    for i = 0, 255 do assert.is_not_nil(seen["198.19.0." .. i], "198.19.0." .. i) end

    local files = {}
    for k = 0, n - 1 do files[#files + 1] = shard(k) end
    local out, err, code = merge(files)
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    assert.matches("merge: 256 targets, 256 records in " .. n .. " files: every target exactly once", err)
    local merged = read(dir .. "/results/merged.jsonl")
    local expect = {}
    for _, f in ipairs(files) do expect[#expect + 1] = read(f) end
    assert.are.equal(table.concat(expect), merged)
  end)

  it("reports missing and duplicate targets and exits 1 when a shard is absent or given twice", function()
    -- shard 0 given twice, shard 1 absent
    local files = { shard(0), shard(0) }
    for k = 2, n - 1 do files[#files + 1] = shard(k) end
    local size0 = #lines_of(read(shard(0)))
    local size1 = #lines_of(read(shard(1)))
    local _, err, code = merge(files)
    assert.are.equal(1, code, err)
    assert.matches("merge: missing: 198%.19%.0%.%d+\n", err)
    assert.matches("merge: duplicate: 198%.19%.0%.%d+ %(" .. esc(shard(0)) .. ":%d+ and " .. esc(shard(0)) .. ":%d+%)", err)
    assert.matches((": %d missing, %d duplicate, 0 unexpected, 0 malformed\n"):format(size1, size0), err)
    -- a line that is not a record, and a target from elsewhere
    local odd = dir .. "/results/odd.jsonl"
    local f = assert(io.open(odd, "w"))
    f:write('{"type":"sweep","version":1,"addr":"198.19.1.1","alive":true}\nnot json\n')
    f:close()
    assert(os.execute("chmod 644 " .. lab.shquote(odd)) == 0)
    files = {}
    for k = 0, n - 1 do files[#files + 1] = shard(k) end
    files[#files + 1] = odd
    _, err, code = merge(files)
    assert.are.equal(1, code, err)
    assert.matches("merge: unexpected: 198%.19%.1%.1 %(", err)
    assert.matches("merge: malformed: " .. esc(odd) .. ":2\n", err)
  end)
end)
