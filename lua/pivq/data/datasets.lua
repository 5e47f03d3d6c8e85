-- pivq.data: datasets and the batch loader.
--
--   pivq.data.idx(path)                      an IDX file (MNIST family, raw or gzip) as a tensor
--   pivq.data.fashion_mnist{split=, path=}   {images = N x 1 x 28 x 28 float32 in [0,1],
--                                             labels = int64 1..10, classes = {...}, n = N}
--   pivq.data.image_folder(dir, opts)        aligned photos (CelebA-style) as N x C x S x S uint8
--   pivq.data.read_attributes(path)          a CelebA list_attr_celeba.txt table
--   pivq.data.loader(dataset, opts)          shuffled batches built by C worker threads
--
-- A dataset is a table with `images` (N x C x H x W, uint8 or float32) and optionally
-- `labels` and `attributes` (first dim N). Missing or corrupt files return nil, err; wrong
-- arguments raise.
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local tensor = require "pivq.core.tensor"
local io_ = require "pivq.data.files"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"
local image_ = require "pivq.data.image"

local C = state.C
local wrap = gc.wrap
local M = {}

local function last_error() return ffi.string(C.pivq_last_error()) end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- pivq.data.idx(path) -> tensor of the file's shape and dtype, or nil, err
function M.idx(path)
  if type(path) ~= "string" then error("idx: path must be a string", 2) end
  local p = C.pivq_idx_read(path)
  if p == nil then return nil, last_error() end
  return wrap(p)
end

-- ---- Fashion-MNIST ---------------------------------------------------------------------------

M.FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
M.FASHION_MNIST_CLASSES = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
  "Shirt", "Sneaker", "Bag", "Ankle boot" }

-- The file of a split, gzip-compressed or not.
local function find_idx(dir, stem)
  for _, name in ipairs({ stem .. ".gz", stem }) do
    local path = dir .. "/" .. name
    if file_exists(path) then return path end
  end
  return nil
end

function M.fashion_mnist(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("fashion_mnist: expected an options table", 2) end
  argcheck.keys("fashion_mnist", opts, { "split", "path" })
  local split = opts.split or "train"
  if split ~= "train" and split ~= "test" then
    error("fashion_mnist: split must be \"train\" or \"test\", got " .. tostring(split), 2)
  end
  local dir = opts.path or M.FASHION_MNIST_DIR
  if type(dir) ~= "string" then error("fashion_mnist: path must be a string, got " .. type(dir), 2) end
  local prefix = split == "train" and "train" or "t10k"
  local ipath = find_idx(dir, prefix .. "-images-idx3-ubyte")
  local lpath = find_idx(dir, prefix .. "-labels-idx1-ubyte")
  if not ipath or not lpath then
    local hint = opts.path and "" or
      " (install the Debian package dataset-fashion-mnist: apt-get install dataset-fashion-mnist)"
    return nil, string.format("fashion_mnist: %s/%s-%s-idx%s-ubyte[.gz] not found%s", dir, prefix,
      ipath and "labels" or "images", ipath and "1" or "3", hint)
  end
  local raw, err = M.idx(ipath)
  if not raw then return nil, err end
  local lab
  lab, err = M.idx(lpath)
  if not lab then return nil, err end
  local s = raw:size()
  if raw:dtype() ~= "uint8" or #s ~= 3 or s[2] ~= 28 or s[3] ~= 28 then
    return nil, string.format("fashion_mnist: %s holds %s %s, expected uint8 N x 28 x 28", ipath,
      raw:dtype(), argcheck.shape_string(raw))
  end
  if lab:dim() ~= 1 or lab:size(1) ~= s[1] then
    return nil, string.format("fashion_mnist: %s holds %s labels for %d images", lpath,
      argcheck.shape_string(lab), s[1])
  end
  if s[1] > 0 and (lab:max() > 9 or lab:min() < 0) then
    return nil, string.format("fashion_mnist: %s has labels outside 0..9", lpath)
  end
  local images = wrap(C.pivq_image_u8_to_float(raw.c))
  return {
    images = images:view(s[1], 1, 28, 28),
    labels = lab:long():add(1),
    classes = M.FASHION_MNIST_CLASSES,
    n = s[1],
    split = split,
  }
end

-- ---- CelebA-style attribute tables -----------------------------------------------------------

-- pivq.data.read_attributes(path) -> {names = {...}, files = {...}, index = {file = row},
-- values = int64 R x A of +1/-1}, or nil, err. Format: a count line, a line of attribute
-- names, then one line per file: "name v1 v2 ..." with each v +1 or -1.
function M.read_attributes(path)
  if type(path) ~= "string" then error("read_attributes: path must be a string", 2) end
  local f, oerr = io.open(path, "rb")
  if not f then return nil, "read_attributes: " .. tostring(oerr) end
  local text = f:read("*a")
  f:close()
  if not text then return nil, "read_attributes: cannot read " .. path end -- a folder opens, but does not read
  local lines = {}
  for line in text:gmatch("[^\r\n]+") do
    if line:match("%S") then lines[#lines + 1] = line end
  end
  local count = tonumber(lines[1] and lines[1]:match("^%s*(%d+)%s*$"))
  if not count then
    return nil, string.format("read_attributes: %s: line 1 must be the number of rows", path)
  end
  local names = {}
  for w in (lines[2] or ""):gmatch("%S+") do names[#names + 1] = w end
  if #names == 0 then
    return nil, string.format("read_attributes: %s: line 2 must name the attributes", path)
  end
  if #lines - 2 ~= count then
    return nil, string.format("read_attributes: %s: line 1 announces %d rows, the file has %d",
      path, count, #lines - 2)
  end
  local A = #names
  local values = tensor.empty({ count, A }, "int64")
  local p = values:data_ptr()
  local files, index = {}, {}
  for r = 1, count do
    local line = lines[r + 2]
    local name, rest = line:match("^%s*(%S+)(.*)$")
    local k = 0
    for v in rest:gmatch("%S+") do
      k = k + 1
      local x = (v == "1" or v == "+1") and 1 or (v == "-1" and -1 or nil)
      if not x or k > A then
        return nil, string.format("read_attributes: %s: line %d: %s", path, r + 2,
          k > A and string.format("more than %d values", A) or ("value " .. v .. " is not +1 or -1"))
      end
      p[(r - 1) * A + k - 1] = x
    end
    if k ~= A then
      return nil, string.format("read_attributes: %s: line %d has %d values, expected %d", path,
        r + 2, k, A)
    end
    if index[name] then
      return nil, string.format("read_attributes: %s: file %s appears twice (lines %d and %d)",
        path, name, index[name] + 2, r + 2)
    end
    files[r] = name
    index[name] = r
  end
  return { names = names, files = files, index = index, values = values }
end

-- ---- image folders ---------------------------------------------------------------------------

local function basename(p) return p:match("([^/]+)$") end

-- Rows of the attribute table for the dataset's files, joined by relative path, else by
-- file name. Every image needs a row; extra rows (a folder holding a subset) are fine.
local function join_attributes(table_, files, path)
  local rows, missing = {}, {}
  local by_base = {}
  for i, name in ipairs(table_.files) do
    local b = basename(name)
    by_base[b] = by_base[b] and -1 or i -- -1: ambiguous
  end
  for i, f in ipairs(files) do
    local r = table_.index[f]
    if not r then
      r = by_base[basename(f)]
      if r == -1 then
        return nil, string.format("image_folder: %s: file name %s matches several rows", path, f)
      end
    end
    if not r then missing[#missing + 1] = f end
    rows[i] = r
  end
  if #missing > 0 then
    return nil, string.format("image_folder: %d of %d images have no row in %s (first: %s)",
      #missing, #files, path, missing[1])
  end
  local idx = tensor.empty({ #files }, "int64")
  local p = idx:data_ptr()
  for i, r in ipairs(rows) do p[i - 1] = r - 1 end
  return wrap(C.pivq_index_select(table_.values.c, 0, idx.c))
end

local function string_array(list)
  local arr = ffi.new("const char*[?]", math.max(#list, 1))
  for i, s in ipairs(list) do arr[i - 1] = s end
  return arr
end

local CACHE_VERSION = "2"

local function float3(rgb) return ffi.new("float[3]", rgb[1], rgb[2], rgb[3]) end

-- pivq.data.image_folder(dir, {size = 64, channels = 3, crop = 0, background = "white",
-- cache = true, attributes = path, files = {...}, workers = 2, lazy = false}) -> {images = N x
-- C x S x S uint8, files = {...}, n = N, attributes =, attribute_names =}, or nil, err.
-- lazy = true decodes nothing now: the dataset has no images, and pivq.data.loader decodes
-- the files in its worker threads. Files are found recursively (png/jpg/jpeg) and sorted,
-- unless `files` lists them (paths relative to dir). Each image is composited over the
-- background (alpha), centre-cropped to a square (crop x crop source pixels, or the largest
-- when crop is 0) and area-resized. cache = true keeps the result in the user's cache folder
-- (pivq.data.cache: $PIVQ_CACHE_DIR, else $XDG_CACHE_HOME/pivq, else ~/.cache/pivq), keyed by
-- the folder's absolute path and the preparation, valid while no file's name, size or time
-- changes; nothing is ever written into dir. A path puts the cache there; false disables it.
function M.image_folder(dir, opts)
  if type(dir) ~= "string" then error("image_folder: dir must be a string", 2) end
  opts = argcheck.options("image_folder", opts, { "size", "channels", "workers", "attributes", "lazy", "cache",
    "crop", "background", "files" })
  if opts.attributes ~= nil and type(opts.attributes) ~= "string" then
    error("image_folder: attributes must be a path, got " .. type(opts.attributes), 2)
  end
  local size, channels, crop = opts.size or 64, opts.channels or 3, opts.crop or 0
  if type(size) ~= "number" or size % 1 ~= 0 or size < 1 then
    error("image_folder: size must be a positive integer, got " .. tostring(size), 2)
  end
  if type(crop) ~= "number" or crop % 1 ~= 0 or crop < 0 then
    error("image_folder: crop must be a nonnegative integer (0: the largest square), got "
      .. tostring(crop), 2)
  end
  if channels ~= 1 and channels ~= 3 then
    error("image_folder: channels must be 1 or 3, got " .. tostring(channels), 2)
  end
  local cache = opts.cache
  if cache == nil then cache = true end
  if type(cache) ~= "boolean" and type(cache) ~= "string" then
    error("image_folder: cache must be true, false or a file path, got " .. type(cache), 2)
  end
  local rgb, bgname = image_.background(opts.background, "image_folder", 2)
  local workers = opts.workers or 2
  local files, err = opts.files
  if files ~= nil then
    if type(files) ~= "table" then error("image_folder: files must be a list of paths", 2) end
    for i, f in ipairs(files) do
      if type(f) ~= "string" then error("image_folder: files[" .. i .. "] is not a string", 2) end
    end
  else
    files, err = image_.list(dir)
    if not files then return nil, err end
  end
  if #files == 0 then return nil, "image_folder: no png/jpg/jpeg files under " .. dir end
  local cfiles = string_array(files)
  local fp = C.pivq_files_fingerprint(dir, cfiles, #files)
  if fp == 0 then return nil, "image_folder: " .. last_error() end
  local fingerprint = string.format("%016x", fp)
  local ds = { files = files, n = #files, dir = dir, size = size, channels = channels,
    crop = crop, background = bgname }
  if opts.attributes then
    local tab
    tab, err = M.read_attributes(opts.attributes)
    if not tab then return nil, err end
    local values
    values, err = join_attributes(tab, files, opts.attributes)
    if not values then return nil, err end
    ds.attributes, ds.attribute_names = values, tab.names
  end
  if opts.lazy then
    ds.lazy = true -- the loader's workers decode the files batch by batch
    ds.background_rgb = rgb
    return ds
  end
  local key = string.format("v%s size=%d channels=%d crop=%d background=%s", CACHE_VERSION, size,
    channels, crop, bgname)
  local cache_path, abs
  if cache == true then
    -- no usable cache folder (no HOME, a read-only home) only costs the decoding time
    cache_path, abs = require("pivq.data.cache").path_for(dir, key)
  elseif type(cache) == "string" then
    cache_path = cache
  end
  local images, from_cache
  if cache_path and file_exists(cache_path) then
    local t, meta = io_.load(cache_path)
    -- a cache that is damaged, stale or of another folder or shape is ignored (and rewritten)
    local want = table.concat({ #files, channels, size, size }, "x")
    if t and meta.key == key and meta.fingerprint == fingerprint and (abs == nil or meta.dir == abs)
        and t.images and t.images:dtype() == "uint8" and table.concat(t.images:size(), "x") == want then
      images, from_cache = t.images, true
    end
  end
  if not images then
    local p = C.pivq_image_folder_load(dir, cfiles, #files, size, channels, crop, float3(rgb), workers)
    if p == nil then return nil, "image_folder: " .. last_error() end
    images = wrap(p)
    if cache_path then
      -- the cache is an optimisation: a failed write must not fail the load
      io_.save(cache_path, { images = images }, { key = key, dir = abs or dir,
        fingerprint = fingerprint, count = #files })
    end
  end
  ds.images, ds.from_cache, ds.cache_path = images, from_cache or false, cache_path
  return ds
end

-- ---- the loader ------------------------------------------------------------------------------

local Loader = {}
Loader.__index = Loader

-- Fields of a dataset that become batch fields, in this order; `images` is the image source.
local FIELDS = { "images", "labels", "attributes" }

-- pivq.data.loader(dataset, {batch = 64, shuffle = true, seed = 1, drop_last = true,
-- workers = 1, prefetch = 2 * workers, augment = {hflip = false}})
-- for batch, i in loader:iter() do ... batch.images, batch.labels ... end   -- one epoch
-- Each call of iter() runs the next epoch (or iter(e) epoch e); the order and flips of
-- epoch e depend only on seed and e. uint8 images arrive as float32 in [0, 1].
function M.loader(dataset, opts)
  local lazy = type(dataset) == "table" and dataset.lazy and dataset.images == nil
  if type(dataset) ~= "table" or not (lazy or tensor.is_tensor(dataset.images)) then
    error("loader: dataset must be a table with an images tensor (or a lazy image_folder)", 2)
  end
  opts = argcheck.options("loader", opts, { "batch", "workers", "seed", "augment", "prefetch", "shuffle",
    "drop_last" })
  local batch = opts.batch or 64
  local workers = opts.workers or 1
  local seed = opts.seed or 1
  local augment = opts.augment or {}
  if type(augment) ~= "table" then error("loader: augment must be a table {hflip =}, got " .. type(augment), 2) end
  argcheck.keys("loader: augment", augment, { "hflip" })
  for name, v in pairs({ batch = batch, workers = workers }) do
    if type(v) ~= "number" or v % 1 ~= 0 or v < 1 then
      error(string.format("loader: %s must be a positive integer, got %s", name, tostring(v)), 2)
    end
  end
  if type(seed) ~= "number" or seed % 1 ~= 0 or seed < 0 then
    error("loader: seed must be a nonnegative integer, got " .. tostring(seed), 2)
  end
  local prefetch = opts.prefetch or math.max(2, 2 * workers)
  local names, sources, flags = {}, {}, {}
  if lazy then names[1] = "images" end
  for _, f in ipairs(FIELDS) do
    if dataset[f] ~= nil and not (lazy and f == "images") then
      if not tensor.is_tensor(dataset[f]) then error("loader: dataset." .. f .. " must be a tensor", 2) end
      names[#names + 1] = f
      sources[#sources + 1] = dataset[f]
      flags[#flags + 1] = f == "images" and C.PIVQ_LOADER_IMAGE or 0
    end
  end
  local csrc = ffi.new("pivq_tensor*[?]", math.max(#sources, 1))
  local cflags = ffi.new("int[?]", math.max(#sources, 1))
  for i, t in ipairs(sources) do
    csrc[i - 1] = t.c
    cflags[i - 1] = flags[i]
  end
  local shuffle = opts.shuffle ~= false
  local drop_last = opts.drop_last ~= false
  local p
  if lazy then
    local files = dataset.files
    p = C.pivq_loader_new_files(dataset.dir, string_array(files), #files, dataset.size,
      dataset.channels, dataset.crop or 0, float3(dataset.background_rgb or { 1, 1, 1 }), csrc,
      cflags, #sources, batch, shuffle and 1 or 0, seed, drop_last and 1 or 0,
      augment.hflip and 1 or 0, workers, prefetch)
  else
    p = C.pivq_loader_new(csrc, cflags, #sources, batch, shuffle and 1 or 0, seed,
      drop_last and 1 or 0, augment.hflip and 1 or 0, workers, prefetch)
  end
  if p == nil then error(last_error(), 2) end
  return setmetatable({
    c = ffi.gc(p, C.pivq_loader_free),
    names = names,
    next_epoch = 1,
    batch_size = batch,
  }, Loader)
end

function Loader:num_batches() return tonumber(C.pivq_loader_num_batches(self.c)) end

-- An iterator over the batches of one epoch (1-based; default: the one after the last).
function Loader:iter(epoch)
  epoch = epoch or self.next_epoch
  if type(epoch) ~= "number" or epoch % 1 ~= 0 or epoch < 1 then
    error("loader: epoch must be a positive integer, got " .. tostring(epoch), 2)
  end
  if C.pivq_loader_start_epoch(self.c, epoch - 1) ~= 0 then error(last_error(), 2) end
  self.next_epoch = epoch + 1
  local n = #self.names
  local out = ffi.new("pivq_tensor*[?]", n)
  local i = 0
  return function()
    local rc = C.pivq_loader_next(self.c, out)
    if rc == 0 then return nil end
    if rc < 0 then error(last_error(), 2) end
    i = i + 1
    local b = {}
    for k = 1, n do b[self.names[k]] = wrap(out[k - 1]) end
    return b, i
  end
end

-- Stop the workers now rather than at garbage collection.
function Loader:close()
  if self.c ~= nil then
    C.pivq_loader_free(ffi.gc(self.c, nil))
    self.c = nil
  end
end

return M
