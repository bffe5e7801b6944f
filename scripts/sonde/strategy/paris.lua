-- Paris traceroute (Augustin et al., "Avoiding traceroute anomalies with
-- Paris traceroute", IMC 2006): every probe of the trace belongs to one
-- flow, so that a load balancer that hashes the flow sends them all down
-- the same branch, and the trace shows one real path instead of a mix of
-- several. What names each probe is kept out of the fields that load
-- balancers hash (addresses, protocol, ports, and for ICMP the first four
-- bytes of the header: type, code and checksum):
--
--   udp   fixed source and destination ports; the UDP checksum names the
--         probe (engine field `checksum`: two payload bytes make the
--         checksum come out at that value). Such probes leave from a raw
--         socket, so Paris UDP needs raw sockets (root or CAP_NET_RAW):
--         unprivileged, the engine fails them with ENOTSUP (the error
--         queue hands back the payload, not the header, so the probes of
--         one flow could not be told apart).
--   icmp  echo requests whose checksum is held at one value for the whole
--         trace; the echo sequence (the engine's) names the probe. Works
--         unprivileged too.
--   tcp   fixed source and destination ports. Sent as half-open SYNs
--         (o.tcp_mode "syn"), the probes of the trace are told apart by
--         their sequence numbers and go out together as UDP's do. As
--         connect()s (o.tcp_mode "connect": no raw sockets), two with the
--         same 4-tuple cannot be in flight at once: the trace sends one
--         probe at a time (the instance says so with `inflight = 1`), so
--         it is slower, above all across silent hops, which each cost the
--         full wait.
--
-- M.new(o) returns { spec = function(ttl, seq), inflight = nil | 1 }, the
-- interface of every trace strategy (sonde.strategy.classic).

local defaults = require "sonde.defaults"

local M = { name = "paris" }

-- The ICMP checksum every probe of a Paris ICMP trace carries.
M.ICMP_CHECKSUM = 0x5053
-- The source port of Paris TCP probes when none is given.
M.TCP_SPORT = defaults.TCP_SPORT

-- The checksum that names the probe of sequence seq (from 0): 1 .. 65534,
-- never 0 (UDP: "no checksum") nor 0xffff. Probes in flight at once have
-- distinct sequences, so distinct checksums, unless 65534 of them are.
function M.probe_checksum(seq)
  return seq % 65534 + 1
end

-- o: proto, dst, port (UDP/TCP destination port), sport (the source port of
-- every probe; UDP: nil lets the kernel choose one for the whole run, TCP:
-- default M.TCP_SPORT), tcp_mode ("syn" or "connect": how the engine sends TCP
-- probes, e:tcp_mode), checksum (ICMP: the held checksum, default
-- M.ICMP_CHECKSUM), size (ICMP/UDP payload bytes, at least 2), wait.
function M.new(o)
  local s = {}
  if o.proto == "tcp" and o.tcp_mode ~= "syn" then s.inflight = 1 end
  s.sport = o.proto == "tcp" and (o.sport or M.TCP_SPORT) or o.sport
  s.checksum = o.proto == "icmp" and (o.checksum or M.ICMP_CHECKSUM) or nil
  -- The spec of the seq-th probe (seq counts from 0), at ttl.
  function s.spec(ttl, seq)
    local spec = { dst = o.dst, proto = o.proto, ttl = ttl, wait = o.wait,
      seq = seq, size = o.size }
    if o.proto == "udp" then
      spec.dport = o.port
      spec.checksum = M.probe_checksum(seq)
      if s.sport then
        spec.bind = "fixed"
        spec.sport = s.sport
      end
    elseif o.proto == "icmp" then
      spec.checksum = s.checksum
    else
      spec.size = nil
      spec.dport = o.port
      spec.bind = "fixed"
      spec.sport = s.sport
    end
    return spec
  end
  return s
end

return M
