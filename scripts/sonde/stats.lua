-- sonde.stats: round-trip statistics, pure functions over numbers (seconds
-- in, seconds out). No engine, no I/O: ping and mtr feed it outcomes and
-- read figures back; formats print them.
--
--   local stats = require "sonde.stats"
--   local s = stats.series()
--   s:add(0.0012)        -- a reply's RTT
--   s:add(nil)           -- a probe that got no reply (counts as sent, lost)
--   s:summary()          -- { sent, received, loss, last, best, worst, avg,
--                        --   stddev, mdev, jitter, jitter_max, jitter_last,
--                        --   jitter_int, gmean }
--
-- Definitions (each is what the tool people compare against computes):
--   loss    percentage of probes sent that got no reply, 0..100
--   avg     arithmetic mean of the RTTs
--   stddev  sample standard deviation (n - 1), as mtr's StDev; 0 for n < 2
--   mdev    population standard deviation, sqrt(mean(x^2) - mean(x)^2), as
--           ping's "rtt min/avg/max/mdev"
--   jitter  mean absolute difference of consecutive RTTs (mtr's Javg);
--           0 for fewer than two replies. "Consecutive" is in the order the
--           replies were added; a lost probe in between does not break the
--           pair (the replies on either side of it are still consecutive).
--   jitter_max  the largest such difference (mtr's Jmax)
--   jitter_last the latest such difference (mtr's Jttr)
--   jitter_int  interarrival jitter as RFC 3550 (6.4.1) smooths it:
--           J += (|D| - J) / 16 per pair of consecutive replies (mtr's Jint)
--   gmean   geometric mean of the RTTs (mtr's Gmean); an RTT of 0 counts
--           as 1 microsecond (a clock's grain), so the mean stays defined
-- Fields that have no value (no reply yet) are absent.

local M = {}

local Series = {}
Series.__index = Series

-- A new, empty series.
function M.series()
  return setmetatable({ sent = 0, received = 0, mean = 0, m2 = 0,
    jsum = 0, jn = 0, jmax = 0, jlast = 0, jint = 0, logsum = 0 }, Series)
end

-- Count one probe: rtt (seconds) when it got a reply, nil when it was lost.
-- A probe that never measured anything (skipped, failed, cancelled) is not
-- added at all. Raises on a negative or non-number RTT (a caller's bug).
function Series:add(rtt)
  if rtt ~= nil and (type(rtt) ~= "number" or rtt ~= rtt or rtt < 0 or rtt == math.huge) then
    error("sonde.stats: rtt must be a non-negative number of seconds, got " .. tostring(rtt), 2)
  end
  self.sent = self.sent + 1
  if rtt == nil then return self end
  local n = self.received + 1
  self.received = n
  if self.last ~= nil then
    local d = math.abs(rtt - self.last)
    self.jsum, self.jn = self.jsum + d, self.jn + 1
    if d > self.jmax then self.jmax = d end
    self.jlast = d
    self.jint = self.jint + (d - self.jint) / 16
  end
  self.logsum = self.logsum + math.log(math.max(rtt, 1e-6))
  self.last = rtt
  if self.best == nil or rtt < self.best then self.best = rtt end
  if self.worst == nil or rtt > self.worst then self.worst = rtt end
  -- Welford's running mean and sum of squared deviations: stable where
  -- sumsq / n - mean^2 loses every digit (RTTs alike to the microsecond).
  local delta = rtt - self.mean
  self.mean = self.mean + delta / n
  self.m2 = self.m2 + delta * (rtt - self.mean)
  return self
end

-- The figures so far (a new table each time).
function Series:summary()
  local s = { sent = self.sent, received = self.received,
    loss = M.loss(self.sent, self.received) }
  if self.received > 0 then
    local n = self.received
    s.last, s.best, s.worst = self.last, self.best, self.worst
    s.avg = self.mean
    s.stddev = n > 1 and math.sqrt(math.max(0, self.m2 / (n - 1))) or 0
    s.mdev = math.sqrt(math.max(0, self.m2 / n))
    s.jitter = self.jn > 0 and self.jsum / self.jn or 0
    s.jitter_max = self.jmax
    s.jitter_last = self.jlast
    s.jitter_int = self.jint
    s.gmean = math.exp(self.logsum / n)
  end
  return s
end

-- Percentage of `sent` that did not come back (0 when nothing was sent).
function M.loss(sent, received)
  if sent <= 0 then return 0 end
  return (sent - received) / sent * 100
end

-- The summary of a whole list at once: rtts is a list whose entries are
-- RTTs (seconds) or false for a lost probe.
function M.of(rtts)
  local s = M.series()
  for i = 1, #rtts do s:add(rtts[i] or nil) end
  return s:summary()
end

return M
