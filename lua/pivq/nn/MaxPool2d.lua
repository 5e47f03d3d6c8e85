-- pivq.nn.MaxPool2d(kernel, {stride = kernel, padding = 0}).
local Module = require "pivq.nn.Module"
local F = require "pivq.F"

local MaxPool2d = Module:extend("MaxPool2d")

function MaxPool2d:__init(kernel, opts) self.kernel, self.opts = kernel, opts or {} end

function MaxPool2d:forward(x) return F.max_pool2d(x, self.kernel, self.opts) end

return MaxPool2d
