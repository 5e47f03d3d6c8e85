-- VQ kernels against naive Lua references: distances, k-means++ on separated clusters, the EMA
-- update computed by hand, code statistics.
local pivq = require "pivq"

local function naive_sq_dist(x, e)
  local N, K, c = x:size(1), e:size(1), x:size(2)
  local out = {}
  for i = 1, N do
    out[i] = {}
    for k = 1, K do
      local s = 0
      for j = 1, c do s = s + (x:get(i, j) - e:get(k, j)) ^ 2 end
      out[i][k] = s
    end
  end
  return out
end

describe("pivq.vq", function()
  it("computes squared distances like the naive formula", function()
    pivq.manual_seed(1)
    local x, e = pivq.randn(13, 7), pivq.randn(9, 7)
    local d, ref = pivq.vq.sq_distances(x, e), naive_sq_dist(x, e)
    for i = 1, 13 do
      for k = 1, 9 do assert.is_near(ref[i][k], d:get(i, k), 1e-4 * (1 + ref[i][k])) end
    end
    -- works on a transposed (non-contiguous) codebook view too
    local et = e:t():contiguous():t()
    assert.is_near(d:get(3, 4), pivq.vq.sq_distances(x, et):get(3, 4), 1e-5)
  end)

  it("recovers well-separated clusters with k-means++", function()
    local centers = pivq.tensor { { 0, 0, 0 }, { 20, 0, 0 }, { 0, 20, 0 }, { 0, 0, 20 }, { 20, 20, 20 } }
    for seed = 1, 5 do
      pivq.manual_seed(seed)
      local which = pivq.randint(1, 6, { 500 })
      local x = centers:index_select(1, which) + pivq.randn(500, 3) * 0.3
      local found = pivq.vq.kmeans(x, 5, { iters = 10, generator = pivq.Generator(seed) })
      -- every true centre has a found centroid within 0.3
      for i = 1, 5 do
        local best = math.huge
        for k = 1, 5 do
          local s = 0
          for j = 1, 3 do s = s + (centers:get(i, j) - found:get(k, j)) ^ 2 end
          best = math.min(best, math.sqrt(s))
        end
        assert.is_true(best < 0.3, "seed " .. seed .. ": centre " .. i .. " missed by " .. best)
      end
    end
  end)

  it("takes a Lloyd step over several row blocks as one over the whole distance matrix", function()
    -- 9,000 rows: three of the C code's 4,096-row distance blocks
    local x = pivq.randn({ 9000, 4 }, { generator = pivq.Generator(3) })
    local seeds = pivq.vq.kmeans(x, 6, { iters = 0, generator = pivq.Generator(9) })
    local stepped = pivq.vq.kmeans(x, 6, { iters = 1, generator = pivq.Generator(9) })
    local _, nearest = pivq.vq.sq_distances(x, seeds):min(2)
    nearest = nearest:view(-1)
    for k = 1, 6 do
      local member = nearest:eq(k):float():view(-1, 1)
      local count = member:sum():item()
      assert.is_true(count > 0, "cluster " .. k .. " is empty")
      local want = (x * member):sum(1, true) / count
      assert.is_true((stepped:narrow(1, k, 1) - want):abs():max() < 1e-4, "centroid " .. k)
    end
  end)

  it("is reproducible for a generator seed", function()
    local x = pivq.randn(200, 4)
    local a = pivq.vq.kmeans(x, 8, { generator = pivq.Generator(7) })
    local b = pivq.vq.kmeans(x, 8, { generator = pivq.Generator(7) })
    assert.are.same(a:totable(), b:totable())
  end)

  it("updates the codebook by EMA with Laplace smoothing as computed by hand", function()
    local K, c, decay, eps = 3, 2, 0.9, 0.01
    local codebook = pivq.zeros(K, c)
    local count = pivq.tensor { 1, 2, 0.5 }
    local sum = pivq.tensor { { 1, 1 }, { 2, 4 }, { 0, 0.5 } }
    local latents = pivq.tensor { { 1, 2 }, { 3, 4 }, { 5, 6 }, { -1, 0 } }
    local codes = pivq.tensor({ 1, 1, 3, 2 }, "int64")
    local n_k = { 2, 1, 1 }
    local s_k = { { 4, 6 }, { -1, 0 }, { 5, 6 } }
    local cnt, sm, n = {}, {}, 0
    for k = 1, K do
      cnt[k] = decay * count[k] + (1 - decay) * n_k[k]
      n = n + cnt[k]
      sm[k] = {}
      for j = 1, c do sm[k][j] = decay * sum:get(k, j) + (1 - decay) * s_k[k][j] end
    end
    pivq.vq.ema_update_(codebook, count, sum, latents, codes, decay, eps)
    for k = 1, K do
      assert.is_near(cnt[k], count[k], 1e-6)
      local smoothed = (cnt[k] + eps) / (n + K * eps) * n
      for j = 1, c do
        assert.is_near(sm[k][j], sum:get(k, j), 1e-6)
        assert.is_near(sm[k][j] / smoothed, codebook:get(k, j), 1e-5)
      end
    end
  end)

  it("counts codes, distinct codes per image and perplexity", function()
    local codes = pivq.tensor({ { 1, 1, 2, 4 }, { 3, 3, 3, 3 }, { 1, 2, 3, 4 } }, "int64")
    local st = pivq.vq.code_stats(codes, 5)
    assert.are.same({ 3, 2, 5, 2, 0 }, st.counts:totable())
    assert.is_near((3 + 1 + 4) / 3, st.K_img, 1e-12)
    assert.is_near(4 / 5, st.usage, 1e-12)
    local H = 0
    for _, n in ipairs({ 3, 2, 5, 2 }) do H = H - n / 12 * math.log(n / 12) end
    assert.is_near(math.exp(H), st.perplexity, 1e-9)
  end)

  it("rejects bad input with messages naming the function", function()
    assert.has_error(function() pivq.vq.kmeans(pivq.randn(3, 2), 4) end,
      "kmeans: need 1 <= K <= N (number of rows), got K=4 N=3")
    local bad = pivq.randn(5, 2)
    bad:set(2, 1, 0 / 0)
    assert.has_error(function() pivq.vq.kmeans(bad, 2) end,
      "kmeans: x contains NaN or Inf (first in row 2 of 5, 1-based)")
    assert.has_error(function() pivq.vq.code_counts(pivq.tensor({ 1, 9 }, "int64"), 4) end,
      "code_counts: code 9 out of range 1..4")
    assert.has_error(function() pivq.vq.sq_distances(pivq.randn(2, 3), pivq.randn(2, 4)) end)
    assert.has_error(function() pivq.vq.code_counts(pivq.tensor { 1, 2 }, 4) end,
      "code_counts: codes must be int64, got float32")
  end)
end)
