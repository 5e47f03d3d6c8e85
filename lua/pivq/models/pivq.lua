-- pivq.PIVQ: the permutation-invariant VQ autoencoder (notebooks/METHOD.md, "Model"; our design within
-- the paper's constraints, see docs in README.md).
--
-- Encoder (may use position): patchify, linear embedding, learned 2-D positional embedding,
-- L readout tokens appended to the patch tokens, pre-norm transformer blocks, the readout
-- tokens' outputs projected to the code dimension c.
--   readout = "learned"       L distinct learned query tokens
--   readout = "exchangeable"  the L tokens drawn afresh every pass from one shared learned
--                             Gaussian (mean, log std), so no code can know its slot
-- Quantizer: matching | nearest | positional (positional = nearest codes + a slot embedding
-- added in the decoder: the position-dependent VQ-VAE baseline with the same budget).
-- Decoder (order-invariant in matching/nearest mode): one learned, position-embedded query per
-- output patch; blocks of self-attention among the queries and cross-attention to the code
-- vectors (which carry no position); a linear head to pixels, un-patchify, sigmoid.
local nn = require "pivq.nn"
local F = require "pivq.nn.F"
local tensor = require "pivq.core.tensor"
local random = require "pivq.core.random"
local autograd = require "pivq.core.autograd"
local json = require "dkjson"
local argcheck = require "pivq.core.argcheck"

local PIVQ = nn.Module:extend("PIVQ")

PIVQ.defaults = {
  image_size = 28, channels = 1, patch = 7,
  width = 128, enc_depth = 2, dec_depth = 2, heads = 4, mlp_ratio = 2,
  L = 64, K = 512, c = 32,
  mode = "matching", readout = "learned", query_std = 1.0,
  beta = 0.25, ema = true, decay = 0.99, cosine = false,
  head = "linear", head_width = 64,
  seed = 1,
}

-- The config keys: the defaults', `dataset` (the training set's name) and `data` (its
-- description, pivq.data.layouts), both recorded by pivq train.
local function config_keys()
  local keys = { "dataset", "data" }
  for k in pairs(PIVQ.defaults) do keys[#keys + 1] = k end
  return keys
end

local function with_defaults(cfg)
  if cfg ~= nil and type(cfg) ~= "table" then error("PIVQ: config must be a table, got " .. type(cfg), 4) end
  argcheck.keys("PIVQ", cfg or {}, config_keys(), "config key")
  local out = {}
  for k, v in pairs(PIVQ.defaults) do out[k] = v end
  for k, v in pairs(cfg or {}) do out[k] = v end
  return out
end

local function check_config(cfg)
  local function posint(name, max)
    local v = cfg[name]
    if type(v) ~= "number" or v < 1 or v % 1 ~= 0 or v > max then
      error(string.format("PIVQ: config.%s must be an integer in 1..%d, got %s", name, max, tostring(v)), 4)
    end
  end
  -- the bounds keep a typo from building a model of absurd size (a loop per block, a tensor per size)
  for _, name in ipairs({ "image_size", "channels", "patch", "width", "heads", "L", "K", "c" }) do
    posint(name, 2 ^ 20)
  end
  posint("enc_depth", 1000)
  posint("dec_depth", 1000)
  for _, name in ipairs({ "mlp_ratio", "query_std", "beta", "decay" }) do
    local v = cfg[name]
    if type(v) ~= "number" or not (v >= 0 and v < 2 ^ 20) then
      error(string.format("PIVQ: config.%s must be a number in [0, 2^20), got %s", name, tostring(v)), 4)
    end
  end
  if math.floor(cfg.width * cfg.mlp_ratio) < 1 then
    error(string.format("PIVQ: width x mlp_ratio must be at least 1, got %s", cfg.width * cfg.mlp_ratio), 4)
  end
  argcheck.u53("PIVQ", "seed", cfg.seed)
  -- parameters, roughly: the blocks' weights, the codebook, the patch projections
  local D = cfg.width
  local params = (cfg.enc_depth + cfg.dec_depth) * D * D * (4 + 2 * cfg.mlp_ratio) + cfg.K * cfg.c
    + 2 * D * cfg.patch * cfg.patch * cfg.channels + (cfg.L + (cfg.image_size / cfg.patch) ^ 2) * D
  if params > 2 ^ 34 then
    error(string.format("PIVQ: the config asks for about %.3g parameters (more than 2^34)", params), 4)
  end
  -- refused before allocating: the float32 weights alone must fit in the machine's memory
  -- (training needs about 4 times as much: gradients and AdamW's two buffers)
  local total = PIVQ.memory_bytes()
  if total and 4 * params > total then
    error(string.format("PIVQ: the config asks for about %.3g parameters (%.1f GB of float32 weights), more than "
      .. "this machine's memory (%.1f GB)", params, 4 * params / 1e9, total / 1e9), 4)
  end
  if cfg.image_size % cfg.patch ~= 0 then
    error(string.format("PIVQ: image_size %d is not a multiple of patch %d", cfg.image_size, cfg.patch), 4)
  end
  if cfg.width % cfg.heads ~= 0 then
    error(string.format("PIVQ: width %d is not divisible by %d heads", cfg.width, cfg.heads), 4)
  end
  if cfg.mode ~= "matching" and cfg.mode ~= "nearest" and cfg.mode ~= "positional" then
    error("PIVQ: mode must be matching, nearest or positional, got " .. tostring(cfg.mode), 4)
  end
  if cfg.mode == "matching" and cfg.L > cfg.K then
    error(string.format("PIVQ: matching needs K >= L, got K=%d L=%d", cfg.K, cfg.L), 4)
  end
  if cfg.readout ~= "learned" and cfg.readout ~= "exchangeable" then
    error("PIVQ: readout must be learned or exchangeable, got " .. tostring(cfg.readout), 4)
  end
  if cfg.head ~= "linear" and cfg.head ~= "conv" then
    error("PIVQ: head must be linear or conv, got " .. tostring(cfg.head), 4)
  end
  if cfg.head == "conv" then
    posint("head_width", 2 ^ 12)
    local p = cfg.patch
    while p > 1 and p % 2 == 0 do p = p / 2 end
    if p ~= 1 then
      error(string.format("PIVQ: the conv head upsamples by 2 per stage: patch must be a power of 2, got %d",
        cfg.patch), 4)
    end
  end
end

-- The machine's memory in bytes (MemTotal of /proc/meminfo), or nil where there is none.
function PIVQ.memory_bytes()
  local f = io.open("/proc/meminfo")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local kb = text:match("MemTotal:%s*(%d+)")
  return kb and tonumber(kb) * 1024 or nil
end

function PIVQ:__init(cfg)
  cfg = with_defaults(cfg)
  check_config(cfg)
  self.config = cfg
  local g = random.Generator(cfg.seed)
  self.generator = g
  local D, p, C = cfg.width, cfg.patch, cfg.channels
  self.grid = cfg.image_size / p
  self.n_patches = self.grid * self.grid
  local patch_dim = p * p * C
  local function param(name, sizes, std)
    self:register_parameter(name, random.randn(sizes, { generator = g }) * std)
  end
  -- encoder
  self:add_module("patch_embed", nn.Linear(patch_dim, D, { generator = g }))
  param("enc_pos", { 1, self.n_patches, D }, 0.02)
  if cfg.readout == "learned" then
    param("queries", { 1, cfg.L, D }, cfg.query_std)
  else
    param("slot_mu", { 1, 1, D }, cfg.query_std)
    self:register_parameter("slot_log_sigma", tensor.zeros(1, 1, D))
  end
  for i = 1, cfg.enc_depth do
    self:add_module("enc" .. i, nn.TransformerBlock(D, cfg.heads, { mlp_ratio = cfg.mlp_ratio, generator = g }))
  end
  self:add_module("enc_norm", nn.LayerNorm(D))
  self:add_module("to_code", nn.Linear(D, cfg.c, { generator = g }))
  -- quantizer
  self:add_module("quantizer", nn.Quantizer(cfg.K, cfg.c, {
    mode = cfg.mode == "matching" and "matching" or "nearest",
    beta = cfg.beta, ema = cfg.ema, decay = cfg.decay, cosine = cfg.cosine, generator = g,
  }))
  -- decoder
  self:add_module("from_code", nn.Linear(cfg.c, D, { generator = g }))
  if cfg.mode == "positional" then param("slot_embed", { 1, cfg.L, D }, 0.02) end
  param("dec_queries", { 1, self.n_patches, D }, 0.02)
  for i = 1, cfg.dec_depth do
    self:add_module("dec" .. i, nn.TransformerBlock(D, cfg.heads,
      { mlp_ratio = cfg.mlp_ratio, cross = true, generator = g }))
  end
  self:add_module("dec_norm", nn.LayerNorm(D))
  if cfg.head == "conv" then
    -- the decoder's g x g token grid as a feature map, then one stage per factor 2 of the patch:
    -- nearest 2x upsampling, 3x3 convolution, SiLU (widths halve down to 16); a 3x3 convolution
    -- to the channels. No patch grid: neighbouring output pixels share every stage's kernels.
    local w = cfg.head_width
    self:add_module("head_in", nn.Conv2d(D, w, 1, { generator = g }))
    local stages, size = 0, 1
    while size < p do
      stages, size = stages + 1, size * 2
      local w2 = math.max(16, math.floor(w / (stages > 1 and 2 or 1)))
      self:add_module("head_up" .. stages, nn.Conv2d(w, w2, 3, { padding = 1, generator = g }))
      w = w2
    end
    self.head_stages = stages
    self:add_module("head_out", nn.Conv2d(w, C, 3, { padding = 1, generator = g }))
  else
    self:add_module("to_pixels", nn.Linear(D, patch_dim, { generator = g }))
  end
end

-- Fold from_code into the decoder's key/value projections (see decode_vectors); a spec turns it
-- off on an instance to compare with the unfolded computation.
PIVQ.fold_context = true

function PIVQ:extra_repr()
  local c = self.config
  return string.format("%dx%dx%d images, patch %d, L=%d, K=%d, c=%d, mode=%s, readout=%s%s", c.channels,
    c.image_size, c.image_size, c.patch, c.L, c.K, c.c, c.mode, c.readout,
    c.head == "conv" and string.format(", conv head %d", c.head_width) or "")
end

local function check_images(self, x, fname)
  local c = self.config
  if not tensor.is_tensor(x) or x:dim() ~= 4 or x:size(2) ~= c.channels or x:size(3) ~= c.image_size
    or x:size(4) ~= c.image_size then
    error(string.format("%s: expected images (B, %d, %d, %d), got %s", fname, c.channels, c.image_size,
      c.image_size, tensor.is_tensor(x) and table.concat(x:size(), "x") or type(x)), 3)
  end
end

-- (B, C, H, W) -> (B, N, p*p*C), patches in row-major order
function PIVQ:patchify(x)
  check_images(self, x, "PIVQ:patchify")
  local B, C, p, g = x:size(1), self.config.channels, self.config.patch, self.grid
  return x:reshape(B, C, g, p, g, p):permute(1, 3, 5, 4, 6, 2):reshape(B, g * g, p * p * C)
end

-- (B, N, p*p*C) -> (B, C, H, W)
function PIVQ:unpatchify(t)
  local c = self.config
  if not tensor.is_tensor(t) or t:dim() ~= 3 or t:size(2) ~= self.n_patches
    or t:size(3) ~= c.patch * c.patch * c.channels then
    error(string.format("PIVQ:unpatchify: expected patches (B, %d, %d), got %s", self.n_patches,
      c.patch * c.patch * c.channels, tensor.is_tensor(t) and argcheck.shape_string(t) or type(t)), 2)
  end
  local B, C, p, g = t:size(1), self.config.channels, self.config.patch, self.grid
  return t:reshape(B, g, g, p, p, C):permute(1, 6, 2, 4, 3, 5):reshape(B, C, g * p, g * p)
end


-- Continuous latents (B, L, c) before quantization.
function PIVQ:latents(x)
  check_images(self, x, "PIVQ:latents")
  local cfg = self.config
  local B = x:size(1)
  local tokens = self.patch_embed(self:patchify(x:float())) + self.enc_pos
  local readout -- (1, L, D) learned tokens, the same for every image; or (B, L, D) drawn
  if cfg.readout == "learned" then
    readout = self.queries
  else
    local noise = random.randn(B, cfg.L, cfg.width, { generator = self.training and self.generator or nil })
    readout = self.slot_mu + self.slot_log_sigma:exp() * noise
  end
  -- the first block takes the readout tokens as a tail (their per-row work once, not per
  -- image); only the readout tokens' outputs are read: the last block computes just those rows
  local h = tokens
  for i = 1, cfg.enc_depth do
    h = self["enc" .. i](h, { tail = i == 1 and readout or nil,
      rows = i == cfg.enc_depth and { self.n_patches + 1, cfg.L } or nil })
  end
  return self.to_code(self.enc_norm(h))
end

-- Images from quantized vectors zq (B, L, c); also the features (B, N, width) entering the last
-- layer, where the trainer's adaptive adversarial weight compares gradient norms.
function PIVQ:decode_vectors(zq)
  local cfg = self.config
  if not tensor.is_tensor(zq) or zq:dim() ~= 3 or zq:size(3) ~= cfg.c then
    error(string.format("PIVQ:decode_vectors: expected vectors (B, L, %d), got %s", cfg.c,
      tensor.is_tensor(zq) and argcheck.shape_string(zq) or type(zq)), 2)
  end
  local B = zq:size(1)
  -- the decoder attends to from_code(zq); without slot embeddings that linear map is folded
  -- into each block's key/value projections (c < width: less work, the same function)
  local memory, lift = zq, { weight = self.from_code.weight, bias = self.from_code.bias }
  if cfg.mode == "positional" or not self.fold_context then
    memory, lift = self.from_code(zq), nil
    if cfg.mode == "positional" then memory = memory + self.slot_embed end
  end
  local h = self.dec_queries:expand(B, self.n_patches, cfg.width)
  for i = 1, cfg.dec_depth do h = self["dec" .. i](h, { context = memory, context_linear = lift }) end
  local features = self.dec_norm(h)
  return self:head(features), features
end

-- The modules of the head (the last layer's module first): what PIVQ:head runs.
function PIVQ:head_modules()
  if self.config.head ~= "conv" then return { self.to_pixels } end
  local list = { self.head_out, self.head_in }
  for i = 1, self.head_stages do list[#list + 1] = self["head_up" .. i] end
  return list
end

-- The decoder's head: features (B, N, width) -> images (B, C, H, W) in (0, 1).
function PIVQ:head(features)
  if not tensor.is_tensor(features) or features:dim() ~= 3 or features:size(3) ~= self.config.width then
    error(string.format("PIVQ:head: expected features (B, %d, %d), got %s", self.n_patches, self.config.width,
      tensor.is_tensor(features) and argcheck.shape_string(features) or type(features)), 2)
  end
  if self.config.head == "conv" then
    local B, g = features:size(1), self.grid
    local h = self.head_in(features:reshape(B, g, g, self.config.width):permute(1, 4, 2, 3):contiguous())
    for i = 1, self.head_stages do
      h = F.silu(self["head_up" .. i](F.interpolate(h, { scale_factor = 2, mode = "nearest" })))
    end
    return self.head_out(h):sigmoid()
  end
  return self:unpatchify(self.to_pixels(features)):sigmoid()
end

-- forward(images) -> reconstructions, indices (B, L; nil while bypassed), losses, stats, latents,
-- last-layer features
function PIVQ:forward(x)
  local z = self:latents(x)
  local zq, idx, losses, stats = self.quantizer(z)
  local y, features = self:decode_vectors(zq)
  return y, idx, losses, stats, z, features
end

-- encode(images) -> (B, L) int64 1-based codes; sorted within each image unless positional
function PIVQ:encode(x)
  return autograd.no_grad(function()
    local was = self.training
    self:train(false)
    local idx = self.quantizer:assign(self:latents(x))
    self:train(was)
    if self.config.mode ~= "positional" then
      local rows = {}
      for b = 1, idx:size(1) do
        local r = idx[b]:totable()
        table.sort(r)
        rows[b] = r
      end
      idx = tensor.tensor(rows, "int64")
    end
    return idx
  end)
end

-- decode(codes) -> images; codes (B, L) 1-based (a tensor, or a list of pivq.CodeSet)
function PIVQ:decode(codes)
  if type(codes) == "table" and not tensor.is_tensor(codes) then
    local CodeSet = require "pivq.quant.CodeSet"
    for i = 1, math.max(#codes, 1) do
      if not CodeSet.is_codeset(codes[i]) then
        error(string.format("PIVQ:decode: expected codes (B, %d) or a non-empty list of CodeSets; entry %d is %s",
          self.config.L, i, type(codes[i])), 2)
      end
    end
    codes = CodeSet.to_rows(codes)
  end
  if not tensor.is_tensor(codes) or codes:dim() ~= 2 or codes:size(2) ~= self.config.L then
    error(string.format("PIVQ:decode: expected codes (B, %d), got %s", self.config.L,
      tensor.is_tensor(codes) and table.concat(codes:size(), "x") or type(codes)), 2)
  end
  if codes:numel() == 0 then error("PIVQ:decode: no codes (an empty batch)", 2) end
  if codes:dtype() ~= "int64" and codes:dtype() ~= "int32" then
    error("PIVQ:decode: codes must be int64 or int32, got " .. codes:dtype(), 2)
  end
  local lo, hi = codes:min(), codes:max()
  if lo < 1 or hi > self.config.K then
    error(string.format("PIVQ:decode: code %d out of range 1..%d", lo < 1 and lo or hi, self.config.K), 2)
  end
  return autograd.no_grad(function()
    local q = self.quantizer
    local cb = q.cosine and q.codebook / (q.codebook:norm(2, -1, true) + 1e-8) or q.codebook
    return (self:decode_vectors(F.embedding(codes, cb:detach()))) -- images only
  end)
end

function PIVQ:codebook() return self.quantizer.codebook end

-- Codes as pivq.CodeSets (sets for matching, multisets for nearest/positional).
function PIVQ:code_sets(codes)
  if not tensor.is_tensor(codes) or codes:dim() ~= 2 or codes:dtype() ~= "int64"
    or (codes:numel() > 0 and (codes:min() < 1 or codes:max() > self.config.K)) then
    error(string.format("PIVQ:code_sets: expected int64 codes (B, L) in 1..%d, got %s", self.config.K,
      tensor.is_tensor(codes) and codes:dtype() .. " " .. argcheck.shape_string(codes) or type(codes)), 2)
  end
  return require("pivq.quant.CodeSet").from_rows(codes,
    { K = self.config.K, multiset = self.config.mode ~= "matching" })
end

-- ---- inspection (REPL) ----------------------------------------------------------------------

-- The code bank of the training set under this checkpoint (built once, cached beside it).
function PIVQ:bank(opts)
  if not self._bank then
    local b, err = require("pivq.quant.bank").load(self, opts)
    if not b then error("PIVQ:bank: " .. tostring(err), 2) end
    self._bank = b
  end
  return self._bank
end

-- The first n training images whose code sets contain code k: images (n, C, H, W) and their
-- 1-based dataset indices.
function PIVQ:images_with_code(k, n)
  n = n or 8
  if type(k) ~= "number" or k < 1 or k > self.config.K or k % 1 ~= 0 then
    error(string.format("images_with_code: k must be a code in 1..%d, got %s", self.config.K, tostring(k)), 2)
  end
  local b = self:bank()
  local has = b.codes:eq(k):sum(2):contiguous()
  local hp = has:data_ptr() -- per-element tensor indexing would allocate N tensors
  local idx = {}
  for i = 1, has:size(1) do
    if hp[i - 1] > 0 then
      idx[#idx + 1] = i
      if #idx == n then break end
    end
  end
  if #idx == 0 then return nil, {} end
  if not b.images then b.images = require("pivq.quant.bank").dataset_of(self).images end
  local imgs = b.images:index_select(1, tensor.tensor(idx, "int64"))
  if imgs:dtype() == "uint8" then imgs = imgs:float() / 255 end
  return imgs, idx
end

-- Attribute editing (pivq.edit, notebooks/METHOD.md "Attribute editing"): each code's weight for
-- an attribute (a name of the dataset's attribute file, or a class of a labelled dataset), from
-- the per-attribute probe fitted on the codes of the first opts.images (5000) training images.
function PIVQ:attribute_weights(attribute, opts) return require("pivq.eval.edit").weights_for(self, attribute, opts) end

-- m:edit(codes, attribute, n): the n codes that speak most against the attribute exchanged for
-- the n (not already there) that speak most for it; codes a CodeSet, a list of them or (B, L).
-- Returns the edited codes (the same kind) and what was removed and added.
function PIVQ:edit(codes, attribute, n, opts) return require("pivq.eval.edit").edit(self, codes, attribute, n, opts) end

-- Print a histogram of code usage over the training set; returns the counts (K int64).
function PIVQ:code_usage(opts)
  opts = opts or {}
  local b = self:bank()
  local st = require("pivq.quant.vq").code_stats(b.codes, self.config.K)
  local counts = st.counts
  local order = {}
  local cp = counts:data_ptr()
  for k = 1, self.config.K do order[k] = { k = k, n = tonumber(cp[k - 1]) } end
  table.sort(order, function(x, y) return x.n > y.n or (x.n == y.n and x.k < y.k) end)
  local top = opts.top or 20
  local maxn = math.max(1, order[1].n)
  local lines = { string.format("codes used: %d of %d (%.1f%%), perplexity %.1f, distinct codes per image %.2f of L=%d",
    math.floor(st.usage * self.config.K + 0.5), self.config.K, 100 * st.usage, st.perplexity, st.K_img,
    self.config.L) }
  for i = 1, math.min(top, #order) do
    local o = order[i]
    lines[#lines + 1] = string.format("%6d %8d %s", o.k, o.n, string.rep("#", math.floor(40 * o.n / maxn + 0.5)))
  end
  if opts.print ~= false then print(table.concat(lines, "\n")) end
  return counts
end

-- ---- checkpoints ------------------------------------------------------------------------------

-- save(path, extra_tensors, extra_metadata): parameters and buffers as safetensors; the config
-- (and anything in extra_metadata) as JSON strings in __metadata__.
function PIVQ:save(path, extra_tensors, extra_metadata)
  local tensors = {}
  for name, t in pairs(self:state_dict()) do tensors["model." .. name] = t end
  argcheck.options("PIVQ:save", extra_tensors) -- both tables, or nil
  argcheck.options("PIVQ:save", extra_metadata)
  for name, t in pairs(extra_tensors or {}) do tensors[name] = t end
  local meta = { format = "pivq-model-1", config = json.encode(self.config) }
  for k, v in pairs(extra_metadata or {}) do
    local ok, enc = pcall(json.encode, v)
    if type(v) ~= "string" and not ok then
      error(string.format("PIVQ:save: metadata %s cannot be stored as JSON: %s", tostring(k), tostring(enc)), 2)
    end
    meta[k] = type(v) == "string" and v or enc
  end
  return require("pivq.data.files").save(path, tensors, meta)
end

-- pivq.load_model(path) -> model, tensors, metadata (or nil, err)
function PIVQ.load(path)
  local tensors, meta = require("pivq.data.files").load(path)
  if not tensors then return nil, meta end
  if not meta.config then return nil, path .. ": not a pivq model checkpoint (no config in metadata)" end
  local cfg, _, err = json.decode(meta.config)
  if type(cfg) ~= "table" then return nil, path .. ": bad config JSON: " .. tostring(err) end
  -- the stored config goes through the same checks as a user's (unknown keys, sizes, the cap)
  local built, model = pcall(PIVQ, cfg)
  if not built then return nil, path .. ": " .. tostring(model):gsub("^[^:]*:%d+: ", "") end
  local sd = {}
  for name, t in pairs(tensors) do
    local short = name:match("^model%.(.+)$")
    if short then sd[short] = t end
  end
  local ok, lerr = pcall(model.load_state_dict, model, sd)
  if not ok then return nil, path .. ": " .. tostring(lerr) end
  model.quantizer.bypassed = false
  model:train(false)
  model.path = path
  return model, tensors, meta
end

return PIVQ
