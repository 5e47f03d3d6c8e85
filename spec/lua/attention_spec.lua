-- Fused attention against the unfused composition, and its gradients.
local pivq = require "pivq"
local gradcheck = require "helpers.gradcheck"
local F = pivq.F

local gen = pivq.Generator(21)
local function randn(...) return pivq.randn({ ... }, { generator = gen }) end
local function leaf(t) return t:detach():clone():requires_grad(true) end
local function close(a, b, tol)
  local d = (a - b):abs():max()
  assert(d <= (tol or 1e-5), string.format("max difference %g", d))
end

-- softmax(q k^T / sqrt(D) + mask) v, op by op
local function unfused(q, k, v, mask)
  local s = q:matmul(k:transpose(-2, -1)) / math.sqrt(q:size(-1))
  if mask then s = s + mask end
  return F.softmax(s, -1):matmul(v)
end

describe("pivq.F.attention", function()
  it("matches the unfused composition (self, cross, masked, multi-head)", function()
    local q, k, v = randn(2, 3, 5, 4), randn(2, 3, 5, 4), randn(2, 3, 5, 6)
    close(F.attention(q, k, v), unfused(q, k, v))
    local kc, vc = randn(2, 3, 7, 4), randn(2, 3, 7, 6)
    close(F.attention(q, kc, vc), unfused(q, kc, vc))
    local mask = randn(5, 7)
    close(F.attention(q, kc, vc, { mask = mask }), unfused(q, kc, vc, mask))
    close(F.attention(randn(5, 4), randn(7, 4), randn(7, 2)) * 0, pivq.zeros(5, 2))
  end)

  it("matches the composition on both engines: small heads (tiled kernels) and large (BLAS)", function()
    -- heads up to 256 x 256 with head dims up to 128 run on csrc/ops/gemm_small.c, larger on OpenBLAS
    for _, sz in ipairs({ { 1, 300, 260, 8 }, { 1, 9, 7, 130 }, { 2, 17, 33, 20 } }) do
      local B, Lq, Lk, D = unpack(sz)
      local q, k, v = leaf(randn(B, Lq, D)), leaf(randn(B, Lk, D)), leaf(randn(B, Lk, D))
      local o = F.attention(q, k, v)
      local qr, kr, vr = leaf(q), leaf(k), leaf(v)
      local ref = unfused(qr, kr, vr)
      close(o, ref, 1e-5)
      local w = randn(B, Lq, D)
      ;(o * w):sum():backward()
      ;(ref * w):sum():backward()
      close(q:grad(), qr:grad(), 1e-4)
      close(k:grad(), kr:grad(), 1e-4)
      close(v:grad(), vr:grad(), 1e-4)
    end
  end)

  it("hides keys under a -inf mask (causal)", function()
    local q, k, v = randn(1, 4, 3), randn(1, 4, 3), randn(1, 4, 3)
    local causal = pivq.zeros(4, 4)
    for i = 1, 4 do for j = i + 1, 4 do causal:set(i, j, -math.huge) end end
    local y = F.attention(q, k, v, { mask = causal })
    close(y[1][1], v[1][1]) -- the first query sees only the first key
  end)

  it("reads strided heads without copying (a transposed projection)", function()
    local x = randn(2, 5, 3, 4) -- (B, L, H, Dh)
    local q = x:transpose(2, 3) -- (B, H, L, Dh), not contiguous
    close(F.attention(q, q, q), unfused(q:contiguous(), q:contiguous(), q:contiguous()))
  end)

  it("lays out outputs and gradients like its inputs, and takes strided gradients", function()
    -- heads viewed from (B, L, 3E) projections, as MultiheadAttention does
    local B, L, S, H, Dh = 2, 5, 7, 3, 4
    local E = H * Dh
    local function heads(t, i, n) return t:narrow(3, (i - 1) * E + 1, E):view(B, n, H, Dh):transpose(2, 3) end
    local x, c = leaf(randn(B, L, 3 * E)), leaf(randn(B, S, 3 * E))
    local o = F.attention(heads(x, 1, L), heads(c, 2, S), heads(c, 3, S))
    local merged = o:transpose(2, 3)
    assert.is_true(merged:is_contiguous()) -- (B, L, H, Dh) in memory: folding the heads is free
    local w = randn(B, L, E)
    ;(merged:reshape(B, L, E) * w):sum():backward() -- reaches the op as a transposed view
    local xr, cr = leaf(x), leaf(c)
    local ref = unfused(heads(xr, 1, L):contiguous(), heads(cr, 2, S):contiguous(), heads(cr, 3, S):contiguous())
    close(o, ref)
    ;(ref:transpose(2, 3):reshape(B, L, E) * w):sum():backward()
    close(x:grad(), xr:grad())
    close(c:grad(), cr:grad())
    assert.is_true(x:grad():is_contiguous() and c:grad():is_contiguous())
  end)

  it("reports mismatched shapes", function()
    local ok, err = pcall(F.attention, randn(2, 5, 4), randn(2, 6, 3), randn(2, 6, 3))
    assert.is_false(ok)
    assert.matches("attention: q 2x5x4, k 2x6x3", err, 1, true)
  end)

  it("has finite-difference gradients for q, k, v and the mask", function()
    local q, k, v = leaf(randn(2, 2, 3, 4)), leaf(randn(2, 2, 5, 4)), leaf(randn(2, 2, 5, 3))
    local mask = leaf(randn(3, 5))
    local ok, msg = gradcheck(function(a, b, c, m) return F.attention(a, b, c, { mask = m }) end,
      { q, k, v, mask })
    assert(ok, msg)
    local x = leaf(randn(2, 4, 2, 3))
    ok, msg = gradcheck(function(t)
      local h = t:transpose(2, 3)
      return F.attention(h, h, h)
    end, { x })
    assert(ok, msg)
  end)
end)
