-- JSON format: one document per run (the "trace" definition of
-- scripts/sonde/schema/sonde.schema.json).

local json = require "sonde.json"

local M = { name = "json" }

function M.document(t)
  return json.encode(t) .. "\n"
end

return M
