-- pivq.nn.Upsample({size = or scale_factor =, mode = "nearest" | "bilinear", align_corners =}).
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local Upsample = Module:extend("Upsample")

function Upsample:__init(opts) self.opts = argcheck.module_options("Upsample", opts,
  { "size", "scale_factor", "mode", "align_corners" }) end

function Upsample:forward(x) return F.interpolate(x, self.opts) end

function Upsample:extra_repr() return self.opts.mode or "nearest" end

return Upsample
