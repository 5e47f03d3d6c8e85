-- pivq.quant.vq (pivq.vq): vector-quantization tools on tensors (Lua side of csrc/vq.c and csrc/assign.c).
-- Codes are 1-based here, as everywhere in the Lua API.
local tensor = require "pivq.core.tensor"
local random = require "pivq.core.random"
local state = require "pivq.core.ffi"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"
local index = require "pivq.core.index"

local C = state.C
local wrap, check_rc = gc.wrap, gc.check_rc

local M = {}

local need_tensor, fail, codes0 = argcheck.tensor, argcheck.fail, index.codes0

-- ||x_i - e_k||^2 for x N x c and e K x c (N x K).
function M.sq_distances(x, e)
  need_tensor("sq_distances", "x", x)
  need_tensor("sq_distances", "e", e)
  return wrap(C.pivq_sq_distances(x.c, e.c))
end

-- Each row's nearest codebook entry (1-based int64 of length N) and its squared distance.
function M.nearest(x, e)
  need_tensor("nearest", "e", e)
  if e:dim() ~= 2 or e:size(1) == 0 then
    fail("nearest: the codebook e must be K x c with K >= 1, got " .. argcheck.shape_string(e))
  end
  local d = M.sq_distances(x, e)
  local dist, idx = d:min(2)
  return idx, dist
end

-- k-means with k-means++ seeding: K x c centroids of the rows of x.
-- opts: iters (default 20), generator (a pivq.Generator; default: the global one).
function M.kmeans(x, K, opts)
  opts = argcheck.options("kmeans", opts, { "iters", "generator" })
  need_tensor("kmeans", "x", x)
  if type(K) ~= "number" or K % 1 ~= 0 then
    fail("kmeans: K must be an integer, got " .. tostring(K))
  end
  local g = argcheck.generator("kmeans", opts)
  return wrap(C.pivq_kmeans(x.c, K, argcheck.number("kmeans", "iters", opts.iters, 20, true), g))
end

-- In-place EMA codebook update (see csrc/pivq.h): codebook K x c, ema_count K, ema_sum K x c,
-- latents N x c, codes N (1-based).
function M.ema_update_(codebook, ema_count, ema_sum, latents, codes, decay, eps)
  -- not pairs over a table of them: a nil argument would be skipped
  need_tensor("ema_update", "codebook", codebook)
  need_tensor("ema_update", "ema_count", ema_count)
  need_tensor("ema_update", "ema_sum", ema_sum)
  need_tensor("ema_update", "latents", latents)
  if codebook:dim() ~= 2 then
    fail("ema_update: codebook must be K x c, got " .. argcheck.shape_string(codebook))
  end
  local c0 = codes0("ema_update", codes, codebook:size(1))
  check_rc(C.pivq_vq_ema_update_(codebook.c, ema_count.c, ema_sum.c, latents.c, c0.c,
    argcheck.number("ema_update", "decay", decay, 0.99), argcheck.number("ema_update", "eps", eps, 1e-5)))
end

-- The halves of ema_update_ for data-parallel training (the statistics are summed over the
-- ranks in between): ema_stats gives this batch's per-code counts (float32 K) and latent sums
-- (K x c); ema_apply_ runs the EMA update from such statistics.
function M.ema_stats(latents, codes, K)
  need_tensor("ema_stats", "latents", latents)
  argcheck.number("ema_stats", "K", K, nil, true)
  if latents:dim() ~= 2 or K < 1 then
    fail(string.format("ema_stats: need latents N x c and K >= 1, got %s and K = %d", argcheck.shape_string(latents),
      K))
  end
  local counts, sums = tensor.zeros(K), tensor.zeros(K, latents:size(2))
  check_rc(C.pivq_vq_ema_stats(latents.c, codes0("ema_stats", codes, K).c, counts.c, sums.c))
  return counts, sums
end

function M.ema_apply_(codebook, ema_count, ema_sum, counts, sums, decay, eps)
  -- not pairs over a table of them: a nil argument would be skipped
  for _, arg in ipairs({ { "codebook", codebook }, { "ema_count", ema_count }, { "ema_sum", ema_sum },
    { "counts", counts }, { "sums", sums } }) do
    need_tensor("ema_apply_", arg[1], arg[2])
  end
  check_rc(C.pivq_vq_ema_apply_(codebook.c, ema_count.c, ema_sum.c, counts.c, sums.c,
    argcheck.number("ema_apply_", "decay", decay, 0.99), argcheck.number("ema_apply_", "eps", eps, 1e-5)))
end

-- Usage count of every code (int64, length K) from 1-based codes of any shape.
function M.code_counts(codes, K)
  return wrap(C.pivq_code_counts(codes0("code_counts", codes, K).c, K))
end

-- Mean number of distinct codes per image (K_img) for B x L 1-based codes.
function M.distinct_per_row(codes, K)
  local out = require("ffi").new("double[1]")
  check_rc(C.pivq_distinct_per_row(codes0("distinct_per_row", codes, K).c, K, out))
  return out[0]
end

-- Statistics of a batch of codes: counts, usage fraction, perplexity, K_img.
function M.code_stats(codes, K)
  local st = M.count_stats(M.code_counts(codes, K))
  st.K_img = codes:dim() == 2 and M.distinct_per_row(codes, K) or nil
  return st
end

-- usage, perplexity and entropy (bits) from per-code counts (any dtype, length K)
function M.count_stats(counts)
  need_tensor("count_stats", "counts", counts)
  local K = counts:numel()
  counts = counts:contiguous()
  local total = counts:sum():item()
  local used, entropy = 0, 0
  local cp = counts:data_ptr() -- contiguous; indexing the tensor per code would allocate
  for k = 0, K - 1 do
    local n = tonumber(cp[k])
    if n > 0 then
      used = used + 1
      local p = n / total
      entropy = entropy - p * math.log(p)
    end
  end
  return {
    counts = counts,
    usage = used / K,
    perplexity = math.exp(entropy),
    entropy_bits = entropy / math.log(2), -- of the code frequencies; at most log2 K
  }
end

-- Exact minimum-cost assignment of the rows of an L x K cost (L <= K) to distinct columns:
-- L 1-based int64 columns; a B x L x K cost gives B x L (problems solved in parallel).
function M.assign(cost)
  need_tensor("assign", "cost", cost)
  return index.to1_(wrap(C.pivq_assign(cost.c)))
end

-- The matching codes of latents z (B x L x c) against codebook (K x c): B x L 1-based int64,
-- the same as M.assign(M.sq_distances(z:reshape(B * L, c), codebook):view(B, L, K)) but with
-- the distances computed and freed a block of images at a time in C (about 1 MB at once).
function M.match(z, codebook)
  need_tensor("match", "z", z)
  need_tensor("match", "codebook", codebook)
  return index.to1_(wrap(C.pivq_vq_match(z.c, codebook.c)))
end

-- M.match, and how many of the B*L latents matching sent to a code strictly farther than their
-- nearest one (a tie counts as agreeing): the rate at which matching's choice differs from
-- nearest's is differ / (B * L). Counted in C from the distances the assignment already has.
function M.match_differ(z, codebook)
  need_tensor("match_differ", "z", z)
  need_tensor("match_differ", "codebook", codebook)
  local n = require("ffi").new("int64_t[1]")
  local idx = index.to1_(wrap(C.pivq_vq_match_differ(z.c, codebook.c, n)))
  return idx, tonumber(n[0])
end

M.Generator = random.Generator
return M
