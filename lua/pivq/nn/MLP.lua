-- pivq.nn.MLP(sizes, {activation = "gelu", dropout = 0, generator =}): Linear layers between
-- consecutive sizes ({in, hidden..., out}) with the activation (and dropout) between them,
-- none after the last.
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local Linear = require "pivq.nn.Linear"
local Dropout = require "pivq.nn.Dropout"
local F = require "pivq.nn.F"

local MLP = Module:extend("MLP")

local ACTIVATIONS = { gelu = F.gelu, relu = F.relu, silu = F.silu, tanh = F.tanh, sigmoid = F.sigmoid }

function MLP:__init(sizes, opts)
  opts = argcheck.module_options("MLP", opts, { "activation", "dropout" })
  if type(sizes) ~= "table" or #sizes < 2 then
    error("MLP: sizes must list at least an input and an output size", 3)
  end
  for i = 1, #sizes do argcheck.size("MLP", "sizes[" .. i .. "]", sizes[i]) end
  argcheck.finite("MLP", "dropout", opts.dropout, 0, 0)
  self.sizes = sizes
  self.activation = opts.activation or "gelu"
  self.act = type(self.activation) == "string" and ACTIVATIONS[self.activation]
  if not self.act then error("MLP: unknown activation " .. tostring(self.activation), 3) end
  for i = 1, #sizes - 1 do
    self:add_module("fc" .. i, Linear(sizes[i], sizes[i + 1], { generator = opts.generator }))
  end
  if (opts.dropout or 0) > 0 then self:add_module("drop", Dropout(opts.dropout)) end
end

function MLP:forward(x)
  local n = #self.sizes - 1
  for i = 1, n do
    x = self:call_child("fc" .. i, x)
    if i < n then
      x = self.act(x)
      if self.drop then x = self.drop(x) end
    end
  end
  return x
end

function MLP:extra_repr() return table.concat(self.sizes, " -> ") .. ", " .. self.activation end

return MLP
