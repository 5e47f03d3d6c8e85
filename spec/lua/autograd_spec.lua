-- The autograd engine and the gradients of the tensor core's ops.
local pivq = require "pivq"
local gradcheck = require "helpers.gradcheck"

local gen = pivq.Generator(7)
local function randn(...) return pivq.randn({ ... }, { generator = gen }) end
-- values in [lo, hi): keeps kinked ops (relu, abs, max) away from their kinks when lo > 0
local function rand_in(lo, hi, ...)
  return pivq.rand({ ... }, { generator = gen }) * (hi - lo) + lo
end
-- random signs times magnitudes in [0.2, 1.2): no element near 0
local function away_from_zero(...)
  local s = pivq.rand({ ... }, { generator = gen }):gt(0.5):float() * 2 - 1
  return s * rand_in(0.2, 1.2, ...)
end
-- a fresh leaf (a copy, so that marking it never marks the caller's tensor)
local function leaf(t) return t:detach():clone():requires_grad(true) end
-- distinct values 0.1 apart: max/min stay put under the finite-difference steps
local function distinct(...)
  local n = 1
  for _, s in ipairs({ ... }) do n = n * s end
  return (pivq.randperm(n, { generator = gen }):float() * 0.1 - n * 0.05):view(...)
end

local function check(f, inputs, opts)
  local ok, msg = gradcheck(f, inputs, opts)
  assert(ok, msg)
end

describe("autograd engine", function()
  it("computes the gradient of a small expression and accumulates across calls", function()
    local x = pivq.tensor({ 1, 2, 3 }):requires_grad(true)
    local y = (x * x):sum()
    y:backward()
    assert.are.same({ 2, 4, 6 }, x:grad():totable())
    ;(x * 3):sum():backward()
    assert.are.same({ 5, 7, 9 }, x:grad():totable())
    x:zero_grad()
    assert.is_nil(x:grad())
  end)

  it("records only when an input requires grad and grad mode is on", function()
    local x = pivq.tensor({ 1, 2 })
    assert.is_false((x * 2):requires_grad())
    local w = pivq.tensor({ 1, 2 }):requires_grad(true)
    assert.is_true((x * w):requires_grad())
    assert.are.equal("binary", (x * w):grad_fn())
    local r = pivq.no_grad(function() return x * w end)
    assert.is_false(r:requires_grad())
    assert.is_true(pivq.is_grad_enabled())
    assert.is_nil(w:grad_fn())
    assert.is_true(w:is_leaf())
  end)

  it("restores grad mode when the no_grad body raises", function()
    local ok = pcall(pivq.no_grad, function() error("boom") end)
    assert.is_false(ok)
    assert.is_true(pivq.is_grad_enabled())
  end)

  it("frees saved tensors after backward unless retain_graph", function()
    local x = pivq.tensor({ 1, 2 }):requires_grad(true)
    local y = (x:exp()):sum()
    y:backward({ retain_graph = true })
    y:backward()
    local e = { math.exp(1), math.exp(2) }
    local g = x:grad():totable()
    assert.is_near(2 * e[1], g[1], 1e-4)
    assert.is_near(2 * e[2], g[2], 1e-4)
    local ok, err = pcall(function() y:backward() end)
    assert.is_false(ok)
    assert.matches("second time", err, 1, true)
  end)

  it("reports backward on tensors that do not require grad and non-scalar roots", function()
    local ok, err = pcall(function() pivq.tensor({ 1 }):backward() end)
    assert.is_false(ok)
    assert.matches("does not require grad", err, 1, true)
    local x = pivq.tensor({ 1, 2 }):requires_grad(true)
    ok, err = pcall(function() (x * 2):backward() end)
    assert.is_false(ok)
    assert.matches("single element", err, 1, true)
    ;(x * 2):backward(pivq.tensor({ 1, 1 }))
    assert.are.same({ 2, 2 }, x:grad():totable())
  end)

  it("refuses in-place updates of graph tensors and leaves that require grad", function()
    local x = pivq.tensor({ 1, 2 }):requires_grad(true)
    local ok, err = pcall(function() x:add_(1) end)
    assert.is_false(ok)
    assert.matches("leaf that requires grad", err, 1, true)
    pivq.no_grad(function() x:add_(1) end)
    assert.are.same({ 2, 3 }, x:totable())
  end)

  it("detach cuts the graph but shares data", function()
    local x = pivq.tensor({ 1, 2 }):requires_grad(true)
    local d = (x * 2):detach()
    assert.is_false(d:requires_grad())
    assert.are.same({ 2, 4 }, d:totable())
  end)

  it("handles a diamond graph (a node used twice)", function()
    local x = pivq.tensor({ 0.5, -1 }):requires_grad(true)
    local h = x:tanh()
    local y = (h * h + h):sum()
    y:backward()
    local g = x:grad():totable()
    for i, v in ipairs({ 0.5, -1 }) do
      local t = math.tanh(v)
      assert.is_near((2 * t + 1) * (1 - t * t), g[i], 1e-5)
    end
  end)

  it("adds narrows' gradients into slices of their input's, in either order", function()
    -- h used whole and through two overlapping narrows; d/dh of
    --   sum(h * a) + sum(h[2..3] * b) + sum(h[3..5] * c)
    -- is a + b padded + c padded, whichever contribution the engine meets first
    local a, b, c = { 1, 2, 3, 4, 5 }, { 10, 20 }, { 100, 200, 300 }
    local expect = { 1, 12, 123, 204, 305 }
    for _, order in ipairs({ "whole first", "narrows first" }) do
      for _, through_leaf in ipairs({ false, true }) do
        local x = pivq.tensor({ 0.1, 0.2, 0.3, 0.4, 0.5 }):requires_grad(true)
        local h = through_leaf and x or x * 1 -- a leaf, or a node whose gradient is a buffer
        local whole = (h * pivq.tensor(a)):sum()
        local parts = (h:narrow(1, 2, 2) * pivq.tensor(b)):sum() + (h:narrow(1, 3, 3) * pivq.tensor(c)):sum()
        local y = order == "whole first" and whole + parts or parts + whole
        y:backward()
        assert.are.same(expect, x:grad():totable(), order)
        -- a second backward accumulates into the leaf's gradient, slices included
        local y2 = (x:narrow(1, 4, 2) * 1):sum()
        y2:backward()
        local t = x:grad():totable()
        assert.are.same({ 1, 12, 123, 205, 306 }, t)
      end
    end
  end)

  it("frees the whole graph when the results go (no leaked nodes)", function()
    collectgarbage("collect")
    local before = pivq.graph_node_count()
    do
      local x = randn(4, 4):requires_grad(true)
      local y = x
      for _ = 1, 50 do y = (y * 0.5):tanh() + x end
      y:sum():backward()
    end
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(before, pivq.graph_node_count())
  end)

  it("survives a long chain (iterative release)", function()
    local x = pivq.tensor({ 1 }):requires_grad(true)
    local y = x
    for _ = 1, 20000 do y = y + 0 end
    y:sum():backward()
    assert.are.same({ 1 }, x:grad():totable())
  end)
end)

describe("gradients of the core ops", function()
  it("unary ops", function()
    for _, name in ipairs({ "neg", "exp", "sin", "cos", "tanh", "sigmoid" }) do
      check(function(x) return x[name](x) end, { leaf(randn(3, 4)) })
    end
    for _, name in ipairs({ "abs", "relu" }) do
      check(function(x) return x[name](x) end, { leaf(away_from_zero(3, 4)) })
    end
    for _, name in ipairs({ "log", "sqrt", "rsqrt" }) do
      check(function(x) return x[name](x) end, { leaf(rand_in(0.5, 2, 3, 4)) })
    end
  end)

  it("clamp", function()
    check(function(x) return x:clamp(-0.5, 0.5) end, { leaf(away_from_zero(5, 4)) })
  end)

  it("binary ops with broadcasting", function()
    for _, name in ipairs({ "add", "sub", "mul" }) do
      check(function(a, b) return a[name](a, b) end, { leaf(randn(3, 4)), leaf(randn(4)) })
      check(function(a, b) return a[name](a, b) end, { leaf(randn(3, 1)), leaf(randn(2, 1, 4)) })
    end
    check(function(a, b) return a / b end, { leaf(randn(3, 4)), leaf(rand_in(0.5, 2, 3, 1)) })
    check(function(a, b) return a:pow(b) end, { leaf(rand_in(0.5, 2, 3, 4)), leaf(randn(4)) })
    local a, b = randn(3, 4), randn(3, 4)
    b = b + (a - b):sign() * 0.3 -- keep a and b apart
    check(function(x, y) return x:maximum(y) end, { leaf(a), leaf(b) })
    check(function(x, y) return x:minimum(y) end, { leaf(a), leaf(b) })
  end)

  it("binary ops with a scalar", function()
    local x = leaf(rand_in(0.5, 2, 3, 4))
    check(function(t) return t + 2 end, { x })
    check(function(t) return 2 - t end, { x })
    check(function(t) return t * 3 end, { x })
    check(function(t) return t / 3 end, { x })
    check(function(t) return 3 / t end, { x })
    check(function(t) return t ^ 3 end, { x })
    check(function(t) return pivq.pow(2, t) end, { x })
    check(function(t) return t:maximum(1.0) end, { leaf(away_from_zero(3, 4) + 1) })
  end)

  it("where", function()
    local cond = randn(3, 4):gt(0)
    check(function(a, b) return pivq.where(cond, a, b) end, { leaf(randn(3, 4)), leaf(randn(4)) })
  end)

  it("reductions", function()
    local x = leaf(randn(3, 4, 5))
    check(function(t) return t:sum() end, { x })
    check(function(t) return t:sum(2) end, { x })
    check(function(t) return t:sum(-1, true) end, { x })
    check(function(t) return t:mean(1) end, { x })
    check(function(t) return t:mean() end, { x })
    check(function(t) return t:var(3) end, { x })
    check(function(t) return t:var(2, { unbiased = false, keepdim = true }) end, { x })
    check(function(t) return t:std(3) end, { x })
    check(function(t) return t:norm(2, 3) end, { x })
    check(function(t) return t:norm() end, { x })
    check(function(t) return t:norm(3, 1) end, { x })
    local xd = leaf(distinct(3, 4, 5))
    check(function(t) return (t:max(2)) end, { xd })
    check(function(t) return (t:min(3, true)) end, { xd })
    check(function(t) return t:prod(2) end, { leaf(rand_in(0.5, 1.5, 3, 4)) })
  end)

  it("matmul in all its shapes", function()
    check(function(a, b) return a:matmul(b) end, { leaf(randn(3, 4)), leaf(randn(4, 5)) })
    check(function(a, b) return a:matmul(b) end, { leaf(randn(2, 3, 4)), leaf(randn(4, 5)) })
    check(function(a, b) return a:matmul(b) end, { leaf(randn(2, 1, 3, 4)), leaf(randn(3, 4, 2)) })
    check(function(a, b) return a:matmul(b) end, { leaf(randn(4)), leaf(randn(4, 5)) })
    check(function(a, b) return a:matmul(b) end, { leaf(randn(2, 3, 4)), leaf(randn(4)) })
    check(function(a, b) return a:matmul(b) end, { leaf(randn(4)), leaf(randn(4)) })
    check(function(a, b) return a:matmul(b) end, { leaf(randn(4)), leaf(randn(2, 4, 5)) })
    check(function(a, b) return a:matmul(b) end, { leaf(randn(3, 4)), leaf(randn(2, 4, 5)) })
    check(function(a, b) return a:t():matmul(b) end, { leaf(randn(4, 3)), leaf(randn(4, 2)) })
  end)

  it("views and reshapes", function()
    local x = leaf(randn(3, 4, 2))
    check(function(t) return t:narrow(2, 2, 2) end, { x })
    check(function(t) return t:select(1, 2) end, { x })
    check(function(t) return t[3] end, { x })
    check(function(t) return t:transpose(1, 3) end, { x })
    check(function(t) return t:permute(3, 1, 2) end, { x })
    check(function(t) return t:view(12, 2) end, { x })
    check(function(t) return t:transpose(1, 2):reshape(-1) end, { x })
    check(function(t) return t:unsqueeze(2):squeeze() end, { x })
    check(function(t) return t:narrow(1, 1, 1):expand(5, 4, 2) end, { x })
    check(function(t) return t:transpose(1, 2):contiguous() end, { x })
    check(function(t) return t:clone() * 2 end, { x })
    check(function(t) return t:flatten() end, { x })
  end)

  it("indexing and joining", function()
    local x = leaf(randn(4, 3))
    check(function(t) return t:index_select(1, { 2, 2, 4 }) end, { x })
    check(function(t) return t:index_select(2, { 3, 1 }) end, { x })
    local idx = pivq.tensor({ { 1, 1 }, { 3, 2 }, { 2, 2 }, { 1, 3 } }, "int64")
    check(function(t) return t:gather(2, idx) end, { x })
    local mask = randn(4, 3):gt(0)
    check(function(t) return t:masked_fill(mask, 5) end, { x })
    local sidx = pivq.tensor({ { 1, 3 }, { 4, 1 } }, "int64") -- (2, 2) rows into x's 4 rows
    check(function(t, src) return t:scatter_add(1, sidx, src) end, { x, leaf(randn(2, 2)) })
    local y = leaf(randn(2, 3))
    check(function(a, b) return pivq.cat({ a, b, a }, 1) end, { x, y })
    check(function(a, b) return pivq.stack({ a, b }, 2) end, { y, leaf(randn(2, 3)) })
  end)
end)
