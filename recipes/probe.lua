-- probe: linear probe from bags of codes to labels (5-fold CV, beside the majority baseline), or
-- with --attributes one logistic regression per binary attribute (the paper's Figure 5)
local argparse = require "argparse"
local json = require "dkjson"
local pivq = require "pivq"

local parser = argparse("pivq probe", "Logistic regression (L2, L-BFGS) from each image's bag of codes (K counts),\n"
  .. "k-fold cross-validated on held-out images, beside the majority-class baseline: to the class label\n"
  .. "(softmax), or with --attributes to each binary attribute (Figure 5: JSON and a bar chart PNG).")
parser:option("--ckpt", "model checkpoint"):args(1)
parser:option("--dataset", "held-out images of this dataset (default: the model's own): fashion-mnist or a folder")
parser:flag("--attributes", "one probe per binary attribute (the dataset's list_attr_celeba.txt)")
parser:option("--images", "held-out images used", "10000"):convert(tonumber)
parser:option("--folds", "cross-validation folds", "5"):convert(tonumber)
parser:option("--l2", "L2 weight", "1e-3"):convert(tonumber)
parser:flag("--binary", "indicator features instead of counts")
parser:option("--seed", "seed of the fold split", "1"):convert(tonumber)
parser:option("--out", "with --attributes: JSON to write (the chart is its .png twin; default: beside the "
  .. "checkpoint, probe_attributes.json)")
local args = parser:parse(arg)
require("pivq.core.argcheck").counts("pivq probe", args, { "images", "folds" }) -- before the model loads

local function fail(code, ...)
  io.stderr:write("pivq probe: ", ...)
  io.stderr:write("\n")
  return code
end

local model, err_code = require("pivq.display.recipe").load_model("pivq probe", args.ckpt)
if not model then return err_code end
local layouts = require "pivq.data.layouts"
local desc, derr = layouts.for_model(model, args.dataset)
if not desc then return fail(1, derr) end
local test, terr = layouts.open(desc, "test")
if not test then return fail(1, terr) end
local n = math.min(args.images, test.images:size(1))
if n < args.folds then return fail(1, string.format("%d held-out images, fewer than %d folds", n, args.folds)) end
local codes = pivq.bank.encode_all(model, test.images:narrow(1, 1, n))
local X = pivq.probe.bag_of_codes(codes, model.config.K, { binary = args.binary })
local t0 = pivq.clock()
local what = string.format("%d held-out images of %s (%d-fold CV, bag of %d codes, %s)", n, desc.path, args.folds,
  model.config.K, args.binary and "indicators" or "counts")

if args.attributes then
  if not test.attributes then
    return fail(1, desc.path, " has no attribute file (list_attr_celeba.txt): --attributes needs one")
  end
  local rows = pivq.probe.attributes(X, test.attributes:narrow(1, 1, n), test.attribute_names,
    { folds = args.folds, l2 = args.l2, seed = args.seed })
  print("per-attribute probe on " .. what)
  print(string.format("%-22s %16s %16s %9s", "attribute", "probe", "majority", "positive"))
  local sum_a, sum_b = 0, 0
  for _, r in ipairs(rows) do
    print(string.format("%-22s %9.2f%% ± %4.2f %9.2f%% ± %4.2f %8.1f%%", r.name, 100 * r.accuracy_mean,
      100 * r.accuracy_std, 100 * r.baseline_mean, 100 * r.baseline_std, 100 * r.positive))
    sum_a, sum_b = sum_a + r.accuracy_mean, sum_b + r.baseline_mean
  end
  print(string.format("%-22s %9.2f%%        %9.2f%%   (%.1f s)", "mean", 100 * sum_a / #rows, 100 * sum_b / #rows,
    pivq.clock() - t0))
  local out = args.out or ((args.ckpt:match("^(.*)/[^/]*$") or ".") .. "/probe_attributes.json")
  local png = out:gsub("%.json$", "") .. ".png"
  local ok, werr = pivq.files.write_text(out, json.encode({ checkpoint = args.ckpt,
    checkpoint_hash = pivq.bank.file_hash(args.ckpt), dataset = desc, images = n, folds = args.folds,
    l2 = args.l2, features = args.binary and "indicators" or "counts", attributes = rows,
    accuracy_mean = sum_a / #rows, baseline_mean = sum_b / #rows }, { indent = true }) .. "\n")
  if not ok then return fail(1, werr) end
  ok, werr = require("pivq.eval.figure5").save(png, rows)
  if not ok then return fail(1, werr) end
  print("wrote " .. out .. " and " .. png)
  return 0
end

if not test.labels then
  return fail(1, desc.path, " has no class labels; use --attributes for its binary attributes")
end
local y = test.labels:narrow(1, 1, n)
local r = pivq.probe.cross_validate(X, y, { folds = args.folds, l2 = args.l2, seed = args.seed })
print(string.format("linear probe on %s: accuracy %.2f%% ± %.2f", what, 100 * r.accuracy_mean, 100 * r.accuracy_std))
print(string.format("majority-class baseline: %.2f%% ± %.2f   (%.1f s)", 100 * r.baseline_mean, 100 * r.baseline_std,
  pivq.clock() - t0))
return 0
