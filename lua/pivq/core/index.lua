-- pivq.core.index: the one place where the 1-based Lua API meets the 0-based C API. Dims,
-- index tensors, codes and drawn indices are converted here and nowhere else.
--
--   dim0(fname, t, d [, extra])     1-based dim (negative counts from the end) -> 0-based;
--                                   extra = 1 allows ndim + 1 (unsqueeze, stack)
--   DIM0_INLINE                     the same conversion as Lua source, for the compiled ops
--                                   (pivq.core.ops): reads t, d, name; sets d0
--   TO1_INLINE                      to1_ as Lua source, for the compiled reductions
--   pos0(i)                         1-based position -> 0-based offset
--   index0(fname, idx)              0-based int64 copy of 1-based indices (a tensor or a table)
--   codes0(fname, codes, K)         0-based copy of 1-based codes, checked to lie in 1..K
--   to1_(t)                         a fresh tensor of 0-based indices made 1-based, in place
local state = require "pivq.core.ffi"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"

local C = state.C
local fail = argcheck.fail

local M = {}

local function is_int(x) return type(x) == "number" and x % 1 == 0 and x == x end

function M.dim0(fname, t, d, extra)
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

-- Inline in each compiled reduction (a shared function would share its JIT blacklisting).
M.DIM0_INLINE = [[
    local nd = t.c.ndim
    if type(d) ~= "number" or d % 1 ~= 0 or d == 0 or d > nd or d < -nd then
      E.fail(string.format("%s: dim %s out of range for a %d-dim tensor (use 1..%d or -1..-%d)",
        name, type(d) == "number" and tostring(d) or "of type " .. type(d), nd, nd, nd))
    end
    d0 = d > 0 and d - 1 or nd + d
]]

-- Inline in each compiled reduction: when `to1` (argmax, argmin), the fresh result `ptr` of
-- 0-based indices becomes 1-based (0 is PIVQ_ADD); on failure it is released and ptr is nil.
M.TO1_INLINE = [[
  if ptr ~= nil and to1 and C.pivq_binary_scalar_(ptr, 1, 0) ~= 0 then
    C.pivq_tensor_release(ptr)
    ptr = nil
  end
]]

function M.pos0(i) return i - 1 end

function M.index0(fname, idx)
  -- pivq.core.tensor requires this module; looked up at the call
  if type(idx) == "table" then idx = require("pivq.core.tensor").from_table(fname, idx, "int64") end
  if not argcheck.is_tensor(idx) then
    fail(string.format("%s: index must be a tensor or a table of integers, got %s", fname, type(idx)))
  end
  local dt = idx.c.scalar_type
  if dt ~= 2 and dt ~= 1 then -- int64, int32
    fail(string.format("%s: index must be int64 or int32, got %s", fname, idx:dtype()))
  end
  return gc.wrap(C.pivq_binary_scalar(idx.c, 1, C.PIVQ_SUB, 0))
end

function M.codes0(fname, codes, K)
  argcheck.tensor(fname, "codes", codes)
  if codes:dtype() ~= "int64" then
    fail(string.format("%s: codes must be int64, got %s", fname, codes:dtype()))
  end
  argcheck.number(fname, "K", K, nil, true)
  if codes:numel() > 0 then
    local lo, hi = codes:min(), codes:max()
    if lo < 1 or hi > K then
      fail(string.format("%s: code %d out of range 1..%d", fname, lo < 1 and lo or hi, K))
    end
  end
  return codes - 1
end

function M.to1_(t)
  gc.check_rc(C.pivq_binary_scalar_(t.c, 1, C.PIVQ_ADD))
  return t
end

return M
