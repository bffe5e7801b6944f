-- examples/format_example.lua - an output format of your own.
--
--   sonde sweep --format ./examples/format_example.lua 198.18.0.0/24
--
-- --format takes a bundled format's name (text, jsonl, csv, markdown) or
-- the path of a Lua file like this one (a value with a '/' or ending in
-- ".lua" is a path). The file returns a table:
--
--   name                    optional: the format's name, for messages
--   header(meta) -> text    optional: written before the first record
--   record(rec, meta) -> text
--                           required: one record, written as it comes
--   footer(summary, meta) -> text
--                           optional: written after the last record
--
-- Each function returns the text to write (nil or "" writes nothing) and
-- should be pure: no I/O, no globals, nothing kept between calls that the
-- output depends on — the command decides where the text goes (standard
-- output, or -o FILE written atomically) and when. An error raised in one
-- of them ends the command with exit status 3 and the traceback.
--
-- What the command passes:
--   meta     what the run is: command ("sweep"), version (of the records),
--            columns (field names in the order CSV and Markdown show them),
--            fields (every key a record may have), and the command's
--            options, for sweep: protocol, port (tcp, udp), total (targets
--            in this shard), targets (in the whole list), shard, shards,
--            seed, rate, window, wait, ttl
--   rec      one record, the same table --format jsonl writes as a line
--            (scripts/sonde/schema/sonde.schema.json describes it); for
--            sweep: addr, alive, status, kind, code, from, rtt (seconds),
--            reply_ttl, protocol, port, error = { name, message }
--   summary  the end of the run, for sweep: total, done, alive, timeouts,
--            other (answered, not alive), failed, sent (probes), duration
--            and rate (probes/s), started (Unix time), stop_reason
--            ("done", "stopped", "interrupted"), text (the summary line)
-- A format without a footer leaves the summary to the command, which
-- writes summary.text on standard error (unless -q).
--
-- Started as root, sonde runs as nobody (or --user): the file must be
-- readable by that user.
--
-- This one writes what zmap writes by default: the address of every target
-- that answered, one per line, then a comment with the counts.

local M = { name = "alive-list" }

-- It is written for sweep, whose records say `alive`; given to another
-- command (trace, tcping, ping, mtr, mda pass their own records: the lines
-- their jsonl writes) it lists the addresses that answered what it knows.
function M.header(meta)
  return string.format("# sonde %s%s%s\n", meta.command or "?",
    meta.protocol and (", " .. meta.protocol .. (meta.port and ("/" .. meta.port) or "")) or "",
    meta.total and (", " .. meta.total .. " targets") or "")
end

function M.record(rec)
  local answered = rec.alive
  if answered == nil then answered = rec.reached or rec.status == "reply" end
  if not answered or not rec.addr then return nil end
  return rec.addr .. "\n"
end

function M.footer(summary)
  if summary.text then return "# " .. summary.text .. "\n" end
  return string.format("# %d of %d alive in %.2f s\n", summary.alive or 0, summary.total or 0,
    summary.duration or 0)
end

return M
