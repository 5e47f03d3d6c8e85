-- Run by spec/lua/mpi_spec.lua through the pivq host, under mpirun or alone:
--   pivq spec/helpers/mpi_train.lua OUT BATCH STEPS [key=value ...]
-- trains a tiny model with pivq.train (data-parallel when mpirun started it) and writes
-- OUT/rank<r>.safetensors: this rank's codebook after every optimizer step ("codebook.<step>"),
-- its final parameters ("param.<name>", and "disc.<name>" with the adversarial term) and how
-- many dead codes rank 0 restarted ("restarts").
-- With pidfile=1 it first writes OUT/pid.<rank> (the failure spec kills a rank by it).
local ffi = require "ffi"
local pivq = require "pivq"

local out, batch, steps = arg[1], tonumber(arg[2]), tonumber(arg[3])
local opts = { out = out, batch = batch, steps = steps, width = 32, enc_depth = 1, dec_depth = 1, heads = 2,
  patch = 7, L = 8, K = 96, c = 8, quant_start = 3, init_batches = 2, restart_every = 2, dead_after = 1,
  warmup = 2, lr = 3e-3, log_every = 1, grid_every = 100000, ckpt_every = 100000, eval_images = 16,
  quiet = true, threads = 1 }
local pidfile = false
for i = 4, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  if k == "pidfile" then pidfile = true
  elseif v == "true" or v == "false" then opts[k] = v == "true"
  else opts[k] = tonumber(v) or v end
end

local run = pivq.train.Trainer(opts)
local rank = run.dist and run.dist.rank or 0
if pidfile then
  ffi.cdef "int getpid(void);"
  local f = assert(io.open(string.format("%s/pid.%d", out, rank), "w"))
  f:write(ffi.C.getpid(), "\n")
  f:close()
end

local rec = {}
local q = run.model.quantizer
-- sched:step() comes once per optimizer step, after the quantizer's EMA update of that step
local sched_step = run.sched.step
run.sched.step = function(s)
  rec["codebook." .. (run.step + 1)] = q.codebook:clone()
  return sched_step(s)
end
local restarts = 0
local restart_dead = q.restart_dead
q.restart_dead = function(...)
  local n = restart_dead(...)
  restarts = restarts + n
  return n
end

run:fit()
rec["codebook.final"] = q.codebook:clone()
for _, np in ipairs(run.model:named_parameters()) do rec["param." .. np[1]] = np[2]:detach():clone() end
if run.disc then
  for _, np in ipairs(run.disc:named_parameters()) do rec["disc." .. np[1]] = np[2]:detach():clone() end
end
rec.restarts = pivq.tensor({ restarts })
assert(pivq.save(string.format("%s/rank%d.safetensors", out, rank), rec))
return 0
