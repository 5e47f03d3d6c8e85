-- probe: linear probe from bags of codes to labels (5-fold CV, beside the majority baseline)
local argparse = require "argparse"
local pivq = require "pivq"

local parser = argparse("pivq probe", "Multinomial logistic regression (L2, L-BFGS) from each image's bag of\n"
  .. "codes (K counts) to its label, k-fold cross-validated, reported beside the majority-class baseline.")
parser:option("--ckpt", "model checkpoint"):args(1)
parser:option("--images", "test images used", "10000"):convert(tonumber)
parser:option("--folds", "cross-validation folds", "5"):convert(tonumber)
parser:option("--l2", "L2 weight", "1e-3"):convert(tonumber)
parser:flag("--binary", "indicator features instead of counts")
parser:option("--seed", "seed of the fold split", "1"):convert(tonumber)
local args = parser:parse(arg)
require("pivq.core.argcheck").counts("pivq probe", args, { "images", "folds" }) -- before the model loads

local model, err_code = require("pivq.display.recipe").load_model("pivq probe", args.ckpt)
if not model then return err_code end
local test = assert(pivq.data.fashion_mnist { split = "test" })
local n = math.min(args.images, test.images:size(1))
local codes = pivq.bank.encode_all(model, test.images:narrow(1, 1, n))
local X = pivq.probe.bag_of_codes(codes, model.config.K, { binary = args.binary })
local y = test.labels:narrow(1, 1, n)
local t0 = pivq.clock()
local r = pivq.probe.cross_validate(X, y, { folds = args.folds, l2 = args.l2, seed = args.seed })
print(string.format("linear probe on %d test images (%d-fold CV, bag of %d codes, %s): accuracy %.2f%% ± %.2f",
  n, args.folds, model.config.K, args.binary and "indicators" or "counts", 100 * r.accuracy_mean, 100 * r.accuracy_std))
print(string.format("majority-class baseline: %.2f%% ± %.2f   (%.1f s)", 100 * r.baseline_mean, 100 * r.baseline_std,
  pivq.clock() - t0))
return 0
