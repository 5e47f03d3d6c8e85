-- Elementwise ops (csrc/ops/elementwise.c): every unary and binary op against Lua's math on
-- the same values, NumPy broadcasting over contiguous and strided operands, scalar forms on
-- both sides, in-place forms, dtype promotion, comparisons, where and masked_fill.
local pivq = require "pivq"
local ref = require "helpers.ref"

local r = ref.rng(2024)

-- a pivq tensor and its Lua twin (values already rounded to the dtype)
local function random_pair(shape, lo, hi, dtype)
  dtype = dtype or "float32"
  local int = dtype ~= "float32"
  local lt = ref.random(shape, r, lo, hi, int)
  if not int then lt = ref.map(lt, ref.f32) end
  return ref.to_tensor(lt, dtype), lt
end

-- the same values, laid out transposed in memory (a non-contiguous operand)
local function strided_pair(shape, lo, hi, dtype)
  local t, lt = random_pair(shape, lo, hi, dtype)
  if #shape < 2 then return t, lt end
  local n = #shape
  local backing = t:transpose(n - 1, n):contiguous() -- memory in transposed order
  local view = backing:transpose(n - 1, n)
  if shape[n - 1] > 1 and shape[n] > 1 then assert(not view:is_contiguous()) end
  assert.are.same(shape, view:size())
  return view, lt
end

local function round_half_even(x)
  local f = math.floor(x)
  local d = x - f
  if d > 0.5 then return f + 1 end
  if d < 0.5 then return f end
  return f % 2 == 0 and f or f + 1
end

local UNARY = {
  neg = { function(x) return -x end, -3, 3 },
  abs = { math.abs, -3, 3 },
  exp = { math.exp, -5, 5 },
  log = { math.log, 0.01, 10 },
  sqrt = { math.sqrt, 0, 10 },
  rsqrt = { function(x) return 1 / math.sqrt(x) end, 0.01, 10 },
  sin = { math.sin, -6, 6 },
  cos = { math.cos, -6, 6 },
  tanh = { function(x) return (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1) end, -4, 4 },
  sigmoid = { function(x) return 1 / (1 + math.exp(-x)) end, -8, 8 },
  relu = { function(x) return x > 0 and x or 0 end, -3, 3 },
  sign = { function(x) return x > 0 and 1 or (x < 0 and -1 or 0) end, -3, 3 },
  floor = { math.floor, -5, 5 },
  ceil = { math.ceil, -5, 5 },
  round = { round_half_even, -5, 5 },
}

local BINARY = {
  add = { function(a, b) return a + b end },
  sub = { function(a, b) return a - b end },
  mul = { function(a, b) return a * b end },
  div = { function(a, b) return a / b end },
  maximum = { math.max },
  minimum = { math.min },
  pow = { function(a, b) return a ^ b end },
}

describe("unary ops", function()
  for name, spec in pairs(UNARY) do
    it(name .. " matches Lua's math on contiguous and strided float32 input", function()
      local f, lo, hi = unpack(spec)
      for _, make in ipairs({ random_pair, strided_pair }) do
        local t, lt = make({ 7, 5 }, lo, hi)
        local out = t[name](t)
        assert.are.equal("float32", out:dtype())
        ref.assert_close(out, ref.map(lt, f), 2e-6, 1e-6, name)
        ref.assert_close(pivq[name](t), ref.map(lt, f), 2e-6, 1e-6, "pivq." .. name)
      end
    end)
  end

  it("round is half-to-even, floor/ceil keep integers", function()
    local t = pivq.tensor { -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.6 }
    assert.are.same({ -2, -2, -0, 0, 2, 2, 3 }, t:round():totable())
    assert.are.same({ -3, -2, -1, 0, 1, 2, 2 }, t:floor():totable())
  end)

  it("keeps integer dtypes for neg/abs/relu/sign/floor/ceil/round; others give float32", function()
    local t = pivq.tensor({ -3, 0, 4 }, "int32")
    for _, name in ipairs({ "neg", "abs", "relu", "sign", "floor", "ceil", "round" }) do
      local out = t[name](t)
      assert.are.equal("int32", out:dtype(), name)
      assert.are.same(ref.map(ref.from(t), UNARY[name][1]).data, out:totable(), name)
    end
    local e = pivq.tensor({ 0, 1, 2 }, "int64"):exp()
    assert.are.equal("float32", e:dtype())
    ref.assert_close(e, ref.map({ shape = { 3 }, data = { 0, 1, 2 } }, math.exp), 1e-6)
    local u = pivq.tensor({ 0, 200, 255 }, "uint8")
    assert.are.same({ 0, 200, 255 }, u:abs():totable())
    assert.are.same({ 0, 56, 1 }, u:neg():totable()) -- wraps, as uint8 does
  end)

  it("clamp with either bound, on floats and integers", function()
    local t = pivq.tensor { -2, -0.5, 0.5, 3 }
    assert.are.same({ -1, -0.5, 0.5, 1 }, t:clamp(-1, 1):totable())
    assert.are.same({ 0, 0, 0.5, 3 }, t:clamp(0):totable())
    assert.are.same({ -2, -0.5, 0.5, 2 }, t:clamp(nil, 2):totable())
    local i = pivq.tensor({ -5, 0, 7 }, "int64"):clamp(-1, 3)
    assert.are.equal("int64", i:dtype())
    assert.are.same({ -1, 0, 3 }, i:totable())
    ref.raises(function() t:clamp(2, 1) end, "clamp: need lo <= hi")
  end)
end)

describe("binary ops", function()
  local pairs_of_shapes = {
    { { 3, 4 }, { 3, 4 } },
    { { 3, 4 }, { 4 } },
    { { 3, 1 }, { 1, 4 } },
    { { 2, 1, 4 }, { 3, 1 } },
    { {}, { 2, 3 } },
    { { 2, 3 }, {} },
    { { 5, 1, 1 }, { 1, 6, 2 } },
    { { 1 }, { 7 } },
  }
  for name, spec in pairs(BINARY) do
    it(name .. " broadcasts like NumPy over contiguous and strided operands", function()
      local f = spec[1]
      local lo, hi = -4, 4
      if name == "pow" or name == "div" then lo, hi = 0.5, 3 end
      for _, shapes in ipairs(pairs_of_shapes) do
        for _, make in ipairs({ random_pair, strided_pair }) do
          local a, la = make(shapes[1], lo, hi)
          local b, lb = make(shapes[2], lo, hi)
          local expect = ref.zip(f, la, lb)
          ref.assert_close(a[name](a, b), expect, 2e-6, 1e-6, name)
          ref.assert_close(pivq[name](a, b), expect, 2e-6, 1e-6, "pivq." .. name)
        end
      end
    end)

    it(name .. " takes a number on either side", function()
      local f = spec[1]
      local a, la = random_pair({ 3, 4 }, 0.5, 3)
      local s = 1.75
      ref.assert_close(a[name](a, s), ref.map(la, function(x) return f(x, s) end), 2e-6, 1e-6)
      ref.assert_close(pivq[name](s, a), ref.map(la, function(x) return f(s, x) end), 2e-6, 1e-6)
    end)

    it(name .. "_ works in place, broadcasting the operand", function()
      local f = spec[1]
      local a, la = random_pair({ 3, 4 }, 0.5, 3)
      local b, lb = random_pair({ 4 }, 0.5, 3)
      local view = a:t() -- in place through a strided view
      local back = view[name .. "_"](view, b:view(4, 1))
      assert.are.equal(view, back)
      ref.assert_close(a, ref.zip(f, la, lb), 2e-6, 1e-6)
      local before = ref.from(a)
      a[name .. "_"](a, 2)
      ref.assert_close(a, ref.map(before, function(x) return f(x, 2) end), 2e-6, 1e-6)
      ref.raises(function() a[name .. "_"](a, pivq.zeros(2, 3, 4)) end, name .. "_",
        "does not fit the destination 3x4")
    end)
  end

  it("operators + - * / ^ and unary minus", function()
    local a = pivq.tensor { 1, 2, 4 }
    local b = pivq.tensor { 2, 2, 2 }
    assert.are.same({ 3, 4, 6 }, (a + b):totable())
    assert.are.same({ -1, 0, 2 }, (a - b):totable())
    assert.are.same({ 2, 4, 8 }, (a * b):totable())
    assert.are.same({ 0.5, 1, 2 }, (a / b):totable())
    assert.are.same({ 1, 4, 16 }, (a ^ b):totable())
    assert.are.same({ -1, -2, -4 }, (-a):totable())
    assert.are.same({ 2, 1, 0.5 }, (2 / a):totable())
    assert.are.same({ 2, 4, 16 }, (2 ^ a):totable())
    assert.are.same({ 1, 0, -2 }, (2 - a):totable())
  end)

  it("maximum/minimum propagate NaN", function()
    local nan = 0 / 0
    local a = pivq.tensor { nan, 1, 2 }
    local b = pivq.tensor { 0, nan, 3 }
    local mx = a:maximum(b):totable()
    assert.is_true(mx[1] ~= mx[1] and mx[2] ~= mx[2])
    assert.are.equal(3, mx[3])
    local mn = a:minimum(b):totable()
    assert.is_true(mn[1] ~= mn[1] and mn[2] ~= mn[2])
    assert.are.equal(2, mn[3])
  end)
end)

describe("dtype promotion", function()
  local function t(v, dt) return pivq.tensor(v, dt) end

  it("follows int < wider int < float32", function()
    local cases = {
      { "int32", "int64", "int64" }, { "uint8", "int32", "int32" }, { "uint8", "int64", "int64" },
      { "int32", "float32", "float32" }, { "int64", "float32", "float32" },
      { "uint8", "float32", "float32" }, { "uint8", "uint8", "uint8" },
    }
    for _, c in ipairs(cases) do
      local a, b = t({ 1, 2 }, c[1]), t({ 3, 4 }, c[2])
      for _, op in ipairs({ "add", "sub", "mul", "maximum", "minimum", "pow" }) do
        assert.are.equal(c[3], a[op](a, b):dtype(), op .. " " .. c[1] .. " " .. c[2])
        assert.are.equal(c[3], b[op](b, a):dtype(), op .. " " .. c[2] .. " " .. c[1])
      end
    end
  end)

  it("true division: integers divide to float32", function()
    local a, b = t({ 7, -7, 1 }, "int64"), t({ 2, 2, 0 }, "int32")
    local q = a / b
    assert.are.equal("float32", q:dtype())
    assert.are.same({ 3.5, -3.5, math.huge }, q:totable())
    assert.are.same({ 3.5, -3.5, 0.5 }, (a / 2):totable())
    assert.are.equal("float32", (a / 2):dtype())
    ref.assert_close(2 / a, { shape = { 3 }, data = { 2 / 7, -2 / 7, 2 } }, 1e-7)
    ref.raises(function() a:div_(2) end, "div_", "int64")
  end)

  it("integer tensor with a number: integral numbers keep the dtype, others promote", function()
    local a = t({ 1, 2, 3 }, "int32")
    assert.are.equal("int32", (a + 2):dtype())
    assert.are.same({ 3, 4, 5 }, (a + 2):totable())
    assert.are.equal("int32", (10 - a):dtype())
    assert.are.same({ 9, 8, 7 }, (10 - a):totable())
    local h = a * 0.5
    assert.are.equal("float32", h:dtype())
    assert.are.same({ 0.5, 1, 1.5 }, h:totable())
    assert.are.same({ 1, 4, 9 }, (a ^ 2):totable())
    assert.are.equal("int32", (a ^ 2):dtype())
    ref.raises(function() a:add_(0.5) end, "add_", "non-integral", "int32")
  end)

  it("integer arithmetic wraps instead of overflowing", function()
    local u = t({ 250, 3 }, "uint8")
    assert.are.same({ 0, 9 }, (u + 10 - 4):totable()) -- 250 + 10 wraps to 4
    local i = t({ 2147483647 }, "int32")
    assert.are.same({ -2147483648 }, (i + 1):totable())
    assert.are.same({ 0, 1, 1 }, (t({ 2, 1, -1 }, "int64") ^ t({ -1, -3, -2 }, "int64")):totable())
  end)
end)

describe("dtype conversion", function()
  it("float to integer truncates toward zero", function()
    local f = pivq.tensor { -2.7, -0.5, 0.5, 2.7, 100 }
    assert.are.same({ -2, 0, 0, 2, 100 }, f:long():totable())
    assert.are.same({ -2, 0, 0, 2, 100 }, f:int():totable())
    assert.are.equal("int64", f:long():dtype())
    assert.are.equal("int32", f:int():dtype())
    assert.are.equal("uint8", pivq.tensor({ 1, 2 }):byte():dtype())
  end)

  it("round-trips integers exactly, including int64 beyond 2^53 through the storage", function()
    local big = pivq.tensor({ 2 ^ 40 + 1, -(2 ^ 40) - 3 }, "int64")
    local back = big:float():long()
    assert.are.same({ 2 ^ 40, -(2 ^ 40) }, back:totable()) -- float32 keeps 24 bits
    assert.are.same({ 2 ^ 40 + 1, -(2 ^ 40) - 3 }, big:clone():totable())
    assert.are.same({ 1, -3 }, big:int():totable()) -- the low 32 bits
    local i = pivq.tensor({ 300, -1 }, "int32")
    assert.are.same({ 44, 255 }, i:byte():totable()) -- modulo 256
    assert.are.same({ 300, -1 }, i:long():totable())
  end)

  it("to() keeps the tensor when the dtype already matches, converts strided views", function()
    local x = pivq.tensor { { 1.5, 2.5 }, { 3.5, 4.5 } }
    assert.are.equal(x, x:float())
    assert.are.same({ { 1, 3 }, { 2, 4 } }, x:t():long():totable())
    assert.are.same({ { 1, 3 }, { 2, 4 } }, x:t():to("int64"):totable())
    ref.raises(function() x:to("float64") end, "to: unknown dtype float64")
  end)

  it("copy converts between every pair of dtypes", function()
    for _, from in ipairs(pivq.dtypes) do
      for _, to in ipairs(pivq.dtypes) do
        local src = pivq.tensor({ { 0, 1 }, { 7, 100 } }, from)
        local dst = pivq.zeros(2, 2, to)
        dst:copy(src)
        assert.are.same({ { 0, 1 }, { 7, 100 } }, dst:totable(), from .. " -> " .. to)
        assert.are.equal(to, dst:dtype())
      end
    end
  end)
end)

describe("comparisons", function()
  local CMP = {
    eq = function(a, b) return a == b end, ne = function(a, b) return a ~= b end,
    lt = function(a, b) return a < b end, le = function(a, b) return a <= b end,
    gt = function(a, b) return a > b end, ge = function(a, b) return a >= b end,
  }
  for name, f in pairs(CMP) do
    it(name .. " broadcasts and returns a uint8 mask", function()
      local a, la = random_pair({ 4, 3 }, -2, 2, "int32")
      local b, lb = random_pair({ 3 }, -2, 2, "float32")
      local m = a[name](a, b)
      assert.are.equal("uint8", m:dtype())
      local expect = ref.zip(function(x, y) return f(x, y) and 1 or 0 end, la, lb)
      assert.are.same(expect.data, ref.from(m).data)
      local ms = a[name](a, 0)
      assert.are.same(ref.map(la, function(x) return f(x, 0) and 1 or 0 end).data, ref.from(ms).data)
      local mh = a[name](a, 0.5) -- a non-integral number compares in float
      assert.are.same(ref.map(la, function(x) return f(x, 0.5) and 1 or 0 end).data, ref.from(mh).data)
    end)
  end

  it("NaN compares unequal to everything", function()
    local a = pivq.tensor { 0 / 0, 1 }
    assert.are.same({ 0, 1 }, a:eq(a):totable())
    assert.are.same({ 1, 0 }, a:ne(a):totable())
    assert.are.same({ 0, 0 }, a:lt(0 / 0):totable())
  end)
end)

describe("where and masked_fill", function()
  it("where picks per element with broadcasting", function()
    local c = pivq.tensor({ { 1, 0, 1 } }, "uint8")
    local a = pivq.tensor { { 1 }, { 2 } }
    local b = pivq.tensor { 10, 20, 30 }
    assert.are.same({ { 1, 20, 1 }, { 2, 20, 2 } }, pivq.where(c, a, b):totable())
    assert.are.same({ { 1, -1, 1 } }, pivq.where(c, 1, -1):totable())
    assert.are.same({ { 10, 5, 30 } }, pivq.where(c:eq(0), 5, b):totable())
  end)

  it("where treats any nonzero condition as true, in every dtype", function()
    local a, b = pivq.ones(4), pivq.zeros(4)
    assert.are.same({ 1, 0, 1, 1 }, pivq.where(pivq.tensor { 0.5, 0, -2, 1e-30 }, a, b):totable())
    assert.are.same({ 1, 0, 1, 1 }, pivq.where(pivq.tensor({ 256, 0, -1, 7 }, "int32"), a, b):totable())
    assert.are.same({ 1, 0, 1, 1 }, pivq.where(pivq.tensor({ 2 ^ 40, 0, -1, 7 }, "int64"), a, b):totable())
    assert.are.same({ 1, 0, 1, 0 }, pivq.where(pivq.tensor({ 9, 0, 1, 0 }, "uint8"), a, b):totable())
  end)

  it("where with a number keeps the other operand's dtype unless the number needs float", function()
    local c = pivq.tensor({ 1, 0 }, "uint8")
    local i = pivq.tensor({ 5, 6 }, "int64")
    assert.are.equal("int64", pivq.where(c, i, 0):dtype())
    local h = pivq.where(c, i, 0.5)
    assert.are.equal("float32", h:dtype())
    assert.are.same({ 5, 0.5 }, h:totable())
  end)

  it("masked_fill fills where the mask is set and leaves x alone", function()
    local x = pivq.tensor { { 1, 2, 3 }, { 4, 5, 6 } }
    local y = x:masked_fill(x:gt(3), 0)
    assert.are.same({ { 1, 2, 3 }, { 0, 0, 0 } }, y:totable())
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, x:totable())
    local z = x:masked_fill(pivq.tensor({ 1, 0, 1 }, "uint8"), -math.huge)
    assert.are.same({ { -math.huge, 2, -math.huge }, { -math.huge, 5, -math.huge } }, z:totable())
    ref.raises(function() x:masked_fill(pivq.ones(2, 3), 0) end, "masked_fill", "uint8")
    ref.raises(function() x:masked_fill(pivq.ones(3, 3):byte(), 0) end, "masked_fill", "3x3", "2x3")
  end)
end)
