-- pivq.tensor: the Tensor type — an FFI metatype over `struct pivq_tensor` — and its
-- constructors. This file is the one place where the 1-based Lua API meets the 0-based C API:
-- dims, positions and index tensors are converted here and nowhere else.
--
-- Errors: C functions return NULL or -1 and leave a message naming the C function; fail(msg)
-- raises it at the user's line. Checks that need 1-based wording (dims, positions) are done
-- here before calling C.
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local printing = require "pivq.core.printing"

-- Autograd: the C functions are looked up through pivq.ag_routes, which is state.C with each
-- differentiable op replaced by its autograd-aware twin (same arguments; records a graph node
-- when an input requires grad) and each in-place op guarded against tensors in a graph.
local C = require("pivq.ag_routes").of(state)
local registry = debug.getregistry()

local M = {}

-- ---- dtypes ---------------------------------------------------------------------------------

local DTYPES = { float32 = 0, int32 = 1, int64 = 2, uint8 = 3 }
local DTYPE_ALIASES = { float = "float32", int = "int32", long = "int64", byte = "uint8" }
local DTYPE_NAMES = { [0] = "float32", "int32", "int64", "uint8" }
local CTYPES = { [0] = ffi.typeof("float*"), ffi.typeof("int32_t*"), ffi.typeof("int64_t*"),
  ffi.typeof("uint8_t*") }
M.dtypes = { "float32", "int32", "int64", "uint8" }

-- A Lua tensor is a one-field struct holding the C pointer, not the pointer itself: LuaJIT
-- gives pointers built-in arithmetic (p + 1, p - q) that would shadow __add and __sub.
if not registry["pivq.tensor.handle"] then
  ffi.cdef("typedef struct pivq_handle { pivq_tensor *c; } pivq_handle;")
  registry["pivq.tensor.handle"] = true
end
local handle_t = ffi.typeof("pivq_handle")
local int64_array = ffi.typeof("int64_t[?]")
local tensor_ptr_array = ffi.typeof("pivq_tensor*[?]")

local function is_tensor(x) return ffi.istype(handle_t, x) end
M.is_tensor = is_tensor

-- Raise msg at the first stack frame outside the pivq package: the user's line, however deep
-- inside the package the check sits and whatever tail calls happened on the way (a fixed
-- error level is off by one after every `return wrap(...)`, which is a tail call).
-- PACKAGE_DIR is lua/pivq/ (this file is in its core/ folder), so every sub-package counts.
local PACKAGE_DIR = debug.getinfo(1, "S").source:match("^(@.*[/\\])[^/\\]+[/\\][^/\\]+$") or "@lua/pivq/"
local function fail(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info or info.source:sub(1, #PACKAGE_DIR) ~= PACKAGE_DIR then break end
    level = level + 1
  end
  error(msg, level)
end
M.fail = fail

local function dtype_code(fname, name)
  local code = DTYPES[DTYPE_ALIASES[name] or name]
  if not code then
    fail(string.format("%s: unknown dtype %s (expected float32, int32, int64 or uint8)",
      fname, tostring(name)))
  end
  return code
end
M.dtype_code = dtype_code

-- ---- errors and lifetime -----------------------------------------------------------------

local function last_error() return ffi.string(C.pivq_last_error()) end

-- Live C heap accounting: Lua's GC cannot see C allocations (a tensor is a 16-byte handle on
-- the Lua heap), so libpivq counts live tensor bytes and, when they pass `threshold`, we run a
-- full collection; then threshold = what survived + the allowance, max(min, factor * Lua heap).
-- The allowance -- C garbage let accumulate between collections -- scales with the Lua heap,
-- because a full collection costs time in proportion to what it traverses (the Lua heap), not
-- to the bytes the dead tensors hold. (TH's rule, threshold = 2 * what survived, tied the
-- garbage to the live bytes instead: a training loop over a 220 MB in-memory dataset kept up to
-- 300 MB of dead activations, and that allowance rose with whatever was live at the moment of
-- a collection, so RSS grew 15% over a run; see recipes/bench/rss.sh.)
local gc = registry["pivq.gc"] or { threshold = 64 * 2 ^ 20, min = 64 * 2 ^ 20, factor = 4, step = 0.25,
  rest = 0 }
registry["pivq.gc"] = gc
M.gc_policy = gc

local function allowance() return math.max(gc.min, gc.factor * collectgarbage("count") * 1024) end

local function collect()
  collectgarbage("collect")
  local live = tonumber(C.pivq_heap_bytes())
  gc.threshold = live + allowance()
  gc.rest = math.min(gc.rest, live)
  return live
end

local function account()
  if tonumber(C.pivq_heap_bytes()) > gc.threshold then collect() end
end

-- The end of a backward pass is the end of a training step's work: the activations the graph
-- held have just become garbage, and little else has. A collection there, once the C heap has
-- grown by `step` of the allowance since the last such collection (`rest`: what lives between
-- steps, lowered by any collection that finds less), puts a training loop's peak at rest + one
-- step's allocations, instead of wherever in a step the threshold happened to be crossed (which
-- varies from step to step, and RSS keeps the highest). Small graphs (a REPL's) stay under a
-- quarter of the allowance and are left to the threshold.
function M.after_backward()
  if tonumber(C.pivq_heap_bytes()) - gc.rest > gc.step * allowance() then
    local peak = tonumber(C.pivq_heap_peak_reset()) -- the most the heap held since the last time
    gc.rest = collect()
    -- Room for one more step like this one (+2%), so that a regular loop collects here only,
    -- once a step, even when a step allocates more than the allowance: a threshold crossed
    -- mid-step would collect at a varying point and fragment the heap (17 MB more RSS here).
    -- No more room than that: work between steps without a backward (a codebook
    -- initialisation's forward passes) would fill it and raise the high-water mark.
    gc.threshold = math.max(gc.threshold, gc.rest + 1.02 * (peak - gc.rest))
  end
end

-- A full collection between two training steps, at the end of a one-off phase (a codebook
-- initialisation, a checkpoint, a reconstruction grid): the phase's garbage is freed before
-- the next step allocates, instead of living through that step beside its activations (which
-- raised the step's high-water mark by the phase's allocations: 16 MB at a checkpoint). The
-- threshold keeps the room after_backward made for a whole step, so that the next step is
-- not collected mid-way. Returns the live C bytes.
function M.collect_between_steps()
  local threshold = gc.threshold
  local live = collect()
  gc.threshold = math.max(gc.threshold, threshold)
  return live
end

-- The finalizer is libpivq's release itself, called with the handle by value: a struct of one
-- pointer is passed exactly like that pointer (SysV x86-64 and AArch64 calling conventions),
-- and a C finalizer saves the Lua call per collected tensor (a quarter of a tiny op's cost).
local release = ffi.cast("void (*)(pivq_handle)", C.pivq_tensor_release)

-- Take ownership of a new C reference, or raise the C error at the user's line.
local function wrap(ptr)
  if ptr == nil then fail(last_error()) end
  account()
  return ffi.gc(handle_t(ptr), release)
end
M.wrap = wrap

local function check_rc(rc)
  if rc ~= 0 then fail(last_error()) end
end
M.check_rc = check_rc

local function check_self(fname, t)
  if not is_tensor(t) then
    fail(string.format("%s: expected a tensor, got %s", fname, type(t)))
  end
end
M.check_self = check_self

-- ---- argument checks shared by the package (errors name fname, at the user's line) ----------

-- An options table: nil gives {}; anything but a plain table (a tensor too) raises.
function M.options(fname, opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    fail(string.format("%s: options must be a table, got %s", fname, type(opts)))
  end
  return opts
end

-- A number (an integer with integer = true), or default when nil (and default given).
function M.check_number(fname, name, v, default, integer)
  if v == nil and default ~= nil then return default end
  if type(v) ~= "number" or (integer and (v % 1 ~= 0 or v ~= v or math.abs(v) >= 2 ^ 53)) then
    fail(string.format("%s: %s must be %s, got %s", fname, name, integer and "an integer" or "a number",
      type(v) == "number" and tostring(v) or type(v)))
  end
  return v
end

function M.check_tensor(fname, name, t)
  if not is_tensor(t) then
    fail(string.format("%s: %s must be a tensor, got %s", fname, name, type(t)))
  end
  return t
end

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

-- 1-based dim (negative counts from the end) -> 0-based; `extra` allows ndim+1 (unsqueeze).
local function dim0(fname, t, d, extra)
  local nd = t.c.ndim + (extra or 0)
  if not is_int(d) then
    fail(string.format("%s: dim must be an integer, got %s", fname, tostring(d)))
  end
  local r = d > 0 and d - 1 or nd + d
  if d == 0 or r < 0 or r >= nd then
    fail(string.format("%s: dim %d out of range for a %d-dim tensor (use 1..%d or -1..-%d)",
      fname, d, t.c.ndim, nd, nd))
  end
  return r
end
M.dim0 = dim0

local function shape_string(t)
  if t.c.ndim == 0 then return "scalar" end
  local s = {}
  for i = 0, t.c.ndim - 1 do s[#s + 1] = tostring(tonumber(t.c.shape[i])) end
  return table.concat(s, "x")
end
M.shape_string = shape_string

-- A 0-based int64 copy of a 1-based Lua index tensor (or table of indices).
local function index0(fname, idx)
  if type(idx) == "table" then idx = M.from_table(fname, idx, "int64") end
  if not is_tensor(idx) then
    fail(string.format("%s: index must be a tensor or a table of integers, got %s", fname,
      type(idx)))
  end
  if idx.c.scalar_type ~= DTYPES.int64 and idx.c.scalar_type ~= DTYPES.int32 then
    fail(string.format("%s: index must be int64 or int32, got %s", fname,
      DTYPE_NAMES[idx.c.scalar_type]))
  end
  return wrap(C.pivq_binary_scalar(idx.c, 1, C.PIVQ_SUB, 0))
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
    off = off + (select(k, ...) - 1) * t.c.strides[k - 1]
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
    off = off + (i - 1) * t.c.strides[k - 1]
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
  return wrap(C.pivq_narrow(t.c, d0, start - 1, length))
end

function T.select(t, d, index)
  local d0 = dim0("select", t, d)
  local n = tonumber(t.c.shape[d0])
  if not is_int(index) or index < 1 or index > n then
    fail(string.format("select: index %s out of range for dim %d of size %d", tostring(index),
      d, n))
  end
  return wrap(C.pivq_select(t.c, d0, index - 1))
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
local function account_slow() account() end

local ENV = { C = C, ffi = ffi, handle_t = handle_t, release = release, gc = gc,
  account_slow = account_slow, fail = fail, last_error = last_error }

-- Compile template `src` for one op; `...` are the op's constants. The chunk name keeps the
-- package directory, so fail() still reports errors at the user's line.
local function per_op(name, src, ...)
  local chunk = assert(loadstring(src, PACKAGE_DIR .. "core/tensor.lua<" .. name .. ">"))
  return chunk(ENV, ...)
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
for code, name in ipairs(UNARY) do T[name] = per_op(name, UNARY_SRC, code - 1, name) end

function T.clamp(t, lo, hi)
  lo = lo == nil and -math.huge or lo
  hi = hi == nil and math.huge or hi
  if type(lo) ~= "number" or type(hi) ~= "number" then
    fail("clamp: bounds must be numbers or nil")
  end
  return wrap(C.pivq_clamp(t.c, lo, hi))
end

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

for name, op in pairs(BINARY) do
  T[name] = per_op(name, BINARY_SRC, op, name)
  T[name .. "_"] = per_op(name .. "_", BINARY_INPLACE_SRC, op, name)
end

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
for name, op in pairs(COMPARE) do T[name] = per_op(name, COMPARE_SRC, op, name) end

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
    local nd = t.c.ndim
    if type(d) ~= "number" or d % 1 ~= 0 or d == 0 or d > nd or d < -nd then
      E.fail(string.format("%s: dim %s out of range for a %d-dim tensor (use 1..%d or -1..-%d)",
        name, type(d) == "number" and tostring(d) or "of type " .. type(d), nd, nd, nd))
    end
    d0 = d > 0 and d - 1 or nd + d
  end
  if tonumber(C.pivq_heap_bytes()) > E.gc.threshold then E.account_slow() end
  local ptr = C.pivq_reduce(t.c, op, d0, keepdim and 1 or 0, param or 0)
  if ptr ~= nil and to1 and C.pivq_binary_scalar_(ptr, 1, 0) ~= 0 then
    C.pivq_tensor_release(ptr)
    ptr = nil
  end
]] .. NEW .. "end"
local reduce = {}
for name, op in pairs(R) do
  reduce[name] = per_op(name, REDUCE_SRC, op, name, name == "argmax" or name == "argmin")
end
reduce.std = per_op("std", REDUCE_SRC, R.var, "std") -- the variance, under std's name for errors

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
  local s = wrap(C.pivq_select(t.c, 0, i - 1))
  if s.c.ndim == 0 then return s:item() end
  return s
end

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
-- Methods defined in other files (autograd, F) are added through add_methods, which checks
-- their self argument the same way.
local checked = {} -- one wrapper per function, so aliases (mm = matmul) stay equal
function M.add_methods(methods)
  for name, f in pairs(methods) do
    if not BINARY[name] then
      checked[f] = checked[f] or per_op(name .. ":self", CHECK_SRC, f, name)
      T[name] = checked[f]
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
      p[(k - 1) * t.c.strides[0]] = v
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
    return printing.format(get, T.size(t), DTYPE_NAMES[t.c.scalar_type])
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
