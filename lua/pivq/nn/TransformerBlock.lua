-- pivq.nn.TransformerBlock(dim, heads, {mlp_ratio = 4, cross = false, context_dim = dim,
-- dropout = 0, generator =}): a pre-norm block,
--   x = x + attn(ln1(x))                       (self-attention, optional mask)
--   x = x + cross_attn(ln_cross(x), context)   (when cross = true)
--   x = x + mlp(ln2(x))                        (Linear, GELU, Linear)
-- forward(x, {context =, context_linear =, mask =, rows =, tail =}); x (B, L, dim), context
-- (B, S, context_dim); context_linear = {weight =, bias =}: attend to linear(context, ...), the
-- map folded into the cross-attention's projections (see MultiheadAttention).
--   tail = t (1 or B, n, dim): the block runs on x's rows followed by t's, (B, L + n, dim) out;
--   a batch-1 tail (the same rows for every image, e.g. learned query tokens) has its LayerNorm
--   and attention projections computed once instead of per image.
--   An x broadcast over the batch (stride 0 in dim 1, e.g. learned queries expanded) runs its
--   self-attention once, on one row of the batch, and broadcasts the result: the same values
--   and gradients (expand's backward sums over the batch) for 1/B of that work.
--   rows = {first, n}: compute only output rows first .. first+n-1, (B, n, dim). Every row
--   still supplies keys and values; the other rows' queries, residuals and MLP are skipped.
--   Equal to forward(x):narrow(2, first, n), for a caller that reads only those rows (the
--   PI-VQ encoder's last block, whose patch-token outputs are discarded: 20% less work there).
local Module = require "pivq.nn.Module"
local LayerNorm = require "pivq.nn.LayerNorm"
local MHA = require "pivq.nn.MultiheadAttention"
local MLP = require "pivq.nn.MLP"
local tensor = require "pivq.core.tensor"
local argcheck = require "pivq.core.argcheck"

local TransformerBlock = Module:extend("TransformerBlock")

function TransformerBlock:__init(dim, heads, opts)
  opts = argcheck.module_options("TransformerBlock", opts,
    { "cross", "context_dim", "mlp_ratio", "dropout" })
  argcheck.size("TransformerBlock", "dim", dim)
  argcheck.size("TransformerBlock", "heads", heads)
  argcheck.size("TransformerBlock", "context_dim", opts.context_dim or dim)
  argcheck.size("TransformerBlock", "the MLP width", math.floor(dim * argcheck.finite("TransformerBlock", "mlp_ratio",
    opts.mlp_ratio, 4, 0)))
  local gen = opts.generator
  self.dim, self.heads, self.cross = dim, heads, opts.cross and true or false
  self:add_module("ln1", LayerNorm(dim))
  self:add_module("attn", MHA(dim, heads, { generator = gen }))
  if self.cross then
    local cd = opts.context_dim or dim
    self:add_module("ln_cross", LayerNorm(dim))
    self:add_module("cross_attn", MHA(dim, heads, { kdim = cd, vdim = cd, generator = gen }))
  end
  self:add_module("ln2", LayerNorm(dim))
  self:add_module("mlp", MLP({ dim, math.floor(dim * (opts.mlp_ratio or 4)), dim },
    { dropout = opts.dropout, generator = gen }))
end

local function row_range(x, rows)
  if type(rows) ~= "table" or type(rows[1]) ~= "number" or type(rows[2]) ~= "number"
    or rows[1] % 1 ~= 0 or rows[2] % 1 ~= 0 or rows[1] < 1 or rows[2] < 1
    or not tensor.is_tensor(x) or x:dim() ~= 3 or rows[1] + rows[2] - 1 > x:size(2) then
    error(string.format("TransformerBlock: opts.rows must be {first, n} within the %s rows of x, got %s",
      tensor.is_tensor(x) and x:dim() == 3 and tostring(x:size(2)) or "?",
      type(rows) == "table" and "{" .. tostring(rows[1]) .. ", " .. tostring(rows[2]) .. "}" or tostring(rows)), 4)
  end
  return rows[1], rows[2]
end

-- x (B, L, D) is one row repeated over the batch (an expand), and no mask differs by image
local function batch_shared(x, mask)
  -- anything else (not a tensor, a bad mask) takes the plain path, whose layers report it
  return tensor.is_tensor(x) and x:dim() == 3 and x:size(1) > 1 and x:stride(1) == 0
    and (mask == nil or tensor.is_tensor(mask) and not (mask:dim() >= 4 and mask:size(mask:dim() - 3) > 1))
end

local function check_tail(x, t)
  if not tensor.is_tensor(x) or x:dim() ~= 3 or not tensor.is_tensor(t) or t:dim() ~= 3
    or t:size(3) ~= x:size(3) or (t:size(1) ~= 1 and t:size(1) ~= x:size(1)) then
    error(string.format("TransformerBlock: opts.tail must be (1 or B, n, %s) for x %s, got %s",
      tensor.is_tensor(x) and x:dim() == 3 and tostring(x:size(3)) or "dim",
      tensor.is_tensor(x) and argcheck.shape_string(x) or type(x),
      tensor.is_tensor(t) and argcheck.shape_string(t) or type(t)), 4)
  end
  return t:size(1) == x:size(1) and t or t:expand(x:size(1), t:size(2), t:size(3))
end

function TransformerBlock:forward(x, opts)
  opts = argcheck.options("TransformerBlock", opts, { "tail", "rows", "mask", "context", "context_mask",
    "context_linear" })
  if opts.tail and opts.rows then -- both: materialise the tail and take the rows path
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    x, o.tail = tensor.cat({ x, check_tail(x, opts.tail) }, 2), nil
    opts = o
  end
  if opts.tail then
    -- LayerNorm and projections per row block (a batch-1 tail's once), attention over all rows
    local full = tensor.cat({ x, check_tail(x, opts.tail) }, 2)
    x = full + self:call_child("attn", { self.ln1(x), self.ln1(opts.tail) }, { mask = opts.mask })
  elseif opts.rows then
    local first, n = row_range(x, opts.rows)
    local mask = opts.mask
    if mask and mask:dim() >= 2 and mask:size(mask:dim() - 1) == x:size(2) then
      mask = mask:narrow(mask:dim() - 1, first, n) -- the kept queries' rows of the scores
    end
    -- keys and values from every row, queries from the kept ones (the cross-attention path)
    local h = self.ln1(x)
    x = x:narrow(2, first, n) + self:call_child("attn", h:narrow(2, first, n), h, { mask = mask })
  elseif batch_shared(x, opts.mask) then
    -- what depends on x alone is computed once, on one image's rows, and broadcast
    local one = x:narrow(1, 1, 1)
    one = one + self:call_child("attn", self.ln1(one), { mask = opts.mask })
    if not self.cross then one = one + self:call_child("mlp", self.ln2(one)) end
    x = one:expand(x:size(1), x:size(2), x:size(3))
    if not self.cross then return x end
  else
    x = x + self:call_child("attn", self.ln1(x), { mask = opts.mask })
  end
  if self.cross then
    if not opts.context then error("TransformerBlock: cross-attention needs opts.context", 2) end
    x = x + self:call_child("cross_attn", self.ln_cross(x), opts.context,
      { mask = opts.context_mask, context_linear = opts.context_linear })
  end
  return x + self:call_child("mlp", self.ln2(x))
end

function TransformerBlock:extra_repr()
  return string.format("%d, heads %d%s", self.dim, self.heads, self.cross and ", cross" or "")
end

return TransformerBlock
