-- safetensors checkpoints: round trips of every dtype, metadata, atomic writes, the public
-- layout byte for byte, and each kind of corruption.
local pivq = require "pivq"
local craft = require "io.craft"

describe("pivq.save / pivq.load (safetensors)", function()
  local dir
  setup(function() dir = craft.tmpdir() end)
  teardown(function() craft.rmdir(dir) end)

  it("round-trips every dtype, shape and the metadata", function()
    local path = dir .. "/all.safetensors"
    local ts = {
      weight = pivq.randn(3, 4, 5),
      ints = pivq.tensor({ { 1, -2 }, { 2147483647, -2147483648 } }, "int32"),
      longs = pivq.tensor({ 2 ^ 53, -7, 0 }, "int64"),
      bytes = pivq.tensor({ 0, 128, 255 }, "uint8"),
      scalar = pivq.tensor(2.5),
      empty = pivq.zeros(0, 4),
      view = pivq.randn(4, 6):t(), -- not contiguous: written in row-major order of the view
    }
    local meta_in = { epoch = 3, lr = 0.001, wd = 0.1, third = 1 / 3, name = "run \"7\"", ok = true }
    assert(pivq.save(path, ts, meta_in))
    local back, meta = assert(pivq.load(path))
    for name, t in pairs(ts) do
      assert.are.equal(t:dtype(), back[name]:dtype(), name)
      assert.are.same(t:size(), back[name]:size(), name)
      assert.are.same(t:totable(), back[name]:totable(), name)
    end
    assert.are.same({ epoch = "3", lr = "0.001", wd = "0.1", third = "0.3333333333333333",
      name = "run \"7\"", ok = "true" }, meta)
    assert.are.equal(1 / 3, tonumber(meta.third))
  end)

  it("writes the public layout: LE header length, padded JSON, data sorted by name", function()
    local path = craft.write(dir .. "/layout.safetensors", "")
    assert(pivq.save(path, { b = pivq.tensor({ 1, 2 }, "uint8"), a = pivq.tensor({ 1 }, "int32") }))
    local bytes = craft.read(path)
    local n = bytes:byte(1) + 256 * bytes:byte(2)
    assert.are.equal(0, n % 8)
    local header = bytes:sub(9, 8 + n)
    assert.are.equal('{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},'
      .. '"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}', header:match("^(.-)%s*$"))
    assert.are.equal("\1\0\0\0\1\2", bytes:sub(9 + n))
  end)

  it("reads the other dtypes of the format, converted", function()
    -- F16 1.5 = 0x3E00, BF16 -2 = 0xC000, F64 0.25, I8 -3, I16 -300, U16 65535, U32 2^32-1, BOOL
    local entries = {
      { "a", "F16", "\0\62" }, { "b", "BF16", "\0\192" }, { "c", "F64", "\0\0\0\0\0\0\208\63" },
      { "d", "I8", "\253" }, { "e", "I16", "\212\254" }, { "f", "U16", "\255\255" },
      { "g", "U32", "\255\255\255\255" }, { "h", "BOOL", "\1" },
    }
    local parts, data, off = {}, {}, 0
    for _, e in ipairs(entries) do
      parts[#parts + 1] = string.format('"%s":{"dtype":"%s","shape":[1],"data_offsets":[%d,%d]}', e[1],
        e[2], off, off + #e[3])
      data[#data + 1] = e[3]
      off = off + #e[3]
    end
    local header = "{" .. table.concat(parts, ",") .. "}"
    local path = craft.write(dir .. "/other.safetensors", craft.le64(#header) .. header .. table.concat(data))
    local t = assert(pivq.load(path))
    assert.are.same({ 1.5 }, t.a:totable())
    assert.are.same({ -2 }, t.b:totable())
    assert.are.same({ 0.25 }, t.c:totable())
    assert.are.same({ "int32", { -3 } }, { t.d:dtype(), t.d:totable() })
    assert.are.same({ -300 }, t.e:totable())
    assert.are.same({ 65535 }, t.f:totable())
    assert.are.same({ "int64", { 4294967295 } }, { t.g:dtype(), t.g:totable() })
    assert.are.same({ "uint8", { 1 } }, { t.h:dtype(), t.h:totable() })
  end)

  it("replaces an existing file atomically and leaves no temporary file", function()
    local path = dir .. "/atomic.safetensors"
    assert(pivq.save(path, { x = pivq.ones(2) }))
    assert(pivq.save(path, { x = pivq.zeros(3) }))
    assert.are.same({ 0, 0, 0 }, assert(pivq.load(path)).x:totable())
    local p = io.popen("ls -a '" .. dir .. "'")
    local listing = p:read("*a")
    p:close()
    assert.is_nil(listing:match("%.tmp%-"))
  end)

  it("returns nil, err when the folder is missing or not writable", function()
    local ok, err = pivq.save(dir .. "/no/such/dir/x.safetensors", { x = pivq.ones(1) })
    assert.is_nil(ok)
    assert.matches("no/such/dir/x%.safetensors", err)
  end)

  it("raises on programming errors", function()
    assert.has_error(function() pivq.save(dir .. "/x", { x = 3 }) end)
    assert.has_error(function() pivq.save(dir .. "/x", { x = pivq.ones(1) }, { cfg = {} }) end)
    assert.has_error(function() pivq.save(nil, {}) end)
    assert.has_error(function() pivq.load(7) end)
  end)

  describe("on corrupt files", function()
    local n = 0
    local function fails(bytes, pattern)
      n = n + 1
      local path = craft.write(dir .. "/bad" .. n .. ".safetensors", bytes)
      local t, err = pivq.load(path)
      assert.is_nil(t)
      assert.matches(path, err, 1, true)
      assert.matches(pattern, err)
    end
    local function file(header, data) return craft.le64(#header) .. header .. (data or "") end
    local function entry(name, dtype, shape, b, e)
      return string.format('"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%s,%s]}', name, dtype,
        shape, b, e)
    end

    it("too short for the length", function() fails("\1\2\3", "too short") end)

    it("header length beyond the file", function()
      fails(craft.le64(1000) .. "{}", "header length 1000 goes beyond the end of the file")
      fails(craft.le64(2 ^ 63) .. "{}", "goes beyond")
    end)

    it("invalid JSON", function()
      fails(file('{"a":{"dtype":"F32",'), "invalid JSON")
      fails(file('{"a":1} xx'), "unexpected bytes after the JSON header")
      fails(file("[1,2]"), "not a JSON object")
      fails(file('{"a":{"dtype":"F32","shape":[1]}}', "abcd"), "needs a string dtype")
      fails(file(string.rep("[", 5000) .. string.rep("]", 5000)), "invalid JSON")
    end)

    it("offsets out of range", function()
      fails(file("{" .. entry("a", "F32", "1", 0, 8) .. "}", "abcd"), "out of range")
      fails(file("{" .. entry("a", "F32", "1", 4, 0) .. "}", "abcd"), "out of range")
      fails(file("{" .. entry("a", "F32", "1", -4, 0) .. "}", "abcd"), "nonnegative integers")
      fails(file("{" .. entry("a", "F32", "1", 0.5, 4) .. "}", "abcd"), "nonnegative integers")
    end)

    it("overlapping or leaving holes", function()
      fails(file("{" .. entry("a", "F32", "1", 0, 4) .. "," .. entry("b", "U8", "2", 2, 4) .. "}", "abcd"),
        'tensors "a" and "b" overlap')
      fails(file("{" .. entry("a", "U8", "2", 2, 4) .. "}", "abcd"),
        "bytes 0..2 of the data buffer belong to no tensor")
      fails(file("{" .. entry("a", "U8", "2", 0, 2) .. "}", "abcd"), "cover 2 bytes of a 4%-byte data buffer")
    end)

    it("shape product disagreeing with the byte range", function()
      fails(file("{" .. entry("a", "F32", "2", 0, 4) .. "}", "abcd"), 'shape 2 of F32 needs 8 bytes')
      fails(file("{" .. entry("a", "F32", "4294967296,4294967296,4", 0, 4) .. "}", "abcd"), "needs %-1 bytes")
      fails(file("{" .. entry("a", "F32", "1,-1", 0, 4) .. "}", "abcd"), "shape entry 1")
      fails(file("{" .. entry("a", "F32", "1,1,1,1,1,1,1,1,1", 0, 4) .. "}", "abcd"), "9 dims")
    end)

    it("unknown dtype", function()
      fails(file("{" .. entry("a", "F8_E5M2", "4", 0, 4) .. "}", "abcd"), 'unknown dtype "F8_E5M2"')
    end)

    it("bad metadata and duplicate names", function()
      fails(file('{"__metadata__":{"a":1}}'), "not a string")
      fails(file('{"__metadata__":[1]}'), "__metadata__ is not an object")
      fails(file("{" .. entry("a", "U8", "2", 0, 2) .. "," .. entry("a", "U8", "2", 2, 4) .. "}", "abcd"),
        'name "a" appears twice')
    end)

    it("truncated after a valid save", function()
      local path = dir .. "/trunc.safetensors"
      assert(pivq.save(path, { w = pivq.randn(10) }))
      local bytes = craft.read(path)
      fails(bytes:sub(1, #bytes - 1), "out of range")
      fails(bytes:sub(1, 20), "goes beyond")
    end)

    it("a missing file", function()
      local t, err = pivq.load(dir .. "/missing.safetensors")
      assert.is_nil(t)
      assert.matches("cannot open .*missing%.safetensors", err)
    end)
  end)
end)
