-- Convolution, pooling and upsampling: forward against naive references, backward by finite
-- differences.
local ffi = require "ffi"
local pivq = require "pivq"
local gradcheck = require "helpers.gradcheck"
local F = pivq.F

local gen = pivq.Generator(31)
local function randn(...) return pivq.randn({ ... }, { generator = gen }) end
local function leaf(t) return t:detach():clone():requires_grad(true) end
local function check(f, inputs, opts)
  local ok, msg = gradcheck(f, inputs, opts)
  assert(ok, msg)
end
local function close(a, b, tol)
  assert.are.same(b:size(), a:size())
  local d = (a - b):abs():max()
  assert(d <= (tol or 1e-4), string.format("max difference %g", d))
end
local function dot(a, b) return (a * b):sum():item() end

-- conv2d's engines (csrc/pivq.h, "Convolution engine"): oneDNN when libpivq was built with it,
-- and im2col + sgemm, forced. Every conv2d check below runs on each, and checks that the
-- engine it names did the work (oneDNN counts its steps; im2col must leave the count alone).
local C = pivq.C
local ENGINES = { { name = "im2col", id = C.PIVQ_CONV_IM2COL } }
if C.pivq_conv_dnnl_available() == 1 then
  table.insert(ENGINES, 1, { name = "oneDNN", id = C.PIVQ_CONV_AUTO, dnnl = true })
end
local function dnnl_steps() return tonumber(C.pivq_conv_dnnl_steps()) end
local function on_engine(engine)
  local saved
  before_each(function()
    saved = C.pivq_conv_get_engine()
    assert(C.pivq_conv_set_engine(engine.id) == 0)
  end)
  after_each(function() C.pivq_conv_set_engine(saved) end)
end
-- run f() and assert that oneDNN took (or, forced to im2col, did not take) its steps
local function by_engine(engine, f)
  local before = dnnl_steps()
  f()
  local ran = dnnl_steps() - before
  if engine.dnnl then
    assert(ran > 0, "oneDNN ran none of the convolutions")
  else
    assert(ran == 0, string.format("oneDNN ran %d steps with the im2col engine forced", ran))
  end
end

local CONFIGS = {
  { x = { 2, 3, 7, 6 }, w = { 4, 3, 3, 3 }, opts = {} },
  { x = { 2, 3, 7, 6 }, w = { 4, 3, 3, 2 }, opts = { stride = 2, padding = 1 } },
  { x = { 1, 4, 9, 9 }, w = { 6, 2, 3, 3 }, opts = { groups = 2, padding = { 1, 2 } } },
  { x = { 2, 2, 9, 8 }, w = { 3, 2, 3, 3 }, opts = { dilation = 2, stride = { 1, 2 } } },
  { x = { 3, 1, 8, 8 }, w = { 5, 1, 4, 4 }, opts = { stride = 2, padding = 1 } },
  -- rows wider than 32 pixels (input, then output) take the tap-table path, not the permutes
  { x = { 1, 2, 3, 37 }, w = { 2, 2, 2, 3 }, opts = { stride = { 1, 2 }, padding = 1 } },
  { x = { 1, 1, 2, 40 }, w = { 2, 1, 1, 3 }, opts = { padding = { 0, 1 } } },
  -- depthwise: 9-tap patches per group take the direct weight-gradient kernel, not sgemm
  { x = { 2, 4, 6, 5 }, w = { 4, 1, 3, 3 }, opts = { groups = 4, padding = 1 } },
  -- the output size rounds down: the last 2 columns and rows are never read (for oneDNN, a
  -- right/bottom padding of -2)
  { x = { 2, 3, 8, 8 }, w = { 4, 3, 3, 3 }, opts = { stride = 3 } },
}

for _, engine in ipairs(ENGINES) do
  describe("conv2d on " .. engine.name, function()
    on_engine(engine)

    it("matches the direct convolution", function()
      for _, c in ipairs(CONFIGS) do
        local x, w, b = randn(unpack(c.x)), randn(unpack(c.w)), randn(c.w[1])
        by_engine(engine, function()
          close(F.conv2d(x, w, b, c.opts), F.conv2d_reference(x, w, b, c.opts))
          close(F.conv2d(x, w, nil, c.opts), F.conv2d_reference(x, w, nil, c.opts))
        end)
      end
    end)

    it("processes large batches in chunks the same way", function()
      local x, w = randn(40, 16, 20, 20), randn(8, 16, 5, 5)
      local y
      by_engine(engine, function() y = F.conv2d(x, w, nil, { padding = 2 }) end)
      close(y:narrow(1, 37, 4), F.conv2d_reference(x:narrow(1, 37, 4), w, nil, { padding = 2 }))
    end)

    it("gives the same gradients with one thread and with image-parallel threads", function()
      -- im2col: 20 chunks of 2 images (parallel mode), columns in slices of 10 and 6 channels;
      -- then a 1-channel first layer (direct weight-gradient kernel), 90 chunks of 1 image.
      -- oneDNN: primitives created for 1 and for 2 threads.
      for _, c in ipairs({ { x = randn(40, 16, 20, 20), w = randn(8, 16, 5, 5), pad = 2 },
                           { x = randn(90, 1, 28, 28), w = randn(64, 1, 3, 3), pad = 1 } }) do
        local b = randn(c.w:size(1))
        local saved = pivq.get_num_threads()
        local function grads(threads)
          pivq.set_num_threads(threads)
          local xl, wl, bl = leaf(c.x), leaf(c.w), leaf(b)
          local y = F.conv2d(xl, wl, bl, { padding = c.pad })
          local loss = (y * y):sum()
          loss:backward()
          return { y, xl:grad(), wl:grad(), bl:grad() }
        end
        local one, two
        by_engine(engine, function() one, two = grads(1), grads(2) end)
        pivq.set_num_threads(saved)
        for i = 1, 4 do close(one[i], two[i], 1e-3 * one[i]:abs():max()) end
      end
    end)

    it("has gradients that satisfy the adjoint identities when the columns are built in slices", function()
      -- conv is linear in x and in w, so for the loss sum(conv(x, w) * v) and any u:
      --   <dx, u> = sum(conv(u, w) * v)   and   <dw, u> = sum(conv(x, u) * v),
      -- with the right-hand sides from the direct reference. 40 channels of 4x4 taps on
      -- 6 images of 6x6 outputs are built 37 channels at a time (the rest in a second slice).
      for _, c in ipairs({ { x = { 6, 40, 12, 12 }, w = { 16, 40, 4, 4 }, groups = 1 },
                           { x = { 6, 80, 12, 12 }, w = { 16, 40, 4, 4 }, groups = 2 } }) do
        local opts = { stride = 2, padding = 1, groups = c.groups }
        local x, w = leaf(randn(unpack(c.x))), leaf(randn(unpack(c.w)))
        local v = randn(c.x[1], 16, 6, 6)
        by_engine(engine, function() (F.conv2d(x, w, nil, opts) * v):sum():backward() end)
        local ux, uw = randn(unpack(c.x)), randn(unpack(c.w))
        local want_x = dot(F.conv2d_reference(ux, w:detach(), nil, opts), v)
        local want_w = dot(F.conv2d_reference(x:detach(), uw, nil, opts), v)
        assert.near(want_x, dot(x:grad(), ux), 1e-4 * (math.abs(want_x) + 1e3))
        assert.near(want_w, dot(w:grad(), uw), 1e-4 * (math.abs(want_w) + 1e3))
      end
    end)

    it("reports mismatched shapes and bad parameters", function()
      local ok, err = pcall(F.conv2d, randn(1, 3, 5, 5), randn(4, 2, 3, 3))
      assert.is_false(ok)
      assert.matches("conv2d: input 1x3x5x5 (N, C, H, W) and weight 4x2x3x3", err, 1, true)
      ok, err = pcall(F.conv2d, randn(1, 3, 5, 5), randn(4, 3, 3, 3), nil, { stride = 0 })
      assert.is_false(ok)
      assert.matches("stride >= 1", err, 1, true)
      ok, err = pcall(F.conv2d, randn(1, 3, 2, 2), randn(4, 3, 3, 3))
      assert.is_false(ok)
      assert.matches("larger than the padded input", err, 1, true)
    end)

    it("has finite-difference gradients", function()
      for _, c in ipairs(CONFIGS) do
        by_engine(engine, function()
          check(function(x, w, b) return F.conv2d(x, w, b, c.opts) end,
            { leaf(randn(unpack(c.x))), leaf(randn(unpack(c.w))), leaf(randn(c.w[1])) },
            { atol = 2e-2, max_elements = 60 })
        end)
      end
    end)
  end)

  describe("conv_transpose2d on " .. engine.name, function()
    on_engine(engine)
    local TCONFIGS = {
      { x = { 2, 4, 5, 4 }, w = { 4, 3, 3, 3 }, opts = {} },
      { x = { 2, 4, 5, 4 }, w = { 4, 3, 4, 4 }, opts = { stride = 2, padding = 1 } },
      { x = { 1, 4, 4, 4 }, w = { 4, 2, 3, 3 },
        opts = { stride = 2, padding = 1, output_padding = 1, groups = 2 } },
      { x = { 1, 2, 4, 5 }, w = { 2, 2, 3, 2 }, opts = { dilation = 2 } },
    }

    it("is the adjoint of conv2d: <conv(u), v> = <u, conv_t(v)>", function()
      for _, c in ipairs(TCONFIGS) do
        local w = randn(unpack(c.w))
        local v = randn(unpack(c.x))
        local y = F.conv_transpose2d(v, w, nil, c.opts)
        local u = randn(unpack(y:size()))
        local fwd = F.conv2d(u, w, nil, { stride = c.opts.stride, padding = c.opts.padding,
          dilation = c.opts.dilation, groups = c.opts.groups })
        assert.are.same(v:size(), fwd:size())
        assert.is_near(dot(fwd, v), dot(u, y), 1e-3 * math.abs(dot(u, y)) + 1e-3)
      end
    end)

    it("has PyTorch's output size and adds the bias", function()
      local y = F.conv_transpose2d(randn(1, 4, 7, 7), randn(4, 8, 4, 4), pivq.ones(8),
        { stride = 2, padding = 1 })
      assert.are.same({ 1, 8, 14, 14 }, y:size())
      local z = F.conv_transpose2d(pivq.zeros(1, 4, 3, 3), randn(4, 2, 3, 3), pivq.tensor({ 1, 2 }))
      close(z:select(2, 2), pivq.full({ 1, 5, 5 }, 2))
    end)

    it("has finite-difference gradients", function()
      for _, c in ipairs(TCONFIGS) do
        local o = c.w[2] * (c.opts.groups or 1)
        check(function(x, w, b) return F.conv_transpose2d(x, w, b, c.opts) end,
          { leaf(randn(unpack(c.x))), leaf(randn(unpack(c.w))), leaf(randn(o)) },
          { atol = 2e-2, max_elements = 60 })
      end
    end)
  end)
end

describe("the convolution engine", function()
  it("rejects an unknown engine and keeps the current one", function()
    local before = C.pivq_conv_get_engine()
    assert.are.equal(-1, C.pivq_conv_set_engine(7))
    assert.matches("conv_set_engine: engine must be", ffi.string(C.pivq_last_error()), 1, true)
    assert.are.equal(before, C.pivq_conv_get_engine())
  end)
end)

-- direct pooling over one plane with padding, as a reference
local function naive_pool(x, k, s, p, kind, include_pad)
  local N, Cc, H, W = unpack(x:size())
  local Ho, Wo = math.floor((H + 2 * p - k) / s) + 1, math.floor((W + 2 * p - k) / s) + 1
  local y = pivq.zeros(N, Cc, Ho, Wo)
  for n = 1, N do for c = 1, Cc do for oy = 1, Ho do for ox = 1, Wo do
    local acc, cnt = kind == "max" and -math.huge or 0, 0
    for i = 0, k - 1 do for j = 0, k - 1 do
      local iy, ix = (oy - 1) * s - p + i + 1, (ox - 1) * s - p + j + 1
      if iy >= 1 and iy <= H and ix >= 1 and ix <= W then
        local v = x:get(n, c, iy, ix)
        if kind == "max" then acc = math.max(acc, v) else acc = acc + v end
        cnt = cnt + 1
      end
    end end
    if kind == "avg" then acc = acc / (include_pad and k * k or cnt) end
    y:set(n, c, oy, ox, acc)
  end end end end
  return y
end

describe("pooling and upsampling", function()
  it("max and average pooling match the direct loops", function()
    local x = randn(2, 3, 7, 6)
    for _, c in ipairs({ { 2, 2, 0 }, { 3, 2, 1 }, { 3, 1, 1 } }) do
      local k, s, p = unpack(c)
      close(F.max_pool2d(x, k, { stride = s, padding = p }), naive_pool(x, k, s, p, "max"), 1e-6)
      close(F.avg_pool2d(x, k, { stride = s, padding = p }), naive_pool(x, k, s, p, "avg", true), 1e-6)
      close(F.avg_pool2d(x, k, { stride = s, padding = p, count_include_pad = false }),
        naive_pool(x, k, s, p, "avg", false), 1e-6)
    end
  end)

  it("nearest upsampling repeats pixels; bilinear interpolates", function()
    local x = randn(1, 2, 3, 4)
    local y = F.interpolate(x, { scale_factor = 2 })
    local ref = x:view(1, 2, 3, 1, 4, 1):expand(1, 2, 3, 2, 4, 2):reshape(1, 2, 6, 8)
    close(y, ref, 0)
    local t = pivq.tensor({ { { { 0, 1 }, { 2, 3 } } } })
    close(F.interpolate(t, { size = 3, mode = "bilinear", align_corners = true }),
      pivq.tensor({ { { { 0, 0.5, 1 }, { 1, 1.5, 2 }, { 2, 2.5, 3 } } } }), 1e-6)
    -- align_corners = false at scale 2 (values from PyTorch's definition, by hand)
    close(F.interpolate(t, { size = 4, mode = "bilinear" }):select(3, 1),
      pivq.tensor({ { { 0, 0.25, 0.75, 1 } } }), 1e-6)
  end)

  it("nearest resampling to any size takes source pixel floor(o * in / out), as PyTorch", function()
    local x = randn(2, 3, 3, 4)
    local function rows(n_in, n_out) -- the 1-based source of each output index, written out
      local t = {}
      for o = 1, n_out do t[o] = math.floor((o - 1) * n_in / n_out) + 1 end
      return pivq.tensor(t, "int64")
    end
    for _, size in ipairs({ { 6, 8 }, { 9, 12 }, { 5, 7 }, { 3, 4 }, { 2, 3 }, { 1, 9 } }) do
      local ref = x:index_select(3, rows(3, size[1])):index_select(4, rows(4, size[2]))
      close(F.interpolate(x, { size = size }), ref, 0)
    end
  end)

  it("have finite-difference gradients", function()
    local s = randn(2, 2, 6, 5)
    local distinct = leaf((pivq.randperm(120, { generator = gen }):float() * 0.05):view(2, 2, 6, 5))
    check(function(x) return F.max_pool2d(x, 2) end, { distinct })
    check(function(x) return F.max_pool2d(x, 3, { stride = 2, padding = 1 }) end, { distinct })
    check(function(x) return F.avg_pool2d(x, 3, { stride = 2, padding = 1 }) end, { leaf(s) })
    check(function(x) return F.avg_pool2d(x, 2, { count_include_pad = false, padding = 1 }) end,
      { leaf(s) })
    check(function(x) return F.interpolate(x, { scale_factor = 2 }) end, { leaf(s) })
    check(function(x) return F.interpolate(x, { size = { 9, 7 } }) end, { leaf(s) }) -- uneven repeats
    check(function(x) return F.interpolate(x, { size = { 4, 3 } }) end, { leaf(s) }) -- pixels dropped
    check(function(x) return F.interpolate(x, { size = { 9, 7 }, mode = "bilinear" }) end, { leaf(s) })
    check(function(x)
      return F.interpolate(x, { size = { 4, 8 }, mode = "bilinear", align_corners = true })
    end, { leaf(s) })
  end)
end)
