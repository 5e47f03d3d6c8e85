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
    for _, name in ipairs(strategies) do
      local sc = sample.codes(name, bank, opts.samples, { seed = opts.seed or 1, model = model,
        codebook = model:codebook() })
      r.prdc[name] = eval.prdc(real, fx.fn(decode_all(model, sc, batch)), { k = opts.k or 5 })
    end
    local m = sample.codes("marginal", bank, opts.samples, { seed = opts.seed or 1 })
    r.prdc.marginal = eval.prdc(real, fx.fn(decode_all(model, m, batch)), { k = opts.k or 5 })
  end
  return r
end

return M
