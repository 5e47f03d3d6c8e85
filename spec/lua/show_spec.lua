-- pivq.show on tiny images: exact escape sequences for half blocks, and the ASCII ramp.
local pivq = require "pivq"

describe("pivq.show", function()
  it("draws two pixel rows per line with 24-bit colours", function()
    local img = pivq.tensor { { { 1, 0 }, { 0, 1 } } } -- 1 x 2 x 2
    local text = pivq.show(img, { ascii = false, print = false })
    local white, black = "255;255;255", "0;0;0"
    local want = "\27[38;2;" .. white .. "m\27[48;2;" .. black .. "m▀"
      .. "\27[38;2;" .. black .. "m\27[48;2;" .. white .. "m▀\27[0m"
    assert.are.equal(want, text)
  end)

  it("uses colour channels for RGB and pads an odd last row with black", function()
    local img = pivq.zeros(3, 1, 1)
    img[1][1][1] = 1 -- red
    local text = pivq.show(img, { ascii = false, print = false })
    assert.are.equal("\27[38;2;255;0;0m\27[48;2;0;0;0m▀\27[0m", text)
  end)

  it("falls back to an ASCII brightness ramp", function()
    local img = pivq.tensor { { { 0, 1 }, { 0, 1 } } }
    assert.are.equal(" @", pivq.show(img, { ascii = true, print = false }))
  end)

  it("lays a batch out side by side with one-pixel gaps", function()
    local batch = pivq.ones(3, 1, 2, 2)
    local text = pivq.show(batch, { ascii = true, print = false, ncol = 3 })
    assert.are.equal("@@ @@ @@", text)
  end)

  it("rejects what it cannot draw", function()
    assert.has_error(function() pivq.show(pivq.zeros(2, 4, 4), { print = false }) end)
    assert.has_error(function() pivq.show(pivq.zeros(4, 4), { print = false }) end)
  end)
end)
