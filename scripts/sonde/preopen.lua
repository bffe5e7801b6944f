-- sonde.preopen: the files a command line names, opened while sonde still
-- has the privileges it was started with, and used after it gave them up.
--
-- Started as root (or through a setcap binary), sonde runs every script as
-- an unprivileged user. That user may not be able to enter the folder the
-- files are in (root's home is mode 0700), so, as tcpdump opens -w before
-- -Z, the CLI calls M.prepare(opts) between parsing the options and
-- dropping privileges:
--   -o FILE                 created (sonde.core.output_open); written and
--                           committed later, by the user's rules for FILE
--   --format FILE.lua,
--   --retry FILE, --targets read now, as text; compiled or parsed later
--   --as-file FILE,
--   FILE (several)
-- Nothing read here runs before the drop. Afterwards M.read, M.loadfile,
-- M.lines and M.output serve what was prepared, and open anything else
-- with the rights the process has then.

local core = require "sonde.core"

local M = {}

-- Options that name files, by key: what to do with each value.
local FILE_KEYS = {
  output = "write",
  format = "format",   -- a path, or a format's name
  retry = "read",
  targets = "read",    -- "-" is standard input
  as_file = "read",    -- --as-file: a prefix-to-AS table
}

local reads = {}    -- path -> { text = ... } or { err = message }
local outputs = {}  -- path -> { out = core output } or { err, code, where }

local function read_now(path)
  local f, err = io.open(path, "rb")
  if not f then return { err = err } end
  local text, rerr = f:read("*a")
  f:close()
  if not text then return { err = path .. ": " .. tostring(rerr) } end
  return { text = text }
end

-- The contents of path. -> text, or nil and "PATH: reason" (io.open's).
function M.read(path)
  local r = reads[path] or read_now(path)
  if r.err then return nil, r.err end
  return r.text
end

-- path compiled as a Lua chunk (text only). -> function, or nil and a
-- message as loadfile's ("cannot open PATH: reason", or a syntax error).
function M.loadfile(path)
  local text, err = M.read(path)
  if not text then return nil, "cannot open " .. err end
  text = text:gsub("^#![^\n]*", "")  -- a #! line, as loadfile skips it
  return load(text, "@" .. path, "t")
end

-- An iterator over path's lines (as io.lines). -> iterator, or nil and
-- "PATH: reason".
function M.lines(path)
  local text, err = M.read(path)
  if not text then return nil, err end
  local pos, n = 1, #text
  return function()
    if pos > n then return nil end
    local nl = text:find("\n", pos, true)
    local line = text:sub(pos, (nl or n + 1) - 1)
    pos = (nl or n) + 1
    return line
  end
end

-- The output object for -o path (sonde.core's: write, flush, commit,
-- abort), created now unless it was prepared. -> object, or nil, message,
-- errno name, and "dir" when no file could be created in path's folder.
-- Each prepared path is handed out once.
function M.output(path)
  local o = outputs[path]
  outputs[path] = nil
  if not o then
    local out, err, code, where = core.output_open(path)
    o = { out = out, err = err, code = code, where = where }
  end
  if o.out then return o.out end
  return nil, o.err, o.code, o.where
end

-- Prepare every file that opts (parsed options) names; what fails is kept
-- and reported when the command asks for it, as it would be without
-- preparing. -> nothing.
function M.prepare(opts)
  for key, what in pairs(FILE_KEYS) do
    local v = opts[key]
    local values = type(v) == "table" and v or { v }
    for _, path in ipairs(values) do
      if type(path) == "string" and path ~= "" and path ~= "-" then
        if what == "write" then
          if not outputs[path] then
            local out, err, code, where = core.output_open(path)
            outputs[path] = { out = out, err = err, code = code, where = where }
          end
        elseif what == "read" or require("sonde.output").is_path(path) then
          reads[path] = reads[path] or read_now(path)
        end
      end
    end
  end
end

return M
