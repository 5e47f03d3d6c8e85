-- Data-parallel training over MPI (pivq.dist, csrc/dist/dist.c, the hooks in pivq.train).
--
-- The MPI specs launch the pivq host under `mpirun -np 2` on this machine (loopback/shared
-- memory) and compare against runs of one process: 2 ranks x batch 32 must train exactly what
-- 1 process x batch 64 trains. They need libpivq built with MPI and Open MPI's mpirun (.ci/setup
-- installs both); without them they are pending, with the reason. The specs of the build
-- without MPI and of the errors run everywhere.
local ffi = require "ffi"
local pivq = require "pivq"
local dist = pivq.dist

local BUILD = os.getenv("PIVQ_BUILD_DIR") or "build"
local BIN = BUILD .. "/pivq"

local function sh_ok(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(sh_ok("mkdir -p " .. d))
  return d
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- `sleep` in small steps until cond() or `seconds` pass; returns cond()'s last value
local function wait_for(cond, seconds)
  for _ = 1, seconds * 10 do
    local v = cond()
    if v then return v end
    os.execute("sleep 0.1")
  end
  return cond()
end

-- mpirun as CI runs it (root, 2 ranks on 2 cores). The ranks run without the LD_PRELOAD of the
-- sanitizer suite (mpirun itself is not instrumented; the ASan host links its runtime), and with
-- leak detection off: Open MPI keeps allocations alive past MPI_Finalize by design.
local MPIRUN = "env -u LD_PRELOAD ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "
  .. "mpirun --allow-run-as-root --oversubscribe -np 2 "

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

local function max_diff(a, b) return (a - b):abs():max() end

ffi.cdef [[
int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);
]]

describe("pivq.dist without mpirun", function()
  it("is off: no data-parallel trainer, and the collectives raise clear errors", function()
    assert.is_nil(dist.launched())
    assert.is_nil(dist.DataParallel())
    local ok, err = pcall(dist.allreduce_, pivq.zeros(3))
    assert.is_false(ok)
    if dist.available() then
      assert.matches("dist_allreduce: MPI is not initialised", err)
    else
      assert.matches("pivq was built without MPI", err)
    end
    ok, err = pcall(dist.allreduce_, { pivq.zeros(1), "x" })
    assert.is_false(ok)
    assert.matches("allreduce_: item 2 is a string, not a tensor", err)
    ok, err = pcall(dist.allreduce_, pivq.zeros(1), { op = "max" })
    assert.is_false(ok)
    assert.matches("op must be \"sum\" or \"mean\"", err)
    -- no job to end: abort returns (the suite would stop here otherwise)
    dist.abort(3)
    assert.are.equal(-1, dist.rank())
    assert.are.equal(0, dist.size())
  end)

  it("says so when mpirun starts a pivq built without MPI", function()
    local available = dist.available
    ffi.C.setenv("OMPI_COMM_WORLD_SIZE", "2", 1)
    dist.available = function() return false end
    local ok, err = pcall(dist.DataParallel, { name = "train" })
    local ok1, dp1 = pcall(function()
      ffi.C.setenv("OMPI_COMM_WORLD_SIZE", "1", 1)
      return dist.DataParallel()
    end)
    dist.available = available
    ffi.C.unsetenv("OMPI_COMM_WORLD_SIZE")
    assert.is_false(ok)
    assert.matches("train: started by mpirun as one of 2 processes, but pivq was built without MPI", err)
    -- one process alone trains as before
    assert.is_true(ok1)
    assert.is_nil(dp1)
  end)
end)

describe("the EMA codebook update in two halves (statistics, then update)", function()
  it("ema_stats gives per-code counts and latent sums; ema_apply_ of summed halves equals ema_update_", function()
    local g = pivq.Generator(3)
    local K, c, N = 7, 4, 40
    local z = pivq.randn(N, c, { generator = g })
    local codes = pivq.randint(1, K + 1, { N }, { generator = g })
    local counts, sums = pivq.vq.ema_stats(z, codes, K)
    -- reference: a loop over the rows
    local cref, sref = pivq.zeros(K), pivq.zeros(K, c)
    for i = 1, N do
      local k = codes[i]
      cref[k] = cref[k] + 1
      sref[k]:copy(sref[k] + z[i])
    end
    assert.are.equal(0, max_diff(counts, cref))
    assert.is_true(max_diff(sums, sref) < 1e-5)
    -- two "ranks" holding halves of the batch: their summed statistics give the whole batch's update
    local c1, s1 = pivq.vq.ema_stats(z:narrow(1, 1, 25), codes:narrow(1, 1, 25), K)
    local c2, s2 = pivq.vq.ema_stats(z:narrow(1, 26, 15), codes:narrow(1, 26, 15), K)
    local function state()
      local cb = pivq.randn(K, c, { generator = pivq.Generator(5) })
      return cb, pivq.ones(K), cb:clone()
    end
    local cb1, n1, e1 = state()
    pivq.vq.ema_update_(cb1, n1, e1, z, codes, 0.9, 1e-5)
    local cb2, n2, e2 = state()
    pivq.vq.ema_apply_(cb2, n2, e2, c1 + c2, s1 + s2, 0.9, 1e-5)
    assert.is_true(max_diff(cb1, cb2) < 1e-5)
    assert.is_true(max_diff(n1, n2) < 1e-6)
    assert.is_true(max_diff(e1, e2) < 1e-5)
    local ok, err = pcall(pivq.vq.ema_apply_, cb2, n2, e2, pivq.zeros(K + 1), s1, 0.9, 1e-5)
    assert.is_false(ok)
    assert.matches("vq_ema_apply: need contiguous float32 counts %(7%)", err)
  end)
end)

local reason
if not dist.available() then
  reason = "libpivq was built without MPI (install libopenmpi-dev: sh .ci/setup, then rebuild)"
elseif not sh_ok("command -v mpirun > /dev/null 2>&1") then
  reason = "mpirun was not found (install openmpi-bin: sh .ci/setup)"
end

if reason then
  describe("data-parallel training over MPI", function()
    pending("skipped: " .. reason)
  end)
  return
end

describe("data-parallel training over MPI (mpirun -np 2)", function()
  local dirs = {}
  local function dir()
    local d = tmpdir()
    dirs[#dirs + 1] = d
    return d
  end
  teardown(function()
    for _, d in ipairs(dirs) do os.execute("rm -rf '" .. d .. "'") end
  end)

  -- pivq spec/helpers/mpi_train.lua OUT BATCH STEPS [extra], alone or under mpirun
  local function train(prefix, out, batch, steps, extra)
    local o, code = run(string.format("%s%s spec/helpers/mpi_train.lua %s %d %d %s", prefix, BIN, out, batch, steps,
      extra or ""))
    assert.are.equal(0, code, o)
    return o
  end

  local log_of = require("helpers.mpi_check").log_of

  it("the collectives give the closed-form results on every rank", function()
    local out, code = run(MPIRUN .. BIN .. " spec/helpers/mpi_api.lua")
    assert.are.equal(0, code, out)
    assert.matches("rank 0 ok", out)
    assert.matches("rank 1 ok", out)
  end)

  it("2 ranks x batch 32 train what 1 process x batch 64 trains; every rank holds the same codebook", function()
    local one, two = dir(), dir()
    local steps = 10 -- the codebook is initialised before step 4, dead codes restarted every 2 steps
    train("", one, 64, steps)
    train(MPIRUN, two, 32, steps)
    require("helpers.mpi_check").equivalent(one, two, steps)
  end)

  it("with the exchangeable readout, each rank draws its own images' noise as one process would", function()
    local one, two = dir(), dir()
    train("", one, 64, 6, "readout=exchangeable")
    train(MPIRUN, two, 32, 6, "readout=exchangeable")
    local ref = assert(pivq.load(one .. "/rank0.safetensors"))
    local r0 = assert(pivq.load(two .. "/rank0.safetensors"))
    -- (the same noise on both ranks, or noise not the single process's, gives differences ~1e-2)
    for name, t in pairs(ref) do
      if name:match("^param%.") then assert.is_true(max_diff(r0[name], t) < 2e-4, name) end
    end
    assert.is_true(max_diff(r0["codebook.final"], ref["codebook.final"]) < 1e-4)
  end)

  it("with the adversarial term, the ranks share one discriminator and the single process's adaptive weight", function()
    local one, two = dir(), dir()
    train("", one, 64, 7, "w_adv=0.1 adv_start=4")
    train(MPIRUN, two, 32, 7, "w_adv=0.1 adv_start=4")
    local ref = assert(pivq.load(one .. "/rank0.safetensors"))
    local r0 = assert(pivq.load(two .. "/rank0.safetensors"))
    local r1 = assert(pivq.load(two .. "/rank1.safetensors"))
    local ndisc = 0
    for name, t in pairs(ref) do
      if name:match("^param%.") then
        assert.are.equal(0, max_diff(r0[name], r1[name]), name)
        assert.is_true(max_diff(r0[name], t) < 2e-4, name)
      elseif name:match("^disc%.") then -- one discriminator: bitwise the same on both ranks
        ndisc = ndisc + 1
        assert.are.equal(0, max_diff(r0[name], r1[name]), name)
      end
    end
    assert.is_true(ndisc > 0)
    local la, lb = log_of(one), log_of(two)
    for i = 5, 7 do
      assert.is_truthy(la[i].adv_weight and la[i].disc)
      for _, term in ipairs({ "adv_weight", "disc", "gan", "total" }) do
        assert.is_true(math.abs(la[i][term] - lb[i][term]) <= 1e-3 * math.abs(la[i][term]) + 1e-5, term)
      end
    end
    -- the discriminator in rank 0's checkpoint: within AdamW's amplified rounding (biases that
    -- GroupNorm cancels get pure-noise gradients, so steps of up to lr = 3e-3 each)
    local da, db = assert(pivq.load(one .. "/model.safetensors")), assert(pivq.load(two .. "/model.safetensors"))
    local n = 0
    for name, t in pairs(da) do
      if name:match("^disc%.") then
        n = n + 1
        assert.is_true(max_diff(db[name], t) < 2e-2, name)
      end
    end
    assert.is_true(n > 0)
  end)

  it("--resume continues a 2-rank checkpoint with 1 process (global positions)", function()
    local ref, split = dir(), dir()
    train("", ref, 64, 8)
    train(MPIRUN, split, 32, 8, "stop_after=5")
    local state = require("dkjson").decode(select(2, pivq.load(split .. "/model.safetensors")).train)
    assert.are.equal(5, state.step)
    assert.are.equal(64, state.global_batch)
    train("", split, 64, 8, "resume=true")
    local a = assert(pivq.load(ref .. "/rank0.safetensors"))
    local b = assert(pivq.load(split .. "/rank0.safetensors"))
    for name, t in pairs(a) do
      if name:match("^param%.") then assert.is_true(max_diff(b[name], t) < 2e-4, name) end
    end
    -- restarts copy latents, which carry the parameters' float noise (measured 2e-4)
    assert.is_true(max_diff(a["codebook.final"], b["codebook.final"]) < 2e-3)
  end)

  -- Start a long 2-rank run in the background, wait for its first checkpoint, do `action` to
  -- rank 1, and return mpirun's exit code and output (nil if it did not stop within 60 s).
  local function disturb(action, env)
    local out = dir()
    os.execute(string.format("(%s timeout 120 %s%s spec/helpers/mpi_train.lua %s 32 1000000 pidfile=1 "
      .. "ckpt_every=4 > %s/mpirun.log 2>&1; echo $? > %s/exit) &", env or "", MPIRUN, BIN, out, out, out))
    local pid = wait_for(function()
      return read(out .. "/model.safetensors") and read(out .. "/pid.1")
    end, 60)
    assert.is_truthy(pid, "no checkpoint within 60 s: " .. tostring(read(out .. "/mpirun.log")))
    assert(sh_ok(string.format("kill -%s %d", action, tonumber(pid))))
    local code = wait_for(function() return tonumber(read(out .. "/exit") or "") end, 60)
    return code, read(out .. "/mpirun.log") or "", out
  end

  local function resumable(out)
    -- the last checkpoint loads and training continues from it, with another number of ranks
    local model = assert(pivq.load_model(out .. "/model.safetensors"))
    assert.is_true(model:num_parameters() > 0)
    local state = require("dkjson").decode(select(2, pivq.load(out .. "/model.safetensors")).train)
    assert.is_true(state.step >= 4)
    train("", out, 64, state.step + 2, "resume=true")
  end

  it("a rank killed with -9 stops the others with a message, and the checkpoint stays usable", function()
    local code, log, out = disturb("9")
    assert.is_truthy(code, "mpirun did not stop within 60 s of the kill")
    assert.are_not.equal(0, code)
    assert.are_not.equal(124, code) -- not ended by the spec's timeout
    assert.matches("rank 1 .*exited on signal 9", log)
    resumable(out)
  end)

  it("a rank that hangs (SIGSTOP) makes the others stop after PIVQ_DIST_TIMEOUT", function()
    local code, log, out = disturb("STOP", "PIVQ_DIST_TIMEOUT=3")
    assert.is_truthy(code, "mpirun did not stop within 60 s")
    assert.are_not.equal(0, code)
    assert.are_not.equal(124, code)
    assert.matches("rank 0 of 2 had no answer from the other ranks for 3 s", log)
    assert.matches("train: stopping every rank", log)
    resumable(out)
  end)
end)
