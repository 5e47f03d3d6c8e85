-- pivq.optim: one step against the formulas, convergence (Rosenbrock, XOR), state save and
-- restore, clipping, schedules, EMA.
local pivq = require "pivq"
local nn, F, optim = pivq.nn, pivq.F, pivq.optim

local function close(a, b, tol)
  local d = (a - b):abs():max()
  assert(d <= (tol or 1e-6), string.format("max difference %g", d))
end

-- f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, minimum at (1, 1)
local function rosenbrock(p)
  local x, y = p:narrow(1, 1, 1), p:narrow(1, 2, 1)
  return ((1 - x) ^ 2 + (y - x * x) ^ 2 * 100):sum()
end

local function minimise(make_opt, steps)
  local p = pivq.tensor({ -1.5, 2.0 }):requires_grad(true)
  local opt = make_opt({ p })
  for _ = 1, steps do
    opt:zero_grad()
    rosenbrock(p):backward()
    opt:step()
  end
  return p
end

describe("optimizers", function()
  it("SGD with momentum, Nesterov and weight decay follows PyTorch's update", function()
    local p = pivq.tensor({ 1.0, -2.0 }):requires_grad(true)
    local opt = optim.SGD({ p }, { lr = 0.1, momentum = 0.9, weight_decay = 0.01, nesterov = true })
    local buf
    local expect = pivq.tensor({ 1.0, -2.0 })
    for _ = 1, 3 do
      opt:zero_grad()
      local loss = (p * p):sum()
      loss:backward()
      local g = p:grad() + expect * 0.01 -- grad 2p plus weight decay
      buf = buf and buf * 0.9 + g or g:clone()
      expect = expect - (g + buf * 0.9) * 0.1
      opt:step()
      close(p, expect, 1e-6)
    end
  end)

  it("Adam and AdamW follow their formulas", function()
    for _, kind in ipairs({ "Adam", "AdamW" }) do
      local p = pivq.tensor({ 0.5, -1.5 }):requires_grad(true)
      local opt = optim[kind]({ p }, { lr = 0.01, weight_decay = 0.1 })
      local ref = pivq.tensor({ 0.5, -1.5 })
      local m, v = pivq.zeros(2), pivq.zeros(2)
      for t = 1, 3 do
        opt:zero_grad()
        local loss = (p * p * p):sum()
        loss:backward()
        local g = ref * ref * 3
        if kind == "Adam" then g = g + ref * 0.1 else ref = ref * (1 - 0.01 * 0.1) end
        m = m * 0.9 + g * 0.1
        v = v * 0.999 + g * g * 0.001
        local mhat, vhat = m / (1 - 0.9 ^ t), v / (1 - 0.999 ^ t)
        ref = ref - mhat / (vhat:sqrt() + 1e-8) * 0.01
        opt:step()
        close(p, ref, 1e-6)
      end
    end
  end)

  it("Adam and SGD reach the Rosenbrock minimum within a set number of steps", function()
    local p = minimise(function(ps) return optim.Adam(ps, { lr = 0.02 }) end, 3000)
    close(p, pivq.tensor({ 1, 1 }), 1e-2)
    p = minimise(function(ps) return optim.SGD(ps, { lr = 1e-3, momentum = 0.9 }) end, 5000)
    close(p, pivq.tensor({ 1, 1 }), 1e-2)
  end)

  it("a small MLP learns XOR", function()
    pivq.manual_seed(3)
    local x = pivq.tensor({ { 0, 0 }, { 0, 1 }, { 1, 0 }, { 1, 1 } })
    local y = pivq.tensor({ { 0 }, { 1 }, { 1 }, { 0 } })
    local m = nn.MLP({ 2, 8, 1 }, { activation = "tanh" })
    local opt = optim.Adam(m:parameters(), { lr = 0.05 })
    for _ = 1, 500 do
      opt:zero_grad()
      F.binary_cross_entropy_with_logits(m(x), y):backward()
      opt:step()
    end
    local pred = pivq.no_grad(function() return m(x):sigmoid() end)
    close(pred:gt(0.5):float(), y, 0)
  end)

  it("saves and restores its state: a restored run continues identically", function()
    local function setup()
      pivq.manual_seed(9)
      local m = nn.Linear(3, 2)
      return m, optim.AdamW(m:parameters(), { lr = 0.1 })
    end
    local x = pivq.randn(4, 3, { generator = pivq.Generator(1) })
    local function train(m, opt, n)
      for _ = 1, n do
        opt:zero_grad()
        local loss = (m(x) ^ 2):mean()
        loss:backward()
        opt:step()
      end
    end
    local m1, o1 = setup()
    train(m1, o1, 5)
    local msd, osd = m1:state_dict(), o1:state_dict()
    local snapshot = {}
    for k, t in pairs(msd) do snapshot[k] = t:clone() end
    train(m1, o1, 3)
    local m2, o2 = setup()
    m2:load_state_dict(snapshot)
    o2:load_state_dict(osd)
    train(m2, o2, 3)
    close(m1.weight, m2.weight, 0)
    assert.are.equal(8, o2.step_count)
  end)

  it("state_dict copies its buffers unless asked to share them", function()
    local w = pivq.tensor({ 1.0, 2.0 }):requires_grad(true)
    local opt = optim.Adam({ w }, { lr = 0.1 })
    local function step()
      (w * w):sum():backward()
      opt:step()
      opt:zero_grad()
    end
    step()
    local copied, shared = opt:state_dict(), opt:state_dict { shared = true }
    local name = next(copied.buffers)
    local before = copied.buffers[name][1]:clone()
    step()
    close(copied.buffers[name][1], before, 0) -- a copy does not move with the optimizer
    close(shared.buffers[name][1], opt.buffers[name][1], 0) -- the shared one is the live buffer
    assert.is_true((shared.buffers[name][1] - before):abs():max() > 0)
  end)

  it("clips gradients by their global norm", function()
    local a = pivq.tensor({ 3.0 }):requires_grad(true)
    local b = pivq.tensor({ 4.0 }):requires_grad(true)
    ;(a * a / 2 + b * b / 2):sum():backward() -- grads 3 and 4: norm 5
    local total = optim.clip_grad_norm({ a, b }, 1.0)
    assert.is_near(5, total, 1e-6)
    assert.is_near(1, optim.grad_norm({ a, b }), 1e-5)
    assert.is_near(0.6, a:grad():item(), 1e-5)
  end)

  it("schedules set the learning rate", function()
    local opt = optim.SGD({ pivq.zeros(1):requires_grad(true) }, { lr = 1.0 })
    local warm = optim.schedules.linear_warmup(opt, 4)
    assert.is_near(0.25, opt.lr, 1e-12)
    warm:step()
    warm:step()
    assert.is_near(0.75, opt.lr, 1e-12)
    local cos = optim.schedules.cosine(opt, 10)
    assert.is_near(1.0, opt.lr, 1e-12)
    for _ = 1, 5 do cos:step() end
    assert.is_near(0.5, opt.lr, 1e-12)
    for _ = 1, 5 do cos:step() end
    assert.is_near(0.0, opt.lr, 1e-12)
    local st = optim.schedules.step(opt, 2, 0.5)
    for _ = 1, 4 do st:step() end
    assert.is_near(0.25, opt.lr, 1e-12)
  end)

  it("keeps an exponential moving average of weights", function()
    local p = pivq.tensor({ 0.0 }):requires_grad(true)
    local ema = optim.EMA({ p }, 0.9)
    pivq.no_grad(function() p:fill(1) end)
    ema:update()
    assert.is_near(0.1, ema.shadow[1]:item(), 1e-6)
    ema:copy_to()
    assert.is_near(0.1, p:item(), 1e-6)
  end)

  it("reports bad options", function()
    local ok, err = pcall(optim.SGD, {}, {})
    assert.is_false(ok)
    assert.matches("non-empty list", err, 1, true)
    local p = pivq.zeros(1):requires_grad(true)
    local opt = optim.SGD({ p }, { lr = -1 })
    p:set_grad(pivq.ones(1))
    ok, err = pcall(function() opt:step() end)
    assert.is_false(ok)
    assert.matches("sgd_step: need lr", err, 1, true)
  end)
end)
