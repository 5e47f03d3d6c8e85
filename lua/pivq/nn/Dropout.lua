-- pivq.nn.Dropout(p = 0.5, {generator =}): active in training mode, the identity in eval mode.
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local Dropout = Module:extend("Dropout")

function Dropout:__init(p, opts)
  opts = argcheck.module_options("Dropout", opts, {})
  self.p = argcheck.finite("Dropout", "p", p, 0.5, 0)
  if self.p > 1 then error("Dropout: p must be in [0, 1], got " .. self.p, 3) end
  self.generator = opts.generator
end

function Dropout:forward(x)
  if not self.training or self.p == 0 then return x end
  return F.dropout(x, self.p, true, { generator = self.generator })
end

function Dropout:extra_repr() return "p " .. self.p end

return Dropout
