-- The optional adversarial term of pivq.train (notebooks/METHOD.md, "Training losses"): the PatchGAN
-- discriminator, VQGAN's adaptive weight from gradient norms at the decoder's last layer, the
-- one-pass surrogate that carries reconstruction + weighted adversarial gradients, and exact
-- resume with the discriminator in the checkpoint.
local pivq = require "pivq"
local gradcheck = require "helpers.gradcheck"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  os.execute("mkdir -p " .. d)
  return d
end

local function tiny(out, extra)
  local o = { out = out, steps = 8, batch = 8, width = 32, enc_depth = 1, dec_depth = 1, heads = 2, patch = 7,
    L = 8, K = 32, c = 8, quant_start = 2, init_batches = 1, eval_images = 16, log_every = 1, grid_every = 1000,
    ckpt_every = 1000, warmup = 2, quiet = true, w_adv = 0.7, adv_start = 3, disc_width = 8, threads = 1 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function read_log(path)
  local json = require "dkjson"
  local out = {}
  for line in io.lines(path) do out[#out + 1] = json.decode(line) end
  return out
end

describe("nn.PatchDiscriminator", function()
  it("maps 28x28 images to a 5x5 logit map per image", function()
    local d = pivq.nn.PatchDiscriminator(1, { width = 8, generator = pivq.Generator(1) })
    assert.are.same({ 3, 1, 5, 5 }, d(pivq.rand(3, 1, 28, 28)):size())
  end)

  -- Its ops are gradient-checked one by one (nn_ops_spec); here the wiring. With slope 1 the
  -- activations are linear: float32 central differences (eps 1e-2) straddle the kinks of a
  -- LeakyReLU at dozens of pre-activations and would fail for reasons unrelated to the wiring.
  it("passes a finite-difference gradient check of its wiring (slope 1)", function()
    local g = pivq.Generator(5)
    local d = pivq.nn.PatchDiscriminator(1, { width = 4, layers = 1, slope = 1, generator = g })
    local x = pivq.randn({ 2, 1, 8, 8 }, { generator = g }):requires_grad(true)
    local inputs = { x }
    for _, p in ipairs(d:parameters()) do inputs[#inputs + 1] = p end
    local ok, msg = gradcheck(function(input) return d(input) end, inputs, { atol = 2e-2, max_elements = 40 })
    assert(ok, msg)
  end)

  it("equals its layers composed by hand", function()
    local g = pivq.Generator(6)
    local d = pivq.nn.PatchDiscriminator(1, { width = 8, layers = 2, generator = g })
    local x = pivq.rand({ 2, 1, 28, 28 }, { generator = g })
    local F = pivq.F
    local function c(m, h, stride, padding)
      return F.conv2d(h, m.weight, m.bias, { stride = stride, padding = padding })
    end
    local function gn(m, h) return F.group_norm(h, m.num_groups, m.weight, m.bias, m.eps) end
    local h = F.leaky_relu(c(d.conv1, x, 2, 1), 0.2)
    h = F.leaky_relu(gn(d.norm2, c(d.conv2, h, 2, 1)), 0.2)
    h = F.leaky_relu(gn(d.norm3, c(d.conv3, h, 1, 1)), 0.2)
    local want = c(d.head, h, 1, 1)
    assert.is_true((d(x) - want):abs():max() == 0)
  end)

  it("rejects bad sizes naming itself", function()
    local ok, err = pcall(pivq.nn.PatchDiscriminator, 0)
    assert.is_false(ok)
    assert.matches("PatchDiscriminator", err)
  end)
end)

describe("pivq.train adversarial term", function()
  it("weights the adversarial gradient by the last-layer gradient-norm ratio, in one backward pass", function()
    local d = tmpdir()
    local run = pivq.train.Trainer(tiny(d, { adv_start = 0, quant_start = 100 }))
    local x = run:next_batch()
    local terms, _, _, _, surrogate = run:losses(x)
    assert.is_not_nil(surrogate)
    surrogate:backward()
    local params = run.model:parameters()
    local got = {}
    for i, p in ipairs(params) do got[i] = p:grad() and p:grad():clone() end
    run.model:zero_grad()
    for _, p in ipairs(run.disc:parameters()) do assert.is_nil(p:grad(), "the generator pass trained D") end

    -- reference: the two losses through the whole model, separately (the model is deterministic
    -- in this configuration: learned readout, no dropout, quantizer bypassed)
    local y = run.model(x)
    local rec = pivq.F.l1_loss(y, x) + pivq.F.mse_loss(y, x)
    rec:backward { retain_graph = true }
    local n_rec = run.model.to_pixels.weight:grad():norm():item()
    local g_rec = {}
    for i, p in ipairs(params) do g_rec[i] = p:grad() and p:grad():clone() end
    run.model:zero_grad()
    local gan = -run.disc(y):mean()
    gan:backward()
    local n_gan = run.model.to_pixels.weight:grad():norm():item()
    local lambda = 0.7 * n_rec / (n_gan + 1e-4)
    assert.is_true(math.abs(terms.adv_weight - lambda) <= 1e-4 * lambda,
      string.format("adaptive weight %g, reference %g", terms.adv_weight, lambda))
    assert.is_true(math.abs(terms.gan:item() - gan:item()) < 1e-6)
    for i, p in ipairs(params) do
      if got[i] then
        local want = g_rec[i] + p:grad() * lambda
        local err = (got[i] - want):abs():max()
        local scale = want:abs():max() + 1e-6
        assert.is_true(err <= 1e-4 * scale, string.format("parameter %d: max difference %g (scale %g)", i, err, scale))
      end
    end
    os.execute("rm -rf " .. d)
  end)

  it("trains the discriminator and resumes exactly with it", function()
    local a, b = tmpdir(), tmpdir()
    pivq.train.Trainer(tiny(a)):fit()
    pivq.train.Trainer(tiny(b, { stop_after = 5 })):fit()
    pivq.train.Trainer(tiny(b, { resume = true })):fit()
    local la, lb = read_log(a .. "/log.jsonl"), read_log(b .. "/log.jsonl")
    assert.are.equal(8, #la)
    assert.are.equal(8, #lb)
    assert.is_nil(la[3].disc)
    assert.is_number(la[4].disc)
    for i = 1, 8 do
      assert.are.equal(la[i].total, lb[i].total, "step " .. i)
      assert.are.equal(la[i].disc, lb[i].disc, "step " .. i)
    end
    os.execute("rm -rf " .. a .. " " .. b)
  end)
end)
