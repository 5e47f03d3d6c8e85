-- pivq.core.tensor: the Tensor type — an FFI metatype over `struct pivq_tensor` — its
-- constructors and its methods. The compiled ops (elementwise, reductions) come from
-- pivq.core.ops, argument checks from pivq.core.argcheck, 1-based/0-based conversions from
-- pivq.core.index, ownership and the collection policy from pivq.core.gc.
--
-- Errors: C functions return NULL or -1 and leave a message naming the C function; fail(msg)
-- raises it at the user's line. Checks that need 1-based wording (dims, positions) are done
-- before calling C.
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local printing = require "pivq.core.printing"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"
local indexing = require "pivq.core.index"
local ops = require "pivq.core.ops"

-- Autograd is in C: each differentiable op records its graph node, and each in-place op
-- refuses a tensor in a graph (csrc/pivq.h, "Autograd").
local C = state.C
local registry = debug.getregistry()

local M = {}

-- ---- dtypes ---------------------------------------------------------------------------------

local DTYPES = { float32 = 0, int32 = 1, int64 = 2, uint8 = 3 }
local DTYPE_ALIASES = { float = "float32", int = "int32", long = "int64", byte = "uint8" }
local DTYPE_NAMES = { [0] = "float32", "int32", "int64", "uint8" }
local CTYPES = { [0] = ffi.typeof("float*"), ffi.typeof("int32_t*"), ffi.typeof("int64_t*"),
  ffi.typeof("uint8_t*") }
M.dtypes = { "float32", "int32", "int64", "uint8" }

local int64_array = ffi.typeof("int64_t[?]")
local tensor_ptr_array = ffi.typeof("pivq_tensor*[?]")

local is_tensor = argcheck.is_tensor
M.is_tensor = is_tensor
local fail = argcheck.fail
local wrap, check_rc, last_error = gc.wrap, gc.check_rc, gc.last_error
local check_self = argcheck.self_tensor
local dim0, pos0, index0 = indexing.dim0, indexing.pos0, indexing.index0
local shape_string = argcheck.shape_string

local function dtype_code(fname, name)
  local code = DTYPES[DTYPE_ALIASES[name] or name]
  if not code then
    fail(string.format("%s: unknown dtype %s (expected float32, int32, int64 or uint8)",
      fname, tostring(name)))
  end
  return code
end
M.dtype_code = dtype_code

-- ---- argument conversion ---------------------------------------------------------------------

local function is_int(x) return type(x) == "number" and x % 1 == 0 and x == x end

-- Largest element count any dtype may have (libpivq caps a storage at 64 GiB).
local MAX_NUMEL = 2 ^ 36

-- sizes from (n1, n2, ...) or ({n1, n2, ...}); a trailing string or {dtype=} option is split off.
local function parse_sizes(fname, ...)
  local args = { ... }
  local n = select("#", ...)
  local dtype
  if n > 0 and type(args[n]) == "string" then
    dtype = args[n]
    n = n - 1
  elseif n > 0 and type(args[n]) == "table" and args[n].dtype then
    dtype = args[n].dtype
    n = n - 1
  end
  local sizes = args
  if n == 1 and type(args[1]) == "table" then
    sizes = args[1]
    n = sizes.n or #sizes -- {n = 3, 2, nil, 4} keeps a hole visible
  end
  if n > 8 then fail(string.format("%s: at most 8 dims, got %d", fname, n)) end
  local arr = int64_array(math.max(n, 1))
  local numel = 1
  for i = 1, n do
    local s = sizes[i]
    -- below 2^53 a Lua number is an exact integer; beyond, its conversion to int64 is not
    if not is_int(s) or s < 0 then
      fail(string.format("%s: size %d must be a nonnegative integer, got %s", fname, i,
        tostring(s)))
    end
    numel = numel * s
  end
  -- the C library refuses these too, but its message would name pivq_empty, not fname; and
  -- a size beyond 2^53 would not even convert to int64 exactly
  if numel > MAX_NUMEL then
    local shown = {}
    for i = 1, n do shown[i] = string.format(sizes[i] < 2 ^ 53 and "%.0f" or "%g", sizes[i]) end
    fail(string.format("%s: shape %s is too large", fname, table.concat(shown, "x")))
  end
  for i = 1, n do arr[i - 1] = sizes[i] end
  return n, arr, dtype
end
M.parse_sizes = parse_sizes

-- A new uninitialised tensor for constructor `fname` (so errors name it): sizes and an
-- optional trailing dtype as for pivq.empty.
function M.new_empty(fname, default_dtype, ...)
  local n, arr, dtype = parse_sizes(fname, ...)
  return wrap(C.pivq_empty(dtype_code(fname, dtype or default_dtype), n, arr))
end

-- ---- construction --------------------------------------------------------------------------

function M.empty(...)
  local n, arr, dtype = parse_sizes("empty", ...)
  return wrap(C.pivq_empty(dtype_code("empty", dtype or "float32"), n, arr))
end

function M.zeros(...)
  local n, arr, dtype = parse_sizes("zeros", ...)
  return wrap(C.pivq_zeros(dtype_code("zeros", dtype or "float32"), n, arr))
end

function M.full(sizes, value, dtype)
  if type(value) ~= "number" then
    fail("full: value must be a number, got " .. type(value))
  end
  local n, arr = parse_sizes("full", sizes)
  local t = wrap(C.pivq_empty(dtype_code("full", dtype or "float32"), n, arr))
  check_rc(C.pivq_fill_(t.c, value))
  return t
end

function M.ones(...)
  local n, arr, dtype = parse_sizes("ones", ...)
  local t = wrap(C.pivq_empty(dtype_code("ones", dtype or "float32"), n, arr))
  check_rc(C.pivq_fill_(t.c, 1))
  return t
end

function M.arange(a, b, step, dtype)
  if type(step) == "string" then step, dtype = nil, step end
  if type(b) == "string" then b, dtype = nil, b end
  if b == nil then a, b = 1, a end -- arange(n): 1..n, 1-based like the rest of the API
  step = step or 1
  if type(a) ~= "number" or type(b) ~= "number" or type(step) ~= "number" then
    fail("arange: bounds and step must be numbers")
  end
  -- inclusive upper bound, as Torch7's range: arange(1, 5) is 1 2 3 4 5
  local stop = b + (step > 0 and 1 or -1) * math.abs(step) * 0.5
  local dt = dtype or ((a % 1 == 0 and b % 1 == 0 and step % 1 == 0) and "int64" or "float32")
  return wrap(C.pivq_arange(a, stop, step, dtype_code("arange", dt)))
end

-- A tensor from a nested table of numbers, for function `fname` (so errors name it).
function M.from_table(fname, data, dtype)
  local code = dtype_code(fname, dtype or "float32")
  local sizes, node = {}, data
  while type(node) == "table" do
    sizes[#sizes + 1] = #node
    node = node[1]
  end
  local flat = {}
  local function walk(x, d, path)
    if d > #sizes then
      if type(x) ~= "number" then
        fail(string.format("%s: element %s is %s, not a number", fname, path, type(x)))
      end
      flat[#flat + 1] = x
      return
    end
    if type(x) ~= "table" or #x ~= sizes[d] then
      fail(string.format("%s: ragged nested table at %s (expected %d entries)", fname, path,
        sizes[d]))
    end
    for i = 1, sizes[d] do walk(x[i], d + 1, path .. "[" .. i .. "]") end
  end
  walk(data, 1, "")
  local n, arr = parse_sizes(fname, sizes)
  local t = wrap(C.pivq_empty(code, n, arr))
  local p = ffi.cast(CTYPES[code], C.pivq_data(t.c))
  for i = 1, #flat do p[i - 1] = flat[i] end
  return t
end

-- pivq.tensor{{1,2},{3,4}} or pivq.tensor(3.5) or pivq.tensor({...}, "int64")
function M.tensor(data, dtype)
  if is_tensor(data) then return wrap(C.pivq_clone(data.c)) end
  if type(data) == "number" then
    local t = wrap(C.pivq_empty(dtype_code("tensor", dtype or "float32"), 0, nil))
    check_rc(C.pivq_fill_(t.c, data))
    return t
  end
  if type(data) ~= "table" then
    fail("tensor: expected a number or a (nested) table of numbers, got " .. type(data))
  end
  return M.from_table("tensor", data, dtype)
end

-- From a C array / FFI pointer of `count` values (used by readers and tests).
function M.from_pointer(ptr, sizes, dtype)
  local n, arr = parse_sizes("from_pointer", sizes)
  return wrap(C.pivq_from_data(dtype_code("from_pointer", dtype or "float32"), n, arr, ptr))
end

local function tensor_list(fname, list)
  if type(list) ~= "table" or #list == 0 then
    fail(fname .. ": expected a non-empty table of tensors")
  end
  local arr = tensor_ptr_array(#list)
  for i = 1, #list do -- not ipairs: a hole (nil) must be reported, not end the list
    local t = list[i]
    if not is_tensor(t) then
      fail(string.format("%s: entry %d is %s, not a tensor", fname, i, type(t)))
    end
    arr[i - 1] = t.c
  end
  return arr, #list
end

function M.cat(list, dim)
  local arr, n = tensor_list("cat", list)
  return wrap(C.pivq_cat(arr, n, dim0("cat", list[1], dim or 1)))
end

function M.stack(list, dim)
  local arr, n = tensor_list("stack", list)
  return wrap(C.pivq_stack(arr, n, dim0("stack", list[1], dim or 1, 1)))
end

-- A number beside a tensor takes the tensor's dtype, unless it needs float32 (0.5, inf, nan).
local function scalar_like(x, other)
  local dtype = is_tensor(other) and DTYPE_NAMES[other.c.scalar_type] or "float32"
  if x % 1 ~= 0 or x ~= x then dtype = "float32" end
  return M.tensor(x, dtype)
end

function M.where(cond, a, b)
  if type(a) == "number" then a = scalar_like(a, b) end
  if type(b) == "number" then b = scalar_like(b, a) end
  check_self("where", cond)
  check_self("where", a)
  check_self("where", b)
  return wrap(C.pivq_where(cond.c, a.c, b.c))
end

-- ---- methods ---------------------------------------------------------------------------------

local T = {} -- methods, looked up by the metatype's __index
M.methods = T

function T.dim(t) return t.c.ndim end
function T.nDimension(t) return t.c.ndim end
function T.numel(t) return tonumber(C.pivq_numel(t.c)) end
function T.nElement(t) return tonumber(C.pivq_numel(t.c)) end
function T.dtype(t) return DTYPE_NAMES[t.c.scalar_type] end
function T.is_contiguous(t) return C.pivq_is_contiguous(t.c) == 1 end

-- t:size() -> {sizes}; t:size(d) -> size of dim d
function T.size(t, d)
  if d == nil then
    local s = {}
    for i = 0, t.c.ndim - 1 do s[i + 1] = tonumber(t.c.shape[i]) end
    return s
  end
  return tonumber(t.c.shape[dim0("size", t, d)])
end

function T.stride(t, d)
  if d == nil then
    local s = {}
    for i = 0, t.c.ndim - 1 do s[i + 1] = tonumber(t.c.strides[i]) end
    return s
  end
  return tonumber(t.c.strides[dim0("stride", t, d)])
end

-- Typed pointer to the first element (for kernels written in Lua and for tests).
function T.data_ptr(t) return ffi.cast(CTYPES[t.c.scalar_type], C.pivq_data(t.c)) end

-- Element at 1-based indices (as many as dims), through the strides; as the raw FFI value
-- (an int64 stays cdata) or as a Lua number.
local function element_raw(t, ...)
  local p = ffi.cast(CTYPES[t.c.scalar_type], C.pivq_data(t.c))
  local off = 0
  for k = 1, select("#", ...) do
    off = off + pos0(select(k, ...)) * t.c.strides[k - 1]
  end
  return p[off]
end
local function element(t, ...) return tonumber(element_raw(t, ...)) end

function T.item(t)
  if C.pivq_numel(t.c) ~= 1 then
    fail(string.format("item: tensor of shape %s has %d elements, need exactly 1",
      shape_string(t), tonumber(C.pivq_numel(t.c))))
  end
  local p = ffi.cast(CTYPES[t.c.scalar_type], C.pivq_data(t.c))
  -- a single element may sit at any of the (size-1) dims' strides: offset 0 is it
  return tonumber(p[0])
end

function T.totable(t)
  if t.c.ndim == 0 then return element(t) end
  local idx = {}
  local function build(d)
    local out = {}
    for i = 1, tonumber(t.c.shape[d - 1]) do
      idx[d] = i
      if d == t.c.ndim then
        out[i] = element(t, unpack(idx, 1, d))
      else
        out[i] = build(d + 1)
      end
    end
    return out
  end
  return build(1)
end

-- get/set one element by 1-based indices: t:get(i, j), t:set(i, j, value)
function T.get(t, ...)
  local n = select("#", ...)
  if n ~= t.c.ndim then
    fail(string.format("get: need %d indices for a tensor of shape %s, got %d", t.c.ndim,
      shape_string(t), n))
  end
  for k = 1, n do
    local i = select(k, ...)
    if not is_int(i) or i < 1 or i > t.c.shape[k - 1] then
      fail(string.format("get: index %s out of range for dim %d of size %d", tostring(i), k,
        tonumber(t.c.shape[k - 1])))
    end
  end
  return element(t, ...)
end

function T.set(t, ...)
  local n = select("#", ...) - 1
  local value = select(n + 1, ...)
  if n ~= t.c.ndim or type(value) ~= "number" then
    fail(string.format("set: need %d indices and a number for a tensor of shape %s", t.c.ndim,
      shape_string(t)))
  end
  local p = ffi.cast(CTYPES[t.c.scalar_type], C.pivq_data(t.c))
  local off = 0
  for k = 1, n do
    local i = select(k, ...)
    if not is_int(i) or i < 1 or i > t.c.shape[k - 1] then
      fail(string.format("set: index %s out of range for dim %d of size %d", tostring(i), k,
        tonumber(t.c.shape[k - 1])))
    end
    off = off + pos0(i) * t.c.strides[k - 1]
  end
  p[off] = value
  return t
end

function T.clone(t) return wrap(C.pivq_clone(t.c)) end
function T.contiguous(t) return wrap(C.pivq_contiguous(t.c)) end

function T.to(t, dtype)
  local code = dtype_code("to", dtype)
  if code == t.c.scalar_type then return t end
  return wrap(C.pivq_to_dtype(t.c, code))
end
function T.float(t) return T.to(t, "float32") end
function T.double(t) return T.to(t, "float32") end -- no float64 dtype: float32 is the float type
function T.long(t) return T.to(t, "int64") end
function T.int(t) return T.to(t, "int32") end
function T.byte(t) return T.to(t, "uint8") end

-- views ----------------------------------------------------------------------------------------

function T.narrow(t, d, start, length)
  local d0 = dim0("narrow", t, d)
  local n = tonumber(t.c.shape[d0])
  if not is_int(start) or not is_int(length) or start < 1 or length < 0 or start - 1 + length > n then
    fail(string.format("narrow: start %s length %s out of range for dim %d of size %d",
      tostring(start), tostring(length), d, n))
  end
  return wrap(C.pivq_narrow(t.c, d0, pos0(start), length))
end

function T.select(t, d, index)
  local d0 = dim0("select", t, d)
  local n = tonumber(t.c.shape[d0])
  if not is_int(index) or index < 1 or index > n then
    fail(string.format("select: index %s out of range for dim %d of size %d", tostring(index),
      d, n))
  end
  return wrap(C.pivq_select(t.c, d0, pos0(index)))
end

function T.transpose(t, d1, d2)
  return wrap(C.pivq_transpose(t.c, dim0("transpose", t, d1), dim0("transpose", t, d2)))
end

function T.t(t)
  if t.c.ndim ~= 2 then
    fail(string.format("t: expected a 2-D tensor, got shape %s", shape_string(t)))
  end
  return wrap(C.pivq_transpose(t.c, 0, 1))
end

function T.permute(t, ...)
  local dims = select("#", ...) == 1 and type((...)) == "table" and (...) or { ... }
  if #dims ~= t.c.ndim then
    fail(string.format("permute: need %d dims for a tensor of shape %s, got %d", t.c.ndim,
      shape_string(t), #dims))
  end
  local perm = ffi.new("int[?]", math.max(#dims, 1))
  for i, d in ipairs(dims) do perm[i - 1] = dim0("permute", t, d) end
  return wrap(C.pivq_permute(t.c, perm))
end

-- view/reshape take sizes (one may be -1), as numbers or a table
local function shape_args(fname, ...)
  local args, n = { ... }, select("#", ...)
  if n == 1 and type(args[1]) == "table" then args, n = args[1], #args[1] end
  if n > 8 then fail(fname .. ": at most 8 dims") end
  local arr = int64_array(math.max(n, 1))
  for i = 1, n do
    if not is_int(args[i]) or args[i] < -1 then
      fail(string.format("%s: size %d must be an integer >= -1, got %s", fname, i,
        tostring(args[i])))
    end
    arr[i - 1] = args[i]
  end
  return n, arr
end

function T.view(t, ...)
  local n, arr = shape_args("view", ...)
  return wrap(C.pivq_view(t.c, n, arr))
end

function T.reshape(t, ...)
  local n, arr = shape_args("reshape", ...)
  return wrap(C.pivq_reshape(t.c, n, arr))
end

function T.view_as(t, other)
  check_self("view_as", other)
  return T.view(t, T.size(other))
end

function T.expand(t, ...)
  local n, arr = shape_args("expand", ...)
  return wrap(C.pivq_expand(t.c, n, arr))
end

function T.expand_as(t, other)
  check_self("expand_as", other)
  return T.expand(t, T.size(other))
end

function T.squeeze(t, d)
  return wrap(C.pivq_squeeze(t.c, d == nil and -1 or dim0("squeeze", t, d)))
end

function T.unsqueeze(t, d)
  return wrap(C.pivq_unsqueeze(t.c, dim0("unsqueeze", t, d, 1)))
end

function T.flatten(t) return T.reshape(t, -1) end

-- in-place fills and copies ------------------------------------------------------------------

function T.fill(t, value)
  if type(value) ~= "number" then fail("fill: value must be a number, got " .. type(value)) end
  check_rc(C.pivq_fill_(t.c, value))
  return t
end
T.fill_ = T.fill
function T.zero(t) return T.fill(t, 0) end
T.zero_ = T.zero

function T.copy(t, src)
  if type(src) == "number" then return T.fill(t, src) end
  check_self("copy", src)
  check_rc(C.pivq_copy_(t.c, src.c))
  return t
end
T.copy_ = T.copy

-- elementwise and reductions: compiled per op (pivq.core.ops) --------------------------------

ops.define(T, C)

function T.clamp(t, lo, hi)
  lo = lo == nil and -math.huge or lo
  hi = hi == nil and math.huge or hi
  if type(lo) ~= "number" or type(hi) ~= "number" then
    fail("clamp: bounds must be numbers or nil")
  end
  return wrap(C.pivq_clamp(t.c, lo, hi))
end

-- products -----------------------------------------------------------------------------------

-- a:matmul(b) allocates the result; a:matmul(b, out) writes a 2-D product into a given
-- row-major float32 `out` (no allocation: the form for hot loops) and returns out.
function T.matmul(a, b, out)
  check_self("matmul", b)
  if out == nil then return wrap(C.pivq_matmul(a.c, b.c)) end
  check_self("matmul", out)
  if a.c.ndim ~= 2 or b.c.ndim ~= 2 then
    fail(string.format("matmul: out= takes 2-D operands, got shapes %s and %s", shape_string(a),
      shape_string(b)))
  end
  if C.pivq_gemm_(out.c, a.c, b.c, 0, 0, 1, 0) ~= 0 then
    fail((last_error():gsub("^gemm:", "matmul:")))
  end
  return out
end
T.mm = T.matmul
T.bmm = T.matmul

-- indexing -----------------------------------------------------------------------------------

function T.index_select(t, d, idx)
  return wrap(C.pivq_index_select(t.c, dim0("index_select", t, d), index0("index_select", idx).c))
end
T.index = T.index_select

function T.gather(t, d, idx)
  return wrap(C.pivq_gather(t.c, dim0("gather", t, d), index0("gather", idx).c))
end

function T.scatter_add(t, d, idx, src)
  check_self("scatter_add", src)
  return wrap(C.pivq_scatter_add(t.c, dim0("scatter_add", t, d), index0("scatter_add", idx).c, src.c))
end

function T.masked_fill(t, mask, value)
  check_self("masked_fill", mask)
  if type(value) ~= "number" then fail("masked_fill: value must be a number") end
  return wrap(C.pivq_masked_fill(t.c, mask.c, value))
end

-- ---- the metatype -------------------------------------------------------------------------

local function index_number(t, i)
  if t.c.ndim == 0 then fail("cannot index a 0-dim tensor; use t:item()") end
  local n = tonumber(t.c.shape[0])
  if not is_int(i) or i < 1 or i > n then
    fail(string.format("index %s out of range for dim 1 of size %d", tostring(i), n))
  end
  local s = wrap(C.pivq_select(t.c, 0, pos0(i)))
  if s.c.ndim == 0 then return s:item() end
  return s
end

-- Methods defined in other files (autograd, F) are added through add_methods, which checks
-- their self argument the same way (pivq.core.ops.self_checked).
local checked = {} -- one wrapper per function, so aliases (mm = matmul) stay equal
function M.add_methods(methods)
  for name, fn in pairs(methods) do
    if not ops.BINARY[name] then
      checked[fn] = checked[fn] or ops.self_checked(name, fn)
      T[name] = checked[fn]
    end
  end
end
M.add_methods(T)

local mt = {
  __index = function(t, k)
    local m = T[k]
    if m ~= nil then return m end
    if type(k) == "number" then return index_number(t, k) end
    fail(string.format("pivq.Tensor has no method or field '%s'", tostring(k)))
  end,
  __newindex = function(t, k, v)
    if type(k) ~= "number" then
      fail(string.format("cannot set field '%s' of a pivq.Tensor", tostring(k)))
    end
    local s = index_number(t, k)
    if type(v) ~= "number" and not is_tensor(v) then
      fail(string.format("index assignment: expected a number or a tensor, got %s", type(v)))
    end
    if type(s) == "number" then
      local p = ffi.cast(CTYPES[t.c.scalar_type], C.pivq_data(t.c))
      p[pos0(k) * t.c.strides[0]] = v
    else
      T.copy(s, v)
    end
  end,
  __len = function(t) return t.c.ndim == 0 and 0 or tonumber(t.c.shape[0]) end,
  __add = T.add,
  __sub = T.sub,
  __mul = T.mul,
  __div = T.div,
  __pow = T.pow,
  __unm = T.neg,
  __tostring = function(t)
    -- int64 elements stay cdata so that values beyond 2^53 print exactly
    local get = t.c.scalar_type == DTYPES.int64 and function(...) return element_raw(t, ...) end
      or function(...) return element(t, ...) end
    local function stats() -- for a summarised tensor's footer
      local f = t.c.scalar_type == DTYPES.float32 and t or T.to(t, "float32")
      local function value(x) return is_tensor(x) and T.item(x) or x end
      return value(T.min(t)), value(T.max(t)), value(T.mean(f))
    end
    return printing.format(get, T.size(t), DTYPE_NAMES[t.c.scalar_type], stats)
  end,
}

-- The metatype may be set once per Lua state; later loads of this file reuse the first
-- metatable (its __index closes over the first T, which stays valid).
if not registry["pivq.tensor.metatype"] then
  ffi.metatype("pivq_handle", mt)
  registry["pivq.tensor.metatype"] = T
else
  -- a reload: route new method tables through the original __index
  local original = registry["pivq.tensor.metatype"]
  for k, v in pairs(T) do original[k] = v end
  T = original
  M.methods = original
end

return M
