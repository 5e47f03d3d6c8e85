-- pivq.eval: evaluation metrics.
--
-- prdc(real, fake, {k = 5}) -> {precision, recall, density, coverage}: Naeem et al. 2020,
-- "Reliable Fidelity and Diversity Metrics for Generative Models", exactly as defined there:
-- Euclidean distances; the radius of a point is the distance to its k-th nearest OTHER point of
-- its own set; membership by strict <; density = count / (k * M), not capped at 1.
-- prdc(real, fake, {improved = true, k = 3}) -> {precision, recall}: Kynkäänniemi et al. 2019
-- improved precision and recall (membership by <=).
-- nearest(ref, query), memorisation(train, heldout, samples): the exact nearest training point of
-- each sample and held-out image, and the copy share (notebooks/METHOD.md, "Memorisation").
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local tensor = require "pivq.core.tensor"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"

local C = state.C
local wrap, check_rc = gc.wrap, gc.check_rc

local M = {}

-- Distance from each row to its k-th nearest other row (N float32).
function M.knn_radii(x, k)
  if not tensor.is_tensor(x) then error("knn_radii: x must be a tensor", 2) end
  return wrap(C.pivq_knn_radii(x.c, k))
end

-- For each query row, how many reference balls contain it; for each reference row, the distance
-- to its nearest query row.
function M.ball_counts(ref, radii, query, inclusive)
  argcheck.tensor("ball_counts", "ref", ref)
  argcheck.tensor("ball_counts", "radii", radii)
  argcheck.tensor("ball_counts", "query", query)
  local counts, nearest = ffi.new("pivq_tensor*[1]"), ffi.new("pivq_tensor*[1]")
  check_rc(C.pivq_ball_counts(ref.c, radii.c, query.c, inclusive and 1 or 0, counts, nearest))
  return wrap(counts[0]), wrap(nearest[0])
end

-- nearest(ref, query) -> dist (M float32), index (M int64, 1-based): each query row's exact
-- nearest row of ref (Euclidean; ties: the lowest index). Memory stays a fixed tile, never
-- M x N (C pivq_knn_nearest).
function M.nearest(ref, query)
  argcheck.tensor("nearest", "ref", ref)
  argcheck.tensor("nearest", "query", query)
  local dist, index = ffi.new("pivq_tensor*[1]"), ffi.new("pivq_tensor*[1]")
  check_rc(C.pivq_knn_nearest(ref.c, query.c, dist, index))
  return wrap(dist[0]), wrap(index[0]) + 1
end

-- The q-th percentile (0..100) of a 1-D tensor, by linear interpolation between order statistics
-- (NumPy's default, Hyndman and Fan's type 7).
function M.percentile(t, q)
  argcheck.tensor("percentile", "t", t)
  if t:dim() ~= 1 or t:numel() < 1 then
    error("percentile: t must be a non-empty 1-D tensor, got " .. argcheck.shape_string(t), 2)
  end
  if type(q) ~= "number" or q ~= q or q < 0 or q > 100 then
    error("percentile: q must be a number in 0..100, got " .. tostring(q), 2)
  end
  local v = t:float():totable() -- float32 values, exact as Lua numbers
  table.sort(v)
  local h = (#v - 1) * q / 100
  local lo = math.floor(h)
  local hi = math.min(lo + 1, #v - 1)
  return v[lo + 1] + (h - lo) * (v[hi + 1] - v[lo + 1])
end

-- memorisation(train, heldout, samples [, {percentile = 5}]) -> a table (features N x d each):
--   sample_nn, heldout_nn   each sample's / held-out image's distance to its nearest training
--                           point (float32 tensors), sample_nn_index the training rows (1-based)
--   threshold               the `percentile`-th percentile of heldout_nn
--   copy_share              share of samples with sample_nn < threshold (strict): "copies"
--   heldout_share           the same share for the held-out images (about percentile / 100)
--   median_ratio            median(sample_nn) / median(heldout_nn): < 1 means samples sit closer
--                           to the training set than unseen real images do
-- notebooks/METHOD.md ("Memorisation") cites the definitions and marks pivq's choices.
function M.memorisation(train, heldout, samples, opts)
  opts = argcheck.options("memorisation", opts, { "percentile" })
  for _, a in ipairs({ { "train", train }, { "heldout", heldout }, { "samples", samples } }) do
    if not tensor.is_tensor(a[2]) or a[2]:dim() ~= 2 or a[2]:size(1) < 1 then
      error(string.format("memorisation: %s must be a non-empty 2-D tensor (points x features), got %s", a[1],
        tensor.is_tensor(a[2]) and argcheck.shape_string(a[2]) or type(a[2])), 2)
    end
    if a[2]:size(2) ~= train:size(2) then
      error(string.format("memorisation: %s has %d features but train has %d", a[1], a[2]:size(2), train:size(2)), 2)
    end
  end
  local pct = argcheck.number("memorisation", "percentile", opts.percentile, 5)
  if pct ~= pct or pct < 0 or pct > 100 then error("memorisation: percentile must lie in 0..100, got " .. pct, 2) end
  train, heldout, samples = train:float(), heldout:float(), samples:float()
  local heldout_nn = M.nearest(train, heldout)
  local sample_nn, sample_idx = M.nearest(train, samples)
  local threshold = M.percentile(heldout_nn, pct)
  local hmed, smed = M.percentile(heldout_nn, 50), M.percentile(sample_nn, 50)
  -- compared in double (a float32 tensor comparison would round the threshold)
  local function below(t)
    local c = 0
    for _, v in ipairs(t:totable()) do c = c + (v < threshold and 1 or 0) end
    return c / t:numel()
  end
  return {
    percentile = pct, threshold = threshold,
    copy_share = below(sample_nn), heldout_share = below(heldout_nn),
    median_ratio = hmed > 0 and smed / hmed or (smed > 0 and math.huge or 1),
    sample_median = smed, heldout_median = hmed,
    sample_nn = sample_nn, heldout_nn = heldout_nn, sample_nn_index = sample_idx,
  }
end

-- exact fractions: integer sums divided in double (a float32 mean would round)
local function fraction_positive(t) return t:gt(0):sum():item() / t:numel() end

function M.prdc(real, fake, opts)
  opts = argcheck.options("prdc", opts, { "k", "improved" })
  for _, arg in ipairs({ { "real", real }, { "fake", fake } }) do -- not pairs: a nil would be skipped
    if not tensor.is_tensor(arg[2]) or arg[2]:dim() ~= 2 then
      error(string.format("prdc: %s must be a 2-D tensor (points x features)", arg[1]), 2)
    end
  end
  if real:size(2) ~= fake:size(2) then
    error(string.format("prdc: real has %d features but fake has %d", real:size(2), fake:size(2)), 2)
  end
  real, fake = real:float(), fake:float()
  local improved = opts.improved or false
  local k = argcheck.number("prdc", "k", opts.k, improved and 3 or 5, true)
  local N, Mf = real:size(1), fake:size(1)
  if k < 1 or k >= N or k >= Mf then
    error(string.format("prdc: need 1 <= k < number of points in each set, got k=%d (real %d, fake %d)",
      k, N, Mf), 2)
  end
  local real_radii = M.knn_radii(real, k)
  local fake_radii = M.knn_radii(fake, k)
  -- fakes inside real balls: precision, density; each real's nearest fake: coverage
  local fake_in_real, real_nearest_fake = M.ball_counts(real, real_radii, fake, improved)
  -- reals inside fake balls: recall
  local real_in_fake = M.ball_counts(fake, fake_radii, real, improved)
  local out = {
    precision = fraction_positive(fake_in_real),
    recall = fraction_positive(real_in_fake),
    k = k,
  }
  if not improved then
    out.density = fake_in_real:sum():item() / (k * Mf)
    out.coverage = real_nearest_fake:lt(real_radii):sum():item() / N
  end
  return out
end

-- ---- reconstruction metrics --------------------------------------------------------------

local function check_pair(fname, x, y)
  if not tensor.is_tensor(x) or not tensor.is_tensor(y) then
    error(fname .. ": expected two image tensors", 3)
  end
  if table.concat(x:size(), "x") ~= table.concat(y:size(), "x") then
    error(string.format("%s: shapes differ: %s and %s", fname, table.concat(x:size(), "x"),
      table.concat(y:size(), "x")), 3)
  end
end

-- Per-image mean squared error (N) of N x ... images.
function M.mse(x, y)
  check_pair("mse", x, y)
  local n = x:size(1)
  return (x - y):pow(2):reshape(n, -1):mean(2)
end

-- PSNR in dB, the mean over images of each image's PSNR (data_range: 1 for pixels in [0, 1]).
-- An exact reconstruction has infinite PSNR; it is capped at 100 dB so means stay finite.
function M.psnr(x, y, opts)
  local R = argcheck.number("psnr", "data_range", argcheck.options("psnr", opts, { "data_range" }).data_range, 1)
  check_pair("psnr", x, y)
  local mse = M.mse(x, y)
  local total, n = 0, mse:numel()
  for i = 1, n do
    local m = mse[i]
    total = total + (m > 0 and math.min(100, 10 * math.log10(R * R / m)) or 100)
  end
  return total / n
end

-- Mean SSIM over images (Wang et al. 2004; see pivq_ssim in csrc/pivq.h); per_image = true
-- returns the N values instead.
function M.ssim(x, y, opts)
  opts = argcheck.options("ssim", opts, { "data_range", "per_image" })
  check_pair("ssim", x, y)
  local s = wrap(C.pivq_ssim(x:float().c, y:float().c, argcheck.number("ssim", "data_range", opts.data_range, 1)))
  if opts.per_image then return s end
  return s:sum():item() / s:numel()
end

return M
