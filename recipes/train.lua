-- train: train a PI-VQ model (default: Fashion-MNIST, matching quantization)
local argparse = require "argparse"
local pivq = require "pivq"
local train = require "pivq.train"

local parser = argparse("pivq train", "Train a permutation-invariant VQ autoencoder (see README.md).\n"
  .. "Writes OUT/model.safetensors, log.jsonl, recon.png, curve.svg and metrics.json.")
for _, o in ipairs(train.options) do
  local name, default, help = o[1], o[2], o[3]
  local flag = "--" .. name:gsub("_", "-")
  if type(default) == "boolean" then
    parser:flag(flag, help)
  else
    local opt = parser:option(flag, help, tostring(default))
    if type(default) == "number" then opt:convert(tonumber) end
  end
end
local args = parser:parse(arg)

local opts = {}
for _, o in ipairs(train.options) do
  local v = args[o[1]]
  if v == nil then v = o[2] end
  opts[o[1]] = v
end

local run = train.Trainer(opts)
if not run.dist.is_root then opts.quiet = true end -- data-parallel: rank 0 alone prints
if not opts.quiet then
  print(string.format("pivq %s | %s | %d threads, %s | %s, %d parameters", pivq.version, opts.dataset,
    pivq.get_num_threads(), run.precision, run.model:extra_repr(), run.model:num_parameters()))
end
local metrics, stopped = run:fit()
if not metrics then return stopped == "interrupted" and 130 or 0 end
if not opts.quiet then
  print(string.format("test: PSNR %.2f dB, SSIM %.3f, codebook usage %.1f%%, K_img %.1f (of L=%d), perplexity %.1f",
    metrics.psnr, metrics.ssim, 100 * (metrics.usage or 0), metrics.K_img or 0, opts.L, metrics.perplexity or 0))
  if metrics.gflops then
    print(string.format("speed: %.0f images/s, %.1f GFLOP/s (%.0f MFLOP per image, forward + backward)%s",
      metrics.img_per_s, metrics.gflops, metrics.mflop_per_image, metrics.mfu and string.format(
      ", %.0f%% of the measured %s peak (%.0f GFLOP/s on %d threads)", 100 * metrics.mfu, metrics.precision,
      metrics.peak_gflops, metrics.threads) or ""))
  end
  print("outputs in " .. opts.out)
end
return 0
