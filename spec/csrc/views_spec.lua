-- Views and strides (csrc/core/tensor.c through the FFI): every view shares storage, has the
-- strides a hand computation gives, and reads the values a naive index computation gives.
local pivq = require "pivq"
local ref = require "helpers.ref"

-- 0..n-1 as float32 in the given shape, so a value names its flat position
local function iota(...)
  local shape = { ... }
  return pivq.arange(0, ref.numel(shape) - 1, "float32"):view(shape)
end

-- storage offset (in elements) of a tensor's first element, relative to `base`
local ffi = require "ffi"
local function offset_from(t, base)
  local a = ffi.cast("char *", pivq.C.pivq_data(t.c))
  local b = ffi.cast("char *", pivq.C.pivq_data(base.c))
  return tonumber(a - b) / 4
end

-- Brute force: element offsets of t in row-major order, read through its strides in Lua.
local function offsets(t)
  local shape, stride = t:size(), t:stride()
  local out = {}
  for k = 1, ref.numel(shape) do
    local idx = ref.unravel(shape, k)
    local off = 0
    for d = 1, #shape do off = off + (idx[d] - 1) * stride[d] end
    out[k] = off
  end
  return out
end

-- Can t be presented with `shape` without a copy? The strides, if they exist, are forced:
-- stride d = offset(unit step in d) - offset(origin); check every element against them.
local function viewable(t, shape)
  local offs = offsets(t)
  local n = #offs
  if n == 0 then return true end
  local stride = {}
  for d = 1, #shape do
    if shape[d] > 1 then
      local idx = {}
      for e = 1, #shape do idx[e] = 1 end
      idx[d] = 2
      stride[d] = offs[ref.ravel(shape, idx)] - offs[1]
    else
      stride[d] = 0
    end
  end
  for k = 1, n do
    local idx = ref.unravel(shape, k)
    local off = offs[1]
    for d = 1, #shape do off = off + (idx[d] - 1) * stride[d] end
    if off ~= offs[k] then return false end
  end
  return true
end

describe("views", function()
  it("narrow shares storage and moves the offset", function()
    local x = iota(4, 5)
    local v = x:narrow(1, 2, 2)
    assert.are.same({ 2, 5 }, v:size())
    assert.are.same({ 5, 1 }, v:stride())
    assert.are.equal(5, offset_from(v, x))
    assert.are.same({ { 5, 6, 7, 8, 9 }, { 10, 11, 12, 13, 14 } }, v:totable())
    local w = x:narrow(2, 3, 3)
    assert.are.same({ { 2, 3, 4 }, { 7, 8, 9 }, { 12, 13, 14 }, { 17, 18, 19 } }, w:totable())
    assert.is_false(w:is_contiguous())
    v:fill(-1) -- writes through to x
    assert.are.equal(-1, x:get(2, 1))
    assert.are.equal(-1, x:get(3, 5))
    assert.are.equal(15, x:get(4, 1))
    assert.are.same({ 0, 5 }, x:narrow(1, 5, 0):size()) -- empty narrow at the end is legal
  end)

  it("select drops the dim", function()
    local x = iota(2, 3, 4)
    local s = x:select(2, 3)
    assert.are.same({ 2, 4 }, s:size())
    assert.are.same({ 12, 1 }, s:stride())
    assert.are.same({ { 8, 9, 10, 11 }, { 20, 21, 22, 23 } }, s:totable())
    assert.are.same({ 13, 17, 21 }, x:select(1, 2):select(2, 2):totable())
    assert.are.equal(23, x:select(1, 2):select(1, 3):select(1, 4):item())
    assert.are.equal(0, x:select(1, 1):select(1, 1):select(1, 1):dim())
    assert.are.same({ 0, 4, 8 }, x:select(-1, 1):select(1, 1):totable())
  end)

  it("transpose and t swap sizes and strides", function()
    local x = iota(2, 3)
    local t = x:t()
    assert.are.same({ 3, 2 }, t:size())
    assert.are.same({ 1, 3 }, t:stride())
    assert.are.same({ { 0, 3 }, { 1, 4 }, { 2, 5 } }, t:totable())
    assert.is_false(t:is_contiguous())
    local c = t:contiguous()
    assert.is_true(c:is_contiguous())
    assert.are.same({ 2, 1 }, c:stride())
    assert.are.same(t:totable(), c:totable())
    local y = iota(2, 3, 4):transpose(1, 3)
    assert.are.same({ 4, 3, 2 }, y:size())
    assert.are.same({ 1, 4, 12 }, y:stride())
    assert.are.equal(1 + 2 * 4 + 1 * 12, y:get(2, 3, 2))
    assert.are.same(y:totable(), iota(2, 3, 4):transpose(-1, 1):totable())
  end)

  it("permute reorders dims and agrees with a naive index map", function()
    local x = iota(2, 3, 4)
    local p = x:permute(3, 1, 2)
    assert.are.same({ 4, 2, 3 }, p:size())
    assert.are.same({ 1, 12, 4 }, p:stride())
    for i = 1, 4 do
      for j = 1, 2 do
        for k = 1, 3 do
          assert.are.equal((j - 1) * 12 + (k - 1) * 4 + (i - 1), p:get(i, j, k))
        end
      end
    end
    assert.are.same(p:totable(), x:permute({ 3, 1, 2 }):totable())
    assert.are.same(x:totable(), p:permute(2, 3, 1):totable())
  end)

  it("unsqueeze and squeeze add and remove size-1 dims", function()
    local x = iota(2, 3)
    assert.are.same({ 1, 2, 3 }, x:unsqueeze(1):size())
    assert.are.same({ 2, 1, 3 }, x:unsqueeze(2):size())
    assert.are.same({ 2, 3, 1 }, x:unsqueeze(3):size())
    assert.are.same({ 2, 3, 1 }, x:unsqueeze(-1):size())
    assert.are.same({ { { 0, 1, 2 } }, { { 3, 4, 5 } } }, x:unsqueeze(2):totable())
    local t = x:t():unsqueeze(2) -- 3x1x2 over transposed strides
    assert.are.same({ { { 0, 3 } }, { { 1, 4 } }, { { 2, 5 } } }, t:totable())
    local y = iota(1, 3, 1, 2)
    assert.are.same({ 3, 2 }, y:squeeze():size())
    assert.are.same({ 3, 1, 2 }, y:squeeze(1):size())
    assert.are.same({ 1, 3, 2 }, y:squeeze(3):size())
    assert.are.same({ 1, 3, 1, 2 }, y:squeeze(2):size()) -- size 3: unchanged, as PyTorch
    assert.are.same({ { 0, 1 }, { 2, 3 }, { 4, 5 } }, y:squeeze():totable())
    assert.are.equal(0, pivq.ones(1, 1):squeeze():dim())
  end)

  it("expand broadcasts size-1 dims with stride 0", function()
    local x = pivq.tensor { { 1 }, { 2 } }
    local e = x:expand(2, 3)
    assert.are.same({ 2, 3 }, e:size())
    assert.are.same({ 1, 0 }, e:stride())
    assert.are.same({ { 1, 1, 1 }, { 2, 2, 2 } }, e:totable())
    local f = pivq.tensor { 1, 2, 3 }:expand(2, 2, 3)
    assert.are.same({ 0, 0, 1 }, f:stride())
    assert.are.same({ { { 1, 2, 3 }, { 1, 2, 3 } }, { { 1, 2, 3 }, { 1, 2, 3 } } }, f:totable())
    assert.are.same({ 2, 3 }, x:expand(-1, 3):size())
    assert.are.same({ 4, 2, 3 }, x:expand_as(pivq.zeros(4, 2, 3)):size())
    ref.raises(function() x:expand(3, 3) end, "expand", "2x1", "3x3")
    ref.raises(function() x:expand(3) end, "expand")
  end)

  it("view shares storage; the strides follow the hand computation", function()
    local x = iota(2, 3, 4)
    local v = x:view(6, 4)
    assert.are.same({ 4, 1 }, v:stride())
    v:set(6, 4, 100)
    assert.are.equal(100, x:get(2, 3, 4))
    assert.are.same({ 24 }, x:view(-1):size())
    assert.are.same({ 2, 12 }, x:view(2, -1):size())
    assert.are.same({ 1, 24, 1 }, x:view(1, -1, 1):size())
    -- a narrow along the outer dim stays viewable; the inner dims merge
    local n = iota(4, 3, 2):narrow(1, 2, 2)
    local nv = n:view(2, 6)
    assert.are.same({ 6, 1 }, nv:stride())
    assert.are.same({ { 6, 7, 8, 9, 10, 11 }, { 12, 13, 14, 15, 16, 17 } }, nv:totable())
    -- splitting a transposed dim is a view: (4x6)^T viewed as 3x2x4
    local t = iota(4, 6):t()
    local tv = t:view(3, 2, 4)
    assert.are.same({ 2, 1, 6 }, tv:stride())
    assert.are.same(t:contiguous():view(3, 2, 4):totable(), tv:totable())
  end)

  it("view refuses exactly the impossible cases (brute force over layouts)", function()
    local r = ref.rng(7)
    local layouts = {
      function() return iota(4, 6):t() end,
      function() return iota(2, 3, 4):permute(2, 1, 3) end,
      function() return iota(2, 3, 4):transpose(1, 3) end,
      function() return iota(6, 4):narrow(2, 2, 2) end,
      function() return iota(3, 1, 4):narrow(3, 1, 2) end,
      function() return iota(4, 1):t() end,
      function() return iota(2, 1, 3):transpose(1, 2) end,
      function() return pivq.tensor({ 1, 2, 3 }):view(3, 1):expand(3, 4) end,
      function() return iota(2, 3, 4, 5):narrow(4, 1, 4):select(1, 2) end,
      function() return iota(4, 4, 4):permute(3, 1, 2):narrow(2, 2, 2) end,
      function() return iota(1, 6) end,
    }
    -- and random layouts: shape, permutation, a narrow, sometimes an expanded size-1 dim
    for _ = 1, 40 do
      layouts[#layouts + 1] = function()
        local nd = r.int(2, 4)
        local shape = {}
        for d = 1, nd do shape[d] = r.int(1, 4) end
        local t = iota(unpack(shape))
        local perm = {}
        for d = 1, nd do table.insert(perm, r.int(1, #perm + 1), d) end
        t = t:permute(perm)
        local d = r.int(1, nd)
        local size = t:size(d)
        local start = r.int(1, size)
        t = t:narrow(d, start, r.int(1, size - start + 1))
        if r.next() < 0.3 then
          t = t:unsqueeze(r.int(1, nd + 1))
          local sz = t:size()
          for k = 1, #sz do if sz[k] == 1 then sz[k] = 2 break end end
          t = t:expand(sz)
        end
        return t
      end
    end
    local checked, refused = 0, 0
    for _, make in ipairs(layouts) do
      local t = make()
      local n = t:numel()
      -- candidate shapes: every ordered factorisation into 1..4 dims, padded with ones
      local shapes = {}
      local function factor(rem, acc)
        if rem == 1 then
          shapes[#shapes + 1] = { unpack(acc) }
          local padded = { unpack(acc) }
          table.insert(padded, r.int(1, #padded + 1), 1)
          shapes[#shapes + 1] = padded
          if #acc == 0 then return end
        end
        if #acc >= 4 then return end
        for f = 2, rem do
          if rem % f == 0 then
            acc[#acc + 1] = f
            factor(rem / f, acc)
            acc[#acc] = nil
          end
        end
      end
      factor(n, {})
      for _, shape in ipairs(shapes) do
        if #shape > 0 then
          local expect = viewable(t, shape)
          local ok, v = pcall(t.view, t, shape)
          assert(ok == expect, string.format("view of %s (strides %s) as %s: %s, expected %s",
            table.concat(t:size(), "x"), table.concat(t:stride(), ","), table.concat(shape, "x"),
            ok and "allowed" or ("refused: " .. tostring(v)), expect and "allowed" or "refused"))
          if ok then
            assert.are.same(t:contiguous():view(shape):totable(), v:totable())
            checked = checked + 1
          else
            assert.matches("view: a .* tensor with these strides cannot be viewed as", v)
            refused = refused + 1
          end
        end
      end
    end
    assert.is_true(checked > 20 and refused > 20)
  end)

  it("reshape copies only when a view is impossible", function()
    local x = iota(3, 4)
    local r = x:reshape(4, 3)
    r:set(1, 1, 42)
    assert.are.equal(42, x:get(1, 1)) -- a view: shares storage
    local t = x:t()
    local c = t:reshape(12)
    assert.are.same({ 42, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }, c:totable())
    c:set(2, -5)
    assert.are.equal(4, x:get(2, 1)) -- a copy: x untouched
    assert.are.same({ 12 }, x:flatten():size())
  end)

  it("contiguous returns the same storage when already contiguous", function()
    local x = iota(3, 4)
    local c = x:contiguous()
    assert.are.equal(0, offset_from(c, x))
    c:set(1, 1, 9)
    assert.are.equal(9, x:get(1, 1))
    local n = x:narrow(2, 1, 2):contiguous()
    assert.are.same({ 2, 1 }, n:stride())
    assert.are.same({ { 9, 1 }, { 4, 5 }, { 8, 9 } }, n:totable())
    -- size-1 dims with odd strides still count as contiguous
    assert.is_true(iota(4, 1):t():is_contiguous())
    assert.is_true(iota(3, 4):narrow(1, 2, 1):is_contiguous())
  end)

  it("transposing copies of larger tensors (the tiled path) keep every value", function()
    for _, case in ipairs({ { 37, 45 }, { 8, 300 }, { 300, 9 }, { 3, 20, 33 } }) do
      local x = iota(unpack(case))
      local n = #case
      local t = x:transpose(n - 1, n)
      local c = t:contiguous()
      assert.is_true(c:is_contiguous())
      local rows, cols = case[n], case[n - 1] -- t's last two sizes
      local outer = x:numel() / (rows * cols)
      local data = ref.from(c).data
      for o = 0, outer - 1 do
        for i = 0, rows - 1 do
          for j = 0, cols - 1 do
            -- t[o][i][j] = x[o][j][i] = o*rows*cols + j*rows + i
            local v = data[o * rows * cols + i * cols + j + 1]
            assert(v == o * rows * cols + j * rows + i, string.format("%s at %d,%d,%d: %s",
              table.concat(case, "x"), o, i, j, tostring(v)))
          end
        end
      end
      -- with a dtype conversion on the way, and into a strided destination
      assert.are.same(c:totable(), t:long():totable())
      local dst = pivq.zeros(rows, cols):t() -- x's shape, column-major
      if n == 2 then
        dst:copy(x)
        assert.are.same(x:totable(), dst:totable())
      end
    end
  end)

  it("overlapping copies and in-place ops read the source as it was", function()
    local x = pivq.arange(1, 5, "float32")
    x:narrow(1, 2, 4):copy(x:narrow(1, 1, 4)) -- shift right by one (memmove semantics)
    assert.are.same({ 1, 1, 2, 3, 4 }, x:totable())
    local y = pivq.arange(1, 5, "float32")
    y:narrow(1, 1, 4):copy(y:narrow(1, 2, 4)) -- shift left
    assert.are.same({ 2, 3, 4, 5, 5 }, y:totable())
    local m = pivq.tensor { { 1, 2 }, { 3, 4 } }
    m:add_(m:t()) -- reads the transpose of the original
    assert.are.same({ { 2, 5 }, { 5, 8 } }, m:totable())
    local r = pivq.tensor { { 1, 2 }, { 3, 4 }, { 5, 6 } }
    r:sub_(r[1]) -- row 1 broadcast over all rows, including itself
    assert.are.same({ { 0, 0 }, { 2, 2 }, { 4, 4 } }, r:totable())
    local same = pivq.tensor { 1, 2, 3 }
    same:mul_(same) -- the very same view: fine in place
    assert.are.same({ 1, 4, 9 }, same:totable())
  end)

  it("index syntax t[i] selects along the first dim and assigns", function()
    local x = iota(3, 2)
    assert.are.same({ 2, 3 }, x[2]:totable())
    assert.are.equal(3, x[2][2])
    x[3] = pivq.tensor { 7, 8 }
    x[1][2] = -1
    assert.are.same({ { 0, -1 }, { 2, 3 }, { 7, 8 } }, x:totable())
    assert.are.equal(3, #x)
    ref.raises(function() return x[4] end, "index 4 out of range for dim 1 of size 3")
    ref.raises(function() return x[0] end, "out of range")
    ref.raises(function() x[1] = "a" end, "index assignment: expected a number or a tensor, got string")
  end)

  it("copy broadcasts into strided destinations", function()
    local x = pivq.zeros(3, 4)
    x:t():copy(pivq.tensor { 1, 2, 3 })
    assert.are.same({ { 1, 1, 1, 1 }, { 2, 2, 2, 2 }, { 3, 3, 3, 3 } }, x:totable())
    x:narrow(2, 2, 2):copy(pivq.tensor { { 9 }, { 8 }, { 7 } })
    assert.are.same({ { 1, 9, 9, 1 }, { 2, 8, 8, 2 }, { 3, 7, 7, 3 } }, x:totable())
    ref.raises(function() x:copy(pivq.zeros(2, 4)) end,
      "copy: source of shape 2x4 cannot be broadcast to 3x4")
  end)
end)
