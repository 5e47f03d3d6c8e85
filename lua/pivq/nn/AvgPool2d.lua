-- pivq.nn.AvgPool2d(kernel, {stride = kernel, padding = 0, count_include_pad = true}).
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local AvgPool2d = Module:extend("AvgPool2d")

function AvgPool2d:__init(kernel, opts)
  self.kernel, self.opts = argcheck.pair("AvgPool2d", "kernel", kernel), argcheck.module_options("AvgPool2d", opts,
    { "stride", "padding", "count_include_pad" })
end

function AvgPool2d:forward(x) return F.avg_pool2d(x, self.kernel, self.opts) end

return AvgPool2d
