-- Indexing and joining (csrc/ops/index.c) against hand-computed values: index_select,
-- gather, scatter_add, cat, stack; 1-based indices in, 1-based out; strided inputs.
local pivq = require "pivq"
local ref = require "helpers.ref"

describe("index_select", function()
  local x = pivq.tensor { { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 } }

  it("picks rows and columns by 1-based index, repeats allowed", function()
    assert.are.same({ { 7, 8, 9 }, { 1, 2, 3 }, { 7, 8, 9 } }, x:index_select(1, { 3, 1, 3 }):totable())
    assert.are.same({ { 2, 2 }, { 5, 5 }, { 8, 8 } }, x:index_select(2, pivq.tensor({ 2, 2 },
      "int64")):totable())
    assert.are.same({ { 3 }, { 6 }, { 9 } }, x:index_select(-1, pivq.tensor({ 3 }, "int32")):totable())
    assert.are.same({ 0, 3 }, x:index_select(1, pivq.tensor({}, "int64")):size())
  end)

  it("works on strided inputs", function()
    assert.are.same({ { 3, 6, 9 }, { 1, 4, 7 } }, x:t():index_select(1, { 3, 1 }):totable())
  end)

  it("refuses out-of-range, non-integer and multi-dim indices", function()
    ref.raises(function() x:index_select(1, { 4 }) end,
      "index_select: index 3 out of range for dim 0 of size 3")
    ref.raises(function() x:index_select(1, { 0 }) end, "index_select", "out of range")
    ref.raises(function() x:index_select(1, pivq.tensor { 1 }) end,
      "index_select: index must be int64 or int32")
    ref.raises(function() x:index_select(1, pivq.tensor({ { 1 } }, "int64")) end,
      "index_select: index must be 1-D")
    ref.raises(function() x:index_select(3, { 1 }) end, "index_select: dim 3 out of range")
    ref.raises(function() x:index_select(1, "a") end, "index_select: index must be a tensor")
  end)
end)

describe("gather and scatter_add", function()
  it("gather picks along a dim (out[i][j] = x[i][idx[i][j]])", function()
    local x = pivq.tensor { { 1, 2, 3 }, { 4, 5, 6 } }
    local idx = pivq.tensor({ { 3, 1 }, { 2, 2 } }, "int64")
    assert.are.same({ { 3, 1 }, { 5, 5 } }, x:gather(2, idx):totable())
    local idx1 = pivq.tensor({ { 2, 1, 2 } }, "int64")
    assert.are.same({ { 4, 2, 6 } }, x:gather(1, idx1):totable())
    assert.are.same({ { 4, 1 }, { 5, 2 } }, x:t():gather(2, pivq.tensor({ { 2, 1 }, { 2, 1 } },
      "int64")):totable())
    ref.raises(function() x:gather(2, pivq.tensor({ { 4 } }, "int64")) end, "gather: index 3 out of range")
    ref.raises(function() x:gather(2, pivq.tensor({ 1 }, "int64")) end,
      "gather: index (1) must have as many dims")
  end)

  it("scatter_add adds src at the indices (duplicates accumulate) and leaves x alone", function()
    local x = pivq.zeros(2, 4)
    local idx = pivq.tensor({ { 1, 1, 4 }, { 2, 3, 2 } }, "int64")
    local src = pivq.tensor { { 1, 2, 3 }, { 10, 20, 30 } }
    local y = x:scatter_add(2, idx, src)
    assert.are.same({ { 3, 0, 0, 3 }, { 0, 40, 20, 0 } }, y:totable())
    assert.are.same({ { 0, 0, 0, 0 }, { 0, 0, 0, 0 } }, x:totable())
    local z = pivq.zeros(3, 2):scatter_add(1, pivq.tensor({ { 3, 1 }, { 3, 3 } }, "int64"), pivq.ones(2, 2))
    assert.are.same({ { 0, 1 }, { 0, 0 }, { 2, 1 } }, z:totable())
    -- gather is scatter_add's adjoint: <gather(x), s> == <x, scatter_add(0, s)>
    local r = ref.rng(3)
    local xx = ref.to_tensor(ref.random({ 4, 5 }, r, -1, 1))
    local ii = ref.to_tensor(ref.random({ 4, 3 }, r, 1, 5, true), "int64")
    local ss = ref.to_tensor(ref.random({ 4, 3 }, r, -1, 1))
    local lhs = (xx:gather(2, ii) * ss):sum():item()
    local rhs = (xx * pivq.zeros(4, 5):scatter_add(2, ii, ss)):sum():item()
    assert.is_true(math.abs(lhs - rhs) < 1e-5)
    local iy = pivq.zeros(2, 2, "int64"):scatter_add(1, pivq.tensor({ { 1, 2 } }, "int64"),
      pivq.tensor({ { 5, 7 } }, "int64"))
    assert.are.same({ { 5, 0 }, { 0, 7 } }, iy:totable())
    ref.raises(function() x:scatter_add(2, idx, src:long()) end,
      "scatter_add: src is int64 but the input is float32")
    ref.raises(function() x:scatter_add(2, idx, 3) end, "scatter_add: expected a tensor")
    ref.raises(function() x:scatter_add(2, pivq.tensor({ { 5 } }, "int64"), src) end, "scatter_add",
      "out of range")
  end)
end)

describe("cat and stack", function()
  local a = pivq.tensor { { 1, 2 }, { 3, 4 } }
  local b = pivq.tensor { { 5, 6 } }

  it("cat joins along an existing dim", function()
    assert.are.same({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, pivq.cat({ a, b }, 1):totable())
    assert.are.same({ { 1, 2, 1, 3 }, { 3, 4, 2, 4 } }, pivq.cat({ a, a:t() }, 2):totable())
    assert.are.same({ { 1, 2 }, { 3, 4 } }, pivq.cat({ a }):totable())
    assert.are.same({ 1, 2, 3 }, pivq.cat({ pivq.tensor { 1 }, pivq.tensor { 2, 3 } }):totable())
    assert.are.same({ { 1, 2 }, { 3, 4 } }, pivq.cat({ a, pivq.empty(0, 2) }, 1):totable())
    ref.raises(function() pivq.cat({ a, b }, 2) end,
      "cat: tensor 2 (1x2 float32) does not match tensor 1 (2x2 float32)")
    ref.raises(function() pivq.cat({ a, b:long() }, 1) end, "cat", "int64")
    ref.raises(function() pivq.cat({}) end, "cat: expected a non-empty table of tensors")
    ref.raises(function() pivq.cat({ a, 3 }) end, "cat: entry 2 is number, not a tensor")
    ref.raises(function() pivq.cat({ a, a }, 3) end, "cat: dim 3 out of range")
  end)

  it("stack joins along a new dim", function()
    local s = pivq.stack({ a, a * 10 })
    assert.are.same({ 2, 2, 2 }, s:size())
    assert.are.same({ { { 1, 2 }, { 3, 4 } }, { { 10, 20 }, { 30, 40 } } }, s:totable())
    assert.are.same({ { { 1, 10 }, { 2, 20 } }, { { 3, 30 }, { 4, 40 } } }, pivq.stack({ a, a * 10 },
      3):totable())
    assert.are.same({ { { 1, 2 }, { 10, 20 } }, { { 3, 4 }, { 30, 40 } } }, pivq.stack({ a, a * 10 },
      2):totable())
    ref.raises(function() pivq.stack({ a, b }) end, "stack: tensor 2 has shape 1x2 but tensor 1 has 2x2")
    ref.raises(function() pivq.stack({ a, a }, 4) end, "stack: dim 4 out of range")
  end)
end)
