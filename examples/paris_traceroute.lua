-- examples/paris_traceroute.lua - a Paris traceroute in a few lines of Lua.
--
--   sonde run examples/paris_traceroute.lua TARGET [udp|icmp] [MAX_TTL]
--
-- A load balancer that hashes flows (addresses, protocol, ports) sends
-- each flow down one branch. Classic traceroute changes the flow with every
-- probe (the destination port), so on a load-balanced path its hops may
-- mix branches. Paris traceroute keeps every probe in ONE flow and names
-- the probe with a field load balancers do not hash:
--   udp   fixed ports; the UDP checksum names the probe (needs raw
--         sockets: root or CAP_NET_RAW)
--   icmp  the ICMP checksum held at one value; the echo sequence (chosen
--         by the engine) names the probe
-- The engine makes the checksum come out at the value asked for
-- (`checksum = N`, 1..65534) with two payload bytes.
--
-- TARGET must be a numeric address (eng:resolve would look names up).

local sonde = require "sonde"

local target, proto, max_ttl = ...
proto = proto or "udp"
max_ttl = tonumber(max_ttl) or 30
if not target or (proto ~= "udp" and proto ~= "icmp") then
  io.stderr:write("usage: sonde run paris_traceroute.lua TARGET [udp|icmp] [MAX_TTL]\n")
  return 2
end

local QUERIES = 3
local eng = assert(sonde.engine{})

-- The probe of sequence `seq` at `ttl`: the same flow every time.
local function spec(ttl, seq)
  local s = { dst = target, proto = proto, ttl = ttl, wait = 2, seq = seq }
  if proto == "udp" then
    s.dport = 33434            -- fixed; the source port is the engine's own, fixed too
    s.checksum = seq % 65534 + 1
  else
    s.checksum = 0x5053        -- constant for the whole trace
  end
  return s
end

local reached, status = false, 1
eng:run(function()
  local seq = 0
  for ttl = 1, max_ttl do
    -- the hop's probes all at once, results in order
    local specs = {}
    for q = 1, QUERIES do
      seq = seq + 1
      specs[q] = spec(ttl, seq)
    end
    local line = { ("%2d "):format(ttl) }
    local last
    for _, r in ipairs(eng:probe_all(specs)) do
      if r.status == "reply" then
        if r.addr ~= last then line[#line + 1] = " " .. r.addr; last = r.addr end
        line[#line + 1] = ("  %.3f ms"):format(r.rtt * 1000)
        if r.addr == target then reached = true end
      elseif r.status == "timeout" then
        line[#line + 1] = " *"
      else                     -- a local error, e.g. ENOTSUP without raw sockets
        io.write(table.concat(line), "\n")
        io.stderr:write("paris_traceroute: ", r.error.name, ": ", r.error.message, "\n")
        status = 3
        return
      end
    end
    io.write(table.concat(line), "\n")
    if reached then status = 0 return end
  end
end)
eng:close()
return status
