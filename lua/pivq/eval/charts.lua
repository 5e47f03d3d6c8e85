-- pivq.eval.charts: the memorisation histogram as a PNG image (issue 20), drawn with figure5's
-- canvas and 3x5 pixel font (upper-case letters, digits, _ - . %), so it needs no fonts or
-- plotting library. (The fidelity-diversity curve is a line plot: pivq.display.raster.plot.)
--
--   charts.histogram(groups, {title =, bins = 40, threshold =}) -> 3 x H x W float32 image:
--     groups = {{name =, values = 1-D tensor or list}, ...} overlaid as step outlines over
--     shared bins, each normalised to its share per bin; threshold draws a vertical red line
--   charts.save(path, image) -> true or nil, err (pivq.image.save: atomic, checked)
local fig = require "pivq.eval.figure5"
local tensor = require "pivq.core.tensor"

local M = {}

-- series colours; red is kept for the threshold line
local COLORS = { { 0.12, 0.47, 0.71 }, { 1.0, 0.50, 0.05 }, { 0.17, 0.63, 0.17 }, { 0.58, 0.40, 0.74 },
  { 0.55, 0.34, 0.29 }, { 0.09, 0.75, 0.81 } }
local BLACK, GREY, RED = { 0, 0, 0 }, { 0.85, 0.85, 0.85 }, { 0.85, 0.1, 0.1 }
local S = fig.SCALE
local CW = 4 * S -- character width

-- a list of finite numbers from a 1-D tensor or a Lua list; raises naming fname and what
local function numbers(fname, what, v)
  if tensor.is_tensor(v) then
    if v:dim() ~= 1 then error(string.format("%s: %s must be 1-D, got %d dims", fname, what, v:dim()), 3) end
    v = v:float():totable()
  end
  if type(v) ~= "table" or #v == 0 then
    error(string.format("%s: %s must be a non-empty list or 1-D tensor of numbers, got %s", fname, what, type(v)), 3)
  end
  for i, x in ipairs(v) do
    if type(x) ~= "number" or x ~= x or math.abs(x) == math.huge then
      error(string.format("%s: %s[%d] must be a finite number, got %s", fname, what, i, tostring(x)), 3)
    end
  end
  return v
end

local function check_opts(fname, opts, valid)
  opts = require("pivq.core.argcheck").options(fname, opts, valid)
  if opts.title ~= nil and type(opts.title) ~= "string" then
    error(fname .. ": title must be a string, got " .. type(opts.title), 3)
  end
  if opts.xlabel ~= nil and type(opts.xlabel) ~= "string" then
    error(fname .. ": xlabel must be a string, got " .. type(opts.xlabel), 3)
  end
  for _, key in ipairs({ "threshold", "ymax" }) do
    local v = opts[key]
    if v ~= nil and (type(v) ~= "number" or v ~= v or math.abs(v) == math.huge) then
      error(string.format("%s: %s must be a finite number, got %s", fname, key, tostring(v)), 3)
    end
  end
  if opts.bins ~= nil and (type(opts.bins) ~= "number" or opts.bins % 1 ~= 0 or opts.bins < 1 or opts.bins > 1000) then
    error(fname .. ": bins must be an integer in 1..1000, got " .. tostring(opts.bins), 3)
  end
  return opts
end

-- a line of 1-pixel dots from (y0, x0) to (y1, x1)
local function segment(img, y0, x0, y1, x1, rgb)
  local n = math.max(math.abs(y1 - y0), math.abs(x1 - x0), 1)
  for i = 0, n do
    local y, x = math.floor(y0 + (y1 - y0) * i / n + 0.5), math.floor(x0 + (x1 - x0) * i / n + 0.5)
    fig.rect(img, y, x, 2, 2, rgb)
  end
end

local function fmt(v)
  if math.abs(v - math.floor(v + 0.5)) < 1e-9 and math.abs(v) < 1e5 then return string.format("%d", v) end
  return string.format("%.2f", v)
end

local ticks = require("pivq.display.plot").ticks

-- a frame with axes, ticks and labels; returns the canvas and the x/y -> pixel maps
local function frame(opts, xmin, xmax, ymin, ymax, legend)
  local ml, mr, mt, mb, pw, ph = 10 * CW, 4 + 18 * CW, 6 * S * 2, 8 * S * 2, 420, 240
  local img = fig.canvas(mt + ph + mb, ml + pw + mr)
  fig.text(img, 4, 4, opts.title or "", BLACK)
  local function px(x) return ml + math.floor((x - xmin) / (xmax - xmin) * (pw - 1) + 0.5) end
  local function py(y) return mt + ph - 1 - math.floor((y - ymin) / (ymax - ymin) * (ph - 1) + 0.5) end
  for _, v in ipairs(ticks(ymin, ymax, 4)) do
    fig.rect(img, py(v), ml, 1, pw, GREY)
    local label = fmt(v)
    fig.text(img, py(v) - 2 * S, ml - (#label + 1) * CW, label, BLACK)
  end
  for _, v in ipairs(ticks(xmin, xmax, 5)) do
    fig.rect(img, mt, px(v), ph, 1, GREY)
    local label = fmt(v)
    fig.text(img, mt + ph + 4, math.max(1, px(v) - #label * CW / 2), label, BLACK)
  end
  fig.rect(img, mt, ml, ph, 1, BLACK)
  fig.rect(img, mt + ph - 1, ml, 1, pw, BLACK)
  fig.text(img, mt + ph + 6 * S + 6, ml + math.floor(pw / 2 - #(opts.xlabel or "") * CW / 2), opts.xlabel or "", BLACK)
  for i, name in ipairs(legend) do
    local y = mt + (i - 1) * 8 * S
    fig.rect(img, y + 2 * S - 1, ml + pw + 6, 3, 3 * CW, COLORS[(i - 1) % #COLORS + 1])
    fig.text(img, y, ml + pw + 10 + 3 * CW, name, BLACK)
  end
  return img, px, py, ml, mt, pw, ph
end

function M.histogram(groups, opts)
  opts = check_opts("charts.histogram", opts, { "title", "bins", "threshold", "xlabel" })
  if type(groups) ~= "table" or #groups == 0 then
    error("charts.histogram: groups must be a non-empty list of {name =, values =}", 2)
  end
  local bins = opts.bins or 40
  local lo, hi, lists, names = math.huge, -math.huge, {}, {}
  for i, g in ipairs(groups) do
    if type(g) ~= "table" then error(string.format("charts.histogram: group %d must be {name =, values =}", i), 2) end
    lists[i] = numbers("charts.histogram", string.format("groups[%d].values", i), g.values)
    names[i] = tostring(g.name or ("group " .. i))
    for _, v in ipairs(lists[i]) do lo, hi = math.min(lo, v), math.max(hi, v) end
  end
  lo = math.min(lo, 0)
  if hi <= lo then hi = lo + 1 end
  local width = (hi - lo) / bins
  local shares, top = {}, 0
  for i, l in ipairs(lists) do
    local c = {}
    for b = 1, bins do c[b] = 0 end
    for _, v in ipairs(l) do
      local b = math.min(bins, math.floor((v - lo) / width) + 1)
      c[b] = c[b] + 1 / #l
    end
    shares[i] = c
    for b = 1, bins do top = math.max(top, c[b]) end
  end
  local img, px, py = frame({ title = opts.title, xlabel = opts.xlabel or "DISTANCE TO THE NEAREST TRAINING IMAGE" },
    lo, hi, 0, top, names)
  for i, c in ipairs(shares) do
    local color = COLORS[(i - 1) % #COLORS + 1]
    local prev = py(0)
    for b = 1, bins do
      local x0, x1, y = px(lo + (b - 1) * width), px(lo + b * width), py(c[b])
      segment(img, prev, x0, y, x0, color)
      segment(img, y, x0, y, x1, color)
      prev = y
    end
    segment(img, prev, px(hi), py(0), px(hi), color)
  end
  if opts.threshold then
    local x = px(math.max(lo, math.min(hi, opts.threshold)))
    fig.rect(img, py(top), x, py(0) - py(top) + 1, 2, RED)
  end
  return fig.to_image(img)
end

function M.save(path, image)
  if type(path) ~= "string" then error("charts.save: path must be a string, got " .. type(path), 2) end
  if not tensor.is_tensor(image) or image:dim() ~= 3 then
    error("charts.save: image must be a 3 x H x W tensor (charts.histogram, charts.lines)", 2)
  end
  local ok, err = require("pivq.data.image").save(path, image)
  if not ok then return nil, "charts.save: " .. tostring(err) end
  return true
end

return M
