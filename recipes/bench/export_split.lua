-- recipes/bench/export_split.lua DATASET IMAGE_SIZE OUT_PREFIX: the train and held-out splits of a
-- dataset (pivq.data.layouts, as `pivq train --dataset` sees them) as OUT_PREFIX-train.safetensors
-- and OUT_PREFIX-test.safetensors (uint8 `images`), so that recipes/bench/train_torch.py's quality
-- mode trains and evaluates on exactly the same pixels.
local pivq = require "pivq"
local layouts = require "pivq.data.layouts"

local dataset, size, prefix = arg[1], tonumber(arg[2] or "64"), arg[3]
if not dataset or not prefix then
  io.stderr:write("usage: pivq recipes/bench/export_split.lua DATASET IMAGE_SIZE OUT_PREFIX\n")
  return 2
end
local desc = assert(layouts.describe(dataset, { image_size = size }))
for _, split in ipairs({ "train", "test" }) do
  local ds = assert(layouts.open(desc, split))
  assert(pivq.save(prefix .. "-" .. split .. ".safetensors", { images = ds.images }))
  print(string.format("%s: %d images -> %s-%s.safetensors", split, ds.n, prefix, split))
end
return 0
