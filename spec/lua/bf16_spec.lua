-- bf16 mixed precision (csrc/ops/bf16.c, ops/conv_dnnl.c; pivq.autocast, lua/pivq/core/precision.lua).
--
-- Two references, both independent of oneDNN's bf16 kernels:
--  * exact: the bf16 path rounds its operands to bf16 (nearest even) and accumulates in fp32, so it
--    must equal the fp32 path run on operands rounded here, in Lua, up to fp32 summation order
--    (tolerance 1e-4 of the largest magnitude);
--  * bf16 tolerance: against fp32 on the unrounded operands, within 1e-2 of the largest magnitude
--    (bf16 keeps 8 significant bits: each operand is off by up to 2^-9 relative).
-- The fallback (no AVX512-BF16/AMX, PIVQ_BF16=off) is forced with pivq_set_bf16_allowed(0) and runs
-- on every machine. Where the CPU has no bf16, the specs that need it say so by name (pending).
local ffi = require "ffi"
local pivq = require "pivq"
local F = pivq.F
local C = pivq.C

local available, why = pivq.bf16_available()
local gen = pivq.Generator(2101)
local function randn(...) return pivq.randn({ ... }, { generator = gen }) end
local function leaf(t) return t:detach():clone():requires_grad(true) end

-- t rounded to bf16 (round to nearest even), as float32: the independent rounding
local function round_bf16(t)
  local c = t:detach():contiguous():clone()
  local p = ffi.cast("uint32_t *", c:data_ptr())
  for i = 0, c:numel() - 1 do
    local u = p[i]
    local lsb = bit.band(bit.rshift(u, 16), 1)
    u = bit.band(u + 0x7fff + lsb, 0xffff0000) -- bit ops wrap to int32; tobit handles it
    p[i] = u
  end
  return c
end

local function rel(a, b)
  assert.are.same(b:size(), a:size())
  return (a - b):abs():max() / math.max(b:abs():max(), 1e-30)
end
local function close(a, b, tol, what)
  local r = rel(a, b)
  assert(r <= tol, string.format("%s: relative difference %g > %g", what, r, tol))
end

local function under(p, fn) return pivq.autocast(p, fn) end
local function need_bf16()
  if not available then pending("bf16 not available on this CPU: " .. why) end
  return available
end

describe("bf16 precision", function()
  after_each(function()
    assert(C.pivq_set_bf16_allowed(1) == 0)
    C.pivq_set_precision(0)
  end)

  it("rounds like the reference (the helper itself)", function()
    local t = pivq.tensor({ 1.0, 1 + 2 ^ -8, 1 + 3 * 2 ^ -9, -2.5, 1 + 2 ^ -7 + 2 ^ -8 })
    -- 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to the even one, 1; 1 + 3*2^-9 rounds up
    assert.are.same({ 1.0, 1.0, 1 + 2 ^ -7, -2.5, 1 + 2 ^ -6 }, round_bf16(t):totable())
  end)

  it("validates its arguments and restores the precision after errors", function()
    assert.has_error(function() pivq.set_precision("fp16") end,
      'set_precision: precision must be "fp32" or "bf16", got fp16')
    assert.has_error(function() pivq.autocast("bf16", 3) end)
    assert.equals("fp32", pivq.get_precision())
    assert.has_error(function() pivq.autocast("bf16", function() error("boom") end) end)
    assert.equals("fp32", pivq.get_precision())
    local a, b = pivq.autocast("fp32", function(x, y) return x + 1, y end, 1, "two")
    assert.equals(2, a)
    assert.equals("two", b)
  end)

  it("falls back to fp32 where bf16 is off, with the same results as fp32", function()
    assert(C.pivq_set_bf16_allowed(0) == 0)
    local ok, reason = pivq.bf16_available()
    assert.is_false(ok)
    assert.matches("bf16 is not available: turned off", reason, 1, true)
    assert.has_error(function() pivq.set_precision("bf16") end)
    assert.matches("set_precision: bf16 is not available", ffi.string(C.pivq_last_error()), 1, true)
    local a, b = randn(96, 200), randn(200, 80)
    local x, w = randn(4, 8, 12, 12), randn(16, 8, 3, 3)
    local q, k, v = randn(2, 4, 20, 32), randn(2, 4, 30, 32), randn(2, 4, 30, 32)
    local ref, cref, aref = a:matmul(b), F.conv2d(x, w, nil, { padding = 1 }), F.attention(q, k, v)
    local got, cgot, agot, inside = pivq.autocast("bf16", function()
      return a:matmul(b), F.conv2d(x, w, nil, { padding = 1 }), F.attention(q, k, v), pivq.get_precision()
    end)
    assert.equals("fp32", inside)
    assert.equals(0, (got - ref):abs():max())
    assert.equals(0, (cgot - cref):abs():max())
    assert.equals(0, (agot - aref):abs():max())
  end)

  it("matmul: bf16 operands, fp32 accumulation, every transposition", function()
    if not need_bf16() then return end
    local a, b = randn(200, 300), randn(300, 150)
    local cases = {
      { "a b", a, b },
      { "a^T b", a:t():contiguous():t(), b },
      { "a b^T", a, b:t():contiguous():t() },
    }
    for _, case in ipairs(cases) do
      local x, y = case[2], case[3]
      local got = under("bf16", function() return x:matmul(y) end)
      close(got, round_bf16(x):matmul(round_bf16(y)), 1e-4, case[1] .. " vs rounded operands")
      close(got, x:matmul(y), 1e-2, case[1] .. " vs fp32")
      assert(rel(got, x:matmul(y)) > 0, case[1] .. ": bf16 should differ from fp32")
    end
    -- small products stay fp32 (below 2^18 multiply-adds)
    local s, t = randn(16, 16), randn(16, 16)
    assert.equals(0, (under("bf16", function() return s:matmul(t) end) - s:matmul(t)):abs():max())
  end)

  it("linear: forward and both gradients against the rounded-operand reference and fp32", function()
    if not need_bf16() then return end
    local x, w, b = randn(256, 96), randn(128, 96), randn(128)
    local R = round_bf16(randn(256, 128)) -- the upstream gradient, exactly representable
    local function run(p, xx, ww)
      local xl, wl, bl = leaf(xx), leaf(ww), leaf(b)
      local y = pivq.autocast(p, function()
        local out = F.linear(xl, wl, bl)
        ;(out * R):sum():backward()
        return out
      end)
      return y, xl:grad(), wl:grad(), bl:grad()
    end
    local y, gx, gw, gb = run("bf16", x, w)
    local ry, rgx, rgw, rgb = run("fp32", round_bf16(x), round_bf16(w))
    local fy, fgx, fgw = run("fp32", x, w)
    for _, c in ipairs({ { "y", y, ry, fy }, { "dx", gx, rgx, fgx }, { "dw", gw, rgw, fgw } }) do
      close(c[2], c[3], 1e-4, "linear " .. c[1] .. " vs rounded operands")
      close(c[2], c[4], 1e-2, "linear " .. c[1] .. " vs fp32")
    end
    close(gb, rgb, 1e-6, "linear db (a sum: fp32)")
  end)

  it("conv2d: forward and both gradients against the rounded-operand reference and fp32", function()
    if not need_bf16() then return end
    if C.pivq_conv_dnnl_available() == 0 then pending("bf16 convolutions need oneDNN: built without it") return end
    local x, w = randn(4, 16, 14, 14), randn(32, 16, 3, 3)
    local R = round_bf16(randn(4, 32, 7, 7))
    local function run(p, xx, ww)
      local xl, wl = leaf(xx), leaf(ww)
      local y = pivq.autocast(p, function()
        local out = F.conv2d(xl, wl, nil, { stride = 2, padding = 1 })
        ;(out * R):sum():backward()
        return out
      end)
      return y, xl:grad(), wl:grad()
    end
    local before = tonumber(C.pivq_conv_dnnl_steps())
    local y, gx, gw = run("bf16", x, w)
    assert(tonumber(C.pivq_conv_dnnl_steps()) > before, "oneDNN did not run the bf16 convolution")
    local ry, rgx, rgw = run("fp32", round_bf16(x), round_bf16(w))
    local fy, fgx, fgw = run("fp32", x, w)
    for _, c in ipairs({ { "y", y, ry, fy }, { "dx", gx, rgx, fgx }, { "dw", gw, rgw, fgw } }) do
      close(c[2], c[3], 1e-4, "conv2d " .. c[1] .. " vs rounded operands")
      close(c[2], c[4], 1e-2, "conv2d " .. c[1] .. " vs fp32")
    end
  end)

  -- Attention's per-head products run on the bf16 register-tiled kernels (ops/gemm_small_bf16.c).
  -- The reference is fp32 attention written out in Lua ops with the kernel's rounding points: Q, K,
  -- V, the probabilities P (for P V and P^T dO), dO and dS rounded to bf16; the scores, softmax and
  -- its backward fp32. P is recomputed here, so a P element on a rounding boundary may round the
  -- other way: 2e-3 of the largest magnitude against that reference, 2e-2 against plain fp32.
  local function attention_ref(q, k, v, mask, R, scale)
    local r = round_bf16
    local s = r(q):matmul(r(k):transpose(-1, -2)) * scale
    if mask then s = s + mask end
    local P = F.softmax(s, -1)
    local out = r(P):matmul(r(v))
    local dv = r(P):transpose(-1, -2):matmul(R)
    local dP = R:matmul(r(v):transpose(-1, -2))
    local dS = P * (dP - (dP * P):sum(-1, true))
    local dq = r(dS):matmul(r(k)) * scale
    local dk = r(dS):transpose(-1, -2):matmul(r(q)) * scale
    return out, dq, dk, dv
  end

  it("attention: bf16 heads, forward and the three gradients, against the rounding points and fp32", function()
    if not need_bf16() then return end
    -- odd sizes (tails of the 8 x 32 tile, an odd head dim: a zero pair half), a mask, and
    -- heads viewed from a (B, L, H, Dh) projection as MultiheadAttention does (strided)
    local cases = {
      { "odd sizes, mask", randn(2, 3, 37, 33), randn(2, 3, 45, 33), randn(2, 3, 45, 19), randn(37, 45) },
      { "projection views", randn(4, 80, 4, 32):transpose(2, 3), randn(4, 80, 4, 32):transpose(2, 3),
        randn(4, 80, 4, 32):transpose(2, 3) },
      { "decoder cross-attention", randn(8, 4, 16, 32), randn(8, 4, 64, 32), randn(8, 4, 64, 32) },
    }
    for _, case in ipairs(cases) do
      local name, q, k, v, mask = case[1], case[2], case[3], case[4], case[5]
      local scale = 1 / math.sqrt(q:size(4))
      local shape = q:size()
      shape[4] = v:size(4)
      local R = round_bf16(pivq.randn(shape, { generator = gen }))
      local function run(p)
        local ql, kl, vl = leaf(q), leaf(k), leaf(v)
        local out = pivq.autocast(p, function()
          local o = F.attention(ql, kl, vl, { mask = mask })
          ;(o * R):sum():backward()
          return o
        end)
        return out, ql:grad(), kl:grad(), vl:grad()
      end
      local got = { run("bf16") }
      local ref = { attention_ref(q, k, v, mask, R, scale) }
      local f32 = { run("fp32") }
      for i, what in ipairs({ "out", "dq", "dk", "dv" }) do
        close(got[i], ref[i], 2e-3, name .. ": attention " .. what .. " vs the rounding points")
        close(got[i], f32[i], 2e-2, name .. ": attention " .. what .. " vs fp32")
        assert(rel(got[i], f32[i]) > 0, name .. ": attention " .. what .. ": bf16 should differ from fp32")
      end
    end
  end)

  it("the quantizer's distances and assignment stay fp32 under bf16 (bit for bit)", function()
    if not need_bf16() then return end
    local vq = require "pivq.quant.vq"
    -- large enough that matmul would take the bf16 path (4096 x 512 x 32 multiply-adds)
    local z, e = randn(4096, 32), randn(512, 32)
    local d32 = vq.sq_distances(z, e)
    local d16 = under("bf16", function() return vq.sq_distances(z, e) end)
    assert.equals(0, (d16 - d32):abs():max())
    -- and the product itself does run in bf16 there (so the check above could fail)
    local m16 = under("bf16", function() return z:matmul(e:t()) end)
    assert(rel(m16, z:matmul(e:t())) > 0, "matmul should run bf16 at this size")
    local q = pivq.nn.Quantizer(512, 32, { mode = "matching", generator = pivq.Generator(3) })
    local zq = randn(16, 32, 32)
    local _, i32 = q:forward(zq)
    local _, i16 = under("bf16", function() return q:forward(zq) end)
    assert.are.same(i32:totable(), i16:totable())
  end)

  it("a PI-VQ training step: loss and gradients within bf16 tolerance of fp32", function()
    if not need_bf16() then return end
    local function step(p)
      pivq.manual_seed(5)
      local model = pivq.PIVQ { mode = "matching", width = 64, enc_depth = 1, dec_depth = 1, L = 16, K = 64, c = 16 }
      local x = pivq.rand(32, 1, 28, 28)
      local loss = pivq.autocast(p, function()
        local y, _, losses = model(x)
        local l = F.mse_loss(y, x) + losses.total
        l:backward()
        return l:item()
      end)
      local grads = {}
      for _, q in ipairs(model:parameters()) do
        if q:grad() then grads[#grads + 1] = q:grad():clone() end
      end
      return loss, grads
    end
    local l16, g16 = step("bf16")
    local l32, g32 = step("fp32")
    assert(math.abs(l16 - l32) <= 1e-2 * math.abs(l32), string.format("loss %g vs %g", l16, l32))
    assert.equals(#g32, #g16)
    local n16, n32, diff = 0, 0, 0
    for i = 1, #g32 do
      n16, n32 = n16 + (g16[i] * g16[i]):sum():item(), n32 + (g32[i] * g32[i]):sum():item()
      diff = diff + ((g16[i] - g32[i]) ^ 2):sum():item()
    end
    -- the gradient as one vector: within 5% of fp32's (the quantizer's assignment may differ)
    assert(math.sqrt(diff / n32) <= 0.05, string.format("relative gradient difference %g", math.sqrt(diff / n32)))
    assert.equals("fp32", pivq.get_precision())
  end)
end)
