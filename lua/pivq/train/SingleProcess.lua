-- pivq.train.SingleProcess: the trainer's data-parallel object when one process trains alone.
-- It has pivq.train.DataParallel's methods, each doing what that one process needs (nothing to
-- reduce, broadcast or shard), so that the loop calls trainer.dist the same way in both cases.
local tensor = require "pivq.core.tensor"

local SingleProcess = {}
SingleProcess.__index = SingleProcess

function SingleProcess.new()
  return setmetatable({ rank = 0, size = 1, local_size = 1, is_root = true }, SingleProcess)
end

-- All of them: the thread count stays as it is.
function SingleProcess.threads(_, cores) return cores end

-- The whole batch is this process's.
function SingleProcess.shard(_, x) return x end

-- Nothing to synchronise: the model is used as it is.
function SingleProcess.attach() end

-- The gradients are those of the whole batch already.
function SingleProcess.average_gradients() end

function SingleProcess.mean_numbers(_, values) return values end

function SingleProcess.any(_, ...) return ... end

-- Delayed codebook initialisation on the pool of this process's latents (a list of tensors, one
-- per batch); returns the pool's size.
function SingleProcess.init_codebook(_, quantizer, latents, opts)
  local pool = tensor.cat(latents, 1)
  quantizer:init_from(pool, opts)
  return pool:size(1)
end

function SingleProcess.restart_dead(_, quantizer, after, opts) return quantizer:restart_dead(after, opts) end

function SingleProcess.guard(_, fn, ...) return fn(...) end

return SingleProcess
