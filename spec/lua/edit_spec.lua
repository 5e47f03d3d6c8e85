-- Attribute editing by codes (pivq.edit, m:edit): the exchange rule on hand-computed weights,
-- and the probe's ranking on a toy code distribution with planted attribute codes, where the
-- edit must replace exactly the planted codes.
local pivq = require "pivq"
local edit = require "pivq.eval.edit"

-- K = 6 weights: code 4 speaks most for the attribute, code 2 most against it
local W = { 0.5, -2, 0, 3, -1, 1 }

describe("pivq.edit.apply", function()
  it("exchanges the lowest-weight codes for the highest absent ones (hand-computed)", function()
    local row, removed, added = edit.apply({ 1, 2, 3 }, W, 1)
    assert.are.same({ 1, 3, 4 }, row)
    assert.are.same({ 2 }, removed)
    assert.are.same({ 4 }, added)
    row, removed, added = edit.apply({ 1, 2, 3 }, W, 2)
    assert.are.same({ 1, 4, 6 }, row) -- out: 2 (-2), 3 (0); in: 4 (3), 6 (1)
    assert.are.same({ 2, 3 }, removed)
    assert.are.same({ 4, 6 }, added)
    assert.are.same({ 1, 2, 3 }, (edit.apply({ 1, 2, 3 }, W, 0)))
  end)

  it("keeps slot order for a positional model and takes a multiset's repeats one by one", function()
    assert.are.same({ 3, 4, 1 }, (edit.apply({ 3, 2, 1 }, W, 1, { positional = true })))
    -- both occurrences of code 2 are the lowest; the additions are codes not in the row
    local row, removed, added = edit.apply({ 2, 2, 1 }, W, 2)
    assert.are.same({ 1, 4, 6 }, row)
    assert.are.same({ 2, 2 }, removed)
    assert.are.same({ 4, 6 }, added)
  end)

  it("accepts a weight tensor and breaks ties by the lower code", function()
    local row = edit.apply({ 5, 6 }, pivq.tensor({ 1, 1, 1, 1, 0, 0 }), 1)
    assert.are.same({ 1, 6 }, row) -- out: 5 (tie with 6, lower code); in: 1 (tie of 1..4, lower code)
  end)

  it("refuses a strength it cannot honour, naming it", function()
    assert.has_error(function() edit.apply({ 1, 2, 3 }, W, 4) end,
      "edit.apply: the strength n must be an integer in 0..3 (the image's 3 codes; 3 codes are not in it), got 4")
    assert.has_error(function() edit.apply({ 1, 2, 3, 4, 5 }, W, 2) end,
      "edit.apply: the strength n must be an integer in 0..1 (the image's 5 codes; 1 codes are not in it), got 2")
    assert.has_error(function() edit.apply({ 1, 7 }, W, 1) end, "edit.apply: code 7 (entry 2) is not in 1..6")
    assert.has_error(function() edit.apply({ 1 }, W, 1, { nope = true }) end)
  end)
end)

describe("pivq.edit.random_exchange", function()
  it("replaces n positions by n distinct codes that were not there", function()
    local g = pivq.Generator(5)
    for _ = 1, 20 do
      local row, removed, added = edit.random_exchange({ 1, 2, 3, 4 }, 2, 10, g)
      assert.are.equal(4, #row)
      assert.are.equal(2, #removed)
      local seen = {}
      for _, k in ipairs(row) do
        assert.is_nil(seen[k])
        seen[k] = true
      end
      for _, k in ipairs(added) do assert.is_true(k > 4 and k <= 10) end
      for _, k in ipairs(removed) do assert.is_nil(seen[k]) end
    end
  end)
end)

describe("editing a toy model with planted attribute codes", function()
  -- 400 images of L = 4 codes from K = 12: an image with the attribute holds code 7, one
  -- without holds code 3; the other three codes come at random from the neutral codes.
  local K, L, N = 12, 4, 400
  local neutral = { 1, 2, 4, 5, 6, 8, 9, 10, 11, 12 }
  local function toy()
    local g = pivq.Generator(11)
    local rows, values = {}, {}
    for i = 1, N do
      local has = i % 2 == 0
      local row, used = { has and 7 or 3 }, {}
      while #row < L do
        local k = neutral[pivq.randint(1, #neutral + 1, { 1 }, { generator = g })[1]]
        if not used[k] then
          used[k] = true
          row[#row + 1] = k
        end
      end
      table.sort(row)
      rows[i], values[i] = row, has and 1 or -1
    end
    return pivq.tensor(rows, "int64"), pivq.tensor(values, "int64")
  end

  it("ranks the planted codes first and last, and the edit swaps exactly them", function()
    local codes, values = toy()
    local w = edit.code_weights(codes, values, K)
    local wl = w:totable()
    for k = 1, K do
      if k ~= 7 then assert.is_true(wl[7] > wl[k], "code 7 must rank first") end
      if k ~= 3 then assert.is_true(wl[3] < wl[k], "code 3 must rank last") end
    end
    -- every image without the attribute: strength 1 takes out 3 and puts in 7, nothing else
    local rows = codes:totable()
    for i = 1, N, 2 do
      local out, removed, added = edit.apply(rows[i], w, 1)
      assert.are.same({ 3 }, removed)
      assert.are.same({ 7 }, added)
      local expect = {}
      for _, k in ipairs(rows[i]) do expect[#expect + 1] = k == 3 and 7 or k end
      table.sort(expect)
      assert.are.same(expect, out)
    end
  end)

  it("m:edit takes a CodeSet, a list of them or a (B, L) tensor, and a matching model's set stays a set", function()
    local codes, values = toy()
    local w = edit.code_weights(codes, values, K)
    local m = pivq.PIVQ { image_size = 28, patch = 7, width = 16, heads = 2, enc_depth = 1, dec_depth = 1, L = L, K = K,
      c = 4 }
    local s = pivq.CodeSet({ 1, 2, 3, 4 }, { K = K })
    local e, info = m:edit(s, w, 1)
    assert.is_true(pivq.CodeSet.is_codeset(e))
    assert.are.same({ 1, 2, 4, 7 }, e:totable())
    assert.are.same({ 3 }, info.removed)
    local list = m:edit({ s, pivq.CodeSet({ 3, 5, 6, 8 }, { K = K }) }, w, 1)
    assert.are.same({ 5, 6, 7, 8 }, list[2]:totable())
    local t = m:edit(pivq.tensor({ { 1, 2, 3, 4 } }, "int64"), w, 2)
    assert.are.equal(4, t:size(2))
    local row = t[1]:totable()
    local seen = {}
    for _, k in ipairs(row) do
      assert.is_nil(seen[k])
      seen[k] = true
    end
    assert.is_true(seen[7])
    assert.is_nil(seen[3])
    assert.has_error(function() m:edit(s, pivq.zeros(5), 1) end,
      "PIVQ:edit: weights must be a tensor of K = 12 numbers, got 5")
  end)

  it("refuses an attribute that never varies", function()
    local codes = pivq.tensor({ { 1, 2 }, { 3, 4 } }, "int64")
    assert.has_error(function() edit.code_weights(codes, pivq.tensor({ 1, 1 }, "int64"), 4) end,
      "edit.code_weights: the attribute is present on all 2 images: nothing to rank codes by")
  end)

  it("finds attributes and classes by name, refusing unknown ones with the list", function()
    local ds = { attributes = pivq.tensor({ { 1, -1 }, { -1, 1 } }, "int64"), attribute_names = { "Smiling", "Male" } }
    local col, name = edit.attribute_column(ds, "male")
    assert.are.equal("Male", name)
    assert.are.same({ -1, 1 }, col:totable())
    assert.has_error(function() edit.attribute_column(ds, "Hat") end,
      "edit: unknown attribute 'Hat' (the dataset's: Smiling, Male)")
    local labelled = { labels = pivq.tensor({ 2, 1, 2 }, "int64") }
    col, name = edit.attribute_column(labelled, "trouser")
    assert.are.equal("Trouser", name)
    assert.are.same({ 1, -1, 1 }, col:totable())
    assert.are.same({ -1, 1, -1 }, (edit.attribute_column(labelled, 1)):totable())
  end)
end)
