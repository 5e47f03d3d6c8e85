-- pivq.nn modules: structure (parameters, state dicts, modes, printing, errors), PyTorch's
-- default initialisations, references for attention, and gradient checks of every module.
local pivq = require "pivq"
local gradcheck = require "helpers.gradcheck"
local nn, F = pivq.nn, pivq.F

local gen = pivq.Generator(41)
local function randn(...) return pivq.randn({ ... }, { generator = gen }) end
local function close(a, b, tol)
  local d = (a - b):abs():max()
  assert(d <= (tol or 1e-5), string.format("max difference %g", d))
end

-- gradient check of a module: its input (if it requires grad) and all its parameters
local function check_module(m, x, opts, ...)
  local extra = { ... }
  local inputs = { x }
  local params = m:parameters()
  for _, p in ipairs(params) do inputs[#inputs + 1] = p end
  local ok, msg = gradcheck(function(input) return m(input, unpack(extra)) end, inputs,
    opts or { atol = 2e-2, max_elements = 40 })
  assert(ok, msg)
end

describe("nn.Module", function()
  it("collects parameters in order with dotted names", function()
    local m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2, { bias = false }))
    local names = {}
    for _, np in ipairs(m:named_parameters()) do names[#names + 1] = np[1] end
    assert.are.same({ "1.weight", "1.bias", "3.weight" }, names)
    assert.are.equal(3 * 4 + 4 + 4 * 2, m:num_parameters())
    for _, p in ipairs(m:parameters()) do assert.is_true(p:requires_grad()) end
  end)

  it("round-trips state dicts and reports mismatches", function()
    local a, b = nn.Linear(3, 4), nn.Linear(3, 4)
    b:load_state_dict(a:state_dict())
    close(a.weight, b.weight, 0)
    local ok, err = pcall(function() nn.Linear(3, 5):load_state_dict(a:state_dict()) end)
    assert.is_false(ok)
    assert.matches("'weight' has shape 4x3, the module expects 5x3", err, 1, true)
    ok, err = pcall(function() a:load_state_dict({ weight = a.weight }) end)
    assert.is_false(ok)
    assert.matches("missing key 'bias'", err, 1, true)
  end)

  it("switches train/eval recursively and applies functions", function()
    local m = nn.Sequential(nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.2)))
    m:eval()
    assert.is_false(m["2"]["1"].training)
    local x = pivq.ones(10)
    close(m(x), x, 0)
    local count = 0
    m:apply(function() count = count + 1 end)
    assert.are.equal(4, count)
  end)

  it("zero_grad drops gradients", function()
    local m = nn.Linear(2, 2)
    m(pivq.ones(1, 2)):sum():backward()
    assert.is_not_nil(m.weight:grad())
    m:zero_grad()
    assert.is_nil(m.weight:grad())
  end)

  it("prints the module tree with shapes", function()
    local s = tostring(nn.Sequential(nn.Conv2d(1, 8, 3, { padding = 1 }), nn.ReLU()))
    assert.matches("(1): Conv2d(1 -> 8, kernel 3x3, stride 1, padding 1)  [weight 8x1x3x3, bias 8]",
      s, 1, true)
    assert.matches("(2): ReLU()", s, 1, true)
  end)

  it("containers say where an error happened", function()
    local m = nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2))
    local ok, err = pcall(m, pivq.ones(2, 3))
    assert.is_false(ok)
    assert.matches("Sequential.2 (Linear): ", err, 1, true)
    assert.matches("linear: input 2x4, weight 2x5", err, 1, true)
  end)
end)

describe("default initialisations (PyTorch's)", function()
  it("Linear and Conv2d use U(-1/sqrt(fan_in), 1/sqrt(fan_in))", function()
    local l = nn.Linear(100, 300)
    local bound = 1 / math.sqrt(100)
    assert.is_true(l.weight:abs():max() <= bound)
    assert.is_near(bound ^ 2 / 3, l.weight:var():item(), 0.1 * bound ^ 2 / 3)
    local c = nn.Conv2d(4, 64, 3)
    assert.is_true(c.weight:abs():max() <= 1 / 6)
    assert.is_true(c.bias:abs():max() <= 1 / 6)
    local t = nn.ConvTranspose2d(4, 16, 2) -- fan_in = 16 * 2 * 2
    assert.is_true(t.weight:abs():max() <= 1 / 8)
  end)

  it("norms start at the identity; embeddings are N(0, 1); attention biases are 0", function()
    local ln = nn.LayerNorm(6)
    close(ln.weight, pivq.ones(6), 0)
    close(ln.bias, pivq.zeros(6), 0)
    local e = nn.Embedding(1000, 10)
    assert.is_near(1, e.weight:std():item(), 0.05)
    local a = nn.MultiheadAttention(8, 2)
    close(a.in_proj_bias, pivq.zeros(24), 0)
    close(a.out_proj.bias, pivq.zeros(8), 0)
    assert.is_true(a.in_proj_weight:abs():max() <= math.sqrt(6 / 32))
  end)
end)

describe("MultiheadAttention", function()
  -- per-head attention written out op by op
  local function reference(m, q_in, kv_in, mask)
    local E, H = m.embed_dim, m.num_heads
    local Dh = E / H
    local W, b = m.in_proj_weight, m.in_proj_bias
    local function proj(x, i) return F.linear(x, W:narrow(1, i * E + 1, E), b:narrow(1, i * E + 1, E)) end
    local q, k, v = proj(q_in, 0), proj(kv_in, 1), proj(kv_in, 2)
    local heads = {}
    for h = 1, H do
      local s = (q:narrow(3, (h - 1) * Dh + 1, Dh)):matmul(k:narrow(3, (h - 1) * Dh + 1, Dh):transpose(2, 3))
      s = s / math.sqrt(Dh)
      if mask then s = s + mask end
      heads[h] = F.softmax(s, -1):matmul(v:narrow(3, (h - 1) * Dh + 1, Dh))
    end
    return m.out_proj(pivq.cat(heads, 3))
  end

  it("matches the per-head composition for self- and cross-attention", function()
    local m = nn.MultiheadAttention(8, 2, { generator = gen })
    pivq.no_grad(function() pivq.normal_(m.in_proj_bias, 0, 0.1, { generator = gen }) end)
    local x, ctx = randn(3, 5, 8), randn(3, 7, 8)
    close(m(x), reference(m, x, x), 1e-5)
    close(m(x, ctx), reference(m, x, ctx), 1e-5)
    local mask = randn(5, 7)
    close(m(x, ctx, ctx, { mask = mask }), reference(m, x, ctx, mask), 1e-5)
  end)
end)

describe("module gradients", function()
  local function input(...) return randn(...):requires_grad(true) end

  it("Linear, MLP, Sequential", function()
    check_module(nn.Linear(4, 3), input(2, 4))
    check_module(nn.MLP({ 4, 6, 3 }, { activation = "silu" }), input(2, 4))
    check_module(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2), nn.Sigmoid()), input(3, 4))
  end)

  it("Conv2d, ConvTranspose2d, pools, upsampling, GroupNorm", function()
    check_module(nn.Conv2d(2, 3, 3, { stride = 2, padding = 1 }), input(2, 2, 5, 5))
    check_module(nn.ConvTranspose2d(2, 3, 4, { stride = 2, padding = 1 }), input(1, 2, 3, 3))
    check_module(nn.Sequential(nn.Conv2d(2, 4, 3, { padding = 1 }), nn.GroupNorm(2, 4), nn.SiLU(),
      nn.AvgPool2d(2), nn.Upsample({ scale_factor = 2, mode = "bilinear" }), nn.Flatten()),
      input(2, 2, 4, 4))
  end)

  it("ReLU, MaxPool2d, Dropout (inputs away from kinks and ties)", function()
    local x = (pivq.randperm(2 * 2 * 4 * 4, { generator = gen }):float() * 0.1 - 1.55):view(2, 2, 4, 4)
    check_module(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)), x:clone():requires_grad(true))
    local d = nn.Dropout(0.3, { generator = pivq.Generator(5) })
    local ok, msg = gradcheck(function(t)
      d.generator = pivq.Generator(5) -- the same mask at every evaluation
      return d(t)
    end, { randn(4, 5):requires_grad(true) })
    assert(ok, msg)
  end)

  it("LayerNorm, Embedding, activations", function()
    check_module(nn.LayerNorm(5), input(3, 5))
    local idx = pivq.tensor({ { 1, 2 }, { 4, 1 } }, "int64")
    local e = nn.Embedding(4, 3)
    local ok, msg = gradcheck(function(w) return F.embedding(idx, w) end, { e.weight })
    assert(ok, msg)
    check_module(nn.GELU(), input(4, 3))
    check_module(nn.LeakyReLU(0.2), (randn(4, 3):sign() * (randn(4, 3):abs() + 0.1)):requires_grad(true))
  end)

  it("MultiheadAttention (self, cross with other dims, masked)", function()
    check_module(nn.MultiheadAttention(8, 2), input(2, 3, 8))
    local cross = nn.MultiheadAttention(8, 2, { kdim = 6, vdim = 6 })
    check_module(cross, input(2, 3, 8), nil, randn(2, 4, 6))
    check_module(nn.MultiheadAttention(8, 4), input(2, 3, 8), nil, randn(2, 5, 8), nil,
      { mask = randn(3, 5) })
  end)

  it("TransformerBlock (self and cross)", function()
    check_module(nn.TransformerBlock(8, 2), input(2, 3, 8))
    check_module(nn.TransformerBlock(8, 2, { cross = true, context_dim = 6 }), input(2, 3, 8), nil,
      { context = randn(2, 4, 6) })
    check_module(nn.TransformerBlock(8, 2), input(2, 5, 8), nil, { rows = { 3, 2 } })
  end)

  -- runs f twice on fresh gradients (fast path, then reference) and compares values and the
  -- gradients of every tensor in `leaves`
  local function same_values_and_grads(leaves, fast, ref, tol)
    local function run(f)
      for _, t in ipairs(leaves) do t:zero_grad() end
      local y = f()
      local w = pivq.Generator(5)
      ;(y * pivq.randn(y:size(), { generator = w })):sum():backward()
      local grads = {}
      for i, t in ipairs(leaves) do grads[i] = t:grad() and t:grad():clone() or pivq.zeros(t:size()) end
      return y:detach():clone(), grads
    end
    local y1, g1 = run(fast)
    local y2, g2 = run(ref)
    close(y1, y2, tol)
    for i = 1, #leaves do close(g1[i], g2[i], tol) end
  end

  -- the given tensors followed by a module's parameters
  local function with_params(m, ...)
    local leaves = { ... }
    for _, p in ipairs(m:parameters()) do leaves[#leaves + 1] = p end
    return leaves
  end

  it("MultiheadAttention context_linear folds the map into the projections: same values and gradients", function()
    local attn = nn.MultiheadAttention(8, 2)
    local lift = nn.Linear(3, 8)
    local x, c = input(2, 4, 8), input(2, 5, 3)
    local leaves = with_params(attn, x, c, lift.weight, lift.bias)
    same_values_and_grads(leaves,
      function() return attn(x, c, { context_linear = { weight = lift.weight, bias = lift.bias } }) end,
      function() return attn(x, lift(c)) end, 1e-5)
    local ok, err = pcall(function() attn(x, { context_linear = { weight = lift.weight } }) end)
    assert.is_false(ok)
    assert.matches("MultiheadAttention: context_linear needs cross-attention", err, 1, true)
  end)

  it("TransformerBlock on a batch-broadcast input runs its self-attention once: same values and gradients", function()
    for _, cross in ipairs({ false, true }) do
      local block = nn.TransformerBlock(8, 2, { cross = cross, mlp_ratio = 2 })
      local q = input(1, 3, 8)
      local context = cross and input(4, 5, 8) or nil
      local leaves = with_params(block, q, context)
      same_values_and_grads(leaves,
        function() return block(q:expand(4, 3, 8), { context = context }) end,
        function() return block(q:expand(4, 3, 8):contiguous(), { context = context }) end, 1e-5)
    end
  end)

  it("TransformerBlock tail = t equals the block on the joined rows, values and gradients", function()
    local block = nn.TransformerBlock(8, 2, { mlp_ratio = 2 })
    local x = input(3, 4, 8)
    for _, tb in ipairs({ 1, 3 }) do
      local t = input(tb, 2, 8)
      local leaves = with_params(block, x, t)
      local function joined() return pivq.cat({ x, t:expand(3, 2, 8) }, 2) end
      same_values_and_grads(leaves, function() return block(x, { tail = t }) end,
        function() return block(joined()) end, 1e-5)
      same_values_and_grads(leaves, function() return block(x, { tail = t, rows = { 4, 3 } }) end,
        function() return block(joined()):narrow(2, 4, 3) end, 1e-5)
    end
    local ok, err = pcall(function() block(x, { tail = randn(2, 2, 8) }) end)
    assert.is_false(ok)
    assert.matches("TransformerBlock: opts.tail must be (1 or B, n, 8) for x 3x4x8, got 2x2x8", err, 1, true)
  end)

  it("TransformerBlock rows = {first, n} equals the full block's rows, values and gradients", function()
    for _, cross in ipairs({ false, true }) do
      local block = nn.TransformerBlock(8, 2, { cross = cross, mlp_ratio = 2 })
      local context = cross and randn(2, 4, 8) or nil
      local mask = randn(6, 6)
      local x = input(2, 6, 8)
      local leaves = with_params(block, x)
      assert.are.same({ 2, 3, 8 }, block(x, { context = context, rows = { 4, 3 } }):size())
      same_values_and_grads(leaves, function() return block(x, { context = context, mask = mask, rows = { 4, 3 } }) end,
        function() return block(x, { context = context, mask = mask }):narrow(2, 4, 3) end, 1e-5)
    end
    local ok, err = pcall(function() nn.TransformerBlock(8, 2)(randn(2, 6, 8), { rows = { 5, 3 } }) end)
    assert.is_false(ok)
    assert.matches("TransformerBlock: opts.rows must be {first, n} within the 6 rows of x, got {5, 3}", err, 1, true)
  end)
end)
