-- pivq.nn.Flatten(): (N, ...) -> (N, product of the rest).
local Module = require "pivq.nn.Module"

local Flatten = Module:extend("Flatten")

function Flatten.forward(_, x)
  if not require("pivq.core.tensor").is_tensor(x) or x:dim() == 0 then
    error("Flatten: input must be a tensor of at least 1 dim, got " .. type(x), 2)
  end
  local rest = 1 -- not -1: a reshape cannot infer it when there are no elements
  for d = 2, x:dim() do rest = rest * x:size(d) end
  return x:reshape(x:size(1), rest)
end

return Flatten
