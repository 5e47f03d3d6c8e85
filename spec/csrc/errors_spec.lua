-- Misuse: every call below must raise (never crash, never allocate absurd sizes), with a
-- message that names the function, raised at the caller's line (this file).
local pivq = require "pivq"

local HERE = "errors_spec.lua:"

-- fn must raise an error mentioning every given substring and located in this file
local function raises(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error, got success")
  err = tostring(err)
  for i = 1, select("#", ...) do
    local want = select(i, ...)
    assert(err:find(want, 1, true), string.format("message %q lacks %q", err, want))
  end
  assert(err:find(HERE, 1, true), string.format("message %q is not located in the caller", err))
  return err
end

describe("misuse raises a clear error", function()
  local t = pivq.ones(2, 3)

  it("wrong dims", function()
    raises(function() local _ = t:narrow(3, 1, 1) end, "narrow: dim 3 out of range for a 2-dim tensor")
    raises(function() local _ = t:select(0, 1) end, "select: dim 0 out of range")
    raises(function() local _ = t:transpose(1, 3) end, "transpose: dim 3")
    raises(function() local _ = t:permute(1) end, "permute: need 2 dims for a tensor of shape 2x3, got 1")
    raises(function() local _ = t:permute(1, 1) end, "permute", "not a permutation")
    raises(function() local _ = t:sum(3) end, "sum: dim 3 out of range")
    raises(function() local _ = t:max(-3) end, "max: dim -3 out of range")
    raises(function() local _ = t:unsqueeze(4) end, "unsqueeze: dim 4 out of range")
    raises(function() local _ = t:squeeze(5) end, "squeeze: dim 5")
    raises(function() local _ = t:size(3) end, "size: dim 3")
    raises(function() local _ = t:t():t():view(2, 3, 1, 1, 1, 1, 1, 1, 1) end, "view: at most 8 dims")
    raises(function() local _ = pivq.ones(1, 1, 1, 1, 1, 1, 1, 1):unsqueeze(1) end, "unsqueeze",
      "maximum of 8 dims")
    raises(function() local _ = pivq.tensor(3):t() end, "t: expected a 2-D tensor, got shape scalar")
    raises(function() local _ = t:index_select(2.5, { 1 }) end, "index_select: dim must be an integer")
  end)

  it("out-of-range positions and shapes", function()
    raises(function() local _ = t:narrow(2, 3, 2) end,
      "narrow: start 3 length 2 out of range for dim 2 of size 3")
    raises(function() local _ = t:narrow(2, 0, 1) end, "narrow: start 0")
    raises(function() local _ = t:select(1, 3) end, "select: index 3 out of range for dim 1 of size 2")
    raises(function() local _ = t:get(3, 1) end, "get: index 3 out of range for dim 1 of size 2")
    raises(function() local _ = t:get(1) end, "get: need 2 indices")
    raises(function() t:set(1, 4, 0) end, "set: index 4 out of range")
    raises(function() local _ = t:item() end, "item: tensor of shape 2x3 has 6 elements, need exactly 1")
    raises(function() local _ = t:view(4, 2) end, "view: shape 4x2 has 8 elements but the tensor (2x3) has 6")
    raises(function() local _ = t:view(-1, -1) end, "view: only one size may be -1")
    raises(function() local _ = t:reshape(4, -1) end,
      "reshape: cannot infer the -1 in shape 4x-1 for 6 elements")
    raises(function() local _ = t:view(-2, 3) end, "view: size 1 must be an integer >= -1, got -2")
    raises(function() local _ = t:t():view(6) end,
      "view: a 3x2 tensor with these strides cannot be viewed as 6 without a copy")
    raises(function() local _ = t + pivq.ones(3, 2) end, "add: shapes 2x3 and 3x2 cannot broadcast")
    raises(function() local _ = t:lt(pivq.ones(4)) end, "lt: shapes 2x3 and 4 cannot broadcast")
    raises(function() local _ = pivq.where(pivq.ones(5):byte(), t, t) end,
      "where: shapes 5 and 2x3 cannot broadcast")
    raises(function() local _ = pivq.ones(0):max() end, "max: cannot reduce over an empty dimension")
  end)

  it("bad dtypes", function()
    raises(function() local _ = pivq.zeros(2, "float64") end, "zeros: unknown dtype float64")
    raises(function() local _ = pivq.tensor({ 1 }, "double") end, "tensor: unknown dtype double")
    raises(function() local _ = t:to("complex") end, "to: unknown dtype complex")
    raises(function() local _ = pivq.rand(2, { dtype = "int64" }) end,
      "uniform: tensor must be float32, got int64")
    raises(function() local _ = t:long():matmul(t:long():t()) end,
      "matmul: need float32 operands, got int64 and int64")
    raises(function() pivq.ones(2, "int32"):fill(0 / 0) end, "fill: cannot store", "nan in a int32 tensor")
    raises(function() local _ = pivq.full({ 2 }, 1e300, "int64") end,
      "fill: cannot store 1e+300 in a int64 tensor")
  end)

  it("nil arguments", function()
    raises(function() local _ = t:narrow(nil, 1, 1) end, "narrow: dim must be an integer, got nil")
    raises(function() local _ = t:narrow(1, nil, 1) end, "narrow: start nil")
    raises(function() local _ = t:add(nil) end, "add: operands must be tensors or numbers, got cdata and nil")
    raises(function() local _ = t:add_(nil) end, "add_: expected a tensor, got nil")
    raises(function() local _ = pivq.tensor(nil) end,
      "tensor: expected a number or a (nested) table of numbers, got nil")
    raises(function() t:fill(nil) end, "fill: value must be a number, got nil")
    raises(function() t:copy(nil) end, "copy: expected a tensor, got nil")
    raises(function() local _ = t:select(1, nil) end, "select: index nil out of range")
    raises(function() local _ = pivq.cat(nil) end, "cat: expected a non-empty table of tensors")
    raises(function() local _ = pivq.where(nil, t, t) end, "where: expected a tensor, got nil")
    raises(function() local _ = t:index_select(1, nil) end,
      "index_select: index must be a tensor or a table of integers, got nil")
    raises(function() local _ = t:masked_fill(nil, 0) end, "masked_fill: expected a tensor, got nil")
    raises(function() local _ = t:expand(nil) end, "expand: size 1 must be an integer >= -1, got nil")
    raises(function() local _ = t:matmul(nil) end, "matmul: expected a tensor, got nil")
    raises(function() local _ = pivq.zeros(nil) end, "zeros: size 1 must be a nonnegative integer, got nil")
    raises(function() local _ = pivq.randn(2, nil, 3) end, "randn",
      "size 2 must be a nonnegative integer, got nil")
    raises(function() local _ = pivq.arange(nil) end, "arange: bounds and step must be numbers")
    raises(function() pivq.manual_seed(nil) end, "manual_seed: seed must be an integer in [0, 2^53), got nil")
    raises(function() pivq.manual_seed(2 ^ 64) end, "manual_seed: seed must be an integer")
    raises(function() local _ = pivq.randint(0.5, 3, { 2 }) end, "randint: lo and hi must be integers")
    raises(function() pivq.uniform_(nil) end, "uniform_: expected a tensor, got nil")
    raises(function() pivq.normal_({}) end, "normal_: expected a tensor, got table")
    raises(function() pivq.set_num_threads(nil) end, "set_num_threads: n must be an integer, got nil")
    raises(function() local _ = t:clamp("a") end, "clamp: bounds must be numbers or nil")
  end)

  it("non-tensor arguments and non-tensor self", function()
    raises(function() local _ = t:add("x") end,
      "add: operands must be tensors or numbers, got cdata and string")
    raises(function() local _ = t + {} end, "add: operands must be tensors or numbers")
    raises(function() local _ = pivq.matmul(t, {}) end, "matmul: expected a tensor, got table")
    raises(function() local _ = t:eq("s") end, "eq: expected a tensor, got string")
    raises(function() local _ = pivq.where(t:gt(0), "x", t) end, "where: expected a tensor, got string")
    raises(function() local _ = pivq.sum(3) end, "sum: expected a tensor, got number")
    raises(function() local _ = pivq.exp("x") end, "exp: expected a tensor, got string")
    raises(function() local _ = pivq.narrow({}, 1, 1, 1) end, "narrow: expected a tensor, got table")
    raises(function() local _ = pivq.Tensor.size(nil) end, "size: expected a tensor, got nil")
    raises(function() local _ = pivq.tensor { 1, "a" } end, "tensor: element [2] is string, not a number")
    raises(function() local _ = pivq.tensor { { 1, 2 }, { 3 } } end, "tensor: ragged nested table at [2]")
    raises(function() local _ = t.nonexistent end, "pivq.Tensor has no method or field 'nonexistent'")
    raises(function() t.foo = 1 end, "cannot set field 'foo' of a pivq.Tensor")
  end)

  it("huge sizes error instead of allocating", function()
    local small = { pivq.ones(1, 1), pivq.ones(4) } -- the inputs below, alive throughout
    collectgarbage()
    collectgarbage()
    local before = pivq.heap_bytes()
    raises(function() local _ = pivq.zeros(2 ^ 40, 2 ^ 40) end,
      "zeros: shape 1099511627776x1099511627776 is too large")
    raises(function() local _ = pivq.empty(2 ^ 62) end, "empty", "too large")
    raises(function() local _ = pivq.ones(1e300) end, "ones: shape 1e+300 is too large")
    raises(function() local _ = pivq.randn(2 ^ 40, 2 ^ 40) end, "too large")
    raises(function() local _ = pivq.arange(1, 1e18) end, "arange", "too many")
    raises(function() local _ = pivq.arange(1e300, 1e300, 1, "int64") end,
      "arange: values from 1e+300 to 1e+300 do not fit a int64 tensor")
    raises(function() local _ = small[1]:expand(2 ^ 40, 2 ^ 40) end, "expand", "too large")
    raises(function() local _ = small[2]:view(2 ^ 40, 2 ^ 40, 0) end, "view: requested shape overflows")
    raises(function() local _ = pivq.randperm(-1) end, "randperm: n must be a nonnegative integer")
    raises(function() local _ = pivq.randint(0, 2, { 2 ^ 40, 2 ^ 40 }) end, "too large")
    collectgarbage()
    collectgarbage()
    assert.are.equal(before, pivq.heap_bytes()) -- nothing was allocated, nothing leaked
  end)

  it("the C functions refuse NULL tensors, unknown ops and dtypes with a message", function()
    local ffi = require "ffi"
    local C = pivq.C
    local x = pivq.ones(2, 3)
    local sizes = ffi.new("int64_t[2]", 2, 3)
    local function c_error(result, want)
      assert(result == nil or result == -1, "expected NULL or -1")
      local msg = ffi.string(C.pivq_last_error())
      assert(msg:find(want, 1, true), string.format("message %q lacks %q", msg, want))
    end
    c_error(C.pivq_narrow(nil, 0, 0, 1), "narrow: tensor is NULL")
    c_error(C.pivq_view(x.c, 2, nil), "view: size is NULL")
    c_error(C.pivq_view(nil, 2, sizes), "view: tensor is NULL")
    c_error(C.pivq_expand(x.c, 2, nil), "expand")
    c_error(C.pivq_binary(nil, x.c, 0), "add: first operand is NULL")
    c_error(C.pivq_binary(x.c, x.c, 99), "binary: unknown op 99")
    c_error(C.pivq_unary(x.c, -1), "unary: unknown op -1")
    c_error(C.pivq_compare(x.c, x.c, 42), "compare: unknown op 42")
    c_error(C.pivq_reduce(x.c, 77, 0, 0, 0), "reduce: unknown op 77")
    c_error(C.pivq_reduce(nil, 0, 0, 0, 0), "sum: input is NULL")
    c_error(C.pivq_reduce(x.c, 0, 5, 0, 0), "sum: dim 5 out of range for a tensor of shape 2x3")
    c_error(C.pivq_matmul(x.c, nil), "matmul: b is NULL")
    c_error(C.pivq_cat(nil, 0, 0), "cat: need at least one tensor")
    c_error(C.pivq_copy_(nil, x.c), "copy: dst is NULL")
    c_error(C.pivq_empty(9, 2, sizes), "empty: unknown dtype 9")
    c_error(C.pivq_empty(0, 9, sizes), "empty: ndim must be in 0..8, got 9")
    c_error(C.pivq_permute(x.c, nil), "permute: perm is NULL")
    c_error(C.pivq_where(x.c, nil, x.c), "where: a is NULL")
    c_error(C.pivq_multinomial(nil, 1, 1, nil), "multinomial: probs is NULL")
    c_error(C.pivq_uniform_(nil, 0, 1, nil), "uniform: tensor is NULL")
    c_error(C.pivq_set_num_threads(0), "set_num_threads: n must be in 1..1024, got 0")
    assert.are.equal("?", ffi.string(C.pivq_dtype_name(12)))
    assert.are.equal(0, C.pivq_dtype_size(-1))
    C.pivq_clear_error()
    assert.are.equal("", ffi.string(C.pivq_last_error()))
  end)

  it("errors are raised at the caller's line for operators too", function()
    local err = raises(function() local _ = t * pivq.ones(4) end, "mul: shapes 2x3 and 4 cannot broadcast")
    assert.matches("^[^:]*errors_spec%.lua:%d+: mul:", err)
  end)
end)
