-- pivq.nn.Quantizer: codes, straight-through gradient, losses by hand, EMA vs loss-trained
-- codebooks, bypass and k-means++ initialisation, dead-code restart, statistics.
local pivq = require "pivq"

describe("pivq.nn.Quantizer", function()
  it("nearest takes each latent's argmin; matching gives distinct codes of minimal total cost", function()
    pivq.manual_seed(1)
    local K, c = 12, 3
    local qn = pivq.nn.Quantizer(K, c, { mode = "nearest" })
    local qm = pivq.nn.Quantizer(K, c, { mode = "matching" })
    qm.codebook:copy(qn.codebook)
    qn:train(false)
    qm:train(false)
    -- latents that all sit next to code 1 force collisions under nearest
    local z = qn.codebook:narrow(1, 1, 1):view(1, 1, c):expand(2, 5, c):contiguous() + pivq.randn(2, 5, c) * 0.01
    local _, in_ = qn(z)
    local _, im = qm(z)
    for b = 1, 2 do
      for i = 1, 5 do assert.are.equal(1, in_:get(b, i)) end
      local seen = {}
      for i = 1, 5 do
        assert.is_nil(seen[im:get(b, i)])
        seen[im:get(b, i)] = true
      end
    end
    -- matching equals an exact assignment on the same distances
    local d = pivq.vq.sq_distances(z:reshape(10, c), qm.codebook):view(2, 5, K)
    assert.are.same(pivq.assign(d):totable(), im:totable())
  end)

  it("passes gradients straight through to the latents", function()
    local q = pivq.nn.Quantizer(8, 4, { mode = "matching" })
    q:train(false)
    local z = pivq.randn(2, 3, 4):requires_grad(true)
    local w = pivq.randn(2, 3, 4)
    local zq = q(z)
    ;(zq * w):sum():backward()
    assert.is_true((z:grad() - w):abs():max() < 1e-6)
  end)

  it("computes the commitment and codebook losses as mean squared distances", function()
    local q = pivq.nn.Quantizer(8, 4, { mode = "nearest", ema = false, beta = 0.5 })
    q:train(false)
    local z = pivq.randn(2, 3, 4)
    local _, idx, losses = q(z)
    local e = q.codebook:detach():index_select(1, idx:view(-1)):view(2, 3, 4)
    local mse = (z - e):pow(2):mean():item()
    assert.is_near(mse, losses.commitment:item(), 1e-6)
    assert.is_near(mse, losses.codebook:item(), 1e-6)
    assert.is_near(mse * 1.5, losses.total:item(), 1e-6)
    -- the loss-trained codebook receives gradients from the codebook loss
    losses.total:backward()
    assert.is_truthy(q.codebook:grad())
  end)

  it("updates an EMA codebook during training only", function()
    local q = pivq.nn.Quantizer(8, 4, { mode = "nearest" })
    local before = q.codebook:clone()
    q:train(false)
    q(pivq.randn(2, 3, 4))
    assert.are.equal(0, (q.codebook - before):abs():max())
    q:train(true)
    q(pivq.randn(2, 3, 4))
    assert.is_true((q.codebook - before):abs():max() > 0)
  end)

  it("is bypassed until k-means++ initialises it from gathered latents", function()
    local q = pivq.nn.Quantizer(4, 2, { mode = "matching", bypass = true })
    local z = pivq.randn(1, 3, 2)
    local zq, idx = q(z)
    assert.is_nil(idx)
    assert.are.equal(0, (zq - z):abs():max())
    local centres = pivq.tensor { { 0, 0 }, { 10, 0 }, { 0, 10 }, { 10, 10 } }
    local pool = centres:index_select(1, pivq.randint(1, 5, { 400 })) + pivq.randn(400, 2) * 0.1
    q:init_from(pool, { generator = pivq.Generator(3) })
    assert.is_false(q.bypassed)
    for i = 1, 4 do
      local best = math.huge
      for k = 1, 4 do
        best = math.min(best, ((q.codebook[k] - centres[i]):pow(2):sum():item()) ^ 0.5)
      end
      assert.is_true(best < 0.1)
    end
  end)

  it("restarts codes idle for too long from recent latents", function()
    local q = pivq.nn.Quantizer(16, 2, { mode = "nearest" })
    local z = pivq.randn(1, 2, 2) * 0.01
    for _ = 1, 4 do q(z) end
    local used = {}
    local _, idx = q(z)
    for i = 1, 2 do used[idx:get(1, i)] = true end
    local n = q:restart_dead(3, { latents = pivq.tensor { { 5, 5 } } })
    assert.is_true(n >= 13)
    for k = 1, 16 do
      if not used[k] and q.idle[k] == 0 then
        assert.are.same({ 5, 5 }, q.codebook[k]:totable())
      end
    end
  end)

  it("reports usage, perplexity and distinct codes per image", function()
    local q = pivq.nn.Quantizer(64, 4, { mode = "matching" })
    local _, _, _, st = q(pivq.randn(5, 6, 4))
    assert.are.equal(6, st.K_img)
    assert.is_true(st.usage > 0 and st.usage <= 30 / 64)
    assert.is_true(st.perplexity > 1)
  end)
end)
