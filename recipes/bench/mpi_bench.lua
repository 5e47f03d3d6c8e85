-- recipes/bench/mpi_bench.lua MODE [key=value ...]: the pivq side of recipes/bench/mpi.sh, run
-- alone or under mpirun. Each mode prints one JSON line (from rank 0).
--
--   train      pivq.train on Fashion-MNIST with the default model (the quantizer initialised
--              after 2 steps, so the steps timed are quantized ones): `steps` steps of warm-up,
--              then `steps` timed: images/s of the global batch, seconds per step spent in
--              communication (all collectives: gradients, codebook statistics, losses; waiting
--              for the slower rank included) and in the gradient allreduce alone.
--   allreduce  the gradient allreduce of the default model alone, after a barrier (pure
--              transfer, no waiting for a slower rank), for several bucket sizes.
--   compute    one process's training-step time (forward, backward, AdamW) for the default model
--              and for a CelebA-sized one (3 x 64 x 64, patch 8), at the given per-rank batch,
--              and each model's gradient bytes: the inputs of the README's scaling estimate.
local pivq = require "pivq"
local json = require "dkjson"
local dist = pivq.dist

local mode = arg[1] or "train"
local o = { steps = 20, batch = 64, threads = 1, reps = 30 }
for i = 2, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  o[k] = tonumber(v) or v
end

local function median(xs)
  table.sort(xs)
  return xs[math.ceil(#xs / 2)]
end

local function grad_bytes(model)
  local n = 0
  for _, p in ipairs(model:parameters()) do n = n + p:numel() end
  return 4 * n
end

if mode == "train" then
  local dir = os.tmpname()
  os.remove(dir)
  local run = pivq.train.Trainer({ out = dir, steps = 2 * o.steps, batch = o.batch, threads = o.threads,
    quant_start = 2, init_batches = 1, log_every = 100000, grid_every = 100000, ckpt_every = 100000,
    eval_images = 0, quiet = true, restart_every = 0 })
  local dp = run.dist
  -- time the gradient allreduce apart from the other collectives
  local grad_time = 0
  if dp then
    local average = dp.average_gradients
    dp.average_gradients = function(...)
      local t = pivq.clock()
      average(...)
      grad_time = grad_time + pivq.clock() - t
    end
  end
  local marks = {}
  local sched_step = run.sched.step
  run.sched.step = function(s)
    local step = run.step + 1
    if step == o.steps or step == 2 * o.steps then
      marks[#marks + 1] = { t = pivq.clock(), comm = dist.comm_seconds(), grad = grad_time }
    end
    return sched_step(s)
  end
  -- stop before the final evaluation: only the loop is timed
  run.evaluate = function() return {} end
  run.write_grid = function() end
  run.write_curve = function() end
  run:fit()
  pivq.files.run({ "rm", "-rf", "--", dir }) -- its own temporary folder; execvp, no shell
  local a, b = marks[1], marks[2]
  local n = o.steps
  local ranks = dp and dp.size or 1
  if not dp or dp.is_root then
    print(json.encode({ mode = mode, ranks = ranks, threads = pivq.get_num_threads(), batch_per_rank = o.batch,
      img_per_s = n * o.batch * ranks / (b.t - a.t), step_ms = 1e3 * (b.t - a.t) / n,
      comm_ms_per_step = 1e3 * (b.comm - a.comm) / n, grad_allreduce_ms_per_step = 1e3 * (b.grad - a.grad) / n,
      grad_bytes = grad_bytes(run.model) }))
  end
elseif mode == "allreduce" then
  dist.init()
  local model = pivq.PIVQ {}
  local grads = {}
  for _, p in ipairs(model:parameters()) do grads[#grads + 1] = pivq.zeros(p:size()) end
  local out = { mode = mode, ranks = dist.size(), grad_bytes = grad_bytes(model), ms = {}, best_ms = {} }
  for _, bucket in ipairs({ 0, 4 * 2 ^ 20, 2 ^ 20, 256 * 2 ^ 10 }) do
    local times = {}
    for _ = 1, o.reps do
      dist.barrier()
      local t = pivq.clock()
      dist.allreduce_(grads, { op = "mean", bucket_bytes = bucket })
      times[#times + 1] = pivq.clock() - t
    end
    local name = bucket == 0 and "one bucket" or string.format("%d KiB buckets", bucket / 1024)
    out.ms[name] = 1e3 * median(times)
    table.sort(times)
    out.best_ms[name] = 1e3 * times[1] -- what an unloaded machine gives
  end
  if dist.rank() == 0 then print(json.encode(out)) end
elseif mode == "compute" then
  pivq.set_num_threads(o.threads)
  local out = { mode = mode, threads = o.threads, batch_per_rank = o.batch }
  for name, cfg in pairs({ default = {}, celeba64 = { image_size = 64, channels = 3, patch = 8 } }) do
    pivq.manual_seed(1)
    local model = pivq.PIVQ(cfg)
    model.quantizer:init_from(pivq.randn(4096, model.config.c), { iters = 2 })
    local opt = pivq.optim.AdamW(model:parameters(), { lr = 1e-3 })
    local c = model.config
    local x = pivq.rand(o.batch, c.channels, c.image_size, c.image_size)
    local times = {}
    for i = 1, o.steps + 2 do
      local t = pivq.clock()
      local y, _, losses = model(x)
      local loss = pivq.F.l1_loss(y, x) + pivq.F.mse_loss(y, x) + losses.total
      loss:backward()
      opt:step()
      opt:zero_grad()
      if i > 2 then times[#times + 1] = pivq.clock() - t end
    end
    out[name] = { step_ms = 1e3 * median(times), grad_bytes = grad_bytes(model),
      stats_bytes = 4 * (c.K * (c.c + 1) + 1),
      image = string.format("%dx%dx%d", c.channels, c.image_size, c.image_size) }
  end
  print(json.encode(out))
else
  error("mpi_bench: unknown mode " .. tostring(mode) .. " (train, allreduce, compute)", 0)
end
return 0
