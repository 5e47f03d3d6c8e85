-- The pivq side of recipes/bench/prdc.sh.
--   pivq prdc.lua gen DIR N D                 write DIR/real.f32, fake.f32 (seeded Gaussians)
--   pivq prdc.lua run DIR N D THREADS NUMPY_JSON   time pivq.eval.prdc, print beside NumPy's
local pivq = require "pivq"
local ffi = require "ffi"
local json = require "dkjson"

local mode, dir, n, d = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])

local function write_raw(path, t)
  assert(pivq.files.write_text(path, ffi.string(t:contiguous():data_ptr(), t:numel() * 4)))
end

local function read_raw(path, rows, cols)
  local f = assert(io.open(path, "rb"))
  local bytes = f:read("*a")
  f:close()
  assert(#bytes == rows * cols * 4, path .. ": unexpected size")
  local t = pivq.empty(rows, cols)
  ffi.copy(t:data_ptr(), bytes, #bytes)
  return t
end

if mode == "gen" then
  local g = pivq.Generator(1)
  -- two overlapping clouds (fakes shifted), so that the metrics are away from 0 and 1
  write_raw(dir .. "/real.f32", pivq.randn({ n, d }, { generator = g }))
  write_raw(dir .. "/fake.f32", pivq.randn({ n, d }, { generator = g }) + 0.1)
  return 0
end

local threads = tonumber(arg[5])
pivq.set_num_threads(threads)
local real, fake = read_raw(dir .. "/real.f32", n, d), read_raw(dir .. "/fake.f32", n, d)
local best, r = math.huge, nil
for _ = 1, 2 do
  local t0 = pivq.clock()
  r = pivq.eval.prdc(real, fake, { k = 5 })
  best = math.min(best, pivq.clock() - t0)
end
local f = assert(io.open(arg[6]))
local ref = json.decode(f:read("*a"))
f:close()
print(string.format("PRDC, %d x %d points of dimension %d, k = 5, %d thread%s", n, n, d, threads,
  threads == 1 and "" or "s"))
print(string.format("  %-10s %12s %12s %12s", "", "pivq", "numpy/sklearn", "difference"))
for _, key in ipairs({ "precision", "recall", "density", "coverage" }) do
  print(string.format("  %-10s %12.6f %12.6f %12.2g", key, r[key], ref[key], r[key] - ref[key]))
end
print(string.format("  %-10s %12.2f %12.2f   numpy/pivq time ratio %.2fx", "seconds", best, ref.seconds,
  ref.seconds / best))
return 0
