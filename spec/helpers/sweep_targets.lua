-- The bad-argument sweep's catalogue (spec/lua/sweep_spec.lua): every public function of the
-- pivq namespace with one valid call, grouped; the sweep replaces each argument (and each field
-- of a table argument) by each value of bad_values() in turn.
--
-- The child runs in a scratch folder holding "folder" (a folder), "notdata.txt" (a text file)
-- and the files the valid calls read (see M.prepare), so paths among the bad values are harmless.
--
-- A target: { fn, args = function() return {valid args}, n end, names = {...}, self = true }.
-- `names` are the words an error message may use to name the function (case-insensitive);
-- `self = true` keeps argument 1 (an object the call is a method of) out of the sweep.
-- `data_args = {[i] = reason}`: table argument i is data (tensors by name, metadata, a dataset),
-- not options, so the misspelt-key sweep (sweep_child.lua GROUP misspelt) leaves it alone; the
-- reason says why (or which open work owns it).
local pivq = require "pivq"

local M = {}

local nan, inf = 0 / 0, math.huge

-- Fresh for every call: in-place ops may modify them.
function M.bad_values()
  local r = pivq.Generator(7)
  local function randn(...) return pivq.randn({ ... }, { generator = r }) end
  return {
    { "nil", nil }, { "true", true }, { "'x'", "x" }, { "''", "" }, { "{}", {} },
    { "{1,'a'}", { 1, "a" } }, { "function", function() end }, { "cdata", pivq.C },
    { "0", 0 }, { "-1", -1 }, { "1.5", 1.5 }, { "nan", nan }, { "inf", inf }, { "-inf", -inf },
    { "2^62", 2 ^ 62 }, { "-2^62", -2 ^ 62 }, { "1e300", 1e300 },
    { "'/nonexistent/x'", "/nonexistent/x" }, { "'folder'", "folder" }, { "'notdata.txt'", "notdata.txt" },
    { "empty(0)", pivq.empty(0) }, { "empty(0,3)", pivq.empty(0, 3) },
    { "empty(2,0)", pivq.empty(2, 0) }, { "scalar", pivq.tensor(2) },
    { "randn(3)", randn(3) }, { "randn(2,3)", randn(2, 3) }, { "randn(5,4)", randn(5, 4) },
    { "randn(1,2,3,3)", randn(1, 2, 3, 3) }, { "randn(2,1,1,1,1)", randn(2, 1, 1, 1, 1) },
    { "int64(2,3)", pivq.ones(2, 3, "int64") }, { "int32(2,3)", pivq.ones(2, 3, "int32") },
    { "uint8(2,3)", pivq.ones(2, 3, "uint8") },
    { "int64 -5", pivq.full({ 2, 3 }, -5, "int64") }, { "int64 2^40", pivq.full({ 3 }, 2 ^ 40, "int64") },
    { "nan(2,3)", pivq.full({ 2, 3 }, nan) }, { "inf(2,3)", pivq.full({ 2, 3 }, inf) },
    { "transposed(3,2)", randn(2, 3):t() }, { "expanded(4,3)", randn(1, 3):expand(4, 3) },
  }
end

local function randn(...) return pivq.randn(...) end
local function X() return randn(2, 3) end
local function idx23() return pivq.ones(2, 3, "int64") end

-- Tensor methods: the valid arguments after self (default: none).
local METHOD_ARGS = {
  clamp = function() return -1, 1 end,
  copy = function() return X() end,
  expand = function() return 2, 3 end,
  expand_as = function() return X() end,
  fill = function() return 1 end,
  gather = function() return 2, idx23() end,
  get = function() return 1, 2 end,
  set = function() return 1, 2, 5 end,
  index_select = function() return 1, { 1, 2 } end,
  masked_fill = function() return pivq.ones(2, 3, "uint8"), 0 end,
  matmul = function() return randn(3, 4) end,
  narrow = function() return 2, 1, 2 end,
  permute = function() return 2, 1 end,
  reshape = function() return 3, 2 end,
  view_as = function() return randn(3, 2) end,
  scatter_add = function() return 2, idx23(), X() end,
  select = function() return 1, 1 end,
  size = function() return 1 end,
  unsqueeze = function() return 1 end,
  squeeze = function() return 1 end,
  to = function() return "int64" end,
  transpose = function() return 1, 2 end,
  norm = function() return 2, 1 end,
  max = function() return 2 end,
  softmax = function() return 2 end,
  leaky_relu = function() return 0.1 end,
  requires_grad = function() return true end,
  set_grad = function() return X() end,
  backward = function() return X() end,
}
for _, name in ipairs({ "add", "sub", "mul", "div", "maximum", "minimum", "pow", "eq", "ne", "lt", "le", "gt",
  "ge" }) do
  METHOD_ARGS[name] = METHOD_ARGS.copy
  METHOD_ARGS[name .. "_"] = METHOD_ARGS.copy
end
for _, name in ipairs({ "sum", "mean", "var", "std", "prod", "argmax", "argmin", "min", "stride" }) do
  METHOD_ARGS[name] = METHOD_ARGS.max
end
METHOD_ARGS.view = METHOD_ARGS.reshape
METHOD_ARGS.log_softmax = METHOD_ARGS.softmax
METHOD_ARGS.requires_grad_ = METHOD_ARGS.requires_grad

-- Self tensors other than a 2x3 float32.
local METHOD_SELF = {
  item = function() return pivq.tensor(1) end,
  expand = function() return randn(1, 3) end,
  squeeze = function() return randn(2, 1, 3) end,
  backward = function() return randn(2, 3):requires_grad(true):mul(2) end,
}

-- Thin wrappers whose errors come from the function they wrap.
local SPEAKS_AS = { view_as = "view", expand_as = "expand",
  binary_cross_entropy_with_logits = "bce_with_logits" }

-- All names (keys) under which each function value appears in table t.
local function names_of(t)
  local out = {}
  for k, f in pairs(t) do
    if type(f) == "function" then
      out[f] = out[f] or {}
      table.insert(out[f], k)
    end
  end
  return out
end

local function target(fn, names, args, opts)
  if type(args) == "table" then args, opts = opts, args end -- target(fn, names, {data_args = ...}, args)
  local t = { fn = fn, names = names, args = function() local a = { args() } return a, #a end }
  for k, v in pairs(opts or {}) do t[k] = v end
  return t
end

local groups = {}
M.groups = groups

groups.tensor = function()
  local out = {}
  for f, names in pairs(names_of(pivq.Tensor)) do
    table.sort(names)
    local extra, self_of = METHOD_ARGS[names[1]], METHOD_SELF[names[1]] or X
    for _, n in ipairs(names) do names[#names + 1] = SPEAKS_AS[n] end
    for _, n in ipairs(names) do
      extra, self_of = extra or METHOD_ARGS[n], METHOD_SELF[n] or self_of
    end
    out[#out + 1] = target(f, names, function()
      if extra then return self_of(), extra() end
      return self_of()
    end)
  end
  table.sort(out, function(a, b) return a.names[1] < b.names[1] end)
  return out
end

-- The free functions of the top-level namespace that are not tensor methods.
local TOP = {
  empty = function() return 2, 3 end,
  zeros = function() return 2, 3, "float32" end,
  ones = function() return { 2, 3 }, "int64" end,
  full = function() return { 2, 3 }, 1, "float32" end,
  arange = function() return 1, 5, 1 end,
  tensor = function() return { { 1, 2 }, { 3, 4 } }, "float32" end,
  cat = function() return { X(), X() }, 1 end,
  stack = function() return { X(), X() }, 2 end,
  where = function() return pivq.ones(2, 3, "uint8"), X(), X() end,
  is_tensor = function() return X() end,
  manual_seed = function() return 3 end,
  get_rng_state = function() end,
  set_rng_state = function() return pivq.get_rng_state() end,
  Generator = function() return 3 end,
  rand = function() return 2, 3 end,
  randn = function() return 2, 3 end,
  randint = function() return 1, 10, { 2, 3 } end,
  randperm = function() return 5 end,
  multinomial = function() return pivq.ones(2, 3), 2, true end,
  uniform_ = function() return X(), 0, 1 end,
  normal_ = function() return X(), 0, 1 end,
  no_grad = function() return function(a) return a end, 1 end,
  enable_grad = function() return function(a) return a end, 1 end,
  set_grad_enabled = function() return true end,
  is_grad_enabled = function() end,
  graph_node_count = function() end,
  set_num_threads = function() return 1 end,
  get_num_threads = function() end,
  heap_bytes = function() end,
  omp_wait = function() end,
  autocast = function() return "fp32", function(a) return a end, 1 end,
  set_precision = function() return "fp32" end,
  get_precision = function() end,
  bf16_available = function() end,
}
M.TOP = TOP

groups.namespace = function()
  local out = {}
  local keys = {}
  for k in pairs(TOP) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do out[#out + 1] = target(pivq[k], { k }, TOP[k]) end
  return out
end

local function x4(n, c, h, w) return randn(n, c, h, w) end

local F_ARGS = {
  linear = function() return randn(2, 4), randn(3, 4), randn(3) end,
  softmax = function() return X(), 2 end,
  embedding = function() return { 1, 2 }, randn(5, 3) end,
  dropout = function() return X(), 0.5, true, {} end,
  layer_norm = function() return X(), 3, pivq.ones(3), pivq.zeros(3), 1e-5 end,
  group_norm = function() return x4(2, 4, 3, 3), 2, pivq.ones(4), pivq.zeros(4), 1e-5 end,
  mse_loss = function() return X(), X(), { reduction = "mean" } end,
  hinge_loss = function() return X(), X():sign(), { reduction = "sum", margin = 1 } end,
  cross_entropy = function() return X(), { 1, 3 }, { reduction = "mean", ignore_index = 2 } end,
  attention = function()
    return randn(2, 4, 8), randn(2, 5, 8), randn(2, 5, 8), { scale = 0.3, mask = pivq.zeros(4, 5) }
  end,
  conv2d = function()
    return x4(1, 2, 5, 5), x4(4, 1, 3, 3), randn(4), { stride = 1, padding = 1, dilation = 1, groups = 2 }
  end,
  conv_transpose2d = function()
    return x4(1, 2, 4, 4), x4(2, 3, 3, 3), randn(3), { stride = 2, padding = 1, output_padding = 1,
      dilation = 1, groups = 1 }
  end,
  max_pool2d = function() return x4(1, 2, 4, 4), 2, { stride = 2, padding = 1 } end,
  avg_pool2d = function() return x4(1, 2, 4, 4), { 2, 2 }, { stride = 2, padding = 1, count_include_pad = false } end,
  interpolate = function() return x4(1, 2, 4, 4), { size = { 8, 6 }, mode = "bilinear", align_corners = true } end,
  gelu = function() return X(), { approximate = "tanh" } end,
  leaky_relu = function() return X(), 0.2 end,
  elu = function() return X(), 1 end,
}
F_ARGS.log_softmax = F_ARGS.softmax
F_ARGS.l1_loss, F_ARGS.binary_cross_entropy_with_logits = F_ARGS.mse_loss, F_ARGS.mse_loss
F_ARGS.conv2d_reference = F_ARGS.conv2d
F_ARGS.scaled_dot_product_attention = F_ARGS.attention

groups.F = function()
  local out = {}
  for f, names in pairs(names_of(pivq.F)) do
    table.sort(names)
    local args = F_ARGS[names[1]] or F_ARGS[names[2] or ""] or X
    for _, n in ipairs(names) do names[#names + 1] = SPEAKS_AS[n] end
    out[#out + 1] = target(f, names, args)
  end
  -- the scale_factor form of interpolate
  out[#out + 1] = target(pivq.F.interpolate, { "interpolate" }, function()
    return x4(1, 2, 4, 4), { scale_factor = 1.5, mode = "nearest" }
  end)
  table.sort(out, function(a, b) return a.names[1] < b.names[1] end)
  return out
end

-- nn: constructor arguments and forward inputs of every module class.
local NN = {
  AvgPool2d = { function() return 2, { stride = 2 } end, function() return x4(1, 2, 4, 4) end },
  MaxPool2d = { function() return 2, { stride = 1 } end, function() return x4(1, 2, 4, 4) end },
  Conv2d = { function() return 2, 3, 3, { stride = 1, padding = 1, bias = true } end,
    function() return x4(1, 2, 5, 5) end },
  ConvTranspose2d = { function() return 2, 3, 4, { stride = 2, padding = 1 } end,
    function() return x4(1, 2, 3, 3) end },
  Dropout = { function() return 0.3 end, function() return X() end },
  Embedding = { function() return 5, 3 end, function() return pivq.tensor({ 1, 5 }, "int64") end },
  Flatten = { function() end, function() return x4(2, 1, 2, 2) end },
  GELU = { function() return { approximate = "tanh" } end, X },
  GroupNorm = { function() return 2, 4, { eps = 1e-5, affine = true } end, function() return x4(2, 4, 3, 3) end },
  LayerNorm = { function() return 3, { eps = 1e-5 } end, X },
  LeakyReLU = { function() return 0.2 end, X },
  Linear = { function() return 3, 4, { bias = true } end, X },
  MLP = { function() return { 3, 5, 2 }, { activation = "gelu" } end, X },
  MultiheadAttention = { function() return 8, 2, { bias = true } end,
    function() return randn(2, 4, 8), randn(2, 5, 8), randn(2, 5, 8), { mask = pivq.zeros(4, 5) } end },
  ReLU = { function() end, X },
  Sequential = { function() return pivq.nn.Linear(3, 4), pivq.nn.ReLU() end, X },
  SiLU = { function() end, X },
  Sigmoid = { function() end, X },
  Tanh = { function() end, X },
  TransformerBlock = { function() return 8, 2, { mlp_ratio = 2 } end, function() return randn(2, 3, 8) end },
  Upsample = { function() return { scale_factor = 2, mode = "bilinear" } end, function() return x4(1, 1, 2, 2) end },
  Quantizer = { function() return 6, 3, { mode = "matching", beta = 0.25, decay = 0.9 } end,
    function() return randn(2, 4, 3) end },
  PatchDiscriminator = { function() return 1, { width = 4, layers = 1, slope = 0.2 } end,
    function() return x4(1, 1, 16, 16) end },
}
M.NN = NN

-- The ops a composite module's forward calls, which its errors may name instead.
local NN_OPS = { MLP = { "linear" }, TransformerBlock = { "layer_norm", "attention", "linear" },
  MultiheadAttention = { "linear", "attention" }, Sequential = { "linear" }, Upsample = { "interpolate" },
  MaxPool2d = { "max_pool2d" }, AvgPool2d = { "avg_pool2d" }, LayerNorm = { "layer_norm" },
  GroupNorm = { "group_norm" }, LeakyReLU = { "leaky_relu" }, GELU = { "gelu" },
  ConvTranspose2d = { "conv_transpose2d" }, Embedding = { "embedding" }, Quantizer = { "assign" } }

-- Module methods, swept on a Linear(3, 4).
local MODULE_METHODS = {
  register_parameter = function() return "extra", X() end,
  register_buffer = function() return "extra", X() end,
  add_module = function() return "child", pivq.nn.ReLU() end,
  apply = function() return function() end end,
  load_state_dict = function() return pivq.nn.Linear(3, 4):state_dict(), true end,
  call_child = function() return "nothing", X() end,
  train = function() return true end,
  named_parameters = function() return "p", {} end,
  named_buffers = function() return "p", {} end,
}

groups.nn = function()
  local nn, out = pivq.nn, {}
  local names = {}
  for name in pairs(NN) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local ctor, input = NN[name][1], NN[name][2]
    out[#out + 1] = target(nn[name], { name }, ctor)
    local accepted = { name, "forward", unpack(NN_OPS[name] or {}) }
    out[#out + 1] = target(nn[name].forward, accepted, function() return nn[name](ctor()), input() end,
      { self = true })
  end
  for _, name in ipairs(names) do
    if rawget(nn[name], "extra_repr") then
      out[#out + 1] = target(nn[name].extra_repr, { "extra_repr", name },
        function() return nn[name](NN[name][1]()) end, { self = true })
    end
  end
  out[#out + 1] = target(nn.Sequential.add, { "add", "Sequential" },
    function() return nn.Sequential(), nn.ReLU() end, { self = true })
  out[#out + 1] = target(nn.Sequential.size, { "size", "Sequential" },
    function() return nn.Sequential(nn.ReLU()) end, { self = true })
  out[#out + 1] = target(nn.Module.forward, { "forward", "Module" }, function() return nn.Module:extend("M")(), X() end,
    { self = true })
  local mnames = {}
  for k in pairs(nn.Module) do
    if type(nn.Module[k]) == "function" and not k:match("^_") and k ~= "extend" and k ~= "forward" then
      mnames[#mnames + 1] = k
    end
  end
  table.sort(mnames)
  for _, k in ipairs(mnames) do
    local args = MODULE_METHODS[k] or function() end
    out[#out + 1] = target(nn.Module[k], { k, "Module", "Linear" },
      function() return nn.Linear(3, 4), args() end,
      { self = true, data_args = k == "load_state_dict" and { [2] = "a state dict: tensors by name" } or nil })
  end
  local Q = nn.Quantizer
  local function q() return Q(6, 3, { mode = "matching" }) end
  out[#out + 1] = target(Q.assign, { "assign", "Quantizer" }, function() return q(), randn(2, 4, 3) end,
    { self = true })
  out[#out + 1] = target(Q.match_differ, { "match", "Quantizer" }, function() return q(), randn(2, 4, 3) end,
    { self = true })
  out[#out + 1] = target(Q.init_from, { "init_from", "Quantizer", "kmeans" },
    function() return q(), randn(10, 3), { iters = 2 } end, { self = true })
  out[#out + 1] = target(Q.restart_dead, { "restart_dead", "Quantizer" },
    function() return q(), 1, { latents = randn(10, 3) } end, { self = true })
  return out
end

-- ---- quantization -----------------------------------------------------------------------------

local function codes23() return pivq.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "int64") end

groups.vq = function()
  local vq = pivq.vq
  return {
    target(vq.sq_distances, { "sq_distances" }, function() return randn(4, 3), randn(6, 3) end),
    target(vq.nearest, { "nearest", "sq_distances" }, function() return randn(4, 3), randn(6, 3) end),
    target(vq.kmeans, { "kmeans" }, function()
      return randn(10, 3), 4, { iters = 3, generator = pivq.Generator(1) }
    end),
    target(vq.ema_update_, { "ema_update" }, function()
      return randn(6, 3), pivq.ones(6), randn(6, 3), randn(4, 3), pivq.tensor({ 1, 2, 6, 2 }, "int64"), 0.9, 1e-5
    end),
    target(vq.code_counts, { "code_counts" }, function() return codes23(), 6 end),
    target(vq.distinct_per_row, { "distinct_per_row" }, function() return codes23(), 6 end),
    target(vq.code_stats, { "code_stats", "code_counts", "distinct_per_row" }, function() return codes23(), 6 end),
    target(vq.assign, { "assign" }, function() return randn(3, 5) end),
    target(vq.match, { "match" }, function() return randn(2, 3, 4), randn(5, 4) end),
    target(vq.match_differ, { "match" }, function() return randn(2, 3, 4), randn(5, 4) end),
    target(vq.ema_stats, { "ema_stats" }, function() return randn(4, 3), pivq.tensor({ 1, 2, 6, 2 }, "int64"), 6 end),
    target(vq.ema_apply_, { "ema_apply" }, function()
      return randn(6, 3), pivq.ones(6), randn(6, 3), pivq.ones(6), randn(6, 3), 0.9, 1e-5
    end),
    target(vq.count_stats, { "count_stats" }, function() return pivq.tensor({ 3, 0, 1, 2 }, "int64") end),
  }
end

-- ---- files: data, image, io -----------------------------------------------------------------

local FASHION = "/usr/share/datasets/fashion-mnist"

-- Write the files the valid calls read into the current (scratch) folder.
function M.prepare()
  os.execute("mkdir -p folder images")
  local f = assert(io.open("notdata.txt", "w"))
  f:write("not an image, not a checkpoint\n")
  f:close()
  for i = 1, 3 do pivq.image.save(string.format("images/%d.png", i), pivq.rand(3, 10, 12)) end
  f = assert(io.open("attributes.txt", "w"))
  f:write("3\nSmiling Young\n1.png 1 -1\n2.png -1 1\n3.png 1 1\n")
  f:close()
  pivq.save("ckpt.safetensors", { a = randn(2, 3), b = pivq.ones(4, "int64") }, { note = "x" })
end

local function png_bytes()
  local f = assert(io.open("images/1.png", "rb"))
  local bytes = f:read("*a")
  f:close()
  return bytes
end

local function dataset()
  return { images = pivq.rand(6, 1, 4, 4), labels = pivq.tensor({ 1, 2, 3, 1, 2, 3 }, "int64") }
end

groups.files = function()
  local data, image, io_ = pivq.data, pivq.image, pivq.files
  local out = {
    target(data.idx, { "idx" }, function() return FASHION .. "/t10k-labels-idx1-ubyte.gz" end),
    target(data.fashion_mnist, { "fashion_mnist", "idx" }, function() return { split = "test", path = FASHION } end),
    target(data.read_attributes, { "read_attributes" }, function() return "attributes.txt" end),
    target(data.image_folder, { "image_folder" }, function()
      return "images", { size = 8, channels = 3, cache = false, attributes = "attributes.txt", workers = 1 }
    end),
    target(data.loader, { "loader" }, { data_args = { "the dataset's tensors" } }, function()
      return dataset(), { batch = 2, shuffle = true, seed = 1, drop_last = true, workers = 1, prefetch = 2,
        augment = { hflip = true } }
    end),
    target(image.load, { "load" }, function() return "images/1.png" end),
    target(image.decode, { "decode" }, function() return png_bytes(), "1.png" end),
    target(image.save, { "save" }, function() return "out.jpg", pivq.rand(3, 4, 5), { quality = 90 } end),
    target(image.to_float, { "to_float" }, function() return pivq.ones(1, 2, 2, "uint8") end),
    target(image.composite, { "composite" }, function() return pivq.rand(4, 3, 3), { 0.5, 0.25, 1 } end),
    target(image.background, { "background" }, function() return { 0.5, 0.25, 1 } end),
    target(image.max_pixels, { "max_pixels" }, function() return 2 ^ 26 end),
    target(image.resize, { "resize" }, function() return pivq.rand(3, 8, 8), 4, 6, "bilinear" end),
    target(image.center_crop, { "center_crop" }, function() return pivq.rand(3, 8, 8), 4, 6 end),
    target(image.grid, { "grid" }, function()
      return pivq.rand(3, 1, 4, 4), { nrow = 2, padding = 1, scale = 2, pad_value = 0.5 }
    end),
    target(image.list, { "list" }, function() return "images" end),
    target(io_.save, { "save" }, { data_args = { [2] = "tensors by name", [3] = "the file's metadata" } },
      function() return "out.safetensors", { a = X() }, { note = "x", n = 3 } end),
    target(io_.load, { "load" }, function() return "ckpt.safetensors" end),
    target(io_.write_text, { "write_text" }, function() return "out.txt", "some text" end),
    target(io_.read_text, { "read_text" }, function() return "/proc/loadavg" end),
    target(io_.remove_stale, { "remove_stale" }, function() return "ckpt.safetensors" end),
    target(io_.mkdir_p, { "mkdir_p" }, function() return "made/a/b" end),
    target(io_.parent, { "parent" }, function() return "a/b.txt" end),
    target(io_.realpath, { "realpath" }, function() return "images" end),
    target(io_.write_or_fail, { "write_or_fail", "write_file" }, function() return "sweep", "out2.txt", "text" end),
    target(io_.lock, { "lock" }, function() return "run.lock" end),
    target(io_.run, { "run" }, function() return { "true" }, 4096 end),
  }
  -- the loader's methods
  local l = data.loader(dataset(), { batch = 2 })
  local L = getmetatable(l).__index
  for _, name in ipairs({ "num_batches", "iter", "close" }) do
    out[#out + 1] = target(L[name], { name, "loader" }, function()
      return data.loader(dataset(), { batch = 2 }), name == "iter" and 1 or nil
    end, { self = true })
  end
  l:close()
  return out
end

-- ---- evaluation: eval, probe, capacity --------------------------------------------------------

groups.eval = function()
  local eval, probe, capacity = pivq.eval, pivq.probe, pivq.capacity
  local out = {
    target(eval.knn_radii, { "knn_radii" }, function() return randn(6, 3), 2 end),
    target(eval.ball_counts, { "ball_counts" }, function() return randn(6, 3), pivq.ones(6), randn(4, 3), true end),
    target(eval.prdc, { "prdc" }, function() return randn(8, 3), randn(7, 3), { k = 2, improved = false } end),
    target(eval.nearest, { "nearest" }, function() return randn(6, 3), randn(4, 3) end),
    target(eval.percentile, { "percentile" }, function() return randn(6), 5 end),
    target(eval.memorisation, { "memorisation", "nearest" }, function()
      return randn(8, 3), randn(5, 3), randn(4, 3), { percentile = 5 }
    end),
    target(pivq.charts.histogram, { "charts.histogram" }, function()
      return { { name = "A", values = randn(6) }, { name = "B", values = { 1, 2, 3 } } },
        { title = "T", bins = 4, threshold = 0.5, xlabel = "X" }
    end),
    target(pivq.charts.save, { "charts.save", "save" }, function() return "chart.png", pivq.rand(3, 4, 4) end),
    target(eval.mse, { "mse" }, function() return pivq.rand(2, 1, 8, 8), pivq.rand(2, 1, 8, 8) end),
    target(eval.psnr, { "psnr" }, function()
      return pivq.rand(2, 1, 8, 8), pivq.rand(2, 1, 8, 8), { data_range = 1 }
    end),
    target(eval.ssim, { "ssim" }, function()
      return pivq.rand(2, 1, 16, 16), pivq.rand(2, 1, 16, 16), { data_range = 1, per_image = true }
    end),
    target(probe.bag_of_codes, { "bag_of_codes" }, function() return codes23(), 6, { binary = true } end),
    target(probe.lbfgs, { "lbfgs" }, function()
      local function f(x) -- sum of squares, on Lua arrays
        local v, g = 0, {}
        for i = 1, #x do v, g[i] = v + x[i] * x[i], 2 * x[i] end
        return v, g
      end
      return f, { 1, -2, 0.5 }, { max_iter = 5, memory = 3, tol = 1e-6 }
    end),
    target(probe.fit, { "fit", "probe" }, function()
      return randn(6, 3), pivq.tensor({ 1, 2, 1, 2, 1, 2 }, "int64"), { classes = 2, max_iter = 5 }
    end),
    target(probe.cross_validate, { "cross_validate" }, function()
      return randn(6, 3), pivq.tensor({ 1, 2, 1, 2, 1, 2 }, "int64"), { folds = 2, max_iter = 5 }
    end),
    target(probe.attributes, { "attributes" }, function()
      return randn(6, 3), pivq.tensor({ { 1, -1 }, { -1, 1 }, { 1, 1 }, { -1, -1 }, { 1, -1 }, { -1, 1 } }, "int64"),
        { "A", "B" }, { folds = 2, max_iter = 5 }
    end),
    target(capacity.bits, { "bits" }, function() return { K = 16, L = 4, scheme = "distinct", K_img = 3.5 } end),
    target(capacity.log2_binomial, { "log2_binomial" }, function() return 10, 3 end),
    target(capacity.row, { "row" }, function() return 16, 4, 3.5 end),
    target(capacity.table, { "capacity.table" }, function() return 16, 2, 8, 3.5 end),
    target(capacity.format, { "capacity.format" }, function() return capacity.table(16, 2, 8), 16, 3.5 end),
    target(capacity.figure, { "capacity.figure" }, function() return 16, 2, 8, 3.5 end),
    target(capacity.measured_figure, { "capacity.measured_figure" }, { data_args = { [2] = "the measured series "
      .. "(data)", [3] = "notes: lines of text" } }, function()
      return 16, { { name = "m", L = { 2, 4 }, bits = { 3, 5 } } }, { "note" }
    end),
  }
  local d, edit = pivq.diagnostics, pivq.edit
  for _, t in ipairs({
    target(d.entropy_bits, { "entropy_bits", "count_stats" }, { data_args = { [1] = "counts (data)" } },
      function() return pivq.tensor({ 3, 0, 1 }, "int64") end),
    target(d.quantile, { "quantile" }, { data_args = { [1] = "a sorted list of numbers (data)" } },
      function() return { 1, 2, 3 }, 0.5 end),
    target(d.jaccard, { "jaccard" }, function() return codes23(), { images = 2, bins = 4 } end),
    target(d.format_histogram, { "format_histogram" }, { data_args = { [1] = "a histogram (data)" } },
      function() return { edges = { 0, 0.5, 1 }, counts = { 1, 2 } }, 10 end),
    target(edit.attribute_column, { "attribute", "edit" }, { data_args = { [1] = "a dataset (data)" } }, function()
      return { attributes = pivq.tensor({ { 1, -1 }, { -1, 1 } }, "int64"), attribute_names = { "A", "B" } }, "A"
    end),
    target(edit.code_weights, { "code_weights", "bag_of_codes", "fit" }, function()
      return codes23(), pivq.tensor({ 1, -1 }, "int64"), 6, { l2 = 1e-3, max_iter = 5 }
    end),
    target(edit.apply, { "edit.apply" }, { data_args = { [1] = "an image's codes (data)", [2] = "weights (data)" } },
      function() return { 1, 2, 3 }, { 0.5, -2, 0, 3, -1, 1 }, 1, { positional = false } end),
    target(edit.random_exchange, { "random_exchange", "randperm", "randint" },
      { data_args = { [1] = "an image's codes (data)" } },
      function() return { 1, 2, 3 }, 1, 8, pivq.Generator(1), { positional = false } end),
  }) do
    out[#out + 1] = t
  end
  return out
end

-- ---- codes: CodeSet, interpolation and sampling registries ------------------------------------

local function set(list) return pivq.CodeSet(list or { 1, 2, 3 }, { K = 8 }) end

local CODESET_ARGS = {
  count = function() return 2 end, contains = function() return 2 end, add = function() return { 5 } end,
  remove = function() return { 2 } end, replace = function() return 2, 7 end,
  union = function() return set({ 3, 4, 5 }) end, intersection = function() return set({ 3, 4, 5 }) end,
  diff = function() return set({ 3, 4, 5 }) end, equals = function() return set({ 3, 4, 5 }) end,
}

-- A stand-in model for sample.draw: decodes codes to images of the right batch size.
local fake_model = { decode = function(_, codes) return pivq.zeros(codes:size(1), 1, 2, 2) end }

-- sampling options go to the strategy, which reads its own keys (as interp.path's do)
local STRATEGY_OPTS = "a strategy's options: each strategy (a user's file too) reads its own keys"

local function bank() return { codes = pivq.tensor({ { 1, 2, 3 }, { 2, 3, 4 }, { 5, 6, 7 } }, "int64"), K = 8 } end

groups.codes = function()
  local CodeSet, interp, sample = pivq.CodeSet, pivq.interp, pivq.sample
  local out = {
    target(CodeSet.new, { "CodeSet" }, function() return { 1, 2, 3 }, { K = 8, multiset = false } end),
    target(CodeSet.from_rows, { "from_rows", "CodeSet" }, function() return codes23(), { K = 8 } end),
    target(CodeSet.to_rows, { "to_rows" }, function() return { set(), set({ 4, 5, 6 }) } end),
    target(interp.register, { "register" }, function() return "mine", function(A) return { A } end, "doc" end),
    target(interp.list, { "list" }, function() end),
    target(interp.get, { "get", "interp" }, function() return "random" end),
    target(interp.load_file, { "load_file", "interp" }, function() return "notdata.txt" end),
    target(interp.plan_steps, { "plan_steps" }, function() return 5, 2 end),
    target(interp.path_from_swaps, { "path_from_swaps" }, function()
      return set(), { { remove = 1, add = 7 }, { remove = 2, add = 8 } }, 2
    end),
    target(interp.path, { "path", "interp" }, { data_args = { [4] = "a strategy's options: each strategy (a user's "
      .. "file too) reads its own keys" } }, function() return "random", set(), set({ 3, 4, 5 }), { steps = 2 } end),
    target(sample.register, { "register" }, function() return "mine", function() end, "doc" end),
    target(sample.list, { "list" }, function() end),
    target(sample.load_file, { "load_file", "sample" }, function() return "notdata.txt" end),
    target(sample.codes, { "codes", "sample" }, { data_args = { [2] = "a code bank (data)", [4] = STRATEGY_OPTS } },
      function() return "pair", bank(), 2, { seed = 1 } end),
    target(sample.draw, { "draw", "sample" }, { data_args = { "a model stand-in", [3] = "a code bank (data)",
      [5] = STRATEGY_OPTS } }, function() return fake_model, "pair", bank(), 2, { seed = 1 } end),
    target(pivq.provenance.attribute, { "attribute" }, function() return { 1, 2, 5 }, { { 1, 2, 3 }, { 5, 6 } } end),
    target(pivq.provenance.check, { "check", "sample" }, { data_args = { [2] = "a strategy's provenance (data)",
      [3] = "codes (data)", [4] = "a code bank (data)", [5] = STRATEGY_OPTS } }, function()
      return "pair", { { parents = { 1, 3 }, taken = { { 1, 2 }, { 5 } } } }, pivq.tensor({ { 1, 2, 5 } }, "int64"),
        bank(), { seed = 1 }
    end),
  }
  local function prov() return select(2, sample.codes("pair", bank(), 2, { seed = 1 })) end
  local P = pivq.provenance.Provenance
  for _, name in ipairs({ "parents", "taken", "describe" }) do
    out[#out + 1] = target(P[name], { name, "provenance" }, function() return prov(), 1 end, { self = true })
  end
  out[#out + 1] = target(P.parentless, { "parentless" }, function() return prov() end, { self = true })
  out[#out + 1] = target(P.json_table, { "json_table" }, function()
    return prov(), { files = { "a.png", "b.png", "c.png" } }
  end, { self = true })
  for name, f in pairs(CodeSet) do
    if type(f) == "function" and not name:match("^_") and name ~= "new" and name ~= "from_rows" and name ~= "to_rows"
      and name ~= "is_codeset" then
      local args = CODESET_ARGS[name] or function() end
      out[#out + 1] = target(f, { name, "CodeSet" }, function() return set(), args() end, { self = true })
    end
  end
  out[#out + 1] = target(CodeSet.is_codeset, { "is_codeset" }, set)
  table.sort(out, function(a, b) return a.names[1] < b.names[1] end)
  return out
end

-- ---- optim -------------------------------------------------------------------------------------

local function params()
  local w = randn(3, 2):requires_grad(true)
  local b = randn(2):requires_grad(true)
  w:sum():backward()
  return { w, b }
end

-- One instance of each optimizer-side class, for its methods.
local function instances()
  local optim = pivq.optim
  local opt = optim.AdamW(params(), { lr = 0.01 })
  return { Optimizer = opt, Schedule = optim.schedules.cosine(opt, 10, { warmup = 2 }),
    EMA = optim.EMA(params(), 0.9) }
end
M.optim_instances = instances

local METHOD_OF = {
  load_state_dict = function(obj) return obj:state_dict() end,
  copy_to = function() return params() end,
}

groups.optim = function()
  local optim = pivq.optim
  local out = {
    target(optim.SGD, { "SGD" }, function()
      return params(), { lr = 0.1, momentum = 0.9, dampening = 0, weight_decay = 0.01, nesterov = true }
    end),
    target(optim.Adam, { "Adam" }, function() return params(), { lr = 0.1, betas = { 0.9, 0.99 }, eps = 1e-8 } end),
    target(optim.AdamW, { "AdamW" }, function() return params(), { lr = 0.1, weight_decay = 0.1 } end),
    target(optim.clip_grad_norm, { "clip_grad_norm" }, function() return params(), 1, 2 end),
    target(optim.grad_norm, { "grad_norm" }, function() return params(), 2 end),
    target(optim.EMA, { "EMA" }, function() return params(), 0.9 end),
    target(optim.schedules.linear_warmup, { "linear_warmup" }, function() return optim.SGD(params()), 3 end),
    target(optim.schedules.cosine, { "cosine" }, function()
      return optim.SGD(params()), 10, { warmup = 2, min_lr = 0.001 }
    end),
    target(optim.schedules.step, { "step" }, function() return optim.SGD(params()), 3, 0.5 end),
  }
  for cls, obj in pairs(instances()) do
    local methods = {}
    for name, f in pairs(getmetatable(obj).__index) do
      if type(f) == "function" then methods[name] = f end
    end
    if type(rawget(obj, "step")) == "function" then methods.step = obj.step end -- each optimizer's own
    for name, f in pairs(methods) do
      out[#out + 1] = target(f, { name, cls }, function()
        local o = instances()[cls]
        if METHOD_OF[name] then return o, METHOD_OF[name](o) end
        return o
      end, { self = true })
    end
  end
  table.sort(out, function(a, b) return a.names[1] .. (a.names[2] or "") < b.names[1] .. (b.names[2] or "") end)
  return out
end

-- ---- the model ------------------------------------------------------------------------------

local TINY = { image_size = 8, channels = 1, patch = 4, width = 8, enc_depth = 1, dec_depth = 1, heads = 2,
  mlp_ratio = 1, L = 3, K = 6, c = 2, mode = "matching", readout = "learned", seed = 1 }
local function tiny() return pivq.PIVQ(TINY) end
local function images() return pivq.rand(2, 1, 8, 8) end

-- Model methods that read the code bank of the whole training set (minutes per call): left to
-- the model specs (attribute_weights and edit read the training split's attributes and codes:
-- spec/lua/edit_spec.lua and the recipes spec).
M.BANK_METHODS = { bank = true, code_usage = true, images_with_code = true, attribute_weights = true, edit = true }

local MODEL_ARGS = {
  patchify = images, latents = images, forward = images, encode = images,
  head = function() return randn(2, 4, 8) end,
  unpatchify = function() return randn(2, 4, 16) end,
  decode_vectors = function() return randn(2, 3, 2) end,
  decode = function() return codes23():narrow(2, 1, 3) end,
  code_sets = function() return pivq.tensor({ { 1, 2, 3 } }, "int64") end,
  save = function() return "model.safetensors", { extra = X() }, { note = "x" } end,
}

-- interp.model_options(model, xa, xb, opts), on the tiny model
local function model_options_args() return tiny(), pivq.rand(1, 1, 8, 8), pivq.rand(1, 1, 8, 8), { steps = 2 } end

groups.model = function()
  local PIVQ = pivq.PIVQ
  local out = {
    target(PIVQ, { "PIVQ" }, function()
      local cfg = {}
      for k, v in pairs(TINY) do cfg[k] = v end
      return cfg
    end),
    target(pivq.interp.model_options, { "model_options" }, { data_args = { [4] = "a strategy's options: each "
      .. "strategy reads its own keys" } }, model_options_args),
    target(PIVQ.load, { "load" }, function()
      tiny():save("model.safetensors")
      return "model.safetensors"
    end),
  }
  for name, f in pairs(PIVQ) do
    if type(f) == "function" and not name:match("^_") and name ~= "load" and not M.BANK_METHODS[name]
      and rawget(pivq.nn.Module, name) ~= f then
      local args = MODEL_ARGS[name] or function() end
      -- code_sets makes CodeSets: a set with a repeated code is refused in CodeSet's words
      local names = { name, "PIVQ", name == "code_sets" and "CodeSet" or nil }
      out[#out + 1] = target(f, names, function() return tiny(), args() end, { self = true, data_args = ({
        save = { [3] = "tensors by name", [4] = "the file's metadata" } })[name] })
    end
  end
  table.sort(out, function(a, b) return a.names[1] < b.names[1] end)
  return out
end

-- ---- the harness's own check ------------------------------------------------------------------

-- A function that crashes the process on nil and raises an anonymous error on true: the spec
-- checks that the sweep reports both, naming the calls.
M.canary_groups = {
  canary = function()
    local ffi = require "ffi"
    return { target(function(x)
      if x == nil then ffi.cast("int *", 1)[0] = 1 end -- a segfault
      if x == true then error({}) end
      return x
    end, { "canary" }, function() return 1 end) }
  end,
}

-- ---- coverage --------------------------------------------------------------------------------

-- Public functions the sweep leaves out, each with the reason.
M.EXEMPT = {
  ["pivq.from_pointer"] = "takes a raw pointer and trusts its extent, as pivq.C does",
  ["pivq.display"] = "prints (rich output); takes any value",
  ["pivq.show"] = "prints; takes any value",
  ["pivq.Tensor.data_ptr"] = "returns a raw pointer (for FFI kernels)",
  ["pivq.bank"] = "builds a code bank by encoding a whole training set (minutes per call)",
  ["pivq.features"] = "builds feature extractors from checkpoints on disk (the eval recipe's specs)",
  ["pivq.train"] = "runs whole trainings (pivq.train.Trainer is checked by the recipes specs)",
  ["pivq.plot"] = "writes SVG plots from tables of numbers",
  ["pivq.clock"] = "timing helpers without arguments",
  ["pivq.memory"] = "readers of the process's memory figures, without arguments",
  ["pivq.nn.Module.extend"] = "makes a class, not a call on data",
  -- arrived on main after the sweep was written: to be added to the catalogue
  ["pivq.dist"] = "data-parallel training: needs an MPI launch (not swept yet)",
  ["pivq.nn.Quantizer.shared_update"] = "data-parallel only: needs an MPI launch (not swept yet)",
  ["pivq.tiny"] = "trains and caches a small model (seconds per call; not swept yet)",
  ["pivq.report"] = "evaluates a whole model (test set, samples, features; not swept yet)",
  ["pivq.diagnostics.evaluate"] = "pivq.report's part: a model's held-out codes and latents (the recipes spec)",
  ["pivq.edit.weights_for"] = "reads the model's training split and code bank (spec/lua/edit_spec.lua, recipes spec)",
  ["pivq.edit.edit"] = "m:edit: reads the training split and code bank for an attribute (spec/lua/edit_spec.lua)",
  ["pivq.edit.verdict"] = "needs a trained attribute classifier checkpoint (the recipes spec's pivq edit)",
  ["pivq.edit.measure"] = "edits and decodes held-out images with a model and a classifier (pivq edit --measure)",
}

-- Every function reachable from the namespace's tables (dotted names), minus the exempt ones
-- and those some group calls.
function M.uncovered()
  local called = {}
  for _, build in pairs(groups) do
    for _, t in ipairs(build()) do called[t.fn] = true end
  end
  for _, obj in pairs(M.optim_instances()) do
    for _, f in pairs(obj) do if type(f) == "function" then called[f] = called[f] or "instance" end end
  end
  local missing, seen = {}, {}
  local function walk(tbl, path)
    if seen[tbl] or M.EXEMPT[path] then return end
    seen[tbl] = true
    local keys = {}
    for k in pairs(tbl) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local v, name = tbl[k], path .. "." .. tostring(k)
      if type(v) == "table" and type(k) == "string" then
        walk(v, name)
      elseif type(v) == "function" and not tostring(k):match("^_") and not M.EXEMPT[name] and not called[v]
        and not (path == "pivq.PIVQ" and M.BANK_METHODS[k]) then
        missing[#missing + 1] = name
      end
    end
  end
  for k, v in pairs(pivq) do
    if type(v) == "table" and k ~= "C" and k ~= "Tensor" then walk(v, "pivq." .. k) end
  end
  walk(pivq.Tensor, "pivq.Tensor")
  for k, v in pairs(pivq) do
    if type(v) == "function" and not called[v] and not M.EXEMPT["pivq." .. k] then
      missing[#missing + 1] = "pivq." .. k
    end
  end
  table.sort(missing)
  return missing
end

return M
