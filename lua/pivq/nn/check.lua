-- Argument checks for the module constructors: an error names the class and the argument, and
-- points at the user's line (tensor.fail skips the package's own frames).
local tensor = require "pivq.core.tensor"
local random = require "pivq.core.random"

local fail = tensor.fail

local M = {}

-- Options table (nil gives {}); its generator, when given, must be a pivq.Generator.
function M.options(cls, opts)
  opts = tensor.options(cls, opts)
  random.generator_of(cls, opts)
  return opts
end

-- A layer size: an integer in 1..2^31 (a size beyond is a typo, not a layer).
function M.size(cls, name, v)
  if type(v) ~= "number" or v % 1 ~= 0 or v < 1 or v > 2 ^ 31 then
    fail(string.format("%s: %s must be an integer in 1..2^31, got %s", cls, name, tostring(v)))
  end
  return v
end

-- A size or a pair of sizes {h, w}; returns the pair.
function M.pair(cls, name, v)
  local p = type(v) == "table" and v or { v, v }
  return { M.size(cls, name, p[1]), M.size(cls, name, p[2]) }
end

-- A number (default when nil), finite and at least `min` when given.
function M.number(cls, name, v, default, min)
  v = tensor.check_number(cls, name, v, default)
  if not (v > -math.huge and v < math.huge) or (min and v < min) then
    fail(string.format("%s: %s must be a finite number%s, got %s", cls, name, min and (" >= " .. min) or "",
      tostring(v)))
  end
  return v
end

-- A weight of these sizes must fit in a tensor (the check names the class, not pivq.empty).
function M.weight(cls, sizes)
  local n = 1
  for _, s in ipairs(sizes) do n = n * s end
  if n > 2 ^ 36 then
    fail(string.format("%s: a weight of %s elements is too large", cls, table.concat(sizes, "x")))
  end
  return sizes
end

return M
