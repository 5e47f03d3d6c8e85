-- pivq.features: feature spaces for PRDC (no downloaded weights exist offline; notebooks/METHOD.md).
--
--   pivq.features.extractor("classifier", {path =})  a CNN trained by `pivq train-features` on the
--                                                     dataset's labels; its penultimate layer (128-d)
--   pivq.features.extractor("random", {seed = 0})     the same CNN with fixed-seed random weights
--                                                     (suggested by Naeem et al. 2020)
--   pivq.features.extractor("pixels")                 the raw pixels
-- An extractor is {name =, hash =, describe = "...", fn = function(images) -> N x d features}.
-- Every report prints `describe`, which names the extractor and its checkpoint's hash.
local nn = require "pivq.nn"
local random = require "pivq.core.random"
local tensor = require "pivq.core.tensor"
local autograd = require "pivq.core.autograd"

local M = {}

M.DEFAULT_CLASSIFIER = "runs/features/classifier.safetensors"

-- The classifier CNN: two conv blocks and a 128-d penultimate layer.
function M.classifier_net(channels, size, classes, generator)
  local g = generator
  local flat = 64 * math.floor(size / 4) * math.floor(size / 4)
  local body = nn.Sequential(
    nn.Conv2d(channels, 32, 3, { padding = 1, generator = g }), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, { padding = 1, generator = g }), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(flat, 128, { generator = g }), nn.ReLU())
  local head = nn.Linear(128, classes, { generator = g })
  return body, head
end

local function batched(fn, images, batch)
  local out = {}
  for s = 1, images:size(1), batch do
    local x = images:narrow(1, s, math.min(batch, images:size(1) - s + 1))
    if x:dtype() == "uint8" then x = x:float() / 255 end
    out[#out + 1] = fn(x)
  end
  return tensor.cat(out, 1)
end

function M.extractor(name, opts)
  opts = opts or {}
  if name == "pixels" then
    return { name = "pixels", hash = "-", describe = "raw pixels",
      fn = function(images) return batched(function(x) return x:reshape(x:size(1), -1) end, images, 1000) end }
  end
  local channels, size = opts.channels or 1, opts.size or 28
  if name == "random" then
    local seed = opts.seed or 0
    local body = M.classifier_net(channels, size, 10, random.Generator(seed))
    body:train(false)
    return { name = "random", hash = "seed" .. seed,
      describe = string.format("random CNN (fixed seed %d, penultimate layer, 128-d)", seed),
      fn = function(images) return autograd.no_grad(function() return batched(body, images, 500) end) end }
  end
  if name == "classifier" then
    local path = opts.path or M.DEFAULT_CLASSIFIER
    local io_ = require "pivq.data.files"
    local tensors, meta = io_.load(path)
    if not tensors then
      return nil, string.format("features: no classifier at %s (%s); train one with `pivq train-features`", path, meta)
    end
    local body = M.classifier_net(tonumber(meta.channels) or channels, tonumber(meta.size) or size,
      tonumber(meta.classes) or 10)
    local sd = {}
    for k, t in pairs(tensors) do
      local short = k:match("^body%.(.+)$")
      if short then sd[short] = t end
    end
    body:load_state_dict(sd)
    body:train(false)
    local hash = require("pivq.quant.bank").file_hash(path)
    return { name = "classifier", hash = hash, path = path,
      describe = string.format("classifier CNN %s (crc32 %s, test accuracy %s, penultimate layer, 128-d)", path,
        hash, meta.test_accuracy or "?"),
      fn = function(images) return autograd.no_grad(function() return batched(body, images, 500) end) end }
  end
  return nil, "features: unknown extractor '" .. tostring(name) .. "' (classifier, random, pixels)"
end

-- Train the classifier CNN on Fashion-MNIST's labels and save it (the `pivq train-features` recipe
-- and `pivq reproduce` call this). opts: out (DEFAULT_CLASSIFIER), epochs (2), batch (128), lr
-- (2e-3, Adam), seed (1), log (print). Returns test accuracy, checkpoint hash.
function M.train_classifier(opts)
  opts = opts or {}
  local data, optim, F = require "pivq.data.datasets", require "pivq.nn.optim", require "pivq.nn.F"
  local out, epochs, log = opts.out or M.DEFAULT_CLASSIFIER, opts.epochs or 2, opts.log or print
  local train = assert(data.fashion_mnist { split = "train" })
  local test = assert(data.fashion_mnist { split = "test" })
  local body, head = M.classifier_net(1, 28, 10, random.Generator(opts.seed or 1))
  local params = {}
  for _, p in ipairs(body:parameters()) do params[#params + 1] = p end
  for _, p in ipairs(head:parameters()) do params[#params + 1] = p end
  local opt = optim.Adam(params, { lr = opts.lr or 2e-3 })
  local loader = data.loader(train, { batch = opts.batch or 128, seed = opts.seed or 1 })
  local t0 = require("pivq.core.clock")()
  for epoch = 1, epochs do
    local total, n = 0, 0
    for b in loader:iter(epoch) do
      local loss = F.cross_entropy(head(body(b.images)), b.labels)
      loss:backward()
      opt:step()
      opt:zero_grad()
      total, n = total + loss:item(), n + 1
    end
    log(string.format("epoch %d: loss %.4f (%.0f s)", epoch, total / n, require("pivq.core.clock")() - t0))
  end
  body:train(false)
  head:train(false)
  local correct = 0
  autograd.no_grad(function()
    for s = 1, test.images:size(1), 1000 do
      local x = test.images:narrow(1, s, 1000)
      local _, pred = head(body(x)):max(2)
      correct = correct + pred:eq(test.labels:narrow(1, s, 1000)):sum():item()
    end
  end)
  local acc = correct / test.images:size(1)
  local files = require "pivq.data.files"
  assert(files.mkdir_p(files.parent(out)))
  local tensors = {}
  for k, t in pairs(body:state_dict()) do tensors["body." .. k] = t end
  for k, t in pairs(head:state_dict()) do tensors["head." .. k] = t end
  assert(files.save(out, tensors, { channels = "1", size = "28", classes = "10",
    test_accuracy = string.format("%.4f", acc), kind = "pivq-features-classifier" }))
  return acc, require("pivq.quant.bank").file_hash(out)
end

return M
