-- spec/bench/callgrind.lua: reads a callgrind output file (format version 1,
-- events: Ir) into the self cost (instructions executed) of every object,
-- file and function, and sorts objects into the parts of sonde the bench
-- reports. Used by `make bench`'s cost section (spec/bench/bench.lua).
--
--   local cg = dofile("spec/bench/callgrind.lua")
--   local prof = cg.read(path)  -- { total =, summary =, self = { {ob, file, fn, ir}, ... } }
--   local parts = cg.classify(prof, { exe = "/path/to/sonde" })
--                               -- { luajit =, jit =, engine =, bindings =, libuv =, libc =, other = }
--
-- The format (valgrind's docs/cl-format): "ob=", "fl=", "fi="/"fe=" (inlined
-- file), "fn=" name the current object, file and function, compressed as
-- "(id) name" the first time and "(id)" after; "cob=", "cfi="/"cfl=",
-- "cfn=" name a callee and share the same tables. A cost line is
-- "position Ir"; the one that follows a "calls=" line is the call's
-- inclusive cost, already counted in the callee's own lines, so it is
-- skipped. Summed self costs equal the "summary:" line (read checks it).

local M = {}

local TABLE = { ob = "ob", cob = "ob", fl = "fl", fi = "fl", fe = "fl", cfi = "fl", cfl = "fl",
  fn = "fn", cfn = "fn" }

function M.read(path)
  local f, err = io.open(path)
  if not f then return nil, err end
  local names = { ob = {}, fl = {}, fn = {} }
  local function name(kind, rest)
    local t = names[TABLE[kind]]
    local id, nm = rest:match("^%((%d+)%)%s*(.*)$")
    if not id then return rest end
    if nm ~= "" then t[id] = nm end
    return t[id] or "???"
  end
  local ob, fl, fi, fn = "???", "???", "???", "???"
  local skip, total, summary, positions = false, 0, nil, 1
  local cost = {}
  for line in f:lines() do
    local c = line:byte(1)
    -- digits, '+', '-', '*': a cost line (positions first, then Ir)
    if c and ((c >= 48 and c <= 57) or c == 43 or c == 45 or c == 42) then
      if skip then
        skip = false
      else
        local i, ir = 0, nil
        for w in line:gmatch("%S+") do
          i = i + 1
          if i == positions + 1 then ir = tonumber(w) break end
        end
        if ir then
          total = total + ir
          local key = ob .. "\0" .. fi .. "\0" .. fn
          cost[key] = (cost[key] or 0) + ir
        end
      end
    else
      local k, rest = line:match("^(%a+)=(.*)$")
      if k == "ob" then ob = name(k, rest)
      elseif k == "fl" then fl = name(k, rest); fi = fl
      elseif k == "fi" or k == "fe" then fi = name(k, rest)
      elseif k == "fn" then fn = name(k, rest); fi = fl
      elseif TABLE[k] then name(k, rest)
      elseif k == "calls" then skip = true
      elseif not k then
        local s = line:match("^summary:%s*(%d+)") or line:match("^totals:%s*(%d+)")
        if s then summary = tonumber(s) end
        local p = line:match("^positions:%s*(.-)%s*$")
        if p then
          positions = 0
          for _ in p:gmatch("%S+") do positions = positions + 1 end
        end
        local ev = line:match("^events:%s*(%S+)")
        if ev and ev ~= "Ir" then
          f:close()
          return nil, path .. ": the first event is " .. ev .. ", not Ir"
        end
      end
    end
  end
  f:close()
  if summary and summary ~= total then
    return nil, ("%s: self costs add up to %d, the summary says %d"):format(path, total, summary)
  end
  local rows = {}
  for key, ir in pairs(cost) do
    local o, fname, func = key:match("^(%Z*)%z(%Z*)%z(.*)$")
    rows[#rows + 1] = { ob = o, file = fname, fn = func, ir = ir }
  end
  table.sort(rows, function(a, b) return a.ir > b.ir end)
  return { total = total, summary = summary, self = rows }
end

-- The parts, in the order the bench prints them.
M.PARTS = {
  { "luajit", "LuaJIT VM (libluajit: interpreter, GC, compiler, C API)" },
  { "jit", "LuaJIT JIT-compiled traces (code in no file: ???)" },
  { "engine", "sonde engine (engine/*.c)" },
  { "bindings", "sonde bindings (bindings/*.c: sonde.core, main)" },
  { "libuv", "libuv" },
  { "libc", "libc and libm" },
  { "other", "other (ld.so, libgcc_s unwinder, valgrind preload)" },
}

local function base(path) return path:match("([^/]+)$") or path end

-- Which part an object/file belongs to. Callgrind names code that lies in
-- no mapped file "???": in sonde the only such code is what LuaJIT's JIT
-- writes into its anonymous mcode areas (valgrind's own trampolines there
-- are a handful of instructions).
function M.part(ob, file, exe)
  local b = base(ob)
  if ob == "???" then return "jit" end
  if b:match("^libluajit") then return "luajit" end
  if ob == exe or (exe and b == base(exe)) then
    return file:find("/engine/", 1, true) and "engine" or "bindings"
  end
  if b:match("^libsonde") then return "engine" end
  if b:match("^libuv") then return "libuv" end
  if b:match("^libc%.") or b:match("^libc%-") or b:match("^libm%.") then return "libc" end
  return "other"
end

function M.classify(prof, opts)
  local parts = {}
  for _, p in ipairs(M.PARTS) do parts[p[1]] = 0 end
  for _, r in ipairs(prof.self) do
    local p = M.part(r.ob, r.file, opts and opts.exe)
    parts[p] = parts[p] + r.ir
  end
  return parts
end

return M
