-- The pivq side of the autograd benchmark (recipes/bench/autograd_vs_torch.py runs it beside PyTorch).
--
--   pivq recipes/bench/autograd_bench.lua WORKLOAD THREADS ITERS [DUMP_DIR]
--
-- WORKLOAD: conv (a), block (b), cross (c), or sgemm (the BLAS rate, for reference). Times
-- forward + backward (ITERS runs after 2 warm-ups) and prints one JSON line. With DUMP_DIR,
-- first writes the inputs, parameters and the gradients of one forward + backward as raw
-- float32 files (name.f32) plus a manifest, so the PyTorch side can load the same weights and
-- compare its gradients.
local ffi = require "ffi"
local pivq = require "pivq"
local nn, F = pivq.nn, pivq.F

local workload, threads, iters, dump = arg[1], tonumber(arg[2] or 1), tonumber(arg[3] or 10), arg[4]
pivq.set_num_threads(threads)

-- pivq.clock declares clock_gettime (with its pivq_timespec) once for the process: a second
-- declaration here would clash with it
local now = require "pivq.core.clock"
local ts = ffi.new("pivq_timespec")
-- CPU time of the process (all threads): robust to other load on the machine
local function cpu()
  ffi.C.clock_gettime(2, ts) -- CLOCK_PROCESS_CPUTIME_ID
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local function write_f32(path, t)
  t = t:contiguous()
  assert(pivq.files.write_text(path, ffi.string(t:data_ptr(), t:numel() * 4)))
end

pivq.manual_seed(1234)

-- Each workload: params (named, in PyTorch's names and layouts), inputs, run() = forward +
-- backward, flops = floating-point operations of one forward + backward (GEMM work only).
local W = {}

function W.conv()
  local B = 64
  local m = nn.Sequential(nn.Conv2d(1, 64, 3, { padding = 1 }), nn.ReLU(),
    nn.Conv2d(64, 128, 4, { stride = 2, padding = 1 }), nn.ReLU(),
    nn.Conv2d(128, 128, 4, { stride = 2, padding = 1 }))
  local x = pivq.randn(B, 1, 28, 28)
  local f1 = 2 * B * 64 * 9 * 28 * 28
  local f2 = 2 * B * 128 * 64 * 16 * 14 * 14
  local f3 = 2 * B * 128 * 128 * 16 * 7 * 7
  return {
    model = m, inputs = { x = x }, images = B,
    run = function() return m(x):sum() end,
    flops = 3 * (f1 + f2 + f3) - f1, -- forward, weight grads, input grads (not layer 1's)
  }
end

-- pre-norm block: x + attn(ln1(x) [, context]) then + mlp(ln2(.))
local Block = nn.Module:extend("BenchBlock")
function Block:__init(dim, heads, hidden)
  self:add_module("ln1", nn.LayerNorm(dim))
  self:add_module("attn", nn.MultiheadAttention(dim, heads))
  self:add_module("ln2", nn.LayerNorm(dim))
  self:add_module("fc1", nn.Linear(dim, hidden))
  self:add_module("fc2", nn.Linear(hidden, dim))
end
function Block:forward(x, context)
  local h = self.ln1(x)
  x = x + (context and self.attn(h, context) or self.attn(h))
  return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
end

local function block(cross)
  local B, L, S, D, H, Hd = 64, 49, 32, 256, 4, 1024
  local m = Block(D, H, Hd)
  local x = pivq.randn(B, L, D)
  local ctx = cross and pivq.randn(B, S, D) or nil
  local kv = cross and S or L
  local lin = 2 * B * L * (D * D * (cross and 2 or 4) + 2 * D * Hd) + (cross and 2 * B * S * 2 * D * D or 0)
  local att = 2 * 2 * B * L * kv * D
  return {
    model = m, inputs = { x = x, context = ctx },
    run = function() return m(x, ctx):sum() end,
    flops = 3 * (lin + att),
  }
end
function W.block() return block(false) end
function W.cross() return block(true) end

function W.sgemm()
  local n = 1024
  local a, b = pivq.randn(n, n), pivq.randn(n, n)
  return { run = function() return a:matmul(b) end, flops = 2 * n * n * n, nograd = true }
end

local w = assert(W[workload], "unknown workload " .. tostring(workload))()

if dump then
  assert(pivq.files.mkdir_p(dump))
  local manifest = {}
  local function put(name, t)
    write_f32(dump .. "/" .. name .. ".f32", t)
    manifest[#manifest + 1] = name .. " " .. table.concat(t:size(), "x")
  end
  for name, t in pairs(w.inputs) do put("input." .. name, t) end
  w.model:zero_grad()
  w.run():backward()
  for _, np in ipairs(w.model:named_parameters()) do
    put("param." .. np[1], np[2]:detach())
    put("grad." .. np[1], np[2]:grad())
  end
  assert(pivq.files.write_text(dump .. "/manifest.txt", table.concat(manifest, "\n") .. "\n"))
end

local function step()
  if w.nograd then return w.run() end
  w.model:zero_grad()
  w.run():backward()
end
for _ = 1, 2 do step() end
collectgarbage("collect")
local best, total = math.huge, 0
local cpu0 = cpu()
for _ = 1, iters do
  local t0 = now()
  step()
  local dt = now() - t0
  total = total + dt
  best = math.min(best, dt)
end
local cpu_ms = (cpu() - cpu0) / iters * 1e3
local mean = total / iters
print(string.format('{"side": "pivq", "workload": "%s", "threads": %d, "ms": %.3f, "best_ms": %.3f, ' ..
  '"cpu_ms": %.3f, "gflops": %.2f}', workload, threads, mean * 1e3, best * 1e3, cpu_ms,
  w.flops / mean * 1e-9))
