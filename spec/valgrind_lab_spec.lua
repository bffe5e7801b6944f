-- A trace under valgrind memcheck: no invalid access, no definite leak, no
-- descriptor of sonde's left open at exit.

local helpers = require "helpers"
local lab = require "lab"

helpers.lab_describe("sonde trace under valgrind", function()
  local l

  setup(function()
    l = lab.chain{ routers = 2, silent = { 1 }, v6 = true, name = "valgrind" }
  end)

  teardown(function()
    if l then l:destroy() end
  end)

  local cases = { { "udp", 4 }, { "icmp", 4 }, { "tcp", 4 }, { "udp", 6 } }
  for _, c in ipairs(cases) do
    it(("reports no error and no definite leak for a %s/IPv%d trace"):format(c[1], c[2]), function()
      if os.getenv("SONDE_SANITIZE") then
        pending("valgrind cannot run make check's ASan build; make test runs this")
        return
      end
      local _, _, has = helpers.run("command -v valgrind")
      if has ~= 0 then
        error("valgrind is not installed (make deps installs it)")
      end
      local out, err, code = l:exec("src", { "valgrind", "--vgdb=no", "--leak-check=full",
        "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite", "--error-exitcode=99",
        "--track-fds=yes", helpers.sonde(), "trace", "-n", "--protocol", c[1],
        c[2] == 4 and l.dst.v4 or l.dst.v6 })
      assert.are.equal(0, code, err)
      assert.matches("ERROR SUMMARY: 0 errors", err)
      assert.matches("All heap blocks were freed", err)
      assert.matches("\n 3  ", out)
      -- Every descriptor open at exit is stdio or inherited from the shell.
      for block in err:gmatch("Open [%w ]*file descriptor %d+:[^\n]*\n[^\n]*") do
        assert.truthy(block:find("inherited from parent", 1, true)
          or block:find("file descriptor [012]:"), block)
      end
    end)
  end
end)
