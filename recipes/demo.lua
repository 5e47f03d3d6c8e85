-- demo: a short tour of the tensor core (the main job until training lands)
local pivq = require "pivq"

local t0 = os.clock()
pivq.manual_seed(1)
print(string.format("pivq %s, %d threads", pivq.version, pivq.get_num_threads()))

-- A random codebook and latents: squared distances by one GEMM, then each latent's nearest
-- code. Repeated codes are what matching quantization (coming in pivq.assign) rules out.
local K, L, c = 512, 32, 64
local codebook = pivq.randn(K, c)
local latents = pivq.randn(L, c)
local d2 = (latents * latents):sum(2, true) - latents:matmul(codebook:t()) * 2
  + (codebook * codebook):sum(2, true):t()
local _, nearest = d2:min(2)
print(string.format("nearest codes of %d latents among %d:", L, K))
print(nearest:view(1, -1))
local seen, distinct = {}, 0
for i = 1, L do
  local k = nearest[i]
  if not seen[k] then
    seen[k] = true
    distinct = distinct + 1
  end
end
print(string.format("distinct codes: %d of %d; done in %.2f s", distinct, L, os.clock() - t0))
