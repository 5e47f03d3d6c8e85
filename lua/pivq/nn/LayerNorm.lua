-- pivq.nn.LayerNorm(normalized_shape, {eps = 1e-5, elementwise_affine = true}): weight 1, bias 0.
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"
local tensor = require "pivq.core.tensor"

local LayerNorm = Module:extend("LayerNorm")

function LayerNorm:__init(normalized_shape, opts)
  opts = argcheck.module_options("LayerNorm", opts, { "eps", "elementwise_affine" })
  self.normalized_shape = type(normalized_shape) == "table" and normalized_shape or { normalized_shape }
  if #self.normalized_shape == 0 then argcheck.size("LayerNorm", "normalized_shape", nil) end
  for i, s in ipairs(self.normalized_shape) do argcheck.size("LayerNorm", "normalized_shape[" .. i .. "]", s) end
  argcheck.weight("LayerNorm", self.normalized_shape)
  self.eps = argcheck.finite("LayerNorm", "eps", opts.eps, 1e-5, 0)
  if opts.elementwise_affine ~= false then
    self:register_parameter("weight", tensor.ones(self.normalized_shape))
    self:register_parameter("bias", tensor.zeros(self.normalized_shape))
  end
end

function LayerNorm:forward(x)
  return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
end

function LayerNorm:extra_repr() return table.concat(self.normalized_shape, "x") .. ", eps " .. self.eps end

return LayerNorm
