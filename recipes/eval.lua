-- eval: reconstruction, code statistics, capacity and PRDC of samples for a checkpoint (or compare runs)
local argparse = require "argparse"
local pivq = require "pivq"
local json = require "dkjson"

local parser = argparse("pivq eval", "Evaluate a checkpoint on the held-out split; writes a metrics JSON.\n"
  .. "PRDC (Naeem et al. 2020, k = 5) compares samples with test images in the chosen feature space.")
parser:option("--ckpt", "model checkpoint")
parser:option("--samples", "samples drawn for PRDC (0: skip)", "2000"):convert(tonumber)
parser:option("--strategy", "sampling strategies for PRDC, comma-separated (pair, mix, ...); the marginal\n"
  .. "baseline is always added (positional models: uniform and slot_marginal instead)", "pair,mix")
parser:option("--strategy-file", "a Lua file that registers sampling strategies (pivq.sample.register); it is\n"
  .. "code and runs with your rights, like a recipe (checkpoints are data and never execute)")
parser:option("--dataset", "held-out images and bank of this dataset (default: the model's own)")
parser:option("--features", "feature space: classifier | random | pixels", "classifier")
parser:option("--features-ckpt", "classifier checkpoint (default: the dataset's, from `pivq train-features`: "
  .. pivq.features.DEFAULT_CLASSIFIER .. " for Fashion-MNIST)")
parser:option("--test-images", "held-out images used", "2000"):convert(tonumber)
parser:option("--k", "PRDC neighbourhood size", "5"):convert(tonumber)
parser:option("--bank-limit", "encode only the first N training images into the bank"):convert(tonumber)
parser:option("--seed", "seed", "1"):convert(tonumber)
parser:option("--out", "metrics JSON (default: beside the checkpoint)")
parser:option("--precision",
  "fp32 | bf16: matmuls, linear layers, attention, convolutions in bf16 with fp32 accumulation\n"
  .. "(fp32, with a warning, where the CPU has no bf16)", "fp32")
parser:option("--compare", "print the metrics of several runs side by side"):args("+")
parser:option("--train-images", "training images searched for each sample's nearest neighbour (the\n"
  .. "memorisation check; default: the whole training split)"):convert(tonumber)
parser:flag("--no-memorisation", "skip the memorisation check (nearest training image of each sample)")
parser:flag("--sweep-exchange", "the fidelity-diversity curve instead of the usual report: PRDC and the copy\n"
  .. "share of `exchange` samples at each --fractions (JSON, PNG and SVG beside --out)")
parser:option("--fractions", "fractions of the differing codes exchanged, for --sweep-exchange",
  "0,0.1,0.2,0.3,0.4,0.5")
local args = parser:parse(arg)
require("pivq.core.precision").use(args.precision, "pivq eval")

local ROWS = { "quantizer", "readout", "L", "K", "psnr", "ssim", "mse", "usage", "perplexity", "K_img",
  "bits_matching", "bits_nearest", "capacity_ratio", "slot_nmi", "slot_owned", "code_entropy", "code_entropy_max",
  "match_differ", "jaccard_mean", "jaccard_median", "features", "prdc_strategy" }
for _, strategy in ipairs({ "pair", "mix", "marginal", "uniform", "slot_marginal" }) do
  for _, key in ipairs({ "precision", "recall", "density", "coverage", "copy_share", "median_ratio" }) do
    ROWS[#ROWS + 1] = strategy .. "_" .. key
  end
end
ROWS[#ROWS + 1] = "copy_threshold"
ROWS[#ROWS + 1] = "heldout_nn_median"

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

-- counts that cannot work, refused before the model loads, naming the option (--samples 0 skips PRDC)
require("pivq.core.argcheck").counts("pivq eval", args, { "test_images", "bank_limit", "train_images" })
local fractions = {}
for f in args.fractions:gmatch("[^,]+") do
  local v = tonumber(f)
  if not v or v ~= v or v < 0 or v > 1 then
    io.stderr:write("pivq eval: --fractions must be numbers in 0..1 separated by commas, got '", f, "'\n")
    return 2
  end
  fractions[#fractions + 1] = v
end
if args.sweep_exchange and args.samples < 1 then
  io.stderr:write("pivq eval: --sweep-exchange needs --samples >= 1\n")
  return 2
end
require("pivq.core.argcheck").counts("pivq eval", args, { "samples" }, 0)

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

local recipe = require "pivq.display.recipe"
local loaded, load_code = recipe.load_strategy_file("pivq eval", pivq.sample, args.strategy_file)
if not loaded then return load_code end
local model, err_code = recipe.load_model("pivq eval", args.ckpt)
if not model then return err_code end
local layouts = require "pivq.data.layouts"
local desc, test, derr = layouts.for_model(model, args.dataset)
if desc then test, derr = layouts.open(desc, "test") end
if not test then
  io.stderr:write("pivq eval: ", derr, "\n")
  return 1
end
print(string.format("data: %s (%s), %d held-out images", desc.path, desc.kind, test.images:size(1)))
local fx
if args.samples > 0 then
  local ferr
  local fpath = args.features_ckpt or pivq.features.default_path(desc)
  fx, ferr = pivq.features.extractor(args.features, { path = fpath, channels = model.config.channels,
    size = model.config.image_size })
  if not fx then
    io.stderr:write("pivq eval: ", ferr, desc.kind ~= "fashion-mnist" and (" (`pivq train-features --dataset "
      .. desc.path .. " --image-size " .. desc.image_size .. "`; or --features random)") or "", "\n")
    return 1
  end
  print("features: " .. fx.describe)
end
local strategies = {}
for name in args.strategy:gmatch("[^,]+") do
  strategies[#strategies + 1] = name
  -- a strategy from --strategy-file gets its rows in the table too
  local known = false
  for _, row in ipairs(ROWS) do known = known or row == name .. "_precision" end
  if not known then
    for _, key in ipairs({ "precision", "recall", "density", "coverage", "copy_share", "median_ratio" }) do
      ROWS[#ROWS + 1] = name .. "_" .. key
    end
  end
end
local known_strategies = pivq.sample.list()
for _, name in ipairs(strategies) do
  if not known_strategies[name] then
    local names = {}
    for k in pairs(known_strategies) do names[#names + 1] = k end
    table.sort(names)
    io.stderr:write(string.format("pivq eval: unknown strategy '%s' (known: %s)\n", name, table.concat(names, ", ")))
    return 2
  end
end
local bank = args.samples > 0 and model:bank({ limit = args.bank_limit, data = args.dataset and desc or nil }) or nil
-- the memorisation check's reference: the training split in the same feature space
local train_features
if args.samples > 0 and not args.no_memorisation then
  local train, terr = layouts.open(desc, "train")
  if not train then
    io.stderr:write("pivq eval: ", terr, "\n")
    return 1
  end
  local nt = math.min(args.train_images or train.images:size(1), train.images:size(1))
  train_features = fx.fn(train.images:narrow(1, 1, nt))
  print(string.format("memorisation: nearest neighbours among %d training images (%s)", nt, fx.name))
end
-- the JSON, and beside it (its name without .json) the PNG and SVG figures
local json_path = args.out or (args.ckpt:match("^(.*)/[^/]*$") or ".") .. "/"
  .. (args.sweep_exchange and "sweep" or "eval") .. ".json"
local base = json_path:gsub("%.json$", "")
local stamp = { dataset = desc.path, dataset_kind = desc.kind, checkpoint = args.ckpt,
  checkpoint_hash = pivq.bank.file_hash(args.ckpt) }

if args.sweep_exchange then
  local sw = pivq.report.sweep_exchange(model, { test = test, test_images = args.test_images, samples = args.samples,
    features = fx, k = args.k, seed = args.seed, bank = bank, train_features = train_features, fractions = fractions })
  for k, v in pairs(stamp) do sw[k] = v end
  sw.quantizer, sw.L, sw.K = model.config.mode, model.config.L, model.config.K
  pivq.files.write_or_fail("eval", json_path, json.encode(sw, { indent = true }) .. "\n")
  local keys = { "precision", "recall", "density", "coverage", "copy_share" }
  local series = {}
  for _, key in ipairs(keys) do
    local x, y = {}, {}
    for j, row in ipairs(sw.rows) do x[j], y[j] = row.fraction, row[key] end
    if #y == #x then -- copy_share is missing with --no-memorisation
      series[#series + 1] = { name = key, x = x, y = y, marker = true }
    end
  end
  -- the same spec as PNG (pivq.display.raster) and SVG (pivq.plot)
  local spec = { title = string.format("%s L=%d K=%d: PRDC vs fraction exchanged", model.config.mode,
    model.config.L, model.config.K), xlabel = "fraction of differing codes exchanged", ylabel = "value", ymin = 0,
    series = series }
  local ok, err = require("pivq.display.raster").save_plot(base .. ".png", spec)
  if not ok then error("eval: " .. tostring(err), 0) end
  ok, err = pivq.plot.save(base .. ".svg", spec)
  if not ok then error("eval: " .. tostring(err), 0) end
  print(string.format("%-9s %9s %9s %9s %9s %10s %12s", "fraction", "precision", "recall", "density", "coverage",
    "copy_share", "median_ratio"))
  local function line(label, row)
    print(string.format("%-9s %9.4f %9.4f %9.4f %9.4f %10s %12s", label, row.precision, row.recall, row.density,
      row.coverage, row.copy_share and string.format("%.4f", row.copy_share) or "-",
      row.median_ratio and string.format("%.4f", row.median_ratio) or "-"))
  end
  for _, row in ipairs(sw.rows) do line(string.format("%.2f", row.fraction), row) end
  line("parents", sw.parents)
  print("sweep: " .. json_path .. ", " .. base .. ".png, " .. base .. ".svg")
  return 0
end

local r = pivq.report.evaluate(model, { test = test, test_images = args.test_images, samples = args.samples,
  strategies = strategies, features = fx, k = args.k, seed = args.seed, bank = bank,
  train_features = train_features })
for k, v in pairs(stamp) do r[k] = v end
-- flat keys (pair_precision, marginal_coverage, pair_copy_share, ...) for the table, the JSON and --compare
local report = {}
for k, v in pairs(r) do if k ~= "prdc" and k ~= "nn_distances" then report[k] = v end end
for name, m in pairs(r.prdc or {}) do
  for _, key in ipairs({ "precision", "recall", "density", "coverage" }) do report[name .. "_" .. key] = m[key] end
end
for name, m in pairs(r.memorisation or {}) do
  report[name .. "_copy_share"], report[name .. "_median_ratio"] = m.copy_share, m.median_ratio
  report.copy_threshold, report.heldout_nn_median = m.threshold, m.heldout_median
end
report.prdc_strategy = r.prdc and table.concat(strategies, ",") or nil
if r.jaccard then -- the table's rows; the JSON keeps the quantiles and the histogram
  report.jaccard_mean = r.jaccard.mean
  for _, q in ipairs(r.jaccard.quantiles) do
    if q.q == 0.5 then report.jaccard_median = q.value end
  end
end
pivq.files.write_or_fail("eval", json_path, json.encode(report, { indent = true }) .. "\n")
if r.nn_distances then
  local groups, names = { { name = "HELD-OUT", values = r.nn_distances.heldout } }, {}
  for name in pairs(r.nn_distances) do
    if name ~= "heldout" then names[#names + 1] = name end
  end
  table.sort(names)
  for _, name in ipairs(names) do groups[#groups + 1] = { name = name:upper(), values = r.nn_distances[name] } end
  local ok, err = pivq.charts.save(base .. "-memorisation.png", pivq.charts.histogram(groups, {
    title = "NEAREST TRAINING IMAGE - RED 5TH PERCENTILE OF HELD-OUT", threshold = report.copy_threshold }))
  if not ok then error("eval: " .. tostring(err), 0) end
  print("memorisation histogram: " .. base .. "-memorisation.png")
end
print_table({ args.ckpt }, { report })
if r.jaccard then
  local qs = {}
  for _, q in ipairs(r.jaccard.quantiles) do qs[#qs + 1] = string.format("q%g %.3f", 100 * q.q, q.value) end
  print(string.format("Jaccard similarity of the code sets of %d pairs of %d held-out images: %s",
    r.jaccard.pairs, r.jaccard.images, table.concat(qs, ", ")))
  print(pivq.diagnostics.format_histogram(r.jaccard.histogram))
end
print("metrics: " .. json_path)
return 0
