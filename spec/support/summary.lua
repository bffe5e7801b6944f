-- spec/support/summary.lua: busted output handler (busted -o PATH).
--
-- While running: one line per spec file with a mark per test
-- (+ passed, - failed, * error, . skipped).  At the end: every failure and
-- error with its message and a traceback trimmed of busted's own frames,
-- every skipped test with its reason, and last the line
--   N passed, N failed[, N skipped]
-- (errors count as failed; ", N skipped" only when some were pending).
--
-- Under spec/run, SONDE_SUMMARY_FILE names a file that gets the counts
-- after every test ("passed failed skipped running|done"), so that the
-- runner can print the last line itself after its clean-up, and can still
-- count when busted dies half way.

local pretty = require "pl.pretty"

return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.base")()
  local state_file = os.getenv("SONDE_SUMMARY_FILE")
  local out = io.stdout

  local function counts()
    return handler.successesCount, handler.failuresCount + handler.errorsCount, handler.pendingsCount
  end

  local function save(stage)
    if not state_file then return end
    local f = io.open(state_file, "w")
    if f then
      local p, f_, s = counts()
      f:write(("%d %d %d %s\n"):format(p, f_, s, stage))
      f:close()
    end
  end

  local function text(msg)
    if type(msg) == "string" then return msg end
    if msg == nil then return "(no message)" end
    return pretty.write(msg)
  end

  local function where(e)
    local t = e.element and e.element.trace or e.trace
    if t and t.short_src then return t.short_src .. ":" .. tostring(t.currentline) end
    return e.element and e.element.descriptor or "busted"
  end

  -- Keeps the frames that belong to the project, drops busted's and
  -- luassert's machinery.
  local function trimmed(tb)
    if type(tb) ~= "string" then return nil end
    local keep = {}
    for line in tb:gmatch("[^\n]+") do
      if not (line:find("/busted/", 1, true) or line:find("/luassert/", 1, true)
              or line:find("/pl/", 1, true) or line:find("in function 'xpcall'", 1, true)
              or line:find("spec/support/strict.lua", 1, true)
              or line:find("[C]: in function 'error'", 1, true)
              or line:match("^%s*%(tail call%)") or line:match("^%s*%[C%]: ?%?$")) then
        keep[#keep + 1] = "    " .. line:gsub("^%s+", "")
      end
    end
    if #keep <= 1 then return nil end
    return table.concat(keep, "\n")
  end

  local function describe_failure(kind, e)
    local name = (e.name and e.name ~= "") and (": " .. e.name) or ""
    out:write("\n", kind, " ", where(e), name, "\n")
    out:write("  ", (text(e.message):gsub("\n", "\n  ")), "\n")
    local tb = trimmed(e.trace and e.trace.traceback)
    if tb then out:write(tb, "\n") end
  end

  local in_file = false

  handler.fileStart = function(file)
    out:write(file.name, ": ")
    out:flush()
    in_file = true
    return nil, true
  end

  handler.fileEnd = function()
    out:write("\n")
    out:flush()
    in_file = false
    return nil, true
  end

  handler.testEnd = function(element, parent, status)
    local mark = ({ success = "+", failure = "-", error = "*", pending = "." })[status] or "?"
    out:write(mark)
    out:flush()
    save("running")
    return nil, true
  end

  -- Errors outside an `it` (a file that does not load, a failing setup).
  handler.error = function(element)
    if element.descriptor ~= "it" then
      -- a file that does not load never starts: give it its own line
      out:write(in_file and "*" or (tostring(element.name or element.descriptor or "busted") .. ": *\n"))
      out:flush()
      save("running")
    end
    return nil, true
  end

  handler.suiteEnd = function()
    for _, e in ipairs(handler.failures) do describe_failure("FAILED", e) end
    for _, e in ipairs(handler.errors) do describe_failure("ERROR", e) end
    if #handler.pendings > 0 then out:write("\n") end
    for _, e in ipairs(handler.pendings) do
      local reason = e.message ~= nil and (": " .. text(e.message)) or ""
      out:write("SKIPPED ", where(e), ": ", e.name or "?", reason, "\n")
    end
    local p, f, s = counts()
    save("done")
    if not state_file then
      if p + f + s == 0 then out:write("no tests ran\n") end
      out:write(("%d passed, %d failed%s\n"):format(p, f, s > 0 and (", %d skipped"):format(s) or ""))
    end
    out:flush()
    return nil, true
  end

  busted.subscribe({ "file", "start" }, handler.fileStart)
  busted.subscribe({ "file", "end" }, handler.fileEnd)
  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  busted.subscribe({ "error" }, handler.error)
  busted.subscribe({ "failure", "describe" }, handler.error)
  busted.subscribe({ "failure", "file" }, handler.error)

  return handler
end
