-- Reductions (csrc/ops/reduce.c) against naive Lua lanes: every op over each dim, with and
-- without keepdim, and over all dims; strided inputs; integer inputs; ties; NaN; and inputs
-- large enough to take the multi-threaded paths (few long lanes and many short ones).
local pivq = require "pivq"
local ref = require "helpers.ref"

local r = ref.rng(99)

local function random_pair(shape, lo, hi, int)
  local lt = ref.random(shape, r, lo, hi, int)
  if not int then lt = ref.map(lt, ref.f32) end
  return ref.to_tensor(lt, int and "int64" or "float32"), lt
end

-- op name -> {call(t, dim, keepdim), reference lane function, rtol}
local OPS = {
  sum = { function(t, d, k) return t:sum(d, k) end, ref.lane.sum, 1e-6 },
  mean = { function(t, d, k) return t:mean(d, k) end, ref.lane.mean, 1e-6 },
  prod = { function(t, d, k) return t:prod(d, k) end, ref.lane.prod, 1e-5 },
  var = { function(t, d, k) return t:var(d, k) end, ref.lane.var(1), 1e-5 },
  var_biased = { function(t, d, k) return t:var(d, { unbiased = false, keepdim = k }) end,
    ref.lane.var(0), 1e-5 },
  norm1 = { function(t, d, k) return t:norm(1, d, k) end, ref.lane.norm(1), 1e-6 },
  norm2 = { function(t, d, k) return t:norm(2, d, k) end, ref.lane.norm(2), 1e-6 },
  norm3 = { function(t, d, k) return t:norm(3, d, k) end, ref.lane.norm(3), 1e-5 },
  norminf = { function(t, d, k) return t:norm(math.huge, d, k) end, ref.lane.norm(math.huge), 0 },
  argmax = { function(t, d, k) return t:argmax(d, k) end, ref.lane.argmax, 0 },
  argmin = { function(t, d, k) return t:argmin(d, k) end, ref.lane.argmin, 0 },
  maxv = { function(t, d, k) return (t:max(d, k)) end, ref.lane.max, 0 },
  minv = { function(t, d, k) return (t:min(d, k)) end, ref.lane.min, 0 },
  maxi = { function(t, d, k) return select(2, t:max(d, k)) end, ref.lane.argmax, 0 },
  mini = { function(t, d, k) return select(2, t:min(d, k)) end, ref.lane.argmin, 0 },
}

-- value of an all-dims reduction: max()/min() return a number, the rest a 0-dim tensor
local function all_value(name, t)
  if name == "maxv" or name == "minv" then return name == "maxv" and t:max() or t:min() end
  if name == "maxi" then return t:argmax():item() end -- max() over all dims gives no index
  if name == "mini" then return t:argmin():item() end
  local v = OPS[name][1](t, nil, false)
  assert.are.equal(0, v:dim())
  return v:item()
end

local function check_op(name, t, lt, what)
  local call, lane, rtol = unpack(OPS[name])
  local rt = rtol == 0 and 0 or rtol
  for d = 1, #lt.shape do
    for _, keep in ipairs({ false, true }) do
      local got = call(t, d, keep)
      ref.assert_close(got, ref.reduce(lt, d, lane, keep), rt, 1e-6,
        string.format("%s %s dim %d keepdim %s", name, what, d, tostring(keep)))
    end
  end
  local e = lane(lt.data)
  local got = all_value(name, t)
  assert(math.abs(got - e) <= 1e-6 + rt * math.abs(e),
    string.format("%s %s over all dims: got %.9g, expected %.9g", name, what, got, e))
  -- negative dims count from the end
  ref.assert_close(call(t, -1, false), call(t, #lt.shape, false), 0, 0, name .. " dim -1")
end

describe("reductions", function()
  for name in pairs(OPS) do
    it(name .. " over each dim, keepdim and all dims, contiguous and strided", function()
      local lo = name == "prod" and 0.5 or -3
      local hi = name == "prod" and 1.5 or 3
      local t, lt = random_pair({ 3, 4, 5 }, lo, hi)
      check_op(name, t, lt, "3x4x5")
      -- strided: the same values behind a permuted layout
      local backing = t:permute(3, 1, 2):contiguous()
      local view = backing:permute(2, 3, 1)
      assert.is_false(view:is_contiguous())
      check_op(name, view, lt, "strided")
      local n = t:narrow(2, 2, 2)
      check_op(name, n, ref.from(n), "narrowed")
    end)
  end

  it("integer inputs: sum/prod stay int64, mean/var/norm give float32, max keeps the dtype", function()
    local t, lt = random_pair({ 4, 6 }, -5, 5, true)
    local i32 = t:int()
    for _, name in ipairs({ "sum", "mean", "var", "norm2", "argmax", "maxv", "mini" }) do
      check_op(name, i32, lt, "int32")
    end
    assert.are.equal("int64", i32:sum():dtype())
    assert.are.equal("int64", i32:sum(1):dtype())
    assert.are.equal("int64", i32:prod(2):dtype())
    assert.are.equal("float32", i32:mean(1):dtype())
    assert.are.equal("float32", i32:var(1):dtype())
    assert.are.equal("int32", (i32:max(1)):dtype())
    assert.are.equal("uint8", (pivq.tensor({ 3, 200 }, "uint8"):max(1)):dtype())
    assert.are.equal(200, pivq.tensor({ 3, 200 }, "uint8"):max())
    assert.are.equal("int64", i32:argmax(1):dtype())
    -- int64 sums are exact beyond float precision
    local big = pivq.tensor({ 2 ^ 52, 1, 1, 1 }, "int64")
    assert.are.equal(2 ^ 52 + 3, big:sum():item())
  end)

  it("all-dims reductions with keepdim keep every dim as 1; functional forms agree", function()
    local t = pivq.arange(1, 24, "float32"):view(2, 3, 4)
    local s = t:sum(nil, true)
    assert.are.same({ 1, 1, 1 }, s:size())
    assert.are.equal(300, s:item())
    assert.are.same({ 1, 1, 1 }, t:argmax(nil, true):size())
    assert.are.equal(24, t:argmax(nil, true):item())
    assert.are.equal(300, pivq.sum(t):item())
    assert.are.same(t:mean(2):totable(), pivq.mean(t, 2):totable())
  end)

  it("ties resolve to the first occurrence", function()
    local t = pivq.tensor { { 1, 3, 3, 2 }, { 5, 5, 0, 0 } }
    assert.are.same({ 2, 1 }, t:argmax(2):totable())
    assert.are.same({ 1, 3 }, t:argmin(2):totable())
    assert.are.equal(5, t:argmax():item()) -- flat 1-based index of the first 5
    assert.are.equal(7, t:argmin():item())
    local v, i = t:max(2)
    assert.are.same({ 3, 5 }, v:totable())
    assert.are.same({ 2, 1 }, i:totable())
    assert.are.same({ 2, 2, 1, 1 }, t:argmax(1):totable())
    assert.are.same({ 1, 1, 1, 1 }, pivq.tensor({ { 7, 7, 0, 1 }, { 7, 8, 0, 1 } }):argmin(1):totable())
  end)

  it("NaN wins max/min and propagates through sums", function()
    local nan = 0 / 0
    local t = pivq.tensor { 1, nan, 3 }
    local m = t:max()
    assert.is_true(m ~= m)
    assert.are.equal(2, t:argmax():item())
    assert.are.equal(2, t:argmin():item())
    local s = t:sum():item()
    assert.is_true(s ~= s)
  end)

  it("NaN wins max/min over strided lanes too, at its first position", function()
    local nan = 0 / 0
    local m = pivq.tensor { { 1, 5, -1 }, { nan, 2, 7 }, { 3, nan, nan }, { 9, 9, 0 } }
    for _, f in ipairs({ "max", "min" }) do
      local v, i = m[f](m, 1)
      local vt = v:totable()
      assert.is_true(vt[1] ~= vt[1] and vt[2] ~= vt[2] and vt[3] ~= vt[3], f)
      assert.are.same({ 2, 3, 3 }, i:totable(), f)
    end
    local v, i = m:narrow(1, 1, 2):max(1)
    assert.are.same({ 5, 7 }, { v:totable()[2], v:totable()[3] })
    assert.are.same({ 2, 1, 2 }, i:totable())
    assert.are.same({ 4, 4, 1 }, pivq.tensor({ { 1, 1, 9 }, { 2, 2, 3 }, { 0, 3, 4 }, { 5, 5,
      5 } }):argmax(1):totable())
  end)

  it("empty inputs: sum 0, prod 1, mean NaN, max refuses", function()
    local e = pivq.zeros(0, 3)
    assert.are.same({ 0, 0, 0 }, e:sum(1):totable())
    assert.are.same({ 1, 1, 1 }, e:prod(1):totable())
    assert.are.same({ 0 }, e:sum(2):size())
    local m = e:mean():item()
    assert.is_true(m ~= m)
    ref.raises(function() e:max(1) end, "max: cannot reduce over an empty dimension")
    ref.raises(function() e:argmin() end, "argmin")
  end)

  it("var with one element is NaN (unbiased) and 0 (biased); std is its root", function()
    local t = pivq.tensor { 4 }
    local v = t:var():item()
    assert.is_true(v ~= v)
    assert.are.equal(0, t:var(nil, { unbiased = false }):item())
    local x = pivq.tensor { 1, 2, 3, 4 }
    assert.is_true(math.abs(x:std():item() - math.sqrt(5 / 3)) < 1e-6)
  end)

  it("norm refuses p <= 0 and names the function", function()
    ref.raises(function() pivq.ones(3):norm(0) end, "norm: p must be positive")
    ref.raises(function() pivq.ones(3):norm(-1, 1) end, "norm")
  end)
end)

describe("reductions on large inputs (multi-threaded paths)", function()
  local threads = pivq.get_num_threads()
  after_each(function() pivq.set_num_threads(threads) end)

  -- a tall and a wide matrix exercise both layouts of the lanes; 300x400 > the parallel grain
  local shapes = { { 300, 401 }, { 2000, 37 }, { 37, 2000 } }
  for _, shape in ipairs(shapes) do
    it("agree with Lua lanes for " .. table.concat(shape, "x"), function()
      local t, lt = random_pair(shape, -2, 2)
      local rows, cols = shape[1], shape[2]
      -- naive column and row sums, sums of squares and maxima
      local colsum, rowsum, colmax, colarg, rowsq = {}, {}, {}, {}, {}
      for j = 1, cols do colsum[j], colmax[j], colarg[j] = 0, -math.huge, 0 end
      local total = 0
      for i = 1, rows do
        rowsum[i], rowsq[i] = 0, 0
        for j = 1, cols do
          local v = lt.data[(i - 1) * cols + j]
          colsum[j] = colsum[j] + v
          rowsum[i] = rowsum[i] + v
          rowsq[i] = rowsq[i] + v * v
          if v > colmax[j] then colmax[j], colarg[j] = v, i end
          total = total + v
        end
      end
      for _, n in ipairs({ 1, 2 }) do
        pivq.set_num_threads(n)
        ref.assert_close(t:sum(1), { shape = { cols }, data = colsum }, 1e-5, 1e-4, "sum(1)")
        ref.assert_close(t:sum(2), { shape = { rows }, data = rowsum }, 1e-5, 1e-4, "sum(2)")
        local v, i = t:max(1)
        ref.assert_close(v, { shape = { cols }, data = colmax }, 0, 0, "max(1)")
        ref.assert_close(i, { shape = { cols }, data = colarg }, 0, 0, "argmax(1)")
        local norms = {}
        for k = 1, rows do norms[k] = math.sqrt(rowsq[k]) end
        ref.assert_close(t:norm(2, 2), { shape = { rows }, data = norms }, 1e-5, 1e-5, "norm(2,2)")
        assert.is_true(math.abs(t:sum():item() - total) < 1e-3)
        ref.assert_close(t:t():sum(2), { shape = { cols }, data = colsum }, 1e-5, 1e-4, "t():sum(2)")
      end
    end)
  end

  it("all-dims reductions of a long vector are the same on 1 and 2 threads", function()
    local n = 200003
    local x = pivq.arange(1, n, "float32") / n -- values in (0, 1]
    local ex_sum = (n + 1) / 2
    local ex_var = (n * n - 1) / 12 / (n * n) * n / (n - 1)
    local results = {}
    for _, nt in ipairs({ 1, 2 }) do
      pivq.set_num_threads(nt)
      local s, m, v = x:sum():item(), x:mean():item(), x:var():item()
      assert.is_true(math.abs(s - ex_sum) / ex_sum < 1e-6, "sum " .. s)
      assert.is_true(math.abs(m - 0.5 * (n + 1) / n) < 1e-6, "mean " .. m)
      assert.is_true(math.abs(v - ex_var) / ex_var < 1e-5, "var " .. v)
      results[nt] = { s, m, v, x:argmax():item(), x:argmin():item(), x:norm(math.huge):item() }
    end
    assert.are.same({ n, 1, 1 }, { results[1][4], results[1][5], results[1][6] })
    assert.are.same(results[1], results[2])
  end)

  it("ties across thread chunks still pick the first occurrence", function()
    local n = 100000
    for _, nt in ipairs({ 1, 2 }) do
      pivq.set_num_threads(nt)
      local x = pivq.zeros(n)
      x[70000] = 5
      x[90000] = 5
      assert.are.equal(70000, x:argmax():item())
      x[10] = 5
      assert.are.equal(10, x:argmax():item())
      local m = pivq.zeros(n, 2)
      m[60000][2] = 1
      m[80000][2] = 1
      m[99999][1] = -1
      m[50000][1] = -1
      assert.are.same({ 1, 60000 }, m:argmax(1):totable())
      assert.are.same({ 50000, 1 }, m:argmin(1):totable())
    end
  end)
end)
