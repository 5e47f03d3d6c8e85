-- pivq.nn.Sigmoid(): the sigmoid activation, elementwise.
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local Sigmoid = Module:extend("Sigmoid")

function Sigmoid.forward(_, x) return F.sigmoid(x) end

return Sigmoid
