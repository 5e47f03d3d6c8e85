-- pivq.data.layouts: datasets as first-class descriptions. A description is a plain table
-- (stored as JSON in every checkpoint, so eval, probe, sample, interpolate, reproduce,
-- train-features and demo find a model's own data) and opens into the tensors of a split.
--
--   layouts.describe(dataset, opts) -> desc      dataset: "fashion-mnist" or a folder
--   layouts.open(desc, split) -> dataset, or nil, err    split: "train" | "test" (held out)
--   layouts.detect(dir) -> kind                  "celeba" | "celeba-hq" | "ffhq" | "folder"
--
-- desc = {kind =, path = absolute folder, image_size =, channels =, crop =, background =,
--         split = {kind = "official" | "random" | "file", seed =, held_out =, file =},
--         attributes = path or nil}
--
-- The layouts, with their official files (see lua/README.md "Datasets"):
--   celeba     img_align_celeba/*.jpg, list_attr_celeba.txt, list_eval_partition.txt (at the
--              top, or in Img/, Anno/, Eval/ as the official archive has them); the official
--              partition (0 train, 1 validation, 2 test: "test" is partition 2); a centre crop
--              of 148 x 148 of the 178 x 218 photographs before resizing (as is customary)
--   celeba-hq  CelebA-HQ-img/*.jpg with CelebAMask-HQ-attribute-anno.txt (CelebAMask-HQ);
--              no official split: a seeded random held-out split
--   ffhq       numbered folders 00000/ ... of 00000.png ..., at the top, in images1024x1024/ or
--              in thumbnails128x128/; images 60000-69999 are held out when the folder has both
--              sides (the customary 60k/10k), else a seeded random split
--   folder     any folder of PNG/JPEG; a seeded random held-out split (10% by default), or a
--              split file (`split_file`: "relative/path.png 0" lines, 0 train, 1 validation,
--              2 test, as list_eval_partition.txt); attributes from `attributes` or a
--              list_attr_celeba.txt at the top
local datasets = require "pivq.data.datasets"
local image = require "pivq.data.image"
local random = require "pivq.core.random"

local M = {}

local KINDS = { ["fashion-mnist"] = true, celeba = true, ["celeba-hq"] = true, ffhq = true, folder = true }
M.CELEBA_CROP = 148

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function is_dir(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local ok, _, code = f:read(1)
  f:close()
  return ok == nil and code == 21 -- EISDIR
end

local function first_existing(dir, names)
  for _, n in ipairs(names) do
    if exists(dir .. "/" .. n) then return dir .. "/" .. n end
  end
  return nil
end

local function celeba_files(dir)
  return {
    images = first_existing(dir, { "img_align_celeba", "Img/img_align_celeba" }),
    attributes = first_existing(dir, { "list_attr_celeba.txt", "Anno/list_attr_celeba.txt" }),
    partition = first_existing(dir, { "list_eval_partition.txt", "Eval/list_eval_partition.txt" }),
  }
end

local function ffhq_root(dir)
  for _, sub in ipairs({ "", "/thumbnails128x128", "/images1024x1024" }) do
    if is_dir(dir .. sub .. "/00000") then return dir .. sub end
  end
  return nil
end

function M.detect(dir)
  if type(dir) ~= "string" then error("layouts.detect: dir must be a string", 2) end
  if dir == "fashion-mnist" then return "fashion-mnist" end
  local c = celeba_files(dir)
  if c.images and c.attributes then return "celeba" end
  if is_dir(dir .. "/CelebA-HQ-img") and exists(dir .. "/CelebAMask-HQ-attribute-anno.txt") then
    return "celeba-hq"
  end
  if ffhq_root(dir) then return "ffhq" end
  return "folder"
end

local DESCRIBE_KEYS = { kind = true, image_size = true, crop = true, background = true, seed = true,
  held_out = true, split_file = true, attributes = true, channels = true }

-- layouts.describe(dataset, {kind =, image_size =, crop =, background =, seed = 1,
-- held_out = 0.1, split_file =, attributes =, channels = 3})
function M.describe(dataset, opts)
  if type(dataset) ~= "string" or dataset == "" then
    error("layouts.describe: dataset must be \"fashion-mnist\" or a folder, got " .. tostring(dataset), 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("layouts.describe: opts must be a table", 2) end
  for k in pairs(opts) do
    if not DESCRIBE_KEYS[k] then error("layouts.describe: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local kind = opts.kind or M.detect(dataset)
  if not KINDS[kind] then
    error("layouts.describe: kind must be fashion-mnist, celeba, celeba-hq, ffhq or folder, got "
      .. tostring(kind), 2)
  end
  if kind == "fashion-mnist" then
    return { kind = kind, path = dataset ~= "fashion-mnist" and dataset or datasets.FASHION_MNIST_DIR,
      image_size = 28, channels = 1, split = { kind = "official" } }
  end
  if not is_dir(dataset) then return nil, "dataset: " .. dataset .. " is not a folder" end
  local abs, err = require("pivq.data.cache").absolute(dataset)
  if not abs then return nil, err end
  local size = opts.image_size or 64
  if type(size) ~= "number" or size % 1 ~= 0 or size < 1 then
    error("layouts.describe: image_size must be a positive integer, got " .. tostring(size), 2)
  end
  local crop = opts.crop or (kind == "celeba" and M.CELEBA_CROP or 0)
  if type(crop) ~= "number" or crop % 1 ~= 0 or crop < 0 then
    error("layouts.describe: crop must be a nonnegative integer, got " .. tostring(crop), 2)
  end
  local held = opts.held_out or 0.1
  if type(held) ~= "number" or not (held > 0 and held < 1) then
    error("layouts.describe: held_out must be a fraction in (0, 1), got " .. tostring(held), 2)
  end
  local seed = opts.seed or 1
  if type(seed) ~= "number" or seed % 1 ~= 0 or seed < 0 then
    error("layouts.describe: seed must be a nonnegative integer, got " .. tostring(seed), 2)
  end
  local _, bgname = image.background(opts.background, "layouts.describe", 2)
  local desc = { kind = kind, path = abs, image_size = size, channels = opts.channels or 3, crop = crop,
    background = bgname, split = { kind = "random", seed = seed, held_out = held } }
  if kind == "celeba" then
    local c = celeba_files(abs)
    if not c.partition then
      return nil, "dataset: " .. abs .. " is a CelebA folder without list_eval_partition.txt"
    end
    desc.images, desc.attributes = c.images, c.attributes
    desc.split = { kind = "official", file = c.partition }
  elseif kind == "celeba-hq" then
    desc.images, desc.attributes = abs .. "/CelebA-HQ-img", abs .. "/CelebAMask-HQ-attribute-anno.txt"
  elseif kind == "ffhq" then
    desc.images = ffhq_root(abs)
    desc.split.kind = "ffhq"
  else
    desc.images = abs
    desc.attributes = exists(abs .. "/list_attr_celeba.txt") and abs .. "/list_attr_celeba.txt" or nil
  end
  if opts.attributes then
    if type(opts.attributes) ~= "string" then error("layouts.describe: attributes must be a path", 2) end
    desc.attributes = opts.attributes
  end
  if opts.split_file then
    if type(opts.split_file) ~= "string" then error("layouts.describe: split_file must be a path", 2) end
    desc.split = { kind = "file", file = opts.split_file }
  end
  return desc
end

-- "name 0|1|2" lines (list_eval_partition.txt) -> {name = partition}, or nil, err
function M.read_partition(path)
  local f, oerr = io.open(path, "rb")
  if not f then return nil, "read_partition: " .. tostring(oerr) end
  local parts, n = {}, 0
  for line in f:lines() do
    n = n + 1
    if line:match("%S") then
      local name, p = line:match("^%s*(%S+)%s+([012])%s*$")
      if not name then
        f:close()
        return nil, string.format("read_partition: %s: line %d is not \"FILE 0|1|2\": %s", path, n,
          line:sub(1, 80))
      end
      parts[name] = tonumber(p)
    end
  end
  f:close()
  return parts
end

local function basename(p) return p:match("([^/]+)$") end

-- The files of the split, relative to desc.images, in sorted order.
local function split_files(desc, split)
  local all, err = image.list(desc.images)
  if not all then return nil, err end
  if #all == 0 then return nil, "dataset: no png/jpg/jpeg files under " .. desc.images end
  local s = desc.split
  local want_test = split == "test"
  local out = {}
  if s.kind == "official" or s.kind == "file" then
    local parts
    parts, err = M.read_partition(s.file)
    if not parts then return nil, err end
    for _, f in ipairs(all) do
      local p = parts[f] or parts[basename(f)]
      if p and ((want_test and p == 2) or (not want_test and p == 0)) then out[#out + 1] = f end
    end
    return out
  end
  if s.kind == "ffhq" then
    local low, high = {}, {}
    for _, f in ipairs(all) do
      local num = tonumber(basename(f):match("^(%d+)%."))
      if num and num >= 60000 then high[#high + 1] = f else low[#low + 1] = f end
    end
    if #low > 0 and #high > 0 then return want_test and high or low end
  end
  -- seeded random held-out split: the same files for a seed whatever the machine
  local n = #all
  local held = math.max(1, math.floor(n * (s.held_out or 0.1) + 0.5))
  if n < 2 then return nil, "dataset: " .. desc.images .. " holds one image: nothing to hold out" end
  held = math.min(held, n - 1)
  local perm = random.randperm(n, { generator = random.Generator(s.seed or 1) }):totable()
  local chosen = {}
  for i = 1, held do chosen[perm[i]] = true end
  for i, f in ipairs(all) do
    if (chosen[i] ~= nil) == want_test then out[#out + 1] = f end
  end
  return out
end

-- a description and a split name, checked for fname (raised at its caller's caller)
local function check_desc_split(fname, desc, split)
  if type(desc) ~= "table" or not KINDS[desc.kind] then
    error(fname .. ": desc must be a dataset description (layouts.describe)", 3)
  end
  if split ~= "train" and split ~= "test" then
    error(fname .. ": split must be \"train\" or \"test\", got " .. tostring(split), 3)
  end
end

-- layouts.files(desc, split) -> the split's file names (relative to desc.images, in dataset order:
-- row i of layouts.open's images is files[i]), or nil for a dataset without files (Fashion-MNIST's
-- IDX), or nil, err
function M.files(desc, split)
  check_desc_split("layouts.files", desc, split)
  if desc.kind == "fashion-mnist" then return nil end
  return split_files(desc, split)
end

-- layouts.background_of(name): a stored background name ("white", "black", "r,g,b") as
-- image.background takes it.
local function background_of(name)
  if name == "white" or name == "black" or name == nil then return name end
  local r, g, b = tostring(name):match("^([^,]+),([^,]+),([^,]+)$")
  return { tonumber(r), tonumber(g), tonumber(b) }
end
M.background_of = background_of

-- layouts.open(desc, split [, {lazy =, cache =, workers =}]) -> a dataset table (images N x C x S x
-- S uint8, files, attributes, attribute_names, description), or nil, err
function M.open(desc, split, opts)
  check_desc_split("layouts.open", desc, split)
  opts = opts or {}
  if desc.kind == "fashion-mnist" then
    local ds, err = datasets.fashion_mnist { split = split,
      path = desc.path ~= datasets.FASHION_MNIST_DIR and desc.path or nil }
    if ds then ds.description = desc end
    return ds, err
  end
  local files, err = split_files(desc, split)
  if not files then return nil, err end
  if #files == 0 then
    return nil, string.format("dataset: the %s split of %s is empty", split, desc.images)
  end
  local bg = background_of(desc.background)
  local ds
  ds, err = datasets.image_folder(desc.images, { files = files, size = desc.image_size,
    channels = desc.channels, crop = desc.crop, background = bg, attributes = desc.attributes,
    lazy = opts.lazy, cache = opts.cache, workers = opts.workers })
  if not ds then return nil, err end
  ds.description, ds.split = desc, split
  return ds
end

-- The description of a model's data (config.data, else the legacy config.dataset string).
function M.of_model(model)
  local cfg = model.config or {}
  if type(cfg.data) == "table" and KINDS[cfg.data.kind] then return cfg.data end
  local name = cfg.dataset or "fashion-mnist"
  return M.describe(name, name ~= "fashion-mnist" and { image_size = cfg.image_size } or nil)
end

-- The data a recipe uses for a model: `dataset` (a --dataset argument: "fashion-mnist" or a
-- folder, described with the model's image size) or else the model's own description.
-- Returns desc, or nil, err when the data cannot feed this model.
function M.for_model(model, dataset)
  local desc, err
  if dataset then
    if dataset == "fashion-mnist" then
      desc = M.describe(dataset)
    else
      local own = M.of_model(model) or {}
      desc, err = M.describe(dataset, { image_size = model.config.image_size,
        background = own.kind ~= "fashion-mnist" and background_of(own.background) or nil })
      if not desc then return nil, err end
    end
  else
    desc, err = M.of_model(model)
    if not desc then return nil, err end
  end
  local cfg = model.config
  if desc.image_size ~= cfg.image_size or desc.channels ~= cfg.channels then
    return nil, string.format("dataset %s (%s) gives %d x %d x %d images; the model takes %d x %d x %d",
      desc.path, desc.kind, desc.channels, desc.image_size, desc.image_size, cfg.channels, cfg.image_size,
      cfg.image_size)
  end
  return desc
end

return M
