-- spec/support/schema.lua: validate sonde's JSON output against
-- scripts/sonde/schema/sonde.schema.json with a real JSON Schema validator
-- (Debian's python3-jsonschema, Draft 2020-12, formats checked).

local helpers = require "helpers"
local lab = require "lab"

local M = {}

M.path = helpers.root() .. "/scripts/sonde/schema/sonde.schema.json"

local PROGRAM = [[
import json, sys
from jsonschema import Draft202012Validator, FormatChecker
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema, format_checker=FormatChecker())
bad = 0
for n, line in enumerate(open(sys.argv[2]), 1):
    if not line.strip():
        continue
    for e in sorted(v.iter_errors(json.loads(line)), key=lambda e: list(e.path)):
        bad += 1
        print("document %d at /%s: %s" % (n, "/".join(map(str, e.path)), e.message))
sys.exit(1 if bad else 0)
]]

-- Validates text (one JSON document per line). -> true, or false and the
-- validator's messages.
function M.validate(text)
  local doc = os.tmpname()
  local prog = os.tmpname()
  local f = assert(io.open(doc, "w"))
  f:write(text)
  f:close()
  f = assert(io.open(prog, "w"))
  f:write(PROGRAM)
  f:close()
  local out, err, code = lab.run(("/usr/bin/python3 %s %s %s"):format(
    lab.shquote(prog), lab.shquote(M.path), lab.shquote(doc)))
  os.remove(doc)
  os.remove(prog)
  if code == 0 then return true end
  return false, out .. err
end

return M
