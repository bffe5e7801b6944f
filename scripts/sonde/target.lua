-- sonde.target: turning what a user typed into an address to probe.

local cli = require "sonde.cli"

local M = {}

-- The -4 and -6 options of every command that resolves names (sonde.args
-- entries; exclusive = { { "ipv4", "ipv6" } }).
M.IPV4_OPTION = { "-4", key = "ipv4", flag = true, help = "use IPv4 only" }
M.IPV6_OPTION = { "-6", key = "ipv6", flag = true, help = "use IPv6 only" }

-- 4 or 6 for a numeric IPv4/IPv6 address, nil for a name.
function M.family(s)
  if s:find(":", 1, true) then return 6 end
  if s:match("^%d+%.%d+%.%d+%.%d+$") then return 4 end
end

-- Which of a name's addresses (the resolver's list, in its order: RFC 6724's,
-- as getaddrinfo sorts them) to probe: the first of family (4, 6, or nil
-- for either); with prefer (4 or 6) and no family, the first of prefer if
-- there is one. iputils ping and mtr take getaddrinfo's first answer;
-- Linux traceroute the first IPv4 one when a name has both (its getaddr:
-- "when af not specified, choose DEF_AF if present"): sonde trace passes
-- prefer = 4. -> the address and its family, or nil.
function M.pick(addrs, family, prefer)
  if prefer and not family then
    for _, a in ipairs(addrs) do
      if M.family(a) == prefer then return a, prefer end
    end
  end
  for _, a in ipairs(addrs) do
    local f = M.family(a)
    if not family or f == family then return a, f end
  end
end

-- The address to probe: a numeric address as given, else the one M.pick
-- picks among the resolver's (family: 4, 6 or nil for either; prefer: see
-- M.pick). Raises the CLI's usage/runtime errors; must run inside
-- eng:run().
function M.resolve(eng, target, family, prefer)
  local fam = M.family(target)
  if fam then
    if family and fam ~= family then
      cli.usage_error("%s is an IPv%d address, but -%d was given", target, fam, family)
    end
    return target, fam
  end
  local addrs, err = eng:resolve(target, family)
  if not addrs then
    cli.runtime_error("cannot resolve '%s': %s", target, err)
  end
  local a, f = M.pick(addrs, family, prefer)
  if a then return a, f end
  cli.runtime_error("'%s' has no IPv%d address", target, family or 4)
end

-- The message of that EACCES: the errno's own ("prohibited by a local
-- firewall or policy") sends people to the wrong place.
M.ICMP_REFUSED = "ICMP datagram sockets are not allowed for this user's group (net.ipv4.ping_group_range)"

-- What to do about a probe that failed because this user may not open
-- ICMP datagram ("ping") sockets: Linux allows them only to the groups in
-- net.ipv4.ping_group_range (IPv6 included), and refuses the socket with
-- EACCES otherwise -- no firewall is involved. err: a result's error
-- table. -> the hint, or nil for any other error.
function M.icmp_hint(err)
  if type(err) ~= "table" or err.name ~= "EACCES"
      or not (err.call or ""):find("IPPROTO_ICMP", 1, true) then
    return nil
  end
  return "ICMP datagram sockets are not allowed for this user's group: allow them with "
    .. "'sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"', run with CAP_NET_RAW, "
    .. "or use --protocol udp or --protocol tcp"
end

-- The signals that end a one-shot command, with their numbers: the run
-- stops, what was collected is written and -o committed, and the exit
-- status is 128 + the number.
local ENDING = { SIGINT = 2, SIGTERM = 15, SIGHUP = 1, SIGQUIT = 3 }

-- Call on_stop(name) once on the first of SIGINT, SIGTERM, SIGHUP or
-- SIGQUIT (or of the list `names`, for a command that gives one of them
-- another meaning); the exit status that goes with it is
-- M.signal_status(name).
function M.on_interrupt(eng, on_stop, names)
  local seen
  for _, name in ipairs(names or { "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT" }) do
    eng:on_signal(name, function()
      if seen then return end
      seen = name
      on_stop(name)
    end)
  end
end

function M.signal_status(name)
  return 128 + (ENDING[name] or 2)
end

return M
