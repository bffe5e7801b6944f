-- Start-up and ending under hostile conditions: closed standard
-- descriptors, too few descriptors, too little address space, and SIGHUP
-- or SIGQUIT at any moment. sonde answers with a correct run or a clear
-- message and exit 3, never an abort or a traceback; -o is whole or absent,
-- and no temporary file stays behind.

local helpers = require "helpers"
local lab = require "lab"
local cjson = require "cjson"

local shquote = lab.shquote
local sanitized = os.getenv("SONDE_SANITIZE") ~= nil and os.getenv("SONDE_SANITIZE") ~= ""

local function no_crash(err, code, what)
  assert.is_true(code == 0 or code == 1 or code == 3, what .. ": exit " .. tostring(code) .. "\n" .. err)
  assert.is_nil(err:find("traceback", 1, true), what .. ": " .. err)
  assert.is_nil(err:find("internal error", 1, true), what .. ": " .. err)
end

helpers.lab_describe("sonde started in a poor environment", function()
  local l, dir

  setup(function()
    l = lab.chain{ routers = 2, v6 = false, name = "hygiene" }
    l:hosts("src", { ["dst.lab"] = l.dst.v4 })
    dir = helpers.temp_dir("hygiene")
  end)

  teardown(function()
    if l then l:destroy() end
    if dir then lab.run({ "rm", "-rf", dir }) end
  end)

  local function sh(script)
    return l:exec("src", { "bash", "-c", script })
  end

  it("with standard input, output and error closed, writes -o and nothing into a socket", function()
    local out = dir .. "/closed.json"
    local _, err, code = sh(("%s trace -n -q 1 --format json -o %s %s <&- >&- 2>&-; echo $? >&2")
      :format(shquote(helpers.sonde()), shquote(out), l.dst.v4))
    assert.are.equal(0, code)
    assert.are.equal("0", err:match("%d+"))
    assert.are.equal(l.dst.v4, cjson.decode(lab.read_file(out)).addr)
  end)

  it("with standard output closed, prints its errors and exits as usual", function()
    local _, err = sh(("%s trace --max-ttl 0 %s >&-; echo \"rc=$?\" >&2")
      :format(shquote(helpers.sonde()), l.dst.v4))
    assert.matches("max%-ttl", err)
    assert.matches("rc=2", err)
  end)

  it("with 8 to 32 descriptors (ulimit -n), runs or says EMFILE and the limit", function()
    if sanitized then
      pending("ASan's own descriptors change the count")
      return
    end
    for _, n in ipairs{ 8, 12, 16, 20, 24, 28, 31, 32 } do
      local out, err, code = sh(("ulimit -n %d; %s trace -n -q 1 %s")
        :format(n, shquote(helpers.sonde()), l.dst.v4))
      no_crash(err, code, "ulimit -n " .. n)
      if code == 0 then
        assert.matches("\n 3  " .. l.dst.v4:gsub("%.", "%%."), out)
      else
        assert.matches("^sonde: EMFILE: the limit on open files %(ulimit %-n%) is " .. n, err)
      end
    end
    -- and at 32 it runs, a TCP trace included
    local _, err, code = sh(("ulimit -n 32; %s trace -n --protocol tcp -q 1 %s")
      :format(shquote(helpers.sonde()), l.dst.v4))
    no_crash(err, code, "ulimit -n 32, tcp")
  end)

  it("with little address space (ulimit -v), runs or says why, never aborts", function()
    if sanitized then
      pending("ASan reserves more address space than any such limit")
      return
    end
    for _, kib in ipairs{ 12000, 20000, 30000, 60000 } do
      -- a name: the lookup starts libuv's thread pool
      local _, err, code = sh(("ulimit -v %d; %s trace -q 1 dst.lab")
        :format(kib, shquote(helpers.sonde())))
      no_crash(err, code, "ulimit -v " .. kib)
      if code == 3 then assert.matches("E[A-Z]+", err) end
      if kib >= 60000 then assert.are.equal(0, code, err) end
    end
  end)
end)

-- Each command with -o, ended by SIGHUP or SIGQUIT after a delay drawn
-- from a fixed seed: the output file is a whole document or absent, no
-- temporary file is left, and the status is the signal's (129, 131), or
-- the run's own if it ended first.
helpers.lab_describe("SIGHUP and SIGQUIT at any moment", function()
  local l, dir

  setup(function()
    -- hop 2 silent and an address beyond the destination that does not
    -- exist: runs that take their time
    l = lab.chain{ routers = 3, silent = { 2 }, v6 = false, name = "hupquit" }
    dir = helpers.temp_dir("hupquit")
  end)

  teardown(function()
    if l then l:destroy() end
    if dir then lab.run({ "rm", "-rf", dir }) end
  end)

  local COMMANDS = {
    trace = { "trace", "-n", "-m", "8", "--format", "json", "198.18.3.9" },
    mtr = { "mtr", "-n", "-r", "-c", "50", "-i", "0.05", "--format", "json", "198.18.3.2" },
    ping = { "ping", "-c", "50", "-i", "0.05", "--format", "json", "198.18.3.2" },
    tcping = { "tcping", "-c", "50", "-i", "0.05", "--format", "json", "198.18.3.2", "80" },
    sweep = { "sweep", "--rate", "100", "-q", "198.18.3.0/26" },
    mda = { "mda", "-n", "--format", "json", "198.18.3.9" },
  }
  local NAMES = { "trace", "mtr", "ping", "tcping", "sweep", "mda" }

  local function whole(name, text)
    if name == "sweep" then
      for line in text:gmatch("[^\n]+") do cjson.decode(line) end
      return text == "" or text:sub(-1) == "\n"
    end
    return type(cjson.decode(text)) == "table"
  end

  it("leave -o whole or absent and no temporary file, for every command", function()
    math.randomseed(20261207)
    local runs, signalled = 0, 0
    for _, name in ipairs(NAMES) do
      for _, sig in ipairs{ { "HUP", 129 }, { "QUIT", 131 } } do
        for _ = 1, 3 do
          local delay = math.random() * 0.6
          local out = dir .. "/" .. name .. ".out"
          os.remove(out)
          local argv = { helpers.sonde() }
          for _, a in ipairs(COMMANDS[name]) do argv[#argv + 1] = a end
          argv[#argv + 1] = "--output"   -- every command's; mtr's -o is its field order
          argv[#argv + 1] = out
          local p = l:spawn("src", argv)
          local pid = p:command_pid(5)
          lab.sleep(delay)
          if pid then os.execute("kill -" .. sig[1] .. " " .. pid .. " 2>/dev/null") end
          local code = p:wait(10)
          local what = ("%s, SIG%s after %.2f s"):format(name, sig[1], delay)
          assert.is_true(code == sig[2] or code == 0 or code == 1, what .. ": exit " .. tostring(code)
            .. "\n" .. select(2, p:output()))
          if code == sig[2] then signalled = signalled + 1 end
          local text = lab.read_file(out)
          if text then
            local ok, res = pcall(whole, name, text)
            assert.is_true(ok and res, what .. ": -o is not whole:\n" .. text)
          end
          local left = lab.must("ls -A " .. shquote(dir))
          assert.is_nil(left:find("%.tmp"), what .. ": a temporary file was left: " .. left)
          local _, err = p:output()
          assert.is_nil(err:find("traceback", 1, true), what .. ": " .. err)
          runs = runs + 1
        end
      end
    end
    assert.are.equal(36, runs)
    -- most runs are still going when the signal comes
    assert.is_true(signalled >= 24, signalled .. " of 36 runs ended by the signal")
  end)
end)
