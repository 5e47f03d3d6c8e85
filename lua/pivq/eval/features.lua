-- pivq.features: feature spaces for PRDC (no downloaded weights exist offline; notebooks/METHOD.md).
--
--   pivq.features.extractor("classifier", {path =})  a CNN trained by `pivq train-features` on the
--                                                     dataset's own training split (labels, or its
--                                                     binary attributes); penultimate layer (128-d)
--   pivq.features.extractor("random", {seed = 0})     the same CNN with fixed-seed random weights
--                                                     (suggested by Naeem et al. 2020)
--   pivq.features.extractor("pixels")                 the raw pixels
-- An extractor is {name =, hash =, describe = "...", fn = function(images) -> N x d features}; the
-- classifier's also has logits = function(images) -> N x classes, targets ("classes" or
-- "attributes") and classes.
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
    -- the head too: pivq edit reads the classifier's verdict (logits), not only its features
    local classes = tonumber(meta.classes) or 10
    local head = nn.Linear(128, classes, { generator = random.Generator(0) }) -- overwritten by the checkpoint's
    local hd = {}
    for k, t in pairs(tensors) do
      local short = k:match("^head%.(.+)$")
      if short then hd[short] = t end
    end
    local has_head = next(hd) ~= nil
    if has_head then
      head:load_state_dict(hd)
      head:train(false)
    end
    local hash = require("pivq.quant.bank").file_hash(path)
    return { name = "classifier", hash = hash, path = path, targets = meta.targets or "classes", classes = classes,
      logits = has_head and function(images)
        return autograd.no_grad(function() return batched(function(x) return head(body(x)) end, images, 500) end)
      end or nil,
      describe = string.format("%s classifier CNN %s (crc32 %s, held-out accuracy %s, penultimate layer, 128-d)",
        meta.targets == "attributes" and "attribute" or "label", path, hash, meta.test_accuracy or "?"),
      fn = function(images) return autograd.no_grad(function() return batched(body, images, 500) end) end }
  end
  return nil, "features: unknown extractor '" .. tostring(name) .. "' (classifier, random, pixels)"
end

-- The default classifier checkpoint for a dataset description: DEFAULT_CLASSIFIER for
-- Fashion-MNIST, else runs/features/classifier-<kind>-<crc32 of its folder and size>.safetensors.
function M.default_path(desc)
  if not desc or desc.kind == "fashion-mnist" then return M.DEFAULT_CLASSIFIER end
  local key = string.format("%s|%d|%d|%s", desc.path, desc.image_size, desc.crop or 0, desc.background or "")
  local crc = tonumber(require("pivq.core.ffi").C.crc32(0, key, #key))
  return string.format("runs/features/classifier-%s-%08x.safetensors", desc.kind, crc)
end

-- The classifier's targets: Fashion-MNIST's labels (softmax), or the dataset's binary
-- attributes (one sigmoid per attribute: the attribute classifier), or nil, err.
local function targets_of(ds)
  if ds.labels then return "classes", ds.labels end
  if ds.attributes then return "attributes", ds.attributes:float():add(1):mul(0.5) end -- -1/+1 -> 0/1
  return nil, "features: the dataset has neither labels nor attributes to train a classifier on "
    .. "(give it a list_attr_celeba.txt, or use --features random)"
end

-- Train the classifier CNN on a dataset's own training split and save it (the
-- `pivq train-features` recipe and `pivq reproduce` call this). opts: dataset (a description,
-- pivq.data.layouts; default Fashion-MNIST), out (default_path(dataset)), epochs (2), batch
-- (128), lr (2e-3, Adam), seed (1), log (print). Fashion-MNIST trains on its labels; a dataset
-- with attributes trains one logistic output per attribute (CelebA's 40). Returns held-out
-- accuracy (mean over attributes), checkpoint hash, path.
function M.train_classifier(opts)
  opts = opts or {}
  local data, optim, F = require "pivq.data.datasets", require "pivq.nn.optim", require "pivq.nn.F"
  local layouts = require "pivq.data.layouts"
  local desc = opts.dataset or layouts.describe("fashion-mnist")
  local out, epochs, log = opts.out or M.default_path(desc), opts.epochs or 2, opts.log or print
  local train, terr = layouts.open(desc, "train")
  if not train then return nil, terr end
  local test, err2 = layouts.open(desc, "test")
  if not test then return nil, err2 end
  local kind, y = targets_of(train)
  if not kind then return nil, y end
  local _, ytest = targets_of(test)
  local classes = kind == "classes" and 10 or y:size(2)
  local channels, size = desc.channels, desc.image_size
  local body, head = M.classifier_net(channels, size, classes, random.Generator(opts.seed or 1))
  local params = {}
  for _, p in ipairs(body:parameters()) do params[#params + 1] = p end
  for _, p in ipairs(head:parameters()) do params[#params + 1] = p end
  local opt = optim.Adam(params, { lr = opts.lr or 2e-3 })
  local loader = data.loader({ images = train.images, labels = y }, { batch = opts.batch or 128,
    seed = opts.seed or 1 })
  local t0 = require("pivq.core.clock")()
  for epoch = 1, epochs do
    local total, n = 0, 0
    for b in loader:iter(epoch) do
      local logits = head(body(b.images))
      local loss = kind == "classes" and F.cross_entropy(logits, b.labels)
        or F.binary_cross_entropy_with_logits(logits, b.labels)
      loss:backward()
      opt:step()
      opt:zero_grad()
      total, n = total + loss:item(), n + 1
    end
    log(string.format("epoch %d: loss %.4f (%.0f s)", epoch, total / math.max(n, 1),
      require("pivq.core.clock")() - t0))
  end
  loader:close()
  body:train(false)
  head:train(false)
  local correct, N = 0, test.images:size(1)
  autograd.no_grad(function()
    for s = 1, N, 500 do
      local m = math.min(500, N - s + 1)
      local x = test.images:narrow(1, s, m)
      if x:dtype() == "uint8" then x = x:float() / 255 end
      local logits = head(body(x))
      if kind == "classes" then
        local _, pred = logits:max(2)
        correct = correct + pred:eq(ytest:narrow(1, s, m)):sum():item()
      else
        local pred = logits:gt(0):float()
        correct = correct + pred:eq(ytest:narrow(1, s, m)):float():mean(2):sum():item()
      end
    end
  end)
  local acc = correct / N
  local files = require "pivq.data.files"
  local dir_ok, derr = files.mkdir_p(files.parent(out))
  if not dir_ok then return nil, derr end
  local tensors = {}
  for k, t in pairs(body:state_dict()) do tensors["body." .. k] = t end
  for k, t in pairs(head:state_dict()) do tensors["head." .. k] = t end
  local ok, werr = files.save(out, tensors, { channels = tostring(channels),
    size = tostring(size), classes = tostring(classes), targets = kind, dataset = desc.path,
    test_accuracy = string.format("%.4f", acc), kind = "pivq-features-classifier" })
  if not ok then return nil, werr end
  return acc, require("pivq.quant.bank").file_hash(out), out
end

return M
