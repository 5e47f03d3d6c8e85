-- pivq.nn.LeakyReLU(negative_slope = 0.01).
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local LeakyReLU = Module:extend("LeakyReLU")

function LeakyReLU:__init(slope) self.negative_slope = argcheck.finite("LeakyReLU", "slope", slope, 0.01) end

function LeakyReLU:forward(x) return F.leaky_relu(x, self.negative_slope) end

function LeakyReLU:extra_repr() return tostring(self.negative_slope) end

return LeakyReLU
