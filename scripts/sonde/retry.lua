-- sonde.retry: what a strategy does after a probe's outcome. A rule is a
-- function(result, probe) -> action, where probe = { ttl, q, reissues } and
-- action is "accept" (keep the outcome) or "reissue" (send the same TTL
-- again under the next sequence). A user's rule replaces this one
-- (`--retry FILE.lua`, a file returning such a function).

local M = {}

-- Re-issues of one probe at most, so that a run of busy ports cannot loop.
M.MAX_REISSUES = 3

-- What the trace runner allows any rule, a user's included: after this many
-- re-issues of one probe, its outcome is kept whatever the rule says.
M.HARD_LIMIT = 10

-- The default rule: a skipped probe (its source port was busy: EADDRINUSE
-- at bind or connect, for UDP as for TCP, as when another process holds a
-- fixed --sport) was never sent, so it is re-issued under the next
-- sequence; everything else is an outcome: failed names its error, timeout
-- is loss.
function M.default(result, probe)
  if result.status == "skipped" and probe.reissues < M.MAX_REISSUES then
    return "reissue"
  end
  return "accept"
end

return M
