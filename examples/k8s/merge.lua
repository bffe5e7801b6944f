-- examples/k8s/merge.lua - the merge step of a sharded campaign: the JSON
-- Lines of N shards concatenated into one file, and a check that every
-- target of the campaign appears in it exactly once.
--
--   sonde run examples/k8s/merge.lua [-o MERGED] TARGETS SHARD.jsonl...
--
-- TARGETS is the targets file the shards were given (--targets: addresses,
-- CIDR prefixes, host names; '#' comments and blank lines ignored, a bad
-- line reported with its number and skipped, as sonde does); each SHARD is
-- the JSON Lines output of one `sonde sweep --shard K/N` (or `sonde trace
-- --shard K/N --format jsonl`). The shards' lines are written, in the
-- order given, to MERGED (atomically: a temporary file renamed over it at
-- the end) or to standard output; on standard error, what is wrong:
--   missing      a target no shard has a line for (a shard that did not
--                run, or did not finish)
--   duplicate    a target with lines in two places (a shard given twice,
--                two pods with the same index, or shards made with
--                different --seed or a different N)
--   unexpected   a line for an address that is not a target (shards of
--                another targets file)
--   malformed    a line that is not a sonde record
-- Exit status: 0 every target exactly once; 1 something is missing,
-- duplicated, unexpected or malformed (MERGED is written all the same);
-- 2 usage error; 3 a file that cannot be read or written.
--
-- Host names in TARGETS are resolved again here (sonde resolves each to
-- its first address; a name that resolves differently now than when the
-- shards ran shows as missing and unexpected). Memory grows with the
-- number of targets (a /16 is 65 536 strings).
--
-- Started as root, sonde runs this as nobody (or --user): the files must be
-- readable, and MERGED's directory writable, by that user.

local targets = require "sonde.targets"
local campaign = require "sonde.campaign"
local output = require "sonde.output"

local SHOW = 20 -- names shown per kind of problem; the rest are counted

local function usage(msg)
  io.stderr:write("merge: ", msg, "\n",
    "usage: sonde run examples/k8s/merge.lua [-o MERGED] TARGETS SHARD.jsonl...\n")
  return 2
end

local args = { ... }
local out_path
if args[1] == "-o" then
  out_path = args[2]
  if not out_path then return usage("-o needs a file name") end
  table.remove(args, 1)
  table.remove(args, 1)
end
local targets_file = table.remove(args, 1)
if not targets_file then return usage("missing TARGETS") end
if #args == 0 then return usage("missing SHARD files") end

-- The campaign's targets, as sonde reads them.
local list = targets.list()
local ctx = { stderr = io.stderr }
local ok, err = pcall(campaign.read_target_files, list, { targets_file }, ctx, "merge")
if not ok then
  io.stderr:write("merge: ", type(err) == "table" and tostring(err.message) or tostring(err), "\n")
  return 3
end
if #list:names() > 0 then
  local sonde = require "sonde"
  local eng, eerr = sonde.engine{}
  if not eng then
    io.stderr:write("merge: cannot resolve the host names: ", tostring(eerr), "\n")
    return 3
  end
  eng:run(function() campaign.resolve_names(eng, list, ctx, "merge") end)
  eng:close()
end
local n, lerr = list:finish()
if not n then
  io.stderr:write("merge: ", lerr, "\n")
  return 3
end
local expected = {}
for i = 0, n - 1 do expected[list:at(i)] = true end

local out, oerr = output.open(out_path)
if not out then
  io.stderr:write("merge: -o: ", oerr, "\n")
  return 3
end

-- Every line: where it is, the address it is about. sonde's JSON Lines
-- start with "type", "version", then (keys sorted) "addr": the target's
-- address, for sweep and trace records alike.
local seen = {}               -- addr -> "file:line" of its first record
local problems = { missing = {}, duplicate = {}, unexpected = {}, malformed = {} }
local records = 0
for _, path in ipairs(args) do
  local f, ferr = io.open(path, "r")
  if not f then
    out:abort()
    io.stderr:write("merge: cannot read ", tostring(ferr), "\n")
    return 3
  end
  local no = 0
  for line in f:lines() do
    no = no + 1
    local where = path .. ":" .. no
    local wok, werr = out:write(line .. "\n")
    if not wok then
      f:close()
      out:abort()
      io.stderr:write("merge: cannot write: ", tostring(werr), "\n")
      return 3
    end
    local addr = line:match('^{"type":"[%w_]+","version":%d+,"addr":"([^"]+)"')
    if not addr then
      if line:match("%S") then
        table.insert(problems.malformed, where)
      end
    else
      records = records + 1
      if not expected[addr] then
        table.insert(problems.unexpected, addr .. " (" .. where .. ")")
      elseif seen[addr] then
        table.insert(problems.duplicate, addr .. " (" .. seen[addr] .. " and " .. where .. ")")
      else
        seen[addr] = where
      end
    end
  end
  f:close()
end
for i = 0, n - 1 do
  local a = list:at(i)
  if not seen[a] then table.insert(problems.missing, a) end
end

local cok, cerr = out:commit()
if not cok then
  io.stderr:write("merge: ", tostring(cerr), "\n")
  return 3
end

local bad = 0
for _, kind in ipairs{ "missing", "duplicate", "unexpected", "malformed" } do
  local items = problems[kind]
  bad = bad + #items
  for i = 1, math.min(#items, SHOW) do
    io.stderr:write("merge: ", kind, ": ", items[i], "\n")
  end
  if #items > SHOW then
    io.stderr:write(("merge: ... %d %s in all\n"):format(#items, kind))
  end
end
if bad == 0 then
  io.stderr:write(("merge: %d targets, %d records in %d files: every target exactly once\n")
    :format(n, records, #args))
  return 0
end
io.stderr:write(("merge: %d targets, %d records in %d files: %d missing, %d duplicate, "
  .. "%d unexpected, %d malformed\n"):format(n, records, #args, #problems.missing,
  #problems.duplicate, #problems.unexpected, #problems.malformed))
return 1
