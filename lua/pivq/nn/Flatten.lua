-- pivq.nn.Flatten(): (N, ...) -> (N, product of the rest).
local Module = require "pivq.nn.Module"

local Flatten = Module:extend("Flatten")

function Flatten.forward(_, x) return x:reshape(x:size(1), -1) end

return Flatten
