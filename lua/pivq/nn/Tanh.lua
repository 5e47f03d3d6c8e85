-- pivq.nn.Tanh(): the tanh activation, elementwise.
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local Tanh = Module:extend("Tanh")

function Tanh.forward(_, x) return F.tanh(x) end

return Tanh
