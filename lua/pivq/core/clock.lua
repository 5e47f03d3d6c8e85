-- pivq.clock: wall-clock time in seconds from a monotonic clock (os.clock is CPU time summed
-- over threads, os.time has one-second steps; neither suits timing a step or an ETA).
local ffi = require "ffi"

local registry = debug.getregistry()
if not registry["pivq.clock.cdef"] then
  ffi.cdef [[
    typedef struct pivq_timespec { long tv_sec; long tv_nsec; } pivq_timespec;
    int clock_gettime(int clk_id, pivq_timespec *ts);
  ]]
  registry["pivq.clock.cdef"] = true
end

local ts = ffi.new("pivq_timespec")
local CLOCK_MONOTONIC = 1

return function()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end
