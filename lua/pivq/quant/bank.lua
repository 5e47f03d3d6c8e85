-- pivq.bank: a code bank — every training image's codes under one checkpoint, built once and
-- cached beside the checkpoint (CKPT_DIR/codes.safetensors). Interpolation-based sampling
-- draws its parents from it; the REPL's m:images_with_code and m:code_usage read it.
--
-- A bank (what a sampling strategy receives as `bank`; recipes/README.md, "Strategy files", has
-- the whole contract):
--   bank.codes     N x L int64 tensor: row i holds training image i's codes, 1-based (1..K),
--                  sorted within the row unless the model is positional (slot order)
--   bank.K         codebook size (number)
--   bank.multiset  false for matching models (a row holds L distinct codes), true otherwise
--   bank.labels    N int64 class labels, or nil
--   bank:size()    N;  bank:L() the codes per image
--   bank:codes_of(i)             image i's codes as a pivq.CodeSet (1 <= i <= N)
--   bank:random_parents(n, k, g) an n x k Lua table of image indices in 1..N (a row never
--                                repeats an index when k <= N), drawn with pivq.Generator g
--
-- The cache: rebuilt when the checkpoint's hash changes. A bank of the first `limit` images (a
-- quick look) is cut from a cached bank that has them, and never replaces a larger cached bank.
-- A folder that cannot be written keeps the bank in memory (a warning says why). Before writing,
-- the stale temporaries of killed writes of the cache are removed. Building prints progress:
-- a self-updating line on a terminal, a line every 10 seconds otherwise (stderr).
local ffi = require "ffi"
local tensor = require "pivq.core.tensor"
local random = require "pivq.core.random"
local io_ = require "pivq.data.files"

local M = {}

local registry = debug.getregistry()
if not registry["pivq.bank.crc32"] then
  ffi.cdef "unsigned long crc32(unsigned long crc, const unsigned char *buf, unsigned int len);"
  registry["pivq.bank.crc32"] = true
end

-- zlib: in the process already when the pivq host runs (libpivq links it); loaded by name under
-- a plain luajit, where libpivq's symbols are not global
local zlib = pcall(function() return ffi.C.crc32 end) and ffi.C or ffi.load("libz.so.1")

-- ---- the bank's methods ------------------------------------------------------------------------

local Bank = {}
Bank.__index = Bank
M.Bank = Bank

function Bank:size() return self.codes:size(1) end
function Bank:L() return self.codes:size(2) end

function Bank:codes_of(i)
  local N = self.codes:size(1)
  if type(i) ~= "number" or i % 1 ~= 0 or i < 1 or i > N then
    error(string.format("bank:codes_of: i must be an image index in 1..%d, got %s", N, tostring(i)), 2)
  end
  return require("pivq.quant.CodeSet").new(self.codes:select(1, i):totable(),
    { K = self.K, multiset = self.multiset })
end

function Bank:random_parents(n, k, g)
  local N = self.codes:size(1)
  for _, a in ipairs({ { "n", n }, { "k", k } }) do
    if type(a[2]) ~= "number" or a[2] % 1 ~= 0 or a[2] < 1 then
      error(string.format("bank:random_parents: %s must be a positive integer, got %s", a[1], tostring(a[2])), 2)
    end
  end
  if not random.is_generator(g) then
    error("bank:random_parents: g must be a pivq.Generator (opts.generator), got " .. type(g), 2)
  end
  local rows = {}
  for r = 1, n do
    local row, seen = {}, {}
    while #row < k do
      local i = random.randint(1, N + 1, { 1 }, { generator = g })[1]
      if k > N or not seen[i] then -- distinct when there are enough images
        row[#row + 1] = i
        seen[i] = true
      end
    end
    rows[r] = row
  end
  return rows
end

-- t as a Bank (a table with codes and K, from a strategy's own caller); checked
function M.wrap(t, fname)
  fname = fname or "bank"
  if type(t) ~= "table" or not tensor.is_tensor(t.codes) or t.codes:dim() ~= 2 or t.codes:size(1) == 0
    or t.codes:dtype() ~= "int64" or type(t.K) ~= "number" or t.K % 1 ~= 0 or t.K < 1 then
    error(fname .. ": bank must be {codes = N x L int64 tensor (N >= 1), K = codebook size, multiset = bool}", 3)
  end
  if getmetatable(t) == nil then setmetatable(t, Bank) end
  return t
end

-- ---- building and caching -------------------------------------------------------------------------

-- zlib's CRC-32 of a file, as 8 hex digits (identifies a checkpoint in caches and reports).
function M.file_hash(path)
  local f = io.open(path, "rb")
  if not f then return nil, "cannot open " .. tostring(path) end
  local crc = 0
  while true do
    local chunk = f:read(1048576)
    if not chunk then break end
    crc = zlib.crc32(crc, chunk, #chunk)
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

local function fmt_time(s)
  s = math.max(0, math.floor(s + 0.5))
  return string.format("%d:%02d", math.floor(s / 60), s % 60)
end

-- Encode every image of dataset in batches (no gradients). progress: true (a terminal line or
-- a line every 10 s on stderr), false, or a function(done, total, seconds) for the caller.
function M.encode_all(model, images, batch, progress)
  batch = batch or 500
  local clock = require "pivq.core.clock"
  local N = images:size(1)
  local report = progress
  if progress == true then
    local ok, host = pcall(require, "pivq.host")
    local tty = ok and host.isatty(2)
    local last = -math.huge
    report = function(done, total, seconds)
      local rate = done / math.max(seconds, 1e-9)
      local line = string.format("bank: %d/%d images encoded, %.0f images/s, ETA %s", done, total, rate,
        fmt_time((total - done) / math.max(rate, 1e-9)))
      if tty then
        io.stderr:write("\r\27[K", line, done == total and "\n" or "")
      elseif done == total or seconds - last >= 10 then
        io.stderr:write(line, "\n")
        last = seconds
      end
      io.stderr:flush()
    end
  end
  local out = {}
  local t0 = clock()
  for s = 1, N, batch do
    local m = math.min(batch, N - s + 1)
    local x = images:narrow(1, s, m)
    if x:dtype() == "uint8" then x = x:float() / 255 end
    out[#out + 1] = model:encode(x)
    if report then report(s + m - 1, N, clock() - t0) end
  end
  return tensor.cat(out, 1)
end

local function warn(msg) io.stderr:write("bank: ", msg, "\n") end

-- pivq.bank.load(model, {checkpoint =, path =, dataset =, data =, limit =, progress =}) -> bank
-- (built and cached if needed); dataset is an opened dataset, data a description
-- (pivq.data.layouts) whose training split is encoded (default: the model's own); limit uses
-- only the first `limit` training images (quick looks); progress = false silences the progress
-- line (default: shown). The cache is keyed by the checkpoint's hash, the data's folder and the
-- precision in force (pivq.autocast: bf16 encoders may pick a different code where two are
-- nearly tied, so a bank encoded in one precision is not reused in the other).
function M.load(model, opts)
  opts = opts or {}
  local where = opts.data and opts.data.path or (opts.dataset and opts.dataset.dir) or ""
  local ckpt = opts.checkpoint or model.path
  local hash = ckpt and M.file_hash(ckpt) or nil
  local path = opts.path or (ckpt and (ckpt:match("^(.*)/[^/]*$") or ".") .. "/codes.safetensors")
  local limit = opts.limit
  local precision = require("pivq.core.precision").get_precision()
  if limit ~= nil and (type(limit) ~= "number" or limit % 1 ~= 0 or limit < 1) then
    error("bank.load: limit must be a positive integer, got " .. tostring(limit), 2)
  end
  local function make(codes, labels, images, at)
    return setmetatable({ codes = codes, labels = labels, K = model.config.K,
      multiset = model.config.mode ~= "matching", checkpoint_hash = hash, path = at, images = images }, Bank)
  end
  local cached_rows = 0
  if path and hash then
    local tensors, meta = io_.load(path)
    if tensors and meta.checkpoint_hash == hash and (meta.data or "") == where
      and (meta.precision or "fp32") == precision and tensor.is_tensor(tensors.codes) then
      cached_rows = tensors.codes:size(1)
      local full = (meta.limit or "") == ""
      if full and not limit then return make(tensors.codes, tensors.labels, nil, path) end
      if limit and limit <= cached_rows then
        -- a quick look cut from a larger (or equal) cached bank: nothing to encode
        return make(tensors.codes:narrow(1, 1, limit), tensors.labels and tensors.labels:narrow(1, 1, limit),
          nil, path)
      end
      if not limit and opts.progress ~= false then
        warn(string.format("the cached bank at %s holds the first %d training images only (a --bank-limit or "
          .. "demo bank); encoding all of them (--bank-limit %d reuses it)", path, cached_rows, cached_rows))
      end
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
  local partial = limit and limit < images:size(1)
  if partial then
    images = images:narrow(1, 1, limit)
    labels = labels and labels:narrow(1, 1, limit)
  end
  local codes = M.encode_all(model, images, nil, opts.progress ~= false)
  local bank = make(codes, labels, images, path)
  -- cache it unless a larger bank is cached already (a partial bank never replaces a fuller one)
  if path and codes:size(1) > cached_rows then
    io_.remove_stale(path) -- temporaries of killed writes of this cache
    local tensors = { codes = codes }
    if labels then tensors.labels = labels end
    local ok, err = io_.save(path, tensors, { checkpoint_hash = hash or "", L = tostring(codes:size(2)),
      limit = partial and tostring(limit) or "", data = where, precision = precision })
    if not ok then
      -- an optional cache: the bank stays in memory and the command goes on
      warn(string.format("cannot cache the codes (%s); keeping them in memory", tostring(err)))
      bank.path = nil
    end
  end
  return bank
end

return M
