-- Neural-network ops of pivq.F: forward against compositions of core ops (the naive
-- references), backward by finite differences.
local pivq = require "pivq"
local gradcheck = require "helpers.gradcheck"
local F = pivq.F

local gen = pivq.Generator(11)
local function randn(...) return pivq.randn({ ... }, { generator = gen }) end
local function leaf(t) return t:detach():clone():requires_grad(true) end
local function check(f, inputs, opts)
  local ok, msg = gradcheck(f, inputs, opts)
  assert(ok, msg)
end
local function close(a, b, tol)
  local d = (a - b):abs():max()
  assert(d <= (tol or 1e-5), string.format("max difference %g", d))
end

describe("pivq.F forward against references", function()
  it("linear", function()
    local x, w, b = randn(5, 3), randn(4, 3), randn(4)
    close(F.linear(x, w, b), x:matmul(w:t()) + b)
    local x3 = randn(2, 5, 3)
    close(F.linear(x3, w), x3:matmul(w:t()))
  end)

  it("activations", function()
    local x = randn(50)
    close(F.relu(x), x:relu())
    close(F.silu(x), x * x:sigmoid())
    close(F.leaky_relu(x, 0.2), pivq.where(x:gt(0), x, x * 0.2))
    -- gelu against its tanh approximation (they agree to ~1e-3) and known values
    close(F.gelu(x), F.gelu(x, { approximate = "tanh" }), 2e-3)
    close(F.gelu(pivq.tensor({ 1.0 })), pivq.tensor({ 0.8413447 }), 1e-6)
    close(F.elu(x), pivq.where(x:gt(0), x, x:exp() - 1))
  end)

  it("softmax and log_softmax along any dim", function()
    local x = randn(3, 4, 5)
    for _, d in ipairs({ 1, 2, 3, -1 }) do
      local e = (x - x:max(d, true)):exp()
      close(F.softmax(x, d), e / e:sum(d, true))
      close(F.log_softmax(x, d), (e / e:sum(d, true)):log())
    end
    local big = pivq.tensor({ { 1000, 0 } })
    close(F.log_softmax(big), pivq.tensor({ { 0, -1000 } }))
  end)

  it("embedding (1-based) and its errors", function()
    local w = randn(6, 3)
    local y = F.embedding(pivq.tensor({ { 1, 6 }, { 2, 2 } }, "int64"), w)
    assert.are.same({ 2, 2, 3 }, y:size())
    close(y[1][2], w[6])
    local ok, err = pcall(F.embedding, { 7 }, w)
    assert.is_false(ok)
    assert.matches("out of range", err, 1, true)
  end)

  it("dropout: seeded, scaled, identity in eval", function()
    local x = pivq.ones(1000)
    local y1 = F.dropout(x, 0.3, true, { generator = pivq.Generator(5) })
    local y2 = F.dropout(x, 0.3, true, { generator = pivq.Generator(5) })
    close(y1, y2, 0)
    local kept = y1:gt(0):float():sum():item()
    assert.is_true(kept > 620 and kept < 780)
    close(y1:max() * pivq.ones(1), pivq.tensor({ 1 / 0.7 }), 1e-6)
    close(F.dropout(x, 0.3, false), x, 0)
  end)

  it("layer_norm and group_norm", function()
    local x = randn(4, 6)
    local w, b = randn(6), randn(6)
    local mu, var = x:mean(2, true), x:var(2, { unbiased = false, keepdim = true })
    close(F.layer_norm(x, 6, w, b), (x - mu) / (var + 1e-5):sqrt() * w + b, 1e-5)
    local x4 = randn(2, 6, 3, 3)
    local g = x4:view(2, 3, 18)
    local gm, gv = g:mean(3, true), g:var(3, { unbiased = false, keepdim = true })
    local ref = ((g - gm) / (gv + 1e-5):sqrt()):view(2, 6, 3, 3)
    local wc, bc = randn(6), randn(6)
    close(F.group_norm(x4, 3, wc, bc), ref * wc:view(6, 1, 1) + bc:view(6, 1, 1), 1e-5)
  end)

  it("losses", function()
    local x, t = randn(4, 3), randn(4, 3)
    close(F.mse_loss(x, t), ((x - t) ^ 2):mean())
    close(F.l1_loss(x, t, { reduction = "sum" }), (x - t):abs():sum())
    local p = pivq.rand({ 4, 3 }, { generator = gen })
    local s = x:sigmoid()
    close(F.binary_cross_entropy_with_logits(x, p, { reduction = "none" }),
      -(p * s:log() + (1 - p) * (1 - s):log()), 1e-5)
    local y = randn(4, 3):sign()
    close(F.hinge_loss(x, y), (1 - y * x):clamp(0):mean())
    local logits = randn(5, 4)
    local labels = pivq.tensor({ 1, 4, 2, 2, 3 }, "int64")
    local lp = F.log_softmax(logits, 2)
    local ref = -lp:gather(2, labels:view(5, 1)):mean()
    close(F.cross_entropy(logits, labels), ref)
    -- ignore_index drops an element from the sum and the count
    local masked = pivq.tensor({ 1, 4, -100, 2, 3 }, "int64")
    local keep = pivq.tensor({ 1, 2, 4, 5 }, "int64")
    local ref2 = -lp:index_select(1, keep):gather(2, labels:index_select(1, keep):view(4, 1)):mean()
    close(F.cross_entropy(logits, masked), ref2)
    -- spatial: logits (N, C, H, W), targets (N, H, W)
    local l4 = randn(2, 3, 2, 2)
    local t4 = pivq.tensor({ { { 1, 2 }, { 3, 1 } }, { { 2, 2 }, { 3, 3 } } }, "int64")
    local flat = l4:permute(1, 3, 4, 2):reshape(8, 3)
    close(F.cross_entropy(l4, t4), F.cross_entropy(flat, t4:reshape(8)))
  end)
end)

describe("pivq.F gradients", function()
  it("linear", function()
    check(F.linear, { leaf(randn(5, 3)), leaf(randn(4, 3)), leaf(randn(4)) })
    check(function(x, w) return F.linear(x, w) end, { leaf(randn(2, 5, 3)), leaf(randn(4, 3)) })
  end)

  it("activations", function()
    local x = leaf(randn(4, 5))
    local gelu_tanh = function(t) return F.gelu(t, { approximate = "tanh" }) end
    for _, f in ipairs({ F.gelu, F.silu, F.elu, gelu_tanh }) do
      check(f, { x })
    end
    local s = randn(4, 5)
    local away = leaf(s + s:sign() * 0.1)
    check(F.relu, { away })
    check(function(t) return F.leaky_relu(t, 0.1) end, { away })
  end)

  it("softmax and log_softmax", function()
    local x = leaf(randn(3, 4, 5))
    for _, d in ipairs({ 1, 2, 3 }) do
      check(function(t) return F.softmax(t, d) end, { x })
      check(function(t) return F.log_softmax(t, d) end, { x })
    end
  end)

  it("embedding", function()
    local idx = pivq.tensor({ { 1, 3 }, { 3, 3 } }, "int64")
    check(function(w) return F.embedding(idx, w) end, { leaf(randn(4, 3)) })
  end)

  it("dropout", function()
    check(function(t) return F.dropout(t, 0.4, true, { generator = pivq.Generator(3) }) end,
      { leaf(randn(6, 5)) })
  end)

  it("layer_norm and group_norm", function()
    check(function(x, w, b) return F.layer_norm(x, 6, w, b) end,
      { leaf(randn(4, 6)), leaf(randn(6)), leaf(randn(6)) }, { atol = 2e-2 })
    check(function(x) return F.layer_norm(x, { 2, 3 }) end, { leaf(randn(4, 2, 3)) },
      { atol = 2e-2 })
    check(function(x, w, b) return F.group_norm(x, 2, w, b) end,
      { leaf(randn(2, 4, 3, 2)), leaf(randn(4)), leaf(randn(4)) }, { atol = 2e-2 })
  end)

  it("losses", function()
    local x, t = leaf(randn(4, 3)), leaf(randn(4, 3))
    check(F.mse_loss, { x, t })
    check(function(a, b) return F.mse_loss(a, b, { reduction = "none" }) end, { x, t })
    local s = randn(4, 3)
    check(F.l1_loss, { leaf(s + s:sign() * 0.1), leaf(pivq.zeros(4, 3)) })
    local p = leaf(pivq.rand({ 4, 3 }, { generator = gen }))
    check(F.binary_cross_entropy_with_logits, { x, p })
    local y = randn(4, 3):sign()
    -- y * x = 1 +- 0.3: away from the kink at the margin
    local x_h = y * (1 + randn(4, 3):sign() * 0.3)
    check(function(a) return F.hinge_loss(a, y) end, { leaf(x_h) })
    local labels = pivq.tensor({ 1, 4, 2, 2, 3 }, "int64")
    check(function(l) return F.cross_entropy(l, labels) end, { leaf(randn(5, 4)) })
    check(function(l) return F.cross_entropy(l, labels, { reduction = "none" }) end,
      { leaf(randn(5, 4)) })
    local t4 = pivq.tensor({ { 1, 2 }, { 3, 1 } }, "int64")
    check(function(l) return F.cross_entropy(l, t4, { reduction = "sum" }) end,
      { leaf(randn(2, 3, 2)) })
  end)
end)
