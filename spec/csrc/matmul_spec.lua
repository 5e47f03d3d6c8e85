-- Matrix products (csrc/ops/matmul.c) against a naive Lua triple loop: 2-D, transposed and
-- otherwise strided views (which BLAS takes without copies, or which must be copied), batched
-- and broadcast batches, 1-D operands, degenerate sizes, and gemm_ with alpha/beta.
local pivq = require "pivq"
local ref = require "helpers.ref"

local r = ref.rng(5)

local function rand(shape)
  local lt = ref.map(ref.random(shape, r, -1, 1), ref.f32)
  return ref.to_tensor(lt), lt
end

-- naive batched matmul over Lua tensors with numpy rules (1-D promotion, batch broadcast)
local function ref_matmul(la, lb)
  local a, b = la, lb
  local drop_rows, drop_cols = false, false
  if #a.shape == 1 then a, drop_rows = { shape = { 1, a.shape[1] }, data = a.data }, true end
  if #b.shape == 1 then b, drop_cols = { shape = { b.shape[1], 1 }, data = b.data }, true end
  local m, k, n = a.shape[#a.shape - 1], a.shape[#a.shape], b.shape[#b.shape]
  local ba, bb = {}, {}
  for i = 1, #a.shape - 2 do ba[i] = a.shape[i] end
  for i = 1, #b.shape - 2 do bb[i] = b.shape[i] end
  local bshape = assert(ref.broadcast_shape(ba, bb))
  local out = {}
  local nb = ref.numel(bshape)
  local function matrix(lt, bshape_of, bidx)
    -- flat offset of the matrix at broadcast batch index bidx
    local nd = #bshape_of
    local k0 = 0
    for d = 1, nd do
      local i = bidx[d + #bidx - nd]
      if bshape_of[d] == 1 then i = 1 end
      k0 = k0 * bshape_of[d] + (i - 1)
    end
    local rows, cols = lt.shape[#lt.shape - 1], lt.shape[#lt.shape]
    local data = {}
    for e = 1, rows * cols do data[e] = lt.data[k0 * rows * cols + e] end
    return { shape = { rows, cols }, data = data }
  end
  for q = 1, nb do
    local bidx = ref.unravel(bshape, q)
    local c = ref.mm(matrix(a, ba, bidx), matrix(b, bb, bidx))
    for e = 1, m * n do out[#out + 1] = c.data[e] end
  end
  local shape = { unpack(bshape) }
  if not drop_rows then shape[#shape + 1] = m end
  if not drop_cols then shape[#shape + 1] = n end
  return { shape = shape, data = out }, k
end

local function check(a, b, la, lb, what)
  local expect, k = ref_matmul(la, lb)
  -- float32 products of k terms in [-1, 1]: absolute error well under k * 2^-23
  ref.assert_close(a:matmul(b), expect, 1e-4, 1e-6 * math.max(k, 1), what)
end

describe("matmul", function()
  it("2-D products of many sizes", function()
    for _, mkn in ipairs({ { 1, 1, 1 }, { 2, 3, 4 }, { 7, 5, 3 }, { 16, 16, 16 }, { 33, 17, 9 }, { 1, 64,
      1 } }) do
      local m, k, n = unpack(mkn)
      local a, la = rand({ m, k })
      local b, lb = rand({ k, n })
      check(a, b, la, lb, table.concat(mkn, "x"))
    end
  end)

  it("transposed views on either side (no copies) and both", function()
    local a, la = rand({ 6, 4 })
    local b, lb = rand({ 5, 6 })
    -- a^T (4x6) @ b^T (6x5)
    local at = ref.from(a:t())
    local bt = ref.from(b:t())
    check(a:t(), b:t(), at, bt, "aT bT")
    check(a:t(), a, at, la, "aT a")
    check(b, b:t():contiguous(), lb, bt, "b bT")
  end)

  it("strided views that BLAS cannot take are copied first", function()
    local big, _ = rand({ 8, 10 })
    local a = big:narrow(2, 1, 10):narrow(1, 2, 5):select(2, 3):view(5, 1) -- column
    local rows = big:narrow(1, 1, 4):narrow(2, 2, 6) -- row stride 10, contiguous rows
    local every_other = big:view(8, 5, 2):select(3, 1) -- stride 2 within rows
    check(rows, every_other:narrow(1, 1, 6), ref.from(rows), ref.from(every_other:narrow(1, 1, 6)), "strided")
    check(a:t(), a, ref.from(a:t()), ref.from(a), "column view")
    local e = pivq.tensor { { 1, 2, 3 } }:expand(4, 3) -- stride-0 rows
    check(e, big:narrow(1, 1, 3), ref.from(e), ref.from(big:narrow(1, 1, 3)), "expanded")
  end)

  it("1-D operands: dot, vector-matrix, matrix-vector", function()
    local v, lv = rand({ 5 })
    local w, lw = rand({ 5 })
    local m, lm = rand({ 5, 3 })
    local m2, lm2 = rand({ 4, 5 })
    check(v, w, lv, lw, "dot")
    assert.are.equal(0, v:matmul(w):dim())
    check(v, m, lv, lm, "vec @ mat")
    assert.are.same({ 3 }, v:matmul(m):size())
    check(m2, v, lm2, lv, "mat @ vec")
    assert.are.same({ 4 }, m2:matmul(v):size())
    local strided = m:t():select(1, 2) -- a row of a transposed matrix: stride 3
    check(strided, m, ref.from(strided), lm, "strided vec @ mat")
  end)

  it("batched with broadcast batch dims", function()
    local cases = {
      { { 3, 2, 4 }, { 3, 4, 5 } },
      { { 3, 2, 4 }, { 4, 5 } },
      { { 2, 4 }, { 3, 4, 5 } },
      { { 2, 1, 2, 3 }, { 4, 3, 2 } },
      { { 4 }, { 2, 4, 3 } },
      { { 2, 3, 4 }, { 4 } },
    }
    for _, c in ipairs(cases) do
      local a, la = rand(c[1])
      local b, lb = rand(c[2])
      check(a, b, la, lb, table.concat(c[1], "x") .. " @ " .. table.concat(c[2], "x"))
    end
    -- a batch of transposed matrices (strided batch)
    local a, _ = rand({ 3, 4, 2 })
    local b, lb = rand({ 3, 4, 5 })
    local at = a:transpose(2, 3)
    check(at, b, ref.from(at), lb, "batched transposed")
    assert.are.equal(pivq.bmm, pivq.matmul)
  end)

  it("degenerate sizes: k = 0 gives zeros, empty m or n gives empty", function()
    local z = pivq.empty(3, 0):matmul(pivq.empty(0, 4))
    assert.are.same({ 3, 4 }, z:size())
    assert.are.same({ { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } }, z:totable())
    assert.are.same({ 0, 4 }, pivq.ones(0, 2):matmul(pivq.ones(2, 4)):size())
    assert.are.same({ 2, 0 }, pivq.ones(2, 2):matmul(pivq.ones(2, 0)):size())
  end)

  it("matmul(b, out) writes into a given 2-D result", function()
    local a, la = rand({ 3, 4 })
    local b, lb = rand({ 4, 5 })
    local out = pivq.full({ 3, 5 }, 0 / 0)
    assert.are.equal(out, a:matmul(b, out))
    ref.assert_close(out, ref.mm(la, lb), 1e-5, 1e-5)
    assert.are.equal(out, a:t():contiguous():t():matmul(b, out)) -- a, stored column-major
    ref.assert_close(out, ref.mm(ref.from(a), lb), 1e-5, 1e-5)
    ref.raises(function() a:matmul(b, pivq.zeros(5, 3)) end, "matmul: shapes do not match")
    ref.raises(function() a:matmul(b, pivq.zeros(5, 3):t()) end, "matmul: out must be row-major")
    ref.raises(function() a:view(1, 3, 4):matmul(b, out) end, "matmul: out= takes 2-D operands")
    ref.raises(function() a:matmul(b, 3) end, "matmul: expected a tensor, got number")
  end)

  it("gemm_ computes alpha * op(a) op(b) + beta * out in place", function()
    local a, la = rand({ 3, 4 })
    local b = rand({ 5, 4 })
    local out, lo = rand({ 3, 5 })
    local rc = pivq.C.pivq_gemm_(out.c, a.c, b.c, 0, 1, 2.0, 0.5)
    assert.are.equal(0, rc)
    local prod = ref.mm(la, ref.from(b:t()))
    local expect = ref.zip(function(p, o) return 2 * p + 0.5 * o end, prod, lo)
    ref.assert_close(out, expect, 1e-5, 1e-5)
    -- beta = 0 ignores out's old contents even when they are NaN, also with k = 0
    local nan = pivq.full({ 3, 5 }, 0 / 0)
    assert.are.equal(0, pivq.C.pivq_gemm_(nan.c, a.c, b.c, 0, 1, 1.0, 0.0))
    ref.assert_close(nan, prod, 1e-5, 1e-5)
    local nan0 = pivq.full({ 3, 5 }, 0 / 0)
    assert.are.equal(0, pivq.C.pivq_gemm_(nan0.c, pivq.empty(3, 0).c, pivq.empty(0, 5).c, 0, 0, 1, 0))
    assert.are.equal(0, nan0:abs():sum():item())
  end)

  it("refuses misaligned, non-float and 0-dim operands with the shapes in the message", function()
    ref.raises(function() pivq.ones(2, 3):matmul(pivq.ones(4, 2)) end,
      "matmul: shapes 2x3 and 4x2 are not aligned")
    ref.raises(function() pivq.ones(2, 2):matmul(pivq.ones(2, 2):long()) end, "matmul", "float32")
    ref.raises(function() pivq.tensor(1):matmul(pivq.ones(1)) end, "matmul", "at least 1 dim")
    ref.raises(function() pivq.ones(2, 2, 3):matmul(pivq.ones(3, 3, 2)) end, "matmul",
      "cannot broadcast")
    ref.raises(function() pivq.ones(2, 3):matmul(3) end, "matmul: expected a tensor")
    local bad = pivq.C.pivq_gemm_(pivq.ones(2, 2).c, pivq.ones(2, 3).c, pivq.ones(2, 2).c, 0, 0, 1, 0)
    assert.are.equal(-1, bad)
    assert.matches("gemm: shapes do not match", require("ffi").string(pivq.C.pivq_last_error()))
  end)
end)
