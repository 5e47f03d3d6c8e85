-- Images: PNG of every colour type and depth, JPEG, writing, resizing, cropping, grids, and
-- damaged files.
local pivq = require "pivq"
local craft = require "io.craft"

local function close(a, b, tol)
  return (a - b):abs():max() <= (tol or 1e-6)
end

describe("pivq.image", function()
  local dir
  setup(function() dir = craft.tmpdir() end)
  teardown(function() craft.rmdir(dir) end)
  local n = 0
  local function file(bytes, ext)
    n = n + 1
    return craft.write(string.format("%s/f%d.%s", dir, n, ext or "png"), bytes)
  end

  describe("load", function()
    it("reads 8-bit gray, gray+alpha, RGB and RGBA as C x H x W in [0, 1]", function()
      local g = assert(pivq.image.load(file(craft.png {
        width = 2, height = 1, color = 0, rows = { "\0\255" } })))
      assert.are.same({ { { 0, 1 } } }, g:totable())
      local ga = assert(pivq.image.load(file(craft.png {
        width = 1, height = 1, color = 4, rows = { "\51\255" } })))
      assert.are.same({ 2, 1, 1 }, ga:size())
      assert.is_true(math.abs(ga:get(1, 1, 1) - 0.2) < 1e-6)
      local rgb = assert(pivq.image.load(file(craft.png { width = 1, height = 2, color = 2,
        rows = { "\255\0\51", "\0\255\0" } })))
      assert.are.same({ 3, 2, 1 }, rgb:size())
      assert.is_true(close(rgb, pivq.tensor { { { 1 }, { 0 } }, { { 0 }, { 1 } }, { { 0.2 }, { 0 } } }))
      local rgba = assert(pivq.image.load(file(craft.png {
        width = 1, height = 1, color = 6, rows = { "\1\2\3\255" } })))
      assert.are.same({ 4, 1, 1 }, rgba:size())
      assert.are.equal(1, rgba:get(4, 1, 1))
    end)

    it("reads 16-bit samples at full precision", function()
      local t = assert(pivq.image.load(file(craft.png { width = 2, height = 1, color = 0, depth = 16,
        rows = { "\128\0\0\1" } })))
      assert.is_true(math.abs(t:get(1, 1, 1) - 32768 / 65535) < 1e-7)
      assert.is_true(math.abs(t:get(1, 1, 2) - 1 / 65535) < 1e-9)
    end)

    it("expands palettes (with transparency) and low bit depths", function()
      local t = assert(pivq.image.load(file(craft.png { width = 2, height = 1, color = 3,
        palette = "\255\0\0\0\0\255", rows = { "\0\1" } })))
      assert.are.same({ { { 1, 0 } }, { { 0, 0 } }, { { 0, 1 } } }, t:totable())
      local a = assert(pivq.image.load(file(craft.png { width = 2, height = 1, color = 3,
        palette = "\255\0\0\0\0\255", trns = "\0", rows = { "\0\1" } })))
      assert.are.same({ 4, 1, 2 }, a:size())
      assert.are.same({ { 0, 1 } }, a:select(1, 4):totable())
      local bits = assert(pivq.image.load(file(craft.png { width = 4, height = 1, color = 0, depth = 2,
        rows = { "\27" } }))) -- 00 01 10 11
      assert.is_true(close(bits, pivq.tensor { { { 0, 1 / 3, 2 / 3, 1 } } }))
    end)

    it("reads a JPEG in colour and in gray", function()
      local img = pivq.image.resize(pivq.rand(3, 4, 4), 32, 32, "bilinear")
      local path = dir .. "/c.jpg"
      assert(pivq.image.save(path, img, { quality = 98 }))
      local back = assert(pivq.image.load(path))
      assert.are.same({ 3, 32, 32 }, back:size())
      assert.is_true((back - img):abs():mean():item() < 0.02)
      assert(pivq.image.save(dir .. "/g.jpeg", img:narrow(1, 1, 1)))
      assert.are.same({ 1, 32, 32 }, assert(pivq.image.load(dir .. "/g.jpeg")):size())
    end)
  end)

  describe("save", function()
    it("PNG write then read equals the input after 8-bit rounding", function()
      for _, c in ipairs({ 1, 2, 3, 4 }) do
        local img = pivq.rand(c, 7, 5)
        local path = dir .. "/rt" .. c .. ".png"
        assert(pivq.image.save(path, img))
        local back = assert(pivq.image.load(path))
        local expected = (img * 255):round() / 255
        assert.are.same(img:size(), back:size())
        assert.is_true(close(back, expected, 1e-6))
      end
    end)

    it("clamps out-of-range values and accepts H x W and uint8", function()
      local path = dir .. "/clamp.png"
      assert(pivq.image.save(path, pivq.tensor { { -1, 0.5, 2 } }))
      local back = assert(pivq.image.load(path))
      assert.is_true(close(back, pivq.tensor { { { 0, 128 / 255, 1 } } }))
      assert(pivq.image.save(path, pivq.tensor({ { { 0, 7, 255 } } }, "uint8")))
      assert.is_true(close(assert(pivq.image.load(path)), pivq.tensor { { { 0, 7 / 255, 1 } } }))
    end)

    it("raises for a tensor that is not an image", function()
      assert.has_error(function() pivq.image.save(dir .. "/x.png", pivq.zeros(5, 2, 2)) end)
      assert.has_error(function() pivq.image.save(dir .. "/x.png", pivq.zeros(2, 2, 2, 2)) end)
      assert.has_error(function() pivq.image.save(dir .. "/x.jpg", pivq.zeros(4, 2, 2)) end)
    end)

    it("returns nil, err for an unwritable path", function()
      local ok, err = pivq.image.save(dir .. "/missing/x.png", pivq.zeros(1, 2, 2))
      assert.is_nil(ok)
      assert.matches("missing/x%.png", err)
    end)
  end)

  describe("damaged files", function()
    local function fails(path, pattern)
      local t, err = pivq.image.load(path)
      assert.is_nil(t)
      assert.matches(path, err, 1, true)
      if pattern then assert.matches(pattern, err) end
    end
    local good
    setup(function()
      local rows = {}
      for y = 1, 16 do rows[y] = string.rep(string.char(y * 10), 48) end
      good = craft.png { width = 16, height = 16, color = 2, rows = rows }
    end)

    it("a truncated PNG", function()
      for _, cut in ipairs({ 7, 20, 40, #good - 30, #good - 5 }) do fails(file(good:sub(1, cut))) end
      fails(file(good:sub(1, 60)), "truncated")
    end)

    it("a bit-flipped PNG (CRC and zlib checks)", function()
      for _, at in ipairs({ 20, 40, 60, 100, #good - 20 }) do
        local flipped = good:sub(1, at - 1) .. string.char(bit.bxor(good:byte(at), 4))
          .. good:sub(at + 1)
        fails(file(flipped))
      end
    end)

    it("a PNG chunk whose declared length runs past the end of the file", function()
      -- libpng would allocate the declared 1.9 GB for this zTXt before noticing (found by fuzzing)
      local bomb = good:sub(1, 33) .. craft.be32(1921424046) .. "zTXt" .. "\3?\182\186\177\187"
      fails(file(bomb), 'chunk "zTXt" at byte 33 declares 1921424046 bytes, the file has')
      fails(file(good:sub(1, #good - 13)), "truncated or corrupt")
    end)

    it("a PNG of absurd declared size", function()
      fails(file(craft.png { width = 1000000, height = 1000000, color = 6, rows = {} }), "exceeds")
      -- under the limits, but more than a 100-byte file can hold
      fails(file(craft.png { width = 60000, height = 4000, color = 0, rows = {} }), "more than a")
      local old = pivq.image.max_pixels(100)
      fails(file(craft.png { width = 11, height = 10, color = 0, rows = {} }),
        "exceeds the limit of 100 pixels")
      pivq.image.max_pixels(old)
    end)

    it("a truncated or bit-flipped JPEG", function()
      local path = dir .. "/good.jpg"
      local img = pivq.image.resize(pivq.rand(3, 8, 8), 64, 64, "bilinear")
      assert(pivq.image.save(path, img))
      local bytes = craft.read(path)
      fails(file(bytes:sub(1, #bytes - 200), "jpg"), "Premature end")
      fails(file(bytes:sub(1, 100), "jpg"))
      -- damage the entropy-coded data: decoding must stop with an error, never crash
      local failures = 0
      for at = #bytes - 400, #bytes - 300, 10 do
        local flipped = bytes:sub(1, at - 1) .. "\255\217" .. bytes:sub(at + 2)
        local t = pivq.image.load(file(flipped, "jpg"))
        if not t then failures = failures + 1 end
      end
      assert.is_true(failures > 0)
      -- a bad marker right after SOI
      fails(file("\255\216\255\1" .. bytes:sub(5), "jpg"))
    end)

    it("a JPEG of absurd declared size", function()
      local path = dir .. "/small.jpg"
      assert(pivq.image.save(path, pivq.rand(3, 16, 16)))
      local bytes = craft.read(path)
      local sof = assert(bytes:find("\255\192", 1, true)) -- SOF0: length, precision, height, width
      local function resized(h, w)
        local dims = string.char(math.floor(h / 256), h % 256, math.floor(w / 256), w % 256)
        return bytes:sub(1, sof + 4) .. dims .. bytes:sub(sof + 9)
      end
      fails(file(resized(16000, 16000), "jpg"), "more than a %d+%-byte baseline JPEG can hold")
      fails(file(resized(65000, 65000), "jpg"), "exceeds the limit")
    end)

    it("a file that is neither PNG nor JPEG, and a missing file", function()
      fails(file("GIF89a...."), "not a PNG or JPEG")
      fails(file(""), "not a PNG or JPEG")
      fails(dir .. "/nope.png", "cannot open")
    end)
  end)

  it("to_float maps uint8 to [0, 1] and leaves float32 alone", function()
    local u = pivq.tensor({ { 0, 51, 255 } }, "uint8")
    assert.is_true(close(pivq.image.to_float(u), pivq.tensor { { 0, 0.2, 1 } }))
    local f = pivq.rand(2)
    assert.are.equal(f, pivq.image.to_float(f))
    assert.has_error(function() pivq.image.to_float(pivq.zeros(2, "int32")) end)
  end)

  describe("resize, crop and grid", function()
    it("area resize averages blocks", function()
      local t = pivq.arange(0, 15, "float32"):view(1, 4, 4)
      local r = pivq.image.resize(t, 2, 2, "area")
      assert.are.same({ { { 2.5, 4.5 }, { 10.5, 12.5 } } }, r:totable())
      -- 3 -> 2: overlaps weighted by area
      local s = pivq.image.resize(pivq.tensor { { { 0, 3, 6 } } }, 1, 2, "area")
      assert.is_true(close(s, pivq.tensor { { { 1, 5 } } }, 1e-5))
    end)

    it("bilinear resize uses half-pixel centres", function()
      local t = pivq.tensor { { { 0, 1 } } }
      local r = pivq.image.resize(t, 1, 4, "bilinear")
      assert.is_true(close(r, pivq.tensor { { { 0, 0.25, 0.75, 1 } } }))
      -- identity size is exact, and batches work
      local b = pivq.rand(2, 3, 5, 6)
      assert.is_true(close(pivq.image.resize(b, 5, 6, "bilinear"), b))
      assert.are.same({ 2, 3, 10, 12 }, pivq.image.resize(b, 10, 12):size())
    end)

    it("resize reads strided views in place", function()
      local t = pivq.rand(2, 3, 9, 7)
      for _, mode in ipairs({ "area", "bilinear" }) do
        local v = t:transpose(3, 4):narrow(1, 2, 1):narrow(3, 2, 5)
        local expected = pivq.image.resize(v:contiguous(), 4, 3, mode)
        assert.is_true(close(pivq.image.resize(v, 4, 3, mode), expected))
        local c = pivq.image.center_crop(t[1], 5, 5)
        local expected_c = pivq.image.resize(c:contiguous(), 11, 2, mode)
        assert.is_true(close(pivq.image.resize(c, 11, 2, mode), expected_c))
      end
    end)

    it("center_crop takes the middle (extra row/column at the bottom/right)", function()
      local t = pivq.arange(1, 20, "float32"):view(1, 4, 5)
      assert.are.same({ { { 7, 8, 9 }, { 12, 13, 14 } } }, pivq.image.center_crop(t, 2, 3):totable())
      assert.are.same({ { { 2, 3, 4 }, { 7, 8, 9 }, { 12, 13, 14 } } },
        pivq.image.center_crop(t, 3, 3):totable())
      assert.has_error(function() pivq.image.center_crop(t, 5, 5) end)
    end)

    it("grid places images row by row with padding and scale", function()
      local batch = pivq.zeros(3, 1, 1, 1)
      batch[1]:fill(0.1)
      batch[2]:fill(0.2)
      batch[3]:fill(0.3)
      local g = pivq.image.grid(batch, { nrow = 2, padding = 1, scale = 2, pad_value = 1 })
      -- 2 rows x 2 columns of 2x2 cells, 1-pixel borders: 1 + 2*(2+1) = 7 each way
      assert.are.same({ 1, 7, 7 }, g:size())
      local a, b, c = 0.1, 0.2, 0.3
      local expected = {
        { 1, 1, 1, 1, 1, 1, 1 },
        { 1, a, a, 1, b, b, 1 },
        { 1, a, a, 1, b, b, 1 },
        { 1, 1, 1, 1, 1, 1, 1 },
        { 1, c, c, 1, 1, 1, 1 },
        { 1, c, c, 1, 1, 1, 1 },
        { 1, 1, 1, 1, 1, 1, 1 },
      }
      assert.is_true(close(g, pivq.tensor { expected }))
      -- a table of C x H x W images, default options; the result saves as a PNG
      local g2 = pivq.image.grid({ pivq.rand(3, 4, 4), pivq.rand(3, 4, 4) })
      assert.are.same({ 3, 8, 14 }, g2:size())
      assert(pivq.image.save(dir .. "/grid.png", g2))
    end)
  end)
end)
