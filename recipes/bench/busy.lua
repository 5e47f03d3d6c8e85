-- recipes/bench/busy.lua WORKLOAD THREADS SECONDS: one side of the busy-machine benchmark
-- (recipes/bench/busy.sh runs every condition side by side). Runs WORKLOAD for about SECONDS of
-- wall-clock time after one warm-up and prints one JSON line with its throughput (items per
-- second of wall-clock time: the figure a user waiting on a shared machine sees) and the OpenMP
-- wait policy in force (pivq.omp_wait()).
--   train      one training step of the default PI-VQ model (batch 64, AdamW); items = images
--   conv       forward + backward of the conv stack of recipes/bench/autograd_bench.lua; images
--   attention  forward + backward of multi-head self-attention (64 x 49 tokens, 256 wide, 4 heads)
--   assign     pivq.assign on a 64 x 64 x 512 cost batch (the quantizer's matching); problems
local pivq = require "pivq"
local json = require "dkjson"
local nn = pivq.nn

local workload, threads, seconds = arg[1], tonumber(arg[2] or "1"), tonumber(arg[3] or "3")
pivq.set_num_threads(threads)
pivq.manual_seed(1)

local W = {}
function W.train()
  local model = pivq.PIVQ { mode = "matching" }
  local opt = pivq.optim.AdamW(model:parameters(), { lr = 1e-3, weight_decay = 0.01 })
  local x = pivq.rand(64, 1, 28, 28)
  return 64, function()
    local y, _, losses = model(x)
    local loss = pivq.F.l1_loss(y, x) + pivq.F.mse_loss(y, x) + losses.total
    loss:backward()
    pivq.optim.clip_grad_norm(model:parameters(), 1.0)
    opt:step()
    opt:zero_grad()
  end
end
function W.conv()
  local m = nn.Sequential(nn.Conv2d(1, 64, 3, { padding = 1 }), nn.ReLU(),
    nn.Conv2d(64, 128, 4, { stride = 2, padding = 1 }), nn.ReLU(),
    nn.Conv2d(128, 128, 4, { stride = 2, padding = 1 }))
  local x = pivq.randn(64, 1, 28, 28)
  return 64, function()
    m:zero_grad()
    m(x):sum():backward()
  end
end
function W.attention()
  local m = nn.MultiheadAttention(256, 4)
  local x = pivq.randn(64, 49, 256)
  return 64, function()
    m:zero_grad()
    m(x):sum():backward()
  end
end
function W.assign()
  local cost = pivq.rand(64, 64, 512)
  return 64, function() return pivq.assign(cost) end
end

local make = W[workload]
if not make then error("busy.lua: unknown workload " .. tostring(workload) .. " (train, conv, attention, assign)") end
local items, run = make()
run()
local t0, n = pivq.clock(), 0
repeat
  run()
  n = n + 1
until pivq.clock() - t0 >= seconds
local dt = pivq.clock() - t0
print(json.encode({ workload = workload, threads = threads, items_per_s = n * items / dt, runs = n,
  omp_wait = pivq.omp_wait and pivq.omp_wait() or "?" }))
