-- pivq.eval.figure5: the per-attribute probe as a bar chart PNG (the paper's Figure 5): one row
-- per attribute, its name, a bar of the probe's accuracy and a mark at the majority-class
-- baseline, on a 50-100% scale. Drawn with pivq.display.raster (a built-in 3x5 pixel font), so
-- it needs no fonts or plotting library.
local raster = require "pivq.display.raster"

local M = {}

local SCALE, rect, text = raster.SCALE, raster.rect, raster.text

-- the drawing helpers, for the other raster charts (pivq.eval.charts): canvas(H, W),
-- rect(img, y, x, h, w, rgb), text(img, y, x, s, rgb) (4 * SCALE pixels per character, 5 * SCALE
-- high), to_image(img) -> 3 x H x W float32 (pivq.display.raster's, with its font)
M.rect, M.text, M.SCALE, M.to_image = rect, text, SCALE, raster.image
function M.canvas(H, W) return raster.canvas(W, H) end

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
  local img = raster.canvas(W, H)
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
  return raster.image(img)
end

-- M.save(path, rows [, opts]) -> true or nil, err
function M.save(path, rows, opts)
  return require("pivq.data.image").save(path, M.render(rows, opts))
end

return M
