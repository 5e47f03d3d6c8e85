-- Trust, round two (issue #18): every file write checked, no shell strings, options that refuse
-- what cannot work, resume that keeps its model, one writer per run folder, line-buffered output.
-- Each `it` is one finding of the issue: it failed before the change and passes after it.
local pivq = require "pivq"
local proc = require "spec.helpers.proc"
local json = require "dkjson"

local bin = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"
local q = proc.shell_quote

local run, read = proc.run, proc.read

local function exists(path) return read(path) ~= nil end

-- the smallest model `pivq train` builds, a few steps
local TINY = "--batch 8 --L 8 --K 16 --c 8 --width 16 --heads 2 --enc-depth 1 --dec-depth 1 --quant-start 2 "
  .. "--init-batches 1 --warmup 1 --eval-images 16 --grid-every 1000 --ckpt-every 1000 --threads 1"
local function train(out, extra)
  return run(string.format("%s train %s --steps %d --out %s %s", bin, TINY, 4, q(out), extra or ""))
end

describe("trust", function()
  local dir
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(pivq.files.mkdir_p(dir))
  end)
  teardown(function() pivq.files.run({ "rm", "-rf", "--", dir }) end)

  describe("file writes", function()
    it("pivq.files.mkdir_p makes parents, accepts existing folders, refuses a file in the way", function()
      assert.is_true(pivq.files.mkdir_p(dir .. "/a/b/c"))
      assert.is_true(pivq.files.mkdir_p(dir .. "/a/b/c"))
      assert.is_true(pivq.files.write_text(dir .. "/a/file", "x"))
      local ok, err = pivq.files.mkdir_p(dir .. "/a/file/d")
      assert.is_nil(ok)
      assert.matches("mkdir_p: cannot create the folder .*/a/file/d", err)
    end)

    it("a quote or a shell command in --out is a folder name, never shell text", function()
      local out, code = train(dir .. "/bob's run")
      assert.are.equal(0, code, out)
      assert.is_true(exists(dir .. "/bob's run/model.safetensors"))
      out, code = train(dir .. "/x';touch " .. dir .. "/INJECTED;'")
      assert.are.equal(0, code, out)
      assert.is_false(exists(dir .. "/INJECTED"))
    end)

    it("pivq eval on a full disk (ulimit -f 0) exits non-zero naming eval.json and keeps the old file", function()
      local run_dir = dir .. "/evalrun"
      local out, code = train(run_dir)
      assert.are.equal(0, code, out)
      local ev = run_dir .. "/eval.json"
      local cmd = string.format("%s eval --ckpt %s/model.safetensors --samples 20 --features pixels "
        .. "--test-images 30 --strategy pair --out %s", bin, q(run_dir), q(ev))
      out, code = run(cmd) -- writes the code bank's cache (before the limit)
      assert.are.equal(0, code, out)
      assert(pivq.files.write_text(ev, '{"previous": true}\n'))
      out, code = run("ulimit -f 0; " .. cmd)
      assert.are_not.equal(0, code, out)
      assert.matches("eval: write_file: cannot write .*eval.json: File too large", out)
      assert.are.equal('{"previous": true}\n', read(ev))
    end)

    it("a training run whose curve.svg cannot be written fails naming the file (not 'outputs in')", function()
      local run_dir = dir .. "/curverun"
      assert(pivq.files.mkdir_p(run_dir .. "/curve.svg")) -- a folder in the way: the rename fails
      local out, code = train(run_dir)
      assert.are_not.equal(0, code, out)
      assert.matches("train: cannot write .*curve.svg", out)
      assert.not_matches("outputs in", out)
    end)

    it("plot.save reports a failed write instead of leaving an empty file", function()
      local ok, err = pivq.plot.save("/nonexistent/dir/c.svg", { series = { { x = { 1, 2 }, y = { 1, 2 } } } })
      assert.is_nil(ok)
      assert.matches("plot.save: .*/nonexistent/dir/c.svg", err)
    end)

    it("pivq.files.run passes arguments to the program unparsed (no shell)", function()
      local status, out = pivq.files.run({ "printf", "%s|", "a b", "$(echo x)", "'q'" })
      assert.are.equal(0, status)
      assert.are.equal("a b|$(echo x)|'q'|", out)
      status = pivq.files.run({ "sh", "-c", "exit 3" })
      assert.are.equal(3, status)
      assert.are.equal(127, (pivq.files.run({ dir .. "/no-such-program" })))
    end)

    it("bench_data never deletes a folder it did not create, and runs again", function()
      local data = dir .. "/mydata"
      assert(pivq.files.mkdir_p(data))
      assert(pivq.files.write_text(data .. "/notes.txt", "mine\n"))
      assert(pivq.image.save(data .. "/a.png", pivq.rand(1, 8, 8)))
      local out, code = run(string.format("%s bench_data --images 3 --dir %s", bin, q(data)))
      assert.are_not.equal(0, code, out)
      assert.matches("holds 1 images, not %-%-images 3; give a new or empty folder %(nothing is deleted%)", out)
      assert.are.equal("mine\n", read(data .. "/notes.txt"))
      assert.is_true(exists(data .. "/a.png"))
      -- a new folder is filled and kept; a rerun measures it as it is
      out, code = run(string.format("%s bench_data --images 16 --dir %s", bin, q(dir .. "/jpegs")))
      assert.are.equal(0, code, out)
      assert.matches("generated 16 JPEGs", out)
      assert.matches("from cache", out)
      assert.are.equal(16, #pivq.image.list(dir .. "/jpegs"))
    end)
  end)

  describe("training options", function()
    local cases = {
      { "--steps 0", "%-%-steps must be an integer >= 1, got 0" },
      { "--lr=-1", "%-%-lr must be > 0, got %-1" },
      { "--decay 1", "%-%-decay must be in %[0, 1%), got 1" },
      { "--init-batches 0", "%-%-init%-batches must be an integer >= 1, got 0" },
      { "--image-size 32", "%-%-image%-size must be 0 or 28 for fashion%-mnist" },
      { "--batch 70000", "the training split holds 60000 images, fewer than %-%-batch 70000" },
      { "--quantizer nearst", "%-%-quantizer must be matching | nearest | positional, got 'nearst'" },
    }
    for _, c in ipairs(cases) do
      it("refuses " .. c[1] .. " at start, naming the option", function()
        local out, code = train(dir .. "/bad", c[1])
        assert.are_not.equal(0, code, out)
        assert.matches("train: " .. c[2], out)
        assert.is_false(exists(dir .. "/bad/log.jsonl"))
      end)
    end

    it("pivq.train.Trainer refuses an unknown option naming the closest", function()
      local ok, err = pcall(function()
        local t = pivq.train.Trainer({ out = dir .. "/u", quantiser = "nearest" })
        return t
      end)
      assert.is_false(ok)
      assert.matches("pivq.train.Trainer: unknown option 'quantiser' %(did you mean 'quantizer'%?%)", err)
      assert.matches("trust_spec.lua", err) -- raised at the caller's line
    end)
  end)

  describe("resume", function()
    it("keeps the checkpoint's model and quantizer; a contradicting option names both values", function()
      local r = dir .. "/resume"
      local out, code = train(r, "--quantizer nearest --L 8")
      assert.are.equal(0, code, out)
      out, code = run(string.format("%s train %s --steps 6 --out %s --resume", bin, (TINY:gsub("%-%-L 8 ", "")), q(r)))
      assert.are.equal(0, code, out)
      assert.matches("mode=nearest", out)
      local _, meta = assert(pivq.load(r .. "/model.safetensors"))
      assert.are.equal("nearest", json.decode(meta.train).options.quantizer)
      assert.are.equal(6, json.decode(meta.train).step)
      out, code = run(string.format("%s train %s --steps 8 --out %s --resume --quantizer matching", bin, TINY, q(r)))
      assert.are_not.equal(0, code, out)
      assert.matches("%-%-quantizer matching contradicts the checkpoint .* trained with %-%-quantizer nearest", out)
      out, code = run(string.format("%s train %s --steps 8 --out %s --resume --L 16", bin, (TINY:gsub("%-%-L 8 ", "")),
        q(r)))
      assert.are_not.equal(0, code, out)
      assert.matches("%-%-L 16 contradicts the checkpoint .* trained with %-%-L 8", out)
      assert.are.equal(6, json.decode(select(2, pivq.load(r .. "/model.safetensors")).train).step)
    end)

    it("--help lists the options that may change on resume", function()
      local out = run(bin .. " train --help")
      assert.matches("options that may change on resume: %-%-out, %-%-resume, %-%-steps, %-%-batch, %-%-threads, "
        .. "%-%-workers, %-%-precision", out)
    end)
  end)

  describe("one writer per run folder", function()
    it("a second run fails at once naming the holder's PID; a killed holder's lock does not block", function()
      local r = dir .. "/locked"
      assert(pivq.files.mkdir_p(r))
      -- a holder: takes the lock, then sleeps until killed
      local pid = proc.spawn(string.format("exec %s -e %s", bin,
        q(string.format("L = pivq.files.lock(%q); io.write('held\\n'); io.flush(); "
          .. "pivq.files.run({'sleep', '60'})", r .. "/.pivq-lock"))) .. " >/dev/null")
      local t0 = pivq.clock()
      while read(r .. "/.pivq-lock") ~= pid .. "\n" and pivq.clock() - t0 < 20 do proc.sleep(0.05) end
      local out, code = train(r)
      assert.are_not.equal(0, code, out)
      assert.matches("train: .*locked is in use by another run %(PID " .. pid .. "%)", out)
      assert.is_false(exists(r .. "/log.jsonl"))
      proc.kill9(pid)
      proc.wait(pid)
      assert.is_true(exists(r .. "/.pivq-lock")) -- the stale file stays; its lock went with the process
      out, code = train(r)
      assert.are.equal(0, code, out)
    end)

    it("pivq.files.lock: one holder at a time, released explicitly", function()
      local path = dir .. "/l.lock"
      local a = assert(pivq.files.lock(path))
      -- another open file description of the same file: refused, naming this process
      local b, err, holder = pivq.files.lock(path)
      assert.is_nil(b)
      assert.matches("is held by another process", err)
      assert.is_true(holder > 0)
      a:release()
      b = assert(pivq.files.lock(path))
      b:release()
    end)

    it("--out inside the dataset folder is refused", function()
      local ds = dir .. "/faces"
      assert(pivq.files.mkdir_p(ds))
      for i = 1, 4 do assert(pivq.image.save(string.format("%s/%d.png", ds, i), pivq.rand(3, 16, 16))) end
      local out, code = run(string.format("%s train %s --steps 2 --dataset %s --image-size 16 --patch 4 --batch 2 "
        .. "--out %s", bin, (TINY:gsub("%-%-batch 8 ", "")), q(ds), q(ds .. "/run")))
      assert.are_not.equal(0, code, out)
      assert.matches("%-%-out .*faces/run is inside the dataset folder", out)
    end)
  end)

  describe("bounded memory and counts", function()
    local r
    setup(function()
      r = dir .. "/interp"
      local out, code = train(r)
      assert(code == 0, out)
    end)

    it("interpolate refuses a strip beyond the image limit before decoding, naming the options", function()
      local t0 = pivq.clock()
      local out, code = run(string.format("%s interpolate --ckpt %s/model.safetensors --strategy lerp --steps 100000 "
        .. "--out %s/big.png", bin, q(r), q(r)))
      assert.are_not.equal(0, code, out)
      assert.matches("4 paths of 100001 frames at %-%-scale 3 make a strip of .* pixels, more than the image limit",
        out)
      assert.is_true(pivq.clock() - t0 < 60, "refused late") -- a bound on the whole command (no decode)
    end)

    it("interpolate decodes in batches: --batch 2 gives the strip --batch 256 gives", function()
      local cmd = "%s interpolate --ckpt %s/model.safetensors --paths 2 --steps 5 --batch %d --out %s"
      local out, code = run(string.format(cmd, bin, q(r), 2, q(r .. "/b2.png")))
      assert.are.equal(0, code, out)
      out, code = run(string.format(cmd, bin, q(r), 256, q(r .. "/b256.png")))
      assert.are.equal(0, code, out)
      local a, b = assert(pivq.image.load(r .. "/b2.png")), assert(pivq.image.load(r .. "/b256.png"))
      assert.are.equal(0, (a:float() - b:float()):abs():max())
    end)

    local counts = {
      { "interpolate --a 0", "pivq interpolate: %-%-a must be a test%-set index from 1" },
      { "interpolate --paths 0", "pivq interpolate: %-%-paths must be an integer >= 1, got 0" },
      { "sample --bank-limit 0", "pivq sample: %-%-bank%-limit must be an integer >= 1, got 0" },
      { "sample --parents 0", "pivq sample: %-%-parents must be an integer >= 1, got 0" },
      { "eval --bank-limit 0", "pivq eval: %-%-bank%-limit must be an integer >= 1, got 0" },
    }
    for _, c in ipairs(counts) do
      it("pivq " .. c[1] .. " is refused at start, naming the option", function()
        local cmd, rest = c[1]:match("^(%S+) (.*)$")
        local out, code = run(string.format("%s %s --ckpt %s/model.safetensors %s", bin, cmd, q(r), rest))
        assert.are_not.equal(0, code, out)
        assert.matches(c[2], out)
      end)
    end

    it("a model config beyond the machine's memory is refused before allocating", function()
      local t0 = pivq.clock()
      -- blocks of width 8192 (5.4e8 parameters each) until the weights pass the machine's memory;
      -- below the absolute cap of 2^34 parameters up to 30 blocks (67 GB of memory)
      local mem = assert(pivq.PIVQ.memory_bytes(), "no /proc/meminfo")
      local blocks = math.floor(mem / (4 * 8 * 8192 ^ 2)) + 2
      assert(blocks <= 30, "this machine's memory is beyond what a config under 2^34 parameters can exceed")
      local ok, err = pcall(pivq.PIVQ, { width = 8192, enc_depth = blocks, dec_depth = 1, heads = 4 })
      assert.is_false(ok)
      assert.matches("PIVQ: the config asks for about .* parameters %(.* GB of float32 weights%), more than this "
        .. "machine's memory", err)
      assert.is_true(pivq.clock() - t0 < 5)
      ok, err = pcall(pivq.PIVQ, { quantiser = "nearest" })
      assert.is_false(ok)
      assert.matches("PIVQ: unknown config key 'quantiser' %(did you mean", err)
    end)

    it("a checkpoint whose stored config has an unknown key does not load", function()
      local tensors, meta = assert(pivq.load(r .. "/model.safetensors"))
      local cfg = json.decode(meta.config)
      cfg.quantiser = "nearest"
      meta.config = json.encode(cfg)
      assert(pivq.save(r .. "/odd.safetensors", tensors, meta))
      local model, err = pivq.load_model(r .. "/odd.safetensors")
      assert.is_nil(model)
      assert.matches("odd.safetensors: PIVQ: unknown config key 'quantiser'", err)
    end)
  end)

  describe("output", function()
    it("stdout is line-buffered when it is not a terminal", function()
      local log = dir .. "/stdout.log"
      local pid = proc.spawn(string.format("exec %s -e %s >%s 2>&1", bin,
        q("print('first line'); pivq.files.run({'sleep', '30'})"), q(log)))
      local t0 = pivq.clock()
      while (read(log) or "") == "" and pivq.clock() - t0 < 10 do proc.sleep(0.05) end
      local text = read(log)
      proc.kill9(pid)
      proc.wait(pid)
      assert.are.equal("first line\n", text)
    end)

    it("--quiet still prints the line saying the run stopped early", function()
      local out, code = train(dir .. "/quiet", "--quiet --stop-after 2")
      assert.are.equal(0, code, out)
      assert.matches("stopped at step 2: checkpoint saved to", out)
    end)
  end)
end)
