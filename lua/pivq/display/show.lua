-- pivq.show: draw images in the terminal, fitted to its width.
--
--   pivq.show(img)                    -- C x H x W (C = 1 or 3), values in [0, 1]
--   pivq.show(batch)                  -- N x C x H x W: a grid, as many per row as the width allows
--   pivq.show({a, b, c}, {captions = {"original", "decoded", "edited"}})  -- side by side, captioned
--   require("pivq.display.show").compare(a, b [, c])  -- captioned original | decoded | edited
--   opts: ncol (images per row; default: what fits), captions, mode, width (columns; default the
--         terminal's), print = false (return the text instead of printing it)
-- It prints and returns nothing (so the REPL echoes nothing); print = false returns the text.
--
-- How it draws (opts.mode, or PIVQ_SHOW in the environment, or detected):
--   "kitty"     the kitty graphics protocol (TERM=xterm-kitty, KITTY_WINDOW_ID): a real PNG
--   "iterm"     iTerm2's inline images (TERM_PROGRAM=iTerm.app or WezTerm): a real PNG
--   "truecolor" half blocks "▀" with 24-bit colours, two pixel rows per line: COLORTERM=truecolor
--               or 24bit, and inside tmux or screen (TMUX, STY, TERM=tmux-*/screen-*), which do not
--               pass COLORTERM on but convert 24-bit colours for the outer terminal themselves
--   "256"       half blocks with the 256-colour palette (TERM=*-256color)
--   "ascii"     a brightness ramp, for anything else
-- Sixel is not offered: the terminals that have it here also have one of the above. A grid wider
-- than the terminal is shrunk (nearest neighbour, an integer factor) until it fits.
local tensor = require "pivq.core.tensor"
local ffi = require "ffi"

local M = {}

local RAMP = " .:-=+*#%@"

local function env(name) return os.getenv(name) or "" end

-- the drawing mode for this terminal (see the header)
function M.detect(getenv)
  getenv = getenv or env
  local forced = getenv("PIVQ_SHOW")
  if forced ~= "" then return forced end
  local term, ct = getenv("TERM"), getenv("COLORTERM")
  if term == "xterm-kitty" or getenv("KITTY_WINDOW_ID") ~= "" then return "kitty" end
  local program = getenv("TERM_PROGRAM")
  if program == "iTerm.app" or program == "WezTerm" then return "iterm" end
  if ct == "truecolor" or ct == "24bit" then return "truecolor" end
  if getenv("TMUX") ~= "" or getenv("STY") ~= "" or term:match("^tmux") or term:match("^screen") then
    return "truecolor"
  end
  if term:match("256color") then return "256" end
  return "ascii"
end

local registry = debug.getregistry()
if not registry["pivq.show.winsize"] then
  pcall(ffi.cdef, "struct pivq_winsize { unsigned short row, col, xpixel, ypixel; };")
  pcall(ffi.cdef, "int ioctl(int fd, unsigned long request, ...);")
  registry["pivq.show.winsize"] = true
end

-- the terminal's width in columns: $COLUMNS, else the tty's (TIOCGWINSZ), else 80
function M.columns()
  local c = tonumber(env("COLUMNS"))
  if c and c > 0 then return c end
  local ws = ffi.new("struct pivq_winsize")
  local ok, rc = pcall(ffi.C.ioctl, 1, 0x5413, ws)
  if ok and rc == 0 and ws.col > 0 then return ws.col end
  return 80
end

-- list of C x H x W images (a batch splits into its images)
local function images_of(img, level)
  local list = {}
  if tensor.is_tensor(img) then
    if img:dim() == 3 then
      list[1] = img
    elseif img:dim() == 4 then
      for i = 1, img:size(1) do list[i] = img[i] end
    else
      error("show: expected a C x H x W image, an N x C x H x W batch or a list of images, got "
        .. img:dim() .. " dims", level)
    end
  elseif type(img) == "table" and #img > 0 then
    for i, t in ipairs(img) do
      if not tensor.is_tensor(t) or (t:dim() ~= 3 and not (t:dim() == 4 and t:size(1) == 1)) then
        error(string.format("show: entry %d of the list must be a C x H x W image (or 1 x C x H x W)", i), level)
      end
      list[i] = t:dim() == 4 and t[1] or t
    end
  else
    error("show: expected a C x H x W image, an N x C x H x W batch or a list of images, got " .. type(img), level)
  end
  local c = list[1]:size(1)
  for i, t in ipairs(list) do
    if t:size(1) ~= 1 and t:size(1) ~= 3 then
      error("show: images must have 1 or 3 channels, got " .. t:size(1), level)
    end
    if t:size(1) ~= c and c == 1 then c = 3 end
    list[i] = t:float()
  end
  return list, c
end

-- one C x H x W canvas: ncol images per row, one-pixel gaps, each image at the top left of a
-- cell of the largest size; grey images become RGB when mixed with colour ones
local function canvas_of(list, c, ncol)
  local h, w = 0, 0
  for _, t in ipairs(list) do h, w = math.max(h, t:size(2)), math.max(w, t:size(3)) end
  local n = #list
  local nrow = math.ceil(n / ncol)
  local canvas = tensor.zeros(c, nrow * (h + 1) - 1, ncol * (w + 1) - 1)
  for i, t in ipairs(list) do
    local r, col = math.floor((i - 1) / ncol), (i - 1) % ncol
    if t:size(1) ~= c then t = t:expand(c, t:size(2), t:size(3)) end
    canvas:narrow(2, r * (h + 1) + 1, t:size(2)):narrow(3, col * (w + 1) + 1, t:size(3)):copy(t)
  end
  return canvas, h, w
end

-- every f-th pixel (nearest-neighbour shrink by an integer factor)
local function shrink(t, f)
  if f == 1 then return t end
  local idx_h, idx_w = {}, {}
  for i = 1, t:size(2), f do idx_h[#idx_h + 1] = i end
  for i = 1, t:size(3), f do idx_w[#idx_w + 1] = i end
  return t:index_select(2, tensor.tensor(idx_h, "int64")):index_select(3, tensor.tensor(idx_w, "int64"))
end

-- the nearest of the 256-colour palette's 6x6x6 cube and grey ramp
local function xterm256(r, g, b)
  local function cube(v) return v < 48 and 0 or (v < 115 and 1 or math.floor((v - 35) / 40)) end
  local cr, cg, cb = cube(r), cube(g), cube(b)
  local levels = { [0] = 0, 95, 135, 175, 215, 255 }
  local dc = (levels[cr] - r) ^ 2 + (levels[cg] - g) ^ 2 + (levels[cb] - b) ^ 2
  local grey = math.max(0, math.min(23, math.floor(((r + g + b) / 3 - 8) / 10 + 0.5)))
  local gv = 8 + 10 * grey
  local dg = (gv - r) ^ 2 + (gv - g) ^ 2 + (gv - b) ^ 2
  if dg < dc then return 232 + grey end
  return 16 + 36 * cr + 6 * cg + cb
end

local function cells(canvas, c, mode)
  local H, W = canvas:size(2), canvas:size(3)
  local px = canvas:clamp(0, 1):contiguous()
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
  for y = 0, H - 1, 2 do
    local row = {}
    for x = 0, W - 1 do
      local r1, g1, b1 = rgb(y, x)
      local r2, g2, b2 = rgb(y + 1, x)
      if mode == "ascii" then
        local lum = (0.299 * (r1 + r2) + 0.587 * (g1 + g2) + 0.114 * (b1 + b2)) / 510
        local k = math.min(#RAMP, math.floor(lum * #RAMP) + 1)
        row[#row + 1] = RAMP:sub(k, k)
      elseif mode == "256" then
        row[#row + 1] = string.format("\27[38;5;%dm\27[48;5;%dm▀", xterm256(r1, g1, b1), xterm256(r2, g2, b2))
      else
        row[#row + 1] = string.format("\27[38;2;%d;%d;%dm\27[48;2;%d;%d;%dm▀", r1, g1, b1, r2, g2, b2)
      end
    end
    lines[#lines + 1] = table.concat(row) .. (mode == "ascii" and "" or "\27[0m")
  end
  return lines
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for j = 3, 0, -1 do
      local v = math.floor(n / 64 ^ j) % 64
      q[#q + 1] = B64:sub(v + 1, v + 1)
    end
    if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end
M.base64 = base64

local function png_escape(canvas, mode)
  local bytes = require("pivq.display").encode_png(canvas)
  local data = base64(bytes)
  if mode == "iterm" then return "\27]1337;File=inline=1;size=" .. #bytes .. ":" .. data .. "\7" end
  -- kitty: chunks of at most 4096 base64 bytes, m=1 on all but the last
  local parts = {}
  for i = 1, #data, 4096 do
    local chunk = data:sub(i, i + 4095)
    local more = i + 4096 <= #data and 1 or 0
    parts[#parts + 1] = (i == 1 and "\27_Gf=100,a=T,m=" or "\27_Gm=") .. more .. ";" .. chunk .. "\27\\"
  end
  return table.concat(parts)
end

local KNOWN = { ncol = true, captions = true, mode = true, width = true, print = true, ascii = true }

function M.render(img, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("show: options must be a table, got " .. type(opts), 3) end
  for k in pairs(opts) do
    if not KNOWN[k] then error(string.format("show: unknown option '%s' (ncol, captions, mode, width, print)",
      tostring(k)), 3) end
  end
  local list, c = images_of(img, 4)
  local mode = opts.mode or (opts.ascii == true and "ascii") or (opts.ascii == false and "truecolor") or M.detect()
  if not ({ kitty = true, iterm = true, truecolor = true, ["256"] = true, ascii = true })[mode] then
    error(string.format("show: unknown mode '%s' (kitty, iterm, truecolor, 256, ascii)", tostring(mode)), 3)
  end
  local width = opts.width or M.columns()
  local w = 0
  for _, t in ipairs(list) do w = math.max(w, t:size(3)) end
  -- images per row: what fits the width (at full size), at least one
  local ncol = opts.ncol or math.max(1, math.min(#list, math.floor((width + 1) / (w + 1))))
  local canvas = canvas_of(list, c, ncol)
  if mode == "kitty" or mode == "iterm" then return png_escape(canvas, mode) end
  local f = 1
  while math.ceil(canvas:size(3) / f) > width and f < canvas:size(3) do f = f + 1 end
  if not opts.captions then return table.concat(cells(shrink(canvas, f), c, mode), "\n") end
  -- captions: each row of images drawn on its own, then a line of captions cut to the images' width
  local cell = math.ceil((w + 1) / f)
  local lines = {}
  for first = 1, #list, ncol do
    local row = {}
    for i = first, math.min(#list, first + ncol - 1) do row[#row + 1] = list[i] end
    for _, line in ipairs(cells(shrink(canvas_of(row, c, ncol), f), c, mode)) do lines[#lines + 1] = line end
    local caps = {}
    for j = first, first + #row - 1 do
      local text = tostring(opts.captions[j] or "")
      caps[#caps + 1] = (text .. string.rep(" ", cell)):sub(1, cell - 1)
    end
    lines[#lines + 1] = (table.concat(caps, " "):gsub("%s+$", ""))
  end
  return table.concat(lines, "\n")
end

function M.show(img, opts)
  local text = M.render(img, opts)
  if opts and opts.print == false then return text end
  io.write(text, "\n")
  io.flush()
end

-- original | decoded | edited, side by side and captioned
function M.compare(...)
  local list = { ... }
  local captions = { "original", "decoded", "edited" }
  for i = 4, #list do captions[i] = "image " .. i end
  return M.show(list, { captions = captions })
end

return M
