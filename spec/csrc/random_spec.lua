-- The random generator (csrc/core/random.c): reproducible from a seed, independent of the thread
-- count, sane moments, permutations that are permutations, multinomial with and without
-- replacement, private generators and saved state.
local pivq = require "pivq"

local function moments(t)
  local v = t:totable()
  local n, s, s2 = #v, 0, 0
  for _, x in ipairs(v) do s = s + x; s2 = s2 + x * x end
  local mean = s / n
  return mean, math.sqrt(s2 / n - mean * mean)
end

describe("random", function()
  local threads = pivq.get_num_threads()
  after_each(function() pivq.set_num_threads(threads) end)

  it("the same seed gives the same values; another seed does not", function()
    pivq.manual_seed(42)
    local a, b = pivq.randn(3, 4), pivq.rand(5)
    pivq.manual_seed(42)
    assert.are.same(a:totable(), pivq.randn(3, 4):totable())
    assert.are.same(b:totable(), pivq.rand(5):totable())
    pivq.manual_seed(43)
    assert.are_not.same(a:totable(), pivq.randn(3, 4):totable())
  end)

  it("consecutive draws differ (the offset advances)", function()
    pivq.manual_seed(1)
    assert.are_not.same(pivq.rand(4):totable(), pivq.rand(4):totable())
  end)

  it("does not depend on the thread count (large draws take the parallel path)", function()
    local n = 300000
    local draws = {}
    for _, nt in ipairs({ 1, 2 }) do
      pivq.set_num_threads(nt)
      assert.are.equal(nt, pivq.get_num_threads())
      pivq.manual_seed(7)
      local u, z = pivq.rand(n), pivq.randn(n)
      local p = pivq.randperm(1000)
      draws[nt] = { u, z, p }
    end
    for k = 1, 3 do
      assert.are.equal(0, (draws[1][k] - draws[2][k]):abs():max(), "draw " .. k)
    end
  end)

  it("uniform and normal have the right moments", function()
    pivq.manual_seed(3)
    local u = pivq.rand(100000)
    local mu, su = moments(u)
    assert.is_true(math.abs(mu - 0.5) < 0.005, "uniform mean " .. mu)
    assert.is_true(math.abs(su - math.sqrt(1 / 12)) < 0.005, "uniform std " .. su)
    assert.is_true(u:min() >= 0 and u:max() < 1)
    local z = pivq.randn(100000)
    local mz, sz = moments(z)
    assert.is_true(math.abs(mz) < 0.01, "normal mean " .. mz)
    assert.is_true(math.abs(sz - 1) < 0.01, "normal std " .. sz)
    -- tails: about 4.55% beyond 2 sigma
    local tail = z:abs():gt(2):sum():item() / 100000
    assert.is_true(math.abs(tail - 0.0455) < 0.004, "tail " .. tail)
    local t = pivq.normal_(pivq.empty(50000), 3, 0.5)
    local mt, st = moments(t)
    assert.is_true(math.abs(mt - 3) < 0.01 and math.abs(st - 0.5) < 0.01)
    local w = pivq.uniform_(pivq.empty(50000), -2, 6)
    assert.is_true(w:min() >= -2 and w:max() < 6 and math.abs(w:mean():item() - 2) < 0.05)
  end)

  it("randint covers [lo, hi) uniformly", function()
    pivq.manual_seed(11)
    local x = pivq.randint(-2, 3, { 50000 })
    assert.are.equal("int64", x:dtype())
    assert.are.equal(-2, x:min())
    assert.are.equal(2, x:max())
    for v = -2, 2 do
      local frac = x:eq(v):sum():item() / 50000
      assert.is_true(math.abs(frac - 0.2) < 0.01, v .. ": " .. frac)
    end
    assert.are.equal("int32", pivq.randint(0, 5, { 3 }, { dtype = "int32" }):dtype())
    assert.has_error(function() pivq.randint(3, 3, { 2 }) end, nil)
  end)

  it("randperm is a permutation of 1..n", function()
    pivq.manual_seed(5)
    for _, n in ipairs({ 0, 1, 2, 10, 1000 }) do
      local p = pivq.randperm(n)
      assert.are.equal(n, p:numel())
      local seen = {}
      for _, v in ipairs(n > 0 and p:totable() or {}) do
        assert.is_true(v >= 1 and v <= n and not seen[v])
        seen[v] = true
      end
    end
    -- and not the identity (1000! makes that a certain failure of the shuffle)
    local p = pivq.randperm(1000)
    assert.is_true(p:ne(pivq.arange(1000)):sum():item() > 900)
  end)

  it("multinomial with replacement follows the weights", function()
    pivq.manual_seed(9)
    local probs = pivq.tensor { 0.1, 0, 0.6, 0.3 }
    local d = pivq.multinomial(probs, 20000, true)
    assert.are.same({ 20000 }, d:size())
    assert.are.equal(0, d:eq(2):sum():item()) -- zero weight never drawn
    for k, p in ipairs({ 0.1, 0, 0.6, 0.3 }) do
      local frac = d:eq(k):sum():item() / 20000
      assert.is_true(math.abs(frac - p) < 0.015, k .. ": " .. frac)
    end
    -- rows of a 2-D input are independent distributions; weights need not sum to 1
    local rows = pivq.multinomial(pivq.tensor { { 0, 5 }, { 7, 0 } }, 3, true)
    assert.are.same({ { 2, 2, 2 }, { 1, 1, 1 } }, rows:totable())
  end)

  it("multinomial without replacement draws distinct categories", function()
    pivq.manual_seed(10)
    for _ = 1, 20 do
      local d = pivq.multinomial(pivq.tensor { 1, 2, 3, 4, 0 }, 4, false):totable()
      local seen = {}
      for _, k in ipairs(d) do
        assert.is_true(k >= 1 and k <= 4 and not seen[k])
        seen[k] = true
      end
    end
    -- heavy weights come first more often
    local first4 = 0
    for _ = 1, 400 do
      if pivq.multinomial(pivq.tensor { 1, 1, 1, 97 }, 2, false):totable()[1] == 4 then
        first4 = first4 + 1
      end
    end
    assert.is_true(first4 > 360)
    assert.has_error(function() pivq.multinomial(pivq.tensor { 1, 0, 1 }, 3, false) end,
      "multinomial: row 0 has 2 nonzero weights; cannot draw 3 without replacement")
    assert.has_error(function() pivq.multinomial(pivq.tensor { 1, -1 }, 1, true) end)
    assert.has_error(function() pivq.multinomial(pivq.tensor { 1, 0 / 0 }, 1, true) end)
  end)

  it("private generators and saved state reproduce streams", function()
    local g = pivq.Generator(123)
    local a = pivq.rand(5, { generator = g })
    local h = pivq.Generator(123)
    assert.are.same(a:totable(), pivq.rand(5, { generator = h }):totable())
    pivq.manual_seed(8)
    pivq.rand(3)
    local state = pivq.get_rng_state()
    local x = pivq.randn(6)
    pivq.set_rng_state(state)
    assert.are.same(x:totable(), pivq.randn(6):totable())
    assert.are.same({ seed = 8, offset = 9 }, pivq.get_rng_state())
    -- a private generator does not move the default one
    pivq.rand(4, { generator = g })
    assert.are.same({ seed = 8, offset = 9 }, pivq.get_rng_state())
  end)
end)
