-- pivq: permutation-invariant discrete representation learning of spatially aligned images.
-- This file assembles the package from its modules; it defines no globals.
local state = require "pivq.core.ffi"
local tensor = require "pivq.core.tensor"
local random = require "pivq.core.random"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"

local C = state.C
local ffi = require "ffi"
local fail = argcheck.fail

local pivq = {}

pivq.version = ffi.string(C.pivq_version())
pivq.C = C -- the raw FFI library, for extensions and tests
-- rich output (PNG images) in notebooks; text or a temporary PNG elsewhere
pivq.display = require("pivq.display").display

-- constructors and free functions
for _, name in ipairs({ "empty", "zeros", "ones", "full", "arange", "tensor", "from_pointer",
  "cat", "stack", "where", "is_tensor" }) do
  pivq[name] = tensor[name]
end
pivq.Tensor = tensor.methods
pivq.dtypes = tensor.dtypes

-- functional forms of the tensor methods: pivq.exp(t), pivq.matmul(a, b), ...
for _, name in ipairs({ "neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh",
  "sigmoid", "relu", "sign", "floor", "ceil", "round", "clamp", "add", "sub", "mul", "div",
  "maximum", "minimum", "pow", "eq", "ne", "lt", "le", "gt", "ge", "sum", "mean", "var", "std",
  "max", "min", "argmax", "argmin", "norm", "prod", "matmul", "mm", "bmm", "index_select",
  "gather", "scatter_add", "masked_fill", "transpose", "narrow", "select", "permute",
  "reshape", "view", "squeeze", "unsqueeze", "clone", "contiguous", "numel" }) do
  pivq[name] = tensor.methods[name]
end

-- random numbers
for _, name in ipairs({ "manual_seed", "get_rng_state", "set_rng_state", "Generator", "rand",
  "randn", "randint", "randperm", "multinomial", "uniform_", "normal_" }) do
  pivq[name] = random[name]
end

-- autograd (adds requires_grad, grad, backward, detach, ... to tensors)
local autograd = require "pivq.core.autograd"
for _, name in ipairs({ "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
  "graph_node_count" }) do
  pivq[name] = autograd[name]
end

-- functional neural-network ops: pivq.F.linear, pivq.F.conv2d, ...
pivq.F = require "pivq.nn.F"

-- modules
pivq.nn = require "pivq.nn"

-- optimizers, clipping, schedules, EMA
pivq.optim = require "pivq.nn.optim"

-- threads and memory
function pivq.set_num_threads(n)
  if type(n) ~= "number" or n % 1 ~= 0 then
    fail("set_num_threads: n must be an integer, got " .. tostring(n))
  end
  gc.check_rc(C.pivq_set_num_threads(n))
end
function pivq.get_num_threads() return C.pivq_get_num_threads() end
-- The OpenMP wait policy in force, as chosen when the library was loaded: "pivq: GOMP_SPINCOUNT=N"
-- (the default: short spinning, robust on a busy machine), "user: ..." (OMP_WAIT_POLICY or
-- GOMP_SPINCOUNT was set) or "libgomp default ..." (see "Threads" in lua/README.md).
function pivq.omp_wait() return state.omp_wait end

-- precision: bf16 products with fp32 accumulation (pivq.core.precision)
local precision = require "pivq.core.precision"
for _, name in ipairs({ "autocast", "set_precision", "get_precision", "bf16_available" }) do
  pivq[name] = precision[name]
end
function pivq.heap_bytes() return tonumber(C.pivq_heap_bytes()) end
pivq.gc_policy = gc.policy

-- method pieces that need no C beyond the core
pivq.capacity = require "pivq.quant.capacity"
pivq.plot = require "pivq.display.plot"
pivq.vq = require "pivq.quant.vq"
pivq.assign = pivq.vq.assign
pivq.CodeSet = require "pivq.quant.CodeSet"
pivq.interp = require "pivq.quant.interp"
pivq.sample = require "pivq.quant.sample"
pivq.provenance = require "pivq.quant.provenance"
pivq.eval = require "pivq.eval.metrics"
pivq.probe = require "pivq.eval.probe"
pivq.show = require("pivq.display.show").show

-- data and files: datasets and the loader, images, safetensors checkpoints
pivq.data = require "pivq.data.datasets"
pivq.image = require "pivq.data.image"
pivq.files = require "pivq.data.files"
pivq.save = pivq.files.save
pivq.load = pivq.files.load

pivq.clock = require "pivq.core.clock"
pivq.memory = require "pivq.core.memory" -- RSS and live tensor bytes

-- the model
pivq.PIVQ = require "pivq.models.pivq"
pivq.load_model = pivq.PIVQ.load
pivq.train = require "pivq.train"
pivq.dist = require "pivq.train.dist" -- data-parallel training over MPI
pivq.bank = require "pivq.quant.bank"
pivq.features = require "pivq.eval.features"
pivq.report = require "pivq.eval.report"
pivq.charts = require "pivq.eval.charts"
pivq.diagnostics = require "pivq.eval.diagnostics" -- set diagnostics: entropy, matching vs nearest, Jaccard
pivq.edit = require "pivq.eval.edit" -- attribute editing by exchanging codes
pivq.tiny = require "pivq.models.tiny" -- a small model trained in seconds (notebooks, examples)

return pivq
