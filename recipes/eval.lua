-- eval: reconstruction, code statistics, capacity and PRDC of samples for a checkpoint (or compare runs)
local argparse = require "argparse"
local pivq = require "pivq"
local json = require "dkjson"

local parser = argparse("pivq eval", "Evaluate a checkpoint on the held-out split; writes a metrics JSON.\n"
  .. "PRDC (Naeem et al. 2020, k = 5) compares samples with test images in the chosen feature space.")
parser:option("--ckpt", "model checkpoint")
parser:option("--samples", "samples drawn for PRDC (0: skip)", "2000"):convert(tonumber)
parser:option("--strategy", "sampling strategy for PRDC (pair, mix, marginal, ...)", "pair")
parser:option("--features", "feature space: classifier | random | pixels", "classifier")
parser:option("--features-ckpt", "classifier checkpoint", pivq.features.DEFAULT_CLASSIFIER)
parser:option("--test-images", "held-out images used", "2000"):convert(tonumber)
parser:option("--k", "PRDC neighbourhood size", "5"):convert(tonumber)
parser:option("--bank-limit", "encode only the first N training images into the bank"):convert(tonumber)
parser:option("--seed", "seed", "1"):convert(tonumber)
parser:option("--out", "metrics JSON (default: beside the checkpoint)")
parser:option("--compare", "print the metrics of several runs side by side"):args("+")
local args = parser:parse(arg)

local ROWS = { "quantizer", "L", "K", "psnr", "ssim", "mse", "usage", "perplexity", "K_img", "bits_matching",
  "bits_nearest", "capacity_ratio", "features", "prdc_strategy", "precision", "recall", "density", "coverage",
  "marginal_precision", "marginal_recall", "marginal_density", "marginal_coverage" }

local function print_table(names, runs)
  local header = string.format("%-20s", "")
  for _, n in ipairs(names) do header = header .. string.format(" %18s", n:sub(-18)) end
  print(header)
  for _, key in ipairs(ROWS) do
    local line, any = string.format("%-20s", key), false
    for _, r in ipairs(runs) do
      local v = r[key]
      any = any or v ~= nil
      local s = v == nil and "-" or (type(v) == "number" and string.format("%.4g", v) or tostring(v))
      line = line .. string.format(" %18s", s:sub(1, 18))
    end
    if any then print(line) end
  end
end

if args.compare then
  local runs = {}
  for i, path in ipairs(args.compare) do
    local file = path:match("%.json$") and path or path .. "/eval.json"
    local f = io.open(file)
    if not f then
      io.stderr:write("pivq eval: cannot read ", file, "\n")
      return 1
    end
    runs[i] = json.decode(f:read("*a"))
    f:close()
  end
  print_table(args.compare, runs)
  return 0
end

local model, err_code = require("pivq.recipe").load_model("pivq eval", args.ckpt)
if not model then return err_code end
local cfg = model.config
local report = { checkpoint = args.ckpt, checkpoint_hash = pivq.bank.file_hash(args.ckpt), quantizer = cfg.mode,
  L = cfg.L, K = cfg.K }

-- reconstruction and codes on the held-out split
local test = assert(pivq.data.fashion_mnist { split = "test" })
local n = math.min(args.test_images, test.images:size(1))
local xs = test.images:narrow(1, 1, n)
local recon, codes = {}, {}
pivq.no_grad(function()
  for s = 1, n, 250 do
    local x = xs:narrow(1, s, math.min(250, n - s + 1))
    local y, idx = model(x)
    recon[#recon + 1] = y
    codes[#codes + 1] = idx
  end
end)
recon, codes = pivq.cat(recon, 1), pivq.cat(codes, 1)
report.psnr, report.ssim = pivq.eval.psnr(recon, xs), pivq.eval.ssim(recon, xs)
report.mse = pivq.eval.mse(recon, xs):mean():item()
local st = pivq.vq.code_stats(codes, cfg.K)
report.usage, report.perplexity, report.K_img = st.usage, st.perplexity, st.K_img
-- capacity at this K and L: matching bits (a set of L) over nearest bits at the measured K_img
report.bits_matching = cfg.L <= cfg.K and pivq.capacity.bits { K = cfg.K, L = cfg.L, scheme = "set" } or nil
report.bits_nearest = pivq.capacity.bits { K = cfg.K, L = cfg.L, scheme = "distinct", K_img = st.K_img }
report.capacity_ratio = report.bits_matching and report.bits_matching / report.bits_nearest or nil

-- PRDC of samples against test images
if args.samples > 0 then
  local fx, ferr = pivq.features.extractor(args.features, { path = args.features_ckpt })
  if not fx then
    io.stderr:write("pivq eval: ", ferr, "\n")
    return 1
  end
  report.features, report.features_hash = fx.describe, fx.hash
  print("features: " .. fx.describe)
  local bank = model:bank({ limit = args.bank_limit })
  local real = fx.fn(xs)
  local function prdc_of(strategy)
    local sc = pivq.sample.codes(strategy, bank, args.samples, { seed = args.seed, model = model,
      codebook = model:codebook() })
    local imgs = {}
    for s = 1, args.samples, 250 do
      imgs[#imgs + 1] = model:decode(sc:narrow(1, s, math.min(250, args.samples - s + 1)))
    end
    return pivq.eval.prdc(real, fx.fn(pivq.cat(imgs, 1)), { k = args.k })
  end
  if cfg.mode ~= "positional" then
    local r = prdc_of(args.strategy)
    report.prdc_strategy = args.strategy
    report.precision, report.recall, report.density, report.coverage = r.precision, r.recall, r.density, r.coverage
  end
  local m = prdc_of("marginal")
  report.marginal_precision, report.marginal_recall = m.precision, m.recall
  report.marginal_density, report.marginal_coverage = m.density, m.coverage
end

local out = args.out or (args.ckpt:match("^(.*)/[^/]*$") or ".") .. "/eval.json"
local f = assert(io.open(out, "w"))
f:write(json.encode(report, { indent = true }), "\n")
f:close()
print_table({ args.ckpt }, { report })
print("metrics: " .. out)
return 0
