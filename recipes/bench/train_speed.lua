-- recipes/bench/train_speed.lua MODE THREADS STEPS [PATCH WIDTH DEPTH HEADS MLP_RATIO L K C]: the pivq
-- side of the training-speed benchmark (recipes/bench/train_speed.sh runs both sides). One training
-- step of the PI-VQ model on a batch of 64 (forward, L1 + L2 + commitment, backward, clipping,
-- AdamW); prints one JSON line like recipes/bench/train_torch.py. PRECISION=bf16 in the environment
-- runs the step under pivq.autocast("bf16"). The line also carries the model FLOP utilisation: the
-- FLOPs per image of the products (pivq_flop_count over the timed steps: forward and backward, from
-- the layers' shapes), the GFLOP/s of the median step, and its share of the peak measured right after
-- (pivq_peak_gflops: register-only fp32 FMAs or bf16 dot products on THREADS threads, 0.5 s).
local pivq = require "pivq"
local json = require "dkjson"

local mode, threads, steps = arg[1] or "matching", tonumber(arg[2] or "2"), tonumber(arg[3] or "10")
local v = {}
for i = 4, 11 do v[#v + 1] = tonumber(arg[i]) end
pivq.set_num_threads(threads)
pivq.manual_seed(1)
-- colour and the conv head: the environment variables train_torch.py reads
local function env(name, default) return os.getenv(name) or default end
local B = tonumber(env("PIVQ_BENCH_BATCH", "64"))
local size, ch = tonumber(env("PIVQ_BENCH_SIZE", "28")), tonumber(env("PIVQ_BENCH_CHANNELS", "1"))
local model = pivq.PIVQ { mode = mode, patch = v[1] or 7, width = v[2] or 128, enc_depth = v[3] or 2,
  dec_depth = v[3] or 2, heads = v[4] or 4, mlp_ratio = v[5] or 2, L = v[6] or 64, K = v[7] or 512, c = v[8] or 32,
  image_size = size, channels = ch, head = env("PIVQ_BENCH_HEAD", "linear"),
  head_width = tonumber(env("PIVQ_BENCH_HEAD_WIDTH", "64")) }
local opt = pivq.optim.AdamW(model:parameters(), { lr = 1e-3, weight_decay = 0.01 })
local x = pivq.rand(B, ch, size, size)
local q = model.quantizer
-- time the quantizer's own forward by wrapping it
local quant_time = 0
local qforward = q.forward
q.forward = function(self, z)
  local t = pivq.clock()
  local a, b, c, d = qforward(self, z)
  quant_time = quant_time + pivq.clock() - t
  return a, b, c, d
end
local precision = os.getenv("PRECISION") or "fp32"
local function forward_backward()
  local y, _, losses = model(x)
  local loss = pivq.F.l1_loss(y, x) + pivq.F.mse_loss(y, x) + losses.total
  loss:backward()
end
local times, quants = {}, {}
local flops0
for step = 1, steps + 3 do
  if step == 4 then flops0 = tonumber(pivq.C.pivq_flop_count()) end
  quant_time = 0
  local t0 = pivq.clock()
  pivq.autocast(precision, forward_backward)
  pivq.optim.clip_grad_norm(model:parameters(), 1.0)
  opt:step()
  opt:zero_grad()
  if step > 3 then
    times[#times + 1] = pivq.clock() - t0
    quants[#quants + 1] = quant_time
  end
end
local sum_t, sum_q = 0, 0
for i = 1, #times do sum_t, sum_q = sum_t + times[i], sum_q + quants[i] end
table.sort(times)
local med = times[math.ceil(#times / 2)]
local step_flops = (tonumber(pivq.C.pivq_flop_count()) - flops0) / steps
local used = precision == "bf16" and pivq.bf16_available() and "bf16" or "fp32"
local peak = pivq.C.pivq_peak_gflops(used == "bf16" and 1 or 0, threads, 0.5)
local gflops = step_flops / med / 1e9
print(json.encode({ side = "pivq", mode = mode, threads = threads, precision = used, img_per_s = B / med,
  step_ms = med * 1e3, quant_share = sum_q / sum_t, mflop_per_image = step_flops / B / 1e6, gflops = gflops,
  peak_gflops = peak, mfu = peak > 0 and gflops / peak or nil }))
