-- pivq.nn.MultiheadAttention(embed_dim, num_heads, {kdim =, vdim =, bias = true, generator =})
--
--   attn(x)                        self-attention, x (B, L, E)
--   attn(x, context)               cross-attention: keys and values from context (B, S, kdim)
--   attn(q, k, v, {mask = m})      general; m additive, broadcastable to (B, heads, Lq, Lk)
--   attn({x1, x2, ...}, opts)      self-attention to the rows of x1, x2, ... concatenated (dim 2),
--                                  a block of batch size 1 standing for every image: its
--                                  projections run once (PI-VQ's learned readout tokens enter
--                                  the encoder's first block identical for every image)
--   attn(x, c, {context_linear = {weight = W, bias = b}})
--                                  cross-attention to linear(c, W, b) (W kdim x c_dim), with that
--                                  map folded into the key/value projections: k = c (Wk W)^T +
--                                  (Wk b + bk), the same function and gradients; when c_dim <
--                                  kdim it is c_dim/kdim of the work (PI-VQ's decoder attends to
--                                  32-dim codes lifted to 128: a quarter)
--
-- Batch-first layout (B, L, E). The projections are stored as PyTorch does: in_proj_weight
-- (3E x E) and in_proj_bias (3E) when kdim = vdim = E, else q_proj_weight (E x E),
-- k_proj_weight (E x kdim), v_proj_weight (E x vdim); out_proj a Linear. Initialisation as
-- PyTorch: xavier_uniform input projections, zero input and output biases, the output
-- projection's weight as a Linear's.
-- q, k and v come from three sgemms on row blocks of in_proj_weight (one sgemm for all three
-- was slower: the backward of slicing its (B, L, 3E) output materialises three zero-padded
-- (B, L, 3E) gradients); cross-attention projects k and v with one. The heads are read from
-- the projections in place (strided views; the fused attention kernel takes strides).
local Module = require "pivq.nn.Module"
local Linear = require "pivq.nn.Linear"
local F = require "pivq.nn.F"
local tensor = require "pivq.core.tensor"
local init = require "pivq.nn.init_weights"
local argcheck = require "pivq.core.argcheck"

local MHA = Module:extend("MultiheadAttention")

function MHA:__init(embed_dim, num_heads, opts)
  opts = argcheck.module_options("MultiheadAttention", opts, { "kdim", "vdim", "bias" })
  argcheck.size("MultiheadAttention", "embed_dim", embed_dim)
  argcheck.size("MultiheadAttention", "num_heads", num_heads)
  argcheck.size("MultiheadAttention", "kdim", opts.kdim or embed_dim)
  argcheck.size("MultiheadAttention", "vdim", opts.vdim or embed_dim)
  argcheck.weight("MultiheadAttention", { 3 * embed_dim, math.max(embed_dim, opts.kdim or 0, opts.vdim or 0) })
  if embed_dim % num_heads ~= 0 then
    error(string.format("MultiheadAttention: embed_dim %d is not divisible by %d heads",
      embed_dim, num_heads), 3)
  end
  local E, gen = embed_dim, opts.generator
  self.embed_dim, self.num_heads, self.head_dim = E, num_heads, E / num_heads
  self.kdim, self.vdim = opts.kdim or E, opts.vdim or E
  self.same_dims = self.kdim == E and self.vdim == E
  if self.same_dims then
    self:register_parameter("in_proj_weight", init.xavier_uniform({ 3 * E, E }, E, 3 * E, gen))
  else
    self:register_parameter("q_proj_weight", init.xavier_uniform({ E, E }, E, E, gen))
    self:register_parameter("k_proj_weight", init.xavier_uniform({ E, self.kdim }, self.kdim, E, gen))
    self:register_parameter("v_proj_weight", init.xavier_uniform({ E, self.vdim }, self.vdim, E, gen))
  end
  if opts.bias ~= false then self:register_parameter("in_proj_bias", tensor.zeros(3 * E)) end
  self:add_module("out_proj", Linear(E, E, { bias = opts.bias, generator = gen }))
  if self.out_proj.bias then
    require("pivq.core.autograd").no_grad(function() self.out_proj.bias:zero() end)
  end
end

local function rows(t, first, n) return t and t:narrow(1, first, n) or nil end

-- (B, L, n*E) projection -> n views (B, H, L, Dh), no copies
function MHA:_heads(y, n)
  local B, L = y:size(1), y:size(2)
  local H, Dh = self.num_heads, self.head_dim
  local out = {}
  for i = 1, n do
    out[i] = y:narrow(3, (i - 1) * self.embed_dim + 1, self.embed_dim):view(B, L, H, Dh):transpose(2, 3)
  end
  return unpack(out)
end

-- A list of row blocks {(B or 1, Li, d), ...}: checked, with the batch size and total rows.
local function row_blocks(x)
  local B, L, d = 1, 0, nil
  for i, t in ipairs(x) do
    if not tensor.is_tensor(t) or t:dim() ~= 3 or (d and t:size(3) ~= d) then
      error(string.format("MultiheadAttention: row block %d must be (B or 1, L, d) like the others, got %s", i,
        tensor.is_tensor(t) and argcheck.shape_string(t) or type(t)), 4)
    end
    d, L = t:size(3), L + t:size(2)
    if t:size(1) ~= 1 then
      if B ~= 1 and t:size(1) ~= B then
        error(string.format("MultiheadAttention: row blocks have batch sizes %d and %d", B, t:size(1)), 4)
      end
      B = t:size(1)
    end
  end
  if not d then error("MultiheadAttention: an empty list of row blocks", 4) end
  return B, L
end

-- linear(x, w, b) of a tensor, or of row blocks: each block projected alone (a batch-1 block
-- once for all images), then broadcast and joined
local function project(x, w, b)
  -- anything but a list goes to linear, whose checks name what is wrong with it
  if type(x) ~= "table" or tensor.is_tensor(x) then return F.linear(x, w, b) end
  local B = row_blocks(x)
  local out = {}
  for i, t in ipairs(x) do
    local y = F.linear(t, w, b)
    out[i] = y:size(1) == B and y or y:expand(B, y:size(2), y:size(3))
  end
  return tensor.cat(out, 2)
end

function MHA:forward(query, key, value, opts)
  if type(key) == "table" and not tensor.is_tensor(key) then key, value, opts = nil, nil, key end
  if type(value) == "table" and not tensor.is_tensor(value) then value, opts = nil, value end
  key = key or query
  value = value or key
  if opts ~= nil and (type(opts) ~= "table" or tensor.is_tensor(opts)) then
    error("MultiheadAttention: options must be a table, got " .. type(opts), 2)
  elseif opts ~= nil then
    argcheck.keys("MultiheadAttention", opts, { "mask", "context_linear" })
  end
  local E = self.embed_dim
  local b = self.in_proj_bias
  local q, k, v
  local lin = opts and opts.context_linear
  if lin then
    if not (self.same_dims and value == key and key ~= query) or type(lin) ~= "table"
      or not tensor.is_tensor(lin.weight) or lin.weight:dim() ~= 2 or lin.weight:size(1) ~= self.kdim then
      error(string.format("MultiheadAttention: context_linear needs cross-attention (key = value) and "
        .. "{weight = (%d x c), bias =}, got %s", self.kdim, type(lin) == "table" and tensor.is_tensor(lin.weight)
        and argcheck.shape_string(lin.weight) or type(lin)), 2)
    end
    local wkv, bkv = rows(self.in_proj_weight, E + 1, 2 * E), rows(b, E + 1, 2 * E)
    local wf = wkv:matmul(lin.weight) -- (2E, c): the projections after the map
    local bf = lin.bias and wkv:matmul(lin.bias) or nil
    if bkv then bf = bf and bf + bkv or bkv end
    q = self:_heads(project(query, rows(self.in_proj_weight, 1, E), rows(b, 1, E)), 1)
    k, v = self:_heads(project(key, wf, bf), 2)
  elseif self.same_dims and value == key and key ~= query then
    q = self:_heads(project(query, rows(self.in_proj_weight, 1, E), rows(b, 1, E)), 1)
    k, v = self:_heads(project(key, rows(self.in_proj_weight, E + 1, 2 * E), rows(b, E + 1, 2 * E)), 2)
  else
    local wq, wk, wv
    if self.same_dims then
      wq, wk, wv = rows(self.in_proj_weight, 1, E), rows(self.in_proj_weight, E + 1, E),
        rows(self.in_proj_weight, 2 * E + 1, E)
    else
      wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
    end
    q = self:_heads(project(query, wq, rows(b, 1, E)), 1)
    k = self:_heads(project(key, wk, rows(b, E + 1, E)), 1)
    v = self:_heads(project(value, wv, rows(b, 2 * E + 1, E)), 1)
  end
  local o = F.attention(q, k, v, { mask = opts and opts.mask }) -- (B, H, Lq, Dh)
  local B, Lq = q:size(1), q:size(3)
  return self.out_proj(o:transpose(2, 3):reshape(B, Lq, E))
end

function MHA:extra_repr()
  local s = string.format("%d, heads %d", self.embed_dim, self.num_heads)
  if not self.same_dims then s = s .. string.format(", kdim %d, vdim %d", self.kdim, self.vdim) end
  return s
end

return MHA
