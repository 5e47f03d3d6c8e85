-- pivq.report: everything `pivq eval` measures about one model, as one table — shared by the eval
-- recipe, the reproduction (`pivq reproduce`) and notebooks, so they cannot drift apart.
--
--   local r = pivq.report.evaluate(model, {test_images = 2000, samples = 2000,
--     strategies = {"pair", "mix"}, features = extractor})
--
-- Keys of the result: reconstruction (psnr, ssim, mse on the held-out split), codes (usage,
-- perplexity, K_img), capacity (bits_matching, bits_nearest, capacity_ratio: notebooks/METHOD.md's
-- "effective capacity ratio" at this model's K and L and the measured K_img), slot dependence
-- (slot_nmi, slot_owned: see slot_code_stats), set diagnostics (code_entropy and code_entropy_max
-- in bits, match_differ, jaccard: pivq.eval.diagnostics) and, when samples > 0, PRDC of each sampling
-- strategy's images against the test images (prdc[strategy] = {precision, recall, density,
-- coverage}). Baselines are sampled the same way: "marginal" (codes from the training set's code
-- frequencies, no parents) for every model; for the positional model, whose codes carry slot
-- identity, "uniform" (random codes) and "slot_marginal" (each slot's own code frequencies)
-- replace the parent-based strategies, which assume a set.
-- With opts.train_features (the training images in the same feature space), each strategy also
-- gets memorisation[strategy] = {copy_share, median_ratio, threshold, heldout_share, ...}
-- (pivq.eval.memorisation; the distances themselves in nn_distances[strategy] and
-- nn_distances.heldout, tensors a caller leaves out of JSON).
--
-- sweep_exchange(model, opts) -> the fidelity-diversity curve: PRDC (and the copy share) of the
-- `exchange` strategy at each fraction of exchanged codes, beside the PRDC of the parents'
-- own reconstructions (equal to fraction 0 by construction).
local tensor = require "pivq.core.tensor"
local autograd = require "pivq.core.autograd"
local eval = require "pivq.eval.metrics"
local vq = require "pivq.quant.vq"
local capacity = require "pivq.quant.capacity"
local sample = require "pivq.quant.sample"
local diagnostics = require "pivq.eval.diagnostics"

local M = {}

-- How much a code tells about the latent slot that produced it (notebooks/METHOD.md: with L learned query
-- tokens each code can end up owned by one slot — a positional code in disguise).
-- idx: B x L int64 1-based codes in slot order (as the quantizer returns them, unsorted).
-- Returns {nmi = I(slot; code) / log L (0: codes say nothing about slots, 1: a code names its
-- slot), owned = share of used codes that come >= 90% from one slot}.
function M.slot_code_stats(idx, K)
  if not tensor.is_tensor(idx) or idx:dim() ~= 2 then
    error("slot_code_stats: idx must be a B x L tensor of 1-based codes, got " ..
      (tensor.is_tensor(idx) and table.concat(idx:size(), "x") or type(idx)), 2)
  end
  local B, L = idx:size(1), idx:size(2)
  if L < 2 then return { nmi = 0, owned = 0 } end
  local codes = idx:long():contiguous()
  local p = codes:data_ptr()
  local joint, per_code = {}, {}
  for b = 0, B - 1 do
    for s = 0, L - 1 do
      local k = tonumber(p[b * L + s])
      if k < 1 or k > K then error(string.format("slot_code_stats: code %d out of range 1..%d", k, K), 2) end
      local key = s * K + k
      joint[key] = (joint[key] or 0) + 1
      per_code[k] = (per_code[k] or 0) + 1
    end
  end
  -- every image contributes one code per slot, so p(slot) = 1/L exactly
  local n, mi = B * L, 0
  local top = {}
  for key, c in pairs(joint) do
    local k = (key - 1) % K + 1
    mi = mi + (c / n) * math.log((c / n) / ((1 / L) * (per_code[k] / n)))
    if c > (top[k] or 0) then top[k] = c end
  end
  local used, owned = 0, 0
  for k, c in pairs(per_code) do
    used = used + 1
    if top[k] >= 0.9 * c then owned = owned + 1 end
  end
  return { nmi = mi / math.log(L), owned = owned / used }
end

-- Reconstructions, slot-ordered codes and the latents' batches of images (N, C, H, W), without
-- gradients.
local function reconstruct(model, xs, batch)
  local recon, codes, latents = {}, {}, {}
  autograd.no_grad(function()
    local was = model.training
    model:train(false)
    for s = 1, xs:size(1), batch do
      local x = xs:narrow(1, s, math.min(batch, xs:size(1) - s + 1))
      if x:dtype() == "uint8" then x = x:float() / 255 end
      local y, idx, _, _, z = model(x)
      recon[#recon + 1] = y
      codes[#codes + 1] = idx
      latents[#latents + 1] = z
    end
    model:train(was)
  end)
  return tensor.cat(recon, 1), tensor.cat(codes, 1), latents
end

-- Decode n sampled code rows in batches.
local function decode_all(model, codes, batch)
  local imgs, n = {}, codes:size(1)
  for s = 1, n, batch do imgs[#imgs + 1] = model:decode(codes:narrow(1, s, math.min(batch, n - s + 1))) end
  return tensor.cat(imgs, 1)
end

-- evaluate(model, opts) -> report table (see the header).
-- opts: test (a dataset {images=}; default Fashion-MNIST's test split), test_images (2000),
-- samples (0: no PRDC), strategies ({"pair", "mix"}), features (an extractor from
-- pivq.features.extractor; required when samples > 0), k (5), seed (1), bank (default
-- model:bank()), batch (250), jaccard_images (1000: the pairs of the first 1000 held-out images).
function M.evaluate(model, opts)
  opts = opts or {}
  local cfg = model.config
  local batch = opts.batch or 250
  local test = opts.test or assert(require("pivq.data.datasets").fashion_mnist { split = "test" })
  local n = math.min(opts.test_images or 2000, test.images:size(1))
  local xs = test.images:narrow(1, 1, n)
  if xs:dtype() == "uint8" then xs = xs:float() / 255 end
  local r = { quantizer = cfg.mode, readout = cfg.readout, L = cfg.L, K = cfg.K, test_images = n }

  local recon, codes, latents = reconstruct(model, xs, batch)
  r.psnr, r.ssim, r.mse = eval.psnr(recon, xs), eval.ssim(recon, xs), eval.mse(recon, xs):mean():item()
  local st = vq.code_stats(codes, cfg.K)
  r.usage, r.perplexity, r.K_img = st.usage, st.perplexity, st.K_img
  r.bits_matching = cfg.L <= cfg.K and capacity.bits { K = cfg.K, L = cfg.L, scheme = "set" } or nil
  r.bits_nearest = capacity.bits { K = cfg.K, L = cfg.L, scheme = "distinct", K_img = st.K_img }
  r.bits_positional = capacity.bits { K = cfg.K, L = cfg.L, scheme = "positional" }
  r.capacity_ratio = r.bits_matching and r.bits_matching / r.bits_nearest or nil
  local slots = M.slot_code_stats(codes, cfg.K)
  r.slot_nmi, r.slot_owned = slots.nmi, slots.owned
  -- set diagnostics: code-frequency entropy (bits), matching vs nearest, Jaccard between images
  local diag = diagnostics.evaluate(model, codes, latents, { jaccard_images = opts.jaccard_images })
  r.code_entropy, r.code_entropy_max, r.match_differ, r.jaccard = diag.code_entropy, diag.code_entropy_max,
    diag.match_differ, diag.jaccard

  if (opts.samples or 0) > 0 then
    local fx = opts.features
    if not fx then error("report.evaluate: samples > 0 needs opts.features (pivq.features.extractor)", 2) end
    r.features, r.features_hash = fx.describe, fx.hash
    local bank = opts.bank or model:bank()
    local real = fx.fn(xs)
    local strategies = opts.strategies or { "pair", "mix" }
    if cfg.mode == "positional" then strategies = { "uniform", "slot_marginal" } end
    r.prdc = {}
    local train_f = opts.train_features
    if train_f then r.memorisation, r.nn_distances = {}, {} end
    local function measure(name, sopts)
      local sc = sample.codes(name, bank, opts.samples, sopts)
      local fake = fx.fn(decode_all(model, sc, batch))
      r.prdc[name] = eval.prdc(real, fake, { k = opts.k or 5 })
      if train_f then
        r.memorisation[name], r.nn_distances[name], r.nn_distances.heldout = M.memorisation_summary(train_f, real, fake)
      end
    end
    for _, name in ipairs(strategies) do
      measure(name, { seed = opts.seed or 1, model = model, codebook = model:codebook() })
    end
    measure("marginal", { seed = opts.seed or 1 })
  end
  return r
end

-- The memorisation check's numbers (no tensors, for JSON) and the two distance tensors.
function M.memorisation_summary(train_features, heldout_features, sample_features)
  local m = eval.memorisation(train_features, heldout_features, sample_features, { percentile = 5 })
  return { copy_share = m.copy_share, median_ratio = m.median_ratio, threshold = m.threshold,
    heldout_share = m.heldout_share, sample_median = m.sample_median, heldout_median = m.heldout_median,
    percentile = m.percentile, train_images = train_features:size(1) }, m.sample_nn, m.heldout_nn
end

M.SWEEP_FRACTIONS = { 0, 0.1, 0.2, 0.3, 0.4, 0.5 }

-- sweep_exchange(model, opts): opts as evaluate's (test, test_images, samples, features, k, seed,
-- bank, batch, train_features) plus fractions (default 0, .1, .2, .3, .4, .5). Returns
-- {fractions =, rows = {{fraction =, precision =, recall =, density =, coverage =, copy_share =,
-- median_ratio =}, ...}, parents = the PRDC (and memorisation) of the first parents' own
-- reconstructions, test_images =, samples =, k =, seed =}. The same seed draws the same parents
-- at every fraction, so the curve varies only the exchange.
function M.sweep_exchange(model, opts)
  opts = require("pivq.core.argcheck").options("report.sweep_exchange", opts, { "test", "test_images", "samples",
    "features", "k", "seed", "bank", "batch", "train_features", "fractions" })
  local fx = opts.features
  if not fx then error("report.sweep_exchange: needs opts.features (pivq.features.extractor)", 2) end
  local fractions = opts.fractions or M.SWEEP_FRACTIONS
  if type(fractions) ~= "table" or #fractions < 1 then
    error("report.sweep_exchange: fractions must be a non-empty list of numbers in 0..1", 2)
  end
  for i, f in ipairs(fractions) do
    if type(f) ~= "number" or f ~= f or f < 0 or f > 1 then
      error(string.format("report.sweep_exchange: fractions[%d] must be a number in 0..1, got %s", i, tostring(f)), 2)
    end
  end
  local batch, k, seed = opts.batch or 250, opts.k or 5, opts.seed or 1
  local n = opts.samples or 2000
  local test = opts.test or assert(require("pivq.data.datasets").fashion_mnist { split = "test" })
  local nt = math.min(opts.test_images or 2000, test.images:size(1))
  local xs = test.images:narrow(1, 1, nt)
  if xs:dtype() == "uint8" then xs = xs:float() / 255 end
  local real = fx.fn(xs)
  local bank = opts.bank or model:bank()
  local out = { fractions = fractions, rows = {}, test_images = nt, samples = n, k = k, seed = seed,
    features = fx.describe, features_hash = fx.hash }
  local first_parents
  for i, f in ipairs(fractions) do
    local sc, prov = sample.codes("exchange", bank, n, { seed = seed, fraction = f, model = model,
      codebook = model:codebook() })
    local fake = fx.fn(decode_all(model, sc, batch))
    local row = eval.prdc(real, fake, { k = k })
    row.fraction, row.k = f, nil
    local exchanged = 0
    for s = 1, n do exchanged = exchanged + prov.samples[s].exchanged end
    row.mean_exchanged = exchanged / n
    if opts.train_features then
      local m = M.memorisation_summary(opts.train_features, real, fake)
      row.copy_share, row.median_ratio = m.copy_share, m.median_ratio
    end
    out.rows[i] = row
    if not first_parents then
      first_parents = {}
      for s = 1, n do first_parents[s] = prov:parents(s)[1] end
    end
  end
  -- the parents' own reconstructions: the first parent of each sample, decoded from its bank row
  local rows = bank.codes:index_select(1, tensor.tensor(first_parents, "int64"))
  local fake = fx.fn(decode_all(model, rows, batch))
  out.parents = eval.prdc(real, fake, { k = k })
  out.parents.k = nil
  if opts.train_features then
    local m = M.memorisation_summary(opts.train_features, real, fake)
    out.parents.copy_share, out.parents.median_ratio = m.copy_share, m.median_ratio
  end
  return out
end

return M
