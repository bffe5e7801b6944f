-- Sweep: one probe per target, as many in flight as the engine's window
-- allows, and one record per target saying whether it is alive.
--
--   icmp  an ICMP echo request (ICMPv6 for IPv6 targets); alive: the
--         target's echo reply
--   tcp   a TCP connect to `port` (SYN) from a kernel-chosen source port;
--         alive: the target's SYN-ACK (open) or RST (closed): either way a
--         host answered
--   udp   a UDP datagram to `port` (a port that should be closed); alive:
--         the target's ICMP port (or protocol) unreachable, or a UDP reply
-- Anything else is not alive: no answer within the wait (timeout), an
-- answer from another address (a router's host unreachable, a filter's
-- administratively prohibited), or a local error (failed, with its name).
--
-- The loop keeps at most `limit` probes in the engine (in flight or queued
-- for the rate) and starts the next target from the callback of the probe
-- that ended: no coroutine per target, no table of all the targets — the
-- only per-target state is the address of each probe still in the engine,
-- in the slot that is also the probe's seq.
--
--   local sweep = require "sonde.strategy.sweep"
--   local summary = sweep.run{ eng = eng, next = iterator, protocol = "icmp",
--     wait = 1, on_record = function(rec) ... end }

local defaults = require "sonde.defaults"

local M = { name = "sweep" }

M.DEFAULT_PORT = { tcp = defaults.TCP_PORT, udp = defaults.UDP_PORT }

-- The fields of a record, in the order of CSV and Markdown columns.
M.COLUMNS = { "addr", "alive", "status", "kind", "code", "from", "rtt", "reply_ttl",
  "protocol", "port", "error" }
-- Every key a record may have (the formats' meta.fields).
M.FIELDS = { "type", "version" }
for _, k in ipairs(M.COLUMNS) do M.FIELDS[#M.FIELDS + 1] = k end

-- Did the target `dst` answer a probe of `protocol` with result r? (A
-- link-local target's zone, fe80::1%eth0, is not in the address that
-- answered.)
function M.alive(r, dst, protocol)
  if r.status ~= "reply" or r.addr ~= dst:gsub("%%.*$", "") then return false end
  local kind = r.kind
  if protocol == "icmp" then return kind == "echo_reply" end
  if protocol == "tcp" then return kind == "tcp_synack" or kind == "tcp_rst" end
  return kind == "udp_reply"
    or (kind == "dest_unreachable" and (r.code == "port" or r.code == "protocol"))
end

-- The record of target `addr` from the probe's result r (a table of
-- scripts/sonde/schema/sonde.schema.json's "sweep"). o: protocol, port.
function M.record(addr, r, o)
  local rec = { type = "sweep", version = 1, addr = addr, protocol = o.protocol,
    port = o.port, status = r.status, alive = M.alive(r, addr, o.protocol) }
  if r.status == "reply" then
    rec.kind, rec.code, rec.from, rec.rtt, rec.reply_ttl =
      r.kind, r.code, r.addr, r.rtt, r.reply_ttl
  end
  local e = r.error
  if e then rec.error = { name = e.name, message = e.message, call = e.call } end
  return rec
end

-- The probe spec builder: -> function(addr, seq) -> spec. The table is
-- reused (the engine copies what it needs when the probe starts).
-- o: protocol, port, ttl, wait, src and iface (the probe fields; nil: none).
function M.new(o)
  local spec = { proto = o.protocol, ttl = o.ttl or defaults.TTL, wait = o.wait,
    src = o.src, iface = o.iface }
  if o.protocol == "tcp" then
    spec.dport = o.port or M.DEFAULT_PORT.tcp
    spec.bind = "kernel"
  elseif o.protocol == "udp" then
    spec.dport = o.port or M.DEFAULT_PORT.udp
  end
  return function(addr, seq)
    spec.dst, spec.seq = addr, seq
    return spec
  end
end

-- Run the sweep. o:
--   eng          the engine (inside eng:run())
--   next()       the next target address, or nil when there are no more
--   protocol, port, ttl, wait   as M.new
--   limit        probes kept in the engine at most (default: 4096)
--   on_record(rec)  each target's record, as its probe ends
--   on_stop(stop)   hands over a function that stops the sweep at once
--                (from a signal handler or a closed output): nothing more
--                is started, what is in the engine is cancelled and left
--                out of the records
--   progress(state), every   called every `every` seconds (default 0.25)
--                with { done, alive, started, elapsed } while it runs
-- -> the summary: { done, alive, timeouts, other (answers that do not make
-- the target alive), failed (failed or skipped), sent (probes the engine
-- put on the wire), dropped (packets the kernel dropped because the
-- receive buffer was full: replies lost here, not on the network), started
-- (Unix time), duration (seconds), rate (probes per second), stop_reason
-- ("done" | "stopped") }.
function M.run(o)
  local eng = o.eng
  local core = eng.core
  local limit = o.limit or 4096
  local next_target, on_record = o.next, o.on_record
  local make_spec = M.new(o)
  local ro = { protocol = o.protocol, port = o.protocol ~= "icmp"
    and (o.port or M.DEFAULT_PORT[o.protocol]) or nil }
  -- Probe slots 1..limit: a probe's seq is its slot, where its target's
  -- address and its id wait for its result. Dense arrays and a stack of
  -- free slots: a table keyed by an ever-growing sequence, with most keys
  -- deleted, would be rehashed over and over.
  local slot_addr, slot_id, free, nfree = {}, {}, {}, 0
  for i = limit, 1, -1 do
    slot_addr[i], slot_id[i] = false, false
    nfree = nfree + 1
    free[nfree] = i
  end
  local exhausted, stopped = false, false
  local s = { done = 0, alive = 0, timeouts = 0, other = 0, failed = 0 }
  local started, t0 = os.time(), eng:now()
  local idle = eng:event()
  local stats0 = eng:stats()

  local function count(rec)
    s.done = s.done + 1
    if rec.alive then s.alive = s.alive + 1
    elseif rec.status == "timeout" then s.timeouts = s.timeouts + 1
    elseif rec.status == "reply" then s.other = s.other + 1
    else s.failed = s.failed + 1 end
    on_record(rec)
  end

  local feed

  local function finished(r)
    local n = r.seq
    local addr = slot_addr[n]
    slot_addr[n], slot_id[n] = false, false
    nfree = nfree + 1
    free[nfree] = n
    if not (stopped and r.status == "failed" and r.error and r.error.name == "ECANCELED") then
      count(M.record(addr, r, ro))
    end
    if not stopped and not exhausted then feed() end
    if nfree == limit and (exhausted or stopped) then idle.fire() end
  end

  function feed()
    while nfree > 0 and not stopped do
      local addr = next_target()
      if not addr then
        exhausted = true
        return
      end
      local n = free[nfree]
      local id, err, name = core:probe(make_spec(addr, n), finished)
      if id then
        nfree = nfree - 1
        slot_addr[n], slot_id[n] = addr, id
      else
        count(M.record(addr, { status = "failed", seq = n,
          error = { name = name, message = err } }, ro))
      end
    end
  end

  if o.on_stop then
    o.on_stop(function()
      if stopped then return end
      stopped = true
      for i = 1, limit do
        if slot_id[i] then eng:cancel(slot_id[i]) end
      end
      if nfree == limit then idle.fire() end
    end)
  end

  local ticker
  if o.progress then
    local every = o.every or 0.25
    local function tick()
      o.progress({ done = s.done, alive = s.alive, started = started,
        elapsed = eng:now() - t0 })
      if not idle.fired() then ticker = eng:after(every, tick) end
    end
    ticker = eng:after(every, tick)
  end

  feed()
  if nfree < limit then idle.wait() end
  if ticker then eng:cancel_timer(ticker) end

  s.started = started
  s.duration = eng:now() - t0
  local stats1 = eng:stats()
  s.sent = stats1.sent - stats0.sent
  s.dropped = (stats1.dropped or 0) - (stats0.dropped or 0)
  s.rate = s.duration > 0 and s.sent / s.duration or 0
  s.stop_reason = stopped and "stopped" or "done"
  return s
end

return M
