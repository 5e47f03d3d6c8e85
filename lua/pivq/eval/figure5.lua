-- pivq.eval.figure5: the per-attribute probe as a bar chart PNG (the paper's Figure 5): one row
-- per attribute, its name, a bar of the probe's accuracy and a mark at the majority-class
-- baseline, on a 50-100% scale. Drawn into a tensor with a built-in 3x5 pixel font (upper-case
-- letters, digits, _ - . %), so it needs no fonts or plotting library.
local tensor = require "pivq.core.tensor"

local M = {}

-- 3x5 glyphs, rows top to bottom, "#" = ink
local GLYPHS = {
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
  [" "] = "...............",
}

local SCALE = 2 -- pixels per font pixel

local function put(img, y, x, rgb)
  if y >= 1 and y <= img.H and x >= 1 and x <= img.W then
    for k = 1, 3 do img.p[k][y][x] = rgb[k] end
  end
end

local function rect(img, y0, x0, h, w, rgb)
  for y = y0, y0 + h - 1 do
    for x = x0, x0 + w - 1 do put(img, y, x, rgb) end
  end
end

local function text(img, y0, x0, s, rgb)
  s = s:upper()
  for i = 1, #s do
    local g = GLYPHS[s:sub(i, i)] or GLYPHS[" "]
    for r = 0, 4 do
      for c = 0, 2 do
        if g:sub(r * 3 + c + 1, r * 3 + c + 1) == "#" then
          rect(img, y0 + r * SCALE, x0 + (i - 1) * 4 * SCALE + c * SCALE, SCALE, SCALE, rgb)
        end
      end
    end
  end
end

-- A white canvas {p = 3 planes of H rows of W values, H =, W =}; to_image makes it a tensor.
local function canvas(H, W)
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

-- the drawing helpers, for the other raster charts (pivq.eval.charts): canvas(H, W),
-- rect(img, y, x, h, w, rgb), text(img, y, x, s, rgb) (4 * SCALE pixels per character, 5 * SCALE
-- high), to_image(img) -> 3 x H x W float32
M.canvas, M.rect, M.text, M.SCALE = canvas, rect, text, SCALE
function M.to_image(img) return tensor.tensor(img.p):float() end

-- M.render(rows [, {title =}]) -> 3 x H x W float32 image. rows: probe.attributes' result.
function M.render(rows, opts)
  opts = opts or {}
  if type(rows) ~= "table" or #rows == 0 then error("figure5.render: rows must be a non-empty list", 2) end
  local longest = 0
  for _, r in ipairs(rows) do longest = math.max(longest, #r.name) end
  local row_h, bar_w = 7 * SCALE + 4, 300
  local label_w = (longest + 1) * 4 * SCALE
  local value_w = 6 * 4 * SCALE
  local top = 2 * row_h
  local W, H = label_w + bar_w + value_w + 8, top + #rows * row_h + row_h + 4
  -- draw into Lua arrays, then one tensor
  local img = canvas(H, W)
  local p = img.p
  local black, blue, red, grey = { 0, 0, 0 }, { 0.22, 0.42, 0.75 }, { 0.85, 0.15, 0.1 }, { 0.8, 0.8, 0.8 }
  text(img, 4, 4, opts.title or "PROBE ACCURACY BLUE - MAJORITY BASELINE RED", black)
  local x0 = label_w + 4
  local function xof(acc) return x0 + math.floor(math.max(0, math.min(1, (acc - 0.5) / 0.5)) * (bar_w - 1)) end
  for _, v in ipairs({ 0.5, 0.6, 0.7, 0.8, 0.9, 1.0 }) do
    rect(img, top - 4, xof(v), #rows * row_h + 4, 1, grey)
  end
  for i, r in ipairs(rows) do
    local y = top + (i - 1) * row_h
    text(img, y + 2, 4, r.name, black)
    local xe = xof(r.accuracy_mean)
    rect(img, y + 2, x0, 5 * SCALE, math.max(1, xe - x0 + 1), blue)
    rect(img, y, xof(r.baseline_mean), 5 * SCALE + 4, SCALE, red)
    text(img, y + 2, x0 + bar_w + 6, string.format("%.1f", 100 * r.accuracy_mean), black)
  end
  local yb = top + #rows * row_h + 4
  for _, v in ipairs({ 50, 75, 100 }) do
    local s = tostring(v) .. "%"
    text(img, yb, math.min(W - #s * 4 * SCALE, math.max(1, xof(v / 100) - #s * 2 * SCALE)), s, black)
  end
  return tensor.tensor(p):float()
end

-- M.save(path, rows [, opts]) -> true or nil, err
function M.save(path, rows, opts)
  return require("pivq.data.image").save(path, M.render(rows, opts))
end

return M
