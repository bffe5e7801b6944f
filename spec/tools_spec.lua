-- Specs of build/labpeer (spec/tools/labpeer.c), the peer that lab specs
-- use to play the far side of a socket case (busy port, reset, TIME_WAIT,
-- exhausted ephemeral range, ...).  Server in dst, client
-- in src, over src — dst (no router), IPv4 and IPv6.

local helpers = require "helpers"
local lab = require "lab"

local function lines(s)
  local t = {}
  for line in s:gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

helpers.lab_describe("labpeer", function()
  local l, peer
  local port = 5000

  -- a fresh port per spec: no spec meets another's TIME_WAIT
  local function next_port()
    port = port + 1
    return tostring(port)
  end

  -- starts labpeer in `node` and waits for "ready"
  local function serve(node, ...)
    local p = l:spawn(node, { peer, ... })
    p:wait_for("^ready$", 5)
    return p
  end

  -- runs labpeer in `node` to completion: -> stdout lines, stderr, exit code
  local function client(node, ...)
    local out, err, code = l:exec(node, { peer, ... })
    return lines(out), err, code
  end

  setup(function()
    peer = helpers.labpeer()
    local _, _, code = helpers.run({ "test", "-x", peer })
    assert(code == 0, peer .. " is not built (make test-tools)")
    l = lab.chain{ routers = 0, name = "peer" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  it("listen: prints bound address and ready, holds connections, ends after -t", function()
    local p = l:spawn("dst", { peer, "listen", "-p", next_port(), "-t", "1" })
    p:wait_for("^ready$", 5)
    assert.are.equal("bound 0.0.0.0:" .. port, (p:output():match("^([^\n]*)")))
    local out, _, code = client("src", "client", l.dst.v4, tostring(port), "send=ignored", "recv=0.3")
    assert.are.equal(0, code)
    assert.are.equal("send 7", out[2])
    assert.are.equal("recv timeout", out[3])
    assert.are.equal(0, p:wait(5))
  end)

  it("echo: writes back what it reads, over IPv4 and IPv6", function()
    for _, addr in ipairs({ l.dst.v4, l.dst.v6 }) do
      local args = { "echo", "-p", next_port(), "-n", "1" }
      if addr:find(":") then args[#args + 1] = "-6" end
      local p = serve("dst", unpack(args))
      local out = client("src", "client", addr, tostring(port), "send=hello\n", "recv", "shut", "recv")
      local src, dst = l.src.v4, l.dst.v4
      if addr:find(":") then src, dst = "[" .. l.src.v6 .. "]", "[" .. l.dst.v6 .. "]" end
      local want_start, want_end = "connected " .. src .. ":", " " .. dst .. ":" .. port
      assert.are.equal(want_start, out[1]:sub(1, #want_start))
      assert.are.equal(want_end, out[1]:sub(-#want_end))
      assert.are.same({ "send 6", "recv 6 hello\\n", "shut", "recv EOF", "done" }, { unpack(out, 2) })
      assert.are.equal(0, p:wait(5))       -- -n 1: ends with its connection
    end
  end)

  it("reset: closes with an RST, the client's recv gets ECONNRESET", function()
    local p = serve("dst", "reset", "-d", "0.2", "-p", next_port(), "-n", "1")
    local out = client("src", "client", l.dst.v4, tostring(port), "recv")
    assert.are.equal("recv ECONNRESET", out[2])
    assert.are.equal(0, p:wait(5))
  end)

  it("close: closes with a FIN; the first write succeeds, the second gets EPIPE", function()
    local p = serve("dst", "close", "-p", next_port(), "-n", "1")
    local out, _, code = client("src", "client", l.dst.v4, tostring(port),
                                "recv", "send=a", "sleep=0.2", "send=b")
    assert.are.equal(0, code)                -- and no death by SIGPIPE
    assert.are.same({ "recv EOF", "send 1", "send EPIPE", "done" }, { unpack(out, 2) })
    assert.are.equal(0, p:wait(5))
  end)

  it("banner: writes its text and keeps the connection open", function()
    local p = serve("dst", "banner", "-p", next_port(), "SSH-2.0-lab\r\n")
    local out = client("src", "client", l.dst.v4, tostring(port), "recv", "recv=0.3")
    assert.are.same({ "recv 13 SSH-2.0-lab\\r\\n", "recv timeout", "done" }, { unpack(out, 2) })
    assert.are.equal(0, p:stop())            -- SIGTERM: a clean end
  end)

  it("hold-port: keeps a port busy, so that binding it fails with EADDRINUSE", function()
    local p = serve("src", "hold-port", "-p", next_port())
    local _, err, code = client("src", "hold-port", "-p", tostring(port), "-t", "1")
    assert.are.equal(3, code)
    assert.truthy(err:find("bind 0.0.0.0:" .. port .. ": EADDRINUSE: Address already in use", 1, true), err)
    -- a client bound to the busy source port fails the same way
    local srv = serve("dst", "listen", "-p", next_port())
    local out
    out, err, code = client("src", "client", "-s", tostring(port - 1), l.dst.v4, tostring(port))
    assert.are.equal(4, code)
    assert.are.equal("connect EADDRINUSE", out[1])
    p:stop()
    srv:stop()
  end)

  it("hold-port -u: keeps a UDP port busy", function()
    local p = serve("src", "hold-port", "-u", "-p", next_port())
    local _, err, code = client("src", "hold-port", "-u", "-p", tostring(port), "-t", "1")
    assert.are.equal(3, code)
    assert.truthy(err:find("EADDRINUSE", 1, true), err)
    p:stop()
  end)

  it("udp-echo: echoes datagrams", function()
    local p = serve("dst", "udp-echo", "-6", "-p", next_port(), "-n", "1")
    local out = client("src", "client", "-u", l.dst.v6, tostring(port), "send=ping", "recv")
    assert.are.same({ "send 4", "recv 4 ping", "done" }, { unpack(out, 2) })
    assert.are.equal(0, p:wait(5))
  end)

  it("connect: holds COUNT connections and exhausts a tiny ephemeral range", function()
    local srv = serve("dst", "listen", "-p", next_port())
    local saved = l:check("src", { "sysctl", "-n", "net.ipv4.ip_local_port_range" }):gsub("%s+", " ")
    finally(function() l:sysctl("src", "net.ipv4.ip_local_port_range", saved) end)
    l:sysctl("src", "net.ipv4.ip_local_port_range", "40000 40003")
    local holder = serve("src", "connect", l.dst.v4, tostring(port), "-n", "4")
    local out = lines((holder:output()))
    assert.are.equal(5, #out)                -- 4 x "connected LOCAL REMOTE", "ready"
    for i = 1, 4 do
      assert.truthy(out[i]:match("^connected 198%.18%.0%.1:4000[0-3] "), out[i])
    end
    local established = l:check("src", { "ss", "-Htn", "state", "established" })
    assert.are.equal(4, #lines(established))
    local _, err, code = client("src", "connect", l.dst.v4, tostring(port))
    assert.are.equal(4, code)
    assert.truthy(err:find("EADDRNOTAVAIL", 1, true), err)
    holder:stop()
    srv:stop()
  end)

  it("time-wait: leaves its source port in TIME_WAIT", function()
    local srv = serve("dst", "listen", "-p", next_port())
    local out, err, code = client("src", "time-wait", "-s", "42000", l.dst.v4, tostring(port))
    assert.are.equal(0, code, err)
    assert.are.equal("ready", out[#out])
    local tw = l:check("src", { "ss", "-Htan", "state", "time-wait" })
    assert.truthy(tw:find(l.src.v4 .. ":42000", 1, true), tw)
    srv:stop()
  end)

  it("client: reports a refused connection by name and exits 4", function()
    local out, err, code = client("src", "client", l.dst.v4, next_port(), "recv")
    assert.are.equal(4, code)
    assert.are.same({ "connect ECONNREFUSED" }, out)
    assert.truthy(err:find("connect " .. l.dst.v4 .. ":" .. port .. ": ECONNREFUSED: Connection refused", 1, true), err)
  end)

  it("rejects bad usage with exit status 2", function()
    for _, argv in ipairs({ {}, { "nonsense" }, { "listen" }, { "listen", "-p", "70000" },
                            { "client", l.dst.v4 }, { "client", l.dst.v4, "1", "dance" } }) do
      local _, err, code = client("src", unpack(argv))
      assert.are.equal(2, code, table.concat(argv, " "))
      assert.truthy(err:find("usage:", 1, true) or err:find("invalid", 1, true), err)
    end
  end)

  it("ends by itself after -t even with a connection open", function()
    local p = serve("dst", "echo", "-p", next_port(), "-t", "0.5")
    local holder = serve("src", "connect", l.dst.v4, tostring(port))
    assert.are.equal(0, p:wait(5))
    assert.are.equal(0, holder:wait(5))      -- the peer's close ends it too
  end)
end)
