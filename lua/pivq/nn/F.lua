-- pivq.nn.F (pivq.F): the functional forms of the neural-network ops, with PyTorch's argument meanings
-- and layouts (N, C, H, W; linear weight out x in; conv weight out x in/groups x kH x kW).
-- Dims and class/embedding indices are 1-based, as everywhere in the Lua API. Every function
-- here is differentiable: the C op records its graph node.
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local tensor = require "pivq.core.tensor"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"
local indexing = require "pivq.core.index"

local C = state.C
local wrap = gc.wrap
local T = tensor.methods

local F = {}

local fail = argcheck.fail
local check, opt_tensor, options, number = argcheck.tensor, argcheck.optional_tensor, argcheck.options,
  argcheck.number
local dim0, indices0 = indexing.dim0, indexing.index0

local REDUCTIONS = { none = 0, mean = 1, sum = 2 }
local function reduction_of(fname, opts, valid)
  local r = options(fname, opts, valid or { "reduction" }).reduction or "mean"
  local code = REDUCTIONS[r]
  if not code then
    fail(string.format("%s: reduction must be 'mean', 'sum' or 'none', got %s", fname,
      tostring(r)))
  end
  return code
end

-- ---- linear and activations ---------------------------------------------------------------

function F.linear(x, w, b)
  check("linear", "input", x)
  check("linear", "weight", w)
  return wrap(C.pivq_linear(x.c, w.c, opt_tensor("linear", "bias", b)))
end

local function activation(kind, x, param, fname)
  check(fname, "input", x)
  return wrap(C.pivq_activation(x.c, kind, number(fname, "the parameter", param, 0)))
end

function F.relu(x) return activation(C.PIVQ_ACT_RELU, x, 0, "relu") end
-- gelu(x) exact (erf), gelu(x, {approximate = "tanh"}) the tanh form
function F.gelu(x, opts)
  local tanh = options("gelu", opts, { "approximate" }).approximate == "tanh"
  local kind = tanh and C.PIVQ_ACT_GELU_TANH or C.PIVQ_ACT_GELU
  return activation(kind, x, 0, "gelu")
end
function F.silu(x) return activation(C.PIVQ_ACT_SILU, x, 0, "silu") end
function F.leaky_relu(x, slope) return activation(C.PIVQ_ACT_LEAKY_RELU, x, slope or 0.01, "leaky_relu") end
function F.elu(x, alpha) return activation(C.PIVQ_ACT_ELU, x, alpha or 1.0, "elu") end
function F.sigmoid(x) return T.sigmoid(x) end
function F.tanh(x) return T.tanh(x) end

function F.softmax(x, dim)
  check("softmax", "input", x)
  return wrap(C.pivq_softmax(x.c, dim0("softmax", x, dim or -1)))
end

function F.log_softmax(x, dim)
  check("log_softmax", "input", x)
  return wrap(C.pivq_log_softmax(x.c, dim0("log_softmax", x, dim or -1)))
end

-- ---- embedding and dropout ----------------------------------------------------------------

-- Rows of weight (num x dim) at 1-based indices of any shape: (index..., dim).
function F.embedding(index, weight)
  check("embedding", "weight", weight)
  local idx = indices0("embedding", index)
  return wrap(C.pivq_embedding(idx.c, weight.c))
end

-- dropout(x, p = 0.5, training = true, {generator = g})
function F.dropout(x, p, training, opts)
  check("dropout", "input", x)
  if training == nil then training = true end
  local gen = argcheck.generator("dropout", options("dropout", opts, { "generator" }))
  return wrap(C.pivq_dropout(x.c, number("dropout", "p", p, 0.5), training and 1 or 0, gen))
end

-- ---- normalisation --------------------------------------------------------------------------

-- layer_norm(x, normalized_shape, weight, bias, eps = 1e-5): normalized_shape a number or a
-- table of the last dims' sizes
function F.layer_norm(x, normalized_shape, w, b, eps)
  check("layer_norm", "input", x)
  local ns = type(normalized_shape) == "table" and normalized_shape or { normalized_shape }
  local nd = x:dim()
  for i = 1, #ns do number("layer_norm", "normalized_shape[" .. i .. "]", ns[i], nil, true) end
  for i, s in ipairs(ns) do
    if x:dim() < #ns or x:size(nd - #ns + i) ~= s then
      fail(string.format("layer_norm: normalized_shape {%s} does not match the last dims of %s",
        table.concat(ns, ", "), argcheck.shape_string(x)))
    end
  end
  return wrap(C.pivq_layer_norm(x.c, #ns, opt_tensor("layer_norm", "weight", w),
    opt_tensor("layer_norm", "bias", b), number("layer_norm", "eps", eps, 1e-5)))
end

function F.group_norm(x, groups, w, b, eps)
  check("group_norm", "input", x)
  return wrap(C.pivq_group_norm(x.c, number("group_norm", "groups", groups, nil, true),
    opt_tensor("group_norm", "weight", w), opt_tensor("group_norm", "bias", b),
    number("group_norm", "eps", eps, 1e-5)))
end

-- ---- losses --------------------------------------------------------------------------------
-- opts.reduction: "mean" (default), "sum" or "none"

local function pointwise(kind, fname, x, target, opts, margin, valid)
  check(fname, "input", x)
  check(fname, "target", target)
  return wrap(C.pivq_pointwise_loss(x.c, target.c, kind, reduction_of(fname, opts, valid),
    number(fname, "margin", margin, 0)))
end

function F.mse_loss(x, target, opts) return pointwise(C.PIVQ_LOSS_MSE, "mse_loss", x, target, opts) end
function F.l1_loss(x, target, opts) return pointwise(C.PIVQ_LOSS_L1, "l1_loss", x, target, opts) end
function F.binary_cross_entropy_with_logits(x, target, opts)
  return pointwise(C.PIVQ_LOSS_BCE_LOGITS, "binary_cross_entropy_with_logits", x, target, opts)
end
-- mean(max(0, margin - target * x)) with targets in {-1, 1}; opts.margin defaults to 1
function F.hinge_loss(x, target, opts)
  local valid = { "reduction", "margin" }
  return pointwise(C.PIVQ_LOSS_HINGE, "hinge_loss", x, target, opts, options("hinge_loss", opts, valid).margin or 1,
    valid)
end

-- cross_entropy(logits (N, C, ...), target (N, ...) of 1-based classes,
--               {reduction =, ignore_index = a class value to skip (default -100)})
function F.cross_entropy(logits, target, opts)
  check("cross_entropy", "logits", logits)
  local t = indices0("cross_entropy", target)
  local valid = { "reduction", "ignore_index" }
  local ignore = indexing.pos0(number("cross_entropy", "ignore_index",
    options("cross_entropy", opts, valid).ignore_index, -100, true))
  return wrap(C.pivq_cross_entropy(logits.c, t.c, reduction_of("cross_entropy", opts, valid), ignore))
end

-- ---- attention ---------------------------------------------------------------------------------

-- attention(q, k, v, {mask =, scale =}): q (..., Lq, D), k (..., Lk, D), v (..., Lk, Dv) with the
-- same batch dims (batch, heads); mask additive (-math.huge hides a key), broadcastable to
-- (..., Lq, Lk); scale defaults to 1/sqrt(D). Returns (..., Lq, Dv).
function F.attention(q, k, v, opts)
  check("attention", "q", q)
  check("attention", "k", k)
  check("attention", "v", v)
  opts = options("attention", opts, { "mask", "scale" })
  return wrap(C.pivq_attention(q.c, k.c, v.c, opt_tensor("attention", "mask", opts.mask),
    number("attention", "scale", opts.scale, 0)))
end
F.scaled_dot_product_attention = F.attention

-- ---- convolution, pooling, upsampling -------------------------------------------------------------

local pair = argcheck.number_pair

local conv_params_t = ffi.typeof("pivq_conv_params")
local CONV_KEYS = { "stride", "padding", "dilation", "groups" }
local CONV_T_KEYS = { "stride", "padding", "output_padding", "dilation", "groups" }
local function conv_params(fname, opts)
  opts = options(fname, opts, fname == "conv_transpose2d" and CONV_T_KEYS or CONV_KEYS)
  local p = conv_params_t()
  local st = pair(fname, "stride", opts.stride, 1, true)
  local pd = pair(fname, "padding", opts.padding, 0, true)
  local dl = pair(fname, "dilation", opts.dilation, 1, true)
  local op = pair(fname, "output_padding", opts.output_padding, 0, true)
  for i = 1, 2 do
    p.stride[i - 1], p.padding[i - 1], p.dilation[i - 1] = st[i], pd[i], dl[i]
    p.output_padding[i - 1] = op[i]
  end
  -- C's int: a value beyond it would wrap around
  local groups = number(fname, "groups", opts.groups, 1, true)
  if math.abs(groups) >= 2 ^ 31 then fail(string.format("%s: groups %s is too large", fname, groups)) end
  p.groups = groups
  return p
end

-- conv2d(x, w, b, {stride = 1, padding = 0, dilation = 1, groups = 1})
function F.conv2d(x, w, b, opts)
  check("conv2d", "input", x)
  check("conv2d", "weight", w)
  return wrap(C.pivq_conv2d(x.c, w.c, opt_tensor("conv2d", "bias", b),
    conv_params("conv2d", opts)))
end

-- The direct (slow, no autograd) convolution the specs compare conv2d with.
function F.conv2d_reference(x, w, b, opts)
  check("conv2d_reference", "input", x)
  check("conv2d_reference", "weight", w)
  return wrap(C.pivq_conv2d_reference(x.c, w.c, opt_tensor("conv2d_reference", "bias", b),
    conv_params("conv2d_reference", opts)))
end

-- conv_transpose2d(x, w (C, O/groups, kH, kW), b, {stride, padding, output_padding, dilation,
-- groups})
function F.conv_transpose2d(x, w, b, opts)
  check("conv_transpose2d", "input", x)
  check("conv_transpose2d", "weight", w)
  return wrap(C.pivq_conv_transpose2d(x.c, w.c, opt_tensor("conv_transpose2d", "bias", b),
    conv_params("conv_transpose2d", opts)))
end

local int64_2 = ffi.typeof("int64_t[2]")
local function arr2(v) return int64_2(v[1], v[2]) end

-- max_pool2d(x, kernel, {stride = kernel, padding = 0})
function F.max_pool2d(x, kernel, opts)
  check("max_pool2d", "input", x)
  opts = options("max_pool2d", opts, { "stride", "padding" })
  local k = pair("max_pool2d", "kernel", kernel, nil, true)
  return wrap(C.pivq_max_pool2d(x.c, arr2(k), arr2(pair("max_pool2d", "stride", opts.stride, k, true)),
    arr2(pair("max_pool2d", "padding", opts.padding, 0, true))))
end

-- avg_pool2d(x, kernel, {stride = kernel, padding = 0, count_include_pad = true})
function F.avg_pool2d(x, kernel, opts)
  check("avg_pool2d", "input", x)
  opts = options("avg_pool2d", opts, { "stride", "padding", "count_include_pad" })
  local k = pair("avg_pool2d", "kernel", kernel, nil, true)
  local include_pad = opts.count_include_pad == false and 0 or 1
  return wrap(C.pivq_avg_pool2d(x.c, arr2(k), arr2(pair("avg_pool2d", "stride", opts.stride, k, true)),
    arr2(pair("avg_pool2d", "padding", opts.padding, 0, true)), include_pad))
end

-- interpolate(x, {size = {h, w} or scale_factor = s, mode = "nearest" | "bilinear",
--                 align_corners = false})
function F.interpolate(x, opts)
  check("interpolate", "input", x)
  opts = options("interpolate", opts, { "size", "scale_factor", "mode", "align_corners" })
  if x:dim() ~= 4 then
    fail("interpolate: input must be (N, C, H, W), got " .. argcheck.shape_string(x))
  end
  local size
  if opts.size then
    size = pair("interpolate", "size", opts.size, nil, true)
  elseif opts.scale_factor then
    local sf = pair("interpolate", "scale_factor", opts.scale_factor, nil)
    size = { math.floor(x:size(3) * sf[1]), math.floor(x:size(4) * sf[2]) }
  else
    fail("interpolate: give size or scale_factor")
  end
  if not (size[1] >= 1 and size[2] >= 1 and size[1] < 2 ^ 53 and size[2] < 2 ^ 53) then
    fail(string.format("interpolate: the output size must be at least 1x1 and finite, got %sx%s", size[1],
      size[2]))
  end
  local modes = { nearest = 0, bilinear = 1 }
  local mode = modes[opts.mode or "nearest"]
  if not mode then
    fail("interpolate: mode must be 'nearest' or 'bilinear', got " .. tostring(opts.mode))
  end
  return wrap(C.pivq_upsample2d(x.c, size[1], size[2], mode, opts.align_corners and 1 or 0))
end

-- ---- tensor methods for the common ones -------------------------------------------------------

T.softmax = F.softmax
T.log_softmax = F.log_softmax
T.gelu = F.gelu
T.silu = F.silu
T.leaky_relu = F.leaky_relu


return F
