-- pivq.image: image files (PNG through libpng, JPEG through libjpeg-turbo), resizing,
-- centre-cropping and grids for looking at batches.
--
-- Images are C x H x W float32 tensors in [0, 1]. A file that cannot be read or decoded
-- returns nil, err (the message names the file and the problem); wrong arguments raise.
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local tensor = require "pivq.core.tensor"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"

local C = state.C
local wrap = gc.wrap
local M = {}

local function last_error() return ffi.string(C.pivq_last_error()) end

local function check_tensor(fname, t, level)
  if not tensor.is_tensor(t) then
    error(string.format("%s: expected a tensor, got %s", fname, type(t)), level + 1)
  end
end

local function check_size(fname, what, v, level)
  if type(v) ~= "number" or v % 1 ~= 0 or v < 1 or v > 2 ^ 31 then
    error(string.format("%s: %s must be a positive integer up to 2^31, got %s", fname, what, tostring(v)),
      level + 1)
  end
end

-- pivq.image.load(path) -> C x H x W float32 in [0, 1] (C = 1, 2, 3 or 4), or nil, err
function M.load(path)
  if type(path) ~= "string" then error("image.load: path must be a string", 2) end
  local p = C.pivq_image_read(path)
  if p == nil then return nil, last_error() end
  return wrap(p)
end

-- pivq.image.decode(bytes [, name]) -> the same from a Lua string holding a file's bytes
function M.decode(bytes, name)
  if type(bytes) ~= "string" then error("image.decode: bytes must be a string", 2) end
  local p = C.pivq_image_decode(bytes, #bytes, name or "<string>")
  if p == nil then return nil, last_error() end
  return wrap(p)
end

local function is_jpeg_name(path)
  local ext = path:match("%.([^./]+)$")
  ext = ext and ext:lower()
  return ext == "jpg" or ext == "jpeg"
end

local BACKGROUNDS = { white = { 1, 1, 1 }, black = { 0, 0, 0 } }

-- pivq.image.background(v) -> {r, g, b}, name: a background for alpha compositing, "white"
-- (also for nil), "black" or {r, g, b} in [0, 1], as three numbers and a canonical name for
-- cache keys and checkpoints ("white", "0.5,0.2,1").
function M.background(v, fname, level)
  fname, level = fname or "image.background", (level or 1) + 1
  if v == nil then v = "white" end
  local rgb = BACKGROUNDS[v]
  if not rgb then
    if type(v) ~= "table" or #v ~= 3 then
      error(string.format("%s: background must be \"white\", \"black\" or {r, g, b} in [0, 1], got %s",
        fname, type(v) == "table" and ("a table of " .. #v .. " values") or tostring(v)), level)
    end
    for k = 1, 3 do
      if type(v[k]) ~= "number" or not (v[k] >= 0 and v[k] <= 1) then
        error(string.format("%s: background[%d] must be a number in [0, 1], got %s", fname, k,
          tostring(v[k])), level)
      end
    end
    rgb = { v[1], v[2], v[3] }
  end
  local name = type(v) == "string" and v or table.concat({ string.format("%.6g", rgb[1]),
    string.format("%.6g", rgb[2]), string.format("%.6g", rgb[3]) }, ",")
  return rgb, name
end

-- pivq.image.composite(t [, background]) -> t over an opaque background ("white" by default,
-- "black" or {r, g, b} in [0, 1]) with straight alpha: a * colour + (1 - a) * background. RGBA
-- gives RGB, gray+alpha gives gray (over a colour: RGB); gray and RGB come back as they are.
function M.composite(t, background)
  check_tensor("image.composite", t, 2)
  local rgb = M.background(background, "image.composite", 2)
  local dt = t:dtype()
  if dt == "uint8" then t = M.to_float(t)
  elseif dt ~= "float32" then
    error("image.composite: expected a float32 or uint8 C x H x W image, got " .. dt .. " "
      .. argcheck.shape_string(t), 2)
  end
  local p = C.pivq_image_composite(t.c, ffi.new("float[3]", rgb[1], rgb[2], rgb[3]))
  if p == nil then error(last_error(), 2) end
  return wrap(p)
end

-- pivq.image.save(path, t [, {quality = 95}]) -> true or nil, err. PNG unless the name ends
-- in .jpg/.jpeg. t is C x H x W or H x W, float32 (clamped to [0, 1]) or uint8.
function M.save(path, t, opts)
  if type(path) ~= "string" then error("image.save: path must be a string", 2) end
  check_tensor("image.save", t, 2)
  opts = argcheck.options("image.save", opts, { "quality" })
  -- the tensor's shape and dtype are the caller's business (raise); the file system's
  -- answers are expected failures (nil, err)
  local nd, dt = t:dim(), t:dtype()
  local c = nd == 3 and t:size(1) or 1
  local jpeg = is_jpeg_name(path)
  if (nd ~= 2 and nd ~= 3) or (dt ~= "float32" and dt ~= "uint8") or c < 1 or c > 4
      or (jpeg and c ~= 1 and c ~= 3) then
    error(string.format("image.save: expected a float32 or uint8 C x H x W (C = %s) or H x W "
      .. "tensor, got %s %s", jpeg and "1 or 3 for JPEG" or "1..4", dt, argcheck.shape_string(t)), 2)
  end
  local rc
  if jpeg then
    local q = opts.quality or 95
    check_size("image.save", "quality", q, 2)
    rc = C.pivq_image_write_jpeg(path, t.c, q)
  else
    rc = C.pivq_image_write_png(path, t.c)
  end
  if rc ~= 0 then return nil, last_error() end
  return true
end

-- pivq.image.to_float(t): uint8 pixels as float32 in [0, 1]; float32 is returned as is
function M.to_float(t)
  check_tensor("image.to_float", t, 2)
  if t:dtype() == "float32" then return t end
  return wrap(C.pivq_image_u8_to_float(t.c))
end

-- pivq.image.max_pixels([n]) -> the previous cap on width x height of decoded images
function M.max_pixels(n)
  return tonumber(C.pivq_image_max_pixels(n or 0))
end

local MODES = { area = 0, bilinear = 1 }

-- pivq.image.resize(t, h [, w [, mode]]): t is C x H x W or N x C x H x W float32. mode is
-- "area" (box average, for shrinking) or "bilinear"; by default area when shrinking both
-- dims, bilinear otherwise.
function M.resize(t, h, w, mode)
  check_tensor("image.resize", t, 2)
  if type(w) == "string" then w, mode = nil, w end
  w = w or h
  check_size("image.resize", "h", h, 2)
  check_size("image.resize", "w", w, 2)
  if mode == nil then
    local nd = t:dim()
    local H, W = nd >= 2 and t:size(nd - 1) or 0, nd >= 1 and t:size(nd) or 0
    mode = (h <= H and w <= W) and "area" or "bilinear"
  end
  local code = MODES[mode]
  if not code then error("image.resize: mode must be \"area\" or \"bilinear\", got " .. tostring(mode), 2) end
  return wrap(C.pivq_image_resize(t.c, h, w, code))
end

-- pivq.image.center_crop(t, h [, w]): the centred h x w window of the last two dims (a view)
function M.center_crop(t, h, w)
  check_tensor("image.center_crop", t, 2)
  w = w or h
  check_size("image.center_crop", "h", h, 2)
  check_size("image.center_crop", "w", w, 2)
  return wrap(C.pivq_image_center_crop(t.c, h, w))
end

-- pivq.image.grid(batch, {nrow = 8, padding = 2, scale = 1, pad_value = 0}) -> C x H' x W'.
-- batch: N x C x H x W float32, or a table of C x H x W tensors.
function M.grid(batch, opts)
  opts = argcheck.options("image.grid", opts, { "nrow", "padding", "scale", "pad_value" })
  if type(batch) == "table" then
    for i = 1, math.max(#batch, 1) do
      if not tensor.is_tensor(batch[i]) then
        error("image.grid: batch must be a tensor or a non-empty table of tensors; entry " .. i .. " is "
          .. type(batch[i]), 2)
      end
    end
    batch = tensor.stack(batch, 1)
  end
  check_tensor("image.grid", batch, 2)
  if batch:dim() == 3 then batch = batch:unsqueeze(1) end
  local nrow, padding, scale = opts.nrow or 8, opts.padding or 2, opts.scale or 1
  check_size("image.grid", "nrow", nrow, 2)
  check_size("image.grid", "scale", scale, 2)
  if type(padding) ~= "number" or padding % 1 ~= 0 or padding < 0 then
    error("image.grid: padding must be a nonnegative integer, got " .. tostring(padding), 2)
  end
  if batch:dtype() ~= "float32" then batch = batch:float() end
  return wrap(C.pivq_image_grid(batch.c, nrow, padding, scale, opts.pad_value or 0))
end

-- pivq.image.list(dir) -> sorted paths (relative to dir) of *.png, *.jpg, *.jpeg below it
function M.list(dir)
  if type(dir) ~= "string" then error("image.list: dir must be a string", 2) end
  local s = C.pivq_image_list(dir)
  if s == nil then return nil, last_error() end
  local out = {}
  for i = 0, tonumber(C.pivq_strings_count(s)) - 1 do
    out[i + 1] = ffi.string(C.pivq_strings_get(s, i))
  end
  C.pivq_strings_free(s)
  return out
end

return M
