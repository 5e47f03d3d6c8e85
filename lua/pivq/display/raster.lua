-- pivq.display.raster: drawing into an RGB image with no fonts or plotting library — a canvas
-- with rectangles, lines, markers and a built-in 3x5 pixel font (upper-case letters, digits and
-- a little punctuation), and a line plot as PNG from the spec pivq.plot.line takes. The Figure-5
-- bar chart (pivq.eval.figure5) and the measured Figure 4 (`pivq capacity --measure`) use it.
--
--   local c = raster.canvas(W, H)                  -- white; c.p[channel][y][x] in [0, 1]
--   raster.rect(c, y, x, h, w, rgb); raster.text(c, y, x, "TEXT", rgb); raster.line(c, x0, y0, x1, y1, rgb)
--   raster.image(c)                                -- 3 x H x W float32 tensor
--   raster.save_plot(path, spec)                   -- pivq.plot.line's spec as a PNG
local tensor = require "pivq.core.tensor"

local M = {}

-- 3x5 glyphs, rows top to bottom, "#" = ink
M.GLYPHS = {
  A = ".#.#.#####.##.#", B = "##.#.###.#.###.", C = ".###..#..#...##", D = "##.#.##.##.###.",
  E = "####..##.#..###", F = "####..##.#..#..", G = ".###..#.##.#.##", H = "#.##.#####.##.#",
  I = "###.#..#..#.###", J = "..#..#..##.#.#.", K = "#.##.###.#.##.#", L = "#..#..#..#..###",
  M = "#.########.##.#", N = "##.#.##.##.##.#", O = ".#.#.##.##.#.#.", P = "##.#.###.#..#..",
  Q = ".#.#.##.###..##", R = "##.#.###.#.##.#", S = ".###...#...###.", T = "###.#..#..#..#.",
  U = "#.##.##.##.####", V = "#.##.##.##.#.#.", W = "#.##.########.#", X = "#.##.#.#.#.##.#",
  Y = "#.##.#.#..#..#.", Z = "###..#.#.#..###", ["0"] = "####.##.##.####", ["1"] = ".#.##..#..#.###",
  ["2"] = "##...#.#.#..###", ["3"] = "##...#.#...###.", ["4"] = "#.##.####..#..#", ["5"] = "####..##...###.",
  ["6"] = ".###..####.####", ["7"] = "###..#.#..#..#.", ["8"] = "####.#####.####", ["9"] = "####.####..###.",
  ["_"] = "............###", ["-"] = "......###......", ["."] = ".............#.", ["%"] = "#.#..#.#.#..#.#",
  ["("] = ".#.#..#..#...#.", [")"] = "#...#..#..#.#..", ["="] = "...###...###...", [","] = "..........#.#..",
  ["/"] = "..#..#.#.#..#..", [":"] = "....#.....#....", ["+"] = "....#.###.#....",
  [" "] = "...............",
}

M.SCALE = 2 -- pixels per font pixel

function M.canvas(W, H)
  local p = {}
  for k = 1, 3 do
    p[k] = {}
    for y = 1, H do
      local row = {}
      for x = 1, W do row[x] = 1 end
      p[k][y] = row
    end
  end
  return { p = p, H = H, W = W }
end

function M.put(img, y, x, rgb)
  if y >= 1 and y <= img.H and x >= 1 and x <= img.W then
    for k = 1, 3 do img.p[k][y][x] = rgb[k] end
  end
end

function M.rect(img, y0, x0, h, w, rgb)
  for y = y0, y0 + h - 1 do
    for x = x0, x0 + w - 1 do M.put(img, y, x, rgb) end
  end
end

-- The width in pixels of s in the font.
function M.text_width(s) return #s * 4 * M.SCALE end

function M.text(img, y0, x0, s, rgb)
  s = s:upper()
  local S = M.SCALE
  for i = 1, #s do
    local g = M.GLYPHS[s:sub(i, i)] or M.GLYPHS[" "]
    for r = 0, 4 do
      for c = 0, 2 do
        if g:sub(r * 3 + c + 1, r * 3 + c + 1) == "#" then
          M.rect(img, y0 + r * S, x0 + (i - 1) * 4 * S + c * S, S, S, rgb)
        end
      end
    end
  end
end

-- A line of the given thickness (pixels) from (x0, y0) to (x1, y1), in steps of half a pixel.
function M.line(img, x0, y0, x1, y1, rgb, thick)
  thick = thick or 2
  local n = math.max(1, math.ceil(2 * math.max(math.abs(x1 - x0), math.abs(y1 - y0))))
  local h = math.floor(thick / 2)
  for t = 0, n do
    local x, y = x0 + (x1 - x0) * t / n, y0 + (y1 - y0) * t / n
    M.rect(img, math.floor(y + 0.5) - h, math.floor(x + 0.5) - h, thick, thick, rgb)
  end
end

function M.image(img) return tensor.tensor(img.p):float() end

local COLORS = { { 0.12, 0.47, 0.71 }, { 0.84, 0.15, 0.16 }, { 0.17, 0.63, 0.17 }, { 0.58, 0.40, 0.74 },
  { 1.0, 0.50, 0.05 }, { 0.55, 0.34, 0.29 }, { 0.09, 0.75, 0.81 }, { 0.5, 0.5, 0.5 } }
M.COLORS = COLORS

local plot = require "pivq.display.plot"
local nice_ticks, label = plot.ticks, plot.fmt_number

-- The line plot of spec (pivq.plot.line's: title, xlabel, ylabel, logx, ymin, series = {{name =,
-- x =, y =, color = {r, g, b} or nil, marker = true (squares at the points), line = false (markers
-- only)}, ...}) as a 3 x H x W image; notes = {"...", ...} print under the legend.
function M.plot(spec)
  assert(type(spec) == "table" and type(spec.series) == "table", "raster.plot: need {series = {...}}")
  local W, H = spec.width or 900, spec.height or 520
  local ml, mr, mt, mb = 70, 300, 40, 50
  local pw, ph = W - ml - mr, H - mt - mb
  local tx = spec.logx and function(x) return math.log(x) / math.log(2) end or function(x) return x end
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  for _, s in ipairs(spec.series) do
    for i = 1, #s.x do
      local x, y = tx(s.x[i]), s.y[i]
      if y == y and math.abs(y) ~= math.huge then
        xmin, xmax = math.min(xmin, x), math.max(xmax, x)
        ymin, ymax = math.min(ymin, y), math.max(ymax, y)
      end
    end
  end
  if xmin > xmax then xmin, xmax, ymin, ymax = 0, 1, 0, 1 end
  if spec.ymin then ymin = spec.ymin end
  if xmax == xmin then xmax = xmin + 1 end
  if ymax == ymin then ymax = ymin + 1 end
  ymax = ymax + 0.04 * (ymax - ymin)
  local function px(x) return ml + (tx(x) - xmin) / (xmax - xmin) * pw end
  local function py(y) return mt + ph - (y - ymin) / (ymax - ymin) * ph end
  local img = M.canvas(W, H)
  local black, grey = { 0, 0, 0 }, { 0.87, 0.87, 0.87 }
  M.text(img, 12, math.max(4, ml + math.floor((pw - M.text_width(spec.title or "")) / 2)), spec.title or "", black)
  for _, v in ipairs(nice_ticks(ymin, ymax, 6)) do
    local y = math.floor(py(v) + 0.5)
    M.rect(img, y, ml, 1, pw, grey)
    local s = label(v)
    M.text(img, y - 5, ml - 6 - M.text_width(s), s, black)
  end
  local xt = spec.logx and nice_ticks(xmin, xmax, 10) or nice_ticks(xmin, xmax, 8)
  for _, v in ipairs(xt) do
    local x = math.floor(ml + (v - xmin) / (xmax - xmin) * pw + 0.5)
    M.rect(img, mt, x, ph, 1, grey)
    local s = spec.logx and label(2 ^ v) or label(v)
    M.text(img, mt + ph + 6, x - math.floor(M.text_width(s) / 2), s, black)
  end
  M.rect(img, mt, ml, 1, pw, black)
  M.rect(img, mt + ph, ml, 1, pw + 1, black)
  M.rect(img, mt, ml, ph, 1, black)
  M.rect(img, mt, ml + pw, ph, 1, black)
  M.text(img, H - 16, ml + math.floor((pw - M.text_width(spec.xlabel or "")) / 2), spec.xlabel or "", black)
  M.text(img, mt - 14, 4, spec.ylabel or "", black)
  for k, s in ipairs(spec.series) do
    local color = s.color or COLORS[(k - 1) % #COLORS + 1]
    if type(color) == "string" then -- "#rrggbb", as pivq.plot takes it
      local r, g, b = color:match("^#(%x%x)(%x%x)(%x%x)$")
      color = r and { tonumber(r, 16) / 255, tonumber(g, 16) / 255, tonumber(b, 16) / 255 } or { 0, 0, 0 }
    end
    local last
    for i = 1, #s.x do
      local y = s.y[i]
      if y == y and math.abs(y) ~= math.huge then
        local x1, y1 = px(s.x[i]), py(y)
        if last and s.line ~= false then M.line(img, last[1], last[2], x1, y1, color, s.thick or 2) end
        if s.marker then M.rect(img, math.floor(y1 + 0.5) - 3, math.floor(x1 + 0.5) - 3, 7, 7, color) end
        last = { x1, y1 }
      else
        last = nil
      end
    end
    local ly = mt + 6 + (k - 1) * 18
    if s.line ~= false then M.line(img, ml + pw + 10, ly + 4, ml + pw + 30, ly + 4, color, 2) end
    if s.marker then M.rect(img, ly + 1, ml + pw + 17, 7, 7, color) end
    M.text(img, ly, ml + pw + 36, s.name or ("series " .. k), black)
  end
  for i, note in ipairs(spec.notes or {}) do
    M.text(img, mt + 6 + (#spec.series + i) * 18, ml + pw + 10, note, black)
  end
  return M.image(img)
end

-- true, or nil, err: the plot written as a PNG (pivq.image.save: atomic, checked).
function M.save_plot(path, spec)
  return require("pivq.data.image").save(path, M.plot(spec))
end

return M
