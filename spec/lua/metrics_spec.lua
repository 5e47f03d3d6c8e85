-- Reconstruction metrics against direct computations: SSIM with the 11x11 Gaussian window
-- summed in two dimensions at once (no separable passes), PSNR and MSE by hand.
local pivq = require "pivq"

local function naive_ssim(x, y, R)
  local H, W = x:size(1), x:size(2)
  local g, gs = {}, 0
  for i = 1, 11 do
    local t = i - 6
    g[i] = math.exp(-t * t / (2 * 1.5 * 1.5))
    gs = gs + g[i]
  end
  local C1, C2 = (0.01 * R) ^ 2, (0.03 * R) ^ 2
  local acc, count = 0, 0
  for i = 1, H - 10 do
    for j = 1, W - 10 do
      local mx, my, sxx, syy, sxy = 0, 0, 0, 0, 0
      for a = 1, 11 do
        for b = 1, 11 do
          local w = g[a] * g[b] / (gs * gs)
          local u, v = x:get(i + a - 1, j + b - 1), y:get(i + a - 1, j + b - 1)
          mx, my = mx + w * u, my + w * v
          sxx, syy, sxy = sxx + w * u * u, syy + w * v * v, sxy + w * u * v
        end
      end
      local vx, vy, cxy = sxx - mx * mx, syy - my * my, sxy - mx * my
      acc = acc + ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
      count = count + 1
    end
  end
  return acc / count
end

describe("pivq.eval reconstruction metrics", function()
  it("computes SSIM like the direct two-dimensional window sum", function()
    pivq.manual_seed(1)
    local x = pivq.rand(2, 2, 13, 14)
    local y = (x + pivq.randn(2, 2, 13, 14) * 0.1):clamp(0, 1)
    local s = pivq.eval.ssim(x, y, { per_image = true })
    for n = 1, 2 do
      local want = (naive_ssim(x[n][1], y[n][1], 1) + naive_ssim(x[n][2], y[n][2], 1)) / 2
      assert.is_near(want, s[n], 1e-5)
    end
    assert.is_near(1, pivq.eval.ssim(x, x), 1e-6)
    assert.is_true(pivq.eval.ssim(x, 1 - x) < 0.5)
  end)

  it("computes PSNR per image and averages it", function()
    local x = pivq.zeros(2, 1, 2, 2)
    local y = pivq.zeros(2, 1, 2, 2)
    y[1]:fill(0.1) -- mse 0.01 -> 20 dB
    y[2]:fill(0.01) -- mse 1e-4 -> 40 dB
    assert.is_near(30, pivq.eval.psnr(x, y), 1e-4)
    assert.are.same({ 0.01, 0.0001 }, (function()
      local m = pivq.eval.mse(x, y)
      return { tonumber(string.format("%.6g", m[1])), tonumber(string.format("%.6g", m[2])) }
    end)())
  end)

  it("rejects mismatched or too small images", function()
    assert.has_error(function() pivq.eval.ssim(pivq.rand(1, 1, 8, 8), pivq.rand(1, 1, 8, 8)) end,
      "ssim: images must be at least 11x11, got 8x8")
    assert.has_error(function() pivq.eval.psnr(pivq.rand(1, 1, 8, 8), pivq.rand(1, 1, 8, 9)) end)
  end)
end)
