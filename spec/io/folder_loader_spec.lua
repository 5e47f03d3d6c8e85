-- Image-folder datasets (scan, crop+resize, cache, attribute tables) and the threaded loader.
local pivq = require "pivq"
local craft = require "io.craft"

describe("pivq.data.image_folder", function()
  local dir
  setup(function()
    dir = craft.tmpdir()
    os.execute("mkdir -p '" .. dir .. "/sub/deeper'")
    -- 4 images of different sizes and kinds; each a flat colour so that values are known
    assert(pivq.image.save(dir .. "/b.png", pivq.full({ 3, 10, 20 }, 0.2)))
    assert(pivq.image.save(dir .. "/a.PNG", pivq.full({ 1, 8, 8 }, 0.6)))
    assert(pivq.image.save(dir .. "/sub/c.jpg", pivq.full({ 3, 16, 12 }, 1)))
    assert(pivq.image.save(dir .. "/sub/deeper/d.jpeg", pivq.full({ 1, 5, 5 }, 0)))
    craft.write(dir .. "/notes.txt", "not an image")
    craft.write(dir .. "/.hidden.png", "hidden files are skipped")
  end)
  teardown(function() craft.rmdir(dir) end)

  it("lists image files recursively, sorted, relative to the folder", function()
    assert.are.same({ "a.PNG", "b.png", "sub/c.jpg", "sub/deeper/d.jpeg" }, assert(pivq.image.list(dir)))
    local l, err = pivq.image.list(dir .. "/none")
    assert.is_nil(l)
    assert.matches("cannot open folder", err)
  end)

  it("crops, resizes and converts to N x C x S x S uint8", function()
    local ds = assert(pivq.data.image_folder(dir, { size = 4, cache = false }))
    assert.are.same({ 4, 3, 4, 4 }, ds.images:size())
    assert.are.equal("uint8", ds.images:dtype())
    assert.are.same({ "a.PNG", "b.png", "sub/c.jpg", "sub/deeper/d.jpeg" }, ds.files)
    local means = ds.images:float():mean(4):mean(3):mean(2)
    assert.is_true(math.abs(means:get(1) - 153) <= 1) -- gray repeated into 3 channels
    assert.is_true(math.abs(means:get(2) - 51) <= 1)
    assert.is_true(math.abs(means:get(3) - 255) <= 1)
    assert.is_true(math.abs(means:get(4) - 0) <= 1)
    local gray = assert(pivq.data.image_folder(dir, { size = 2, channels = 1, cache = false }))
    assert.are.same({ 4, 1, 2, 2 }, gray.images:size())
  end)

  it("writes a cache (in the user's cache folder) and uses it until a file changes", function()
    local first = assert(pivq.data.image_folder(dir, { size = 6 }))
    assert.is_false(first.from_cache)
    assert.is_truthy(io.open(first.cache_path, "rb"))
    local second = assert(pivq.data.image_folder(dir, { size = 6 }))
    assert.is_true(second.from_cache)
    assert.are.same(first.images:totable(), second.images:totable())
    assert(pivq.image.save(dir .. "/b.png", pivq.full({ 3, 10, 20 }, 0.4)))
    local third = assert(pivq.data.image_folder(dir, { size = 6 }))
    assert.is_false(third.from_cache)
    assert.is_true(math.abs(third.images[2]:float():mean():item() - 102) <= 1)
  end)

  it("ignores and rewrites a damaged cache", function()
    local cache = assert(pivq.data.image_folder(dir, { size = 5 })).cache_path
    craft.write(cache, "garbage")
    local ds = assert(pivq.data.image_folder(dir, { size = 5 }))
    assert.is_false(ds.from_cache)
    assert.is_true(assert(pivq.data.image_folder(dir, { size = 5 })).from_cache)
    -- a valid file with the wrong shape under the cache's name
    assert(pivq.save(cache, { images = pivq.zeros({ 1, 3, 5, 5 }, "uint8") }, { version = "1" }))
    assert.is_false(assert(pivq.data.image_folder(dir, { size = 5 })).from_cache)
  end)

  it("joins a CelebA-style attribute table by file name", function()
    local attr = craft.write(dir .. "/list_attr.txt", table.concat({
      "5", "Smiling Young",
      "a.PNG  1 -1", "b.png -1 -1", "c.jpg  1  1", "d.jpeg -1  1", "extra.jpg 1 1", "",
    }, "\n"))
    local ds = assert(pivq.data.image_folder(dir, { size = 2, cache = false, attributes = attr }))
    assert.are.same({ "Smiling", "Young" }, ds.attribute_names)
    assert.are.same({ { 1, -1 }, { -1, -1 }, { 1, 1 }, { -1, 1 } }, ds.attributes:totable())
  end)

  it("reports attribute tables that do not match", function()
    local function fails(text, pattern)
      local path = craft.write(dir .. "/attr_bad.txt", text)
      local ds, err = pivq.data.image_folder(dir, { size = 2, cache = false, attributes = path })
      assert.is_nil(ds)
      assert.matches(pattern, err)
    end
    fails("2\nA\na.PNG 1\nb.png 1\n", "2 of 4 images have no row in .*attr_bad%.txt %(first: sub/c%.jpg%)")
    fails("3\nA\na.PNG 1\n", "announces 3 rows, the file has 1")
    fails("1\nA B\na.PNG 1\n", "line 3 has 1 values, expected 2")
    fails("1\nA\na.PNG 0\n", "value 0 is not %+1 or %-1")
    fails("2\nA\na.PNG 1\na.PNG 1\n", "appears twice")
    fails("x\nA\n", "line 1 must be the number of rows")
  end)

  it("lazy: the loader's workers decode the files, giving what preloading gives", function()
    local attr = craft.write(dir .. "/list_attr2.txt",
      "4\nA\na.PNG 1\nb.png -1\nc.jpg 1\nd.jpeg -1\n")
    local eager = assert(pivq.data.image_folder(dir, { size = 4, cache = false, attributes = attr }))
    local lazy = assert(pivq.data.image_folder(dir, { size = 4, lazy = true, attributes = attr }))
    assert.is_nil(lazy.images)
    local function batches(ds, workers)
      local out = {}
      local l = pivq.data.loader(ds, { batch = 3, seed = 5, workers = workers, drop_last = false,
        augment = { hflip = true } })
      for b in l:iter() do out[#out + 1] = { b.images:totable(), b.attributes:totable() } end
      return out
    end
    local a, b = batches(eager, 1), batches(lazy, 2)
    assert.are.equal(2, #b)
    assert.are.same(a, b)
  end)

  it("lazy: a damaged file fails the batch with its name", function()
    local bad = craft.tmpdir()
    assert(pivq.image.save(bad .. "/ok.png", pivq.zeros(1, 4, 4)))
    craft.write(bad .. "/broken.jpg", "\255\216\255 broken")
    local ds = assert(pivq.data.image_folder(bad, { size = 2, lazy = true }))
    local l = pivq.data.loader(ds, { batch = 2, shuffle = false })
    local ok, err = pcall(function() for _ in l:iter() do end end)
    assert.is_false(ok)
    assert.matches("broken%.jpg", err)
    craft.rmdir(bad)
  end)

  it("reports a damaged image by name", function()
    local bad = craft.tmpdir()
    assert(pivq.image.save(bad .. "/ok.png", pivq.zeros(1, 4, 4)))
    craft.write(bad .. "/broken.png", "\137PNG\r\n\26\n broken")
    local ds, err = pivq.data.image_folder(bad, { size = 2, cache = false, workers = 2 })
    assert.is_nil(ds)
    assert.matches("broken%.png", err)
    local empty = craft.tmpdir()
    ds, err = pivq.data.image_folder(empty)
    assert.is_nil(ds)
    assert.matches("no png/jpg/jpeg files", err)
    craft.rmdir(bad)
    craft.rmdir(empty)
  end)
end)

describe("pivq.data.loader", function()
  -- 10 samples whose pixel values encode their index, labels = index
  local function dataset(n)
    local images = pivq.zeros({ n, 1, 2, 3 }, "uint8")
    for i = 1, n do
      for x = 1, 3 do images:set(i, 1, 1, x, i * 3 + x) images:set(i, 1, 2, x, i * 3 + x) end
    end
    return { images = images, labels = pivq.arange(1, n, "int64") }
  end

  local function labels_of(loader, epoch)
    local seq = {}
    for b in loader:iter(epoch) do
      for _, v in ipairs(b.labels:totable()) do seq[#seq + 1] = v end
    end
    return seq
  end

  it("delivers every sample once per epoch, in order when not shuffled", function()
    local l = pivq.data.loader(dataset(10), { batch = 4, shuffle = false, drop_last = false })
    assert.are.equal(3, l:num_batches())
    local sizes = {}
    for b, i in l:iter() do
      sizes[i] = b.images:size(1)
      assert.are.equal("float32", b.images:dtype())
    end
    assert.are.same({ 4, 4, 2 }, sizes)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, labels_of(l, 1))
    local dl = pivq.data.loader(dataset(10), { batch = 4, shuffle = false })
    assert.are.equal(2, dl:num_batches())
  end)

  it("converts uint8 images to [0, 1] and keeps images and labels together", function()
    local l = pivq.data.loader(dataset(10), { batch = 5, seed = 3, workers = 3 })
    for b in l:iter() do
      for k = 1, 5 do
        local label = b.labels:get(k)
        assert.is_true(math.abs(b.images:get(k, 1, 2, 1) - (label * 3 + 1) / 255) < 1e-6)
      end
    end
  end)

  it("is deterministic for a seed, whatever the number of workers", function()
    local ds = dataset(10)
    local a = labels_of(pivq.data.loader(ds, { batch = 2, seed = 7, workers = 1 }), 1)
    local b = labels_of(pivq.data.loader(ds, { batch = 2, seed = 7, workers = 4, prefetch = 3 }), 1)
    assert.are.same(a, b)
    local sorted = { unpack(a) }
    table.sort(sorted)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, sorted)
    local l = pivq.data.loader(ds, { batch = 2, seed = 7 })
    local e1, e2 = labels_of(l), labels_of(l)
    assert.are.same(a, e1)
    assert.are_not.same(e1, e2) -- epochs differ
    assert.are_not.same(a, labels_of(pivq.data.loader(ds, { batch = 2, seed = 8 }), 1))
  end)

  it("flips about half of the images horizontally with augment.hflip", function()
    local ds = dataset(64)
    local l = pivq.data.loader(ds, { batch = 64, seed = 1, augment = { hflip = true } })
    local flipped = 0
    for b in l:iter() do
      for k = 1, 64 do
        local label = b.labels:get(k)
        local first = b.images:get(k, 1, 1, 1) * 255
        if math.abs(first - (label * 3 + 3)) < 0.01 then
          flipped = flipped + 1
          assert.is_true(math.abs(b.images:get(k, 1, 2, 3) * 255 - (label * 3 + 1)) < 0.01)
        else
          assert.is_true(math.abs(first - (label * 3 + 1)) < 0.01)
        end
      end
    end
    assert.is_true(flipped > 16 and flipped < 48)
  end)

  it("stops cleanly when abandoned mid-epoch or closed", function()
    local l = pivq.data.loader(dataset(40), { batch = 2, workers = 2 })
    for _, i in l:iter() do if i == 2 then break end end
    local count = 0
    for _ in l:iter() do count = count + 1 end
    assert.are.equal(20, count)
    l:close()
    l:close()
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() pivq.data.loader({}, {}) end)
    assert.has_error(function() pivq.data.loader(dataset(4), { batch = 0 }) end)
    assert.has_error(function()
      pivq.data.loader({ images = pivq.zeros(4, 1, 2, 2), labels = pivq.zeros(3) })
    end)
  end)
end)
