-- Classic traceroute (Van Jacobson's): every probe is its own flow. UDP
-- varies the destination port (base + sequence), ICMP the echo sequence, TCP
-- the source port (base + sequence, the "sequence" binding policy). On a
-- load-balanced path successive probes may take different branches.

local M = { name = "classic" }

-- o: proto, dst, port (destination port base for UDP / port for TCP), sport
-- (source port base for TCP), size, wait.
function M.new(o)
  local s = {}
  -- The spec of the seq-th probe (seq counts from 0), at ttl.
  function s.spec(ttl, seq)
    local spec = { dst = o.dst, proto = o.proto, ttl = ttl, wait = o.wait,
      seq = seq, size = o.size }
    if o.proto == "udp" then
      spec.dport = (o.port + seq - 1) % 65535 + 1
    elseif o.proto == "tcp" then
      spec.dport = o.port
      spec.bind = o.bind or "sequence"
      spec.sport = o.sport
      if spec.bind == "sequence" then
        -- Ports run from the base upwards and wrap inside 1024..65535.
        spec.seq = seq % (65536 - o.sport)
      end
    end
    return spec
  end
  return s
end

return M
