-- Checkpoint writes under failure: a full disk (a file-size limit, and a real ENOSPC on a tiny
-- tmpfs when we may mount one), an unwritable folder, and `pivq train` itself hitting the
-- limit. Each time the error names the file and the reason, the previous file is untouched
-- byte for byte, and no temporary file is left. Also: the removal of temporaries a killed
-- writer left, atomic text files, and that loading a checkpoint never runs code in it.
local pivq = require "pivq"
local proc = require "helpers.proc"

local BIN = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. d) == 0)
  return d
end

local read = proc.read

-- names in dir, sorted
local function listing(dir)
  local p = io.popen("ls -A " .. proc.shell_quote(dir))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  table.sort(out)
  return out
end

-- a checkpoint large enough to exceed a small limit: 256 KiB of float32
local function big_tensors(v) return { w = pivq.full({ 256, 256 }, v) } end

-- fn(dir) with a tmpfs of `kbytes` KiB mounted at dir, or pending when we may not mount one
local function with_tmpfs(kbytes, fn)
  local d = tmpdir()
  local ok, why = proc.mount_tmpfs(d, kbytes)
  if not ok then
    os.execute("rm -rf " .. d)
    pending("cannot mount a tmpfs here (" .. why .. "); the file-size-limit cases cover the error path")
    return
  end
  finally(function()
    proc.umount(d)
    os.execute("rm -rf " .. d)
  end)
  fn(d)
end

local TRAIN_OPTS = "--width 32 --L 4 --K 16 --c 8 --heads 2 --enc-depth 1 --dec-depth 1 --batch 8 "
  .. "--quant-start 2 --init-batches 1 --grid-every 1000 --log-every 1000 --eval-images 16 --quiet --threads 1 "
  .. "--steps 50"

-- `pivq train ARGS` (with an optional shell prefix) -> its stdout and stderr, its exit code
local function run_train(args, prefix)
  local p = io.popen(string.format("(%s exec %s train %s) 2>&1; echo \"exit=$?\"", prefix or "", BIN, args))
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)\n$"))
end

describe("checkpoint writes on a full disk or an unwritable folder", function()
  it("a file-size limit: the error names the file, the old file stays, no temporary is left", function()
    local d = tmpdir()
    local path = d .. "/model.safetensors"
    assert(pivq.save(path, { w = pivq.ones(4) }))
    local before = read(path)
    local ok, err = proc.with_file_size_limit(64 * 1024, function() return pivq.save(path, big_tensors(2)) end)
    assert.is_nil(ok)
    assert.are.equal("safetensors_write: cannot write " .. path .. ": File too large", err)
    assert.are.equal(before, read(path))
    assert.are.same({ "model.safetensors" }, listing(d))
    -- and the next save, with room again, succeeds
    assert(pivq.save(path, big_tensors(2)))
    assert.are.equal(2, pivq.load(path).w:min())
    os.execute("rm -rf " .. d)
  end)

  it("a full file system (tmpfs): 'No space left on device', the old file stays, no temporary is left", function()
    with_tmpfs(128, function(d)
      local path = d .. "/model.safetensors"
      assert(pivq.save(path, { w = pivq.full({ 64, 64 }, 1) })) -- 16 KiB
      local before = read(path)
      local ok, err = pivq.save(path, big_tensors(3)) -- 256 KiB does not fit in 128
      assert.is_nil(ok)
      assert.are.equal("safetensors_write: cannot write " .. path .. ": No space left on device", err)
      assert.are.equal(before, read(path))
      assert.are.same({ "model.safetensors" }, listing(d))
      assert.are.equal(1, pivq.load(path).w:min())
    end)
  end)

  -- an atomic replacement needs room for the old file and the new one at once
  it("pivq train on a disk with room for one checkpoint: the second fails with ENOSPC, the first stays", function()
    local probe = tmpdir()
    assert(os.execute(BIN .. " train " .. TRAIN_OPTS .. " --stop-after 1 --out " .. probe .. " >/dev/null 2>&1") == 0)
    local size = #read(probe .. "/model.safetensors")
    os.execute("rm -rf " .. probe)
    with_tmpfs(math.ceil(1.5 * size / 4096) * 4, function(d)
      local out, code = run_train(TRAIN_OPTS .. " --ckpt-every 1 --stop-after 3 --out " .. d)
      assert.are.equal(1, code, out)
      local path = d .. "/model.safetensors"
      assert.is_truthy(out:find("train: cannot write checkpoint " .. path .. ": No space left on device", 1, true),
        out)
      local _, meta = assert(pivq.load(path))
      assert.are.equal(1, require("dkjson").decode(meta.train).step)
      assert(pivq.load_model(path))
      assert.are.same({ ".pivq-lock", "log.jsonl", "model.safetensors" }, listing(d)) -- the run's lock file
    end)
  end)

  it("an unwritable folder: 'Permission denied' naming the file, nothing created or replaced", function()
    local d = tmpdir()
    local path = d .. "/model.safetensors"
    assert(pivq.save(path, { w = pivq.ones(4) }))
    local before = read(path)
    assert(os.execute("chmod 0555 " .. d) == 0)
    local function save() return pivq.save(path, { w = pivq.zeros(4) }) end
    local ok, err
    if proc.is_root() then
      ok, err = proc.as_user(65534, save) -- root writes anywhere; nobody does not
    else
      ok, err = save()
    end
    os.execute("chmod 0755 " .. d)
    assert.is_nil(ok)
    assert.are.equal("safetensors_write: cannot create a temporary file beside " .. path .. ": Permission denied",
      err)
    assert.are.equal(before, read(path))
    assert.are.same({ "model.safetensors" }, listing(d))
    os.execute("rm -rf " .. d)
  end)

  it("pivq train past a file-size limit exits with 'train: cannot write checkpoint PATH: ...'", function()
    local d = tmpdir()
    local opts = TRAIN_OPTS .. " --out " .. d
    assert(os.execute(BIN .. " train " .. opts .. " --stop-after 2 >/dev/null 2>&1") == 0)
    local path = d .. "/model.safetensors"
    local before = assert(read(path))
    -- the limit (in 512-byte blocks) is below the checkpoint's size: every save fails
    local limit = math.floor(#before / 512 / 2)
    local out, code = run_train(opts .. " --resume --stop-after 4", "ulimit -f " .. limit .. ";")
    assert.are.equal(1, code, out) -- an error, not SIGXFSZ (exit 153)
    assert.is_truthy(out:find("train: cannot write checkpoint " .. path .. ": File too large", 1, true), out)
    assert.are.equal(before, read(path))
    assert.are.same({ ".pivq-lock", "log.jsonl", "model.safetensors" }, listing(d)) -- the run's lock file
    assert(pivq.load_model(path))
    os.execute("rm -rf " .. d)
  end)

  it("pivq train into a folder that cannot be made fails at the start, naming the file", function()
    local file = os.tmpname() -- a regular file: no folder can be made below it, even by root
    local out, code = run_train(TRAIN_OPTS .. " --out " .. file .. "/run")
    os.remove(file)
    assert.are.equal(1, code, out)
    assert.is_truthy(out:find("train: --out: mkdir_p: cannot create the folder " .. file .. "/run: Not a directory", 1,
      true), out)
  end)

  it("Trainer:save_checkpoint returns the error (the training loop raises it)", function()
    local d = tmpdir()
    local run = pivq.train.Trainer { out = d, width = 32, L = 4, K = 16, c = 8, heads = 2, enc_depth = 1,
      dec_depth = 1, batch = 8, quiet = true, threads = 1 }
    assert.is_true(run:save_checkpoint())
    local path = d .. "/model.safetensors"
    local before = read(path)
    local ok, err = proc.with_file_size_limit(math.floor(#before / 2), function() return run:save_checkpoint() end)
    assert.is_nil(ok)
    assert.are.equal("train: cannot write checkpoint " .. path .. ": File too large", err)
    assert.are.equal(before, read(path))
    os.execute("rm -rf " .. d)
  end)
end)

describe("pivq.files.remove_stale and write_text", function()
  it("removes only the temporary files of that target (TARGET.tmp-XXXXXX)", function()
    local d = tmpdir()
    local keep = { "model.safetensors", "model.safetensors.tmp-abc", "model.safetensors.tmp-abcdefg",
      "other.safetensors.tmp-AbC123", "xmodel.safetensors.tmp-AbC123" }
    local stale = { "model.safetensors.tmp-AbC123", "model.safetensors.tmp-zz99ZZ" }
    for _, list in ipairs({ keep, stale }) do
      for _, name in ipairs(list) do assert(io.open(d .. "/" .. name, "w")):close() end
    end
    assert.are.equal(2, pivq.files.remove_stale(d .. "/model.safetensors"))
    table.sort(keep)
    assert.are.same(keep, listing(d))
    assert.are.equal(0, pivq.files.remove_stale(d .. "/model.safetensors"))
    local n, err = pivq.files.remove_stale(d .. "/missing/model.safetensors")
    assert.is_nil(n)
    assert.matches("cannot open the folder .*/missing: No such file or directory", err)
    os.execute("rm -rf " .. d)
  end)

  it("write_text replaces a file atomically and fails cleanly", function()
    local d = tmpdir()
    local path = d .. "/metrics.json"
    assert(pivq.files.write_text(path, "{}\n"))
    assert(pivq.files.write_text(path, '{"psnr": 20}\n'))
    assert.are.equal('{"psnr": 20}\n', read(path))
    local ok, err = proc.with_file_size_limit(1024, function() return pivq.files.write_text(path, ("x"):rep(4096)) end)
    assert.is_nil(ok)
    assert.are.equal("write_file: cannot write " .. path .. ": File too large", err)
    assert.are.equal('{"psnr": 20}\n', read(path))
    assert.are.same({ "metrics.json" }, listing(d))
    assert.has_error(function() pivq.files.write_text(path, 3) end, "write_text: text must be a string, got number")
    os.execute("rm -rf " .. d)
  end)
end)

describe("loading a checkpoint", function()
  -- Lua code where JSON data is expected must be refused as bad data, never run
  it("never executes its metadata: the config and training state are parsed as JSON", function()
    local d = tmpdir()
    local path = d .. "/model.safetensors"
    local code = "(function() rawset(_G, 'SPEC_PWNED', true) return {} end)()"
    assert(pivq.save(path, { ["model.w"] = pivq.ones(2) }, { config = code, train = code }))
    local model, err = pivq.load_model(path)
    assert.is_nil(model)
    assert.matches("bad config JSON", err)
    local run = pivq.train.Trainer { out = d, width = 32, L = 4, K = 16, c = 8, heads = 2, enc_depth = 1,
      dec_depth = 1, batch = 8, quiet = true, threads = 1 }
    local ok, err2 = run:load_checkpoint()
    assert.is_nil(ok)
    assert.matches("no training state", err2)
    assert.is_nil(rawget(_G, "SPEC_PWNED"))
    os.execute("rm -rf " .. d)
  end)

  it("refuses a training state with a field missing or of the wrong type, naming it", function()
    local d = tmpdir()
    local opts = { out = d, width = 32, L = 4, K = 16, c = 8, heads = 2, enc_depth = 1, dec_depth = 1,
      batch = 8, quiet = true, threads = 1, steps = 2, quant_start = 1, init_batches = 1, eval_images = 8,
      seed = 3 }
    local run = pivq.train.Trainer(opts)
    run:fit()
    local path = d .. "/model.safetensors"
    local tensors, meta = assert(pivq.load(path))
    local json = require "dkjson"
    local function with(edit)
      local s = json.decode(meta.train)
      edit(s)
      local m = {}
      for k, v in pairs(meta) do m[k] = v end
      m.train = json.encode(s)
      assert(pivq.save(path, tensors, m))
      local ok, err = pivq.train.Trainer(opts):load_checkpoint()
      return err or ok
    end
    assert.are.equal(path .. ": bad training state: no 'step'", with(function(s) s.step = nil end))
    assert.are.equal(path .. ": bad training state: 'pos' must be a non-negative integer, got -1",
      with(function(s) s.pos = -1 end))
    assert.are.equal(path .. ": bad training state: 'bypassed' must be a boolean, got a string",
      with(function(s) s.bypassed = "no" end))
    assert.are.equal(path .. ": bad training state: 'rng' must be a table, got a number",
      with(function(s) s.rng = 5 end))
    -- the state as written loads
    assert.is_true(with(function() end))
    os.execute("rm -rf " .. d)
  end)
end)
