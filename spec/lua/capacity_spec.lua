-- Capacity bits against values computed independently here: exact small binomials, and a
-- product formula log2 C(n, k) = sum_i log2((n - k + i) / i) for large ones.
local capacity = require "pivq.quant.capacity"

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

  it("reproduces notebooks/METHOD.md's check: K=4096, L=256, K_img=49 gives a ratio near 3.6", function()
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

  it("builds the table: the range's ends and the powers of two inside, each row counted exactly", function()
    local rows = capacity.table(512, 3, 100, 40)
    local Ls = {}
    for i, r in ipairs(rows) do Ls[i] = r.L end
    assert.are.same({ 3, 4, 8, 16, 32, 64, 100 }, Ls)
    for _, r in ipairs(rows) do
      assert.is_near(log2_binomial_by_product(512, r.L), r.matching, 1e-6 * r.L)
      assert.is_near(log2_binomial_by_product(512, math.min(40, r.L)), r.nearest, 1e-6 * r.L)
      assert.is_near(r.L * 9, r.positional, 1e-9)
    end
    assert.are.same({ 1, 2, 4 }, (function()
      local out = {}
      for i, r in ipairs(capacity.table(4096, 1, 4)) do out[i] = r.L end
      return out
    end)())
  end)

  it("formats the table as the recipe prints it, with '-' where matching is undefined", function()
    local text = capacity.format(capacity.table(8, 4, 16), 8)
    local lines = {}
    for line in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
    assert.are.equal(5, #lines) -- heading, column names, L = 4, 8, 16
    assert.matches("^K = 8, K_img = L", lines[1])
    assert.matches("^%s+L%s+positional%s+multiset%s+nearest%s+matching%s+ratio$", lines[2])
    -- L = 16 > K = 8: no set of 16 distinct codes exists
    local L, pos, _, _, matching, ratio = lines[5]:match("^%s*(%d+)%s+(%S+)%s+(%S+)%s+(%S+)%s+(%S+)%s+(%S+)$")
    assert.are.same({ "16", "48.0", "-", "-" }, { L, pos, matching, ratio })
    assert.matches("^%s+8%s+24%.0%s+%S+%s+0%.0%s+0%.0%s+%-$", lines[4]) -- C(8, 8) = 1: zero bits
  end)

  it("gives the figure's series over the range, geometric steps, every point counted exactly", function()
    local fig = capacity.figure(4096, 1, 512, 49)
    assert.is_true(fig.logx)
    assert.are.equal(4, #fig.series)
    assert.are.equal("nearest (K_img=49)", fig.series[3].name)
    local xs = fig.series[1].x
    assert.are.equal(1, xs[1])
    for i = 2, #xs do assert.is_true(xs[i] > xs[i - 1] and xs[i] <= 512) end
    assert.is_true(#xs < 200) -- steps grow with L (5%), not one per L
    for i, L in ipairs(xs) do
      assert.is_near(L * 12, fig.series[1].y[i], 1e-9)
      assert.is_near(log2_binomial_by_product(4096, L), fig.series[4].y[i], 1e-6 * L)
      assert.is_near(log2_binomial_by_product(4096, math.min(L, 49)), fig.series[3].y[i], 1e-6 * L)
    end
    local small = capacity.figure(8, 4, 16)
    local y = small.series[4].y
    assert.is_true(y[#y] ~= y[#y]) -- L = 16 > K = 8: no point (NaN), the line stops
  end)

  it("refuses bad ranges with messages naming the function", function()
    assert.has_error(function() capacity.table(512, 0, 4) end,
      "capacity.table: need integers 1 <= lo <= hi, got lo=0 hi=4")
    assert.has_error(function() capacity.table(512, 5, 4) end)
    assert.has_error(function() capacity.figure(0, 1, 4) end, "capacity.figure: K must be a positive integer, got 0")
  end)
  it("builds the measured Figure 4: the formula's curves, measured points and the paper's point", function()
    local spec = capacity.measured_figure(4096,
      { { name = "nearest (measured)", L = { 16, 256 }, bits = { 100, 300 } } }, { "300 steps" })
    local names = {}
    for i, s in ipairs(spec.series) do names[i] = s.name end
    assert.are.same({ "positional L log2 K", "multiset", "set log2 C(K,L)", "nearest (measured)",
      "paper: nearest K_img=49 (3.6x)" }, names)
    local set = spec.series[3]
    assert.are.equal(16, set.x[1])
    assert.is_near(capacity.bits { K = 4096, L = 16, scheme = "set" }, set.y[1], 1e-9)
    local paper = spec.series[5]
    assert.are.same({ 256 }, paper.x)
    assert.is_near(capacity.bits { K = 4096, L = 256, scheme = "distinct", K_img = 49 }, paper.y[1], 1e-9)
    assert.is_true(spec.series[4].marker)
    assert.is_false(paper.line)
    -- drawn as a PNG image and as SVG, the paper's point in black
    local img = require("pivq.display.raster").plot(spec)
    assert.are.same({ 3, 520, 900 }, img:size())
    assert.are.equal(0, img:min())
    local svg = require("pivq.display.plot").line(spec)
    assert.matches('<rect x="[%d.]+" y="[%d.]+" width="7" height="7" fill="#000000"/>', svg)
    assert.has_error(function() capacity.measured_figure(4096, {}) end,
      "capacity.measured_figure: measured must be a non-empty list of {name =, L =, bits =}")
    assert.has_error(function() capacity.measured_figure(4096, { { name = "x", L = { 1, 2 }, bits = { 1 } } }) end,
      "capacity.measured_figure: series 1 needs lists L and bits of equal length")
  end)
end)
