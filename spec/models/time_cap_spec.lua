-- A time-capped training run (max_minutes) on a busy machine (two CPU-bound processes this spec
-- starts and stops) still quantizes: the quantizer starts by share of the budget even when
-- quant_start is far beyond the steps the budget allows; the ETA never exceeds what is left of
-- the cap; the stop message's command continues the run.
local pivq = require "pivq"
local json = require "dkjson"
local proc = require "spec.helpers.proc"
local Trainer = require "pivq.train.Trainer"

local TINY = { batch = 8, width = 32, enc_depth = 1, dec_depth = 1, heads = 2, patch = 7, L = 8, K = 32, c = 8,
  init_batches = 1, eval_images = 16, grid_every = 100000, ckpt_every = 100000, log_every = 5 }

local function with(t, extra)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  for k, v in pairs(extra) do out[k] = v end
  return out
end

local function read_log(path)
  local recs = {}
  for line in io.lines(path) do recs[#recs + 1] = json.decode(line) end
  return recs
end

describe("a time-capped run", function()
  local dir, hogs
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    -- the busy machine: two spinning shells (as many as the cores CI has)
    hogs = { proc.spawn("exec sh -c 'while :; do :; done'"), proc.spawn("exec sh -c 'while :; do :; done'") }
  end)
  teardown(function()
    for _, pid in ipairs(hogs) do
      proc.kill9(pid)
      proc.wait(pid)
    end
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("quantizes although quant_start is beyond reach, reports an ETA within the cap, says how to go on", function()
    local cap = 0.1 -- minutes
    local run = Trainer.new(with(TINY, { out = dir, steps = 1000000, quant_start = 1000000, max_minutes = cap,
      quiet = true }))
    local t0 = pivq.clock()
    local metrics, stopped = run:fit()
    local took = pivq.clock() - t0
    assert.is_nil(metrics)
    assert.are.equal("time limit", stopped)
    assert.is_false(run.model.quantizer.bypassed)
    assert.is_true(run.step < 1000000)
    local recs = read_log(dir .. "/log.jsonl")
    local quantized, bypassed = 0, 0
    for _, r in ipairs(recs) do
      if r.K_img then quantized = quantized + 1 else bypassed = bypassed + 1 end
      -- the ETA counts to the cap, never to the million-step schedule
      assert.is_true(r.eta <= math.max(0, cap * 60 - r.elapsed) + 1e-6,
        string.format("ETA %.1f s at %.1f s", r.eta, r.elapsed))
    end
    assert.is_true(quantized >= 1, "no logged step was quantized")
    -- the quantizer ran for at least a fifth of the steps (QUANT_MIN_SHARE)
    assert.is_true(run.quantized_steps >= 0.2 * run.step, run.quantized_steps .. " of " .. run.step)
    assert.is_true(took < cap * 60 * 3 + 30, "the cap was overrun: " .. took .. " s")
    assert.are.equal(quantized + bypassed, #recs)
    local ev = run:evaluate()
    assert.is_true(ev.quantized)
    assert.is_number(ev.K_img)
  end)

  it("prints a stop command that works: pivq train --out DIR --resume", function()
    local bin = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"
    local out_dir = dir .. "/run two" -- a blank: the printed command must quote it
    local args = {}
    for k, v in pairs(with(TINY, { steps = 40, quant_start = 4, stop_after = 10, log_every = 10 })) do
      args[#args + 1] = "--" .. k:gsub("_", "-") .. " " .. tostring(v)
    end
    table.sort(args)
    local cmd = bin .. " train --out " .. proc.shell_quote(out_dir) .. " " .. table.concat(args, " ")
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("*a")
    p:close()
    local hint = out:match("continue with: ([^\n]+)")
    assert.is_string(hint, out)
    assert.are.equal("pivq train --out '" .. dir .. "/run two' --resume", hint)
    -- run the printed command (with the same tiny options; the bundled pivq rather than PATH's)
    p = io.popen(bin .. hint:sub(5) .. " " .. table.concat(args, " "):gsub("%-%-stop%-after 10", "") .. " 2>&1")
    local out2 = p:read("*a")
    p:close()
    assert.matches("resumed at step 10", out2)
    assert.matches("outputs in ", out2)
  end)
end)

-- The main job itself, with a 15-second budget on a busy machine: it must quantize, write its
-- samples and report usage and K_img (before the fix it ended unquantized and wrote grey blobs).
describe("pivq demo with a tiny time budget on a busy machine #slow", function()
  it("still quantizes, and its metrics say so", function()
    local dir = os.tmpname()
    os.remove(dir)
    local hogs = { proc.spawn("exec sh -c 'while :; do :; done'"), proc.spawn("exec sh -c 'while :; do :; done'") }
    local bin = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"
    local p = io.popen(bin .. " demo --minutes 0.25 --out " .. proc.shell_quote(dir) .. " 2>&1; echo \"exit=$?\"")
    local out = p:read("*a")
    p:close()
    for _, pid in ipairs(hogs) do
      proc.kill9(pid)
      proc.wait(pid)
    end
    local metrics = json.decode(pivq.files.read_text(dir .. "/metrics.json") or "null")
    os.execute("rm -rf " .. proc.shell_quote(dir))
    assert.matches("exit=0", out)
    assert.matches("codebook initialised", out)
    assert.is_table(metrics, out)
    assert.is_true(metrics.quantized, out)
    assert.is_number(metrics.usage)
    assert.is_number(metrics.K_img)
  end)
end)
