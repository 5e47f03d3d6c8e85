-- Run by spec/lua/mpi_spec.lua under `mpirun -np 2`: checks pivq.dist's collectives against
-- values computed here in closed form, and prints "rank R ok" (any failure raises, and the
-- guard stops both ranks).
local pivq = require "pivq"
local dist = pivq.dist

local dp = assert(dist.DataParallel({ name = "mpi_api" }), "not started by mpirun")
local r, n = dp.rank, dp.size

local function close(a, b, what)
  local d = (a - b):abs():max()
  if d > 1e-6 then error(string.format("rank %d: %s differs by %g", r, what, d)) end
end

dp:guard(function()
  assert(n == 2 and dist.size() == 2 and dist.rank() == r, "two ranks")
  -- allreduce over several tensors of odd sizes, split into many small buckets (12 bytes: 3
  -- floats, so buckets straddle the tensors' boundaries)
  local a = pivq.arange(1, 6):float():reshape(2, 3) * (r + 1)
  local b = pivq.full({ 5 }, r + 10)
  dist.allreduce_({ a, b }, { bucket_bytes = 12 })
  close(a, pivq.arange(1, 6):float():reshape(2, 3) * 3, "allreduce sum a")
  close(b, pivq.full({ 5 }, 21), "allreduce sum b")
  local m = pivq.full({ 1000 }, r)
  dist.allreduce_(m, { op = "mean" })
  close(m, pivq.full({ 1000 }, 0.5), "allreduce mean")
  -- broadcast from rank 1, any dtype
  local f, i = pivq.full({ 4 }, r), pivq.arange(1, 3) * (r + 1)
  dist.broadcast_({ f, i }, 1)
  close(f, pivq.full({ 4 }, 1), "broadcast float")
  assert(i:dtype() == "int64" and i:totable()[3] == 6, "broadcast int64")
  -- gather: rank r's tensor at [r + 1] on the root, nil elsewhere
  local g = dist.gather(pivq.full({ 2, 3 }, r + 1), 0)
  if r == 0 then
    assert(g and g:size(1) == 2 and g:size(2) == 2 and g:size(3) == 3, "gather shape")
    close(g[2], pivq.full({ 2, 3 }, 2), "gather rank 1's rows")
  else
    assert(g == nil, "gather gives nil off the root")
  end
  dist.barrier()
  -- clear errors, the same on both ranks, and the job goes on afterwards
  local ok, err = pcall(dist.allreduce_, pivq.tensor({ 1, 2 }, "int32"))
  assert(not ok and err:match("must be float32"), tostring(err))
  ok, err = pcall(dist.gather, pivq.zeros(r + 1), 0)
  assert(not ok and err:match("different sizes"), tostring(err))
  ok, err = pcall(dist.broadcast_, pivq.zeros(1), 5)
  assert(not ok and err:match("root 5 is not a rank"), tostring(err))
  local s = pivq.ones(3)
  dist.allreduce_(s)
  close(s, pivq.full({ 3 }, 2), "allreduce after errors")
  -- the data-parallel helpers
  local x = pivq.arange(1, 8):float():reshape(8, 1)
  close(dp:shard(x), pivq.arange(4 * r + 1, 4 * r + 4):float():reshape(4, 1), "shard")
  local v = dp:mean_numbers({ loss = r, other = 10 })
  assert(v.loss == 0.5 and v.other == 10, "mean_numbers")
  local yes, no = dp:any(r == 1, false)
  assert(yes == true and no == false, "any")
  assert(dist.comm_seconds() > 0, "communication time is counted")
  print(string.format("rank %d ok", r))
end)
return 0
