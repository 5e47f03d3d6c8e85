-- pivq.dist: data-parallel training over MPI (the Lua side of csrc/dist.c).
--
--   mpirun -np 2 ./build/pivq train ...   -- pivq.train uses DataParallel below by itself
--
-- The communication primitives (ranks are MPI's 0-based numbers, as mpirun prints them):
--   dist.available()                      -- was libpivq built with MPI?
--   dist.launched()                       -- processes in the job if mpirun started us, else nil
--   dist.init()                           -- once per process (later calls are no-ops)
--   dist.rank(), dist.size()              -- 0 .. size-1, and the number of ranks
--   dist.allreduce_(t or {t, ...}, {op = "sum" | "mean", bucket_bytes = 4 MiB})   float32, in place
--   dist.broadcast_(t or {t, ...}, root)  -- root's tensors copied into every rank's, in place
--   dist.gather(x, root)                  -- size x shape on root (rank r's x at [r + 1]), nil elsewhere
--   dist.barrier(), dist.abort(code), dist.finalize(), dist.comm_seconds()
-- Errors (a dead rank, mismatched shapes, MPI missing) raise; a wait longer than
-- PIVQ_DIST_TIMEOUT seconds (default 300) is an error too. A script that uses these directly
-- should call dist.abort(1) on an error, so that the other ranks stop at once instead of waiting
-- for the timeout; DataParallel:guard does that for training. MPI is finalized at exit.
local ffi = require "ffi"
local tensor = require "pivq.core.tensor"
local state = require "pivq.core.ffi"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"

local C = state.C
local fail, check = argcheck.fail, gc.check_rc

local M = {}

M.DEFAULT_BUCKET_BYTES = 4 * 1024 * 1024 -- a transfer's latency is negligible past a few MiB

function M.available() return C.pivq_dist_available() == 1 end

-- The job's size from the launcher's environment: Open MPI's mpirun, or a PMI launcher
-- (MPICH's hydra, Slurm's srun) for other MPIs.
function M.launched()
  local n = tonumber(os.getenv("OMPI_COMM_WORLD_SIZE") or os.getenv("PMI_SIZE") or "")
  return n
end

function M.init()
  if C.pivq_dist_initialized() == 1 then return M end
  local timeout = tonumber(os.getenv("PIVQ_DIST_TIMEOUT") or "") or 300
  check(C.pivq_dist_init(timeout))
  return M
end

function M.initialized() return C.pivq_dist_initialized() == 1 end
function M.rank() return C.pivq_dist_rank() end
function M.size() return C.pivq_dist_size() end
function M.local_size() return C.pivq_dist_local_size() end
function M.comm_seconds() return C.pivq_dist_comm_seconds() end
function M.finalize() check(C.pivq_dist_finalize()) end
function M.barrier() check(C.pivq_dist_barrier()) end
function M.abort(code) C.pivq_dist_abort(code or 1) end

-- A C array of the tensors of t (one tensor or a list), checked.
local function tensor_array(fname, t)
  local list = tensor.is_tensor(t) and { t } or t
  if type(list) ~= "table" then fail(fname .. ": expected a tensor or a list of tensors, got " .. type(t)) end
  local arr = ffi.new("pivq_tensor*[?]", math.max(#list, 1))
  for i, x in ipairs(list) do
    if not tensor.is_tensor(x) then
      fail(string.format("%s: item %d is a %s, not a tensor", fname, i, type(x)))
    end
    arr[i - 1] = x.c
  end
  return arr, #list
end

local function check_root(fname, root)
  root = root or 0
  if type(root) ~= "number" or root % 1 ~= 0 then
    fail(fname .. ": root must be a rank number, got " .. tostring(root))
  end
  return root
end

function M.allreduce_(t, opts)
  opts = opts or {}
  local op = opts.op or "sum"
  if op ~= "sum" and op ~= "mean" then fail("allreduce_: op must be \"sum\" or \"mean\", got " .. tostring(op)) end
  local arr, n = tensor_array("allreduce_", t)
  check(C.pivq_dist_allreduce_(arr, n, op == "mean" and 1 or 0, opts.bucket_bytes or M.DEFAULT_BUCKET_BYTES))
  return t
end

function M.broadcast_(t, root)
  local arr, n = tensor_array("broadcast_", t)
  check(C.pivq_dist_broadcast_(arr, n, check_root("broadcast_", root)))
  return t
end

function M.gather(x, root)
  if not tensor.is_tensor(x) then fail("gather: expected a tensor, got " .. type(x)) end
  root = check_root("gather", root)
  local out = gc.wrap(C.pivq_dist_gather(x:contiguous().c, root)) -- empty except on root
  if M.rank() ~= root then return nil end
  return out
end

-- ---- data-parallel training ------------------------------------------------------------------
-- The object pivq.train keeps as trainer.dist, consulted at a few points of the loop: every
-- rank holds the whole model and optimizer, reads its slice of each global batch, and the ranks
-- stay identical because every update is computed from reduced quantities (gradients, codebook
-- statistics) or decided on rank 0 and broadcast (codebook initialisation, restarts).

local DataParallel = {}
DataParallel.__index = DataParallel

-- nil unless mpirun started this process; an error if it did but MPI is missing here.
function M.DataParallel(opts)
  opts = opts or {}
  local n = M.launched()
  if not n then return nil end
  if not M.available() then
    if n == 1 then return nil end -- one process alone trains as usual
    error(string.format("%s: started by mpirun as one of %d processes, but pivq was built without MPI: "
      .. "each would train its own copy. Install libopenmpi-dev and rebuild (CMake turns PIVQ_MPI on when "
      .. "it finds MPI), or run without mpirun.", opts.name or "pivq", n), 0)
  end
  M.init()
  return setmetatable({
    rank = M.rank(),
    size = M.size(),
    local_size = M.local_size(),
    is_root = M.rank() == 0,
    bucket_bytes = opts.bucket_bytes or M.DEFAULT_BUCKET_BYTES,
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
  M.broadcast_(list, 0)
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
  M.allreduce_(grads, { op = "mean", bucket_bytes = self.bucket_bytes })
end

-- The mean over the ranks of a table of numbers (loss values for the log and the NaN check).
function DataParallel.mean_numbers(_, values)
  local keys = {}
  for k in pairs(values) do keys[#keys + 1] = k end
  table.sort(keys) -- the same order on every rank
  local buf = tensor.zeros(#keys)
  local p = buf:data_ptr()
  for i, k in ipairs(keys) do p[i - 1] = values[k] end
  M.allreduce_(buf, { op = "mean" })
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
  M.allreduce_(buf)
  local out = {}
  for i = 1, n do out[i] = p[i - 1] > 0 end
  return unpack(out, 1, n)
end

-- Sum of tensors over the ranks, in place (the quantizer's batch statistics).
function DataParallel:allreduce_sum_(list)
  M.allreduce_(list, { bucket_bytes = self.bucket_bytes })
end

-- Delayed codebook initialisation from each rank's latents (a list of equal-shaped tensors, one
-- per batch): rank 0 gathers them, runs quantizer:init_from on the pool in the order one process
-- reading the global batches would have (batch by batch, ranks in order), and broadcasts the
-- codebook. Returns the pool's size on every rank.
function DataParallel:init_codebook(quantizer, latents, opts)
  local mine = tensor.stack(latents, 1) -- batches x rows x c
  local all = M.gather(mine, 0)
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
  local all = M.gather(quantizer.last_latents, 0)
  local n = tensor.zeros(1)
  if all then
    n[1] = quantizer:restart_dead(after, { latents = all:reshape(-1, quantizer.c), generator = opts.generator })
  end
  self:sync_module(quantizer)
  M.broadcast_(n, 0)
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
  M.abort(1)
  error(res[2], 0) -- not reached with MPI
end

M.DataParallel_class = DataParallel
return M
