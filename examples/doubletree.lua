-- examples/doubletree.lua - a Doubletree-style campaign: trace many
-- targets from one host without probing again what earlier traces saw.
--
--   sonde run examples/doubletree.lua START_TTL TARGET [TARGET ...]
--
-- Routes from one host to many targets form a tree rooted at the host:
-- near the host they share their hops. Doubletree (Donnet et al.,
-- SIGMETRICS 2005) starts each trace in the middle, at START_TTL, and
--   * probes forward (START_TTL + 1, ...) until the target answers;
--   * probes backward (START_TTL - 1, ..., 1) until it meets an interface
--     of the "local stop set": one that an earlier trace of this campaign
--     already saw. From there towards the host the path is known.
-- (Doubletree also stops forward probing at (interface, target) pairs other
-- monitors saw: its global stop set. With one monitor it is empty.)
--
-- Probes are ICMP echo requests in one flow per target (the checksum held
-- at one value: Paris), one per hop, tried again once if unanswered.
-- Prints each target's path, what it cost, and the total; the path of a
-- target whose backward probing stopped early ends in the earlier trace
-- that saw the meeting interface.

local sonde = require "sonde"

local args = { ... }
local start = tonumber(args[1])
if not start or not args[2] then
  io.stderr:write("usage: sonde run doubletree.lua START_TTL TARGET [TARGET ...]\n")
  return 2
end

local MAX_TTL = 30
local eng = assert(sonde.engine{})
local stop_set = {}            -- interface -> the target whose trace saw it
local total, plain = 0, 0

-- One hop of a target's trace: the address that answered (or nil) and
-- whether it is the target; counts the probes.
local function hop(dst, ttl)
  for _ = 1, 2 do
    total = total + 1
    local r = eng:probe{ dst = dst, proto = "icmp", ttl = ttl, wait = 1, checksum = 0x5053 }
    if r.status == "reply" then
      return r.addr, r.kind == "echo_reply"
    elseif r.status ~= "timeout" then
      error(("%s at TTL %d: %s"):format(dst, ttl, r.error and r.error.message or r.status))
    end
  end
end

eng:run(function()
  for i = 2, #args do
    local dst = args[i]
    local path, probed, met = {}, {}, nil
    -- forward from START_TTL until the target answers
    local last = MAX_TTL
    for ttl = start, MAX_TTL do
      local a, reached = hop(dst, ttl)
      path[ttl], probed[#probed + 1] = a, ttl
      if reached then last = ttl break end
    end
    -- backward until an interface an earlier trace saw
    if not (path[start] and stop_set[path[start]]) then
      for ttl = start - 1, 1, -1 do
        local a = hop(dst, ttl)
        path[ttl], probed[#probed + 1] = a, ttl
        if a and stop_set[a] then met = ttl break end
      end
    else
      met = start
    end
    plain = plain + last          -- a full trace: one probe per hop
    table.sort(probed)
    io.write(("%s: probed hops %d-%d (%d hops)"):format(dst, probed[1], probed[#probed], #probed))
    if met then
      io.write(("; stopped at hop %d: %s seen by the trace to %s\n"):format(
        met, path[met], stop_set[path[met]]))
    else
      io.write("\n")
    end
    for ttl = 1, last do
      if path[ttl] then io.write(("%4d  %s\n"):format(ttl, path[ttl])) end
    end
    for ttl = 1, last do
      if path[ttl] and not stop_set[path[ttl]] then stop_set[path[ttl]] = dst end
    end
  end
end)
eng:close()
io.write(("total: %d probes for %d targets (a probe per hop of every full trace: %d)\n")
  :format(total, #args - 1, plain))
return 0
