-- End-to-end training (slow: run with `busted --run=slow`): a small CNN on 5,000 Fashion-MNIST
-- images reaches at least 80% test accuracy.
local pivq = require "pivq"
local fmnist = require "helpers.fashion_mnist"
local nn, F, optim = pivq.nn, pivq.F, pivq.optim

describe("training #slow", function()
  it("a small CNN learns Fashion-MNIST from 5,000 images (>= 80% test accuracy)", function()
    assert(fmnist.available(), "dataset-fashion-mnist is not installed")
    pivq.manual_seed(1)
    local x, y = fmnist.load("train", 5000)
    local xt, yt = fmnist.load("t10k", 10000)
    local model = nn.Sequential(
      nn.Conv2d(1, 16, 3, { padding = 1 }), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(16, 32, 3, { padding = 1 }), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    local opt = optim.Adam(model:parameters(), { lr = 2e-3 })
    local B = 64
    for _ = 1, 4 do
      local perm = pivq.randperm(5000)
      for s = 1, 5000 - B + 1, B do
        local idx = perm:narrow(1, s, B)
        opt:zero_grad()
        F.cross_entropy(model(x:index_select(1, idx)), y:index_select(1, idx)):backward()
        opt:step()
      end
    end
    model:eval()
    local correct = 0
    pivq.no_grad(function()
      for s = 1, 10000, 1000 do
        local pred = model(xt:narrow(1, s, 1000)):argmax(2)
        correct = correct + pred:eq(yt:narrow(1, s, 1000)):float():sum():item()
      end
    end)
    local acc = correct / 10000
    print(string.format("\nFashion-MNIST small CNN: test accuracy %.2f%%", acc * 100))
    assert.is_true(acc >= 0.80, string.format("accuracy %.3f", acc))
  end)
end)
