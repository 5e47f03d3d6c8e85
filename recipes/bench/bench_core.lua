-- bench_core: figures for the tensor core (not a test; run it, read the table).
--   ./build/pivq recipes/bench/bench_core.lua [--quick] [--threads N]
-- 1. matmul GFLOP/s for n x n float32 products, pivq against a direct cblas_sgemm call on the
--    same buffers in the same run (interleaved rounds; the best round of each counts, which
--    keeps another process's load on a shared machine out of the comparison as far as possible);
-- 2. elementwise add bandwidth in GB/s (2 reads + 1 write per element), fresh result and in place;
-- 3. reductions' bandwidth: the sum over the rows of a tall matrix and over a long vector;
-- 4. the cost of one tiny op (4 elements) called from a JIT-compiled Lua loop, in ns per call.
local ffi = require "ffi"
local pivq = require "pivq"

local quick, threads = false, nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--quick" then
      quick = true
    elseif arg[i] == "--threads" then
      i = i + 1
      threads = tonumber(arg[i])
    else
      error("bench_core: unknown option " .. arg[i] .. " (--quick, --threads N)")
    end
    i = i + 1
  end
end
if threads then pivq.set_num_threads(threads) end

-- a private struct name, so that this cdef cannot collide with another module's timespec
pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } pivq_bench_timespec;
int clock_gettime(int clock_id, pivq_bench_timespec *tp);
]])
pcall(ffi.cdef, [[
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
]])
local blas = ffi.load("openblas") -- the library libpivq links: the same code and threads
local CblasRowMajor, CblasNoTrans = 101, 111

local ts = ffi.new("pivq_bench_timespec")
local CLOCK_MONOTONIC = 1
local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- best seconds per call of f over `rounds` rounds of `reps` calls
local function best_time(f, reps, rounds)
  local best = math.huge
  for _ = 1, rounds do
    local t0 = now()
    for _ = 1, reps do f() end
    local dt = (now() - t0) / reps
    if dt < best then best = dt end
  end
  return best
end

local rows = {}
local function row(what, value, unit, note)
  rows[#rows + 1] = { what, value, unit, note or "" }
  io.write(string.format("  %-44s %10.2f %-8s %s\n", what, value, unit, note or ""))
  io.flush()
end

print(string.format("pivq %s bench_core: %d threads%s", pivq.version, pivq.get_num_threads(),
  quick and " (quick)" or ""))

-- ---- 1. matmul ---------------------------------------------------------------------------------
print("matmul (float32, n x n @ n x n)")
pivq.manual_seed(0)
for _, n in ipairs(quick and { 256, 512 } or { 256, 512, 1024, 2048 }) do
  local a, b = pivq.randn(n, n), pivq.randn(n, n)
  local out = pivq.empty(n, n)
  local pa, pb, po = a:data_ptr(), b:data_ptr(), out:data_ptr()
  local flop = 2 * n * n * n
  local reps = math.max(1, math.floor(0.15 / (flop / 150e9)))
  local function direct()
    blas.cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, pa, n, pb, n, 0, po, n)
  end
  local function via_matmul() return a:matmul(b) end
  local function via_gemm() a:matmul(b, out) end
  direct(); via_matmul(); via_gemm() -- warm up (threads, pages)
  local t_direct, t_matmul, t_gemm = math.huge, math.huge, math.huge
  for _ = 1, quick and 2 or 9 do -- interleaved, so a neighbour's load hits all three alike
    t_direct = math.min(t_direct, best_time(direct, reps, 1))
    t_matmul = math.min(t_matmul, best_time(via_matmul, reps, 1))
    t_gemm = math.min(t_gemm, best_time(via_gemm, reps, 1))
  end
  -- the result agrees with the direct call
  direct()
  local diff = (a:matmul(b) - out):abs():max()
  assert(diff < 1e-3 * n, "matmul disagrees with cblas_sgemm: " .. diff)
  row(string.format("cblas_sgemm direct      %4d", n), flop / t_direct / 1e9, "GFLOP/s")
  row(string.format("a:matmul(b) (new out)   %4d", n), flop / t_matmul / 1e9, "GFLOP/s",
    string.format("%5.1f%% of direct", 100 * t_direct / t_matmul))
  row(string.format("a:matmul(b, out)        %4d", n), flop / t_gemm / 1e9, "GFLOP/s",
    string.format("%5.1f%% of direct", 100 * t_direct / t_gemm))
end

-- ---- 2. elementwise ------------------------------------------------------------------------------
print("elementwise add (bytes moved: 2 reads + 1 write of float32)")
do
  local n = quick and 4e6 or 2e7
  local a, b = pivq.randn(n), pivq.randn(n)
  local bytes = 12 * n
  local t_new = best_time(function() return a + b end, 5, quick and 2 or 5)
  row(string.format("a + b, fresh result, n = %.0e", n), bytes / t_new / 1e9, "GB/s")
  local t_in = best_time(function() a:add_(b) end, 5, quick and 2 or 5)
  row(string.format("a:add_(b), in place, n = %.0e", n), bytes / t_in / 1e9, "GB/s")
  local small = pivq.randn(32768) -- fits in L2: the loop's speed, not memory's
  local s2 = pivq.randn(32768)
  local t_l2 = best_time(function() small:add_(s2) end, 2000, 3)
  row("a:add_(b), in place, n = 32768 (in cache)", 12 * 32768 / t_l2 / 1e9, "GB/s")
end

-- ---- 3. reductions -------------------------------------------------------------------------------
print("reductions (bytes read)")
do
  local tall = pivq.randn(quick and 100000 or 400000, 64)
  local bytes = tall:numel() * 4
  row("tall:sum(1)  (over the rows of N x 64)", bytes / best_time(function() return tall:sum(1) end, 3,
    3) / 1e9, "GB/s")
  row("tall:sum(2)  (over the columns)", bytes / best_time(function() return tall:sum(2) end, 3, 3) / 1e9,
    "GB/s")
  local v = tall:view(-1)
  row("v:sum()      (all dims)", bytes / best_time(function() return v:sum() end, 3, 3) / 1e9, "GB/s")
  row("v:var()      (all dims)", bytes / best_time(function() return v:var() end, 3, 3) / 1e9, "GB/s")
  row("tall:max(1)  (values and indices)", bytes / best_time(function() return tall:max(1) end, 3, 3) / 1e9,
    "GB/s")
end

-- ---- 4. per-call overhead ----------------------------------------------------------------------
print("tiny ops (4 elements) from a JIT-compiled loop")
do
  local a, b = pivq.randn(4), pivq.randn(4)
  local calls = quick and 100000 or 1000000
  local function per_call(body) return best_time(body, 1, 3) / calls * 1e9 end
  row("c = a + b   (new tensor, GC'd later)", per_call(function()
    local c
    for _ = 1, calls do c = a + b end
    return c
  end), "ns/call")
  row("c = a * 2   (scalar form)", per_call(function()
    local c
    for _ = 1, calls do c = a * 2 end
    return c
  end), "ns/call")
  row("a:add_(b)   (in place, no allocation)", per_call(function()
    for _ = 1, calls do a:add_(b) end
  end), "ns/call")
  row("a:mul_(0.5) (in place scalar)", per_call(function()
    for _ = 1, calls do a:mul_(0.5) end
  end), "ns/call")
  row("a:sum()     (reduction to a 0-dim tensor)", per_call(function()
    local c
    for _ = 1, calls do c = a:sum() end
    return c
  end), "ns/call")
  row("a:narrow(1, 2, 2) (a view)", per_call(function()
    local c
    for _ = 1, calls do c = a:narrow(1, 2, 2) end
    return c
  end), "ns/call")
end

return 0
