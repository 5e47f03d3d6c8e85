-- Set diagnostics (pivq.eval.diagnostics, the quantizer's match_differ, the trainer's epoch
-- entropy) on hand-computed cases: a tiny distance matrix where matching and nearest differ in a
-- known number of rows, the entropy of known frequency tables, the Jaccard similarity of known
-- sets, and a brute-force Jaccard on random codes.
local pivq = require "pivq"
local diagnostics = require "pivq.eval.diagnostics"

local function log2(x) return math.log(x) / math.log(2) end

-- 1-D latents and codes: distances are squares of differences, easy to check by hand
local CODEBOOK = { { 0 }, { 10 }, { 20 } }

describe("matching vs nearest (match_differ)", function()
  it("counts the latents matching sends away from their nearest code (hand-computed)", function()
    -- image 1: latents 0.1 and 0.2 are both nearest to code 1 (at 0); matching gives code 1 to
    -- one of them and code 2 (at 10) to the other: 0.01 + 96.04 < 98.01 + 0.04, so latent 2
    -- moves. Image 2: 0 and 19 are nearest to codes 1 and 3, distinct already: nothing moves.
    local z = pivq.tensor({ { { 0.1 }, { 0.2 } }, { { 0.0 }, { 19.0 } } })
    local idx, differ = pivq.vq.match_differ(z, pivq.tensor(CODEBOOK))
    assert.are.same({ { 1, 2 }, { 1, 3 } }, idx:totable())
    assert.are.equal(1, differ)
    -- the codes equal pivq.vq.match's
    assert.are.same(idx:totable(), pivq.vq.match(z, pivq.tensor(CODEBOOK)):totable())
  end)

  it("counts a tie with the nearest code as agreeing", function()
    -- both latents at 5 lie 25 from codes 1 and 2: matching gives them one each, and both
    -- assigned codes are as near as the nearest
    local _, differ = pivq.vq.match_differ(pivq.tensor({ { { 5 }, { 5 } } }), pivq.tensor(CODEBOOK))
    assert.are.equal(0, differ)
  end)

  it("counts three of four when four latents share one nearest code", function()
    -- latents 1, 2, 3, 4 against codes at 0, 100, 200, 300: all nearest to code 1
    local cb = pivq.tensor({ { 0 }, { 100 }, { 200 }, { 300 } })
    local _, differ = pivq.vq.match_differ(pivq.tensor({ { { 1 }, { 2 }, { 3 }, { 4 } } }), cb)
    assert.are.equal(3, differ)
  end)

  it("reaches the quantizer's stats and Quantizer:match_differ in either mode", function()
    local z = pivq.tensor({ { { 0.1 }, { 0.2 } }, { { 0.0 }, { 19.0 } } })
    for _, mode in ipairs({ "matching", "nearest" }) do
      local q = pivq.nn.Quantizer(3, 1, { mode = mode, ema = false })
      pivq.no_grad(function() q.codebook:copy(pivq.tensor(CODEBOOK)) end)
      q:train(false)
      assert.is_near(0.25, q:match_differ(z), 1e-12)
      local _, _, _, stats = q(z)
      if mode == "matching" then
        assert.is_near(0.25, stats.match_differ, 1e-12)
      else
        assert.is_nil(stats.match_differ) -- nearest's own choice is the nearest code
      end
    end
    -- L > K: no matching exists, so no rate
    local q = pivq.nn.Quantizer(3, 1, { mode = "nearest" })
    assert.is_nil(q:match_differ(pivq.zeros(1, 4, 1)))
  end)

  it("refuses latents of the wrong shape, naming the function", function()
    local q = pivq.nn.Quantizer(3, 1)
    assert.has_error(function() q:match_differ(pivq.zeros(2, 2)) end,
      "Quantizer:match_differ: expected latents (B, L, 1), got 2x2")
  end)
end)

describe("code-frequency entropy", function()
  it("is hand-computable on known tables", function()
    assert.is_near(1.5, diagnostics.entropy_bits({ 1, 1, 2 }), 1e-12) -- p = 1/4, 1/4, 1/2
    assert.is_near(0, diagnostics.entropy_bits({ 4, 0, 0, 0 }), 1e-12)
    assert.is_near(3, diagnostics.entropy_bits(pivq.ones(8)), 1e-6) -- uniform over K = 8: log2 K
    assert.is_near(1.75, diagnostics.entropy_bits(pivq.tensor({ 2, 1, 1, 4 }, "int64")), 1e-12)
    assert.is_near(log2(3), pivq.vq.count_stats(pivq.tensor({ 5, 5, 5 })).entropy_bits, 1e-6)
  end)

  it("refuses negative counts and empty tables", function()
    assert.has_error(function() diagnostics.entropy_bits({ 1, -1 }) end,
      "diagnostics.entropy_bits: counts must be nonnegative, got -1")
    assert.has_error(function() diagnostics.entropy_bits({}) end)
  end)

  it("accumulates over an epoch in the trainer, and starts again at the next", function()
    local dir = os.tmpname()
    os.remove(dir)
    local run = pivq.train.Trainer({ out = dir, steps = 1, batch = 8, width = 16, enc_depth = 1, dec_depth = 1,
      heads = 2, L = 2, K = 4, c = 4, quiet = true })
    local T = getmetatable(run)
    local q = { bypassed = false, K = 4 }
    local fake = setmetatable({ model = { quantizer = q }, opts = { L = 2, K = 4 }, epoch = 1 }, T)
    q.last_counts = pivq.tensor({ 2, 1, 1, 0 }, "int64")
    fake:count_codes({ match_differ = 0.5 })
    q.last_counts = pivq.tensor({ 0, 0, 0, 4 }, "int64")
    fake:count_codes({ match_differ = 0.25 })
    assert.are.equal(2, fake.diag.steps)
    assert.is_near(0.75, fake.diag.differ, 1e-12)
    local rec = {}
    fake:set_diagnostics(rec)
    -- counts 2, 1, 1, 4 over 8 codes of 4 images (L = 2): 1.75 bits of at most 2
    assert.is_near(1.75, rec.code_entropy, 1e-12)
    assert.is_near(2, rec.code_entropy_max, 1e-12)
    assert.are.equal(4, rec.code_entropy_images)
    assert.is_nil(rec.epoch_code_entropy)
    assert.are.equal(0, fake.diag.steps) -- the interval's rate starts again
    -- a new epoch: the finished one is reported once, the counts start afresh
    fake.epoch = 2
    q.last_counts = pivq.tensor({ 1, 1, 1, 1 }, "int64")
    fake:count_codes({})
    rec = {}
    fake:set_diagnostics(rec)
    assert.is_near(2, rec.code_entropy, 1e-12)
    assert.are.equal(2, rec.code_entropy_images)
    assert.is_near(1.75, rec.epoch_code_entropy, 1e-12)
    assert.are.equal(1, rec.epoch_code_entropy_epoch)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("are written to log.jsonl by a real run", function()
    local dir = os.tmpname()
    os.remove(dir)
    pivq.train.Trainer({ out = dir, steps = 12, batch = 8, width = 16, enc_depth = 1, dec_depth = 1, heads = 2,
      L = 4, K = 16, c = 4, quant_start = 4, init_batches = 1, log_every = 4, eval_images = 16, quiet = true,
      grid_every = 1000, ckpt_every = 1000, threads = 1 }):fit()
    local json = require "dkjson"
    local recs = {}
    for line in io.lines(dir .. "/log.jsonl") do recs[#recs + 1] = json.decode(line) end
    local last = recs[#recs]
    assert.are.equal(12, last.step)
    assert.is_near(4, last.code_entropy_max, 1e-12)
    assert.is_true(last.code_entropy > 0 and last.code_entropy <= 4 + 1e-9)
    -- 8 quantized steps of 8 images each, within the first epoch
    assert.are.equal(64, last.code_entropy_images)
    assert.is_true(last.match_differ >= 0 and last.match_differ <= 1)
    assert.is_nil(recs[1].code_entropy) -- step 4: the quantizer has not started
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

describe("Jaccard similarity of code sets", function()
  it("is hand-computable on known sets", function()
    -- {1,2,3} and {2,3,4}: 2 shared of 4 -> 0.5; either with {5,6,7}: 0
    local r = diagnostics.jaccard(pivq.tensor({ { 1, 2, 3 }, { 2, 3, 4 }, { 5, 6, 7 } }, "int64"))
    assert.are.equal(3, r.pairs)
    assert.are.equal(3, r.images)
    assert.is_near(1 / 6, r.mean, 1e-12)
    local q = {}
    for _, v in ipairs(r.quantiles) do q[v.q] = v.value end
    assert.are.equal(0, q[0])
    assert.are.equal(0, q[0.5])
    assert.is_near(0.25, q[0.75], 1e-12) -- halfway between the order statistics 0 and 0.5
    assert.are.equal(0.5, q[1])
    assert.are.equal(2, r.histogram.counts[1])
    assert.are.equal(1, r.histogram.counts[11]) -- [0.5, 0.55)
    assert.are.equal(21, #r.histogram.edges)
    -- a multiset's repeats count once: {1,1,2} and {1,2,2} are the same set
    r = diagnostics.jaccard(pivq.tensor({ { 1, 1, 2 }, { 2, 1, 2 } }, "int64"), { bins = 4 })
    assert.are.equal(1, r.mean)
    assert.are.same({ 0, 0, 0, 1 }, r.histogram.counts)
  end)

  it("equals a brute-force computation on random codes", function()
    local g = pivq.Generator(3)
    local codes = pivq.randint(1, 30, { 40, 6 }, { generator = g })
    local r = diagnostics.jaccard(codes, { images = 25 })
    local rows = codes:totable()
    local values = {}
    for i = 1, 25 do
      for j = i + 1, 25 do
        local a, b, inter, union = {}, {}, 0, 0
        for _, k in ipairs(rows[i]) do a[k] = true end
        for _, k in ipairs(rows[j]) do b[k] = true end
        for k = 1, 30 do
          if a[k] and b[k] then inter = inter + 1 end
          if a[k] or b[k] then union = union + 1 end
        end
        values[#values + 1] = inter / union
      end
    end
    table.sort(values)
    local sum = 0
    for _, v in ipairs(values) do sum = sum + v end
    assert.are.equal(300, r.pairs)
    assert.is_near(sum / #values, r.mean, 1e-12)
    assert.are.equal(values[1], r.quantiles[1].value)
    assert.are.equal(values[#values], r.quantiles[#r.quantiles].value)
    local total = 0
    for _, c in ipairs(r.histogram.counts) do total = total + c end
    assert.are.equal(300, total)
  end)

  it("refuses bad input, naming the function", function()
    assert.has_error(function() diagnostics.jaccard(pivq.tensor({ { 1, 2 } }, "int64")) end,
      "diagnostics.jaccard: need at least 2 images and 1 bin, got 1 images and 20 bins")
    assert.has_error(function() diagnostics.jaccard(pivq.zeros(3, 2)) end,
      "diagnostics.jaccard: codes must be a B x L integer tensor of 1-based codes")
    assert.has_error(function() diagnostics.jaccard(pivq.tensor({ { 1 }, { 2 } }, "int64"), { nope = 1 }) end)
  end)

  it("quantile interpolates like NumPy's default", function()
    assert.are.equal(2.5, diagnostics.quantile({ 1, 2, 3, 4 }, 0.5))
    assert.is_near(3.25, diagnostics.quantile({ 1, 2, 3, 4 }, 0.75), 1e-12)
    assert.has_error(function() diagnostics.quantile({ 1 }, 2) end, "diagnostics.quantile: q must be in [0, 1], got 2")
  end)
end)
