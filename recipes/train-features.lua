-- train-features: train the classifier CNN whose penultimate layer is pivq eval's feature space, on a
-- dataset's own training split (Fashion-MNIST's labels, or a folder's binary attributes)
local argparse = require "argparse"
local features = require "pivq.eval.features"
local layouts = require "pivq.data.layouts"

local parser = argparse("pivq train-features", "Train a small CNN on a dataset's training split: Fashion-MNIST's "
  .. "labels,\n"
  .. "or the binary attributes of a folder (list_attr_celeba.txt: an attribute classifier). `pivq eval\n"
  .. "--features classifier` uses its 128-d penultimate layer and names it with its CRC-32.")
parser:option("--dataset", "fashion-mnist or a folder (default: the model's own with --ckpt, else fashion-mnist)")
parser:option("--ckpt", "a model checkpoint whose dataset description to use")
parser:option("--image-size", "image side for a folder", "64"):convert(tonumber)
parser:option("--out", "checkpoint to write (default: the dataset's, where pivq eval looks)")
parser:option("--epochs", "epochs", "2"):convert(tonumber)
parser:option("--batch", "batch size", "128"):convert(tonumber)
parser:option("--lr", "learning rate (Adam)", "2e-3"):convert(tonumber)
parser:option("--seed", "seed", "1"):convert(tonumber)
local args = parser:parse(arg)

local function fail(...)
  io.stderr:write("pivq train-features: ", ...)
  io.stderr:write("\n")
  return 1
end

local desc, err
if args.ckpt then
  local model, code = require("pivq.display.recipe").load_model("pivq train-features", args.ckpt)
  if not model then return code end
  desc, err = layouts.for_model(model, args.dataset)
else
  local name = args.dataset or "fashion-mnist"
  desc, err = layouts.describe(name, name ~= "fashion-mnist" and { image_size = args.image_size } or nil)
end
if not desc then return fail(err) end
local acc, hash, out = features.train_classifier { dataset = desc, out = args.out, epochs = args.epochs,
  batch = args.batch, lr = args.lr, seed = args.seed }
if not acc then return fail(hash) end
print(string.format("held-out accuracy %.2f%% -> %s (crc32 %s)", 100 * acc, out, hash))
return 0
