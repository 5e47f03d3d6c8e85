-- train: train a PI-VQ model (default: Fashion-MNIST, matching quantization)
local argparse = require "argparse"
local pivq = require "pivq"
local train = require "pivq.train"

local options = require "pivq.train.options"

local parser = argparse("pivq train", "Train a permutation-invariant VQ autoencoder (see README.md).\n"
  .. "Writes OUT/model.safetensors, log.jsonl, recon.png, curve.svg and metrics.json; one run writes a\n"
  .. "folder at a time (OUT/.pivq-lock). --resume keeps the checkpoint's model, quantizer, data and\n"
  .. "optimisation options (a contradicting option is an error); options that may change on resume: --"
  .. table.concat(options.may_change_on_resume, ", --"):gsub("_", "-") .. ".")
for _, o in ipairs(train.options) do
  local name, default, help = o[1], o[2], o[3]
  local flag = "--" .. name:gsub("_", "-")
  if type(default) == "boolean" then
    parser:flag(flag, help)
  else
    -- no argparse default: an option left out stays nil, so that --resume can tell it from a
    -- given one (the Trainer fills the defaults)
    local opt = parser:option(flag, help .. " (default: " .. tostring(default) .. ")")
    if type(default) == "number" then opt:convert(tonumber) end
  end
end
local args = parser:parse(arg)

local opts = {}
for _, o in ipairs(train.options) do
  local v = args[o[1]]
  if v ~= nil then opts[o[1]] = v end
end

local run = train.Trainer(opts)
opts = run.opts -- the defaults filled in (and, on --resume, the checkpoint's options)
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
