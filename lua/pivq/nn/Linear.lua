-- pivq.nn.Linear(in, out, {bias = true, generator =}): y = x W^T + b, W (out x in).
-- Initialisation as PyTorch: W and b ~ U(-1/sqrt(in), 1/sqrt(in)).
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"
local init = require "pivq.nn.init_weights"

local Linear = Module:extend("Linear")

function Linear:__init(in_features, out_features, opts)
  opts = argcheck.module_options("Linear", opts, { "bias" })
  argcheck.size("Linear", "in_features", in_features)
  argcheck.size("Linear", "out_features", out_features)
  argcheck.weight("Linear", { out_features, in_features })
  self.in_features, self.out_features = in_features, out_features
  self:register_parameter("weight",
    init.kaiming_default({ out_features, in_features }, in_features, opts.generator))
  if opts.bias ~= false then
    self:register_parameter("bias", init.kaiming_default({ out_features }, in_features, opts.generator))
  end
end

function Linear:forward(x) return F.linear(x, self.weight, self.bias) end

function Linear:extra_repr()
  return string.format("%d -> %d%s", self.in_features, self.out_features, self.bias and "" or ", no bias")
end

return Linear
