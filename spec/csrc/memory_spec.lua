-- Memory: the Lua side's accounting of C heap bytes keeps allocation loops bounded, and no
-- operation (successful or failing) leaks a storage or a tensor header.
local pivq = require "pivq"
local gc = require "pivq.core.gc"

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
    -- the policy collects past its threshold and then allows what survived + at least min
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

  it("a large live tensor does not enlarge the garbage allowed between collections", function()
    local policy = pivq.gc_policy
    local keep = pivq.empty(24 * 2 ^ 20) -- 96 MB that stay live through the loop
    local base = settle()
    local peak, allowed = 0, 0
    for i = 1, 400 do
      local t = pivq.empty(262144) -- 1 MiB of garbage per iteration
      t:fill(i)
      peak = math.max(peak, pivq.heap_bytes())
      allowed = math.max(allowed, policy.min, policy.factor * collectgarbage("count") * 1024)
    end
    -- garbage on top of the live bytes: the allowance (Lua-heap based), not another 96 MB
    assert.is_true(peak - base <= allowed + 2 ^ 20, string.format(
      "peak %.1f MB over a base of %.1f MB, allowance %.1f MB", peak / 2 ^ 20, base / 2 ^ 20, allowed / 2 ^ 20))
    assert.are.equal(24 * 2 ^ 20, keep:numel())
  end)

  it("a training-style loop is back at its resting heap after each backward", function()
    pivq.manual_seed(3)
    local x = pivq.randn(2048, 256)
    local w = pivq.randn(256, 256):requires_grad(true)
    local base = settle()
    for step = 1, 6 do
      local h = x
      for _ = 1, 10 do h = (h:matmul(w) * 0.05):tanh() end -- ~40 MB of activations per step
      h:sum():backward()
      -- live after the backward: x, w, the last h (2 MB) and w's gradient (256 KB); the other
      -- activations were collected (the old policy kept them until the heap doubled)
      local live = pivq.heap_bytes() - base
      local expected = (h:numel() + w:numel()) * 4
      assert.is_true(live < expected + 2 ^ 16, string.format("step %d: %.2f MB live beyond x and w, expected %.2f",
        step, live / 2 ^ 20, expected / 2 ^ 20))
      w:zero_grad()
    end
  end)

  it("pivq_heap_peak_reset gives the highest live bytes of the period", function()
    local base = settle()
    C.pivq_heap_peak_reset()
    local top
    do
      local t = pivq.empty(4 * 2 ^ 20) -- 16 MiB
      local u = pivq.empty(2 ^ 20) -- 4 MiB more
      top = pivq.heap_bytes()
      assert.are.equal(5 * 2 ^ 20, t:numel() + u:numel())
    end
    settle()
    local peak = tonumber(C.pivq_heap_peak_reset())
    assert.is_true(peak >= top and top >= base + 20 * 2 ^ 20)
    assert.is_true(peak < top + 2 ^ 20) -- settle() allocates next to nothing
    -- the new period starts at the present value, below the old peak
    assert.is_true(tonumber(C.pivq_heap_peak_reset()) < base + 2 ^ 20)
  end)

  it("a collection between training steps frees the garbage and keeps the room for a step", function()
    -- the trainer calls it after a checkpoint or a codebook initialisation: their garbage must
    -- not live through the next step, and that step must not be collected mid-way, so the
    -- threshold after_backward sized for a whole step (here: 300 MB) stays
    local policy = pivq.gc_policy
    local base = settle()
    local saved = policy.threshold
    policy.threshold = base + 300 * 2 ^ 20
    for _ = 1, 4 do pivq.empty(2 ^ 20):fill(1) end -- 16 MB of garbage, below the threshold
    assert.is_true(pivq.heap_bytes() >= base + 16 * 2 ^ 20)
    local live = gc.collect_between_steps()
    assert.are.equal(pivq.heap_bytes(), live)
    assert.is_true(live < base + 2 ^ 16, string.format("%.2f MB left of 16", (live - base) / 2 ^ 20))
    -- a plain collection would have lowered it to live + the allowance (64 MB)
    assert.is_true(policy.threshold >= base + 300 * 2 ^ 20)
    policy.threshold = saved
  end)

  it("pivq.memory.malloc shows a tensor's block in the allocator's bytes", function()
    local m0 = pivq.memory.malloc()
    if m0 == nil then -- malloc is AddressSanitizer's (.ci/task test-asan), which keeps no such figures
      assert.are.equal("build-asan", os.getenv("PIVQ_BUILD_DIR"))
      return
    end
    local t = pivq.empty(5 * 2 ^ 18):fill(0) -- 5 MiB: in the heap, or mapped on its own under glibc's defaults
    local m1 = pivq.memory.malloc()
    assert.is_true(m1.in_use_mb + m1.mmapped_mb - m0.in_use_mb - m0.mmapped_mb >= 5,
      string.format("in use %.2f -> %.2f MB, mapped %.2f -> %.2f MB", m0.in_use_mb, m1.in_use_mb, m0.mmapped_mb,
        m1.mmapped_mb))
    -- the heap is what it handed out plus what it holds free
    assert.is_near(m1.arena_mb, m1.in_use_mb + m1.free_mb, 1e-6)
    assert.are.equal(5 * 2 ^ 18, t:numel())
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
