-- examples/firewall_finder.lua - find the first hop that drops TCP to a port.
--
--   sonde run examples/firewall_finder.lua TARGET [PORT] [CONTROL_PORT]
--
-- Two kinds of probes go out at every TTL: TCP SYNs to PORT (default 443),
-- the traffic we suspect is filtered, and TCP SYNs to CONTROL_PORT (default
-- 80), the same protocol to a port that passes. A router sends "time
-- exceeded" for a probe whose TTL runs out before it filters what it
-- forwards, so the filtering router still answers the PORT probes that
-- expire at it, and nothing after it does. The first TTL where the control
-- probes are answered and the PORT probes are not is one hop after the
-- firewall: the firewall is the last hop that answered PORT probes.
--
-- Each TCP probe is a connect() with a short TTL from its own source port
-- (bind "kernel"); two tries per TTL tell a filter from one lost packet.
-- Prints one line per hop, then "firewall: hop N ADDR" (exit 0), or
-- "no firewall: PORT reaches TARGET" (exit 1).

local sonde = require "sonde"

local target, port, control = ...
port, control = tonumber(port) or 443, tonumber(control) or 80
if not target then
  io.stderr:write("usage: sonde run firewall_finder.lua TARGET [PORT] [CONTROL_PORT]\n")
  return 2
end

local MAX_TTL, TRIES = 30, 2
local eng = assert(sonde.engine{})

local function tcp(ttl, dport)
  return { dst = target, proto = "tcp", ttl = ttl, dport = dport, bind = "kernel", wait = 1 }
end

-- The address that answered first among results (or nil).
local function answer(results)
  for _, r in ipairs(results) do
    if r.status == "reply" then return r.addr, r end
  end
end

local status = 1
eng:run(function()
  local last_hop, last_addr     -- the last TTL that answered PORT probes
  for ttl = 1, MAX_TTL do
    local specs = { tcp(ttl, control) }
    for i = 1, TRIES do specs[i + 1] = tcp(ttl, port) end
    local rs = eng:probe_all(specs)
    local ctl, ctl_r = answer({ rs[1] })
    local got = answer({ unpack(rs, 2) })
    io.write(("%2d  %s/%d: %s   tcp/%d: %s\n"):format(ttl, "tcp", control, ctl or "*",
      port, got or "*"))
    if got then
      last_hop, last_addr = ttl, got
      if got == target then
        io.write(("no firewall: tcp/%d reaches %s\n"):format(port, target))
        return
      end
    elseif ctl then
      -- the control passed where PORT did not: the filter is behind us
      io.write(("firewall: hop %s %s (drops tcp/%d it forwards; hop %d %s answers tcp/%d)\n")
        :format(last_hop or 0, last_addr or "(this host)", port, ttl, ctl, control))
      status = 0
      return
    end
    if ctl_r and ctl_r.kind ~= "time_exceeded" then
      io.write(("no firewall found: the control reached %s at hop %d\n"):format(ctl, ttl))
      return
    end
  end
end)
eng:close()
return status
