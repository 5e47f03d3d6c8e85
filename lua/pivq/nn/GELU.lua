-- pivq.nn.GELU({approximate = "none" | "tanh"}): exact x Phi(x) by default, as PyTorch.
local Module = require "pivq.nn.Module"
local F = require "pivq.F"

local GELU = Module:extend("GELU")

function GELU:__init(opts) self.approximate = opts and opts.approximate or "none" end

function GELU:forward(x) return F.gelu(x, { approximate = self.approximate }) end

function GELU:extra_repr() return self.approximate == "tanh" and "tanh" or "" end

return GELU
