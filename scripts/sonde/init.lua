-- sonde: the coroutine API over sonde.core: probe calls yield the calling
-- coroutine and resume it with the outcome, many coroutines on one loop.
--
--   local sonde = require "sonde"
--   local eng = sonde.engine{ rate = 1000, window = 256 }
--   eng:run(function()
--     local r = eng:probe{ dst = "198.18.8.2", proto = "udp", ttl = 3, wait = 1 }
--     print(r.status, r.kind, r.addr, r.rtt)
--   end)
--
-- A probe call yields its coroutine and is resumed with the result; many
-- coroutines run at once on one loop. The yields live here, in Lua: the core
-- only calls back.

local core = require "sonde.core"

local M = { core = core }

local Engine = {}
Engine.__index = Engine

local yield, running, resume, status = coroutine.yield, coroutine.running,
  coroutine.resume, coroutine.status

-- Create an engine. opts: rate (probes/s, 0 = unlimited), window (probes in
-- flight), wait (default seconds per probe), icmp_id, privileged ("auto",
-- "raw", "unprivileged"), send_thread (true: plain ICMP echoes are sent by
-- a thread of the engine's, while this one reads replies: for sweeps).
-- Returns the engine or nil, "ENAME: message", "ENAME".
function M.engine(opts)
  local c, err, name = core.engine(opts)
  if not c then return nil, err, name end
  return setmetatable({ core = c, live = 0, waiting = {} }, Engine)
end

local function current(method)
  local co, main = running()
  if not co or main then
    error("sonde: engine:" .. method .. "() must be called inside engine:run()", 3)
  end
  return co
end

-- Resume co with the values; a coroutine's error becomes the script's error,
-- with the coroutine's own traceback.
function Engine:_resume(co, ...)
  local ok, err = resume(co, ...)
  if not ok then
    if type(err) ~= "string" then error(err, 0) end
    error(debug.traceback(co, err), 0)
  end
  if status(co) == "dead" then
    self.live = self.live - 1
    self.waiting[co] = nil
  end
end

-- Wait for a callback-style core call: start(done) gets a function to call
-- with the results; the coroutine sleeps until then.
function Engine:_await(method, start)
  local co = current(method)
  local finished, results = false, nil
  local woke = false
  start(function(...)
    if finished then return end
    finished = true
    if woke then
      self.waiting[co] = nil
      self:_resume(co, ...)
    else
      results = { n = select("#", ...), ... }
    end
  end)
  if finished then return unpack(results, 1, results.n) end
  woke = true
  self.waiting[co] = method
  return yield()
end

-- Start fn(...) as a coroutine of its own; it runs until its first wait.
function Engine:spawn(fn, ...)
  local co = coroutine.create(fn)
  self.live = self.live + 1
  self:_resume(co, ...)
  return co
end

-- Run fn(...) and everything it spawns until all of it has finished.
-- Returns fn's results. A script error closes nothing by itself: the caller
-- (or the garbage collector) closes the engine.
function Engine:run(fn, ...)
  local results
  local function pack(...) return { n = select("#", ...), ... } end
  self:spawn(function(...) results = pack(fn(...)) end, ...)
  local ok, err = self.core:run()
  if not ok then error(err, 0) end
  if not results then
    local what = {}
    for _, m in pairs(self.waiting) do what[#what + 1] = m end
    error("sonde: engine:run() ended with coroutines still waiting (in "
      .. table.concat(what, ", ") .. ") and nothing pending", 0)
  end
  return unpack(results, 1, results.n)
end

-- Send one probe and wait for its outcome (a result table: status, kind,
-- addr, rtt, ttl, reply_ttl, error = { name, message }, ...).
-- A probe the engine refuses outright returns nil, "ENAME: message", "ENAME".
function Engine:probe(spec)
  local id, err, name
  local r = { self:_await("probe", function(done)
    id, err, name = self.core:probe(spec, done)
    if not id then done(nil) end
  end) }
  if not id then return nil, err, name end
  return r[1]
end

-- Start a probe without waiting: cb(result) runs when it ends. Returns the
-- probe's id (for set_wait/cancel) or nil, message, name.
function Engine:probe_async(spec, cb)
  return self.core:probe(spec, cb)
end

-- Send every spec at once; wait for all; results in the order of specs.
function Engine:probe_all(specs)
  local results, left = {}, #specs
  if left == 0 then return results end
  self:_await("probe_all", function(done)
    for i, spec in ipairs(specs) do
      local id, err, name = self.core:probe(spec, function(r)
        results[i] = r
        left = left - 1
        if left == 0 then done() end
      end)
      if not id then
        results[i] = { status = "failed", ttl = spec.ttl, error = { name = name, message = err } }
        left = left - 1
      end
    end
    if left == 0 then done() end
  end)
  return results
end

function Engine:sleep(seconds)
  self:_await("sleep", function(done) self.core:after(seconds, done) end)
end

-- Call fn() once after seconds; returns a token for cancel_timer.
function Engine:after(seconds, fn)
  return self.core:after(seconds, fn)
end

function Engine:cancel_timer(token) return self.core:unwatch(token) end

-- Resolve a host name: a list of address strings (family 4, 6 or nil for
-- both), or nil, "ENAME: message", "ENAME".
function Engine:resolve(host, family)
  return self:_await("resolve", function(done)
    local ok, err, code = self.core:resolve(host, family or 0, done)
    if not ok then done(nil, err, code) end
  end)
end

-- A DNS lookup of c-ares (core:reverse, core:txt) awaited, given up after
-- timeout seconds with ETIMEDOUT (the query itself goes on to its own end).
local function dns_await(self, method, arg, timeout, what)
  return self:_await(method, function(done)
    local token = self.core:after(timeout or 2, function()
      done(nil, "ETIMEDOUT: " .. what .. " timed out", "ETIMEDOUT")
    end)
    local ok, err, code = self.core[method](self.core, arg, function(...)
      self.core:unwatch(token)
      done(...)
    end)
    if not ok then
      self.core:unwatch(token)
      done(nil, err, code)
    end
  end)
end

--- The name of an address: /etc/hosts first, then a PTR query.
-- @param addr a numeric IPv4 or IPv6 address
-- @param timeout seconds to wait at most (default 2)
-- @return the name, or nil, "ENAME: message", "ENAME" (ENOTFOUND, ETIMEDOUT, ...)
function Engine:reverse(addr, timeout)
  return dns_await(self, "reverse", addr, timeout, "reverse lookup")
end

--- The TXT records of a DNS name.
-- @param name the name to query (no search domains are applied)
-- @param timeout seconds to wait at most (default 2)
-- @return a list of strings (each record's strings joined), or nil, msg, ENAME
function Engine:txt(name, timeout)
  return dns_await(self, "txt", name, timeout, "TXT lookup")
end

--- The per-try timeout and the tries of DNS queries (reverse, txt);
-- otherwise resolv.conf's. Before the first lookup only.
-- @param o { timeout = seconds, tries = n }
-- @return true, or nil, msg, ENAME
function Engine:resolver(o)
  return self.core:resolver(o)
end

-- A one-shot event: any number of coroutines wait(); fire(...) wakes them
-- all with its values (and later waits return them at once).
function Engine:event()
  local eng, waiters, fired = self, {}, nil
  local ev = {}
  function ev.wait()
    if fired then return unpack(fired, 1, fired.n) end
    return eng:_await("event", function(done) waiters[#waiters + 1] = done end)
  end
  function ev.fire(...)
    if fired then return end
    fired = { n = select("#", ...), ... }
    for _, w in ipairs(waiters) do w(...) end
  end
  function ev.fired() return fired ~= nil end
  return ev
end

-- A FIFO between coroutines: push(v) never waits; pop() waits while empty.
-- close() wakes a waiting pop() with nil.
function Engine:queue()
  -- items[head .. tail] wait to be popped. (Not #items: once the first
  -- items are popped the table has a hole at its start, and # of a table
  -- with holes may point before head, where a push would be lost.)
  local eng, items, head, tail, waiter, closed = self, {}, 1, 0, nil, false
  local q = {}
  function q.push(v)
    if waiter then
      local w = waiter
      waiter = nil
      w(v)
    else
      tail = tail + 1
      items[tail] = v
    end
  end
  function q.pop()
    if items[head] ~= nil then
      local v = items[head]
      items[head] = nil
      head = head + 1
      return v
    end
    if closed then return nil end
    return eng:_await("queue", function(done) waiter = done end)
  end
  function q.close()
    closed = true
    if waiter then
      local w = waiter
      waiter = nil
      w(nil)
    end
  end
  return q
end

function Engine:set_wait(id, seconds) return self.core:set_wait(id, seconds) end
function Engine:cancel(id) return self.core:cancel(id) end
-- Read the replies that have arrived and wait unread, ending their probes
-- now (their callbacks run before it returns); -> how many packets. For a
-- timer about to give up on probes: libuv runs due timers before it reads
-- sockets, so after the process was kept off the CPU a reply that came in
-- time may not have been read yet.
function Engine:read_pending() return self.core:read_pending() end
function Engine:now() return self.core:now() end
-- The source address a probe to addr would leave from (a routing
-- decision; nothing is sent): over interface iface when given (a probe's
-- iface field), src when given (a probe's src field: checked one of this
-- host's addresses). -> the address, or nil, "ENAME: message", "ENAME"
-- (ENODEV: no such interface; EADDRNOTAVAIL: src is not local).
function Engine:source(addr, iface, src) return self.core:source(addr, iface, src) end
-- true: raw sockets; false: unprivileged; nil: no probe of that family yet.
function Engine:privileged(family) return self.core:privileged(family) end

-- How TCP probes of a family (4 or 6) without tcp_mode go out: "syn" or
-- "connect" (decided now), or nil, "ENAME: message", "ENAME" when the
-- engine's tcp_mode is "syn" and it cannot send SYNs (EPERM).
function Engine:tcp_mode(family) return self.core:tcp_mode(family) end
function Engine:stats() return self.core:stats() end
function Engine:on_signal(name, fn) return self.core:on_signal(name, fn) end

--- Read the terminal on standard input, key by key, on this engine's loop.
-- Puts it in raw mode (no echo, no line editing, no signal keys: Ctrl-C
-- arrives as "\3") until the reader is closed; the engine's close, the
-- reader's collection and the process's exit put it back too. The reader
-- does not keep eng:run() going.
-- @param handlers table: `on_key = function(bytes)` (what was typed; at the
--   end of input `nil, "EOF: end of file", "EOF"`, once), `on_resize =
--   function(columns, rows)` (the window changed size, SIGWINCH)
-- @return a reader: `reader:winsize()` -> columns, rows; `reader:close()`
--   -> true (a second close: nil, "tty already closed"); or nil,
--   "ENOTTY: ...", "ENOTTY" when standard input is no terminal
function Engine:tty(handlers) return self.core:tty(handlers) end
function Engine:close() return self.core:close() end

M.now = core.now
M.version = core.version
M.errors = core.errors

return M
