-- sonde.stats: the figures ping and mtr print, from known series.

local stats = require "sonde.stats"

local function near(want, got, eps)
  assert.is_number(got)
  assert.is_true(math.abs(want - got) <= (eps or 1e-12),
    ("expected %.15g, got %.15g"):format(want, got))
end

describe("sonde.stats", function()
  describe("an empty series", function()
    it("has sent 0, received 0, loss 0 and no RTT figures", function()
      local s = stats.series():summary()
      assert.are.same({ sent = 0, received = 0, loss = 0 }, s)
    end)
  end)

  describe("a series of lost probes only", function()
    it("has 100 % loss and no RTT figures", function()
      local s = stats.of{ false, false, false }
      assert.are.same({ sent = 3, received = 0, loss = 100 }, s)
    end)
  end)

  describe("a single reply", function()
    it("is last, best, worst and avg; stddev, mdev and jitter are 0", function()
      local s = stats.of{ 0.002 }
      assert.are.equal(1, s.sent)
      assert.are.equal(1, s.received)
      assert.are.equal(0, s.loss)
      assert.are.equal(0.002, s.last)
      assert.are.equal(0.002, s.best)
      assert.are.equal(0.002, s.worst)
      near(0.002, s.avg)
      assert.are.equal(0, s.stddev)
      assert.are.equal(0, s.mdev)
      assert.are.equal(0, s.jitter)
      assert.are.equal(0, s.jitter_max)
    end)
  end)

  describe("the series 1, 3, 2, 6 ms with one loss between 3 and 2", function()
    local s = stats.of{ 0.001, 0.003, false, 0.002, 0.006 }

    it("counts 5 sent, 4 received, 20 % loss", function()
      assert.are.equal(5, s.sent)
      assert.are.equal(4, s.received)
      near(20, s.loss)
    end)

    it("takes last from the most recent reply and best/worst from all", function()
      assert.are.equal(0.006, s.last)
      assert.are.equal(0.001, s.best)
      assert.are.equal(0.006, s.worst)
    end)

    it("averages the replies only", function()
      near(0.003, s.avg)
    end)

    it("gives the sample standard deviation (mtr's StDev)", function()
      -- deviations -2, 0, -1, 3 ms: squares 4 + 0 + 1 + 9 = 14; 14 / 3
      near(math.sqrt(14 / 3) / 1000, s.stddev)
    end)

    it("gives the population deviation (ping's mdev)", function()
      near(math.sqrt(14 / 4) / 1000, s.mdev)
    end)

    it("gives jitter as the mean absolute difference of consecutive replies", function()
      -- |3-1| + |2-3| + |6-2| = 2 + 1 + 4 = 7 over 3 pairs
      near(7 / 3 / 1000, s.jitter)
      near(0.004, s.jitter_max)
    end)
  end)

  describe("a series built one probe at a time", function()
    it("gives the same figures as the whole list at once, at every step", function()
      local list = { 0.0101, false, 0.0099, 0.0100, false, false, 0.0250, 0.0102 }
      local s = stats.series()
      for i, v in ipairs(list) do
        s:add(v or nil)
        local want = stats.of{ unpack(list, 1, i) }
        local got = s:summary()
        for k, w in pairs(want) do near(w, got[k]) end
        for k in pairs(got) do assert.is_not_nil(want[k], k) end
      end
    end)
  end)

  describe("RTTs alike to the nanosecond", function()
    it("keep a standard deviation that is tiny but not negative or NaN", function()
      local s = stats.series()
      for _ = 1, 1000 do s:add(1.000000001) end
      s:add(1.000000002)
      local r = s:summary()
      assert.is_true(r.stddev >= 0 and r.stddev < 1e-9)
      assert.is_true(r.mdev >= 0 and r.mdev < 1e-9)
      assert.are.equal(r.stddev, r.stddev)
    end)
  end)

  describe("loss()", function()
    it("is 0 for nothing sent and a percentage otherwise", function()
      assert.are.equal(0, stats.loss(0, 0))
      assert.are.equal(50, stats.loss(4, 2))
      assert.are.equal(100, stats.loss(3, 0))
    end)
  end)

  describe("add()", function()
    it("rejects a negative, NaN or non-number RTT", function()
      local s = stats.series()
      assert.has_error(function() s:add(-1) end)
      assert.has_error(function() s:add(0 / 0) end)
      assert.has_error(function() s:add("1") end)
      assert.are.equal(0, s:summary().sent)
    end)
  end)
end)
