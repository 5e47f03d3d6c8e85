-- Memory: the Lua side's accounting of C heap bytes keeps allocation loops bounded, and no
-- operation (successful or failing) leaks a storage or a tensor header.
local pivq = require "pivq"

local C = pivq.C

local function settle()
  collectgarbage()
  collectgarbage()
  return pivq.heap_bytes(), tonumber(C.pivq_heap_count())
end

describe("memory", function()
  it("a loop creating 100k tensors keeps the C heap bounded", function()
    local base = settle()
    local peak = 0
    local policy = pivq.gc_policy
    for i = 1, 100000 do
      local t = pivq.zeros(1024) -- 4 KiB each: 400 MB if nothing were collected
      t:add_(i)
      local live = pivq.heap_bytes()
      if live > peak then peak = live end
    end
    -- the policy collects past its threshold and then doubles what survived (>= min)
    local bound = base + 2 * math.max(policy.min, policy.threshold) + 2 ^ 20
    assert.is_true(peak < bound, string.format("peak %.1f MB above bound %.1f MB", peak / 2 ^ 20,
      bound / 2 ^ 20))
    assert.is_true(peak < 300 * 2 ^ 20)
  end)

  it("large tensors the Lua GC cannot see are collected by the accounting", function()
    -- 3000 x 1 MiB: the Lua heap grows by a few hundred KB only, so without the policy
    -- nothing would trigger a collection and this loop would hold ~3 GB
    local base = settle()
    local peak = 0
    for i = 1, 3000 do
      local t = pivq.empty(262144)
      t:fill(i)
      local live = pivq.heap_bytes()
      if live > peak then peak = live end
    end
    local policy = pivq.gc_policy
    local bound = base + 2 * math.max(policy.min, policy.threshold) + 2 ^ 21
    assert.is_true(peak < bound, string.format("peak %.1f MB above bound %.1f MB", peak / 2 ^ 20,
      bound / 2 ^ 20))
  end)

  it("views, ops and error paths leak nothing", function()
    local _, count0 = settle()
    local bytes0 = pivq.heap_bytes()
    for _ = 1, 200 do
      local x = pivq.randn(6, 5)
      local _ = x:t():contiguous():view(30):narrow(1, 2, 10):unsqueeze(1):expand(3, 10)
      _ = (x + 1) * x:sum(1, true) - x:max(2, true)
      _ = x:matmul(x:t()):index_select(1, { 1, 2 }):gather(2, pivq.tensor({ { 1 }, { 2 } }, "int64"))
      _ = pivq.where(x:gt(0), x, 0):masked_fill(x:lt(-1), 5):argmax(2)
      _ = pivq.cat({ x, x }, 2):reshape(2, 30):t():reshape(60):var()
      _ = pivq.stack({ x, x }):permute(3, 1, 2):norm(3, 2)
      _ = x:long():float():int():byte():exp()
      _ = pivq.multinomial(x:abs() + 0.1, 2)
      _ = pivq.randperm(7)
      -- failing calls must release whatever they had allocated
      pcall(function() return x + pivq.ones(4, 4) end)
      pcall(function() return x:view(7) end)
      pcall(function() return x:t():view(30) end)
      pcall(function() return x:matmul(pivq.ones(4, 2)) end)
      pcall(function() return x:index_select(1, { 9 }) end)
      pcall(function() return x:gather(2, pivq.tensor({ { 9 } }, "int64")) end)
      pcall(function() return x:scatter_add(2, pivq.tensor({ { 9 } }, "int64"), x) end)
      pcall(function() return pivq.cat({ x, pivq.ones(2, 2) }) end)
      pcall(function() return pivq.stack({ x, pivq.ones(2, 2) }) end)
      pcall(function() return pivq.multinomial(pivq.tensor { 0, 0 }, 1) end)
      pcall(function() return pivq.zeros(0):max() end)
      pcall(function() return x:masked_fill(pivq.ones(9):byte(), 0) end)
    end
    local bytes1, count1 = settle()
    assert.are.equal(count0, count1)
    assert.are.equal(bytes0, bytes1)
  end)
end)
