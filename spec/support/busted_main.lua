-- spec/support/busted_main.lua: starts busted under the interpreter that runs
-- this file (spec/run: LuaJIT), like `busted --lua=luajit` without the
-- re-exec through a shell that loses the quoting of arguments.
-- busted's runner is called from a chunk that is not a file: it then ends
-- with os.exit(code, true) instead of raising a message-less error (its
-- Lua 5.1 exit path when called from a script file).

-- make check preloads the ASan runtime for sonde.core; the commands that
-- specs run (ip, nft, ...) must not inherit it.
if os.getenv("SONDE_SANITIZE") and os.getenv("LD_PRELOAD") then
  local ffi = require "ffi"
  ffi.cdef "int unsetenv(const char *name);"
  ffi.C.unsetenv("LD_PRELOAD")
end

local chunk = (loadstring or load)("require 'busted.runner'({ standalone = false })", "=busted")
chunk()
