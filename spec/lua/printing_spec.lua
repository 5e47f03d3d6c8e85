-- Printing (lua/pivq/core/printing.lua): Torch7-style text, one format per tensor so columns line
-- up, exact int64, huge/small/non-finite floats, summaries of large tensors.
local pivq = require "pivq"

describe("tostring of tensors", function()
  it("prints integral floats without decimals and a footer", function()
    assert.are.equal(" 1 2\n 3 4\n[pivq.Tensor float32 of size 2x2]", tostring(pivq.tensor { { 1, 2 }, { 3,
      4 } }))
    assert.are.equal(" 1\n 2\n[pivq.Tensor float32 of size 2]", tostring(pivq.tensor { 1, 2 }))
  end)

  it("aligns fractional values with a fixed precision", function()
    assert.are.equal("  0.5000 -1.2500\n 10.0000  0.1000\n[pivq.Tensor float32 of size 2x2]",
      tostring(pivq.tensor { { 0.5, -1.25 }, { 10, 0.1 } }))
  end)

  it("switches to exponent notation for huge and tiny magnitudes", function()
    assert.are.equal(" 1.0000e-30\n 1.0000e+30\n[pivq.Tensor float32 of size 2]",
      tostring(pivq.tensor { 1e-30, 1e30 }))
    assert.are.equal(" 1.2346e+05\n[pivq.Tensor float32 of size 1]", tostring(pivq.tensor { 123456.5 }))
    assert.are.equal(" 1.0000e-05\n 0.0000e+00\n[pivq.Tensor float32 of size 2]",
      tostring(pivq.tensor { 1e-5, 0 }))
    assert.are.equal(" 3.0000e+09\n[pivq.Tensor float32 of size 1]", tostring(pivq.tensor { 3e9 }))
    assert.are.equal(" 123456\n[pivq.Tensor float32 of size 1]", tostring(pivq.tensor { 123456 }))
  end)

  it("prints nan and inf (never -nan)", function()
    assert.are.equal("    1\n  nan\n  inf\n -inf\n[pivq.Tensor float32 of size 4]",
      tostring(pivq.tensor { 1, 0 / 0, math.huge, -math.huge }))
  end)

  it("prints int64 exactly, including the extremes", function()
    local x = pivq.zeros(3, "int64")
    local p = x:data_ptr()
    p[0] = 9223372036854775807LL
    p[1] = -9223372036854775807LL - 1
    p[2] = 9007199254740993LL -- 2^53 + 1: not a Lua number
    assert.are.equal("  9223372036854775807\n -9223372036854775808\n     9007199254740993\n"
      .. "[pivq.Tensor int64 of size 3]", tostring(x))
    assert.are.equal(" 255   0\n[pivq.Tensor uint8 of size 1x2]", tostring(pivq.tensor({ { 255, 0 } },
      "uint8")))
  end)

  it("prints scalars, empty tensors and 3-D slices", function()
    assert.are.equal("7\n[pivq.Tensor float32 of size scalar]", tostring(pivq.tensor(7)))
    assert.are.equal("[empty tensor]\n[pivq.Tensor float32 of size 0x3]", tostring(pivq.zeros(0, 3)))
    local s = tostring(pivq.arange(1, 8):view(2, 2, 2))
    assert.are.equal("(1,.,.) = \n 1 2\n 3 4\n\n(2,.,.) = \n 5 6\n 7 8\n\n"
      .. "[pivq.Tensor int64 of size 2x2x2]", s)
  end)

  it("summarises large tensors with the first and last rows and columns", function()
    local s = tostring(pivq.arange(1, 2000):view(40, 50))
    local lines = {}
    for l in s:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(8, #lines) -- 3 rows, "...", 3 rows, footer
    assert.are.equal("    1    2    3 ...   48   49   50", lines[1])
    assert.are.equal(" ...", lines[4])
    assert.are.equal(" 1951 1952 1953 ... 1998 1999 2000", lines[7])
    assert.are.equal("[pivq.Tensor int64 of size 40x50 | min 1 max 2000 mean 1000.5]", lines[8])
    -- a 512-element vector: 3 first and 3 last values, not 512 lines; the stats against Lua's own
    local v = pivq.randn(512)
    local vals, lo, hi, sum = v:totable(), math.huge, -math.huge, 0
    for _, x in ipairs(vals) do lo, hi, sum = math.min(lo, x), math.max(hi, x), sum + x end
    lines = {}
    for l in tostring(v):gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(8, #lines)
    assert.are.equal(" ...", lines[4])
    local mn, mx, mean = lines[8]:match("^%[pivq.Tensor float32 of size 512 | min (%S+) max (%S+) mean (%S+)%]$")
    assert.is_truthy(mn, lines[8])
    assert.is_true(math.abs(tonumber(mn) - lo) < 1e-3 and math.abs(tonumber(mx) - hi) < 1e-3)
    assert.is_true(math.abs(tonumber(mean) - sum / 512) < 1e-3)
    assert.are.equal(24, #tostring(pivq.arange(1, 24)):gsub("[^\n]", "")) -- 24 values + footer: in full
    assert.are.equal(7, #tostring(pivq.arange(1, 25)):gsub("[^\n]", "")) -- 25: summarised
    -- strided views print their own values
    assert.are.equal(" 1 3\n 2 4\n[pivq.Tensor float32 of size 2x2]", tostring(pivq.tensor { { 1, 2 }, { 3,
      4 } }:t()))
  end)
end)

describe("pretty", function()
  local pretty = require "pivq.display.pretty"
  it("formats nested tables with sorted keys, strings quoted, cycles marked", function()
    assert.are.equal('{1, 2, a = "x", b = {c = true}}', pretty.format { 1, 2, a = "x", b = { c = true } })
    local t = {}
    t.self = t
    assert.are.equal("{self = <cycle>}", pretty.format(t))
    assert.are.equal("{...}", pretty.format({ { { { { 1 } } } } }, { depth = 1 }):match("{%.%.%.}"))
    assert.matches("%[pivq.Tensor float32 of size 2%]", pretty.format { x = pivq.ones(2) })
  end)
end)
