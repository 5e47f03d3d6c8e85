-- pivq.nn.SiLU(): the silu activation, elementwise.
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local SiLU = Module:extend("SiLU")

function SiLU.forward(_, x) return F.silu(x) end

return SiLU
