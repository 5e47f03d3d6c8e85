-- pivq.show: draw images in the terminal. Each character cell shows two pixels stacked, using
-- the upper half block "▀" with a 24-bit foreground (top pixel) and background (bottom pixel)
-- colour; terminals without 24-bit colour get an ASCII brightness ramp instead.
--
--   pivq.show(img)                 -- C x H x W (C = 1 or 3), values in [0, 1]
--   pivq.show(batch, {ncol = 8})   -- N x C x H x W, side by side in rows of ncol
--   pivq.show(img, {ascii = true}) -- force the plain-text rendering
-- Returns the text it printed (print = false returns it without printing).
local tensor = require "pivq.core.tensor"

local M = {}

local RAMP = " .:-=+*#%@"

local function truecolor()
  local ct = os.getenv("COLORTERM") or ""
  return ct == "truecolor" or ct == "24bit"
end

-- Lay a batch out as one C x H x W canvas (1 pixel gaps), ncol images per row.
local function canvas_of(t, ncol)
  if t:dim() == 3 then return t end
  local n, c, h, w = t:size(1), t:size(2), t:size(3), t:size(4)
  ncol = math.min(ncol, n)
  local nrow = math.ceil(n / ncol)
  local canvas = tensor.zeros(c, nrow * (h + 1) - 1, ncol * (w + 1) - 1)
  for i = 1, n do
    local r, col = math.floor((i - 1) / ncol), (i - 1) % ncol
    canvas:narrow(2, r * (h + 1) + 1, h):narrow(3, col * (w + 1) + 1, w):copy(t[i])
  end
  return canvas
end

function M.render(img, opts)
  opts = opts or {}
  if not tensor.is_tensor(img) or (img:dim() ~= 3 and img:dim() ~= 4) then
    error("show: expected a C x H x W image or an N x C x H x W batch", 3)
  end
  local c = img:size(img:dim() - 2)
  if c ~= 1 and c ~= 3 then error("show: images must have 1 or 3 channels, got " .. c, 3) end
  local canvas = canvas_of(img:float(), opts.ncol or 8):clamp(0, 1)
  local H, W = canvas:size(2), canvas:size(3)
  local px = canvas:contiguous()
  local p = px:data_ptr()
  local function rgb(y, x) -- 0-based; rows past the bottom read as black
    if y >= H then return 0, 0, 0 end
    local function ch(k) return math.floor(p[(k * H + y) * W + x] * 255 + 0.5) end
    if c == 1 then
      local v = ch(0)
      return v, v, v
    end
    return ch(0), ch(1), ch(2)
  end
  local lines = {}
  local ascii = opts.ascii or (opts.ascii == nil and not truecolor())
  for y = 0, H - 1, 2 do
    local cells = {}
    for x = 0, W - 1 do
      local r1, g1, b1 = rgb(y, x)
      local r2, g2, b2 = rgb(y + 1, x)
      if ascii then
        local lum = (0.299 * (r1 + r2) + 0.587 * (g1 + g2) + 0.114 * (b1 + b2)) / 510
        local k = math.min(#RAMP, math.floor(lum * #RAMP) + 1)
        cells[#cells + 1] = RAMP:sub(k, k)
      else
        cells[#cells + 1] = string.format("\27[38;2;%d;%d;%dm\27[48;2;%d;%d;%dm▀", r1, g1, b1, r2, g2, b2)
      end
    end
    lines[#lines + 1] = table.concat(cells) .. (ascii and "" or "\27[0m")
  end
  return table.concat(lines, "\n")
end

function M.show(img, opts)
  local text = M.render(img, opts)
  if not opts or opts.print ~= false then print(text) end
  return text
end

return M
