-- pivq.nn.Upsample({size = or scale_factor =, mode = "nearest" | "bilinear", align_corners =}).
local check = require "pivq.nn.check"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local Upsample = Module:extend("Upsample")

function Upsample:__init(opts) self.opts = check.options("Upsample", opts) end

function Upsample:forward(x) return F.interpolate(x, self.opts) end

function Upsample:extra_repr() return self.opts.mode or "nearest" end

return Upsample
