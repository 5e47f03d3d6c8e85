-- train-features: train the classifier CNN whose penultimate layer is pivq eval's feature space
local argparse = require "argparse"
local pivq = require "pivq"
local features = require "pivq.features"

local parser = argparse("pivq train-features", "Train a small CNN on Fashion-MNIST's labels; `pivq eval "
  .. "--features classifier` uses its 128-d penultimate layer.")
parser:option("--out", "checkpoint to write", features.DEFAULT_CLASSIFIER)
parser:option("--epochs", "epochs", "2"):convert(tonumber)
parser:option("--batch", "batch size", "128"):convert(tonumber)
parser:option("--lr", "learning rate (Adam)", "2e-3"):convert(tonumber)
parser:option("--seed", "seed", "1"):convert(tonumber)
local args = parser:parse(arg)

local train = assert(pivq.data.fashion_mnist { split = "train" })
local test = assert(pivq.data.fashion_mnist { split = "test" })
local g = pivq.Generator(args.seed)
local body, head = features.classifier_net(1, 28, 10, g)
local params = {}
for _, p in ipairs(body:parameters()) do params[#params + 1] = p end
for _, p in ipairs(head:parameters()) do params[#params + 1] = p end
local opt = pivq.optim.Adam(params, { lr = args.lr })
local loader = pivq.data.loader(train, { batch = args.batch, seed = args.seed })
local t0 = pivq.clock()
for epoch = 1, args.epochs do
  local total, n = 0, 0
  for b in loader:iter(epoch) do
    local loss = pivq.F.cross_entropy(head(body(b.images)), b.labels)
    loss:backward()
    opt:step()
    opt:zero_grad()
    total, n = total + loss:item(), n + 1
  end
  print(string.format("epoch %d: loss %.4f (%.0f s)", epoch, total / n, pivq.clock() - t0))
end
body:train(false)
head:train(false)
local correct = 0
pivq.no_grad(function()
  for s = 1, test.images:size(1), 1000 do
    local x = test.images:narrow(1, s, 1000)
    local _, pred = head(body(x)):max(2)
    correct = correct + pred:eq(test.labels:narrow(1, s, 1000)):sum():item()
  end
end)
local acc = correct / test.images:size(1)
os.execute("mkdir -p '" .. (args.out:match("^(.*)/[^/]*$") or ".") .. "'")
local tensors = {}
for k, t in pairs(body:state_dict()) do tensors["body." .. k] = t end
for k, t in pairs(head:state_dict()) do tensors["head." .. k] = t end
assert(pivq.save(args.out, tensors, { channels = "1", size = "28", classes = "10",
  test_accuracy = string.format("%.4f", acc), kind = "pivq-features-classifier" }))
print(string.format("test accuracy %.2f%% -> %s (crc32 %s)", 100 * acc, args.out, pivq.bank.file_hash(args.out)))
return 0
