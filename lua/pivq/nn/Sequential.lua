-- pivq.nn.Sequential(m1, m2, ...) or Sequential{m1, m2, ...}: children named 1, 2, ...; an
-- error inside a child is reported as "Sequential.2 (Conv2d): <message>".
local Module = require "pivq.nn.Module"

local Sequential = Module:extend("Sequential")

function Sequential:__init(...)
  local list = select("#", ...) == 1 and getmetatable((...)) == nil and (...) or { ... }
  for _, m in ipairs(list) do self:add(m) end
end

function Sequential:add(m)
  self:add_module(tostring(#self._modules + 1), m)
  return self
end

function Sequential:size() return #self._modules end

function Sequential:forward(x)
  for _, name in ipairs(self._modules) do x = self:call_child(name, x) end
  return x
end

return Sequential
