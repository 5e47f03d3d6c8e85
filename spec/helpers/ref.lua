-- Naive reference implementations for the specs, written in plain Lua over flat row-major
-- arrays ("Lua tensors": {shape = {...}, data = {...}}). They share no code with libpivq: values
-- leave a pivq tensor through t:totable() (which reads memory through the strides in Lua) and
-- are compared here. Random inputs come from a small Lua LCG, not from pivq's generator.
local pivq = require "pivq"

local M = {}

-- ---- shapes and flat indexing -------------------------------------------------------------

function M.numel(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return n
end

local function flatten(x, out)
  if type(x) ~= "table" then
    out[#out + 1] = x
    return out
  end
  for i = 1, #x do flatten(x[i], out) end
  return out
end

-- nested table (row-major) of a flat array with the given shape
function M.nest(shape, data)
  if #shape == 0 then return data[1] end
  local pos = 0
  local function build(d)
    local t = {}
    for i = 1, shape[d] do
      if d == #shape then
        pos = pos + 1
        t[i] = data[pos]
      else
        t[i] = build(d + 1)
      end
    end
    return t
  end
  return build(1)
end

function M.from(t)
  local shape = t:size()
  return { shape = shape, data = flatten(t:totable(), {}) }
end

function M.to_tensor(lt, dtype)
  if #lt.shape == 0 then return pivq.tensor(lt.data[1], dtype) end
  if M.numel(lt.shape) == 0 then return pivq.zeros(lt.shape, dtype) end
  return pivq.tensor(M.nest(lt.shape, lt.data), dtype)
end

-- 1-based multi-index of flat position k (1-based) in shape
function M.unravel(shape, k)
  local idx = {}
  k = k - 1
  for d = #shape, 1, -1 do
    idx[d] = k % shape[d] + 1
    k = math.floor(k / shape[d])
  end
  return idx
end

function M.ravel(shape, idx)
  local k = 0
  for d = 1, #shape do k = k * shape[d] + (idx[d] - 1) end
  return k + 1
end

-- ---- random inputs ----------------------------------------------------------------------------

-- A 31-bit LCG (Park–Miller): deterministic and independent of pivq.
function M.rng(seed)
  local state = (seed or 1) % 2147483647
  if state == 0 then state = 1 end
  local r = {}
  function r.next()
    state = (state * 16807) % 2147483647
    return state / 2147483647
  end
  function r.uniform(lo, hi) return lo + (hi - lo) * r.next() end
  function r.int(lo, hi) return lo + math.floor(r.next() * (hi - lo + 1)) end
  return r
end

-- Lua tensor of the given shape with values uniform in [lo, hi) (integers if `int`)
function M.random(shape, r, lo, hi, int)
  local data = {}
  for i = 1, M.numel(shape) do
    data[i] = int and r.int(lo, hi) or r.uniform(lo, hi)
  end
  return { shape = shape, data = data }
end

-- round a double to the nearest float32 (what storing it in a float32 tensor does)
local ffi = require "ffi"
local f32 = ffi.new("float[1]")
function M.f32(x)
  f32[0] = x
  return tonumber(f32[0])
end

-- ---- elementwise with broadcasting -------------------------------------------------------------

function M.broadcast_shape(a, b)
  local n = math.max(#a, #b)
  local out = {}
  for i = 1, n do
    local sa = a[i - (n - #a)] or 1
    local sb = b[i - (n - #b)] or 1
    if sa ~= sb and sa ~= 1 and sb ~= 1 then return nil end
    out[i] = sa == 1 and sb or sa
  end
  return out
end

-- value of lt at a multi-index of a (possibly larger) broadcast shape
function M.at_broadcast(lt, idx)
  local n = #idx
  local k = 0
  for d = 1, #lt.shape do
    local i = idx[d + n - #lt.shape]
    if lt.shape[d] == 1 then i = 1 end
    k = k * lt.shape[d] + (i - 1)
  end
  return lt.data[k + 1]
end

function M.map(lt, f)
  local data = {}
  for i, v in ipairs(lt.data) do data[i] = f(v) end
  return { shape = lt.shape, data = data }
end

-- f(a_i, b_i, ...) over the broadcast shape of all arguments
function M.zip(f, ...)
  local args = { ... }
  local shape = args[1].shape
  for i = 2, #args do shape = assert(M.broadcast_shape(shape, args[i].shape)) end
  local data = {}
  for k = 1, M.numel(shape) do
    local idx = M.unravel(shape, k)
    local vals = {}
    for i = 1, #args do vals[i] = M.at_broadcast(args[i], idx) end
    data[k] = f(unpack(vals, 1, #args))
  end
  return { shape = shape, data = data }
end

-- ---- reductions ----------------------------------------------------------------------------------

-- Apply f(list of values along dim) -> value to every lane of dim (1-based); nil dim: all.
function M.reduce(lt, dim, f, keepdim)
  if dim == nil then
    local shape = {}
    if keepdim then for i = 1, #lt.shape do shape[i] = 1 end end
    return { shape = shape, data = { f(lt.data) } }
  end
  local shape = {}
  for d = 1, #lt.shape do
    if d ~= dim then shape[#shape + 1] = lt.shape[d] end
  end
  local data = {}
  for k = 1, M.numel(shape) do
    local oidx = M.unravel(shape, k)
    local lane = {}
    for r = 1, lt.shape[dim] do
      local idx = {}
      for d = 1, dim - 1 do idx[d] = oidx[d] end
      idx[dim] = r
      for d = dim + 1, #lt.shape do idx[d] = oidx[d - 1] end
      lane[r] = lt.data[M.ravel(lt.shape, idx)]
    end
    data[k] = f(lane)
  end
  if keepdim then
    shape = {}
    for d = 1, #lt.shape do shape[d] = d == dim and 1 or lt.shape[d] end
  end
  return { shape = shape, data = data }
end

M.lane = {}
function M.lane.sum(v)
  local s = 0
  for _, x in ipairs(v) do s = s + x end
  return s
end
function M.lane.prod(v)
  local s = 1
  for _, x in ipairs(v) do s = s * x end
  return s
end
function M.lane.mean(v) return M.lane.sum(v) / #v end
function M.lane.var(correction)
  return function(v)
    local m = M.lane.mean(v)
    local s = 0
    for _, x in ipairs(v) do s = s + (x - m) ^ 2 end
    return s / (#v - correction)
  end
end
function M.lane.norm(p)
  return function(v)
    if p == math.huge then
      local m = 0
      for _, x in ipairs(v) do m = math.max(m, math.abs(x)) end
      return m
    end
    local s = 0
    for _, x in ipairs(v) do s = s + math.abs(x) ^ p end
    return s ^ (1 / p)
  end
end
-- first position of the extremum (ties: the first)
function M.lane.argmax(v)
  local best = 1
  for i = 2, #v do if v[i] > v[best] then best = i end end
  return best
end
function M.lane.argmin(v)
  local best = 1
  for i = 2, #v do if v[i] < v[best] then best = i end end
  return best
end
function M.lane.max(v) return v[M.lane.argmax(v)] end
function M.lane.min(v) return v[M.lane.argmin(v)] end

-- ---- matmul --------------------------------------------------------------------------------------

-- 2-D product of flat row-major matrices a (m x k) and b (k x n)
function M.mm(a, b)
  local m, k, n = a.shape[1], a.shape[2], b.shape[2]
  assert(b.shape[1] == k)
  local data = {}
  for i = 1, m do
    for j = 1, n do
      local s = 0
      for l = 1, k do s = s + a.data[(i - 1) * k + l] * b.data[(l - 1) * n + j] end
      data[(i - 1) * n + j] = s
    end
  end
  return { shape = { m, n }, data = data }
end

-- ---- comparison ----------------------------------------------------------------------------------

-- Largest |a - b| / (atol + rtol * |b|) over two Lua tensors; errors if shapes differ.
-- NaN must match NaN, inf must match inf.
function M.assert_close(actual, expected, rtol, atol, what)
  rtol = rtol or 1e-5
  atol = atol or 1e-6
  if M.is_tensor(actual) then actual = M.from(actual) end
  if M.is_tensor(expected) then expected = M.from(expected) end
  local sa, se = table.concat(actual.shape, "x"), table.concat(expected.shape, "x")
  if sa ~= se or #actual.shape ~= #expected.shape then
    error(string.format("%sshape %s, expected %s", what and (what .. ": ") or "", sa, se), 2)
  end
  for i = 1, #expected.data do
    local a, e = actual.data[i], expected.data[i]
    local ok
    if e ~= e then
      ok = a ~= a
    elseif e == math.huge or e == -math.huge then
      ok = a == e
    else
      ok = math.abs(a - e) <= atol + rtol * math.abs(e)
    end
    if not ok then
      error(string.format("%selement %d (index %s): got %.9g, expected %.9g",
        what and (what .. ": ") or "", i, table.concat(M.unravel(expected.shape, i), ","), a, e), 2)
    end
  end
  return true
end

function M.is_tensor(x) return pivq.is_tensor(x) end

-- Expect fn to raise; returns the message. The message must match every plain substring given.
function M.raises(fn, ...)
  local ok, err = pcall(fn)
  if ok then error("expected an error, but the call succeeded", 2) end
  err = tostring(err)
  for i = 1, select("#", ...) do
    local want = select(i, ...)
    if not err:find(want, 1, true) then
      error(string.format("error message %q does not contain %q", err, want), 2)
    end
  end
  return err
end

return M
