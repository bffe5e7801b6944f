-- sonde.header: the IP header options of the probing commands (--tos,
-- --df), as option entries for sonde.args and as fields added to every
-- probe a strategy makes. What the engine does with the fields: README
-- "Flows".
--
--   local header = require "sonde.header"
--   options = header.options{ ...the command's own... }
--   strat = header.apply(strat, opts)   -- wraps strat.spec(...)
--   spec = header.fields(opts, spec)    -- a spec built by hand

local M = {}

-- The command's options followed by --tos and --df.
function M.options(own)
  local all = {}
  for _, o in ipairs(own) do all[#all + 1] = o end
  all[#all + 1] = { nil, "--tos", arg = "N", type = "int", min = 0, max = 255,
    help = "the IPv4 TOS / IPv6 traffic class byte of the probes (DSCP times 4, plus ECN: 184 is EF)" }
  all[#all + 1] = { nil, "--df", arg = "WHAT", choices = { "yes", "no" },
    help = "don't fragment: yes (a probe over the path MTU fails with EMSGSIZE, or a router answers frag_needed / packet_too_big), no (it may be fragmented); default: the kernel's (DF on IPv4 datagrams that fit the path)" }
  return all
end

-- spec with the header fields of opts (parsed options) added; -> spec.
function M.fields(opts, spec)
  if opts.tos then spec.tos = opts.tos end
  if opts.df then spec.df = opts.df == "yes" end
  return spec
end

-- The strategy s, its probes carrying the header fields of opts.
function M.apply(s, opts)
  if not opts.tos and not opts.df then return s end
  local spec = s.spec
  return setmetatable({ spec = function(...) return M.fields(opts, spec(...)) end },
    { __index = s })
end

return M
