-- pivq.train.DataParallel: data-parallel training over MPI (pivq.dist's primitives).
--
--   local dp = DataParallel.launch({name = "train"})   -- nil unless mpirun started this process
--
-- The object pivq.train.Trainer keeps as trainer.dist and calls at the points where ranks
-- communicate (pivq.train.SingleProcess has the same methods for one process): every
-- rank holds the whole model and optimizer, reads its slice of each global batch, and the ranks
-- stay identical because every update is computed from reduced quantities (gradients, codebook
-- statistics) or decided on rank 0 and broadcast (codebook initialisation, restarts).
local tensor = require "pivq.core.tensor"
local dist = require "pivq.train.dist"

local DataParallel = {}
DataParallel.__index = DataParallel

-- nil unless mpirun started this process; an error if it did but MPI is missing here.
function DataParallel.launch(opts)
  opts = opts or {}
  local n = dist.launched()
  if not n then return nil end
  if not dist.available() then
    if n == 1 then return nil end -- one process alone trains as usual
    error(string.format("%s: started by mpirun as one of %d processes, but pivq was built without MPI: "
      .. "each would train its own copy. Install libopenmpi-dev and rebuild (CMake turns PIVQ_MPI on when "
      .. "it finds MPI), or run without mpirun.", opts.name or "pivq", n), 0)
  end
  dist.init()
  return setmetatable({
    rank = dist.rank(),
    size = dist.size(),
    local_size = dist.local_size(),
    is_root = dist.rank() == 0,
    bucket_bytes = opts.bucket_bytes or dist.DEFAULT_BUCKET_BYTES,
    name = opts.name or "pivq",
  }, DataParallel)
end

-- Threads per rank when the user asked for "all cores": the cores divided among the ranks of
-- this machine (mpirun binds a rank to a core by default anyway).
function DataParallel:threads(cores)
  return math.max(1, math.floor(cores / math.max(1, self.local_size)))
end

-- This rank's rows of a global batch (size x per-rank rows, ranks in order).
function DataParallel:shard(x)
  local n = x:size(1)
  if n % self.size ~= 0 then
    error(string.format("%s: a global batch of %d does not split over %d ranks", self.name, n, self.size), 2)
  end
  local b = n / self.size
  return x:narrow(1, self.rank * b + 1, b)
end

-- Every rank's tensors of a module (parameters, then buffers) replaced by rank 0's.
function DataParallel.sync_module(_, module)
  local list = module:parameters()
  for _, nb in ipairs(module:named_buffers()) do list[#list + 1] = nb[2] end
  dist.broadcast_(list, 0)
end

-- Make `model` (a pivq.PIVQ) data-parallel: rank 0's initial weights everywhere, a quantizer
-- that reduces its statistics, and noise drawn as one process would draw it.
function DataParallel:attach(model)
  self:sync_module(model)
  model.quantizer.dist = self
  if model.config.readout == "exchangeable" then self:shard_readout_noise(model) end
end

-- The exchangeable readout draws L x width normal values per image from model.generator, a
-- counter-based generator (a draw of n values takes offsets [offset, offset + n)). One process
-- would draw the whole global batch's noise in one go; rank r takes the offsets of its slice's
-- rows, and every rank leaves the generator where that process would, so the ranks neither share
-- noise nor differ from one process.
function DataParallel:shard_readout_noise(model)
  local latents = model.latents
  local per_image = model.config.L * model.config.width
  local rank, size, name = self.rank, self.size, self.name
  model.latents = function(m, x)
    if not m.training then return latents(m, x) end
    local g, b = m.generator.cdata, x:size(1)
    local start = tonumber(g.offset)
    g.offset = start + rank * b * per_image
    local z = latents(m, x)
    local drawn = tonumber(g.offset) - (start + rank * b * per_image)
    if drawn ~= b * per_image then
      error(string.format("%s: the readout drew %d values for %d images, expected %d per image", name, drawn, b,
        per_image), 2)
    end
    g.offset = start + size * b * per_image
    return z
  end
end

-- Gradients averaged over the ranks (each rank's loss is a mean over its slice, so the mean of
-- the ranks' gradients is the gradient of the mean over the global batch). Parameters without a
-- gradient are skipped on every rank alike: the ranks run the same graph.
function DataParallel:average_gradients(params)
  local grads = {}
  for _, p in ipairs(params) do
    local g = p:grad()
    if g then
      if not g:is_contiguous() then
        g = g:contiguous()
        p:set_grad(g)
      end
      grads[#grads + 1] = g
    end
  end
  dist.allreduce_(grads, { op = "mean", bucket_bytes = self.bucket_bytes })
end

-- The mean over the ranks of a table of numbers (loss values for the log and the NaN check).
function DataParallel.mean_numbers(_, values)
  local keys = {}
  for k in pairs(values) do keys[#keys + 1] = k end
  table.sort(keys) -- the same order on every rank
  local buf = tensor.zeros(#keys)
  local p = buf:data_ptr()
  for i, k in ipairs(keys) do p[i - 1] = values[k] end
  dist.allreduce_(buf, { op = "mean" })
  local out = {}
  for i, k in ipairs(keys) do out[k] = p[i - 1] end
  return out
end

-- For each flag: true on every rank if it is true on any (a stop asked on one rank: Ctrl-C, a
-- time limit), in one allreduce.
function DataParallel.any(_, ...)
  local n = select("#", ...)
  local buf = tensor.zeros(n)
  local p = buf:data_ptr()
  for i = 1, n do p[i - 1] = select(i, ...) and 1 or 0 end
  dist.allreduce_(buf)
  local out = {}
  for i = 1, n do out[i] = p[i - 1] > 0 end
  return unpack(out, 1, n)
end

-- Sum of tensors over the ranks, in place (the quantizer's batch statistics).
function DataParallel:allreduce_sum_(list)
  dist.allreduce_(list, { bucket_bytes = self.bucket_bytes })
end

-- Delayed codebook initialisation from each rank's latents (a list of equal-shaped tensors, one
-- per batch): rank 0 gathers them, runs quantizer:init_from on the pool in the order one process
-- reading the global batches would have (batch by batch, ranks in order), and broadcasts the
-- codebook. Returns the pool's size on every rank.
function DataParallel:init_codebook(quantizer, latents, opts)
  local mine = tensor.stack(latents, 1) -- batches x rows x c
  local all = dist.gather(mine, 0)
  if all then
    local pool = all:transpose(1, 2):reshape(-1, quantizer.c)
    quantizer:init_from(pool, opts)
  end
  quantizer.bypassed = false
  self:sync_module(quantizer)
  return mine:size(1) * mine:size(2) * self.size
end

-- Dead-code restart decided on rank 0 from the last batch's latents of every rank (the global
-- batch's, in order), then broadcast. `idle` is the same on every rank (it counts from the
-- reduced statistics), so the ranks agree without communicating whether anything is dead.
function DataParallel:restart_dead(quantizer, after, opts)
  local idle = quantizer.idle
  if after <= 0 or not quantizer.last_latents or idle:max() <= after then return 0 end
  local all = dist.gather(quantizer.last_latents, 0)
  local n = tensor.zeros(1)
  if all then
    n[1] = quantizer:restart_dead(after, { latents = all:reshape(-1, quantizer.c), generator = opts.generator })
  end
  self:sync_module(quantizer)
  dist.broadcast_(n, 0)
  return n:item()
end

-- Run fn(...); if it raises, say which rank failed and end every rank of the job now (MPI_Abort)
-- rather than leave the others waiting in a collective for the timeout.
function DataParallel:guard(fn, ...)
  local res = { xpcall(fn, debug.traceback, ...) }
  if res[1] then return unpack(res, 2, table.maxn(res)) end
  io.stderr:write(string.format("%s: rank %d of %d failed: %s\n%s: stopping every rank\n", self.name, self.rank,
    self.size, tostring(res[2]), self.name))
  io.stderr:flush()
  dist.abort(1)
  error(res[2], 0) -- not reached with MPI
end

return DataParallel
