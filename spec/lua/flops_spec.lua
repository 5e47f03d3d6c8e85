-- Model FLOP utilisation's two halves: pivq_flop_count (csrc/core/ctx.c, added by the product
-- kernels from their shapes) against hand-counted 2*M*N*K, and pivq_peak_gflops (ops/peak.c).
local ffi = require "ffi"
local pivq = require "pivq"
local C = pivq.C
local F = pivq.F

local function counted(fn)
  local before = tonumber(C.pivq_flop_count())
  fn()
  return tonumber(C.pivq_flop_count()) - before
end

describe("the FLOP count", function()
  it("counts a matmul, a linear layer with its backward, and attention, as 2 per multiply-add", function()
    local a, b = pivq.randn(70, 90), pivq.randn(90, 50)
    assert.equals(2 * 70 * 90 * 50, counted(function() a:matmul(b) end))
    local x, w = pivq.randn(30, 40):requires_grad(true), pivq.randn(20, 40):requires_grad(true)
    assert.equals(2 * 30 * 40 * 20, counted(function() F.linear(x, w) end))
    local y = F.linear(x, w)
    -- backward: dx = dy w (30x20 . 20x40) and dw = dy^T x (20x30 . 30x40)
    assert.equals(2 * (30 * 20 * 40 + 20 * 30 * 40), counted(function() y:sum():backward() end))
    -- attention (B=2, heads 1, Lq=5, Lk=7, d=8): q k^T and p v
    local q, k, v = pivq.randn(2, 1, 5, 8), pivq.randn(2, 1, 7, 8), pivq.randn(2, 1, 7, 8)
    assert.equals(2 * 2 * (5 * 7 * 8 + 5 * 7 * 8), counted(function() F.attention(q, k, v) end))
  end)

  it("counts a convolution once per direction on either engine", function()
    local x, w = pivq.randn(2, 3, 8, 8), pivq.randn(4, 3, 3, 3)
    local fwd = 2 * 2 * 4 * 8 * 8 * 3 * 3 * 3 -- N O Ho Wo C kh kw
    for _, engine in ipairs({ C.PIVQ_CONV_AUTO, C.PIVQ_CONV_IM2COL }) do
      assert(C.pivq_conv_set_engine(engine) == 0)
      assert.equals(fwd, counted(function() F.conv2d(x, w, nil, { padding = 1 }) end))
    end
    assert(C.pivq_conv_set_engine(C.PIVQ_CONV_AUTO) == 0)
  end)

  it("counts the bf16 products alike", function()
    if not pivq.bf16_available() then pending("bf16 not available on this CPU") return end
    local a, b = pivq.randn(128, 256), pivq.randn(256, 64)
    assert.equals(2 * 128 * 256 * 64, counted(function() pivq.autocast("bf16", function() return a:matmul(b) end) end))
  end)
end)

describe("the measured peak", function()
  it("is positive where the CPU has the instructions, and refuses bad arguments", function()
    local fp32 = C.pivq_peak_gflops(C.PIVQ_PRECISION_FP32, 1, 0.05)
    assert(fp32 > 0, "no fp32 peak measured: " .. fp32)
    local bf16 = C.pivq_peak_gflops(C.PIVQ_PRECISION_BF16, 1, 0.05)
    assert(bf16 >= 0)
    assert.equals(-1, C.pivq_peak_gflops(7, 1, 0.05))
    assert.matches("peak_gflops: precision must be", ffi.string(C.pivq_last_error()), 1, true)
    assert.equals(-1, C.pivq_peak_gflops(0, 0, 0.05))
    assert.equals(-1, C.pivq_peak_gflops(0, 1, 0 / 0))
  end)
end)
