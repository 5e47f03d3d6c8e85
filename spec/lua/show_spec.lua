-- pivq.show on tiny images: exact escape sequences for half blocks (24-bit and 256-colour), the
-- ASCII ramp, the modes each terminal gets, fitting the width, captions, the PNG protocols, and
-- nothing returned to echo.
local pivq = require "pivq"
local show = require "pivq.display.show"

local function render(img, opts) return pivq.show(img, opts) end

describe("pivq.show", function()
  it("draws two pixel rows per line with 24-bit colours", function()
    local img = pivq.tensor { { { 1, 0 }, { 0, 1 } } } -- 1 x 2 x 2
    local text = render(img, { mode = "truecolor", print = false })
    local white, black = "255;255;255", "0;0;0"
    local want = "\27[38;2;" .. white .. "m\27[48;2;" .. black .. "m▀"
      .. "\27[38;2;" .. black .. "m\27[48;2;" .. white .. "m▀\27[0m"
    assert.are.equal(want, text)
  end)

  it("uses colour channels for RGB and pads an odd last row with black", function()
    local img = pivq.zeros(3, 1, 1)
    img[1][1][1] = 1 -- red
    assert.are.equal("\27[38;2;255;0;0m\27[48;2;0;0;0m▀\27[0m", render(img, { mode = "truecolor", print = false }))
    -- the 256-colour palette: pure red is cube colour 16 + 36 * 5 = 196, black 16
    assert.are.equal("\27[38;5;196m\27[48;5;16m▀\27[0m", render(img, { mode = "256", print = false }))
  end)

  it("falls back to an ASCII brightness ramp", function()
    local img = pivq.tensor { { { 0, 1 }, { 0, 1 } } }
    assert.are.equal(" @", render(img, { ascii = true, print = false }))
  end)

  it("lays a batch out side by side with one-pixel gaps, as many as fit the width", function()
    local batch = pivq.ones(3, 1, 2, 2)
    assert.are.equal("@@ @@ @@", render(batch, { mode = "ascii", print = false, ncol = 3 }))
    -- 6 columns fit two 2-pixel images with their gap, not three (8 columns): a second row,
    -- whose first line pairs the gap row (black) with white ("+", half brightness)
    assert.are.equal("@@ @@\n++   \n++   ", render(batch, { mode = "ascii", print = false, width = 6 }))
    -- one 10-pixel image in 5 columns is shrunk by 2
    local wide = pivq.ones(1, 4, 10) -- 4 x 10 in 5 columns: shrunk by 2 to 2 x 5, one line
    assert.are.equal("@@@@@", render(wide, { mode = "ascii", print = false, width = 5 }))
  end)

  it("shows a list of images side by side with captions under them", function()
    local a, b = pivq.ones(1, 2, 3), pivq.zeros(1, 2, 3)
    local text = render({ a, b }, { mode = "ascii", print = false, captions = { "original", "decoded" } })
    assert.are.equal("@@@    \nori dec", text) -- each caption cut to its image's 3 columns
  end)

  it("prints and returns nothing, so the REPL echoes nothing", function()
    local n = select("#", pivq.show(pivq.zeros(1, 2, 2), { mode = "ascii", width = 10 }))
    assert.are.equal(0, n)
  end)

  it("picks the mode from the terminal: truecolor through tmux and screen, 256, kitty, iTerm2", function()
    local function with(vars) return show.detect(function(k) return vars[k] or "" end) end
    assert.are.equal("truecolor", with({ COLORTERM = "truecolor", TERM = "xterm-256color" }))
    assert.are.equal("truecolor", with({ TERM = "tmux-256color" })) -- tmux drops COLORTERM
    assert.are.equal("truecolor", with({ TERM = "screen", STY = "1.pts" }))
    assert.are.equal("256", with({ TERM = "xterm-256color" }))
    assert.are.equal("ascii", with({ TERM = "vt100" }))
    assert.are.equal("kitty", with({ TERM = "xterm-kitty" }))
    assert.are.equal("iterm", with({ TERM_PROGRAM = "iTerm.app" }))
    assert.are.equal("ascii", with({ PIVQ_SHOW = "ascii", COLORTERM = "truecolor" }))
  end)

  it("sends a real PNG through the kitty and iTerm2 protocols", function()
    local img = pivq.rand(3, 4, 5)
    local png = require("pivq.display").encode_png(img)
    assert.are.equal("\137PNG", png:sub(1, 4))
    local kitty = render(img, { mode = "kitty", print = false })
    assert.are.equal("\27_Gf=100,a=T,m=0;" .. show.base64(png) .. "\27\\", kitty)
    local iterm = render(img, { mode = "iterm", print = false })
    assert.are.equal("\27]1337;File=inline=1;size=" .. #png .. ":" .. show.base64(png) .. "\7", iterm)
    assert.are.equal("TWFu", show.base64("Man"))
    assert.are.equal("TWE=", show.base64("Ma"))
    assert.are.equal("TQ==", show.base64("M"))
  end)

  it("rejects what it cannot draw, and unknown options", function()
    assert.has_error(function() pivq.show(pivq.zeros(2, 4, 4), { print = false }) end)
    assert.has_error(function() pivq.show(pivq.zeros(4, 4), { print = false }) end)
    assert.has_error(function() pivq.show(pivq.zeros(1, 4, 4), { nrow = 2, print = false }) end,
      "show: unknown option 'nrow' (ncol, captions, mode, width, print)")
  end)
end)
