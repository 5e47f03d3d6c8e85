-- pivq.core.gc: the lifetime of C tensors in Lua and the collection policy.
--
--   wrap(ptr)                 take ownership of a new C reference (or raise the C error)
--   check_rc(rc)              raise the C error unless rc is 0
--   last_error()              the C library's last message
--   policy                    the collection policy's state (pivq.gc_policy)
--   account(), after_backward(), collect_between_steps()   the policy's hooks
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local argcheck = require "pivq.core.argcheck"

local C = state.C
local handle_t = state.handle_t
local fail = argcheck.fail
local registry = debug.getregistry()

local M = {}

local function last_error() return ffi.string(C.pivq_last_error()) end
M.last_error = last_error

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
M.policy = gc

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
M.account = account

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
M.release = release

-- Take ownership of a new C reference, or raise the C error at the user's line.
function M.wrap(ptr)
  if ptr == nil then fail(last_error()) end
  account()
  return ffi.gc(handle_t(ptr), release)
end

function M.check_rc(rc)
  if rc ~= 0 then fail(last_error()) end
end

return M
