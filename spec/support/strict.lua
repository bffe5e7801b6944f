-- spec/support/strict.lua: the strict globals check, loaded by busted as
-- --helper (spec/run and .busted do).  Creating a global is an error that
-- names the variable and the line that tried:
--   * in modules (scripts/, spec/support/, C modules): their environment is
--     _G, which gets a __newindex that refuses new keys;
--   * in spec files: busted runs them in its own environment proxy (so their
--     globals would never reach _G, just vanish or leak between blocks); its
--     __newindex refuses as well.
-- Assigning to a global that already exists (e.g. package.path's table
-- field, or `arg`) is allowed; reading an undeclared global is not checked.

local busted = require "busted"

local function refuse(_, key)
  error(("strict: assignment to undeclared global '%s' (make it a local)"):format(tostring(key)), 2)
end

local gmt = getmetatable(_G)
if gmt == nil then
  gmt = {}
  setmetatable(_G, gmt)
end
gmt.__newindex = refuse

-- Every spec file shares one environment proxy; close it when the first
-- file starts (its chunk has been wrapped in the proxy by then).
busted.subscribe({ "file", "start" }, function(file)
  local run = file.run
  run = (debug.getmetatable(run) or {}).__call or run   -- a loaded file is a callable table
  local env = getfenv(run)
  local emt = env ~= _G and getmetatable(env)
  if emt and emt.__newindex ~= refuse then emt.__newindex = refuse end
  return nil, true
end, { priority = 1 })
