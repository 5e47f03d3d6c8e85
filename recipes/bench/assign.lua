-- recipes/bench/assign.lua DIR [REPEATS]: pivq.assign on the cost batches recipes/bench/assign_scipy.py wrote,
-- at 1 and 2 threads, beside SciPy's time for the same batch (ratio = SciPy / pivq), with every
-- total cost checked against SciPy's optimum (relative 1e-5). Then the whole quantizer forward
-- (distance GEMM + assignment) for B=64, L=49, K=4096, c=64, matching vs nearest.
-- Run everything with: sh recipes/bench/assign.sh
local pivq = require "pivq"
local ffi = require "ffi"

local dir, repeats = arg[1] or "/tmp/pivq_assign_bench", tonumber(arg[2] or "10")

local function read_costs(path)
  local f = assert(io.open(path, "rb"))
  local head = f:read(32)
  assert(head:sub(1, 8) == "PIVQASN1", path .. ": bad magic")
  local dims = ffi.new("int64_t[3]")
  ffi.copy(dims, head:sub(9, 32), 24)
  local B, L, K = tonumber(dims[0]), tonumber(dims[1]), tonumber(dims[2])
  local bytes = f:read(B * L * K * 4)
  f:close()
  return pivq.from_pointer(bytes, { B, L, K }, "float32"), B, L, K
end

local function read_scipy(path, B)
  local f = assert(io.open(path, "rb"))
  local raw = f:read("*a")
  f:close()
  local d = ffi.new("double[?]", B + 1)
  ffi.copy(d, raw, (B + 1) * 8)
  local totals = {}
  for i = 1, B do totals[i] = d[i] end
  return d[0], totals
end

local function time_best(fn, n)
  local best, all = math.huge, {}
  for i = 1, n do
    local t = pivq.clock()
    fn()
    all[i] = pivq.clock() - t
    best = math.min(best, all[i])
  end
  table.sort(all)
  return best, all[math.ceil(n / 2)]
end

print(string.format("pivq %s; best (median) of %d runs; ratio = SciPy time / pivq time", pivq.version, repeats))
print(string.format("%-20s %10s %10s %10s %10s %8s %8s %s", "costs (B=64)", "scipy ms", "pivq 1t", "pivq 2t",
  "median 2t", "ratio 1t", "ratio 2t", "optimum"))
local status, listing = pivq.files.run({ "ls", "-1", "--", dir }) -- no shell: execvp
assert(status == 0, "assign bench: cannot list " .. dir .. ": " .. tostring(listing))
local paths = {}
for file in listing:gmatch("[^\n]+") do
  if file:match("%.cost$") then paths[#paths + 1] = dir .. "/" .. file end
end
table.sort(paths)
for _, path in ipairs(paths) do
  local name = path:match("([^/]+)%.cost$")
  local costs, B = read_costs(path)
  local scipy_ms, totals = read_scipy(dir .. "/" .. name .. ".scipy", B)
  local row = {}
  for _, nt in ipairs({ 1, 2 }) do
    pivq.set_num_threads(nt)
    pivq.assign(costs) -- warm up
    row[nt] = { time_best(function() pivq.assign(costs) end, repeats) }
  end
  local cols = pivq.assign(costs)
  local ok = true
  for b = 1, B do
    local s = 0
    for i = 1, costs:size(2) do s = s + costs:get(b, i, cols:get(b, i)) end
    if math.abs(s - totals[b]) > 1e-5 * math.max(1, math.abs(totals[b])) then ok = false end
  end
  print(string.format("%-20s %10.2f %10.2f %10.2f %10.2f %8.1f %8.1f %s", name, scipy_ms, row[1][1] * 1e3,
    row[2][1] * 1e3, row[2][2] * 1e3, scipy_ms / (row[1][1] * 1e3), scipy_ms / (row[2][1] * 1e3),
    ok and "all equal" or "MISMATCH"))
end

-- the whole quantizer forward: B=64 images, L=49 latents, K=4096 codes of c=64
print()
print("quantizer forward (distance GEMM + assignment), B=64 L=49 K=4096 c=64, 2 threads")
pivq.set_num_threads(2)
local z = pivq.randn(64, 49, 64)
local results = {}
for _, mode in ipairs({ "nearest", "matching" }) do
  local q = pivq.nn.Quantizer(4096, 64, { mode = mode })
  q:train(false)
  q(z)
  local best, med = time_best(function() q(z) end, repeats)
  results[mode] = best
  print(string.format("  %-9s %8.2f ms (median %.2f)", mode, best * 1e3, med * 1e3))
end
print(string.format("  matching / nearest = %.2f", results.matching / results.nearest))
