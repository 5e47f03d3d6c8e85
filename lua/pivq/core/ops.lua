-- pivq.core.ops: the tensor ops compiled from templates (elementwise, comparisons, reductions)
-- and the self-argument check every tensor method gets. pivq.core.tensor calls define(T, C)
-- with its method table and its C namespace (the autograd-routed one).
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"
local index = require "pivq.core.index"

local M = {}

-- elementwise --------------------------------------------------------------------------------
--
-- The hot ops are compiled from the templates below, one chunk per op, with the checks and
-- the wrapping written inline. The reason is LuaJIT's blacklisting, which is per function
-- prototype: in a loop that allocates tensors, finalizers run during GC steps and force the
-- loop's trace out to the interpreter, where the small functions it calls turn hot, fail to
-- trace ("return to lower frame", "hook called during recording") and get blacklisted; every
-- trace through a blacklisted prototype then aborts. With one shared closure body (or a
-- shared `wrap`) one op's bad luck would slow every op down, in-place ones included; with a
-- prototype per op it stays with that op.

-- Runs the slow half of the heap accounting (a full collection); shared, but off the hot path.
local function account_slow() gc.account() end

-- Compile template `src` for one op; `...` are the op's constants. The chunk name keeps the
-- package directory, so fail() still reports errors at the user's line.
local function per_op(E, name, src, ...)
  local chunk = assert(loadstring(src, argcheck.PACKAGE_DIR .. "core/ops.lua<" .. name .. ">"))
  return chunk(E, ...)
end

-- The first line of every allocating op: collect first when the C heap is past the policy's
-- threshold, so that the blocks it frees (kept in libpivq's block cache) serve this very op's
-- result instead of fresh pages.
local ACCOUNT = [[
  if tonumber(C.pivq_heap_bytes()) > E.gc.threshold then E.account_slow() end
]]
-- The lines every allocating op ends with: raise the C error or take ownership.
local NEW = [[
  if ptr == nil then E.fail(E.last_error()) end
  return ffi.gc(handle_t(ptr), release)
]]
local PRELUDE = [[
local E, op, name = ...
local C, ffi, handle_t, release = E.C, E.ffi, E.handle_t, E.release
local istype = ffi.istype
]]

local UNARY = { "neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
  "relu", "sign", "floor", "ceil", "round" }
local UNARY_SRC = PRELUDE .. [[
return function(t)
]] .. ACCOUNT .. [[
  local ptr = C.pivq_unary(t.c, op)
]] .. NEW .. "end"

local BINARY = { add = 0, sub = 1, mul = 2, div = 3, maximum = 4, minimum = 5, pow = 6 }

-- a op b with a tensor and a tensor or a number on either side (also the metamethods)
local BINARY_SRC = PRELUDE .. [[
return function(a, b)
]] .. ACCOUNT .. [[
  local ptr
  if type(b) == "number" then
    if not istype(handle_t, a) then E.fail(name .. ": expected a tensor operand") end
    ptr = C.pivq_binary_scalar(a.c, b, op, 0)
  elseif type(a) == "number" then
    if not istype(handle_t, b) then E.fail(name .. ": expected a tensor operand") end
    ptr = C.pivq_binary_scalar(b.c, a, op, 1)
  else
    if not istype(handle_t, a) or not istype(handle_t, b) then
      E.fail(string.format("%s: operands must be tensors or numbers, got %s and %s", name,
        type(a), type(b)))
    end
    ptr = C.pivq_binary(a.c, b.c, op)
  end
]] .. NEW .. "end"

-- a = a op b in place; b a tensor or a number
local BINARY_INPLACE_SRC = PRELUDE .. [[
return function(a, b)
  local rc
  if type(b) == "number" then
    rc = C.pivq_binary_scalar_(a.c, b, op)
  else
    if not istype(handle_t, b) then
      E.fail(string.format("%s_: expected a tensor, got %s", name, type(b)))
    end
    rc = C.pivq_binary_(a.c, b.c, op)
  end
  if rc ~= 0 then E.fail(E.last_error()) end
  return a
end]]


local COMPARE = { eq = 0, ne = 1, lt = 2, le = 3, gt = 4, ge = 5 }
local COMPARE_SRC = PRELUDE .. [[
return function(a, b)
]] .. ACCOUNT .. [[
  local ptr
  if type(b) == "number" then
    ptr = C.pivq_compare_scalar(a.c, b, op)
  else
    if not istype(handle_t, b) then
      E.fail(string.format("%s: expected a tensor, got %s", name, type(b)))
    end
    ptr = C.pivq_compare(a.c, b.c, op)
  end
]] .. NEW .. "end"

-- reductions ---------------------------------------------------------------------------------

local R = { sum = 0, mean = 1, var = 2, max = 3, min = 4, argmax = 5, argmin = 6, norm = 7,
  prod = 8 }

-- One compiled reduction per op (see per_op): fn(t, dim or nil, keepdim, param). The 1-based
-- dim converts inline; `to1` (argmax, argmin) turns 0-based indices 1-based in place.
local REDUCE_SRC = PRELUDE .. [[
local to1 = select(4, ...)
return function(t, d, keepdim, param)
  local d0 = -1
  if d ~= nil then
]] .. index.DIM0_INLINE .. [[
  end
  if tonumber(C.pivq_heap_bytes()) > E.gc.threshold then E.account_slow() end
  local ptr = C.pivq_reduce(t.c, op, d0, keepdim and 1 or 0, param or 0)
]] .. index.TO1_INLINE .. [[
]] .. NEW .. "end"

-- Every method checks its self argument, so pivq.sum(3), or a method called with `.` for `:`,
-- raises "sum: expected a tensor, got number" instead of an "attempt to index" from inside.
-- Binary ops accept a number first and check both operands themselves. The check tail-calls
-- the method, which keeps the stack (and so error locations) as it was; each method gets its
-- own compiled check (see per_op: a shared one would share its blacklisting).
local CHECK_SRC = [[
local E, f, name = ...
local istype, handle_t = E.ffi.istype, E.handle_t
return function(t, ...)
  if not istype(handle_t, t) then
    E.fail(string.format("%s: expected a tensor, got %s", name, type(t)))
  end
  return f(t, ...)
end]]

M.BINARY = BINARY -- their own operand checks; no self check

local E -- the templates' environment (define sets it)

-- f under a compiled check of its self argument, for method `name`.
function M.self_checked(name, f) return per_op(E, name .. ":self", CHECK_SRC, f, name) end

-- Add the compiled ops to the method table T; C is the namespace they call.
function M.define(T, C)
  E = { C = C, ffi = ffi, handle_t = state.handle_t, release = gc.release, gc = gc.policy,
    account_slow = account_slow, fail = argcheck.fail, last_error = gc.last_error }
  local fail = argcheck.fail
  for code, name in ipairs(UNARY) do T[name] = per_op(E, name, UNARY_SRC, code - 1, name) end

  for name, op in pairs(BINARY) do
    T[name] = per_op(E, name, BINARY_SRC, op, name)
    T[name .. "_"] = per_op(E, name .. "_", BINARY_INPLACE_SRC, op, name)
  end

  for name, op in pairs(COMPARE) do T[name] = per_op(E, name, COMPARE_SRC, op, name) end

  local reduce = {}
  for name, op in pairs(R) do
    reduce[name] = per_op(E, name, REDUCE_SRC, op, name, name == "argmax" or name == "argmin")
  end
  reduce.std = per_op(E, "std", REDUCE_SRC, R.var, "std") -- the variance, under std's name for errors

  T.sum, T.mean, T.prod = reduce.sum, reduce.mean, reduce.prod

  -- var(dim, {unbiased=true, keepdim=false}) or var(dim, keepdim); unbiased by default (PyTorch)
  local function variance(kernel, t, d, opts)
    local keepdim, unbiased = false, true
    if type(opts) == "table" then
      keepdim = opts.keepdim or false
      if opts.unbiased == false then unbiased = false end
    elseif opts ~= nil then
      keepdim = opts
    end
    return kernel(t, d, keepdim, unbiased and 1 or 0)
  end
  function T.var(t, d, opts) return variance(reduce.var, t, d, opts) end
  function T.std(t, d, opts) return variance(reduce.std, t, d, opts):sqrt() end

  -- norm(p = 2, dim, keepdim); p may be math.huge
  function T.norm(t, p, d, keepdim)
    if p ~= nil and type(p) ~= "number" then fail("norm: p must be a number, got " .. type(p)) end
    return reduce.norm(t, d, keepdim, p or 2)
  end

  -- max()/min(): the extremum over everything; max(dim): values and 1-based indices
  function T.max(t, d, keepdim)
    if d == nil then return reduce.max(t):item() end
    return reduce.max(t, d, keepdim), reduce.argmax(t, d, keepdim)
  end
  function T.min(t, d, keepdim)
    if d == nil then return reduce.min(t):item() end
    return reduce.min(t, d, keepdim), reduce.argmin(t, d, keepdim)
  end

  -- argmax()/argmin(): 1-based; over everything it is the 1-based flat (row-major) index
  T.argmax, T.argmin = reduce.argmax, reduce.argmin
end

return M
