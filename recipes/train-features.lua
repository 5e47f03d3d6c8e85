-- train-features: train the classifier CNN whose penultimate layer is pivq eval's feature space
local argparse = require "argparse"
local features = require "pivq.eval.features"

local parser = argparse("pivq train-features", "Train a small CNN on Fashion-MNIST's labels; `pivq eval "
  .. "--features classifier` uses its 128-d penultimate layer.")
parser:option("--out", "checkpoint to write", features.DEFAULT_CLASSIFIER)
parser:option("--epochs", "epochs", "2"):convert(tonumber)
parser:option("--batch", "batch size", "128"):convert(tonumber)
parser:option("--lr", "learning rate (Adam)", "2e-3"):convert(tonumber)
parser:option("--seed", "seed", "1"):convert(tonumber)
local args = parser:parse(arg)

local acc, hash = features.train_classifier { out = args.out, epochs = args.epochs, batch = args.batch, lr = args.lr,
  seed = args.seed }
print(string.format("test accuracy %.2f%% -> %s (crc32 %s)", 100 * acc, args.out, hash))
return 0
