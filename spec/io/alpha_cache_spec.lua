-- Alpha compositing (hand-computed pixels for RGBA, gray+alpha and palette+tRNS PNGs) and the
-- decoded-image cache's location (the user's cache folder, never the dataset; a read-only
-- dataset read by an unprivileged user).
local pivq = require "pivq"
local craft = require "io.craft"
local proc = require "helpers.proc"

local with_env = proc.with_env

local function listing(dir)
  local out = {}
  -- without the ASan stage's preload: find and sort are not instrumented (LeakSanitizer aborts them)
  local p = io.popen("env -u LD_PRELOAD sh -c " .. proc.shell_quote("cd " .. proc.shell_quote(dir)
    .. " && find . -mindepth 1 | sort"))
  for line in p:lines() do out[#out + 1] = line:sub(3) end
  p:close()
  return out
end

-- pixel values as 0..255 integers, channel by channel
local function bytes_of(t)
  local u = t:dtype() == "uint8" and t or (t * 255):round()
  local out = {}
  for _, v in ipairs(u:float():view(-1):totable()) do out[#out + 1] = math.floor(v + 0.5) end
  return out
end

describe("alpha compositing", function()
  local dir
  setup(function()
    dir = craft.tmpdir()
    -- RGBA 2x1: (200, 100, 0, alpha 128) and (10, 20, 30, alpha 0)
    craft.write(dir .. "/rgba.png", craft.png { width = 2, height = 1, color = 6,
      rows = { "\200\100\0\128" .. "\10\20\30\0" } })
    -- gray+alpha 2x1: (gray 0, alpha 51) and (gray 255, alpha 255)
    craft.write(dir .. "/ga.png", craft.png { width = 2, height = 1, color = 4,
      rows = { "\0\51" .. "\255\255" } })
    -- palette 2x1: entry 0 red with tRNS alpha 64, entry 1 blue (opaque: no tRNS entry)
    craft.write(dir .. "/pal.png", craft.png { width = 2, height = 1, color = 3,
      palette = "\255\0\0" .. "\0\0\255", trns = "\64", rows = { "\0\1" } })
  end)
  teardown(function() craft.rmdir(dir) end)

  -- out = a * c + (1 - a) * bg with a = alpha / 255, rounded to the nearest /255 step
  it("composites RGBA over white, black and a colour (hand-computed)", function()
    local img = assert(pivq.image.load(dir .. "/rgba.png"))
    -- white: R 128/255*200 + 127 = 227.4 -> 227; G 128/255*100 + 127 = 177.2 -> 177;
    -- B 0 + 127 = 127; the transparent pixel is the background, whatever its RGB says
    assert.are.same({ 227, 255, 177, 255, 127, 255 }, bytes_of(pivq.image.composite(img)))
    -- black: 100.39 -> 100, 50.2 -> 50, 0; transparent -> 0
    assert.are.same({ 100, 0, 50, 0, 0, 0 }, bytes_of(pivq.image.composite(img, "black")))
    -- {0.2, 0.4, 1} = (51, 102, 255): R 100.39 + 127/255*51 = 125.8 -> 126;
    -- G 50.2 + 127/255*102 = 101.0 -> 101; B 0 + 127 = 127
    assert.are.same({ 126, 51, 101, 102, 127, 255 },
      bytes_of(pivq.image.composite(img, { 0.2, 0.4, 1 })))
  end)

  it("composites gray+alpha: gray over a gray background, RGB over a colour", function()
    local img = assert(pivq.image.load(dir .. "/ga.png"))
    local w = pivq.image.composite(img)
    assert.are.same({ 1, 1, 2 }, w:size())
    -- a = 0.2: 0.2 * 0 + 0.8 * 255 = 204; the opaque white pixel stays 255
    assert.are.same({ 204, 255 }, bytes_of(w))
    assert.are.same({ 0, 255 }, bytes_of(pivq.image.composite(img, "black")))
    local c = pivq.image.composite(img, { 1, 0, 0 })
    assert.are.same({ 3, 1, 2 }, c:size())
    assert.are.same({ 204, 255, 0, 255, 0, 255 }, bytes_of(c))
  end)

  it("composites a palette image with tRNS transparency", function()
    local img = assert(pivq.image.load(dir .. "/pal.png"))
    assert.are.same({ 4, 1, 2 }, img:size())
    -- red at a = 64/255 over white: R 255; G, B (1 - 64/255) * 255 = 191; blue stays opaque
    assert.are.same({ 255, 0, 191, 0, 191, 255 }, bytes_of(pivq.image.composite(img)))
  end)

  it("image folders and the lazy loader composite before resizing", function()
    for _, lazy in ipairs({ false, true }) do
      local ds = assert(pivq.data.image_folder(dir, { size = 1, cache = false, lazy = lazy,
        background = "black", crop = 1 }))
      local images = ds.images
      if lazy then
        local b = pivq.data.loader(ds, { batch = 3, shuffle = false })
        images = b:iter()().images
        b:close()
      end
      -- files sorted: ga.png, pal.png, rgba.png; the 1x1 centre crop of a 2x1 image is its
      -- left pixel (odd margins leave the extra column on the right)
      assert.are.same({ 0, 0, 0, 64, 0, 0, 100, 50, 0 }, bytes_of(images))
    end
    local white = assert(pivq.data.image_folder(dir, { size = 1, cache = false }))
    -- no crop: the 1x1 square is the left pixel too; composited over white first
    assert.are.same({ 204, 204, 204, 255, 191, 191, 227, 177, 127 }, bytes_of(white.images))
  end)

  it("rejects a bad background naming the function and the value", function()
    local img = assert(pivq.image.load(dir .. "/rgba.png"))
    assert.has_error(function() pivq.image.composite(img, "grey") end,
      "image.composite: background must be \"white\", \"black\" or {r, g, b} in [0, 1], got grey")
    assert.has_error(function() pivq.image.composite(img, { 0, 2, 0 }) end,
      "image.composite: background[2] must be a number in [0, 1], got 2")
    assert.has_error(function() pivq.data.image_folder(dir, { background = { 1, 1 } }) end,
      "image_folder: background must be \"white\", \"black\" or {r, g, b} in [0, 1], got a table of 2 values")
  end)
end)

describe("the image cache", function()
  local root, data, cache
  before_each(function()
    root = craft.tmpdir()
    assert(os.execute("chmod 0755 " .. proc.shell_quote(root)) == 0)
    data, cache = root .. "/data", root .. "/cache"
    assert(os.execute("mkdir -p " .. proc.shell_quote(data .. "/sub")) == 0)
    assert(pivq.image.save(data .. "/a.png", pivq.full({ 3, 4, 4 }, 0.2)))
    assert(pivq.image.save(data .. "/sub/b.png", pivq.full({ 3, 4, 4 }, 0.8)))
  end)
  after_each(function() craft.rmdir(root) end)

  it("lives in $PIVQ_CACHE_DIR and nothing is written into the dataset", function()
    local before = listing(data)
    with_env({ PIVQ_CACHE_DIR = cache }, function()
      local first = assert(pivq.data.image_folder(data, { size = 2 }))
      assert.is_false(first.from_cache)
      local files = listing(cache)
      assert.are.equal(1, #files)
      assert.is_truthy(files[1]:match("^images%-%x+%.safetensors$"))
      assert.are.equal(cache .. "/" .. files[1], first.cache_path)
      local second = assert(pivq.data.image_folder(data, { size = 2 }))
      assert.is_true(second.from_cache)
      assert.are.same(first.images:totable(), second.images:totable())
      -- another preparation is another file; a changed file invalidates
      assert.is_false(assert(pivq.data.image_folder(data, { size = 2, background = "black" })).from_cache)
      assert.are.equal(2, #listing(cache))
      assert(pivq.image.save(data .. "/a.png", pivq.full({ 3, 4, 4 }, 0.4)))
      local third = assert(pivq.data.image_folder(data, { size = 2 }))
      assert.is_false(third.from_cache)
      assert.are.equal(102, third.images:get(1, 1, 1, 1))
    end)
    assert.are.same(before, listing(data))
  end)

  it("is keyed by the folder's absolute path: same names elsewhere are another entry", function()
    with_env({ PIVQ_CACHE_DIR = cache }, function()
      assert(os.execute("cp -r " .. proc.shell_quote(data) .. " " .. proc.shell_quote(root .. "/copy")) == 0)
      assert(pivq.image.save(root .. "/copy/a.png", pivq.full({ 3, 4, 4 }, 1)))
      local a = assert(pivq.data.image_folder(data, { size = 2 }))
      local b = assert(pivq.data.image_folder(root .. "/copy", { size = 2 }))
      assert.are_not.equal(a.cache_path, b.cache_path)
      assert.are.equal(51, a.images:get(1, 1, 1, 1))
      assert.are.equal(255, b.images:get(1, 1, 1, 1))
      -- a relative spelling of the same folder finds the same entry
      local rel = assert(pivq.data.image_folder(data .. "/sub/..", { size = 2 }))
      assert.is_true(rel.from_cache)
    end)
  end)

  it("falls back to $XDG_CACHE_HOME/pivq, then ~/.cache/pivq", function()
    with_env({ PIVQ_CACHE_DIR = false, XDG_CACHE_HOME = root .. "/xdg" }, function()
      local ds = assert(pivq.data.image_folder(data, { size = 2 }))
      assert.are.equal(root .. "/xdg/pivq/", ds.cache_path:match("^(.*/)"))
    end)
    with_env({ PIVQ_CACHE_DIR = "", XDG_CACHE_HOME = false, HOME = root .. "/home" }, function()
      local ds = assert(pivq.data.image_folder(data, { size = 2 }))
      assert.are.equal(root .. "/home/.cache/pivq/", ds.cache_path:match("^(.*/)"))
    end)
  end)

  it("a read-only dataset works for an unprivileged user (cache in their cache folder)", function()
    if not proc.is_root() then
      pending("needs root to switch to user nobody (65534); skipped by name")
      return
    end
    assert(os.execute("chmod -R a-w " .. proc.shell_quote(data)) == 0)
    assert(os.execute("mkdir -p " .. proc.shell_quote(cache) .. " && chown 65534 "
      .. proc.shell_quote(cache)) == 0)
    local before = listing(data)
    local first, second = proc.as_user(65534, function()
      return with_env({ PIVQ_CACHE_DIR = cache .. "/nobody" }, function()
        local a = assert(pivq.data.image_folder(data, { size = 2 }))
        local b = assert(pivq.data.image_folder(data, { size = 2 }))
        return a, b
      end)
    end)
    assert.is_false(first.from_cache)
    assert.is_true(second.from_cache)
    assert.are.same(before, listing(data))
    assert.are.equal(1, #listing(cache .. "/nobody"))
    -- an unusable cache folder only costs time: the load still succeeds
    local third = proc.as_user(65534, function()
      return with_env({ PIVQ_CACHE_DIR = data .. "/cannot" }, function()
        return assert(pivq.data.image_folder(data, { size = 2 }))
      end)
    end)
    assert.is_false(third.from_cache)
    assert.are.same(before, listing(data))
    assert(os.execute("chmod -R u+w " .. proc.shell_quote(data)) == 0)
  end)
end)
