-- reproduce: the reproduction of the method's claims on Fashion-MNIST (issue #8, notebooks/METHOD.md),
-- or on a colour folder with --dataset (issue #17: the per-attribute probe replaces the class probe
-- when the folder has attributes; the feature classifier is trained on its own training split).
--
-- Trains five models with identical budgets — matching, nearest and the positional baseline with
-- the default learned readout, and matching and nearest with the exchangeable readout (notebooks/METHOD.md:
-- learned query tokens let codes carry their slot) — then measures for each: test PSNR/SSIM,
-- codebook usage, K_img, capacity bits and the matching/nearest ratio, slot–code dependence, PRDC
-- of interpolation-based samples (pair, mix) beside the marginal-codes baseline (positional: random
-- codes and per-slot marginals), and the linear probe beside the majority class. Writes a markdown
-- report with tables, figures and a verdict per claim.
--
-- Every stage is cached in OUT (a finished model, its eval.json, the feature classifier), so a
-- rerun only computes what is missing; --fresh starts over.
local argparse = require "argparse"
local pivq = require "pivq"
local json = require "dkjson"

local parser = argparse("pivq reproduce", "Train matching / nearest / positional models with identical budgets "
  .. "and report\ncapacity, PSNR, PRDC of samples and the linear probe (a markdown report).")
parser:option("--dataset", "fashion-mnist or a folder of aligned images (CelebA, CelebA-HQ, FFHQ, any)",
  "fashion-mnist")
parser:option("--image-size", "image side for a folder", "64"):convert(tonumber)
parser:option("--out", "working folder (models, metrics; default runs/reproduce, or runs/reproduce-NAME for a "
  .. "folder)")
parser:option("--doc", "markdown report to write (figures go to DOC's folder/figures/; default OUT/results.md)")
parser:option("--steps", "training steps of every model (the budget)", "3000"):convert(tonumber)
parser:option("--samples", "samples per strategy for PRDC", "2000"):convert(tonumber)
parser:option("--test-images", "held-out images for reconstruction and PRDC", "2000"):convert(tonumber)
parser:option("--probe-images", "held-out images for the 5-fold probe", "5000"):convert(tonumber)
parser:option("--features-ckpt", "feature classifier (trained if missing; default: the dataset's)")
parser:option("--only", "comma-separated model names (default: all)")
parser:option("--threads", "threads (0: all cores)", "0"):convert(tonumber)
parser:flag("--fresh", "ignore cached models and metrics")
local args = parser:parse(arg)

local MODELS = {
  { name = "matching", opts = { quantizer = "matching" }, what = "matching, learned readout (the default)" },
  { name = "nearest", opts = { quantizer = "nearest" }, what = "nearest, learned readout" },
  { name = "positional", opts = { quantizer = "positional" }, what = "positional VQ-VAE baseline (slot embeddings)" },
  { name = "matching-exch", opts = { quantizer = "matching", readout = "exchangeable" },
    what = "matching, exchangeable readout" },
  { name = "nearest-exch", opts = { quantizer = "nearest", readout = "exchangeable" },
    what = "nearest, exchangeable readout" },
}
if args.only then
  local keep = {}
  for name in args.only:gmatch("[^,]+") do keep[name] = true end
  local list = {}
  for _, m in ipairs(MODELS) do if keep[m.name] then list[#list + 1] = m end end
  MODELS = list
end
if args.threads > 0 then pivq.set_num_threads(args.threads) end

local layouts = require "pivq.data.layouts"
local colour = args.dataset ~= "fashion-mnist"
local desc = assert(layouts.describe(args.dataset, colour and { image_size = args.image_size } or nil))
local data_name = colour and (desc.path:match("([^/]+)$") or "data") or "Fashion-MNIST"
args.out = args.out or (colour and "runs/reproduce-" .. data_name or "runs/reproduce")
args.doc = args.doc or args.out .. "/results.md"
args.features_ckpt = args.features_ckpt or pivq.features.default_path(desc)
-- the figures' file names: a folder's carry its name, so that its report can sit beside the
-- Fashion-MNIST one (notebooks/) without overwriting that report's figures
local FIG = colour and "reproduce-" .. data_name:gsub("[^%w_%-]", "_") .. "-" or "reproduce-"

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local function read_json(path)
  local f = io.open(path)
  if not f then return nil end
  local v = json.decode(f:read("*a"))
  f:close()
  return v
end

local function write_json(path, v)
  pivq.files.write_or_fail("reproduce", path, json.encode(v, { indent = true }) .. "\n")
end

local function mkdir_p(path)
  local ok, err = pivq.files.mkdir_p(path)
  if not ok then error("reproduce: " .. err, 0) end
end

-- the feature space of PRDC: the bundled classifier, trained once
if args.fresh or not exists(args.features_ckpt) then
  print("training the feature classifier -> " .. args.features_ckpt)
  assert(pivq.features.train_classifier { out = args.features_ckpt, dataset = desc })
end
local fx = assert(pivq.features.extractor("classifier", { path = args.features_ckpt }))
print("features: " .. fx.describe)
local test = assert(layouts.open(desc, "test"))
-- the memorisation check's reference: every training image in the same feature space (computed
-- only when a model's evaluation is not cached)
local train_features
local function training_features()
  if not train_features then train_features = fx.fn(assert(layouts.open(desc, "train")).images) end
  return train_features
end

local results = {}
for _, spec in ipairs(MODELS) do
  local dir = args.out .. "/" .. spec.name
  local ckpt = dir .. "/model.safetensors"
  local metrics = not args.fresh and read_json(dir .. "/metrics.json")
  if not metrics or metrics.step ~= args.steps then
    print(string.format("== training %s (%s), %d steps", spec.name, spec.what, args.steps))
    local opts = { out = dir, steps = args.steps, quiet = true }
    if colour then opts.dataset, opts.image_size = args.dataset, args.image_size end
    for k, v in pairs(spec.opts) do opts[k] = v end
    opts.resume = not args.fresh and exists(ckpt) and (read_json(dir .. "/metrics.json") == nil)
    local run = pivq.train.Trainer(opts)
    metrics = assert(run:fit())
    print(string.format("   %.0f s, PSNR %.2f dB", metrics.train_seconds, metrics.psnr))
  end
  local report = not args.fresh and read_json(dir .. "/eval.json")
  if not report or report.checkpoint_hash ~= pivq.bank.file_hash(ckpt) or report.features_hash ~= fx.hash
    or (args.samples > 0 and not report.memorisation) then
    print("== evaluating " .. spec.name)
    local model = assert(pivq.load_model(ckpt))
    report = pivq.report.evaluate(model, { test = test, test_images = args.test_images, samples = args.samples,
      features = fx, train_features = args.samples > 0 and training_features() or nil })
    local nn = report.nn_distances
    report.nn_distances = nil -- tensors: the histogram below, not the JSON
    report.checkpoint_hash = pivq.bank.file_hash(ckpt)
    local n = math.min(args.probe_images, test.images:size(1))
    local codes = pivq.bank.encode_all(model, test.images:narrow(1, 1, n))
    local X = pivq.probe.bag_of_codes(codes, model.config.K)
    if test.labels then
      local p = pivq.probe.cross_validate(X, test.labels:narrow(1, 1, n), { folds = 5, l2 = 1e-3, seed = 1 })
      report.probe = { images = n, accuracy_mean = p.accuracy_mean, accuracy_std = p.accuracy_std,
        baseline_mean = p.baseline_mean, baseline_std = p.baseline_std }
    else
      -- Figure 5: one logistic regression per binary attribute; the row is their mean
      local rows = pivq.probe.attributes(X, assert(test.attributes, "the dataset has neither labels nor "
        .. "attributes"):narrow(1, 1, n), test.attribute_names, { folds = 5, l2 = 1e-3, seed = 1 })
      local a, b, sa, sb = 0, 0, 0, 0
      for _, r in ipairs(rows) do
        a, b, sa, sb = a + r.accuracy_mean, b + r.baseline_mean, sa + r.accuracy_std, sb + r.baseline_std
      end
      report.probe = { images = n, accuracy_mean = a / #rows, accuracy_std = sa / #rows, baseline_mean = b / #rows,
        baseline_std = sb / #rows, attributes = rows }
    end
    report.train_seconds, report.steps = metrics.train_seconds, metrics.step
    write_json(dir .. "/eval.json", report)
    -- a sample grid per strategy, for the report's figures
    local bank = model:bank()
    local docdir = args.doc:match("^(.*)/[^/]*$") or "."
    mkdir_p(docdir .. "/figures")
    if nn then
      local groups, names = { { name = "HELD-OUT", values = nn.heldout } }, {}
      for name in pairs(nn) do if name ~= "heldout" then names[#names + 1] = name end end
      table.sort(names)
      for _, name in ipairs(names) do groups[#groups + 1] = { name = name:upper(), values = nn[name] } end
      local any = next(report.memorisation)
      assert(pivq.charts.save(string.format("%s/figures/%s%s-memorisation.png", docdir, FIG, spec.name),
        pivq.charts.histogram(groups, { title = spec.name:upper() .. " - RED 5TH PERCENTILE OF HELD-OUT",
          threshold = report.memorisation[any].threshold })))
    end
    if report.probe.attributes then
      assert(require("pivq.eval.figure5").save(string.format("%s/figures/%s%s-probe.png", docdir,
        FIG, spec.name), report.probe.attributes))
    end
    for strategy in pairs(report.prdc) do
      local imgs = pivq.sample.draw(model, strategy, bank, 32, { seed = 2, codebook = model:codebook() })
      assert(pivq.image.save(string.format("%s/figures/%s%s-%s.png", docdir, FIG, spec.name, strategy),
        pivq.image.grid(imgs:clamp(0, 1), { nrow = 16, padding = 2, scale = 2 })))
    end
  end
  report.name, report.what = spec.name, spec.what
  results[#results + 1] = report
  print(string.format("   %s: PSNR %.2f, K_img %.2f, ratio %.3f, slot NMI %.2f, probe %.1f%%", spec.name,
    report.psnr, report.K_img, report.capacity_ratio or 0, report.slot_nmi, 100 * report.probe.accuracy_mean))
end

-- ---- the report -------------------------------------------------------------------------------------

local by = {}
for _, r in ipairs(results) do by[r.name] = r end
local lines = {}
local function add(fmt, ...) lines[#lines + 1] = select("#", ...) > 0 and string.format(fmt, ...) or fmt end

add("# Reproduction on %s", data_name)
add("")
local trained_s = 0
for _, r in ipairs(results) do trained_s = trained_s + (r.train_seconds or 0) end
add("Generated by `pivq reproduce%s --steps %d --samples %d --test-images %d --probe-images %d` (%s, %d thread%s; "
  .. "training took %.0f min in all). Every model: the default configuration of `pivq train`%s, %d steps, seed "
  .. "1 — identical budgets; only the quantizer and the readout differ.%s Claims marked **[paper]** are the "
  .. "paper's ([METHOD.md](METHOD.md)); the rest is our design.",
  colour and string.format(" --dataset %s --image-size %d", args.dataset, args.image_size) or "", args.steps,
  args.samples, args.test_images, args.probe_images, os.date("!%Y-%m-%d"),
  pivq.get_num_threads(), pivq.get_num_threads() == 1 and "" or "s", trained_s / 60,
  colour and string.format(" for %s (preset %s: L = %d, K = %d)", data_name,
    require("pivq.models.presets").name_for_size(args.image_size) or "none", results[1] and results[1].L or 0,
    results[1] and results[1].K or 0) or " (L = 64, K = 512, c = 32, patch 7, width 128, 2 + 2 blocks, batch 64)",
  args.steps,
  not colour and args.steps < 3000 and string.format(" (`pivq train` defaults to 3000 steps; this run used %d to "
    .. "fit the session's time, so its PSNRs sit below the default model's 20.2 dB.)", args.steps) or "")
add("")
add("## Reconstruction, codes and capacity")
add("")
add("| model | test PSNR (dB) | SSIM | usage | perplexity | K_img (of L) | bits: matching set | bits: nearest at "
  .. "K_img | ratio | bits: positional | slot NMI | slot-owned codes |")
add("|---|---|---|---|---|---|---|---|---|---|---|---|")
for _, r in ipairs(results) do
  add("| %s | %.2f | %.3f | %.1f%% | %.0f | %.2f | %.1f | %.1f | %.3f | %.1f | %.2f | %.0f%% |", r.what, r.psnr,
    r.ssim, 100 * r.usage, r.perplexity, r.K_img, r.bits_matching or 0, r.bits_nearest, r.capacity_ratio or 0,
    r.bits_positional, r.slot_nmi, 100 * r.slot_owned)
end
add("")
add("Bits: log2 C(K, L) for a set of L distinct codes (matching), log2 C(K, K_img) for nearest at the measured "
  .. "distinct codes per image, L log2 K for positional codes. Ratio: matching bits / nearest bits at this "
  .. "model's measured K_img ([METHOD.md](METHOD.md#capacity-accounting)'s effective capacity ratio). "
  .. "Slot NMI: I(slot; code) / log L over the test codes — 1 means a code names the latent slot that "
  .. "produced it; slot-owned: share of used codes that come ≥ 90% from one slot.")
add("")
local row = pivq.capacity.row(4096, 256, 49)
add("The paper's setting, computed (no training): K = 4096, L = 256, K_img = 49 gives matching %.0f bits, "
  .. "nearest %.0f bits, ratio %.2f.", row.matching, row.nearest, row.ratio)
add("")
add("## Interpolation-based samples: PRDC")
add("")
-- the held-out images actually used (a folder's split may hold fewer than --test-images)
local used_test = math.min(args.test_images, test.images:size(1))
add("PRDC (Naeem et al. 2020, k = 5) of %d samples per strategy against %d test images, in the feature space of "
  .. "%s.", args.samples, used_test, fx.describe)
add("")
add("| model | strategy | precision | recall | density | coverage |")
add("|---|---|---|---|---|---|")
for _, r in ipairs(results) do
  for _, s in ipairs({ "pair", "mix", "marginal", "uniform", "slot_marginal" }) do
    local m = r.prdc and r.prdc[s]
    if m then
      add("| %s | %s | %.3f | %.3f | %.3f | %.3f |", r.name, s, m.precision, m.recall, m.density, m.coverage)
    end
  end
end
add("")
add("pair: two training images' code sets, a random point on a random path; mix: L codes drawn from three "
  .. "parents' union; marginal: codes from the training set's code frequencies, no parents; uniform: random codes; "
  .. "slot_marginal: each slot's code from that slot's frequencies (the positional model's best prior-free "
  .. "sampler).")
add("")
for _, r in ipairs(results) do
  local strategies = {}
  for _, s in ipairs({ "pair", "mix", "marginal", "uniform", "slot_marginal" }) do
    if r.prdc and r.prdc[s] then strategies[#strategies + 1] = s end
  end
  add("**%s** — 32 samples of each of %s:", r.name, table.concat(strategies, ", "))
  add("")
  for _, s in ipairs(strategies) do add("![%s, %s](figures/%s%s-%s.png)  ", r.name, s, FIG, r.name, s) end
  add("")
end
local train_count = 0
for _, r in ipairs(results) do
  for _, m in pairs(r.memorisation or {}) do train_count = m.train_images or train_count end
end
add("## Memorisation: how close samples come to training images")
add("")
add("For each sample, the distance in the same feature space to its nearest training image (exact search over "
  .. "all %d training images), beside the same distance for the %d held-out images. copies: the share of samples "
  .. "closer to a training image than the 5th percentile of the held-out images' distances (held-out images "
  .. "themselves: 5%% by construction); ratio: median sample distance / median held-out distance (below 1: "
  .. "samples sit closer to the training set than unseen real images do). Definitions and sources: "
  .. "[METHOD.md](METHOD.md#evaluation), \"Memorisation\".", train_count, used_test)
add("")
add("| model | strategy | copies | ratio | threshold |")
add("|---|---|---|---|---|")
for _, r in ipairs(results) do
  for _, s in ipairs({ "pair", "mix", "marginal", "uniform", "slot_marginal" }) do
    local m = r.memorisation and r.memorisation[s]
    if m then add("| %s | %s | %.3f | %.3f | %.3f |", r.name, s, m.copy_share, m.median_ratio, m.threshold) end
  end
end
add("")
for _, r in ipairs(results) do
  if r.memorisation then
    add("![%s: nearest-training-image distances](figures/%s%s-memorisation.png)  ", r.name, FIG, r.name)
  end
end
add("")
add("## Linear probe")
add("")
if test.labels then
  add("Multinomial logistic regression (L2 1e-3, L-BFGS) from each test image's bag of codes (K counts) to its "
    .. "class, 5-fold cross-validated on the first %d test images.", math.min(args.probe_images, test.images:size(1)))
else
  add("One L2-regularised logistic regression (L2 1e-3, L-BFGS) per binary attribute from each held-out "
    .. "image's bag of codes (K counts), 5-fold cross-validated on the first %d held-out images (Figure 5); "
    .. "the table's row is the mean over attributes, the per-attribute table and charts follow.",
    math.min(args.probe_images, test.images:size(1)))
end
add("")
add("| model | accuracy | majority baseline |")
add("|---|---|---|")
for _, r in ipairs(results) do
  add("| %s | %.2f%% ± %.2f | %.2f%% ± %.2f |", r.what, 100 * r.probe.accuracy_mean, 100 * r.probe.accuracy_std,
    100 * r.probe.baseline_mean, 100 * r.probe.baseline_std)
end
add("")
if not test.labels then
  for _, r in ipairs(results) do
    if r.probe.attributes then
      add("**%s**, per attribute (accuracy / majority baseline):", r.name)
      add("")
      local cells = {}
      for _, a in ipairs(r.probe.attributes) do
        cells[#cells + 1] = string.format("%s %.1f / %.1f", a.name, 100 * a.accuracy_mean, 100 * a.baseline_mean)
      end
      add("%s", table.concat(cells, "; ") .. ".")
      add("")
      add("![%s per-attribute probe](figures/%s%s-probe.png)", r.name, FIG, r.name)
      add("")
    end
  end
end
add("## The paper's claims on this data")
add("")
local function claim(text, verdict, evidence) add("- %s — **%s**. %s", text, verdict, evidence) end
local m, n, p = by.matching, by.nearest, by.positional
local mx, nx = by["matching-exch"], by["nearest-exch"]
if m and n then
  -- the ratio lives in the nearest models' rows: matching bits over nearest bits at nearest's K_img
  local learned, exch = n.capacity_ratio or 0, nx and nx.capacity_ratio or 0
  local best = math.max(learned, exch)
  claim("[paper] Matching raises effective capacity 3.5× over nearest (K = 4096)",
    (learned >= 3 and "holds") or (best >= 3 and "holds only where nearest collapses")
      or (best > 1.05 and "holds only partly") or "does not hold here",
    string.format("At K = %d, L = %d: with the learned readout nearest uses K_img = %.2f distinct codes of L = %d, "
      .. "so the ratio is %.3f%s. Matching always gives %d (K_img = %.2f). The formula gives the paper's %.2f at "
      .. "its own K, L and K_img; the gain is exactly the collapse of nearest (K_img < L).", m.K, m.L, n.K_img, m.L,
      learned,
      nx and string.format("; with the exchangeable readout (slots drawn from one distribution, so latents are "
        .. "redundant) nearest collapses to K_img = %.2f and the ratio is %.2f", nx.K_img, exch) or "", m.L,
      m.K_img, row.ratio))
  claim("[paper] Matching gives every image L distinct codes", m.K_img >= m.L - 0.001 and "holds" or "does not hold",
    string.format("matching K_img = %.2f of %d.", m.K_img, m.L))
  local gain = mx and nx and mx.psnr - nx.psnr or m.psnr - n.psnr
  claim("More capacity gives better reconstructions (our reading of why capacity matters)",
    gain > 0.1 and "holds" or "does not show at this budget",
    string.format("test PSNR matching %.2f dB vs nearest %.2f dB (learned readout)%s.", m.psnr, n.psnr,
      mx and nx and string.format("; exchangeable, where matching carries %.2fx the bits: %.2f vs %.2f dB", exch,
        mx.psnr, nx.psnr) or ""))
end
if m and m.prdc and m.prdc.pair and m.prdc.marginal then
  local pair, marg = m.prdc.pair, m.prdc.marginal
  claim("[paper] Interpolation-based sampling gives plausible novel images in one forward pass, no prior",
    (pair.precision > marg.precision and pair.coverage > marg.coverage) and "holds" or "does not hold",
    string.format("matching, pair: precision %.3f, coverage %.3f vs the marginal-codes baseline %.3f, %.3f%s.",
      pair.precision, pair.coverage, marg.precision, marg.coverage,
      (p and p.prdc and p.prdc.slot_marginal) and string.format("; the positional baseline with per-slot "
        .. "marginal codes: %.3f, %.3f, with uniform random codes: %.3f, %.3f", p.prdc.slot_marginal.precision,
        p.prdc.slot_marginal.coverage, p.prdc.uniform.precision, p.prdc.uniform.coverage) or ""))
end
if m then
  -- per attribute: most attributes above their baseline (rare attributes sit near 100% majority)
  local above, n_attr = 0, m.probe.attributes and #m.probe.attributes or 0
  for _, r in ipairs(m.probe.attributes or {}) do
    if r.accuracy_mean > r.baseline_mean + 0.005 then above = above + 1 end
  end
  local holds = m.probe.attributes and above > n_attr / 2
    or (not m.probe.attributes and m.probe.accuracy_mean > m.probe.baseline_mean + 0.2)
  claim("[paper] The codes predict labels well above the majority baseline (linear probe)",
    holds and "holds" or "does not hold",
    string.format("matching: %.1f%% vs %.1f%% majority%s.", 100 * m.probe.accuracy_mean, 100 * m.probe.baseline_mean,
      m.probe.attributes and string.format(" (mean over attributes); above its baseline by more than 0.5 points in "
        .. "%d of %d attributes", above, n_attr) or ""))
  claim("[paper] The codes carry no positional information",
    m.slot_nmi < 0.2 and "holds" or "does not hold for the learned readout",
    string.format("decode is exactly order-invariant (spec), but with L learned query tokens a code names its "
      .. "slot: slot NMI %.2f, %.0f%% of codes owned by one slot%s.", m.slot_nmi, 100 * m.slot_owned,
      mx and string.format("; the exchangeable readout brings this to NMI %.2f, %.0f%% owned (PSNR %.2f dB)",
        mx.slot_nmi, 100 * mx.slot_owned, mx.psnr) or ""))
end
add("")
local docdir = args.doc:match("^(.*)/[^/]*$") or "."
mkdir_p(docdir)
pivq.files.write_or_fail("reproduce", args.doc, table.concat(lines, "\n") .. "\n")
print("report: " .. args.doc)
return 0
