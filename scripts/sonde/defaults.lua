-- sonde.defaults: the values the bundled commands and strategies start
-- from when the command line does not say. One table, so that a command's
-- --help, its strategy and its output agree.
--
--   local defaults = require "sonde.defaults"
--   local port = defaults.port(opts.protocol, opts.port)

local core = require "sonde.core"

local M = {}

-- What a probe gets when its table does not say is the bindings' schema
-- (core.probe_fields): the commands start from the same values, so that
-- sonde's commands and a script's own probes agree.
local field = {}
for _, f in ipairs(core.probe_fields) do field[f.name] = f end

-- The TTL (IPv6: hop limit) of probes that are not stepping through the
-- hops (ping, tcping, sweep): 64, Linux's net.ipv4.ip_default_ttl and
-- net.ipv6.conf.*.hop_limit, so that a probe goes as far as the host's
-- own traffic does.
M.TTL = field.ttl.default

-- The destination port of UDP probes, one more per probe where the
-- command varies it: 33434, traceroute's base, chosen (with the ports
-- above it) as unlikely to have a listener, so that the destination
-- answers with ICMP port unreachable.
M.UDP_PORT = field.dport.default

-- The destination port of TCP probes: 80, the port a host that accepts
-- any TCP connection most likely listens on, so that it answers with a
-- SYN-ACK (or a RST) rather than nothing.
M.TCP_PORT = field.dport.default_tcp

-- The source port of TCP trace probes when none is given: the base of
-- classic's (base + sequence) and Paris's fixed port.
M.TCP_SPORT = 33434

-- The first flow's source port (dublin, mda; flow N leaves from it
-- + N - 1): not the destination port (33434), so that a flow to this very
-- host does not reach its own socket.
M.FLOW_SPORT = 33456

-- How TCP probes go out (the engine's tcp_mode): "auto" is a half-open
-- SYN on a raw socket when the process may open one, else a connect();
-- "syn" insists on the SYN (EPERM without raw sockets), "connect" always
-- connects. A SYN reaches no application (the kernel answers the SYN-ACK
-- with RST); a connect() is a connection the service accepts and logs.
M.TCP_MODE = field.tcp_mode.default
M.TCP_MODES = {}
for i, v in ipairs(field.tcp_mode.values) do M.TCP_MODES[i] = v end

-- The --tcp-mode option of a command that sends TCP probes, with its
-- default (M.TCP_MODE unless given: tcping's is "connect").
function M.tcp_mode_option(default)
  default = default or M.TCP_MODE
  return { nil, "--tcp-mode", arg = "MODE", choices = M.TCP_MODES, default = default,
    help = "TCP probes: syn (one half-open SYN on a raw socket; no connection reaches the service, "
      .. "no retransmission), connect (a connect() per probe: works without privileges, the service "
      .. "accepts a connection), auto (syn with raw sockets, else connect); default " .. default }
end

-- The destination port for `proto` ("udp" or "tcp"; nil for "icmp"),
-- unless `given`.
function M.port(proto, given)
  if given then return given end
  if proto == "tcp" then return M.TCP_PORT end
  if proto == "udp" then return M.UDP_PORT end
  return nil
end

return M
