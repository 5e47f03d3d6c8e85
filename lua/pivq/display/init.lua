-- pivq.display: rich output (images as PNG) for front-ends such as the Jupyter kernel, with a
-- plain-text fallback everywhere else.
--
--   pivq.display(value [, opts])   an image tensor (C x H x W, C = 1, 3 or 4) or a batch
--                                  (N x C x H x W, tiled into a grid) becomes a PNG; anything
--                                  else its pretty-printed text (as the REPL prints it)
--   display.show(img [, opts])     images only; inside the kernel this is what pivq.show does
--   display.mime(bundle)           a raw bundle: {["text/html"] = s, ["image/png"] = bytes, ...}
--   display.png_available()        true when PNG encoding is there (pivq.image)
--
-- opts: ncol (images per grid row, default 8; nrow is accepted as pivq.image.grid's name),
-- padding (grid gap in pixels, default 2), scale (integer upscaling, nearest; needs
-- pivq.image.grid — small images such as 28 x 28 read better at scale 3 or 4).
-- An object may supply its own bundle through a `__display(self, opts)` metamethod returning
-- {mime = data, ...}.
--
-- A front-end calls display.set_sink(fn) with fn(bundle) publishing the bundle; without a sink,
-- text prints and an image goes to a temporary PNG file whose path prints.
-- PNG bytes come from pivq.image.encode_png(t) when that exists, else from pivq.image.save to a
-- temporary file read back; the module is looked up at each call (so a later-loaded or test
-- pivq.image is picked up).
local pretty = require "pivq.display.pretty"
local tensor = require "pivq.core.tensor"

local M = {}

local sink = nil

-- Install (or, with nil, remove) the front-end's publisher; returns the previous one.
function M.set_sink(fn)
  if fn ~= nil and type(fn) ~= "function" then
    error("display.set_sink: expected a function or nil, got " .. type(fn), 2)
  end
  local previous = sink
  sink = fn
  return previous
end

local function image_module()
  local ok, mod = pcall(require, "pivq.data.image")
  if ok and type(mod) == "table" then return mod end
  local why = ok and "pivq.image is not a table" or tostring(mod)
  return nil, why
end

function M.png_available()
  local image = image_module()
  return image ~= nil and (image.encode_png ~= nil or image.save ~= nil)
end

local read_all = require("pivq.data.files").read_text

-- PNG bytes of a C x H x W (or H x W) image tensor. Errors are raised at `level` (counted
-- from png_bytes' caller, as error() counts).
local function png_bytes(t, level)
  level = level + 1
  local image, why = image_module()
  if image and image.encode_png then
    local bytes, err = image.encode_png(t)
    if not bytes then error("pivq.display: cannot encode the image as PNG: " .. tostring(err), level) end
    return bytes
  end
  if image and image.save then
    local base = os.tmpname() -- reserves a unique name; the PNG goes beside it
    local path = base .. ".png"
    local ok, err = image.save(path, t)
    local bytes, rerr
    if ok then bytes, rerr = read_all(path) end
    os.remove(path)
    os.remove(base)
    if not ok then error("pivq.display: cannot encode the image as PNG: " .. tostring(err), level) end
    if not bytes then error("pivq.display: cannot read back the PNG: " .. tostring(rerr), level) end
    return bytes
  end
  local msg = "pivq.display needs pivq.image (PNG support)"
  if why and not why:find("module 'pivq.data.image' not found", 1, true) then
    msg = msg .. ": " .. why
  end
  error(msg, level)
end

function M.encode_png(t)
  local bytes = png_bytes(t, 2)
  return bytes
end

-- C x H x W canvas of a batch: ncol images per row, `padding` pixels between them (zeros).
local function tile(batch, ncol, padding)
  local n, c, h, w = batch:size(1), batch:size(2), batch:size(3), batch:size(4)
  ncol = math.max(1, math.min(ncol, n))
  local nrow = math.ceil(n / ncol)
  local canvas = tensor.zeros(c, nrow * (h + padding) - padding, ncol * (w + padding) - padding)
  for i = 1, n do
    local r, k = math.floor((i - 1) / ncol), (i - 1) % ncol
    canvas:narrow(2, r * (h + padding) + 1, h):narrow(3, k * (w + padding) + 1, w):copy(batch[i])
  end
  return canvas
end

local function is_channels(c) return c == 1 or c == 3 or c == 4 end

-- Whether pivq.display treats a value as an image (C x H x W or N x C x H x W, C in 1, 3, 4).
function M.is_image(v)
  if not tensor.is_tensor(v) then return false end
  local d = v:dim()
  if d == 3 then return is_channels(v:size(1)) end
  if d == 4 then return is_channels(v:size(2)) and v:size(1) >= 1 end
  return false
end

-- The single C x H x W image to encode for an image or a batch.
local function canvas_of(img, opts, level)
  if not tensor.is_tensor(img) then
    error("pivq.show: expected an image tensor (C x H x W or N x C x H x W), got " .. type(img), level)
  end
  local d = img:dim()
  if d == 2 then -- H x W: one gray image
    img = img:unsqueeze(1)
    d = 3
  end
  if not M.is_image(img) then
    local shape = table.concat(img:size(), "x")
    error("pivq.show: expected H x W, C x H x W or N x C x H x W with C = 1, 3 or 4; got " .. shape,
      level)
  end
  local image = image_module()
  local grid = image and image.grid
  local scale = opts.scale or 1
  if d == 3 then
    if scale == 1 or not grid then return img end
    return grid(img, { nrow = 1, padding = 0, scale = scale })
  end
  local ncol = opts.ncol or opts.nrow or 8
  local padding = opts.padding or 2
  if grid then return grid(img, { nrow = ncol, padding = padding, scale = scale }) end
  return tile(img:float(), ncol, padding)
end

local function publish(bundle)
  if sink then
    sink(bundle)
    return
  end
  if bundle["image/png"] then
    local path = os.tmpname()
    os.remove(path)
    path = path .. ".png"
    local ok, err = require("pivq.data.files").write_text(path, bundle["image/png"]) -- checked, atomic
    print(ok and string.format("[image: %s]", path) or string.format("[image not written: %s]", err))
  elseif bundle["text/plain"] then
    print(bundle["text/plain"])
  end
end

function M.mime(bundle)
  if type(bundle) ~= "table" then
    error("display.mime: expected a table {mime type = data}, got " .. type(bundle), 2)
  end
  for k, v in pairs(bundle) do
    if type(k) ~= "string" or not k:find("/", 1, true) or type(v) ~= "string" then
      error("display.mime: entries must be mime type = string, got " .. tostring(k), 2)
    end
  end
  publish(bundle)
end

-- Levels: show_image's errors point at the user's call of M.show or M.display (no tail calls
-- between them, so the count holds).
local function show_image(img, opts)
  local canvas = canvas_of(img, opts, 4)
  local size = table.concat(img:size(), "x")
  publish({ ["image/png"] = png_bytes(canvas, 3), ["text/plain"] = "<image " .. size .. ">" })
end

function M.show(img, opts)
  show_image(img, opts or {})
end

function M.display(value, opts)
  opts = opts or {}
  local mt = getmetatable(value)
  if type(mt) == "table" and type(mt.__display) == "function" then
    M.mime(mt.__display(value, opts))
  elseif M.is_image(value) then
    show_image(value, opts)
  else
    publish({ ["text/plain"] = pretty.format(value) })
  end
end

return M
