-- demo: the main job — a short training on Fashion-MNIST, then strips, samples and metrics
local argparse = require "argparse"
local pivq = require "pivq"
local json = require "dkjson"

local parser = argparse("pivq demo", "Train a small PI-VQ model on Fashion-MNIST for a few minutes, then write\n"
  .. "reconstructions, the training curve, interpolation strips, samples and a metrics JSON to --out.")
parser:option("--out", "output folder", "runs/demo")
parser:option("--minutes", "training time budget", "5"):convert(tonumber)
parser:option("--steps", "training steps (the schedule's length)", "2000"):convert(tonumber)
parser:option("--quantizer", "matching | nearest | positional", "matching")
parser:option("--dataset", "fashion-mnist or a folder of aligned images", "fashion-mnist")
parser:option("--image-size", "image side for a folder", "64"):convert(tonumber)
local args = parser:parse(arg)

local t0 = pivq.clock()
print(string.format("pivq %s demo: %d threads; training for at most %g minutes (%d steps) into %s", pivq.version,
  pivq.get_num_threads(), args.minutes, args.steps, args.out))
-- a folder gets the preset of its image size (pivq.models.presets); the demo keeps its own budget
local run = pivq.train.Trainer { out = args.out, steps = args.steps, max_minutes = args.minutes,
  dataset = args.dataset, image_size = args.dataset ~= "fashion-mnist" and args.image_size or 0,
  quantizer = args.quantizer, eval_images = 2000, quant_start = math.min(300, math.floor(args.steps / 6)) }
-- the stop message's command (a time limit or Ctrl-C): `pivq train` continues this run
run.resume_hint = string.format("pivq train --out '%s' --resume --steps %d --quantizer %s",
  (args.out:gsub("'", "'\\''")), args.steps, args.quantizer)
local metrics, stopped = run:fit()
if stopped == "interrupted" then return 130 end
if run.model.quantizer.bypassed then
  -- an unquantized model decodes every code set to the same blur: no samples, no code metrics
  io.stderr:write(string.format("pivq demo: training ended at step %d before the quantizer started; nothing "
    .. "sampled or evaluated. Give it more time (--minutes) or continue with: %s\n", run.step, run.resume_hint))
  return 1
end
if not metrics then
  -- the time budget ended the schedule early: evaluate what we have
  run:write_output(args.out .. "/recon.png", run.write_grid)
  run:write_output(args.out .. "/curve.svg", run.write_curve)
  metrics = run:evaluate()
  metrics.step = run.step
end
local model = run.model
model:train(false)
model.path = run:checkpoint_path()

-- interpolation strips between test images 1 and 2 (four random paths, eight steps)
local test = run.test_set
local function float(x) return x:dtype() == "uint8" and x:float() / 255 or x end
local xa, xb = float(test.images:narrow(1, 1, 1)), float(test.images:narrow(1, 2, 1))
local sets = model:code_sets(model:encode(pivq.cat({ xa, xb }, 1)))
local rows = {}
if model.config.mode ~= "positional" then
  for p = 1, 4 do
    local path = pivq.interp.path("random", sets[1], sets[2], { steps = 8, seed = p })
    rows[#rows + 1] = pivq.cat({ xa, model:decode(path), xb }, 1)
  end
  assert(pivq.image.save(args.out .. "/strip.png",
    pivq.image.grid(pivq.cat(rows, 1), { nrow = 11, padding = 2, scale = 3 })))
end

-- samples from pairs of training images (the bank of the first 10,000 training images)
local bank = model:bank({ limit = 10000 })
local sample_strategy = model.config.mode ~= "positional" and "pair" or "marginal"
local codes = pivq.sample.codes(sample_strategy, bank, 64, { seed = 1 })
local t_s = pivq.clock()
local samples = model:decode(codes)
local sample_seconds = pivq.clock() - t_s
assert(pivq.image.save(args.out .. "/samples.png", pivq.image.grid(samples, { nrow = 8, padding = 2, scale = 2 })))

-- metrics: reconstruction and codes (from training), PRDC of 1,000 samples in a random-CNN space
local fx = assert(pivq.features.extractor("random", { channels = model.config.channels,
  size = model.config.image_size }))
local n = math.min(1000, test.images:size(1))
local real = fx.fn(test.images:narrow(1, 1, n))
local fake = fx.fn(model:decode(pivq.sample.codes(sample_strategy, bank, n, { seed = 2 })))
local prdc = pivq.eval.prdc(real, fake, { k = 5 })
metrics.samples = { strategy = sample_strategy, features = fx.describe, precision = prdc.precision,
  recall = prdc.recall, density = prdc.density, coverage = prdc.coverage, decode_64_seconds = sample_seconds }
pivq.files.write_or_fail("demo", args.out .. "/metrics.json", json.encode(metrics, { indent = true }) .. "\n")

print(string.format("test PSNR %.2f dB, SSIM %.3f | codebook usage %.1f%%, K_img %.1f of L=%d | samples (%s, %s): "
  .. "precision %.2f recall %.2f density %.2f coverage %.2f", metrics.psnr, metrics.ssim, 100 * (metrics.usage or 0),
  metrics.K_img or 0, model.config.L, sample_strategy, fx.name, prdc.precision, prdc.recall, prdc.density,
  prdc.coverage))
print(string.format("wrote %s/{model.safetensors, recon.png, curve.svg, strip.png, samples.png, metrics.json, "
  .. "log.jsonl} in %.1f minutes", args.out, (pivq.clock() - t0) / 60))
return 0
