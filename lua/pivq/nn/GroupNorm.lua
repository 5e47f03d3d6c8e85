-- pivq.nn.GroupNorm(num_groups, num_channels, {eps = 1e-5, affine = true}): weight 1, bias 0.
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"
local tensor = require "pivq.core.tensor"

local GroupNorm = Module:extend("GroupNorm")

function GroupNorm:__init(num_groups, num_channels, opts)
  opts = argcheck.module_options("GroupNorm", opts, { "eps", "affine" })
  argcheck.size("GroupNorm", "num_groups", num_groups)
  argcheck.size("GroupNorm", "num_channels", num_channels)
  if num_channels % num_groups ~= 0 then
    error(string.format("GroupNorm: %d channels are not divisible by %d groups", num_channels,
      num_groups), 3)
  end
  self.num_groups, self.num_channels, self.eps = num_groups, num_channels,
    argcheck.finite("GroupNorm", "eps", opts.eps, 1e-5, 0)
  if opts.affine ~= false then
    self:register_parameter("weight", tensor.ones(num_channels))
    self:register_parameter("bias", tensor.zeros(num_channels))
  end
end

function GroupNorm:forward(x) return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps) end

function GroupNorm:extra_repr()
  return string.format("%d groups, %d channels", self.num_groups, self.num_channels)
end

return GroupNorm
