-- The fidelity-diversity curve (issue 20) on a small trained model: at fraction 0 the samples are
-- the first parents' reconstructions, so the curve's end point must equal those parents' own PRDC,
-- computed here independently (parents from the provenance, decoded from the bank's rows); at
-- fraction 1 the samples are the second parents' reconstructions.
local pivq = require "pivq"

describe("report.sweep_exchange", function()
  local dir, model, bank, fx, xs
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(pivq.files.mkdir_p(dir))
    pivq.train.Trainer({ out = dir, steps = 6, batch = 8, width = 32, enc_depth = 1, dec_depth = 1, heads = 2,
      patch = 7, L = 8, K = 32, c = 8, quant_start = 2, init_batches = 1, eval_images = 16, quiet = true,
      grid_every = 1000, ckpt_every = 1000 }):fit()
    model = assert(pivq.load_model(dir .. "/model.safetensors"))
    bank = model:bank({ limit = 120, progress = false })
    fx = pivq.features.extractor("random", { channels = 1, size = 28 })
    local test = assert(pivq.data.fashion_mnist { split = "test" })
    xs = test.images:narrow(1, 1, 50)
  end)
  teardown(function()
    os.execute("rm -rf " .. dir)
  end)

  -- PRDC of the decoded bank rows of the given parents, computed without the sweep
  local function parents_prdc(which, fraction)
    local _, prov = pivq.sample.codes("exchange", bank, 40, { seed = 1, fraction = fraction, model = model })
    local idx = {}
    for s = 1, 40 do idx[s] = prov:parents(s)[which] end
    local rows = bank.codes:index_select(1, pivq.tensor(idx, "int64"))
    local imgs = pivq.no_grad(function() return model:decode(rows) end)
    return pivq.eval.prdc(fx.fn(xs:float()), fx.fn(imgs), { k = 3 })
  end

  it("starts at the parents' own PRDC and ends at the second parents' at fraction 1", function()
    local train = assert(pivq.data.fashion_mnist { split = "train" })
    local sw = pivq.report.sweep_exchange(model, { test = { images = xs }, test_images = 50, samples = 40,
      features = fx, k = 3, seed = 1, bank = bank, fractions = { 0, 0.5, 1 },
      train_features = fx.fn(train.images:narrow(1, 1, 120)) })
    assert.are.equal(3, #sw.rows)
    local first, second = parents_prdc(1, 0), parents_prdc(2, 1)
    for _, key in ipairs({ "precision", "recall", "density", "coverage" }) do
      assert.are.equal(first[key], sw.rows[1][key], key)
      assert.are.equal(sw.parents[key], sw.rows[1][key], key)
      assert.are.equal(second[key], sw.rows[3][key], key)
    end
    assert.are.equal(0, sw.rows[1].mean_exchanged)
    assert.is_true(sw.rows[2].mean_exchanged > 0)
    for _, row in ipairs(sw.rows) do
      assert.is_true(row.copy_share >= 0 and row.copy_share <= 1)
      assert.is_true(row.median_ratio >= 0)
    end
  end)

  it("refuses bad fractions and unknown options, naming the function", function()
    local ok, err = pcall(pivq.report.sweep_exchange, model, { features = fx, fractions = { 0, 2 } })
    assert.is_false(ok)
    assert.matches("report.sweep_exchange: fractions%[2%] must be a number in 0..1, got 2", err)
    ok, err = pcall(pivq.report.sweep_exchange, model, { features = fx, fraction = { 0 } })
    assert.is_false(ok)
    assert.matches("report.sweep_exchange: unknown option 'fraction'", err)
  end)
end)
