-- PRDC against hand-computed cases (a point exactly on a radius separates < from <=), a
-- brute-force Lua implementation of the definitions, and the large-sample limits for identical
-- distributions (density ~ 1, coverage ~ 1 - 2^-k).
local pivq = require "pivq"

local function dist(a, i, b, j)
  local s = 0
  for c = 1, a:size(2) do s = s + (a:get(i, c) - b:get(j, c)) ^ 2 end
  return math.sqrt(s)
end

local function brute_radii(x, k)
  local n, out = x:size(1), {}
  for i = 1, n do
    local ds = {}
    for j = 1, n do
      if j ~= i then ds[#ds + 1] = dist(x, i, x, j) end
    end
    table.sort(ds)
    out[i] = ds[k]
  end
  return out
end

local function brute_prdc(real, fake, k, inclusive)
  local inside = inclusive and function(d, r) return d <= r end or function(d, r) return d < r end
  local rr, fr = brute_radii(real, k), brute_radii(fake, k)
  local N, M = real:size(1), fake:size(1)
  local prec, dens, rec, cov = 0, 0, 0, 0
  for j = 1, M do
    local c = 0
    for i = 1, N do
      if inside(dist(fake, j, real, i), rr[i]) then c = c + 1 end
    end
    if c > 0 then prec = prec + 1 end
    dens = dens + c
  end
  for i = 1, N do
    local any, nearest = false, math.huge
    for j = 1, M do
      local d = dist(real, i, fake, j)
      if inside(d, fr[j]) then any = true end
      nearest = math.min(nearest, d)
    end
    if any then rec = rec + 1 end
    if nearest < rr[i] then cov = cov + 1 end
  end
  return { precision = prec / M, recall = rec / N, density = dens / (k * M), coverage = cov / N }
end

describe("pivq.eval.prdc", function()
  it("matches a hand computation with points exactly on a radius", function()
    local real = pivq.tensor { { 0 }, { 1 }, { 3 } }
    local fake = pivq.tensor { { 2 }, { -1 } }
    local r = pivq.eval.prdc(real, fake, { k = 1 })
    assert.are.equal(0.5, r.precision) -- fake -1 lies exactly on real 0's radius: not inside
    assert.are.equal(1.0, r.recall)
    assert.are.equal(0.5, r.density)
    assert.is_near(1 / 3, r.coverage, 1e-12)
    local imp = pivq.eval.prdc(real, fake, { k = 1, improved = true })
    assert.are.equal(1.0, imp.precision) -- with <= it is inside
    assert.are.equal(1.0, imp.recall)
    assert.is_nil(imp.density)
  end)

  it("equals a brute-force implementation of the definitions", function()
    for seed = 1, 4 do
      pivq.manual_seed(seed)
      local real = pivq.randn(60, 3)
      local fake = pivq.randn(45, 3) * 1.3 + 0.4
      for _, k in ipairs({ 1, 3, 5 }) do
        local got = pivq.eval.prdc(real, fake, { k = k })
        local want = brute_prdc(real, fake, k, false)
        for _, m in ipairs({ "precision", "recall", "density", "coverage" }) do
          assert.is_near(want[m], got[m], 1e-12, m .. " seed " .. seed .. " k " .. k)
        end
      end
      local imp = pivq.eval.prdc(real, fake, { improved = true })
      local want = brute_prdc(real, fake, 3, true)
      assert.is_near(want.precision, imp.precision, 1e-12)
      assert.is_near(want.recall, imp.recall, 1e-12)
    end
  end)

  it("agrees with brute-force radii across several blocks", function()
    pivq.manual_seed(11)
    local x = pivq.randn(1500, 4) -- more rows than one block of 1024
    local r = pivq.eval.knn_radii(x, 2)
    local want = brute_radii(x:narrow(1, 1, 1500), 2)
    for _, i in ipairs({ 1, 2, 700, 1024, 1025, 1500 }) do assert.is_near(want[i], r[i], 1e-5) end
  end)

  it("gives density ~ 1 and coverage ~ 1 - 2^-k for identical distributions", function()
    pivq.manual_seed(3)
    local real, fake = pivq.randn(4000, 8), pivq.randn(4000, 8)
    local r = pivq.eval.prdc(real, fake, { k = 5 })
    assert.is_near(1.0, r.density, 0.06)
    assert.is_near(1 - 2 ^ -5, r.coverage, 0.02)
    assert.is_true(r.precision > 0.8 and r.recall > 0.8)
  end)

  it("rejects bad input with messages naming the function", function()
    assert.has_error(function() pivq.eval.prdc(pivq.randn(10, 2), pivq.randn(10, 3)) end,
      "prdc: real has 2 features but fake has 3")
    assert.has_error(function() pivq.eval.prdc(pivq.randn(4, 2), pivq.randn(10, 2), { k = 5 }) end)
    local bad = pivq.randn(10, 2)
    bad:set(3, 1, 0 / 0)
    assert.has_error(function() pivq.eval.prdc(bad, pivq.randn(10, 2), { k = 2 }) end,
      "knn_radii: x contains NaN or Inf")
  end)
end)
