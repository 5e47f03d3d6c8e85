-- pivq.nn.Quantizer(K, c, opts): maps each image's L latent vectors to L codebook entries.
--
--   mode = "matching"  optimal bipartite matching: the L codes of an image are distinct
--                      (exact assignment, pivq.assign; notebooks/METHOD.md "Quantizers")
--   mode = "nearest"   each latent takes its nearest code independently (a multiset)
--
-- forward(z) with z (B, L, c) returns
--   zq       (B, L, c) quantized vectors with the straight-through gradient to z
--   indices  (B, L) int64, 1-based codes
--   losses   {commitment =, codebook =, total = codebook + beta * commitment} (scalar tensors)
--   stats    {usage =, perplexity =, entropy_bits =, K_img =} of this batch; matching adds
--            match_differ, the share of latents whose matched code is not their nearest one
--
-- opts: beta = 0.25 (commitment weight); ema = true (codebook learned by an exponential moving
-- average, decay = 0.99, Laplace eps = 1e-5; with ema = false the codebook is a parameter
-- trained by the codebook loss); cosine = false (l2-normalised latents and codes);
-- dead_after = 0 (restart codes unused for that many forward passes; 0 = never, see
-- restart_dead). A quantizer starts "bypassed" only if opts.bypass: forward then returns z
-- itself (the delayed-initialisation warm-up) until init_from(latents) runs k-means++.
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"
local tensor = require "pivq.core.tensor"
local random = require "pivq.core.random"
local vq = require "pivq.quant.vq"
local autograd = require "pivq.core.autograd"
local argcheck = require "pivq.core.argcheck"

local Quantizer = Module:extend("Quantizer")

local MODES = { matching = true, nearest = true }

function Quantizer:__init(K, c, opts)
  opts = argcheck.module_options("Quantizer", opts,
    { "mode", "beta", "ema", "decay", "eps", "cosine", "dead_after", "bypass" })
  if type(K) ~= "number" or K < 1 or K % 1 ~= 0 or type(c) ~= "number" or c < 1 or c % 1 ~= 0 then
    error(string.format("Quantizer: K and c must be positive integers, got %s and %s", tostring(K), tostring(c)), 3)
  end
  local mode = opts.mode or "matching"
  if not MODES[mode] then
    error("Quantizer: mode must be \"matching\" or \"nearest\", got " .. tostring(mode), 3)
  end
  argcheck.size("Quantizer", "K", K)
  argcheck.size("Quantizer", "c", c)
  argcheck.weight("Quantizer", { K, c })
  self.K, self.c, self.mode = K, c, mode
  self.beta = argcheck.finite("Quantizer", "beta", opts.beta, 0.25)
  self.ema = opts.ema ~= false
  self.decay = argcheck.finite("Quantizer", "decay", opts.decay, 0.99)
  self.eps = argcheck.finite("Quantizer", "eps", opts.eps, 1e-5)
  self.cosine = opts.cosine or false
  self.dead_after = argcheck.finite("Quantizer", "dead_after", opts.dead_after, 0)
  self.bypassed = opts.bypass or false
  local codebook = random.randn(K, c, { generator = opts.generator })
  if self.cosine then codebook = codebook / codebook:norm(2, 2, true) end
  if self.ema then
    self:register_buffer("codebook", codebook)
    self:register_buffer("ema_count", tensor.ones(K))
    self:register_buffer("ema_sum", codebook:clone())
  else
    self:register_parameter("codebook", codebook)
  end
  -- forward passes since each code was last used (dead-code restart)
  self:register_buffer("idle", tensor.zeros(K))
end

function Quantizer:extra_repr()
  return string.format("K=%d, c=%d, mode=%s, beta=%g, %s%s", self.K, self.c, self.mode, self.beta,
    self.ema and "ema" or "loss-trained codebook", self.cosine and ", cosine" or "")
end

local function normalise(x) return x / (x:norm(2, -1, true) + 1e-8) end

-- z checked as (B, L, c) latents for fname; the latents as B*L x c rows and the codebook, both
-- detached (and normalised for a cosine quantizer), so nothing is recorded for autograd.
local function prepared(self, z, fname, matching)
  if not tensor.is_tensor(z) or z:dim() ~= 3 or z:size(3) ~= self.c then
    error(string.format("%s: expected latents (B, L, %d), got %s", fname, self.c,
      tensor.is_tensor(z) and table.concat(z:size(), "x") or type(z)), 3)
  end
  local B, L = z:size(1), z:size(2)
  if matching and L > self.K then
    error(string.format("Quantizer: matching needs K >= L, got K=%d and L=%d", self.K, L), 3)
  end
  local flat = z:detach():reshape(B * L, self.c)
  local cb = self.codebook:detach()
  if self.cosine then
    flat, cb = normalise(flat), normalise(cb)
  end
  return flat, cb, B, L
end

-- Codes for latents without gradients: (B, L) 1-based, the latents as B*L x c rows, and (for
-- matching) how many latents matching sent to a code other than their nearest.
function Quantizer:assign(z)
  local flat, cb, B, L = prepared(self, z, "Quantizer:assign", self.mode == "matching")
  return autograd.no_grad(function()
    local idx, differ
    if self.mode == "matching" then
      -- not vq.assign of the whole B*L x K distances: that matrix (8 MB for the default
      -- model) would be garbage held until the step's end, raising every step's peak
      idx, differ = vq.match_differ(flat:reshape(B, L, self.c), cb)
    else
      local _, nearest = vq.sq_distances(flat, cb):min(2)
      idx = nearest:view(B, L)
    end
    return idx, flat, differ
  end)
end

-- The share of the latents z (B, L, c) whose matched code (the optimal assignment of each
-- image's latents to distinct codes) is not their nearest code, whatever this quantizer's mode
-- (for a nearest model: how many latents matching would move). nil when L > K.
function Quantizer:match_differ(z)
  if tensor.is_tensor(z) and z:dim() == 3 and z:size(2) > self.K then return nil end
  local flat, cb, B, L = prepared(self, z, "Quantizer:match_differ", true)
  return autograd.no_grad(function()
    local _, differ = vq.match_differ(flat:reshape(B, L, self.c), cb)
    return differ / (B * L)
  end)
end

function Quantizer:forward(z)
  if self.bypassed then
    local zero = tensor.zeros({})
    return z, nil, { commitment = zero, codebook = zero, total = zero }, {}
  end
  local idx, flat, differ = self:assign(z) -- first: it checks z
  local B, L = z:size(1), z:size(2)
  local zn = self.cosine and normalise(z) or z
  local e = F.embedding(idx, self.cosine and normalise(self.codebook) or self.codebook) -- (B, L, c)
  local commitment = F.mse_loss(zn, e:detach())
  local codebook_loss = self.ema and tensor.zeros({}) or F.mse_loss(e, zn:detach())
  local zq = zn + (e - zn):detach()
  local stats
  if self.training then
    autograd.no_grad(function()
      local idx_flat = idx:view(B * L)
      local counts
      if self.dist then -- data-parallel (pivq.dist): every rank's batch statistics
        counts, stats = self:shared_update(flat, idx, idx_flat)
      else
        if self.ema then
          vq.ema_update_(self.codebook, self.ema_count, self.ema_sum, flat, idx_flat, self.decay, self.eps)
        end
        counts = vq.code_counts(idx_flat, self.K)
      end
      if self.ema and self.cosine then self.codebook:copy(normalise(self.codebook)) end
      -- idle = (idle + 1) where unused, 0 where used
      self.idle:copy((self.idle + 1):masked_fill(counts:gt(0), 0))
      self.last_latents = flat
      self.last_counts = counts -- every rank's under data-parallel training (the trainer's epoch entropy)
    end)
  end
  stats = stats or vq.code_stats(idx, self.K)
  stats.counts = nil
  -- matching: the share of this batch's latents not given their nearest code (this rank's)
  if differ then stats.match_differ = differ / (B * L) end
  return zq, idx, {
    commitment = commitment,
    codebook = codebook_loss,
    total = codebook_loss + commitment * self.beta,
  }, stats
end

-- Delayed initialisation: k-means++ on gathered latents (N x c), then quantize from now on.
function Quantizer:init_from(latents, opts)
  opts = opts or {}
  if not tensor.is_tensor(latents) or latents:dim() == 0 or latents:size(-1) ~= self.c or latents:numel() == 0
    or type(opts) ~= "table" then
    error(string.format("init_from: need latents (..., %d) and an options table, got %s and %s", self.c,
      tensor.is_tensor(latents) and argcheck.shape_string(latents) or type(latents), type(opts)), 2)
  end
  autograd.no_grad(function()
    local x = latents:detach():reshape(-1, self.c)
    if self.cosine then x = normalise(x) end
    argcheck.keys("Quantizer:init_from", opts, { "iters", "generator" })
    local centroids = vq.kmeans(x, self.K, { iters = opts.iters or 10, generator = opts.generator })
    self.codebook:copy(centroids)
    if self.ema then
      self.ema_count:fill(1)
      self.ema_sum:copy(centroids)
    end
    self.idle:zero()
  end)
  self.bypassed = false
end

-- Dead-code restart: codes idle for more than `after` passes get a random recent latent (from
-- opts.latents or the last training batch). Returns how many were restarted.
function Quantizer:restart_dead(after, opts)
  opts = opts or {}
  after = after or self.dead_after
  if type(after) ~= "number" or type(opts) ~= "table" then
    error(string.format("restart_dead: need a number of passes and an options table, got %s and %s",
      type(after), type(opts)), 2)
  end
  argcheck.keys("Quantizer:restart_dead", opts, { "latents", "generator" })
  local pool = opts.latents or self.last_latents
  if not tensor.is_tensor(pool) or pool:dim() ~= 2 or pool:size(2) ~= self.c then
    if opts.latents == nil and pool == nil then return 0 end
    error(string.format("restart_dead: latents must be an N x %d tensor", self.c), 2)
  end
  if not pool or after <= 0 then return 0 end
  local n = 0
  autograd.no_grad(function()
    local dead = {}
    local idle = self.idle:data_ptr() -- a contiguous buffer; per-code tensor indexing would allocate
    for k = 1, self.K do
      if idle[k - 1] > after then dead[#dead + 1] = k end
    end
    if #dead == 0 then return end
    local rows = random.randint(1, pool:size(1) + 1, { #dead }, { generator = opts.generator })
    local fresh = pool:index_select(1, rows)
    for i, k in ipairs(dead) do
      local v = fresh[i]
      self.codebook[k]:copy(v)
      if self.ema then
        self.ema_sum[k]:copy(v)
        self.ema_count[k] = 1
      end
      self.idle[k] = 0
    end
    n = #dead
  end)
  return n
end

-- The training update of a data-parallel quantizer (self.dist, a pivq.dist.DataParallel): the
-- batch statistics — per-code counts, latent sums for the EMA, distinct codes per image — are
-- summed over the ranks in one allreduce, so that every rank applies the same EMA update and
-- counts idle codes alike. Returns the global counts and the global batch's stats.
function Quantizer:shared_update(flat, idx, idx_flat)
  local kimg = tensor.tensor({ vq.distinct_per_row(idx, self.K) })
  local counts, sums
  if self.ema then
    counts, sums = vq.ema_stats(flat, idx_flat, self.K)
  else
    counts = vq.code_counts(idx_flat, self.K):float()
  end
  self.dist:allreduce_sum_({ counts, kimg, sums })
  if self.ema then vq.ema_apply_(self.codebook, self.ema_count, self.ema_sum, counts, sums, self.decay, self.eps) end
  local stats = vq.count_stats(counts)
  stats.K_img = kimg:item() / self.dist.size
  return counts, stats
end

return Quantizer
