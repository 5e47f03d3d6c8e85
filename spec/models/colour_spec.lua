-- Colour images end to end: the convolutional decoder head against a reference built from
-- the reference convolution and an explicit nearest upsampling, its gradients against finite
-- differences, the presets, and a tiny colour training (an RGBA folder) whose checkpoint
-- carries its dataset description into evaluation.
local pivq = require "pivq"
local craft = require "io.craft"
local layouts = require "pivq.data.layouts"
local F = pivq.F

local CFG = { image_size = 16, channels = 3, patch = 4, width = 16, enc_depth = 1, dec_depth = 1, heads = 2,
  mlp_ratio = 2, L = 4, K = 8, c = 4, head = "conv", head_width = 8 }

-- nearest 2x upsampling written out: out[y][x] = in[ceil(y/2)][ceil(x/2)], through index_select
local function upsample2(x)
  local H, W = x:size(3), x:size(4)
  local rows, cols = {}, {}
  for y = 1, 2 * H do rows[y] = math.floor((y - 1) / 2) + 1 end
  for xx = 1, 2 * W do cols[xx] = math.floor((xx - 1) / 2) + 1 end
  return x:index_select(3, pivq.tensor(rows, "int64")):index_select(4, pivq.tensor(cols, "int64"))
end

local function reference_head(m, features)
  local B, g, D = features:size(1), m.grid, m.config.width
  local h = features:reshape(B, g, g, D):permute(1, 4, 2, 3):contiguous()
  local function conv(mod, x)
    return F.conv2d_reference(x, mod.weight, mod.bias, mod.opts)
  end
  h = conv(m.head_in, h)
  for i = 1, m.head_stages do
    local u = conv(m["head_up" .. i], upsample2(h))
    h = u * u:sigmoid() -- SiLU
  end
  return conv(m.head_out, h):sigmoid()
end

describe("the convolutional head", function()
  it("equals nearest upsampling + the reference convolution, stage by stage", function()
    pivq.manual_seed(3)
    local m = pivq.PIVQ(CFG)
    assert.are.equal(2, m.head_stages) -- patch 4 = 2 x 2
    local features = pivq.randn(2, m.n_patches, CFG.width)
    local got = pivq.no_grad(function() return m:head(features) end)
    local want = pivq.no_grad(function() return reference_head(m, features) end)
    assert.are.same({ 2, 3, 16, 16 }, got:size())
    assert.is_true((got - want):abs():max() < 1e-5)
  end)

  it("its gradients match central finite differences", function()
    pivq.manual_seed(4)
    local m = pivq.PIVQ(CFG)
    local features = pivq.randn(1, m.n_patches, CFG.width)
    local target = pivq.rand(1, 3, 16, 16)
    local function loss() return (m:head(features) - target):pow(2):sum() end
    loss():backward()
    for _, name in ipairs({ "head_in", "head_up1", "head_out" }) do
      local w = m[name].weight
      local flat = w:view(-1)
      local analytic = w:grad():view(-1)
      for _, i in ipairs({ 1, math.floor(flat:numel() / 2), flat:numel() }) do
        local old = flat:get(i)
        local eps = 1e-2
        flat:set(i, old + eps)
        local up = pivq.no_grad(loss):item()
        flat:set(i, old - eps)
        local down = pivq.no_grad(loss):item()
        flat:set(i, old)
        local fd = (up - down) / (2 * eps)
        local a = analytic:get(i)
        assert.is_true(math.abs(fd - a) <= 2e-2 * math.max(1, math.abs(fd)),
          string.format("%s[%d]: analytic %g, finite differences %g", name, i, a, fd))
      end
    end
  end)

  it("refuses a patch that is not a power of 2, naming the value", function()
    local cfg = {}
    for k, v in pairs(CFG) do cfg[k] = v end
    cfg.patch, cfg.image_size = 3, 15
    assert.has_error(function() pivq.PIVQ(cfg) end,
      "PIVQ: the conv head upsamples by 2 per stage: patch must be a power of 2, got 3")
  end)
end)

describe("presets", function()
  local options = require "pivq.train.options"
  local function resolve(user) return options.apply_preset(options.resolve(user)) end
  it("auto picks by image size for a folder, nothing for Fashion-MNIST; user options win", function()
    local o = resolve({ dataset = "/data/x", image_size = 64 })
    assert.are.equal("face64", o.preset)
    assert.are.equal("conv", o.head)
    assert.are.equal(8, o.patch)
    assert.are.equal(1024, o.K)
    local mine = resolve({ dataset = "/data/x", image_size = 64, K = 4096, head = "linear" })
    assert.are.equal(4096, mine.K)
    assert.are.equal("linear", mine.head)
    local fm = resolve({})
    assert.are.equal("auto", fm.preset)
    assert.are.equal("linear", fm.head)
    assert.are.equal(7, fm.patch)
    assert.are.equal("linear", resolve({ dataset = "/data/x", image_size = 64, preset = "none" }).head)
    assert.has_error(function() resolve({ preset = "face65" }) end,
      "train: --preset must be auto, none, face64, colour32 or colour128, got 'face65'")
  end)
end)

describe("colour training (smoke)", function()
  local root
  setup(function() root = craft.tmpdir() end)
  teardown(function() craft.rmdir(root) end)

  it("trains on an RGBA folder; the checkpoint carries the dataset into evaluation", function()
    local data = root .. "/icons"
    assert(os.execute("mkdir -p '" .. data .. "'") == 0)
    local gen = pivq.Generator(5)
    local attr = { "20", "Reddish" }
    for i = 1, 20 do
      -- a coloured square on a transparent background: alpha 1 inside, 0 outside
      local img = pivq.zeros(4, 16, 16)
      local rgb = pivq.rand({ 3 }, { generator = gen })
      local inner = img:narrow(2, 5, 8):narrow(3, 5, 8)
      for k = 1, 3 do inner:select(1, k):fill_(rgb:get(k)) end
      inner:select(1, 4):fill_(1)
      img:narrow(1, 1, 3):narrow(2, 1, 4):fill_(0.3) -- hidden RGB under alpha 0: must not show
      local name = string.format("%02d.png", i)
      assert(pivq.image.save(data .. "/" .. name, img))
      attr[#attr + 1] = string.format("%s %2d", name, rgb:get(1) > 0.5 and 1 or -1)
    end
    craft.write(data .. "/list_attr_celeba.txt", table.concat(attr, "\n") .. "\n")
    local out = root .. "/run"
    local run = pivq.train.Trainer { dataset = data, image_size = 16, out = out, steps = 6, batch = 4, width = 16,
      enc_depth = 1, dec_depth = 1, heads = 2, L = 4, K = 8, c = 4, quant_start = 2, init_batches = 1,
      eval_images = 4, log_every = 1, grid_every = 1000, ckpt_every = 1000, warmup = 2, quiet = true,
      w_lap = 0, head = "conv", head_width = 8, patch = 4 }
    assert.are.equal("auto", run.opts.preset) -- no preset for 16x16: the options given apply
    -- the held-out images are composited over white: the hidden 0.3 rows are white
    local x = run.test_set.images
    assert.are.equal(255, x:get(1, 1, 1, 1))
    local metrics = assert(run:fit())
    assert.is_true(metrics.psnr == metrics.psnr and metrics.psnr > 0)
    local model = assert(pivq.load_model(out .. "/model.safetensors"))
    local desc = assert(layouts.of_model(model))
    assert.are.equal("folder", desc.kind)
    assert.are.equal(16, desc.image_size)
    assert.are.equal("white", desc.background)
    assert.are.equal(assert(layouts.describe(data, { image_size = 16 })).path, desc.path)
    local test = assert(layouts.open(desc, "test"))
    assert.are.same(run.test_set.files, test.files)
    assert.are.same({ "Reddish" }, test.attribute_names)
    local r = pivq.report.evaluate(model, { test = test, test_images = 2 })
    assert.are.equal(2, r.test_images)
    assert.is_true(r.psnr > 0)
    local y = model:decode(model:encode(test.images:narrow(1, 1, 2):float() / 255))
    assert.are.same({ 2, 3, 16, 16 }, y:size())
  end)
end)
