-- pivq.bank: a code bank — every training image's codes under one checkpoint, built once and
-- cached beside the checkpoint (CKPT_DIR/codes.safetensors). Interpolation-based sampling
-- draws its parents from it; the REPL's m:images_with_code and m:code_usage read it.
--
-- A bank is {codes = N x L int64 (1-based), labels = N int64 or nil, K =, multiset =,
-- checkpoint_hash =}. The cache is rebuilt when the checkpoint's hash changes.
local ffi = require "ffi"
local tensor = require "pivq.core.tensor"
local io_ = require "pivq.data.files"

local M = {}

local registry = debug.getregistry()
if not registry["pivq.bank.crc32"] then
  ffi.cdef "unsigned long crc32(unsigned long crc, const unsigned char *buf, unsigned int len);"
  registry["pivq.bank.crc32"] = true
end

-- zlib's CRC-32 of a file, as 8 hex digits (identifies a checkpoint in caches and reports).
function M.file_hash(path)
  local f = io.open(path, "rb")
  if not f then return nil, "cannot open " .. tostring(path) end
  local crc = 0
  while true do
    local chunk = f:read(1048576)
    if not chunk then break end
    crc = ffi.C.crc32(crc, chunk, #chunk)
  end
  f:close()
  return string.format("%08x", tonumber(crc))
end

-- The training images a model was trained on (from its config), as float32 in [0, 1].
function M.dataset_of(model)
  local layouts = require "pivq.data.layouts"
  local desc, err = layouts.of_model(model)
  if not desc then return nil, err end
  return layouts.open(desc, "train")
end

-- Encode every image of dataset in batches (no gradients).
function M.encode_all(model, images, batch)
  batch = batch or 500
  local out = {}
  for s = 1, images:size(1), batch do
    local m = math.min(batch, images:size(1) - s + 1)
    local x = images:narrow(1, s, m)
    if x:dtype() == "uint8" then x = x:float() / 255 end
    out[#out + 1] = model:encode(x)
  end
  return tensor.cat(out, 1)
end

-- pivq.bank.load(model, {checkpoint =, path =, dataset =, data =, limit =}) -> bank (built and
-- cached if needed); dataset is an opened dataset, data a description (pivq.data.layouts) whose
-- training split is encoded (default: the model's own); limit encodes only the first `limit`
-- training images (quick looks). The cache is keyed by the checkpoint's hash and the data's folder.
function M.load(model, opts)
  opts = opts or {}
  local where = opts.data and opts.data.path or (opts.dataset and opts.dataset.dir) or ""
  local ckpt = opts.checkpoint or model.path
  local hash = ckpt and M.file_hash(ckpt) or nil
  local path = opts.path or (ckpt and (ckpt:match("^(.*)/[^/]*$") or ".") .. "/codes.safetensors")
  if path and hash then
    local tensors, meta = io_.load(path)
    if tensors and meta.checkpoint_hash == hash and (meta.limit or "") == tostring(opts.limit or "")
        and (meta.data or "") == where then
      return { codes = tensors.codes, labels = tensors.labels, K = model.config.K,
        multiset = model.config.mode ~= "matching", checkpoint_hash = hash, path = path }
    end
  end
  local ds = opts.dataset
  if not ds then
    local err
    if opts.data then
      ds, err = require("pivq.data.layouts").open(opts.data, "train")
    else
      ds, err = M.dataset_of(model)
    end
    if not ds then return nil, err end
  end
  local images, labels = ds.images, ds.labels
  if opts.limit and opts.limit < images:size(1) then
    images = images:narrow(1, 1, opts.limit)
    labels = labels and labels:narrow(1, 1, opts.limit)
  end
  local codes = M.encode_all(model, images)
  local bank = { codes = codes, labels = labels, K = model.config.K, multiset = model.config.mode ~= "matching",
    checkpoint_hash = hash, path = path, images = images }
  if path then
    local tensors = { codes = codes }
    if labels then tensors.labels = labels end
    local ok, err = io_.save(path, tensors, { checkpoint_hash = hash or "", L = tostring(codes:size(2)),
      limit = tostring(opts.limit or ""), data = where })
    if not ok then return nil, err end
  end
  return bank
end

return M
