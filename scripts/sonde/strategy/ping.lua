-- Ping: one TTL, many rounds. Every round sends one probe towards the
-- destination at the same TTL; rounds start every `interval` seconds
-- whether or not the previous probe has come back (as ping does), so a
-- probe may be in flight while the next goes out, and each probe carries an
-- identity of its own:
--   icmp  echo request; id = o.icmp_id (else the engine's), seq = the
--         round's number (1, 2, ...), so that tcpdump shows what we print
--   udp   to a closed port: destination port = port + round - 1, wrapping
--         inside port..65535 (traceroute's and hping's habit: the port names
--         the probe on the engine's shared socket)
--   tcp   SYN to one port from a fresh socket with a kernel-chosen source
--         port (a connect probe: SYN-ACK or RST both say the host is up)
--
-- M.new(o) returns { spec = function(ttl, seq) }, the interface of every
-- trace strategy (sonde.strategy.classic), so sonde.strategy.mtr probes
-- with it too. M.run(o) runs the rounds on an engine.

local tracer = require "sonde.trace"

local defaults = require "sonde.defaults"

local M = { name = "ping" }

-- Did the destination dst itself answer? (an echo reply, a SYN-ACK or RST,
-- a UDP reply, or its own port/protocol unreachable: what ends a trace as
-- "reached")
function M.answered(r, dst)
  return tracer.final(r, dst) == "reached"
end

-- o: dst (numeric), proto ("icmp", "udp", "tcp"), port (UDP: the base
-- destination port, default 33434; TCP: the port, default 80), size
-- (payload bytes, ICMP/UDP), pattern (ICMP/UDP: the probe field, hex
-- digits), icmp_id (1..65535, optional), wait (seconds).
function M.new(o)
  local port = o.port or (o.proto == "tcp" and defaults.TCP_PORT or defaults.UDP_PORT)
  local s = { port = port }
  -- The spec of probe number seq (counted from 1), at ttl.
  function s.spec(ttl, seq)
    local spec = { dst = o.dst, proto = o.proto, ttl = ttl, wait = o.wait,
      seq = seq, size = o.size, pattern = o.pattern }
    if o.proto == "icmp" then
      if o.icmp_id then
        spec.icmp_id = o.icmp_id
        spec.icmp_seq = (seq - 1) % 65535 + 1
      end
    elseif o.proto == "udp" then
      spec.size = o.size
      spec.dport = port + (seq - 1) % (65536 - port)
    else
      spec.size = nil
      spec.pattern = nil
      spec.dport = port
      spec.bind = "kernel"
    end
    return spec
  end
  return s
end

-- Run the rounds. o:
--   eng, strategy (from M.new), ttl
--   count      rounds (nil: until interrupted); with deadline, the replies
--              to wait for (iputils ping -c with -w)
--   interval   seconds between the starts of two rounds
--   deadline   seconds (nil: none): no round starts after it, and every
--              probe's wait ends by it (iputils ping -w), so the run ends
--              then at the latest
--   answered(r) with deadline and count: does r count as a reply?
--   on_sent(seq)  each probe as it is handed to the engine (ping -f's dot)
--   on_result(r)  each outcome as it arrives (in the order they end, which
--                 may differ from the order they were sent)
--   interrupted() true once the run must stop; on_interrupt(stop) hands
--                 over a function that stops at once (call it from a
--                 signal handler): nothing more is sent, what is in flight
--                 is cancelled and left out of the results.
-- Returns { results = list in seq order, stop_reason = "done" |
-- "interrupted", started = Unix time, duration = seconds }.
-- A probe the engine refuses (nil, message, name) becomes a "failed"
-- outcome with that error, as in sonde.trace.
function M.run(o)
  local eng = o.eng
  local results = {}
  local inflight, n_inflight = {}, 0
  local idle = nil           -- event fired when nothing is in flight
  local pause = nil          -- the event the sender sleeps on
  local stopped = false
  local started, t0 = os.time(), eng:now()

  local function finished(r)
    if r.status == "failed" and r.error and r.error.name == "ECANCELED" and stopped then
      return                 -- ours: interrupted, not a network outcome
    end
    r.id = nil
    results[#results + 1] = r
    if o.on_result then o.on_result(r) end
  end

  local function stop()
    stopped = true
    for id in pairs(inflight) do eng:cancel(id) end
    if pause then pause.fire() end
  end
  if o.on_interrupt then o.on_interrupt(stop) end

  local deadline, replies = o.deadline, 0
  -- With a deadline, -c counts replies: rounds go on until that many came.
  local function enough(seq)
    if not o.count then return false end
    if deadline then return replies >= o.count end
    return seq >= o.count
  end
  local function left()
    return deadline and deadline - (eng:now() - t0) or math.huge
  end

  local seq = 0
  while not enough(seq) and not stopped and not o.interrupted() and left() > 0 do
    seq = seq + 1
    local round_start = eng:now()
    local rec = {}
    local spec = o.strategy.spec(o.ttl, seq)
    if deadline then
      spec.wait = math.max(0.001, math.min(spec.wait or o.wait or 2, left()))
    end
    local id, err, name = eng:probe_async(spec, function(r)
      if deadline and o.answered and o.answered(r) then
        replies = replies + 1
        if enough(seq) and pause then pause.fire() end
      end
      rec.done = true
      if rec.id then
        inflight[rec.id] = nil
        n_inflight = n_inflight - 1
      end
      finished(r)
      if n_inflight == 0 and idle then idle.fire() end
    end)
    if o.on_sent then o.on_sent(seq) end
    if not id then
      finished({ status = "failed", ttl = o.ttl, seq = seq,
        error = { name = name, message = err } })
    elseif not rec.done then
      rec.id = id
      inflight[id] = true
      n_inflight = n_inflight + 1
    end
    if enough(seq) or (o.count and not deadline and seq >= o.count) then break end
    if not stopped and not o.interrupted() then
      pause = eng:event()
      local token = eng:after(math.max(0, math.min(left(),
        o.interval - (eng:now() - round_start))), pause.fire)
      pause.wait()
      eng:cancel_timer(token)
      pause = nil
    end
  end
  if n_inflight > 0 then
    idle = eng:event()
    idle.wait()
  end
  table.sort(results, function(a, b) return a.seq < b.seq end)
  return { results = results, sent = seq,
    stop_reason = (stopped or o.interrupted()) and "interrupted" or "done",
    started = started, duration = eng:now() - t0 }
end

return M
