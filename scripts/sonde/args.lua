-- sonde.args: command-line options parsed from a declarative spec.
--
-- A spec is a table:
--   name        command name, used in messages ("sonde NAME: ...")
--   summary     one line, shown by `sonde list` and at the top of the help
--   usage       usage line (generated from the positionals when absent)
--   description man-page style text; paragraphs separated by blank lines,
--               a paragraph whose lines are indented is printed verbatim
--   options     list of options (below)
--   positionals list of { name = "TARGET", required = bool, many = bool,
--               key = ?, type/choices/min/max/check = ?, help = ? }; one
--               may be many (it takes every word the others leave); those
--               after it must be required ("HOST... PORT")
--   exclusive   list of key lists: at most one key of each list may be given
--   examples    list of command lines
--   hints       { ["-I"] = "text" }: for an option the command does not
--               take but the tool it replaces does, what to write instead;
--               the unknown-option error says it
--
-- An option is { SHORT, LONG, ... } (either may be nil) with:
--   flag = true   boolean, default false
--   count = true  repeatable flag, the value is how often it was given (0..)
--   arg = "NAME"  takes a value; NAME is shown in help and messages
--   list = true   (with arg) repeatable, collects the values in order
--   type          "string" (default), "int" (decimal only: "0x10" and "1.5"
--                 are rejected) or "number" (decimal, with fraction/exponent)
--   choices       list of accepted values
--   min, max      inclusive range, for int and number
--   check         function(value) -> value' | nil, reason; value' is stored
--   default       stored when the option is absent; a string default goes
--                 through the same conversion and check as a typed value
--   key           the field of the result (else the long name with '-' ->
--                 '_', else the short letter)
--   also          other long names of the same option ({ "--address" }:
--                 the replaced tool's spelling beside sonde's)
--   help          one line (wrapped)
-- Every option must say which of flag, count or arg it is. A spec is checked
-- on first use and remembered: do not change it afterwards.
--
-- Parsing follows getopt habits: -m 5, -m5, --max-ttl 5, --max-ttl=5,
-- clusters of short flags (-n4; the last may take a value: -nm5), "--" ends
-- options, a lone "-" is a positional. A value option takes the next word
-- unless it looks like an option ("-x", "--x"); negative numbers are taken
-- ("-m -1"); any other value starting with '-' is written --opt=-value.
-- "-1" standing alone is a positional when no short option is a digit.
-- A repeated non-list option keeps its last value. Long options must be
-- spelled in full (no abbreviations). -h and --help are reserved.

local M = {}

local WIDTH = 78
local MAX_LEFT = 30

local concat, insert = table.concat, table.insert
local fmt = string.format

local function is_number_word(s)
  return s:match("^%-%d") ~= nil or s:match("^%-%.%d") ~= nil
end

local function looks_like_option(s)
  return s:sub(1, 1) == "-" and s ~= "-"
end

---------------------------------------------------------------------------
-- Spec checking (once per spec). A bad spec is a programming error: raise.
---------------------------------------------------------------------------

local compiled = setmetatable({}, { __mode = "k" })

local function spec_error(spec, what, ...)
  error(fmt("args spec '%s': " .. what, tostring(spec.name), ...), 0)
end

local function option_label(o)
  if o[1] and o[2] then return o[1] .. ", " .. o[2] end
  return o[1] or o[2]
end

local function option_key(o)
  if o.key then return o.key end
  if o[2] then return (o[2]:sub(3):gsub("%-", "_")) end
  return o[1]:sub(2)
end

local VALID_TYPES = { string = true, int = true, number = true }

local function check_option(spec, o, c)
  local label = option_label(o) or "?"
  if o[1] == nil and o[2] == nil then
    spec_error(spec, "an option has neither a short nor a long name")
  end
  if o[1] ~= nil and not tostring(o[1]):match("^%-[%w]$") then
    spec_error(spec, "bad short option name '%s'", tostring(o[1]))
  end
  if o[2] ~= nil and not tostring(o[2]):match("^%-%-[%w][%w%-]*$") then
    spec_error(spec, "bad long option name '%s'", tostring(o[2]))
  end
  local kinds = (o.flag and 1 or 0) + (o.count and 1 or 0) + (o.arg and 1 or 0)
  if kinds ~= 1 then
    spec_error(spec, "option %s must have exactly one of flag, count or arg", label)
  end
  if o.list and not o.arg then
    spec_error(spec, "option %s: list needs arg", label)
  end
  if o.type ~= nil and not VALID_TYPES[o.type] then
    spec_error(spec, "option %s: unknown type '%s'", label, tostring(o.type))
  end
  local names = { o[1] or false, o[2] or false }
  for _, name in ipairs(o.also or {}) do
    if type(name) ~= "string" or not name:match("^%-%-[%w][%w-]*$") then
      spec_error(spec, "option %s: bad long option name '%s' in also", label, tostring(name))
    end
    names[#names + 1] = name
  end
  for _, name in ipairs(names) do
    if name then
      if name == "-h" or name == "--help" then
        spec_error(spec, "option %s: -h and --help are reserved", label)
      end
      if c.by_name[name] then
        spec_error(spec, "option %s is defined twice", name)
      end
      c.by_name[name] = o
    end
  end
  local key = option_key(o)
  if key == "help" or key == "positional" then
    spec_error(spec, "option %s: key '%s' is reserved", label, key)
  end
  if c.keys[key] then
    spec_error(spec, "key '%s' is used by both %s and %s", key, c.keys[key], label)
  end
  c.keys[key] = label
  c.key_of[o] = key
  if o[1] and o[1]:match("^%-%d$") then c.digit_short = true end
end

local function positional_key(p)
  return p.key or (p.name:lower():gsub("%-", "_"))
end

local function check_positionals(spec, c)
  local seen_optional, many = false, false
  for i, p in ipairs(c.positionals) do
    if type(p.name) ~= "string" or p.name == "" then
      spec_error(spec, "positional %d has no name", i)
    end
    if p.many and many then
      spec_error(spec, "positional %s: only one may be many", p.name)
    end
    if many and not p.required then
      spec_error(spec, "positional %s: one after a many one must be required", p.name)
    end
    many = many or p.many
    if p.required and seen_optional and not many then
      spec_error(spec, "positional %s: a required one cannot follow an optional one", p.name)
    end
    seen_optional = seen_optional or (not p.required and not p.many)
    local key = positional_key(p)
    if key == "help" or key == "positional" then
      spec_error(spec, "positional %s: key '%s' is reserved", p.name, key)
    end
    if c.keys[key] then
      spec_error(spec, "key '%s' is used by both %s and %s", key, c.keys[key], p.name)
    end
    c.keys[key] = p.name
  end
end

local function compile(spec)
  local c = compiled[spec]
  if c then return c end
  if type(spec) ~= "table" then error("args spec must be a table", 3) end
  c = { by_name = {}, keys = {}, key_of = {}, options = spec.options or {},
        positionals = spec.positionals or {} }
  for _, o in ipairs(c.options) do check_option(spec, o, c) end
  check_positionals(spec, c)
  for _, group in ipairs(spec.exclusive or {}) do
    for _, key in ipairs(group) do
      if not c.keys[key] then
        spec_error(spec, "exclusive names unknown key '%s'", tostring(key))
      end
    end
  end
  compiled[spec] = c
  return c
end

---------------------------------------------------------------------------
-- Values
---------------------------------------------------------------------------

-- "an integer from 1 to 255", "a number >= 0", or without noun "from 1 to 255".
local function range_text(o, noun)
  local r
  if o.min and o.max then r = fmt("from %s to %s", o.min, o.max)
  elseif o.min then r = ">= " .. o.min
  elseif o.max then r = "<= " .. o.max end
  if noun and r then return noun .. " " .. r end
  return noun or r
end

local function expected(o)
  if o.choices then
    local names = {}
    for i, v in ipairs(o.choices) do names[i] = tostring(v) end
    return "one of: " .. concat(names, ", ")
  end
  if o.type == "int" then return range_text(o, "an integer") end
  if o.type == "number" then return range_text(o, "a number") end
  return nil
end

local function to_typed(o, s)
  if o.type == "int" then
    if not s:match("^[+-]?%d+$") then return nil end
    return tonumber(s)
  elseif o.type == "number" then
    local mantissa, exponent = s:match("^([+-]?[%d%.]+)(.*)$")
    if not mantissa or not (mantissa:match("^[+-]?%d+%.?%d*$")
        or mantissa:match("^[+-]?%.%d+$")) then
      return nil
    end
    if exponent ~= "" and not exponent:match("^[eE][+-]?%d+$") then return nil end
    return tonumber(s)
  end
  return s
end

local function in_choices(o, s)
  for _, v in ipairs(o.choices) do
    if tostring(v) == s then return true end
  end
  return false
end

local function in_range(o, v)
  return (o.min == nil or v >= o.min) and (o.max == nil or v <= o.max)
end

-- Converts the word s for option (or positional) o; returns the value, or
-- nil and the parenthesised reason.
local function convert(o, s)
  local want = expected(o)
  want = want and "expected " .. want
  if o.choices and not in_choices(o, s) then return nil, want end
  local v = to_typed(o, s)
  if v == nil then return nil, want end
  if type(v) == "number" and not in_range(o, v) then return nil, want end
  if o.check then
    local checked, reason = o.check(v)
    if checked == nil then return nil, reason end
    v = checked
  end
  return v
end

local function invalid(spec, who, s, reason)
  local msg = fmt("sonde %s: %s: invalid value '%s'", tostring(spec.name), who, s)
  if reason then msg = msg .. " (" .. reason .. ")" end
  return msg
end

local function default_of(spec, o, who)
  if o.flag then return false end
  if o.count then return 0 end
  local d = o.default
  if type(d) == "string" then
    local v, reason = convert(o, d)
    if v == nil then
      error(fmt("args spec '%s': bad default for %s: %s", tostring(spec.name), who,
        invalid(spec, who, d, reason)), 0)
    end
    d = v
  end
  if o.list then
    if type(d) ~= "table" then return { d } end
    local copy = {}
    for i, v in ipairs(d) do copy[i] = v end
    return copy
  end
  return d
end

---------------------------------------------------------------------------
-- Parsing
---------------------------------------------------------------------------

local function new_result(spec, c)
  local opts = { positional = {} }
  for _, o in ipairs(c.options) do
    opts[c.key_of[o]] = default_of(spec, o, o[2] or o[1])
  end
  for _, p in ipairs(c.positionals) do
    local key = positional_key(p)
    if p.many then opts[key] = {} else opts[key] = default_of(spec, p, p.name) end
  end
  return opts
end

local function wants_help(argv)
  for _, a in ipairs(argv) do
    if a == "--" then return false end
    if a == "-h" or a == "--help" then return true end
  end
  return false
end

-- State of one parse: the spec, its compiled form, argv, the position, the
-- result, and for each given key the option name as the user wrote it and
-- where it first appeared.
local Parser = {}
Parser.__index = Parser

function Parser:fail(msg, ...)
  error({ args_error = fmt("sonde %s: " .. msg, tostring(self.spec.name), ...) }, 0)
end

function Parser:mark(key, who)
  self.given[key] = who
  self.given_at[key] = self.given_at[key] or self.i
end

function Parser:set(o, who, s)
  local v, reason = convert(o, s)
  if v == nil then error({ args_error = invalid(self.spec, who, s, reason) }, 0) end
  local key = self.c.key_of[o]
  if o.list then insert(self.opts[key], v) else self.opts[key] = v end
  self:mark(key, who)
end

function Parser:set_flag(o, who)
  local key = self.c.key_of[o]
  if o.count then self.opts[key] = self.opts[key] + 1 else self.opts[key] = true end
  self:mark(key, who)
end

-- The next word as the value of option `who`, or a "needs a value" error.
function Parser:take_value(o, who)
  local nxt = self.argv[self.i + 1]
  if nxt == nil or (looks_like_option(nxt) and not is_number_word(nxt)) then
    self:fail("option %s needs a value (%s)", who, o.arg)
  end
  self.i = self.i + 1
  return nxt
end

function Parser:unknown(word)
  local hint = self.spec.hints and self.spec.hints[word]
  if hint then
    self:fail("unknown option '%s': %s (see 'sonde help %s')", word, hint, self.spec.name)
  end
  self:fail("unknown option '%s' (see 'sonde help %s')", word, self.spec.name)
end

function Parser:long(word)
  local name, value = word:match("^(%-%-[^=]+)=(.*)$")
  name = name or word
  local o = self.c.by_name[name]
  if not o then self:unknown(name) end
  if not o.arg then
    if value then self:fail("option %s takes no value", name) end
    self:set_flag(o, name)
  else
    self:set(o, name, value or self:take_value(o, name))
  end
end

function Parser:cluster(word)
  for j = 2, #word do
    local name = "-" .. word:sub(j, j)
    if name == "-h" then self.opts.help = true; return end
    local o = self.c.by_name[name]
    if not o then self:unknown(name) end
    if o.arg then
      local rest = word:sub(j + 1)
      self:set(o, name, rest ~= "" and rest or self:take_value(o, name))
      return
    end
    self:set_flag(o, name)
  end
end

function Parser:words()
  local argv, words, only_positionals = self.argv, {}, false
  while self.i <= #argv do
    local a = argv[self.i]
    if only_positionals or not looks_like_option(a)
        or (not self.c.digit_short and is_number_word(a)) then
      insert(words, a)
    elseif a == "--" then
      only_positionals = true
    elseif a:sub(1, 2) == "--" then
      self:long(a)
    else
      self:cluster(a)
    end
    self.i = self.i + 1
  end
  return words
end

function Parser:positionals(words)
  local ps, opts = self.c.positionals, self.opts
  local n = 1
  for i, p in ipairs(ps) do
    local key = positional_key(p)
    -- a many one leaves a word to each (required) one after it
    local last = p.many and math.max(n - 1, #words - (#ps - i)) or n
    if n > last or n > #words then
      if p.required then self:fail("missing %s", p.name) end
      if not p.many then break end
    end
    for k = n, math.min(last, #words) do
      local v, reason = convert(p, words[k])
      if v == nil then error({ args_error = invalid(self.spec, p.name, words[k], reason) }, 0) end
      if p.many then insert(opts[key], v) else opts[key] = v end
    end
    n = last + 1
  end
  if n <= #words then
    self:fail("unexpected argument '%s' (usage: %s)", words[n], M.usage(self.spec))
  end
  for i, w in ipairs(words) do opts.positional[i] = w end
end

-- Names the first two options of an exclusive group, in the order given.
function Parser:exclusive()
  for _, group in ipairs(self.spec.exclusive or {}) do
    local present = {}
    for _, key in ipairs(group) do
      if self.given[key] then insert(present, key) end
    end
    if #present > 1 then
      local at = self.given_at
      table.sort(present, function(a, b) return at[a] < at[b] end)
      self:fail("%s and %s cannot be used together", self.given[present[1]], self.given[present[2]])
    end
  end
end

-- Parses argv (an array of strings, without the command name) against spec.
-- Returns the options table: one field per option key and positional key,
-- plus `positional` (every positional word in order); or, when -h/--help is
-- given, a table with help = true and defaults; or nil and a message
-- "sonde NAME: ..." naming the option and the value. A bad spec raises.
function M.parse(spec, argv)
  local c = compile(spec)
  argv = argv or {}
  local p = setmetatable({ spec = spec, c = c, argv = argv, i = 1, given = {}, given_at = {},
                           opts = new_result(spec, c) }, Parser)
  if wants_help(argv) then
    p.opts.help = true
    return p.opts
  end
  local ok, err = pcall(function()
    local words = p:words()
    if p.opts.help then return end
    p:positionals(words)
    p:exclusive()
  end)
  if ok then return p.opts end
  if type(err) == "table" and err.args_error then
    if p.opts.help then return p.opts end
    return nil, err.args_error
  end
  error(err, 0)
end

---------------------------------------------------------------------------
-- Help text
---------------------------------------------------------------------------

-- Glues words so that wrap() keeps them on one line.
local NBSP = "\1"
local function unbreakable(s)
  return (s:gsub(" ", NBSP))
end

-- Wraps text to `width` columns; the first line starts with `first`, the
-- others with `indent`.
local function wrap(text, width, first, indent)
  local lines, line = {}, first
  local empty = true
  for word in text:gmatch("[^ \t\n]+") do
    if not empty and #line + 1 + #word > width then
      insert(lines, line)
      line, empty = indent, true
    end
    line = empty and (line .. word) or (line .. " " .. word)
    empty = false
  end
  insert(lines, line)
  return (concat(lines, "\n"):gsub(NBSP, " "))
end
M.wrap = wrap

-- The paragraphs of text (separated by blank lines), each a list of lines.
local function paragraphs(text)
  local out, cur = {}, {}
  for line in (text:gsub("\r", "") .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*$") then
      if #cur > 0 then insert(out, cur); cur = {} end
    else
      insert(cur, line)
    end
  end
  if #cur > 0 then insert(out, cur) end
  return out
end

-- Indentation common to all non-blank lines of a long string.
local function common_indent(text)
  local common
  for line in text:gmatch("[^\n]+") do
    if line:match("%S") then
      local ind = line:match("^[ \t]*")
      if common == nil or #ind < #common then common = ind end
    end
  end
  return common or ""
end

local function format_description(text)
  local ind = common_indent(text)
  local out = {}
  for _, para in ipairs(paragraphs(text)) do
    local lines = {}
    for i, line in ipairs(para) do lines[i] = line:sub(#ind + 1) end
    if lines[1] and lines[1]:match("^[ \t]") then
      for i, l in ipairs(lines) do lines[i] = "  " .. l end
      insert(out, concat(lines, "\n"))
    else
      insert(out, wrap(concat(lines, " "), WIDTH, "  ", "  "))
    end
  end
  return concat(out, "\n\n")
end

local function show(v)
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return concat(parts, ",")
  end
  return tostring(v)
end

local function option_left(o)
  local left
  if o[1] and o[2] then left = o[1] .. ", " .. o[2]
  elseif o[1] then left = o[1]
  else left = "    " .. o[2] end
  if o.arg then left = left .. " " .. o.arg end
  return "  " .. left
end

local function option_details(o)
  local parts = {}
  if o.help then insert(parts, o.help) end
  if o.choices then
    insert(parts, expected(o))
  elseif (o.type == "int" or o.type == "number") and (o.min or o.max) then
    insert(parts, range_text(o))
  end
  if o.list or o.count then insert(parts, "repeatable") end
  local text = concat(parts, "; ")
  if o.default ~= nil and not o.flag and not o.count then
    text = text .. (text == "" and "" or " ") .. unbreakable("(default: " .. show(o.default) .. ")")
  end
  return text
end

local function positional_details(p)
  local parts = {}
  if p.help then insert(parts, p.help) end
  if p.choices or p.type == "int" or p.type == "number" then
    local e = expected(p)
    if e and (p.choices or p.min or p.max) then insert(parts, e) end
  end
  local text = concat(parts, "; ")
  local notes = {}
  if p.many then insert(notes, p.required and "one or more" or "zero or more")
  elseif not p.required then insert(notes, "optional") end
  if p.default ~= nil then insert(notes, "default: " .. show(p.default)) end
  if #notes > 0 then
    text = text .. (text == "" and "" or " ") .. "(" .. concat(notes, ", ") .. ")"
  end
  return text
end

-- Lays out rows {left, right} as a two-column table wrapped to WIDTH.
local function table_rows(rows)
  local col = 0
  for _, r in ipairs(rows) do
    if #r[1] <= MAX_LEFT and #r[1] > col then col = #r[1] end
  end
  col = col + 2
  local pad = string.rep(" ", col)
  local out = {}
  for _, r in ipairs(rows) do
    local left, right = r[1], r[2]
    if right == "" then
      insert(out, left)
    elseif #left + 2 > col then
      insert(out, left)
      insert(out, wrap(right, WIDTH, pad, pad))
    else
      insert(out, wrap(right, WIDTH, left .. string.rep(" ", col - #left), pad))
    end
  end
  return concat(out, "\n")
end
M.table_rows = table_rows

-- The usage line of spec: spec.usage, else one built from the positionals.
function M.usage(spec)
  if spec.usage then return spec.usage end
  local parts = { "sonde " .. tostring(spec.name) }
  if spec.options and #spec.options > 0 then insert(parts, "[options]") end
  for _, p in ipairs(spec.positionals or {}) do
    local w = p.name .. (p.many and "..." or "")
    insert(parts, p.required and w or "[" .. w .. "]")
  end
  return concat(parts, " ")
end

-- The full help text of spec (ends with a newline): usage, summary,
-- description, options with their defaults and choices, positionals,
-- examples; wrapped to 78 columns.
function M.help(spec)
  local c = compile(spec)
  local out = {}
  local title = "sonde " .. tostring(spec.name)
  if spec.summary then title = title .. " - " .. spec.summary end
  insert(out, wrap(title, WIDTH, "", "  "))
  insert(out, "Usage: " .. M.usage(spec))
  if spec.description then
    insert(out, "Description:\n" .. format_description(spec.description))
  end
  local rows = {}
  for _, o in ipairs(c.options) do insert(rows, { option_left(o), option_details(o) }) end
  insert(rows, { "  -h, --help", "show this help and exit" })
  insert(out, "Options:\n" .. table_rows(rows))
  if #c.positionals > 0 then
    local prow = {}
    for _, p in ipairs(c.positionals) do
      insert(prow, { "  " .. p.name, positional_details(p) })
    end
    insert(out, "Arguments:\n" .. table_rows(prow))
  end
  if spec.examples and #spec.examples > 0 then
    local ex = {}
    for i, e in ipairs(spec.examples) do ex[i] = "  " .. e end
    insert(out, "Examples:\n" .. concat(ex, "\n"))
  end
  return concat(out, "\n\n") .. "\n"
end

return M
