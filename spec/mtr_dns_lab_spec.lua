-- Names and AS numbers that arrive: sonde mtr against a real DNS server in
-- the lab (dnsmasq, answering PTR and origin-AS TXT records from fixtures)
-- with one zone slowed down (a resolver of the spec's own that answers
-- after 1.5 s, which dnsmasq forwards that zone to). The prober's
-- namespace points at dnsmasq through /etc/netns/NAME/resolv.conf; hop 2's
-- name is in its /etc/hosts only.
--
-- Also: mtr's command lines as mtr users type them.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

local esc, lines_of = helpers.esc, helpers.text_lines

-- 198.18.0.2 -> 2.0.18.198
local function reversed(a)
  local p = {}
  for o in a:gmatch("%d+") do table.insert(p, 1, o) end
  return table.concat(p, ".")
end

local SLOW_DELAY = 1.5

-- Runs a Lua script with `sonde run` in the lab's node (a file in a folder
-- the unprivileged user can read). -> stdout, stderr, code.
local function run_script(l, node, text)
  local dir = helpers.temp_dir("mdns", "755")
  local path = dir .. "/s.lua"
  lab.write_file(path, text)
  lab.must({ "chmod", "644", path })
  return l:exec(node, { helpers.sonde(), "run", path })
end

helpers.lab_describe("sonde mtr with a DNS server in the lab and a slow zone", function()
  local l, dns, slow
  local pty_path = helpers.root() .. "/spec/support/in_pty.py"
  local slowdns = helpers.root() .. "/spec/tools/slowdns.py"

  setup(function()
    l = lab.chain{ routers = 3, v6 = false, name = "mdns" }
    local h1, h2, h3, dst = l.hops[1].v4, l.hops[2].v4, l.hops[3].v4, l.dst.v4
    -- The slow zone's server: hop 3's PTR and TXT, 1.5 s late, on the
    -- DNS server's own loopback.
    slow = l:spawn("dst", { "/usr/bin/python3", slowdns, "127.0.0.1", "5353", tostring(SLOW_DELAY),
      reversed(h3) .. ".in-addr.arpa=PTR:r3.slow.lab",
      reversed(h3) .. ".origin.asn.cymru.com=TXT:64503 | 198.18.2.0/24 | ZZ | lab | 2026-01-01" })
    slow:wait_for("^ready", 5)
    dns = l:spawn("dst", { "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
      "--no-daemon", "--conf-file=/dev/null", "--pid-file=", "--user=root",
      "--listen-address=" .. dst, "--bind-interfaces", "--port=53", "--cache-size=0",
      "--ptr-record=" .. reversed(h1) .. ".in-addr.arpa,r1.dns.lab",
      "--ptr-record=" .. reversed(dst) .. ".in-addr.arpa,dst.dns.lab",
      "--txt-record=" .. reversed(h1) .. ".origin.asn.cymru.com,64501 | 198.18.0.0/24 | ZZ | lab | 2026-01-01",
      "--txt-record=" .. reversed(h2) .. ".origin.asn.cymru.com,64502 | 198.18.1.0/24 | ZZ | lab | 2026-01-01",
      "--txt-record=" .. reversed(dst) .. ".origin.asn.cymru.com,64504 | 198.18.3.0/24 | ZZ | lab | 2026-01-01",
      "--server=/" .. reversed(h3) .. ".in-addr.arpa/127.0.0.1#5353",
      "--server=/" .. reversed(h3) .. ".origin.asn.cymru.com/127.0.0.1#5353" })
    helpers.lab_names(l, { ["r2.hosts.lab"] = h2 }, dst, 3)
    -- dnsmasq is up when it answers
    local up = false
    for _ = 1, 50 do
      local out = run_script(l, "src", "local sonde = require 'sonde'; local e = sonde.engine{}; "
        .. "e:run(function() print(e:reverse('" .. h1 .. "', 1)) end) e:close()")
      if out and out:find("r1.dns.lab", 1, true) then up = true break end
      lab.sleep(0.1)
    end
    assert(up, "dnsmasq never answered: " .. table.concat({ dns:output() }, "\n"))
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local function sonde(args) return helpers.command_in(l, "mtr", args) end

  it("names every hop in the report, the slow zone's too, within --dns-wait", function()
    local out, err, code = sonde{ "-rwbzc", "3", "-i", "0.1", "--wait", "0.5", l.dst.v4 }
    assert.are.equal(0, code, err)
    local ls = lines_of(out)
    assert.matches("^HOST: ", ls[2])
    assert.matches("^  1%. AS64501  r1%.dns%.lab %(" .. esc(l.hops[1].v4) .. "%) ", ls[3])
    assert.matches("^  2%. AS64502  r2%.hosts%.lab %(" .. esc(l.hops[2].v4) .. "%) ", ls[4])
    assert.matches("^  3%. AS64503  r3%.slow%.lab %(" .. esc(l.hops[3].v4) .. "%) ", ls[5])
    assert.matches("^  4%. AS64504  dst%.dns%.lab %(" .. esc(l.dst.v4) .. "%) ", ls[6])
  end)

  it("gives names and AS numbers in JSON", function()
    local out, err, code = sonde{ "-j", "-z", "-c", "2", "-i", "0.1", "--wait", "0.5", l.dst.v4 }
    assert.are.equal(0, code, err)
    local doc = cjson.decode(out)
    assert.are.same({ "r1.dns.lab", "r2.hosts.lab", "r3.slow.lab", "dst.dns.lab" },
      { doc.hops[1].name, doc.hops[2].name, doc.hops[3].name, doc.hops[4].name })
    assert.are.same({ 64501, 64502, 64503, 64504 },
      { doc.hops[1].asn, doc.hops[2].asn, doc.hops[3].asn, doc.hops[4].asn })
    assert.are.equal("198.18.2.0/24", doc.hops[3].as_prefix)
  end)

  it("waits no longer than --dns-wait for a name: the slow one is left out", function()
    local t0 = os.time()
    local out, err, code = sonde{ "-r", "-c", "1", "--wait", "0.5", "--dns-wait", "0.3", l.dst.v4 }
    assert.are.equal(0, code, err)
    assert.is_true(os.time() - t0 <= 2 + 1)
    assert.matches("\n  3%.|%-%- " .. esc(l.hops[3].v4) .. " ", out)
    assert.matches("\n  2%.|%-%- r2%.hosts%.lab ", out)
  end)

  it("answers /etc/hosts names at once, never queued behind slow lookups", function()
    local h2, h3 = l.hops[2].v4, l.hops[3].v4
    local script = ([[
local sonde = require "sonde"
local e = sonde.engine{}
e:run(function()
  for i = 1, 8 do e:spawn(function() e:reverse("%s", 5) end) end
  local t0 = e:now()
  local name = e:reverse("%s", 5)
  print(name, e:now() - t0)
end)
e:close()]]):format(h3, h2)
    local out, err, code = run_script(l, "src", script)
    assert.are.equal(0, code, err)
    local name, took = out:match("^(%S+)%s+(%S+)")
    assert.are.equal("r2.hosts.lab", name)
    assert.is_true(tonumber(took) < SLOW_DELAY / 3, "took " .. tostring(took))
  end)

  it("fills in the slow name in the live table when it arrives", function()
    local argv = { "/usr/bin/python3", pty_path, "3.0", "q", helpers.sonde(), "mtr", "-i", "0.2",
      "--wait", "0.5", l.dst.v4 }
    local raw, err, code = l:exec("src", argv)
    assert.are.equal(0, code, err)
    local r = cjson.decode(raw)
    assert.are.equal(0, r.code, r.out)
    local leave = r.out:find("\27[?1049l", 1, true)
    local screen = r.out:sub(1, leave)
    -- the hosts name at once, the slow one later: both on the screen
    assert.truthy(screen:find("r2.hosts.lab", 1, true), screen)
    assert.truthy(screen:find("r3.slow.lab", 1, true), screen)
    -- before the slow name came, its address stood in its place
    local first_slow = screen:find("r3.slow.lab", 1, true)
    assert.truthy(screen:sub(1, first_slow):find("  3. " .. l.hops[3].v4, 1, true))
  end)

  it("looks AS numbers up offline from a pfx2as file (no DNS)", function()
    -- root's own folder: opened before sonde gives up its privileges
    local dir = helpers.temp_dir("pfx2as")
    local path = dir .. "/pfx2as.txt"
    lab.write_file(path, "# prefix length AS\n198.18.0.0\t15\t64999\n198.18.1.0\t24\t65001_65002\n")
    local out, err, code = sonde{ "-r", "-n", "-c", "1", "--wait", "0.5", "--as-file", path, l.dst.v4 }
    assert.are.equal(0, code, err)
    assert.matches("\n  1%. AS64999  " .. esc(l.hops[1].v4) .. " ", out)
    assert.matches("\n  2%. AS65001  " .. esc(l.hops[2].v4) .. " ", out)
  end)
end)
