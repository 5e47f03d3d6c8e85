-- pivq.diagnostics: set diagnostics (notebooks/METHOD.md, "Set diagnostics") — what a set of
-- codes looks like across images, for `pivq eval`, the training log and notebooks.
--
--   pivq.diagnostics.entropy_bits(counts)       code-frequency entropy in bits (max log2 K)
--   pivq.diagnostics.jaccard(codes, {images =}) pairwise Jaccard similarity of the images' code
--                                               sets: {mean, quantiles, histogram, pairs, images}
--   pivq.diagnostics.quantile(sorted, q)        linear interpolation between order statistics
-- The rate at which matching's choice differs from nearest's is Quantizer:match_differ(z) (and
-- the quantizer's per-step stats.match_differ); evaluate() gathers all three for a model.
local ffi = require "ffi"
local tensor = require "pivq.core.tensor"
local argcheck = require "pivq.core.argcheck"
local vq = require "pivq.quant.vq"

local M = {}

M.QUANTILES = { 0, 0.05, 0.25, 0.5, 0.75, 0.95, 1 }
M.BINS = 20

-- Entropy in bits of the code frequencies counts (a tensor of K nonnegative counts, or a Lua
-- list): -sum p_k log2 p_k over the used codes; 0 for no codes.
function M.entropy_bits(counts)
  if type(counts) == "table" and not tensor.is_tensor(counts) then
    for i, v in ipairs(counts) do
      if type(v) ~= "number" then
        error(string.format("diagnostics.entropy_bits: count %d is %s, not a number", i, type(v)), 2)
      end
    end
    if #counts > 0 then counts = tensor.tensor(counts) end
  end
  if not tensor.is_tensor(counts) or counts:dim() ~= 1 or counts:numel() == 0 then
    error("diagnostics.entropy_bits: counts must be a non-empty 1-D tensor or list of counts", 2)
  end
  if counts:numel() > 0 and counts:min() < 0 then
    error("diagnostics.entropy_bits: counts must be nonnegative, got " .. tostring(counts:min()), 2)
  end
  return vq.count_stats(counts).entropy_bits
end

-- The q-quantile (0 <= q <= 1) of an ascending Lua list: linear interpolation between the order
-- statistics at (n - 1) q (Hyndman & Fan's type 7, NumPy's default).
function M.quantile(sorted, q)
  if type(sorted) ~= "table" or #sorted == 0 then error("diagnostics.quantile: need a non-empty sorted list", 2) end
  if type(q) ~= "number" or not (q >= 0 and q <= 1) then
    error("diagnostics.quantile: q must be in [0, 1], got " .. tostring(q), 2)
  end
  for i, v in ipairs(sorted) do
    if type(v) ~= "number" or v ~= v or (i > 1 and v < sorted[i - 1]) then
      error(string.format("diagnostics.quantile: the list must hold numbers in ascending order (entry %d is %s)", i,
        tostring(v)), 2)
    end
  end
  local h = (#sorted - 1) * q
  local lo = math.floor(h)
  local a, b = sorted[lo + 1], sorted[math.min(lo + 2, #sorted)]
  return a + (h - lo) * (b - a)
end

-- Jaccard similarity |A ∩ B| / |A ∪ B| of the distinct codes of every pair of the first `images`
-- rows (default 1000: 499,500 pairs) of codes (B x L, 1-based, any order; a multiset's repeats
-- count once). opts: images, bins (20, equal widths over [0, 1]). Returns {images =, pairs =,
-- mean =, quantiles = {{q =, value =}, ...}, histogram = {edges = {...}, counts = {...}}}.
function M.jaccard(codes, opts)
  opts = argcheck.options("diagnostics.jaccard", opts, { "images", "bins" })
  if not tensor.is_tensor(codes) or codes:dim() ~= 2 or (codes:dtype() ~= "int64" and codes:dtype() ~= "int32") then
    error("diagnostics.jaccard: codes must be a B x L integer tensor of 1-based codes", 2)
  end
  local want = argcheck.number("diagnostics.jaccard", "images", opts.images, 1000, true)
  local bins = argcheck.number("diagnostics.jaccard", "bins", opts.bins, M.BINS, true)
  local n = math.min(want, codes:size(1))
  if n < 2 or bins < 1 then
    error(string.format("diagnostics.jaccard: need at least 2 images and 1 bin, got %d images and %d bins", n, bins),
      2)
  end
  local rows = codes:narrow(1, 1, n):long():contiguous()
  local L, p = rows:size(2), rows:data_ptr()
  if L == 0 then error("diagnostics.jaccard: the images have no codes (L = 0)", 2) end
  for i = 0, n * L - 1 do
    local k = tonumber(p[i])
    if k < 1 then error(string.format("diagnostics.jaccard: code %d is not 1-based", k), 2) end
  end
  -- each image's distinct codes, and a stamp per code: stamp[k] == i marks code k as image i's
  -- (a Lua table: the codes of K in the thousands sit in its array part)
  local distinct, sizes = {}, {}
  local stamp = {}
  for i = 1, n do
    local list = {}
    for s = 0, L - 1 do
      local k = tonumber(p[(i - 1) * L + s])
      if stamp[k] ~= i then
        stamp[k] = i
        list[#list + 1] = k
      end
    end
    distinct[i], sizes[i] = list, #list
  end
  stamp = {}
  local values = ffi.new("double[?]", n * (n - 1) / 2)
  local m, sum = 0, 0
  for i = 1, n do
    for _, k in ipairs(distinct[i]) do stamp[k] = i end
    for j = i + 1, n do
      local inter, dj = 0, distinct[j]
      for t = 1, sizes[j] do
        if stamp[dj[t]] == i then inter = inter + 1 end
      end
      local v = inter / (sizes[i] + sizes[j] - inter)
      values[m] = v
      sum = sum + v
      m = m + 1
    end
  end
  local sorted, counts = {}, {}
  for b = 1, bins do counts[b] = 0 end
  for t = 0, m - 1 do
    local v = values[t]
    sorted[t + 1] = v
    local b = math.min(bins, math.floor(v * bins) + 1)
    counts[b] = counts[b] + 1
  end
  table.sort(sorted)
  local quantiles = {}
  for i, q in ipairs(M.QUANTILES) do quantiles[i] = { q = q, value = M.quantile(sorted, q) } end
  local edges = {}
  for b = 0, bins do edges[b + 1] = b / bins end
  return { images = n, pairs = m, mean = sum / m, quantiles = quantiles,
    histogram = { edges = edges, counts = counts } }
end

-- The histogram as text lines ("0.00-0.05  1234 ####"), for `pivq eval`.
function M.format_histogram(h, width)
  width = width or 40
  if type(h) ~= "table" or type(h.counts) ~= "table" or type(h.edges) ~= "table" or #h.edges ~= #h.counts + 1
    or type(width) ~= "number" or width < 1 or width > 1000 then
    error("diagnostics.format_histogram: need a histogram {edges =, counts =} (one more edge than counts) and a "
      .. "width in 1..1000", 2)
  end
  for i, v in ipairs(h.edges) do
    if type(v) ~= "number" or (h.counts[i] ~= nil and type(h.counts[i]) ~= "number") then
      error("diagnostics.format_histogram: edges and counts must be numbers", 2)
    end
  end
  local top = 1
  for _, c in ipairs(h.counts) do top = math.max(top, c) end
  local lines = {}
  for b, c in ipairs(h.counts) do
    lines[b] = string.format("  %.2f-%.2f %9d %s", h.edges[b], h.edges[b + 1], c,
      string.rep("#", math.floor(width * c / top + 0.5)))
  end
  return table.concat(lines, "\n")
end

-- The three diagnostics of a model on held-out data: codes (B x L, slot order), the latents'
-- batches (a list of (b, L, c) tensors) and the model. Returns {code_entropy =,
-- code_entropy_max =, match_differ = (nil when L > K), jaccard = M.jaccard(codes)}.
function M.evaluate(model, codes, latents, opts)
  local K = model.config.K
  local r = { code_entropy = M.entropy_bits(vq.code_counts(codes, K)), code_entropy_max = math.log(K) / math.log(2) }
  local differ, total = 0, 0
  for _, z in ipairs(latents) do
    local share = model.quantizer:match_differ(z)
    if not share then
      differ = nil
      break
    end
    differ, total = differ + share * z:size(1) * z:size(2), total + z:size(1) * z:size(2)
  end
  r.match_differ = differ and total > 0 and differ / total or nil
  if codes:size(1) >= 2 then r.jaccard = M.jaccard(codes, { images = opts and opts.jaccard_images }) end
  return r
end

return M
