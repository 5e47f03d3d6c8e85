-- pivq.random: seeded, reproducible random tensors (the C side is a counter-based Philox
-- generator: results do not depend on the thread count). Indices drawn here are 1-based.
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local tensor = require "pivq.core.tensor"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"
local index = require "pivq.core.index"

local C = state.C
local wrap, check_rc, fail = gc.wrap, gc.check_rc, argcheck.fail

local M = {}

-- A private generator: pivq.Generator(seed). Pass it as {generator = g} to the draws below.
local Generator = {}
Generator.__index = Generator

local check_u53 = argcheck.u53

function M.is_generator(g) return getmetatable(g) == Generator end

function M.Generator(seed)
  if seed ~= nil then check_u53("Generator", "seed", seed) end
  local g = setmetatable({ cdata = ffi.new("pivq_generator") }, Generator)
  g:manual_seed(seed or 0)
  return g
end

function Generator:manual_seed(seed)
  check_u53("manual_seed", "seed", seed)
  C.pivq_manual_seed(self.cdata, seed)
  return self
end

-- {seed=, offset=} as numbers (exact below 2^53), for checkpoints.
function Generator:get_state()
  return { seed = tonumber(self.cdata.seed), offset = tonumber(self.cdata.offset) }
end

function Generator:set_state(s)
  if type(s) ~= "table" then fail("set_rng_state: state must be a table {seed=, offset=}, got " .. type(s)) end
  argcheck.keys("set_rng_state", s, { "seed", "offset" }, "state key")
  check_u53("set_rng_state", "seed", s.seed)
  check_u53("set_rng_state", "offset", s.offset)
  self.cdata.seed = s.seed
  self.cdata.offset = s.offset
  return self
end

local default = setmetatable({ cdata = C.pivq_default_generator() }, Generator)
M.default_generator = default

function M.manual_seed(seed) default:manual_seed(seed) end
function M.get_rng_state() return default:get_state() end
function M.set_rng_state(s) default:set_state(s) end

-- Split a trailing options table {generator=, dtype=} off size arguments.
local function split_opts(...)
  local n = select("#", ...)
  local last = select(n, ...)
  -- a trailing table is the options when it follows the sizes (randn(2, 3, {}) or
  -- randn({2, 3}, {generator = g})) or names an option; a lone table is the sizes
  if n > 0 and type(last) == "table" and (n > 1 or last.generator or last.dtype) then
    return last, n - 1, ...
  end
  return {}, n, ...
end

local function gen_of(opts) return opts.generator and opts.generator.cdata or nil end

-- A draw's options: generator (and dtype where the draw makes its tensor); anything else raises.
local DRAW_KEYS, MAKE_KEYS = { "generator" }, { "generator", "dtype" }
local function draw_opts(fname, opts, valid) return argcheck.options(fname, opts, valid or DRAW_KEYS) end

local function sized(fname, opts, n, ...)
  local sizes = { n = n, ... } -- n excludes a trailing options table
  if n == 1 and type(sizes[1]) == "table" then sizes = sizes[1] end
  return tensor.new_empty(fname, "float32", sizes, opts.dtype or "float32")
end

-- pivq.rand(2, 3), pivq.rand({2, 3}, {generator = g}): uniform in [0, 1)
function M.rand(...)
  local opts, n = split_opts(...)
  draw_opts("rand", opts, MAKE_KEYS)
  local t = sized("rand", opts, n, ...)
  check_rc(C.pivq_uniform_(t.c, 0, 1, gen_of(opts)))
  return t
end

-- pivq.randn(...): standard normal
function M.randn(...)
  local opts, n = split_opts(...)
  draw_opts("randn", opts, MAKE_KEYS)
  local t = sized("randn", opts, n, ...)
  check_rc(C.pivq_normal_(t.c, 0, 1, gen_of(opts)))
  return t
end

-- pivq.randint(lo, hi, sizes [, opts]): integers uniform in [lo, hi), int64 by default
function M.randint(lo, hi, sizes, opts)
  opts = draw_opts("randint", opts, MAKE_KEYS)
  if type(lo) ~= "number" or type(hi) ~= "number" or lo % 1 ~= 0 or hi % 1 ~= 0
    or math.abs(lo) >= 2 ^ 53 or math.abs(hi) >= 2 ^ 53 then
    fail(string.format("randint: lo and hi must be integers below 2^53, got %s and %s",
      tostring(lo), tostring(hi)))
  end
  local t = tensor.new_empty("randint", "int64", sizes, opts.dtype or "int64")
  check_rc(C.pivq_randint_(t.c, lo, hi, gen_of(opts)))
  return t
end

-- In-place draws on an existing float tensor.
function M.uniform_(t, lo, hi, opts)
  argcheck.self_tensor("uniform_", t)
  check_rc(C.pivq_uniform_(t.c, lo or 0, hi or 1, gen_of(draw_opts("uniform_", opts))))
  return t
end

function M.normal_(t, mean, std, opts)
  argcheck.self_tensor("normal_", t)
  check_rc(C.pivq_normal_(t.c, mean or 0, std or 1, gen_of(draw_opts("normal_", opts))))
  return t
end

-- The most elements a tensor may have (as tensor.parse_sizes): beyond it the C library's
-- refusal would name pivq_empty rather than the function called.
local MAX_DRAWS = 2 ^ 36

-- pivq.randperm(n): a random permutation of 1..n (int64)
function M.randperm(n, opts)
  if type(n) ~= "number" or n % 1 ~= 0 or n < 0 or n > MAX_DRAWS then
    fail("randperm: n must be a nonnegative integer up to 2^36, got " .. tostring(n))
  end
  return index.to1_(wrap(C.pivq_randperm(n, gen_of(draw_opts("randperm", opts)))))
end

-- pivq.multinomial(probs, n [, replacement [, opts]]): 1-based category draws per row
function M.multinomial(probs, n, replacement, opts)
  if not tensor.is_tensor(probs) then fail("multinomial: probs must be a tensor") end
  if type(n) ~= "number" or n % 1 ~= 0 or math.abs(n) > MAX_DRAWS then
    fail("multinomial: n must be an integer in [0, 2^36], got " .. tostring(n))
  end
  return index.to1_(wrap(C.pivq_multinomial(probs.c, n, replacement and 1 or 0,
    gen_of(draw_opts("multinomial", opts)))))
end

return M
