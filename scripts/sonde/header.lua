-- sonde.header: the IP header options of the probing commands (--tos,
-- --df, --source, --interface), as option entries for sonde.args and as
-- fields added to every probe a strategy makes. What the engine does with the fields: README
-- "Flows".
--
--   local header = require "sonde.header"
--   options = header.options{ ...the command's own... }
--   strat = header.apply(strat, opts)   -- wraps strat.spec(...)
--   spec = header.fields(opts, spec)    -- a spec built by hand

local M = {}

-- The command's options followed by --tos and --df; with short (a table,
-- see M.source_options), --source and --interface too.
function M.options(own, short)
  local all = {}
  for _, o in ipairs(own) do all[#all + 1] = o end
  all[#all + 1] = { short and short.tos, "--tos", arg = "N", type = "int", min = 0, max = 255,
    help = "the IPv4 TOS / IPv6 traffic class byte of the probes (DSCP times 4, plus ECN: 184 is EF)" }
  all[#all + 1] = { nil, "--df", arg = "WHAT", choices = { "yes", "no" },
    help = "don't fragment: yes (a probe over the path MTU fails with EMSGSIZE, or a router answers frag_needed / packet_too_big), no (it may be fragmented); default: the kernel's (DF on IPv4 datagrams that fit the path)" }
  if short then
    for _, o in ipairs(M.source_options(short)) do all[#all + 1] = o end
  end
  return all
end

-- Where the probes leave from: probe fields src and iface (README "Source
-- address and interface"). An address is checked numeric here and local
-- by the engine (EADDRNOTAVAIL), an interface name for its form here and
-- for its existence by the engine (ENODEV).
local function check_source(v)
  local canonical = require("sonde.targets").canonical(v)
  if not canonical then return nil, "not a numeric IPv4 or IPv6 address" end
  return canonical
end

-- Linux's rule for a device name (dev_valid_name): 1 to 15 bytes, no '/',
-- ':' or white space, not "." or "..".
local function check_interface(v)
  if #v == 0 or #v > 15 then return nil, "an interface name has 1 to 15 characters" end
  if v:find("[/:%s%z]") or v == "." or v == ".." then
    return nil, "not an interface name (no '/', ':' or spaces)"
  end
  return v
end
M.check_source, M.check_interface = check_source, check_interface

-- iputils ping -I: a numeric address (the source) or an interface name;
-- M.source_family files it under opts.source or opts.interface.
function M.check_bind_to(v)
  if require("sonde.targets").canonical(v) then return check_source(v) end
  local ok, why = check_interface(v)
  if not ok then return nil, "neither a numeric address nor an interface name" end
  return ok
end

-- --source and --interface, with the short letters the command's dialect
-- gives them (short.source, short.interface; nil: long only) and the
-- replaced tool's other long names for --source (short.also: mtr's
-- --address).
function M.source_options(short)
  short = short or {}
  return {
    { short.source, "--source", arg = "ADDR", check = check_source, also = short.also,
      help = "send from ADDR, one of this host's addresses (else EADDRNOTAVAIL): the probes leave by the route for that source, and its family is the targets'"
        .. (short.also and " (also " .. table.concat(short.also, ", ") .. ")" or "") },
    { short.interface, "--interface", arg = "IFACE", check = check_interface,
      help = "send by interface IFACE (SO_BINDTODEVICE; a device in a VRF routes by the VRF's table): the source is that route's unless --source says (an unknown interface: ENODEV)" },
  }
end

-- The family that --source fixes (4 or 6), checked against -4/-6 and the
-- numeric targets among words (the command line's); sets opts.ipv4 or
-- opts.ipv6 so that names resolve to that family, as traceroute -s does.
-- Call before the family is read. -> opts.
function M.source_family(opts, words)
  if opts.bind_to then
    if require("sonde.targets").canonical(opts.bind_to) then
      opts.source = opts.bind_to
    else
      opts.interface = opts.bind_to
    end
    opts.bind_to = nil
  end
  if not opts.source then return opts end
  local _, af = require("sonde.targets").canonical(opts.source)
  if (af == 4 and opts.ipv6) or (af == 6 and opts.ipv4) then
    require("sonde.cli").usage_error("--source %s is an IPv%d address, but -%d was given",
      opts.source, af, af == 4 and 6 or 4)
  end
  for _, w in ipairs(words or {}) do
    local _, wf = require("sonde.targets").canonical(w)
    if wf and wf ~= af then
      require("sonde.cli").usage_error("%s is an IPv%d target, but the source %s is an IPv%d address",
        w, wf, opts.source, af)
    end
  end
  if af == 4 then opts.ipv4 = true else opts.ipv6 = true end
  return opts
end

-- Before the first probe to addr: the source and interface that opts
-- name are checked as a probe's are (eng:source), so that a source that
-- is not this host's (EADDRNOTAVAIL) or an unknown interface (ENODEV; EPERM
-- where the kernel keeps SO_BINDTODEVICE to CAP_NET_RAW) ends the run at
-- once with one line and exit 3, as traceroute -s and ping -I do, instead
-- of failing every probe. Other errors (no route over the interface) are
-- left to the probes, which name them.
function M.preflight(eng, addr, opts)
  if not opts.source and not opts.interface then return end
  local ok, err, name = eng:source(addr, opts.interface, opts.source)
  if ok then return end
  local cli = require "sonde.cli"
  if name == "EADDRNOTAVAIL" and opts.source then
    cli.runtime_error("%s (source %s)", err, opts.source)
  elseif (name == "ENODEV" or name == "EPERM") and opts.interface then
    cli.runtime_error("%s (interface %s)", err, opts.interface)
  end
end

-- spec with the header fields of opts (parsed options) added; -> spec.
function M.fields(opts, spec)
  if opts.tos then spec.tos = opts.tos end
  if opts.df then spec.df = opts.df == "yes" end
  if opts.source then spec.src = opts.source end
  if opts.interface then spec.iface = opts.interface end
  return spec
end

-- The strategy s, its probes carrying the header fields of opts.
function M.apply(s, opts)
  if not opts.tos and not opts.df and not opts.source and not opts.interface then return s end
  local spec = s.spec
  return setmetatable({ spec = function(...) return M.fields(opts, spec(...)) end },
    { __index = s })
end

return M
