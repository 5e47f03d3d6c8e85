-- Initialisers shared by the layers, matching PyTorch's defaults (see each layer's comment).
-- opts.generator (a pivq.Generator) makes an initialisation reproducible independently of
-- the global seed.
local random = require "pivq.core.random"
local tensor = require "pivq.core.tensor"

local M = {}

-- U(-bound, bound) of the given sizes
function M.uniform(sizes, bound, gen)
  local t = tensor.empty(sizes)
  return random.uniform_(t, -bound, bound, { generator = gen })
end

function M.normal(sizes, std, gen)
  local t = tensor.empty(sizes)
  return random.normal_(t, 0, std, { generator = gen })
end

-- PyTorch's Linear/Conv default, kaiming_uniform(a = sqrt(5)): bound = 1 / sqrt(fan_in)
function M.kaiming_default(sizes, fan_in, gen)
  return M.uniform(sizes, fan_in > 0 and 1 / math.sqrt(fan_in) or 0, gen)
end

-- xavier_uniform: bound = sqrt(6 / (fan_in + fan_out))
function M.xavier_uniform(sizes, fan_in, fan_out, gen)
  return M.uniform(sizes, math.sqrt(6 / (fan_in + fan_out)), gen)
end

return M
