-- pivq.nn.TransformerBlock(dim, heads, {mlp_ratio = 4, cross = false, context_dim = dim,
-- dropout = 0, generator =}): a pre-norm block,
--   x = x + attn(ln1(x))                       (self-attention, optional mask)
--   x = x + cross_attn(ln_cross(x), context)   (when cross = true)
--   x = x + mlp(ln2(x))                        (Linear, GELU, Linear)
-- forward(x, {context =, mask =}); x (B, L, dim), context (B, S, context_dim).
local check = require "pivq.nn.check"
local Module = require "pivq.nn.Module"
local LayerNorm = require "pivq.nn.LayerNorm"
local MHA = require "pivq.nn.MultiheadAttention"
local MLP = require "pivq.nn.MLP"

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

function TransformerBlock:forward(x, opts)
  opts = opts or {}
  x = x + self:call_child("attn", self.ln1(x), { mask = opts.mask })
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
