-- The memorisation check (issue 20): the exact nearest-neighbour search against a brute-force
-- double-precision search, the percentile against hand-computed values, and the copy share and
-- median ratio on planted copies whose answers are known by construction.
local pivq = require "pivq"
local eval = pivq.eval

-- brute force in Lua doubles: each query's nearest ref (distance, 1-based index, lowest on ties)
local function brute(ref, query)
  local R, Q = ref:totable(), query:totable()
  local dist, idx = {}, {}
  for j, q in ipairs(Q) do
    local best, arg = math.huge, 0
    for i, r in ipairs(R) do
      local s = 0
      for k = 1, #q do s = s + (q[k] - r[k]) ^ 2 end
      if s < best then best, arg = s, i end
    end
    dist[j], idx[j] = math.sqrt(best), arg
  end
  return dist, idx
end

local function float32(x) return pivq.tensor({ x }):totable()[1] end

describe("eval.nearest", function()
  it("finds the same neighbour as a brute-force search, across tile boundaries", function()
    local g = pivq.Generator(3)
    -- 5000 refs and 300 queries: more than one 4096-row and one 256-row tile
    local ref = pivq.randn({ 5000, 3 }, { generator = g })
    local query = pivq.randn({ 300, 3 }, { generator = g })
    local d, i = eval.nearest(ref, query)
    assert.are.equal("int64", i:dtype())
    local bd, bi = brute(ref, query)
    local dt, it = d:totable(), i:totable()
    for j = 1, 300 do
      assert.are.equal(bi[j], it[j], "query " .. j)
      assert.are.equal(float32(bd[j]), dt[j], "query " .. j)
    end
  end)

  it("is exact where float32 cancellation would pick the wrong neighbour", function()
    -- points far from the origin (|x|^2 ~ 3e6) and 1e-3 apart: the sgemm form's rounding error
    -- (about 0.4 in d2) dwarfs the true differences (about 1e-6)
    local base = 1000
    local ref, query = {}, {}
    for i = 1, 40 do ref[i] = { base + i * 1e-3, base, base } end
    for j = 1, 10 do query[j] = { base + (4 * j + 0.4) * 1e-3, base, base } end
    local R, Q = pivq.tensor(ref), pivq.tensor(query)
    local d, i = eval.nearest(R, Q)
    local bd, bi = brute(R, Q)
    for j = 1, 10 do
      assert.are.equal(bi[j], i:totable()[j], "query " .. j)
      assert.are.equal(float32(bd[j]), d:totable()[j], "query " .. j)
    end
  end)

  it("returns distance 0 and the lowest index for duplicates", function()
    local ref = pivq.tensor({ { 0, 0 }, { 1, 1 }, { 1, 1 }, { 5, 5 } })
    local d, i = eval.nearest(ref, pivq.tensor({ { 1, 1 }, { 5, 5 }, { 0.5, 0.5 } }))
    assert.are.same({ 0, 0, float32(math.sqrt(0.5)) }, d:totable())
    assert.are.same({ 2, 4, 1 }, i:totable())
  end)

  it("names the function and the problem on bad input", function()
    local ok, err = pcall(eval.nearest, pivq.randn(4, 3), pivq.randn(2, 5))
    assert.is_false(ok)
    assert.matches("knn_nearest: ref has 3 dims but query has 5", err)
    ok, err = pcall(eval.nearest, pivq.tensor({ { 0 / 0, 1 } }), pivq.randn(2, 2))
    assert.is_false(ok)
    assert.matches("knn_nearest: ref contains NaN or Inf", err)
    ok, err = pcall(eval.nearest, "x", pivq.randn(2, 2))
    assert.is_false(ok)
    assert.matches("nearest", err)
  end)
end)

describe("eval.percentile", function()
  it("interpolates linearly between order statistics (NumPy's default)", function()
    local t = pivq.tensor({ 20, 1, 19, 2, 18, 3, 17, 4, 16, 5, 15, 6, 14, 7, 13, 8, 12, 9, 11, 10 })
    assert.are.equal(1 + 19 * 5 / 100, eval.percentile(t, 5)) -- h = 0.95: 1 + 0.95 * (2 - 1)
    assert.are.equal(10.5, eval.percentile(t, 50))
    assert.are.equal(1, eval.percentile(t, 0))
    assert.are.equal(20, eval.percentile(t, 100))
    assert.are.equal(7, eval.percentile(pivq.tensor({ 7 }), 5))
    local ok, err = pcall(eval.percentile, t, 101)
    assert.is_false(ok)
    assert.matches("percentile: q must be a number in 0..100, got 101", err)
  end)
end)

describe("eval.memorisation", function()
  -- training points far apart on axis 2; a point at offset h on axis 1 from training point i has
  -- i as its nearest training point, at distance exactly h
  local function near(i, h) return { h, 1000 * i, 0 } end
  local train = {}
  for i = 1, 30 do train[i] = near(i, 0) end
  -- held-out: offsets 1..20 (5th percentile 1.95, median 10.5)
  local heldout = {}
  for j = 1, 20 do heldout[j] = near(j, j) end

  it("counts planted copies exactly and gives the hand-computed ratio", function()
    -- 10 samples: 3 exact copies of training points, 7 at offsets 4..10
    local samples = { near(5, 0), near(17, 0), near(29, 0) }
    for s = 4, 10 do samples[#samples + 1] = near(s, s) end
    local m = eval.memorisation(pivq.tensor(train), pivq.tensor(heldout), pivq.tensor(samples))
    assert.are.equal(3 / 10, m.copy_share)
    assert.are.equal(1 + 19 * 5 / 100, m.threshold) -- the 5th percentile of 1..20
    assert.are.equal(1 / 20, m.heldout_share) -- offset 1 only
    -- sample distances sorted: 0 0 0 4 5 6 7 8 9 10: median (5 + 6) / 2; held-out median 10.5
    assert.are.equal(5.5, m.sample_median)
    assert.are.equal(5.5 / 10.5, m.median_ratio)
    assert.are.same({ 5, 17, 29, 4, 5, 6, 7, 8, 9, 10 }, m.sample_nn_index:totable())
  end)

  it("gives share 0 when no sample comes closer than the threshold, 1 when all are copies", function()
    local far, copies = {}, {}
    for s = 1, 8 do far[s], copies[s] = near(s, 2 + s), near(s, 0) end
    local T, H = pivq.tensor(train), pivq.tensor(heldout)
    assert.are.equal(0, eval.memorisation(T, H, pivq.tensor(far)).copy_share)
    assert.are.equal(1, eval.memorisation(T, H, pivq.tensor(copies)).copy_share)
    assert.are.equal(0, eval.memorisation(T, H, pivq.tensor(copies)).median_ratio)
  end)

  it("honours the percentile and refuses unknown options, naming the function", function()
    local T, H = pivq.tensor(train), pivq.tensor(heldout)
    local m = eval.memorisation(T, H, pivq.tensor({ near(3, 3) }), { percentile = 50 })
    assert.are.equal(10.5, m.threshold)
    assert.are.equal(1, m.copy_share)
    local ok, err = pcall(eval.memorisation, T, H, H, { percentil = 5 })
    assert.is_false(ok)
    assert.matches("memorisation: unknown option 'percentil'", err)
    ok, err = pcall(eval.memorisation, T, H, pivq.randn(3, 2))
    assert.is_false(ok)
    assert.matches("memorisation: samples has 2 features but train has 3", err)
  end)
end)

describe("charts", function()
  it("draws the histogram as an RGB image, refusing bad values by name", function()
    local groups = { { name = "HELD-OUT", values = pivq.tensor({ 1, 2, 3 }) }, { name = "PAIR", values = { 0, 0, 2 } } }
    local img = pivq.charts.histogram(groups, { threshold = 1.5 })
    assert.are.equal(3, img:size(1))
    assert.is_true(img:min() >= 0 and img:max() <= 1)
    assert.is_true(img:lt(1):sum():item() > 0) -- something is drawn
    -- the threshold line is drawn: the same chart without it differs
    assert.is_true(img:ne(pivq.charts.histogram(groups)):sum():item() > 0)
    local ok, err = pcall(pivq.charts.histogram, { { name = "A", values = { 1, 0 / 0 } } })
    assert.is_false(ok)
    assert.matches("charts.histogram: groups%[1%].values%[2%] must be a finite number", err)
  end)
end)
