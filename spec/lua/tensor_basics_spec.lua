-- Smoke checks of the binding: construction, printing, arithmetic operators, errors.
local pivq = require "pivq"

describe("pivq.tensor", function()
  it("builds from nested tables and reads back", function()
    local t = pivq.tensor { { 1, 2, 3 }, { 4, 5, 6 } }
    assert.are.same({ 2, 3 }, t:size())
    assert.are.equal("float32", t:dtype())
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, t:totable())
  end)

  it("uses metamethods for + and - (not pointer arithmetic)", function()
    local a = pivq.tensor { 1, 2 }
    local b = pivq.tensor { 10, 20 }
    assert.are.same({ 11, 22 }, (a + b):totable())
    assert.are.same({ 9, 18 }, (b - a):totable())
    assert.are.same({ 2, 3 }, (a + 1):totable())
    assert.are.same({ 0, -1 }, (1 - a):totable())
  end)

  it("raises errors that name the function and shapes", function()
    local ok, err = pcall(function() return pivq.zeros(2, 3) + pivq.zeros(4, 3) end)
    assert.is_false(ok)
    assert.matches("add: shapes 2x3 and 4x3 cannot broadcast", err, 1, true)
  end)

  it("prints Torch7-style", function()
    local s = tostring(pivq.tensor { { 1, 2 }, { 3, 4 } })
    assert.are.equal(" 1 2\n 3 4\n[pivq.Tensor float32 of size 2x2]", s)
  end)
end)
