-- Crash safety under SIGKILL (slow: `busted --run=slow`, in CI by .ci/task test-slow).
--
-- A tiny `pivq train --resume` checkpointing every step is killed 40 times at random moments: a
-- third at a random time in its first 1.5 s (start-up included), the others after a random number
-- (1-30) of checkpoint writes began (seen with inotify), either a random fraction of a write's
-- measured duration later, aiming inside that write, or 0-5 ms later, anywhere in the step. Kills
-- inside a write are counted by the temporary file the killed writer leaves behind. After each
-- kill: the latest checkpoint loads (pivq.load and pivq.load_model), its step never goes back, and
-- `--resume` continues three more steps (and removes the temporary file). At the end the state
-- reached through all the kills equals, bit for bit, that of one uninterrupted run to the same
-- step: no kill ever corrupted anything.
local pivq = require "pivq"
local json = require "dkjson"
local proc = require "helpers.proc"
local clock = require "pivq.core.clock"

local BIN = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"
local TRIALS = 40

-- tiny and single-threaded (bit-exact resume); --steps is far away so a run never ends by itself
local OPTS = "--width 16 --L 4 --K 16 --c 8 --heads 2 --enc-depth 1 --dec-depth 1 --batch 8 --quant-start 20 "
  .. "--init-batches 2 --dead-after 10 --restart-every 25 --warmup 10 --steps 100000 --log-every 100000 "
  .. "--grid-every 100000 --eval-images 16 --threads 1 --quiet --ckpt-every 1"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. d) == 0)
  return d
end

local function train(out, extra)
  local log = out .. ".log"
  local rc = os.execute(string.format("%s train %s --out %s %s > %s 2>&1", BIN, OPTS, out, extra, log))
  local f = io.open(log)
  local text = f and f:read("*a") or ""
  if f then f:close() end
  assert(rc == 0, "pivq train " .. extra .. " failed:\n" .. text)
end

local function temporaries(dir)
  local p = io.popen("ls -A " .. proc.shell_quote(dir))
  local n = 0
  for name in p:lines() do
    if name:match("^model%.safetensors%.tmp%-") then n = n + 1 end
  end
  p:close()
  return n
end

-- the checkpoint loads both ways; returns its training step
local function check_checkpoint(path, context)
  local tensors, meta = pivq.load(path)
  assert(tensors, context .. ": pivq.load: " .. tostring(meta))
  local model, err = pivq.load_model(path)
  assert(model, context .. ": pivq.load_model: " .. tostring(err))
  local state = json.decode(meta.train or "")
  assert(type(state) == "table" and type(state.step) == "number", context .. ": no training state")
  return state.step, tensors
end

local function median(list)
  if #list == 0 then return 0.001 end
  local sorted = { unpack(list) }
  table.sort(sorted)
  return sorted[math.floor((#sorted + 1) / 2)]
end

describe("checkpoints under SIGKILL #slow", function()
  it("survive " .. TRIALS .. " kills at random moments, many inside a write, and resume exactly", function()
    local seed = os.time()
    math.randomseed(seed)
    local dir = tmpdir()
    local path = dir .. "/model.safetensors"
    train(dir, "--stop-after 5")
    local step = check_checkpoint(path, "first run")
    assert.are.equal(5, step)
    local watch = proc.watch(dir)
    -- checkpoint writes seen so far: from the temporary file's creation to its rename (seconds)
    local durations = {}
    -- returns once the k-th checkpoint write from now has begun (or after 10 s without one)
    local function after_writes(k)
      local began
      while k > 0 do
        local name, event = watch.next(10)
        if not name then return end
        if event == "create" and name:match("^model%.safetensors%.tmp%-") then
          k, began = k - 1, clock()
        elseif event == "rename" and name == "model.safetensors" and began then
          durations[#durations + 1], began = clock() - began, nil
        end
      end
    end
    local in_write, targeted, hit_targets, resumes = 0, 0, 0, 0
    local t0 = os.time()
    for trial = 1, TRIALS do
      local context = string.format("trial %d (seed %d)", trial, seed)
      watch.drain()
      local pid = proc.spawn(string.format("exec %s train %s --out %s --resume > %s.kill.log 2>&1", BIN, OPTS, dir,
        dir))
      local mode = trial % 3
      if mode == 0 then
        -- anywhere in [0, 1.5] s: start-up (Lua, data), resuming, training, checkpointing
        proc.sleep(math.random() * 1.5)
      else
        -- during training: once the k-th checkpoint write began, within that write (a random
        -- fraction of the writes' measured duration) or anywhere in the step that follows
        after_writes(math.random(1, 30))
        if mode == 1 then targeted = targeted + 1 end
        proc.spin(math.random() * (mode == 1 and median(durations) or 0.005))
      end
      local early = proc.poll_exit(pid)
      if early then
        local f = io.open(dir .. ".kill.log")
        error(string.format("%s: the training ended by itself (%s):\n%s", context, json.encode(early),
          f and f:read("*a") or ""))
      end
      assert(proc.kill9(pid), context .. ": kill failed")
      local how = proc.wait(pid)
      assert.are.equal(9, how.signal, context)
      local left = temporaries(dir)
      assert(left <= 1, context .. ": " .. left .. " temporary files (the resumed runs should remove them)")
      in_write = in_write + left
      if left > 0 and trial % 3 == 1 then hit_targets = hit_targets + 1 end
      local now = check_checkpoint(path, context)
      assert(now >= step, string.format("%s: the checkpoint went back from step %d to %d", context, step, now))
      -- --resume continues: three more steps, a new checkpoint, the temporary file removed
      train(dir, "--resume --stop-after " .. (now + 3))
      resumes = resumes + 1
      step = check_checkpoint(path, context .. ", after resuming")
      assert.are.equal(now + 3, step, context)
      assert.are.equal(0, temporaries(dir), context .. ": a temporary file survived the resume")
    end
    watch.close()
    -- the same step without interruption: bit-identical parameters, optimizer state and buffers
    local ref = tmpdir()
    train(ref, "--ckpt-every 100000 --stop-after " .. step)
    local _, got = check_checkpoint(path, "final")
    local ref_step, want = check_checkpoint(ref .. "/model.safetensors", "reference")
    assert.are.equal(step, ref_step)
    local n = 0
    for name, t in pairs(want) do
      n = n + 1
      assert(got[name], "missing " .. name)
      assert.are.equal(0, (t:float() - got[name]:float()):abs():max(), name .. " differs from the uninterrupted run")
    end
    print(string.format("\nkill test (seed %d): %d SIGKILLs, %d inside a checkpoint write (%d of %d aimed at one; "
      .. "median write %.2f ms); every checkpoint loaded, %d resumes continued; step %d equals an uninterrupted run "
      .. "on all %d tensors (%d s)", seed, TRIALS, in_write, hit_targets, targeted, median(durations) * 1000, resumes,
      step, n, os.time() - t0))
    assert.is_true(in_write >= 1, "no kill landed inside a checkpoint write")
    os.execute("rm -rf " .. dir .. " " .. ref .. " " .. dir .. ".log " .. dir .. ".kill.log " .. ref .. ".log")
  end)
end)
