-- pivq.F: the functional forms of the neural-network ops, with PyTorch's argument meanings
-- and layouts (N, C, H, W; linear weight out x in; conv weight out x in/groups x kH x kW).
-- Dims and class/embedding indices are 1-based, as everywhere in the Lua API. Every function
-- here is differentiable: the C op records its graph node.
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local tensor = require "pivq.core.tensor"

local C = state.C
local wrap, is_tensor = tensor.wrap, tensor.is_tensor
local T = tensor.methods

local F = {}

local function fail(msg, level) error(msg, level + 1) end

local function check(fname, arg, t, level)
  if not is_tensor(t) then
    fail(string.format("%s: %s must be a tensor, got %s", fname, arg, type(t)), level + 1)
  end
end

local function opt_tensor(fname, arg, t, level)
  if t == nil then return nil end
  check(fname, arg, t, level + 1)
  return t.c
end

-- 0-based int64 copy of 1-based integer indices (a tensor or a table)
local function indices0(fname, idx, level)
  if type(idx) == "table" then idx = tensor.from_table(fname, idx, "int64") end
  check(fname, "index", idx, level + 1)
  local dt = idx:dtype()
  if dt ~= "int64" and dt ~= "int32" then
    fail(string.format("%s: indices must be int64 or int32, got %s", fname, dt), level + 1)
  end
  return wrap(C.pivq_binary_scalar(idx.c, 1, C.PIVQ_SUB, 0), level + 1)
end

-- 1-based dim (negative from the end) -> 0-based
local function dim0(fname, t, d, level)
  local nd = t:dim()
  if type(d) ~= "number" or d % 1 ~= 0 or d == 0 or d > nd or d < -nd then
    fail(string.format("%s: dim %s out of range for a %d-dim tensor (use 1..%d or -1..-%d)",
      fname, tostring(d), nd, nd, nd), level + 1)
  end
  return d > 0 and d - 1 or nd + d
end

-- The options table of fname: nil or a plain table.
local function options(fname, opts, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    fail(string.format("%s: options must be a table, got %s", fname, type(opts)), level + 1)
  end
  return opts
end

-- A number argument or option (default when nil); integer = true also asks for an integer.
local function number(fname, name, v, default, level, integer)
  if v == nil then return default end
  if type(v) ~= "number" or (integer and (v % 1 ~= 0 or v ~= v or math.abs(v) >= 2 ^ 53)) then
    fail(string.format("%s: %s must be %s, got %s", fname, name, integer and "an integer" or "a number",
      tostring(v)), level + 1)
  end
  return v
end

local REDUCTIONS = { none = 0, mean = 1, sum = 2 }
local function reduction_of(fname, opts, level)
  local r = options(fname, opts, level + 1).reduction or "mean"
  local code = REDUCTIONS[r]
  if not code then
    fail(string.format("%s: reduction must be 'mean', 'sum' or 'none', got %s", fname,
      tostring(r)), level + 1)
  end
  return code
end

-- ---- linear and activations ---------------------------------------------------------------

function F.linear(x, w, b)
  check("linear", "input", x, 2)
  check("linear", "weight", w, 2)
  return wrap(C.pivq_linear(x.c, w.c, opt_tensor("linear", "bias", b, 2)))
end

local function activation(kind, x, param, fname)
  check(fname, "input", x, 3)
  return wrap(C.pivq_activation(x.c, kind, number(fname, "the parameter", param, 0, 3)), 3)
end

function F.relu(x) return activation(C.PIVQ_ACT_RELU, x, 0, "relu") end
-- gelu(x) exact (erf), gelu(x, {approximate = "tanh"}) the tanh form
function F.gelu(x, opts)
  local kind = options("gelu", opts, 2).approximate == "tanh" and C.PIVQ_ACT_GELU_TANH or C.PIVQ_ACT_GELU
  return activation(kind, x, 0, "gelu")
end
function F.silu(x) return activation(C.PIVQ_ACT_SILU, x, 0, "silu") end
function F.leaky_relu(x, slope) return activation(C.PIVQ_ACT_LEAKY_RELU, x, slope or 0.01, "leaky_relu") end
function F.elu(x, alpha) return activation(C.PIVQ_ACT_ELU, x, alpha or 1.0, "elu") end
function F.sigmoid(x) return T.sigmoid(x) end
function F.tanh(x) return T.tanh(x) end

function F.softmax(x, dim)
  check("softmax", "input", x, 2)
  return wrap(C.pivq_softmax(x.c, dim0("softmax", x, dim or -1, 2)))
end

function F.log_softmax(x, dim)
  check("log_softmax", "input", x, 2)
  return wrap(C.pivq_log_softmax(x.c, dim0("log_softmax", x, dim or -1, 2)))
end

-- ---- embedding and dropout ----------------------------------------------------------------

-- Rows of weight (num x dim) at 1-based indices of any shape: (index..., dim).
function F.embedding(index, weight)
  check("embedding", "weight", weight, 2)
  local idx = indices0("embedding", index, 2)
  return wrap(C.pivq_embedding(idx.c, weight.c))
end

-- dropout(x, p = 0.5, training = true, {generator = g})
function F.dropout(x, p, training, opts)
  check("dropout", "input", x, 2)
  if training == nil then training = true end
  local gen = options("dropout", opts, 2).generator
  if gen ~= nil and (type(gen) ~= "table" or gen.cdata == nil) then
    fail("dropout: generator must be a pivq.Generator, got " .. type(gen), 2)
  end
  return wrap(C.pivq_dropout(x.c, number("dropout", "p", p, 0.5, 2), training and 1 or 0, gen and gen.cdata))
end

-- ---- normalisation --------------------------------------------------------------------------

-- layer_norm(x, normalized_shape, weight, bias, eps = 1e-5): normalized_shape a number or a
-- table of the last dims' sizes
function F.layer_norm(x, normalized_shape, w, b, eps)
  check("layer_norm", "input", x, 2)
  local ns = type(normalized_shape) == "table" and normalized_shape or { normalized_shape }
  local nd = x:dim()
  for i = 1, #ns do number("layer_norm", "normalized_shape[" .. i .. "]", ns[i], nil, 2, true) end
  for i, s in ipairs(ns) do
    if x:dim() < #ns or x:size(nd - #ns + i) ~= s then
      fail(string.format("layer_norm: normalized_shape {%s} does not match the last dims of %s",
        table.concat(ns, ", "), tensor.shape_string(x)), 2)
    end
  end
  return wrap(C.pivq_layer_norm(x.c, #ns, opt_tensor("layer_norm", "weight", w, 2),
    opt_tensor("layer_norm", "bias", b, 2), number("layer_norm", "eps", eps, 1e-5, 2)))
end

function F.group_norm(x, groups, w, b, eps)
  check("group_norm", "input", x, 2)
  return wrap(C.pivq_group_norm(x.c, number("group_norm", "groups", groups, nil, 2, true),
    opt_tensor("group_norm", "weight", w, 2), opt_tensor("group_norm", "bias", b, 2),
    number("group_norm", "eps", eps, 1e-5, 2)))
end

-- ---- losses --------------------------------------------------------------------------------
-- opts.reduction: "mean" (default), "sum" or "none"

local function pointwise(kind, fname, x, target, opts, margin)
  check(fname, "input", x, 3)
  check(fname, "target", target, 3)
  return wrap(C.pivq_pointwise_loss(x.c, target.c, kind, reduction_of(fname, opts, 3),
    number(fname, "margin", margin, 0, 3)), 3)
end

function F.mse_loss(x, target, opts) return pointwise(C.PIVQ_LOSS_MSE, "mse_loss", x, target, opts) end
function F.l1_loss(x, target, opts) return pointwise(C.PIVQ_LOSS_L1, "l1_loss", x, target, opts) end
function F.binary_cross_entropy_with_logits(x, target, opts)
  return pointwise(C.PIVQ_LOSS_BCE_LOGITS, "binary_cross_entropy_with_logits", x, target, opts)
end
-- mean(max(0, margin - target * x)) with targets in {-1, 1}; opts.margin defaults to 1
function F.hinge_loss(x, target, opts)
  return pointwise(C.PIVQ_LOSS_HINGE, "hinge_loss", x, target, opts, options("hinge_loss", opts, 1).margin or 1)
end

-- cross_entropy(logits (N, C, ...), target (N, ...) of 1-based classes,
--               {reduction =, ignore_index = a class value to skip (default -100)})
function F.cross_entropy(logits, target, opts)
  check("cross_entropy", "logits", logits, 2)
  local t = indices0("cross_entropy", target, 2)
  local ignore = number("cross_entropy", "ignore_index", options("cross_entropy", opts, 2).ignore_index, -100, 2,
    true) - 1
  return wrap(C.pivq_cross_entropy(logits.c, t.c, reduction_of("cross_entropy", opts, 2), ignore))
end

-- ---- attention ---------------------------------------------------------------------------------

-- attention(q, k, v, {mask =, scale =}): q (..., Lq, D), k (..., Lk, D), v (..., Lk, Dv) with the
-- same batch dims (batch, heads); mask additive (-math.huge hides a key), broadcastable to
-- (..., Lq, Lk); scale defaults to 1/sqrt(D). Returns (..., Lq, Dv).
function F.attention(q, k, v, opts)
  check("attention", "q", q, 2)
  check("attention", "k", k, 2)
  check("attention", "v", v, 2)
  opts = options("attention", opts, 2)
  return wrap(C.pivq_attention(q.c, k.c, v.c, opt_tensor("attention", "mask", opts.mask, 2),
    number("attention", "scale", opts.scale, 0, 2)))
end
F.scaled_dot_product_attention = F.attention

-- ---- convolution, pooling, upsampling -------------------------------------------------------------

-- a number or a pair {h, w}; integer = true: of integers
local function pair(fname, name, v, default, level, integer)
  if v == nil then v = default end
  if type(v) == "number" then v = { v, v } end
  if type(v) ~= "table" or type(v[1]) ~= "number" or type(v[2]) ~= "number" then
    fail(string.format("%s: %s must be a number or a pair {h, w}, got %s", fname, name,
      tostring(v)), level + 1)
  end
  for i = 1, 2 do number(fname, name, v[i], nil, level + 1, integer) end
  return v
end

local conv_params_t = ffi.typeof("pivq_conv_params")
local function conv_params(fname, opts, level)
  opts = options(fname, opts, level + 1)
  local p = conv_params_t()
  local st = pair(fname, "stride", opts.stride, 1, level + 1, true)
  local pd = pair(fname, "padding", opts.padding, 0, level + 1, true)
  local dl = pair(fname, "dilation", opts.dilation, 1, level + 1, true)
  local op = pair(fname, "output_padding", opts.output_padding, 0, level + 1, true)
  for i = 1, 2 do
    p.stride[i - 1], p.padding[i - 1], p.dilation[i - 1] = st[i], pd[i], dl[i]
    p.output_padding[i - 1] = op[i]
  end
  -- C's int: a value beyond it would wrap around
  local groups = number(fname, "groups", opts.groups, 1, level + 1, true)
  if math.abs(groups) >= 2 ^ 31 then fail(string.format("%s: groups %s is too large", fname, groups), level + 1) end
  p.groups = groups
  return p
end

-- conv2d(x, w, b, {stride = 1, padding = 0, dilation = 1, groups = 1})
function F.conv2d(x, w, b, opts)
  check("conv2d", "input", x, 2)
  check("conv2d", "weight", w, 2)
  return wrap(C.pivq_conv2d(x.c, w.c, opt_tensor("conv2d", "bias", b, 2),
    conv_params("conv2d", opts, 2)))
end

-- The direct (slow, no autograd) convolution the specs compare conv2d with.
function F.conv2d_reference(x, w, b, opts)
  check("conv2d_reference", "input", x, 2)
  check("conv2d_reference", "weight", w, 2)
  return wrap(C.pivq_conv2d_reference(x.c, w.c, opt_tensor("conv2d_reference", "bias", b, 2),
    conv_params("conv2d_reference", opts, 2)))
end

-- conv_transpose2d(x, w (C, O/groups, kH, kW), b, {stride, padding, output_padding, dilation,
-- groups})
function F.conv_transpose2d(x, w, b, opts)
  check("conv_transpose2d", "input", x, 2)
  check("conv_transpose2d", "weight", w, 2)
  return wrap(C.pivq_conv_transpose2d(x.c, w.c, opt_tensor("conv_transpose2d", "bias", b, 2),
    conv_params("conv_transpose2d", opts, 2)))
end

local int64_2 = ffi.typeof("int64_t[2]")
local function arr2(v) return int64_2(v[1], v[2]) end

-- max_pool2d(x, kernel, {stride = kernel, padding = 0})
function F.max_pool2d(x, kernel, opts)
  check("max_pool2d", "input", x, 2)
  opts = options("max_pool2d", opts, 2)
  local k = pair("max_pool2d", "kernel", kernel, nil, 2, true)
  return wrap(C.pivq_max_pool2d(x.c, arr2(k), arr2(pair("max_pool2d", "stride", opts.stride, k, 2, true)),
    arr2(pair("max_pool2d", "padding", opts.padding, 0, 2, true))))
end

-- avg_pool2d(x, kernel, {stride = kernel, padding = 0, count_include_pad = true})
function F.avg_pool2d(x, kernel, opts)
  check("avg_pool2d", "input", x, 2)
  opts = options("avg_pool2d", opts, 2)
  local k = pair("avg_pool2d", "kernel", kernel, nil, 2, true)
  local include_pad = opts.count_include_pad == false and 0 or 1
  return wrap(C.pivq_avg_pool2d(x.c, arr2(k), arr2(pair("avg_pool2d", "stride", opts.stride, k, 2, true)),
    arr2(pair("avg_pool2d", "padding", opts.padding, 0, 2, true)), include_pad))
end

-- interpolate(x, {size = {h, w} or scale_factor = s, mode = "nearest" | "bilinear",
--                 align_corners = false})
function F.interpolate(x, opts)
  check("interpolate", "input", x, 2)
  opts = options("interpolate", opts, 2)
  if x:dim() ~= 4 then
    fail("interpolate: input must be (N, C, H, W), got " .. tensor.shape_string(x), 2)
  end
  local size
  if opts.size then
    size = pair("interpolate", "size", opts.size, nil, 2, true)
  elseif opts.scale_factor then
    local sf = pair("interpolate", "scale_factor", opts.scale_factor, nil, 2)
    size = { math.floor(x:size(3) * sf[1]), math.floor(x:size(4) * sf[2]) }
  else
    fail("interpolate: give size or scale_factor", 2)
  end
  if not (size[1] >= 1 and size[2] >= 1 and size[1] < 2 ^ 53 and size[2] < 2 ^ 53) then
    fail(string.format("interpolate: the output size must be at least 1x1 and finite, got %sx%s", size[1],
      size[2]), 2)
  end
  local modes = { nearest = 0, bilinear = 1 }
  local mode = modes[opts.mode or "nearest"]
  if not mode then
    fail("interpolate: mode must be 'nearest' or 'bilinear', got " .. tostring(opts.mode), 2)
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
