-- JSON format: one document per run (DESIGN.md's trace object).

local json = require "sonde.json"

local M = { name = "json" }

function M.document(t)
  return json.encode(t) .. "\n"
end

return M
