-- pivq.plot: line plots as SVG text (no dependencies; any browser or notebook shows them).
-- Used for the capacity figure and training curves.
--   pivq.plot.line{title=, xlabel=, ylabel=, logx=false, series={{name=, x={...}, y={...}}, ...}}
--   (a series may set marker = true for squares at its points, line = false for markers alone;
--   pivq.display.raster draws the same spec as a PNG)
-- returns the SVG document as a string; pivq.plot.save(path, spec) writes it; pivq.plot.show(spec)
-- puts it in a notebook (image/svg+xml through pivq.display; elsewhere its title prints).
local M = {}

local COLORS = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf" }

local function escape(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

-- "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten (also
-- pivq.eval.charts' PNG axes).
local function ticks(lo, hi, count)
  if hi <= lo then return { lo } end
  local raw = (hi - lo) / count
  local mag = 10 ^ math.floor(math.log10(raw))
  local step = mag
  for _, m in ipairs({ 1, 2, 5, 10 }) do
    if raw <= m * mag then
      step = m * mag
      break
    end
  end
  local out = {}
  for v = math.ceil(lo / step) * step, hi + step * 1e-9, step do out[#out + 1] = v end
  return out
end

local function fmt_number(v)
  if v == math.floor(v) and math.abs(v) < 1e6 then return string.format("%d", v) end
  return string.format("%.3g", v)
end

-- The axes of a spec: tx (x to axis units: log2 with logx) and the ranges xmin, xmax (in axis
-- units), ymin, ymax over the series' finite points (spec.ymin overrides ymin); shared with the
-- PNG plots (pivq.display.raster).
function M.bounds(spec)
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
  return tx, xmin, xmax, ymin, ymax
end

function M.line(spec)
  assert(type(spec) == "table" and type(spec.series) == "table", "plot.line: need {series = {...}}")
  local W, H = spec.width or 720, spec.height or 440
  local ml, mr, mt, mb = 70, 160, 40, 50
  local pw, ph = W - ml - mr, H - mt - mb
  local tx, xmin, xmax, ymin, ymax = M.bounds(spec)
  local function px(x) return ml + (tx(x) - xmin) / (xmax - xmin) * pw end
  local function py(y) return mt + ph - (y - ymin) / (ymax - ymin) * ph end
  local out = {}
  local function add(...) out[#out + 1] = string.format(...) end
  add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">', W, H)
  add('<rect width="%d" height="%d" fill="white"/>', W, H)
  add('<text x="%d" y="24" font-size="15" text-anchor="middle">%s</text>', ml + pw / 2, escape(spec.title or ""))
  -- axes and grid
  for _, v in ipairs(ticks(ymin, ymax, 6)) do
    local y = py(v)
    add('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>', ml, y, ml + pw, y)
    add('<text x="%d" y="%.1f" text-anchor="end">%s</text>', ml - 6, y + 4, fmt_number(v))
  end
  local xt = spec.logx and ticks(xmin, xmax, 10) or ticks(xmin, xmax, 8)
  for _, v in ipairs(xt) do
    local label = spec.logx and fmt_number(2 ^ v) or fmt_number(v)
    local x = ml + (v - xmin) / (xmax - xmin) * pw
    add('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>', x, mt, x, mt + ph)
    add('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', x, mt + ph + 16, label)
  end
  add('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>', ml, mt, pw, ph)
  add('<text x="%d" y="%d" text-anchor="middle">%s</text>', ml + pw / 2, H - 10, escape(spec.xlabel or ""))
  add('<text transform="translate(16,%d) rotate(-90)" text-anchor="middle">%s</text>', mt + ph / 2,
    escape(spec.ylabel or ""))
  -- series and legend
  for k, s in ipairs(spec.series) do
    local color = s.color or COLORS[(k - 1) % #COLORS + 1]
    if type(color) == "table" then -- {r, g, b} in [0, 1], as pivq.display.raster takes it
      color = string.format("#%02x%02x%02x", math.floor(color[1] * 255 + 0.5), math.floor(color[2] * 255 + 0.5),
        math.floor(color[3] * 255 + 0.5))
    end
    local pts = {}
    for i = 1, #s.x do
      local y = s.y[i]
      if y == y and math.abs(y) ~= math.huge then pts[#pts + 1] = string.format("%.1f,%.1f", px(s.x[i]), py(y)) end
    end
    if s.line ~= false then
      add('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>', color, table.concat(pts, " "))
    end
    if s.marker then -- squares at the points
      for _, pt in ipairs(pts) do
        local x, y = pt:match("^(.-),(.*)$")
        add('<rect x="%.1f" y="%.1f" width="7" height="7" fill="%s"/>', tonumber(x) - 3.5, tonumber(y) - 3.5, color)
      end
    end
    local ly = mt + 10 + (k - 1) * 20
    if s.line ~= false then
      add('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>',
        ml + pw + 10, ly, ml + pw + 30, ly, color)
    end
    if s.marker then add('<rect x="%d" y="%d" width="7" height="7" fill="%s"/>', ml + pw + 17, ly - 3, color) end
    add('<text x="%d" y="%d">%s</text>', ml + pw + 36, ly + 4, escape(s.name or ("series " .. k)))
  end
  add("</svg>")
  return table.concat(out, "\n") .. "\n"
end

M.ticks, M.fmt_number = ticks, fmt_number -- shared with the PNG plots (pivq.display.raster)

-- true, or nil, err: written atomically (pivq.files.write_text), every write checked.
function M.save(path, spec)
  local ok, err = require("pivq.data.files").write_text(path, M.line(spec))
  if not ok then return nil, "plot.save: " .. err end
  return true
end

function M.show(spec)
  local svg = M.line(spec)
  require("pivq.display").mime({ ["image/svg+xml"] = svg,
    ["text/plain"] = "<plot: " .. (spec.title or "") .. ">" })
end

return M
