-- examples/retry_rule.lua - a retry rule for `sonde trace`:
--
--   sonde trace --retry examples/retry_rule.lua --protocol tcp 198.18.8.2
--
-- A retry rule is a file that returns one function. The trace runner calls it
-- with every probe's outcome before it keeps it (scripts/sonde/retry.lua):
--
--   rule(result, probe) -> "accept" | "reissue"
--
--   result  the outcome, as in the JSON output: status ("reply", "timeout",
--           "skipped", "failed"), kind, code, addr, rtt, error = { name,
--           message, call }, seq, sport, ...
--   probe   { ttl = the hop, q = which of the hop's probes (1..-q),
--             reissues = how often this probe was re-issued already }
--
-- "accept" keeps the outcome in the hop. "reissue" drops it and sends the
-- same TTL again under the next sequence number (so, for TCP, from the next
-- source port); the new outcome goes through the rule again, with
-- probe.reissues one higher.
--
-- This rule:
--   * re-issues a probe that timed out once: one lost packet on a lossy
--     hop then costs a second look rather than a "*"; a hop that is silent
--     for good still ends as "*", after one more probe (and one more wait);
--   * re-issues a skipped probe (its source port was busy, EADDRINUSE: it
--     was never sent) up to 5 times, each time from the next port;
--   * accepts everything else: replies, and failed probes, whose error
--     (EADDRNOTAVAIL, ENETUNREACH, EPERM...) would only come back.
--
-- A rule should bound its re-issues itself, as this one does with
-- probe.reissues; the runner stops any rule after 10 re-issues of a probe.

local MAX_SKIPPED = 5

return function(result, probe)
  if result.status == "timeout" and probe.reissues == 0 then
    return "reissue"
  end
  if result.status == "skipped" and probe.reissues < MAX_SKIPPED then
    return "reissue"
  end
  return "accept"
end
