-- engine:read_pending(): the replies that have arrived but wait unread in
-- the engine's sockets end their probes at once. A timer that is about to
-- give up on probes calls it first: libuv runs the timers that are due
-- before it polls for I/O, so a process kept off the CPU past a deadline
-- wakes up to its timer while the reply that came in time is still unread.
-- Over loopback only: a UDP probe to a closed port of 127.0.0.1 is answered
-- by the kernel's port unreachable within microseconds.

local sonde = require "sonde"

-- Keep the CPU (and so the loop) busy for `seconds`, reading nothing.
local function busy(seconds)
  local t = os.clock() + seconds
  while os.clock() < t do end
end

describe("engine:read_pending()", function()
  it("ends a probe whose reply is waiting unread, before it returns", function()
    local eng = assert(sonde.engine{ privileged = "raw" })
    local got, n, before
    eng:run(function()
      assert(eng.core:probe({ dst = "127.0.0.1", proto = "udp", dport = 33434, wait = 5 },
        function(r) got = r end))
      -- the probe goes out from the engine's timer: let the loop send it
      for _ = 1, 100 do
        if eng:stats().sent >= 1 then break end
        eng:sleep(0)
      end
      assert.are.equal(1, eng:stats().sent)
      -- the loop does not read while this coroutine runs: the port
      -- unreachable arrives and waits in the raw socket's queue
      busy(0.2)
      before = got
      n = eng:read_pending()
    end)
    eng:close()
    assert.is_nil(before)
    assert.is_true(n >= 1)
    assert.are.same({ "reply", "dest_unreachable", "port", "127.0.0.1" },
      { got.status, got.kind, got.code, got.addr })
    -- its RTT is the kernel's receive time, not the time it was read
    assert.is_true(got.rtt < 0.1, tostring(got.rtt))
  end)

  it("reads nothing and ends nothing when nothing has arrived", function()
    local eng = assert(sonde.engine{ privileged = "raw" })
    local n
    eng:run(function() n = eng:read_pending() end)
    eng:close()
    assert.are.equal(0, n)
  end)
end)
