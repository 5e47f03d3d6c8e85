-- pivq.nn.MaxPool2d(kernel, {stride = kernel, padding = 0}).
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local MaxPool2d = Module:extend("MaxPool2d")

function MaxPool2d:__init(kernel, opts)
  self.kernel, self.opts = argcheck.pair("MaxPool2d", "kernel", kernel), argcheck.module_options("MaxPool2d", opts,
    { "stride", "padding" })
end

function MaxPool2d:forward(x) return F.max_pool2d(x, self.kernel, self.opts) end

return MaxPool2d
