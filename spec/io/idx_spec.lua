-- IDX reader: shapes and dtypes, gzip and raw, Fashion-MNIST, and every kind of bad header.
local pivq = require "pivq"
local craft = require "io.craft"

describe("pivq.data.idx", function()
  local dir
  setup(function() dir = craft.tmpdir() end)
  teardown(function() craft.rmdir(dir) end)

  local function write(name, bytes) return craft.write(dir .. "/" .. name, bytes) end

  it("reads uint8 data raw and gzip-compressed alike", function()
    local bytes = craft.idx(0x08, { 2, 3 }, "\1\2\3\4\5\255")
    for _, path in ipairs({ write("a.idx", bytes), write("a.idx.gz", craft.gzip(bytes)) }) do
      local t = assert(pivq.data.idx(path))
      assert.are.equal("uint8", t:dtype())
      assert.are.same({ { 1, 2, 3 }, { 4, 5, 255 } }, t:totable())
    end
  end)

  it("converts big-endian element types", function()
    local i32 = assert(pivq.data.idx(write("i32",
      craft.idx(0x0C, { 2 }, craft.be32(7) .. "\255\255\255\254"))))
    assert.are.same({ "int32", { 7, -2 } }, { i32:dtype(), i32:totable() })
    local i16 = assert(pivq.data.idx(write("i16", craft.idx(0x0B, { 2 }, "\1\0\255\255"))))
    assert.are.same({ 256, -1 }, i16:totable())
    local i8 = assert(pivq.data.idx(write("i8", craft.idx(0x09, { 2 }, "\127\128"))))
    assert.are.same({ 127, -128 }, i8:totable())
    local f32 = assert(pivq.data.idx(write("f32", craft.idx(0x0D, { 1, 2 }, "\63\128\0\0\192\0\0\0"))))
    assert.are.same({ "float32", { { 1, -2 } } }, { f32:dtype(), f32:totable() })
    local f64 = assert(pivq.data.idx(write("f64", craft.idx(0x0E, { 1 }, "\63\248\0\0\0\0\0\0"))))
    assert.are.same({ 1.5 }, f64:totable())
  end)

  local function fails(bytes, pattern)
    local path = write("bad", bytes)
    local t, err = pivq.data.idx(path)
    assert.is_nil(t)
    assert.matches(path, err, 1, true) -- names the file
    assert.matches(pattern, err)
  end

  it("rejects a wrong magic", function()
    fails("\0\1\8\1" .. craft.be32(1) .. "x", "wrong magic")
    fails("\0\0\7\1" .. craft.be32(1) .. "x", "wrong magic")
    fails("PK\3\4 not an idx file", "wrong magic")
  end)

  it("rejects dims that disagree with the file size", function()
    fails(craft.idx(0x08, { 2, 3 }, "\1\2\3\4\5"), "need 6 data bytes, the file has 5")
    fails(craft.idx(0x08, { 2, 3 }, "\1\2\3\4\5\6\7"), "need 6 data bytes, the file has 7")
    fails(craft.idx(0x08, { 0 }, ""):sub(1, 6), "truncated dimension sizes")
    fails("\0\0\8", "truncated header")
    fails(craft.idx(0x08, { 1, 1, 1, 1, 1, 1, 1, 1, 1 }, "x"), "9 dims")
    fails("\0\0\8\0", "0 dims")
  end)

  it("rejects dims whose product overflows, without allocating", function()
    local huge = 0xFFFFFFFF
    fails(craft.idx(0x0E, { huge, huge, huge }, ""), "overflow")
    -- fits in int64 but not in the file: refused before allocation
    fails(craft.idx(0x0C, { 65536, 65536 }, "\1\2\3\4"), "need 17179869184 data bytes, the file has 4")
    fails(craft.idx(0x08, { 0, huge, huge, huge }, ""), "overflow")
  end)

  it("bounds gzip payloads by what the compressed size can hold", function()
    local bytes = craft.idx(0x08, { 65536, 65536 }, "")
    fails(craft.gzip(bytes), "more than a %d+%-byte gzip stream can hold")
  end)

  it("rejects truncated and corrupt gzip streams", function()
    local gz = craft.gzip(craft.idx(0x08, { 4, 4 }, string.rep("\7", 16)))
    fails(gz:sub(1, #gz - 6), "truncated gzip stream")
    fails(gz:sub(1, 20), "truncated gzip stream")
    -- a flipped data byte: the stored block is still valid, the CRC is not
    local flipped = gz:sub(1, 30) .. string.char((gz:byte(31) + 1) % 256) .. gz:sub(32)
    fails(flipped, "corrupt gzip stream")
    -- a broken block type
    fails(gz:sub(1, 10) .. "\7" .. gz:sub(12), "corrupt gzip stream")
    fails(gz .. "junk", "unexpected bytes after the gzip stream")
  end)

  it("reports a missing file", function()
    local t, err = pivq.data.idx(dir .. "/nope.idx")
    assert.is_nil(t)
    assert.matches("cannot open .*nope%.idx", err)
  end)

  it("raises on a non-string path (a programming error)", function()
    assert.has_error(function() pivq.data.idx(42) end)
  end)
end)

describe("pivq.data.fashion_mnist", function()
  local have = io.open(pivq.data.FASHION_MNIST_DIR .. "/t10k-images-idx3-ubyte.gz", "rb")
  if have then have:close() end

  local test_if = have and it or pending
  test_if("loads the test split as N x 1 x 28 x 28 float32 and 1-based labels", function()
    local ds = assert(pivq.data.fashion_mnist { split = "test" })
    assert.are.same({ 10000, 1, 28, 28 }, ds.images:size())
    assert.are.equal("float32", ds.images:dtype())
    assert.is_true(ds.images:min() >= 0 and ds.images:max() <= 1)
    assert.are.equal("int64", ds.labels:dtype())
    assert.are.same({ 1, 10 }, { ds.labels:min(), ds.labels:max() })
    assert.are.equal(10, #ds.classes)
    assert.are.equal("Ankle boot", ds.classes[10])
    assert.are.equal(10000, ds.n)
  end)

  it("names the Debian package when the files are absent", function()
    local ds, err = pivq.data.fashion_mnist { split = "train", path = "/nonexistent" }
    assert.is_nil(ds)
    assert.matches("/nonexistent/train%-images%-idx3%-ubyte", err)
    local saved = pivq.data.FASHION_MNIST_DIR
    pivq.data.FASHION_MNIST_DIR = "/nonexistent"
    ds, err = pivq.data.fashion_mnist()
    pivq.data.FASHION_MNIST_DIR = saved
    assert.is_nil(ds)
    assert.matches("dataset-fashion-mnist", err, 1, true)
  end)

  it("raises on a bad split name", function()
    assert.has_error(function() pivq.data.fashion_mnist { split = "validation" } end)
  end)
end)
