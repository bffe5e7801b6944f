-- spec/support/helpers.lua: small things every spec wants.
--
--   local helpers = require "helpers"
--   local out, err, code = helpers.run({ helpers.sonde(), "--version" })
--   local before = helpers.fd_count()          -- this process's open fds
--   helpers.lab_describe("tcp probe bound to a busy source port", function()
--     ... real namespaces, see lab.lua ...
--   end)

local lab = require "lab"

local helpers = {}

-- run(cmd) -> stdout, stderr, exit code.  cmd: a string for `sh -c` or an
-- argv table.  Never raises for a failing command.
helpers.run = lab.run
helpers.shquote = lab.shquote
helpers.sleep = lab.sleep

local read_file = lab.read_file

-- A new folder /tmp/<run prefix><what>.XXXXXX with mode `mode` (default
-- 700: only root may enter, as root's home); spec/run removes what a spec
-- leaves of it. -> its path.
function helpers.temp_dir(what, mode)
  local dir = lab.must("mktemp -d /tmp/" .. lab.prefix() .. what .. ".XXXXXX"):match("%S+")
  lab.must({ "chmod", mode or "700", dir })
  return dir
end

-- The repository root: $SONDE_ROOT, else two levels above this file.
function helpers.root()
  local env = os.getenv("SONDE_ROOT")
  if env and env ~= "" then return env end
  local dir = debug.getinfo(1, "S").source:match("^@(.-)/?spec/support/[^/]+$") or ""
  if dir:sub(1, 1) ~= "/" then
    dir = (os.getenv("PWD") or ".") .. (dir ~= "" and ("/" .. dir) or "")
  end
  return dir
end

-- The build directory the specs test: $SONDE_BUILD (make check's sanitizer
-- build), else build/.
function helpers.build()
  local env = os.getenv("SONDE_BUILD")
  if env and env ~= "" then
    return env:sub(1, 1) == "/" and env or helpers.root() .. "/" .. env
  end
  return helpers.root() .. "/build"
end

-- A copy of the build's `sonde` with the scripts and examples beside it
-- (bin/sonde, scripts/, examples/), in a folder any user may read. The
-- checkout itself may lie in a folder only root can enter (CI's does, as a
-- clone in root's home would), and specs run sonde as nobody too: nobody
-- could not even start it from there. Made once per run, under the run's
-- prefix in /tmp (spec/run removes it). -> the folder.
local public
function helpers.public_root()
  if public and lab.read_file(public .. "/bin/sonde.ok") then return public end
  public = "/tmp/" .. lab.prefix() .. "public-" .. lab.pid()
  lab.must({ "rm", "-rf", public })
  lab.must({ "mkdir", "-p", public .. "/bin" })
  lab.must({ "cp", helpers.build() .. "/sonde", public .. "/bin/sonde" })
  lab.must({ "cp", "-r", helpers.root() .. "/scripts", public .. "/scripts" })
  lab.must({ "cp", "-r", helpers.root() .. "/examples", public .. "/examples" })
  lab.must({ "chmod", "-R", "a+rX", public })
  lab.must({ "touch", public .. "/bin/sonde.ok" })
  return public
end

-- The shell words that start a child luajit which loads this build's
-- sonde.core: under make check, an ASan build, so with the ASan runtime
-- preloaded (spec/run preloads it for busted alone, which then unsets it).
local luajit_words
function helpers.luajit()
  if luajit_words then return luajit_words end
  luajit_words = "luajit"
  if (os.getenv("SONDE_SANITIZE") or "") ~= "" then
    local asan = lab.must("gcc -print-file-name=libasan.so"):match("%S+")
    luajit_words = "LD_PRELOAD=" .. lab.shquote(asan) .. " luajit"
  end
  return luajit_words
end

-- Path of the `sonde` executable the specs run (the copy above) and of
-- the lab peer tool ($SONDE_LABPEER overrides the latter).
function helpers.sonde() return helpers.public_root() .. "/bin/sonde" end
function helpers.labpeer()
  local env = os.getenv("SONDE_LABPEER")
  if env and env ~= "" then return env end
  return helpers.build() .. "/labpeer"
end

-- A temporary file holding `text` that any user may read: sonde started as
-- root reads scripts, rules and target files as nobody (README
-- "Privileges"). -> its path; the caller removes it.
function helpers.readable_file(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  assert(os.execute("chmod 644 '" .. path .. "'") == 0)
  return path
end

-- Number of open descriptors of process `pid` (default: this process).
-- The pipe through which the count comes back is left out (both of its
-- ends can be open in this process for a moment), and for this process a
-- full garbage collection runs first (objects already dropped close their
-- descriptors in finalizers), so that a before/after comparison is exact.
function helpers.fd_count(pid)
  if pid == nil then
    collectgarbage()
    collectgarbage()
  end
  pid = tostring(pid or lab.pid())
  local out, err, code = lab.run("readlink /proc/$$/fd/1 && ls -l /proc/" .. pid .. "/fd")
  -- ls says "cannot access" (exit 1) for a descriptor that was closed
  -- while it listed them: not open any more, so not counted; any other
  -- complaint is an error
  local vanished = code == 1 and err ~= ""
  for line in err:gmatch("[^\n]+") do
    if not line:find("cannot access '/proc/" .. pid .. "/fd/%d+': No such file or directory") then
      vanished = false
    end
  end
  if code ~= 0 and not vanished then
    error("fd_count: cannot list /proc/" .. pid .. "/fd: " .. (err:match("^[^\n]*") or ""), 2)
  end
  local pipe = out:match("^([^\n]*)")
  local n = 0
  for target in out:gmatch("\n[^\n]* %d+ %-> ([^\n]*)") do
    if target ~= pipe then n = n + 1 end
  end
  return n
end

local function is_root()
  local status = read_file("/proc/self/status") or ""
  return status:match("\nUid:%s+(%d+)") == "0"
end

local SKIP_REASON = "not root (run make test as root)"

-- -> true when lab specs can run (we are root).  Otherwise false and the
-- reason; under CI (CI=true), which always runs as root, it raises instead
-- so that a CI without root fails rather than passing with nothing tested.
function helpers.lab_enabled()
  if is_root() then return true end
  if os.getenv("CI") == "true" then
    error("lab specs need root and CI runs as root (this run is not root)", 2)
  end
  return false, SKIP_REASON
end

-- A describe block for specs that need the lab.  When lab specs cannot run,
-- the block becomes one skipped spec whose reason says why (spec/run prints
-- "lab specs skipped: not root (run make test as root)").
function helpers.lab_describe(name, fn)
  local b = require "busted"
  local ok, why = helpers.lab_enabled()
  if ok then return b.describe(name, fn) end
  return b.describe(name, function()
    b.pending("lab specs skipped: " .. why)
  end)
end

-- Polls fn() every `interval` seconds (default 0.02) until it returns a
-- true value, at most `timeout` seconds (default 5).  -> that value, or
-- raises naming `what`.
-- An argv prefix that runs a command as nobody, without privileges (the
-- unprivileged paths, as an ordinary user meets them).
helpers.AS_NOBODY = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups" }

-- sonde ARGS in lab l's node src (as `who`, an argv prefix such as
-- helpers.AS_NOBODY, when given) -> out, err, code
function helpers.sonde_in(l, args, who)
  local argv = {}
  for _, a in ipairs(who or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = helpers.sonde()
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  return l:exec("src", argv)
end

-- What the lab specs of the bundled commands share.

-- s as a Lua pattern that matches it literally.
function helpers.esc(s) return (s:gsub("[%.%-%+%[%]%(%)%%]", "%%%0")) end

-- The non-empty lines of text (a report's, a screen's).
function helpers.text_lines(text)
  local t = {}
  for line in text:gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

-- A lab node's address of family fam (4 or 6).
function helpers.addr(fam, node) return fam == 4 and node.v4 or node.v6 end

-- `sonde COMMAND args...` in l's src node. -> stdout, stderr, exit code.
function helpers.command_in(l, command, args)
  local argv = { helpers.sonde(), command }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return l:exec("src", argv)
end

-- Names for src without a lookup leaving the lab: hosts ({ name =
-- address }) in its /etc/hosts, its resolver at nameserver (default
-- 127.0.0.1: the namespace's own loopback) with one attempt of timeout
-- seconds (default 1).
function helpers.lab_names(l, hosts, nameserver, timeout)
  l:hosts("src", hosts)
  l:etc("src", "resolv.conf", ("nameserver %s\noptions timeout:%d attempts:1\n"):format(
    nameserver or "127.0.0.1", timeout or 1))
end

-- The lines of text, each ended by sep ("\n"; "\r\n" for CSV): a last
-- line without its end is not one (output is written whole lines).
function helpers.lines(text, sep)
  local t = {}
  sep = sep or "\n"
  for l in text:gmatch("(.-)" .. sep) do t[#t + 1] = l end
  return t
end

-- JSON Lines -> the decoded records.
function helpers.decode_lines(text)
  local cjson = require "cjson"
  local t = {}
  for _, l in ipairs(helpers.lines(text)) do t[#t + 1] = cjson.decode(l) end
  return t
end

function helpers.wait_until(fn, timeout, what, interval)
  timeout, interval = timeout or 5, interval or 0.02
  for _ = 0, math.ceil(timeout / interval) do
    local v = fn()
    if v then return v end
    lab.sleep(interval)
  end
  error(("timed out after %s s waiting for %s"):format(timeout, what or "a condition"), 2)
end

return helpers
