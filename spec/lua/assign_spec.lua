-- pivq.assign: optimality against exhaustive search on tiny problems (ties and duplicate rows
-- included) and against an independent Hungarian solver on medium ones; distinctness; the
-- permutation property; the batch; the quantizer's blockwise form (vq.match); errors.
local pivq = require "pivq"
local hungarian = require "helpers.hungarian"

local function to_rows(t)
  return t:totable()
end

local function total_of(cost, cols)
  local s = 0
  for i = 1, #cols do s = s + cost[i][cols[i]] end
  return s
end

local function brute_min(cost, L, K)
  local best, used = math.huge, {}
  local function rec(i, acc)
    if acc >= best then return end
    if i > L then
      best = acc
      return
    end
    for j = 1, K do
      if not used[j] then
        used[j] = true
        rec(i + 1, acc + cost[i][j])
        used[j] = false
      end
    end
  end
  rec(1, 0)
  return best
end

local function distinct(cols, K)
  local seen = {}
  for _, c in ipairs(cols) do
    if c < 1 or c > K or seen[c] then return false end
    seen[c] = true
  end
  return true
end

describe("pivq.assign", function()
  it("is optimal on thousands of tiny problems, with ties and duplicate rows", function()
    local g = pivq.Generator(1)
    local n = 0
    for trial = 1, 3000 do
      local L = 1 + trial % 5
      local K = L + (trial % 4)
      local c
      if trial % 3 == 0 then
        c = pivq.randint(0, 4, { L, K }, { generator = g, dtype = "float32" }) -- many ties
      else
        c = pivq.rand(L, K, { generator = g })
      end
      if trial % 7 == 0 and L > 1 then c:narrow(1, 2, 1):copy(c:narrow(1, 1, 1)) end -- duplicate row
      local cost = to_rows(c)
      local cols = pivq.assign(c):totable()
      assert.is_true(distinct(cols, K))
      local got, want = total_of(cost, cols), brute_min(cost, L, K)
      assert.is_near(want, got, 1e-5, string.format("trial %d (L=%d K=%d)", trial, L, K))
      n = n + 1
    end
    assert.are.equal(3000, n)
  end)

  it("matches an independent Hungarian solver on medium problems", function()
    local g = pivq.Generator(2)
    for _, shape in ipairs({ { 20, 40 }, { 32, 64 }, { 49, 120 }, { 64, 64 }, { 30, 200 } }) do
      local L, K = shape[1], shape[2]
      -- squared-Euclidean costs from random latents and codebook, as the quantizer sees them
      local z, e = pivq.randn(L, 8, { generator = g }), pivq.randn(K, 8, { generator = g })
      local c = pivq.vq.sq_distances(z, e)
      local cost = to_rows(c)
      local want = hungarian.solve(cost, L, K)
      local cols = pivq.assign(c):totable()
      assert.is_true(distinct(cols, K))
      assert.is_near(want, total_of(cost, cols), 1e-6 * math.abs(want) + 1e-6, L .. "x" .. K)
      -- uniform costs too
      local u = pivq.rand(L, K, { generator = g })
      local ucost = to_rows(u)
      assert.is_near(hungarian.solve(ucost, L, K), total_of(ucost, pivq.assign(u):totable()), 1e-5)
    end
  end)

  it("permuting the latents permutes the indices and keeps the set", function()
    local g = pivq.Generator(3)
    for _ = 1, 20 do
      local z, e = pivq.randn(16, 4, { generator = g }), pivq.randn(24, 4, { generator = g })
      local perm = pivq.randperm(16, { generator = g })
      local a = pivq.assign(pivq.vq.sq_distances(z, e))
      local b = pivq.assign(pivq.vq.sq_distances(z:index_select(1, perm), e))
      for i = 1, 16 do assert.are.equal(a[perm[i]], b[i]) end
    end
  end)

  it("equals nearest quantization when the row-wise argmins are distinct", function()
    local g = pivq.Generator(4)
    local checked = 0
    for _ = 1, 50 do
      local c = pivq.rand(6, 300, { generator = g })
      local _, nearest = c:min(2)
      local list = nearest:totable()
      if distinct(list, 300) then
        assert.are.same(list, pivq.assign(c):totable())
        checked = checked + 1
      end
    end
    assert.is_true(checked > 10)
  end)

  it("solves a batch like the problems one by one", function()
    local c = pivq.rand(5, 7, 30)
    local batch = pivq.assign(c)
    assert.are.same({ 5, 7 }, batch:size())
    for b = 1, 5 do assert.are.same(pivq.assign(c[b]):totable(), batch[b]:totable()) end
    -- a transposed (non-contiguous) view is accepted
    local t = pivq.rand(30, 7):t()
    assert.are.same(pivq.assign(t:contiguous()):totable(), pivq.assign(t):totable())
  end)

  it("vq.match solves each image's latents against the codebook, over several blocks of images", function()
    -- 10 images of L = 64 latents and K = 512 codes: C takes 8 images per block of distances
    -- (2 blocks, the last one short); each image's codes are an optimal assignment of the
    -- squared distances computed here in Lua, checked by an independent Hungarian solver
    local g = pivq.Generator(5)
    local B, L, K, c = 10, 64, 512, 4
    local z, e = pivq.randn(B, L, c, { generator = g }), pivq.randn(K, c, { generator = g })
    local codes = pivq.vq.match(z, e)
    assert.are.same({ B, L }, codes:size())
    local zt, et, ct = z:totable(), e:totable(), codes:totable()
    for b = 1, B do
      local cost = {}
      for i = 1, L do
        cost[i] = {}
        for k = 1, K do
          local d = 0
          for j = 1, c do d = d + (zt[b][i][j] - et[k][j]) ^ 2 end
          cost[i][k] = d
        end
      end
      assert.is_true(distinct(ct[b], K), "image " .. b)
      local want = hungarian.solve(cost, L, K)
      assert.is_near(want, total_of(cost, ct[b]), 1e-5 * want + 1e-5, "image " .. b)
    end
    -- the same codes as the whole-matrix form, and from a non-contiguous view of the latents
    local whole = pivq.assign(pivq.vq.sq_distances(z:reshape(B * L, c), e):view(B, L, K))
    assert.are.same(whole:totable(), ct)
    assert.are.same(ct, pivq.vq.match(z:transpose(1, 2):contiguous():transpose(1, 2), e):totable())
  end)

  it("vq.match rejects bad latents and codebooks with messages naming it", function()
    local e = pivq.randn(6, 4)
    assert.has_error(function() pivq.vq.match(pivq.randn(2, 7, 4), e) end,
      "vq_match: need 1 <= L <= K codes per image, got L=7 K=6")
    assert.has_error(function() pivq.vq.match(pivq.randn(2, 3, 5), e) end,
      "vq_match: z must be a float32 B x L x 4 tensor, got 2x3x5 float32")
    assert.has_error(function() pivq.vq.match(pivq.randn(6, 4), e) end)
    assert.has_error(function() pivq.vq.match(pivq.randn(2, 3, 4), pivq.randn(6, 4, 1)) end)
    local inf = pivq.randn(2, 3, 4)
    inf:set(2, 1, 3, math.huge)
    local ok, err = pcall(pivq.vq.match, inf, e) -- every column of that row is +Inf: any may be named
    assert.is_false(ok)
    assert.matches("^vq_match: images 1%.%.2 %(1%-based%) give assign_batch: cost%[1,0,%d%] %(0%-based%) is %+Inf", err)
    assert.are.same({ 0, 3 }, pivq.vq.match(pivq.randn(0, 3, 4), e):size())
  end)

  it("rejects bad costs with messages naming the function", function()
    assert.has_error(function() pivq.assign(pivq.rand(5, 3)) end,
      "assign: cost has L=5 rows but only K=3 columns (need L <= K)")
    local nan = pivq.rand(2, 4)
    nan:set(2, 3, 0 / 0)
    assert.has_error(function() pivq.assign(nan) end, "assign: cost[1,2] (0-based) is NaN (costs must be finite)")
    local inf = pivq.rand(3, 2, 4)
    inf:set(2, 1, 4, math.huge)
    assert.has_error(function() pivq.assign(inf) end)
    assert.has_error(function() pivq.assign(pivq.rand(4)) end)
    assert.has_error(function() pivq.assign(pivq.zeros(0, 4)) end)
    assert.has_error(function() pivq.assign(pivq.zeros(2, 4, "int64")) end)
    assert.has_error(function() pivq.assign({ { 1, 2 } }) end)
  end)
end)
