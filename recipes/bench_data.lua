-- bench_data: loading speed of Fashion-MNIST, an image folder (with and without cache), the loader
-- Usage: pivq bench_data [--images 10000] [--dir DIR] [--workers 2]
-- Prints figures only (no assertions). Without --dir the generated 64x64 JPEGs go to a fresh
-- temporary folder, removed at the end. --dir DIR: a new or empty folder is filled with
-- --images JPEGs and kept (reruns then measure decoding, not generation); a folder already
-- holding images is measured as it is. The benchmark never deletes anything it did not create:
-- a folder holding another number of images than --images is an error, not a clean-up.
local pivq = require "pivq"

local opts = { images = 10000, dir = false, workers = 2 }
local args = arg or {}
for i = 1, #args, 2 do
  local k = args[i]:match("^%-%-(.+)$")
  if not k or opts[k] == nil then error("bench_data: unknown option " .. tostring(args[i])) end
  opts[k] = tonumber(args[i + 1]) or args[i + 1]
end
if type(opts.images) ~= "number" or opts.images < 1 or opts.images % 1 ~= 0 then
  error("bench_data: --images must be a positive integer, got " .. tostring(opts.images))
end

local now = pivq.clock -- monotonic wall time (os.clock is CPU time)

-- wall seconds, and CPU seconds of the whole process (all threads) for busy machines
local function timed(f)
  collectgarbage()
  local t0, c0 = now(), os.clock()
  local a, b = f()
  return now() - t0, a, b, os.clock() - c0
end

print(string.format("pivq %s, %d OpenMP threads", pivq.version, pivq.get_num_threads()))

-- 1. Fashion-MNIST: gunzip + parse + uint8 -> float32
local idx_time, _, _, idx_cpu = timed(function()
  return assert(pivq.data.idx(pivq.data.FASHION_MNIST_DIR .. "/train-images-idx3-ubyte.gz"))
end)
print(string.format("fashion-mnist idx read (60000 x 28 x 28 uint8, gzip): %.3f s (cpu %.3f s)",
  idx_time, idx_cpu))
local fm_time, ds, _, fm_cpu = timed(function()
  return assert(pivq.data.fashion_mnist { split = "train" })
end)
print(string.format("fashion_mnist{split='train'} (images float32 + labels): %.3f s (cpu %.3f s)",
  fm_time, fm_cpu))

-- 2. the loader over Fashion-MNIST
for _, w in ipairs({ 1, 2 }) do
  local l = pivq.data.loader(ds, { batch = 64, seed = 1, workers = w, augment = { hflip = true } })
  local t, n = timed(function()
    local n = 0
    for b in l:iter() do n = n + b.images:size(1) end
    return n
  end)
  print(string.format("loader, batch 64, hflip, %d worker(s): %d samples in %.3f s = %.0f samples/s",
    w, n, t, n / t))
  l:close()
end
ds = nil -- luacheck: ignore
collectgarbage()

-- 3. a folder of generated JPEGs
local dir, own = opts.dir, not opts.dir
if own then
  dir = os.tmpname() -- a fresh name; the (empty) file it made becomes our folder
  assert(os.remove(dir))
end
local have = pivq.image.list(dir) or {}
local cache = dir .. ".bench-cache.safetensors" -- beside the folder (never inside a dataset)
local had_cache = io.open(cache, "rb")
if had_cache then had_cache:close() end
local generated = {}
if #have == 0 then
  assert(pivq.files.mkdir_p(dir))
  local gen = pivq.Generator(1)
  local t = timed(function()
    for i = 1, opts.images do
      -- smooth random colours: a 3 x 8 x 8 field upsampled, like a blurry photo
      local img = pivq.image.resize(pivq.rand({ 3, 8, 8 }, { generator = gen }), 64, 64, "bilinear")
      local path = string.format("%s/%06d.jpg", dir, i)
      assert(pivq.image.save(path, img, { quality = 90 }))
      generated[#generated + 1] = path
    end
  end)
  print(string.format("generated %d JPEGs of 64x64 in %s: %.2f s", opts.images, dir, t))
elseif #have ~= opts.images then
  error(string.format("bench_data: %s holds %d images, not --images %d; give a new or empty folder "
    .. "(nothing is deleted)", dir, #have, opts.images))
end
local function folder(label, o)
  local t, result, _, cpu = timed(function() return assert(pivq.data.image_folder(dir, o)) end)
  print(string.format("image_folder, %s: %.3f s = %.0f images/s (cpu %.3f s = %.0f images per "
    .. "cpu-second)", label, t, opts.images / t, cpu, opts.images / cpu))
  return result
end
folder(string.format("no cache, %d workers", opts.workers),
  { size = 64, cache = false, workers = opts.workers })
folder("no cache, 1 worker", { size = 64, cache = false, workers = 1 })
folder(had_cache and "cache present" or "decode + write cache", { size = 64, workers = opts.workers, cache = cache })
assert(folder("from cache", { size = 64, workers = opts.workers, cache = cache }).from_cache)

-- 4. lazy: the loader's workers decode the JPEGs batch by batch
local lazy = assert(pivq.data.image_folder(dir, { size = 64, lazy = true }))
for _, w in ipairs({ 1, opts.workers }) do
  local l = pivq.data.loader(lazy, { batch = 64, seed = 1, workers = w, augment = { hflip = true } })
  local t, n = timed(function()
    local n = 0
    for b in l:iter() do n = n + b.images:size(1) end
    return n
  end)
  print(string.format("loader over the lazy folder, %d worker(s): %.3f s = %.0f images/s", w, t,
    n / t))
  l:close()
end

-- only what this run made: its JPEGs, the cache it wrote, its own temporary folder
if not had_cache then os.remove(cache) end
if own then
  for _, path in ipairs(generated) do os.remove(path) end
  os.remove(dir)
end
