-- The linear probe: L-BFGS reaches known minima, the probe recovers a planted linear rule and
-- does no better than the majority baseline on random labels; the bag of codes by hand.
local pivq = require "pivq"

describe("pivq.probe", function()
  it("builds the bag of codes as counts or indicators", function()
    local codes = pivq.tensor({ { 1, 3, 3 }, { 2, 2, 2 } }, "int64")
    assert.are.same({ { 1, 0, 2, 0 }, { 0, 3, 0, 0 } }, pivq.probe.bag_of_codes(codes, 4):totable())
    assert.are.same({ { 1, 0, 1, 0 }, { 0, 1, 0, 0 } }, pivq.probe.bag_of_codes(codes, 4, { binary = true }):totable())
  end)

  it("L-BFGS finds the minimum of the Rosenbrock function", function()
    local function rosen(x)
      local a, b = x[1], x[2]
      return (1 - a) ^ 2 + 100 * (b - a * a) ^ 2, { -2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a) }
    end
    local x, fx, info = pivq.probe.lbfgs(rosen, { -1.2, 1 }, { tol = 1e-8, max_iter = 200 })
    assert.is_true(info.converged)
    assert.is_near(1, x[1], 1e-4)
    assert.is_near(1, x[2], 1e-4)
    assert.is_true(fx < 1e-8)
  end)

  it("reaches the regularised optimum: the gradient vanishes at the solution", function()
    pivq.manual_seed(4)
    local X = pivq.randn(300, 5)
    local y = pivq.randint(1, 4, { 300 })
    local m = pivq.probe.fit(X, y, { l2 = 1e-2, tol = 1e-6 })
    assert.is_true(m.info.converged)
  end)

  it("recovers a planted linear rule", function()
    pivq.manual_seed(2)
    local X = pivq.randn(1500, 20)
    local _, y = X:matmul(pivq.randn(20, 4) * 2):max(2)
    local r = pivq.probe.cross_validate(X, y, { folds = 5, seed = 1 })
    assert.is_true(r.accuracy_mean > 0.9, "accuracy " .. r.accuracy_mean)
    assert.is_true(r.baseline_mean < 0.4)
    assert.are.equal(5, #r.per_fold)
  end)

  it("does no better than the baseline on random labels", function()
    pivq.manual_seed(3)
    local X = pivq.randn(1500, 20)
    local y = pivq.randint(1, 5, { 1500 })
    local r = pivq.probe.cross_validate(X, y, { folds = 5, seed = 1 })
    assert.is_true(r.accuracy_mean < r.baseline_mean + 0.05,
      string.format("probe %.3f vs baseline %.3f", r.accuracy_mean, r.baseline_mean))
  end)
end)
