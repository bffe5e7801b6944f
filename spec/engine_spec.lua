-- The Lua API of the engine (require "sonde"), over loopback only.

local helpers = require "helpers"
local sonde = require "sonde"

local function fds()
  return helpers.fd_count()
end

-- function(spec) -> the error e:probe(spec) raises (it must raise).
local function raiser(eng)
  return function(spec)
    local ok, err = pcall(eng.core.probe, eng.core, spec, print)
    assert.is_false(ok)
    return err
  end
end

describe("sonde.core without privileges", function()
  it("names every errno of the map with its message and status", function()
    local e = sonde.errors.EADDRINUSE
    assert.are.equal("skipped", e.status)
    assert.matches("address already in use", e.message)
    assert.are.equal("failed", sonde.errors.EADDRNOTAVAIL.status)
    assert.are.equal("reply", sonde.errors.ECONNREFUSED.status)
  end)

  it("rejects an unknown engine option, naming it", function()
    assert.has_error(function() sonde.engine{ rat = 5 } end, "engine: unknown field 'rat'")
  end)

  it("rejects a probe field of the wrong type or range, naming it", function()
    local eng = assert(sonde.engine())
    assert.has_error(function() eng.core:probe({ dst = "127.0.0.1", proto = "udp", ttl = 300 }, print) end)
    local ok, err = pcall(eng.core.probe, eng.core, { dst = "127.0.0.1", proto = "udp", bogus = 1 }, print)
    assert.is_false(ok)
    assert.matches("probe: unknown field 'bogus'", err)
    ok, err = pcall(eng.core.probe, eng.core, { dst = "not-an-address", proto = "udp" }, print)
    assert.is_false(ok)
    assert.matches("field 'dst' is not a numeric IPv4/IPv6 address: 'not%-an%-address'", err)
    ok, err = pcall(eng.core.probe, eng.core, { dst = "127.0.0.1", proto = "sctp" }, print)
    assert.is_false(ok)
    assert.matches("field 'proto' has an invalid value 'sctp'", err)
    assert.is_true(eng:close())
  end)

  it("rejects an IP header field for the wrong family, of the wrong type or out of range, naming it", function()
    local eng = assert(sonde.engine())
    local raised = raiser(eng)
    assert.matches("probe: field 'ip_id' is for IPv4 destinations",
      raised{ dst = "::1", proto = "icmp", ip_id = 1 })
    assert.matches("probe: field 'ip_id' must be from 1 to 65535 %(got 0%)",
      raised{ dst = "127.0.0.1", proto = "udp", ip_id = 0 })
    assert.matches("probe: field 'ip_id' must be an integer %(got 1%.5%)",
      raised{ dst = "127.0.0.1", proto = "udp", ip_id = 1.5 })
    assert.matches("probe: field 'flow_label' is for IPv6 destinations",
      raised{ dst = "127.0.0.1", proto = "udp", flow_label = 1 })
    assert.matches("probe: field 'flow_label' must be from 0 to 1048575 %(got 1048576%)",
      raised{ dst = "::1", proto = "udp", flow_label = 0x100000 })
    assert.matches("probe: field 'flow_label' must be a number %(got string%)",
      raised{ dst = "::1", proto = "udp", flow_label = "1" })
    assert.matches("probe: field 'df' must be a boolean %(got number%)",
      raised{ dst = "127.0.0.1", proto = "udp", df = 1 })
    assert.matches("probe: field 'df' must be a boolean %(got string%)",
      raised{ dst = "::1", proto = "tcp", df = "yes" })
    assert.is_true(eng:close())
  end)

  it("rejects a malformed source, one of the other family, or an interface name with a NUL, naming the field", function()
    local eng = assert(sonde.engine())
    local raised = raiser(eng)
    assert.matches("probe: field 'src' is not a numeric IPv4/IPv6 address: '198%.18%.1'",
      raised{ dst = "127.0.0.1", proto = "udp", src = "198.18.1" })
    assert.matches("probe: field 'src' must be of dst's family",
      raised{ dst = "127.0.0.1", proto = "icmp", src = "::1" })
    assert.matches("probe: field 'src' must be of dst's family",
      raised{ dst = "::1", proto = "tcp", src = "127.0.0.1" })
    assert.matches("probe: field 'iface' holds a NUL byte", raised{ dst = "::1", proto = "udp", iface = "lo\0x" })
    assert.matches("probe: field 'iface' is longer than 15 bytes",
      raised{ dst = "::1", proto = "udp", iface = string.rep("x", 16) })
    -- e:source asks what a probe would: the route's, or over an interface
    assert.are.equal("127.0.0.1", eng:source("127.0.0.1", "lo"))
    local ok, err, name = eng:source("127.0.0.1", "nosuchdev0")
    assert.is_nil(ok)
    assert.are.equal("ENODEV", name, err)
    assert.is_true(eng:close())
  end)

  it("treats a second close as a soft error, not a second close", function()
    local eng = assert(sonde.engine())
    assert.is_true(eng:close())
    local ok, err = eng:close()
    assert.is_nil(ok)
    assert.are.equal("engine already closed", err)
  end)

  it("reports a coroutine left waiting with nothing pending", function()
    local eng = assert(sonde.engine())
    local ok, err = pcall(eng.run, eng, function() eng:event().wait() end)
    assert.is_false(ok)
    assert.matches("coroutines still waiting %(in event%)", err)
    eng:close()
  end)

  it("sleeps and runs spawned coroutines concurrently", function()
    local eng = assert(sonde.engine())
    local order = {}
    local t0 = sonde.now()
    eng:run(function()
      eng:spawn(function() eng:sleep(0.05); order[#order + 1] = "b" end)
      eng:spawn(function() eng:sleep(0.01); order[#order + 1] = "a" end)
    end)
    local dt = sonde.now() - t0
    assert.are.same({ "a", "b" }, order)
    -- libuv's timers count whole milliseconds from the loop's cached time.
    assert.is_true(dt >= 0.045 and dt < 0.5)
    eng:close()
  end)

  it("sleeps its time counted from when it is asked, however long the script ran before", function()
    -- libuv counts a timer from the loop's cached time, taken when the loop
    -- last woke; a script that ran (or was preempted, on a busy machine)
    -- since then would have its sleep cut short by that much. ping -w
    -- then woke before its deadline and sent a probe with no time left.
    local eng = assert(sonde.engine())
    local dt
    eng:run(function()
      eng:sleep(0.001)              -- now inside a turn of the loop
      local busy = eng:now() + 0.15
      while eng:now() < busy do end -- the loop's cached time goes stale
      local t1 = eng:now()
      eng:sleep(0.1)
      dt = eng:now() - t1
    end)
    -- whole milliseconds of a loop time that truncates: at most 1 ms short
    assert.is_true(dt >= 0.099, "slept " .. dt)
    eng:close()
  end)

  it("gives a script error its traceback with file:line and leaks nothing", function()
    local before = fds()
    local eng = assert(sonde.engine())
    local ok, err = pcall(eng.run, eng, function()
      eng:sleep(0.001)
      local t = nil
      return t.field -- line of the error
    end)
    assert.is_false(ok)
    assert.matches("engine_spec%.lua:%d+: attempt to index", err)
    assert.matches("stack traceback", err)
    assert.is_true(eng:close())
    assert.are.equal(before, fds())
  end)
end)

helpers.lab_describe("the engine over loopback (raw sockets)", function()
  it("answers ICMP echo on IPv4 and IPv6 with echo_reply", function()
    local eng = assert(sonde.engine())
    local r4, r6 = eng:run(function()
      return eng:probe{ dst = "127.0.0.1", proto = "icmp", ttl = 5, wait = 1 },
        eng:probe{ dst = "::1", proto = "icmp", ttl = 5, wait = 1 }
    end)
    for _, r in ipairs{ r4, r6 } do
      assert.are.equal("reply", r.status)
      assert.are.equal("echo_reply", r.kind)
      assert.is_true(r.rtt > 0 and r.rtt < 1)
      assert.are.equal(5, r.ttl)
    end
    assert.are.equal("127.0.0.1", r4.addr)
    assert.are.equal("::1", r6.addr)
    assert.is_true(eng:close())
  end)

  it("reports a closed UDP port as dest_unreachable/port and a closed TCP port as tcp_rst", function()
    local eng = assert(sonde.engine())
    local rs = eng:run(function()
      return eng:probe_all{
        { dst = "127.0.0.1", proto = "udp", dport = 9, wait = 1 },
        { dst = "::1", proto = "udp", dport = 9, wait = 1 },
        { dst = "127.0.0.1", proto = "tcp", dport = 9, wait = 1 },
        { dst = "::1", proto = "tcp", dport = 9, wait = 1 },
      }
    end)
    assert.are.equal("dest_unreachable", rs[1].kind)
    assert.are.equal("port", rs[1].code)
    assert.are.equal("dest_unreachable", rs[2].kind)
    assert.are.equal("port", rs[2].code)
    for i = 3, 4 do
      assert.are.equal("reply", rs[i].status)
      assert.are.equal("tcp_rst", rs[i].kind)
      assert.are.equal("ECONNREFUSED", rs[i].error.name)
      assert.are.equal(9, rs[i].dport)
    end
    assert.is_true(eng:close())
  end)

  it("ends a cancelled probe as failed/ECANCELED and refuses set_wait after it ended", function()
    local eng = assert(sonde.engine())
    local result, id
    eng:run(function()
      local ev = eng:event()
      id = eng:probe_async({ dst = "127.0.0.1", proto = "icmp", wait = 1 }, function(r)
        result = r
        ev.fire()
      end)
      eng:cancel(id)
      ev.wait()
    end)
    assert.are.equal("failed", result.status)
    assert.are.equal("ECANCELED", result.error.name)
    local ok, err, name = eng:set_wait(id, 1)
    assert.is_nil(ok)
    assert.are.equal("ENOENT", name)
    assert.matches("^ENOENT: ", err)
    eng:close()
  end)

  it("cancels probes still pending at close with ECANCELED", function()
    local eng = assert(sonde.engine())
    local got
    eng.core:probe({ dst = "127.0.0.1", proto = "icmp" }, function(r) got = r end)
    assert.is_true(eng:close())
    assert.are.equal("ECANCELED", got.error.name)
  end)

  it("refuses a second in-flight probe with the same identity (EEXIST)", function()
    local eng = assert(sonde.engine())
    local rs = eng:run(function()
      return eng:probe_all{
        { dst = "127.0.0.1", proto = "udp", dport = 9, wait = 1 },
        { dst = "127.0.0.1", proto = "udp", dport = 9, wait = 1 },
      }
    end)
    assert.are.equal("dest_unreachable", rs[1].kind)
    assert.are.equal("failed", rs[2].status)
    assert.are.equal("EEXIST", rs[2].error.name)
    eng:close()
  end)

  it("paces probes at --rate and keeps at most --window in flight", function()
    local eng = assert(sonde.engine{ rate = 200, window = 4 })
    local t0 = sonde.now()
    local rs = eng:run(function()
      local specs = {}
      for i = 1, 40 do specs[i] = { dst = "127.0.0.1", proto = "icmp", wait = 1 } end
      return eng:probe_all(specs)
    end)
    local dt = sonde.now() - t0
    for _, r in ipairs(rs) do assert.are.equal("echo_reply", r.kind) end
    -- 40 probes at 200/s take about 0.2 s (the first few go out at once).
    assert.is_true(dt > 0.12, "rate not applied: " .. dt)
    assert.is_true(eng:close())
  end)

  it("closes every descriptor it opened, after thousands of probes", function()
    local before = fds()
    local eng = assert(sonde.engine{ window = 64 })
    local n = 0
    eng:run(function()
      for round = 1, 5 do
        local specs = {}
        for i = 1, 200 do
          local proto = ({ "icmp", "udp", "tcp" })[i % 3 + 1]
          -- UDP probes share a socket: each needs its own port to be told apart.
          specs[i] = { dst = i % 2 == 0 and "127.0.0.1" or "::1", proto = proto,
            dport = proto == "udp" and 20000 + i or 9, wait = 1 }
        end
        for _, r in ipairs(eng:probe_all(specs)) do
          if r.status == "reply" then n = n + 1 end
        end
      end
    end)
    assert.are.equal(1000, n)
    assert.is_true(eng:close())
    assert.are.equal(before, fds())
  end)
end)

-- The C API refuses a pattern the bindings would never pass (they raise
-- first): a program built against the engine's static library asks.
describe("sonde_probe_start's pattern, in C", function()
  local lab = require "lab"
  local PROG = [[
#include <stdio.h>
#include <string.h>
#include <uv.h>
#include "sonde.h"
static void cb(sonde_engine_t *e, uint64_t id, const sonde_result_t *r, void *d) {}
static int64_t try(sonde_engine_t *eng, sonde_proto_t proto, int len, int fill) {
  sonde_probe_spec_t s;
  int64_t id;
  memset(&s, 0, sizeof(s));
  sonde_addr_parse("127.0.0.1", 0, &s.dst);
  s.proto = proto;
  s.ttl = 64;
  s.pattern_len = (uint8_t)len;
  s.fill = (uint8_t)fill;
  memset(s.pattern, 0xff, sizeof(s.pattern));
  id = sonde_probe_start(eng, &s, cb, NULL);
  if (id > 0)
    sonde_probe_cancel(eng, (uint64_t)id);
  return id > 0 ? 1 : id;
}
int main(void) {
  uv_loop_t loop;
  sonde_engine_t *eng;
  uv_loop_init(&loop);
  if (sonde_engine_new(&loop, NULL, &eng) != 0)
    return 3;
  printf("%s %s %s %s %s\n",
         try(eng, SONDE_PROTO_UDP, 16, 0) == 1 ? "ok" : "refused",
         try(eng, SONDE_PROTO_ICMP, 17, 0) == SONDE_EINVAL ? "EINVAL" : "taken",
         try(eng, SONDE_PROTO_TCP, 1, 0) == SONDE_EINVAL ? "EINVAL" : "taken",
         try(eng, SONDE_PROTO_UDP, 2, 7) == SONDE_EINVAL ? "EINVAL" : "taken",
         try(eng, SONDE_PROTO_UDP, 0, 7) == 1 ? "ok" : "refused");
  sonde_engine_close(eng, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) == 0 ? 0 : 4;
}
]]

  it("is EINVAL over 16 bytes, on TCP and with fill", function()
    local dir = helpers.temp_dir("pattern")
    finally(function() lab.run({ "rm", "-rf", dir }) end)
    local src, exe = dir .. "/pattern.c", dir .. "/pattern"
    local f = assert(io.open(src, "w"))
    f:write(PROG)
    f:close()
    local archive = helpers.build() .. "/libsonde.a"
    -- a sanitizer build's archive needs its runtime at link time
    local _, _, asan = lab.run("nm " .. lab.shquote(archive) .. " | grep -q __asan_init")
    local out, err, code = lab.run("cc -std=gnu11 -o " .. lab.shquote(exe) .. " "
      .. (asan == 0 and "-fsanitize=address,undefined " or "")
      .. "-I" .. lab.shquote(helpers.root() .. "/engine/include") .. " " .. lab.shquote(src) .. " "
      .. lab.shquote(archive) .. " $(pkg-config --libs libuv 2>/dev/null || echo -luv) -lpthread -ldl -lrt")
    assert.are.equal(0, code, out .. err)
    out, err, code = lab.run({ exe })
    assert.are.equal(0, code, err)
    assert.are.equal("ok EINVAL EINVAL EINVAL ok\n", out)
  end)
end)

helpers.lab_describe("the engine kept busy past a probe's wait", function()
  local lab = require "lab"
  local l, peer, script
  local PORT = 40007

  setup(function()
    l = lab.chain{ routers = 1, v6 = false, name = "late" }
    -- a UDP service on dst that answers 30 ms after each datagram
    peer = l:spawn("dst", { helpers.labpeer(), "udp-echo", "-p", PORT, "-d", "0.03", "-t", "60" })
    peer:wait_for("^ready", 5)
    script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(("package.cpath = %q .. package.cpath\npackage.path = %q .. package.path\n"):format(
      helpers.build() .. "/lua/?.so;",
      helpers.root() .. "/scripts/?.lua;" .. helpers.root() .. "/scripts/?/init.lua;"), [[
local sonde = require "sonde"
local eng = assert(sonde.engine())
local r
eng:run(function()
  local ev = eng:event()
  assert(eng:probe_async({ dst = arg[1], proto = "udp", dport = tonumber(arg[2]), wait = 0.1 },
    function(res) r = res; ev.fire() end))
  -- An echo request that dst answers at once: its outcome keeps the loop
  -- busy for 0.2 s, in the turn that read its reply. The UDP reply comes
  -- meanwhile (at 30 ms) and waits in the socket; the next turn runs the
  -- timers (the wait ended at 100 ms) before it polls.
  assert(eng:probe_async({ dst = arg[1], proto = "icmp", wait = 1 }, function()
    local busy = eng:now() + 0.2
    while eng:now() < busy do end
  end))
  ev.wait()
end)
print(r.status, r.kind, r.rtt, r.error and r.error.name)
eng:close()
]])
    f:close()
  end)

  teardown(function()
    if script then os.remove(script) end
    if peer then peer:stop() end
    if l then l:destroy() end
  end)

  it("takes the reply that waited unread, with the RTT the kernel stamped", function()
    -- helpers.luajit() is shell words (make check's ASan preload before it)
    local out, err, code = l:exec("src", table.concat({ helpers.luajit(), lab.shquote(script),
      l.dst.v4, tostring(PORT) }, " "))
    assert.are.equal(0, code, err)
    local status, kind, rtt = out:match("^(%S+)\t(%S+)\t(%S+)")
    assert.are.equal("reply", status, out)
    assert.are.equal("udp_reply", kind, out)
    -- the peer's 30 ms, not the 200 ms the loop was away
    assert.is_true(tonumber(rtt) >= 0.03 and tonumber(rtt) < 0.1, out)
  end)
end)
