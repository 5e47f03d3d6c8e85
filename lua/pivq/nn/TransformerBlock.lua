-- pivq.nn.TransformerBlock(dim, heads, {mlp_ratio = 4, cross = false, context_dim = dim,
-- dropout = 0, generator =}): a pre-norm block,
--   x = x + attn(ln1(x))                       (self-attention, optional mask)
--   x = x + cross_attn(ln_cross(x), context)   (when cross = true)
--   x = x + mlp(ln2(x))                        (Linear, GELU, Linear)
-- forward(x, {context =, mask =, rows =}); x (B, L, dim), context (B, S, context_dim).
--   rows = {first, n}: compute only output rows first .. first+n-1, (B, n, dim). Every row
--   still supplies keys and values; the other rows' queries, residuals and MLP are skipped.
--   Equal to forward(x):narrow(2, first, n), for a caller that reads only those rows (the
--   PI-VQ encoder's last block, whose patch-token outputs are discarded: 20% less work there).
local check = require "pivq.nn.check"
local Module = require "pivq.nn.Module"
local LayerNorm = require "pivq.nn.LayerNorm"
local MHA = require "pivq.nn.MultiheadAttention"
local MLP = require "pivq.nn.MLP"
local tensor = require "pivq.tensor"

local TransformerBlock = Module:extend("TransformerBlock")

function TransformerBlock:__init(dim, heads, opts)
  opts = check.options("TransformerBlock", opts)
  check.size("TransformerBlock", "dim", dim)
  check.size("TransformerBlock", "heads", heads)
  check.size("TransformerBlock", "context_dim", opts.context_dim or dim)
  check.size("TransformerBlock", "the MLP width", math.floor(dim * check.number("TransformerBlock", "mlp_ratio",
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

function TransformerBlock:forward(x, opts)
  opts = opts or {}
  local h = self.ln1(x)
  if opts.rows then
    local first, n = row_range(x, opts.rows)
    local mask = opts.mask
    if mask and mask:dim() >= 2 and mask:size(mask:dim() - 1) == x:size(2) then
      mask = mask:narrow(mask:dim() - 1, first, n) -- the kept queries' rows of the scores
    end
    -- keys and values from every row, queries from the kept ones (the cross-attention path)
    x = x:narrow(2, first, n) + self:call_child("attn", h:narrow(2, first, n), h, { mask = mask })
  else
    x = x + self:call_child("attn", h, { mask = opts.mask })
  end
  if self.cross then
    if not opts.context then error("TransformerBlock: cross-attention needs opts.context", 2) end
    x = x + self:call_child("cross_attn", self.ln_cross(x), opts.context, { mask = opts.context_mask })
  end
  return x + self:call_child("mlp", self.ln2(x))
end

function TransformerBlock:extra_repr()
  return string.format("%d, heads %d%s", self.dim, self.heads, self.cross and ", cross" or "")
end

return TransformerBlock
