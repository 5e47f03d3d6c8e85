-- pivq.plot: line plots as SVG; plot.show publishes one through pivq.display (a notebook's sink).
local plot = require "pivq.display.plot"
local display = require "pivq.display"

local spec = {
  title = "a & b", xlabel = "x", ylabel = "y", ymin = 0,
  series = {
    { name = "up", x = { 1, 2, 3 }, y = { 0, 1, 2 } },
    { name = "gap", x = { 1, 2, 3 }, y = { 1, 0 / 0, 3 } },
  },
}

describe("pivq.plot", function()
  it("draws one polyline per series, skipping missing points, with escaped text", function()
    local svg = plot.line(spec)
    assert.matches("^<svg", svg)
    assert.matches("a &amp; b", svg, 1, true)
    local lines = {}
    for pts in svg:gmatch('<polyline[^>]-points="([^"]*)"') do
      local n = 0
      for _ in pts:gmatch("[%d.]+,[%d.]+") do n = n + 1 end
      lines[#lines + 1] = n
    end
    assert.are.same({ 3, 2 }, lines) -- the NaN point is left out
  end)

  it("shows a plot as an SVG bundle through the display sink", function()
    local shown = {}
    display.set_sink(function(bundle) shown[#shown + 1] = bundle end)
    local ok, err = pcall(plot.show, spec)
    display.set_sink(nil)
    assert(ok, err)
    assert.are.equal(1, #shown)
    assert.are.equal(plot.line(spec), shown[1]["image/svg+xml"])
    assert.are.equal("<plot: a & b>", shown[1]["text/plain"])
  end)
end)
