-- pivq.nn.ReLU(): the relu activation, elementwise.
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local ReLU = Module:extend("ReLU")

function ReLU.forward(_, x) return F.relu(x) end

return ReLU
