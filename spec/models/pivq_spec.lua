-- The PI-VQ model and its training loop: order invariance of the decoder (and its absence in the
-- positional baseline), a smoke training whose loss falls, checkpoint round trip, exact resume,
-- the non-finite-loss guard, and `pivq train --help`.
local pivq = require "pivq"

local TINY = { image_size = 28, channels = 1, patch = 7, width = 32, enc_depth = 1, dec_depth = 1, heads = 2,
  mlp_ratio = 2, L = 8, K = 32, c = 8 }

local function tiny(mode, extra)
  local cfg = {}
  for k, v in pairs(TINY) do cfg[k] = v end
  cfg.mode = mode
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return pivq.PIVQ(cfg)
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  os.execute("mkdir -p " .. d)
  return d
end

local function tiny_train_opts(out, extra)
  local o = { out = out, steps = 8, batch = 8, width = 32, enc_depth = 1, dec_depth = 1, heads = 2, patch = 7,
    L = 8, K = 32, c = 8, quant_start = 2, init_batches = 1, eval_images = 16, log_every = 1, grid_every = 1000,
    ckpt_every = 1000, warmup = 2, quiet = true, restart_every = 3, dead_after = 2 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function read_log(path)
  local json = require "dkjson"
  local out = {}
  for line in io.lines(path) do out[#out + 1] = json.decode(line) end
  return out
end

describe("pivq.PIVQ", function()
  for _, mode in ipairs({ "matching", "nearest" }) do
    it(mode .. ": decode is invariant to the order of each image's codes", function()
      pivq.manual_seed(1)
      local m = tiny(mode)
      m:train(false)
      local codes = m:encode(pivq.rand(4, 1, 28, 28))
      local a = m:decode(codes)
      for s = 1, 5 do
        local perm = pivq.randperm(8, { generator = pivq.Generator(s) })
        local b = m:decode(codes:index_select(2, perm))
        assert.is_true((a - b):abs():max() <= 1e-5)
      end
    end)
  end

  it("positional: decode depends on the order of the codes", function()
    pivq.manual_seed(1)
    local m = tiny("positional")
    m:train(false)
    local codes = m:encode(pivq.rand(4, 1, 28, 28))
    local a = m:decode(codes)
    local b = m:decode(codes:index_select(2, pivq.tensor({ 8, 7, 6, 5, 4, 3, 2, 1 }, "int64")))
    assert.is_true((a - b):abs():max() > 1e-3)
  end)

  it("matching gives each image distinct codes, sorted", function()
    local m = tiny("matching")
    local codes = m:encode(pivq.rand(6, 1, 28, 28))
    for b = 1, 6 do
      local row = codes[b]:totable()
      for i = 2, #row do assert.is_true(row[i] > row[i - 1]) end
    end
  end)

  it("an exchangeable readout runs and keeps the decoder invariant", function()
    local m = tiny("matching", { readout = "exchangeable" })
    local y, idx = m(pivq.rand(2, 1, 28, 28))
    assert.are.same({ 2, 1, 28, 28 }, y:size())
    assert.are.same({ 2, 8 }, idx:size())
  end)

  it("folding from_code into the decoder's projections changes neither values nor gradients", function()
    for _, mode in ipairs({ "matching", "nearest" }) do
      local m = tiny(mode)
      local zq = pivq.randn(3, 8, 8):requires_grad(true)
      local w = pivq.randn(3, 1, 28, 28)
      local function run(fold)
        m.fold_context = fold
        m:zero_grad()
        zq:zero_grad()
        local y = m:decode_vectors(zq)
        ;(y * w):sum():backward()
        local grads = { zq:grad():clone() }
        for _, p in ipairs(m:parameters()) do grads[#grads + 1] = p:grad() and p:grad():clone() or false end
        return y:detach():clone(), grads
      end
      local y1, g1 = run(true)
      local y2, g2 = run(false)
      m.fold_context = nil -- back to the class default
      assert((y1 - y2):abs():max() <= 1e-5)
      assert.are.equal(#g1, #g2)
      for i = 1, #g1 do
        assert.are.equal(not g1[i], not g2[i])
        -- float32 rounding of a different summation, relative to the gradient's size
        if g1[i] then
          assert((g1[i] - g2[i]):abs():max() <= 1e-5 * math.max(1, g2[i]:abs():max()), "gradient " .. i)
        end
      end
    end
  end)

  it("latents equal the encoder composed by hand (all rows through every block, then the readout rows)", function()
    for _, depth in ipairs({ 1, 2, 3 }) do
      local m = tiny("matching", { enc_depth = depth })
      local x = pivq.rand(3, 1, 28, 28)
      local tokens = m.patch_embed(m:patchify(x)) + m.enc_pos
      local h = pivq.cat({ tokens, m.queries:expand(3, 8, 32) }, 2)
      for i = 1, depth do h = m["enc" .. i](h) end
      local ref = m.to_code(m.enc_norm(h:narrow(2, 17, 8)))
      assert((m:latents(x) - ref):abs():max() <= 1e-5)
    end
  end)

  it("rejects bad configurations and inputs with clear messages", function()
    assert.has_error(function() tiny("matching", { K = 4 }) end, "PIVQ: matching needs K >= L, got K=4 L=8")
    assert.has_error(function() tiny("bogus") end)
    assert.has_error(function() tiny("matching", { patch = 5 }) end, "PIVQ: image_size 28 is not a multiple of patch 5")
    local m = tiny("matching")
    assert.has_error(function() m:encode(pivq.rand(2, 3, 28, 28)) end)
    assert.has_error(function() m:decode(pivq.tensor({ { 1, 2 } }, "int64")) end)
    assert.has_error(function() m:decode(pivq.tensor({ { 1, 2, 3, 4, 5, 6, 7, 99 } }, "int64")) end,
      "PIVQ:decode: code 99 out of range 1..32")
  end)

  it("round-trips through a checkpoint", function()
    local m = tiny("matching")
    local d = tmpdir()
    assert(m:save(d .. "/m.safetensors"))
    local m2 = assert(pivq.load_model(d .. "/m.safetensors"))
    local x = pivq.rand(3, 1, 28, 28)
    m:train(false)
    assert.are.same(m:encode(x):totable(), m2:encode(x):totable())
    assert.is_true((m(x) - m2(x)):abs():max() == 0)
    local bad = d .. "/bad.safetensors"
    local f = io.open(bad, "wb")
    f:write("garbage")
    f:close()
    local none, err = pivq.load_model(bad)
    assert.is_nil(none)
    assert.is_string(err)
    os.execute("rm -rf " .. d)
  end)
end)

describe("pivq.train", function()
  it("a smoke training lowers the loss and writes its outputs", function()
    local d = tmpdir()
    local run = pivq.train.Trainer(tiny_train_opts(d, { steps = 30, lr = 3e-3 }))
    local metrics = run:fit()
    local log = read_log(d .. "/log.jsonl")
    assert.are.equal(30, #log)
    local first = (log[1].l1 + log[2].l1) / 2
    local last = (log[29].l1 + log[30].l1) / 2
    assert.is_true(last < first, string.format("l1 %.4f -> %.4f", first, last))
    assert.is_number(metrics.psnr)
    assert.is_number(metrics.K_img)
    for _, f in ipairs({ "model.safetensors", "metrics.json", "recon.png", "curve.svg" }) do
      assert.is_truthy(io.open(d .. "/" .. f), f)
    end
    local m = assert(pivq.load_model(d .. "/model.safetensors"))
    assert.are.equal("matching", m.config.mode)
    os.execute("rm -rf " .. d)
  end)

  it("resumes exactly: the losses after resuming equal an uninterrupted run's", function()
    local a, b = tmpdir(), tmpdir()
    pivq.train.Trainer(tiny_train_opts(a, { steps = 8 })):fit()
    pivq.train.Trainer(tiny_train_opts(b, { steps = 8, stop_after = 4 })):fit()
    pivq.train.Trainer(tiny_train_opts(b, { steps = 8, resume = true })):fit()
    local la, lb = read_log(a .. "/log.jsonl"), read_log(b .. "/log.jsonl")
    assert.are.equal(8, #la)
    assert.are.equal(8, #lb)
    for i = 1, 8 do
      assert.are.equal(la[i].step, lb[i].step)
      assert.are.equal(la[i].total, lb[i].total, "step " .. i)
    end
    os.execute("rm -rf " .. a .. " " .. b)
  end)

  it("stops on a non-finite loss without overwriting the last good checkpoint", function()
    local d = tmpdir()
    pivq.train.Trainer(tiny_train_opts(d, { steps = 3 })):fit()
    local f = io.open(d .. "/model.safetensors", "rb")
    local before = f:read("*a")
    f:close()
    local run = pivq.train.Trainer(tiny_train_opts(d, { steps = 6, resume = true }))
    -- poison a weight: the next forward pass produces NaN
    run:load_checkpoint()
    pivq.no_grad(function() run.model.to_pixels.weight:fill(0 / 0) end)
    run.opts.resume = false
    local ok, err = pcall(run.fit, run)
    assert.is_false(ok)
    assert.matches("the loss became", err)
    f = io.open(d .. "/model.safetensors", "rb")
    assert.are.equal(before, f:read("*a"))
    f:close()
    os.execute("rm -rf " .. d)
  end)

  it("warns when 2+ threads would spin on a busy machine, unless a wait policy is set", function()
    local warn = require("pivq.train").spin_warning
    local cpu2 = "processor\t: 0\nvendor_id : x\n\nprocessor\t: 1\nvendor_id : x\n"
    local none = function() return nil end
    local msg = warn(2, none, "5.53 4.43 3.76 3/200 123\n", cpu2)
    assert.matches("the machine is busy (load 5.5 on 2 cores)", msg, 1, true)
    assert.matches("OMP_WAIT_POLICY=PASSIVE", msg, 1, true)
    assert.is_nil(warn(2, none, "1.50 1.0 1.0 1/100 1\n", cpu2)) -- not busy
    assert.is_nil(warn(1, none, "9.00 1.0 1.0 1/100 1\n", cpu2)) -- one thread does not spin
    assert.is_nil(warn(2, function(k) return k == "OMP_WAIT_POLICY" and "PASSIVE" or nil end,
      "9.00 1.0 1.0 1/100 1\n", cpu2)) -- the user chose a policy
    assert.is_nil(warn(2, none, nil, nil)) -- no /proc: no guess
    -- the host or require "pivq" chose the spin count: no warning; libgomp's default: the warning
    assert.is_nil(warn(2, none, "9.00 1.0 1.0 1/100 1\n", cpu2, "pivq: GOMP_SPINCOUNT=1000"))
    assert.truthy(warn(2, none, "9.00 1.0 1.0 1/100 1\n", cpu2, "libgomp default (libgomp was loaded before pivq)"))
  end)

  it("documents every option in pivq train --help", function()
    local bin = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"
    local p = io.popen(bin .. " train --help 2>&1")
    local text = p:read("*a")
    p:close()
    for _, o in ipairs(pivq.train.options) do
      assert.is_truthy(text:find("--" .. o[1]:gsub("_", "-"), 1, true), o[1])
    end
  end)
end)
