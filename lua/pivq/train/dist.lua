-- pivq.train.dist (pivq.dist): data-parallel training over MPI (the Lua side of csrc/dist.c).
--
--   mpirun -np 2 ./build/pivq train ...   -- pivq.train uses pivq.train.DataParallel by itself
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

-- The data-parallel trainer's object (pivq.train.DataParallel), or nil unless mpirun started
-- this process; an error if it did but MPI is missing here.
function M.DataParallel(opts)
  -- pivq.train.DataParallel requires this module: looked up here, at the call
  return require("pivq.train.DataParallel").launch(opts)
end

return M
