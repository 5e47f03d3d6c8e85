-- pivq.nn.Dropout(p = 0.5, {generator =}): active in training mode, the identity in eval mode.
local Module = require "pivq.nn.Module"
local F = require "pivq.F"

local Dropout = Module:extend("Dropout")

function Dropout:__init(p, opts)
  self.p = p or 0.5
  self.generator = opts and opts.generator
end

function Dropout:forward(x)
  if not self.training or self.p == 0 then return x end
  return F.dropout(x, self.p, true, { generator = self.generator })
end

function Dropout:extra_repr() return "p " .. self.p end

return Dropout
