-- Finite-difference gradient check for specs.
--
--   gradcheck(f, inputs, opts) -> true or false, message
--
-- f(inputs...) returns a tensor. Every input that requires grad is checked: the analytic
-- gradient of L = sum(f(...) * W) (W fixed random weights, so every output element matters)
-- from backward() is compared with central differences (L(x + eps) - L(x - eps)) / 2 eps,
-- element by element: |numeric - analytic| <= atol + rtol * |numeric|.
-- float32 arithmetic bounds what is attainable: eps 1e-2 keeps rounding noise in L below the
-- truncation error for smooth ops; ops with kinks (relu, max, abs) need inputs away from them.
-- opts: eps, atol, rtol (defaults 1e-2, 1e-2, 1e-2), max_elements (check at most this many
-- elements of each input, spread evenly; default all).
local pivq = require "pivq"

local function gradcheck(f, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-2, opts.atol or 1e-2, opts.rtol or 1e-2
  local out = f(unpack(inputs))
  local gen = pivq.Generator and pivq.Generator(1234) or nil
  local w = pivq.randn(out:size(), gen and { generator = gen } or nil)
  for _, x in ipairs(inputs) do
    if pivq.is_tensor(x) and x:requires_grad() then x:zero_grad() end
  end
  local loss = (out * w):sum()
  loss:backward()
  local function L()
    return pivq.no_grad(function() return (f(unpack(inputs)) * w):sum():item() end)
  end
  for k, x in ipairs(inputs) do
    if pivq.is_tensor(x) and x:requires_grad() then
      assert(x:is_contiguous(), "gradcheck: inputs must be contiguous")
      local g = x:grad()
      if g == nil then return false, string.format("input %d: no gradient", k) end
      g = g:contiguous()
      local p, gp = x:data_ptr(), g:data_ptr()
      local n = x:numel()
      local step = math.max(1, math.floor(n / (opts.max_elements or n)))
      for i = 0, n - 1, step do
        local v = p[i]
        p[i] = v + eps
        local lp = L()
        p[i] = v - eps
        local lm = L()
        p[i] = v
        local num, ana = (lp - lm) / (2 * eps), gp[i]
        if math.abs(num - ana) > atol + rtol * math.abs(num) then
          return false, string.format("input %d element %d: numeric %.6g analytic %.6g", k,
            i + 1, num, ana)
        end
      end
    end
  end
  return true
end

return gradcheck
