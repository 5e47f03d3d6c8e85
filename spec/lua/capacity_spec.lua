-- Capacity bits against values computed independently here: exact small binomials, and a
-- product formula log2 C(n, k) = sum_i log2((n - k + i) / i) for large ones.
local capacity = require "pivq.capacity"

local function log2_binomial_by_product(n, k)
  local s = 0
  for i = 1, k do s = s + math.log((n - k + i) / i) / math.log(2) end
  return s
end

local function brute_count_sets(K, L) -- enumerate L-subsets of 1..K
  local count = 0
  local function rec(start, left)
    if left == 0 then
      count = count + 1
      return
    end
    for k = start, K - left + 1 do rec(k + 1, left - 1) end
  end
  rec(1, L)
  return count
end

local function brute_count_multisets(K, L) -- non-decreasing sequences of length L over 1..K
  local count = 0
  local function rec(start, left)
    if left == 0 then
      count = count + 1
      return
    end
    for k = start, K do rec(k, left - 1) end
  end
  rec(1, L)
  return count
end

describe("pivq.capacity", function()
  it("counts sets and multisets exactly on small cases", function()
    for K = 1, 7 do
      for L = 1, K do
        local set = capacity.bits { K = K, L = L, scheme = "set" }
        assert.is_near(math.log(brute_count_sets(K, L)) / math.log(2), set, 1e-9)
        local ms = capacity.bits { K = K, L = L, scheme = "multiset" }
        assert.is_near(math.log(brute_count_multisets(K, L)) / math.log(2), ms, 1e-9)
        assert.is_near(L * math.log(K) / math.log(2), capacity.bits { K = K, L = L, scheme = "positional" }, 1e-12)
      end
    end
  end)

  it("matches the product formula for large K and L without overflow", function()
    for _, c in ipairs({ { 4096, 256 }, { 4096, 49 }, { 65536, 1024 }, { 4096, 4096 } }) do
      local K, L = c[1], c[2]
      assert.is_near(log2_binomial_by_product(K, L), capacity.bits { K = K, L = L, scheme = "set" }, 1e-6 * L)
      assert.is_near(log2_binomial_by_product(K + L - 1, L), capacity.bits { K = K, L = L, scheme = "multiset" },
        1e-6 * L)
    end
  end)

  it("reproduces METHOD.md's check: K=4096, L=256, K_img=49 gives a ratio near 3.6", function()
    local r = capacity.row(4096, 256, 49)
    assert.is_near(log2_binomial_by_product(4096, 49), r.nearest, 1e-6)
    assert.is_true(r.matching > 1370 and r.matching < 1380)
    assert.is_true(r.nearest > 375 and r.nearest < 383)
    assert.is_true(r.ratio > 3.5 and r.ratio < 3.7)
  end)

  it("orders the schemes: set <= multiset <= positional", function()
    for _, L in ipairs({ 1, 2, 16, 200 }) do
      local r = capacity.row(512, L)
      assert.is_true(r.matching <= r.multiset + 1e-9)
      assert.is_true(r.multiset <= r.positional + 1e-9)
    end
  end)

  it("rejects bad arguments with messages naming the function", function()
    assert.has_error(function() capacity.bits { K = 0, L = 3 } end,
      "capacity.bits: K must be a positive integer, got 0")
    assert.has_error(function() capacity.bits { K = 4, L = 5, scheme = "set" } end)
    assert.has_error(function() capacity.bits { K = 4, L = 2, scheme = "bogus" } end)
    assert.has_error(function() capacity.bits { K = 4, L = 2, scheme = "distinct" } end)
    assert.has_error(function() capacity.bits(nil) end)
  end)

  it("runs as a recipe that prints the table and writes a plot", function()
    local out = os.tmpname()
    local bin = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"
    local p = io.popen(bin .. " capacity --K 4096 --L 1:512 --K_img 49 --out " .. out .. " 2>&1")
    local text = p:read("*a")
    p:close()
    assert.matches("256%s+3072.0%s+1399.3%s+379.0%s+1376.3%s+3.63", text)
    local f = assert(io.open(out))
    assert.matches("^<svg", f:read("*a"))
    f:close()
    os.remove(out)
  end)
end)
