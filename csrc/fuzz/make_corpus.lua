-- Regenerate the seed corpus in csrc/fuzz/corpus/ (small valid files of each kind):
--   LUA_PATH="lua/?.lua;lua/?/init.lua;build/lua/?.lua;spec/?.lua;;" luajit csrc/fuzz/make_corpus.lua
local pivq = require "pivq"
local craft = require "io.craft"

local root = "csrc/fuzz/corpus"
os.execute("mkdir -p " .. root .. "/idx " .. root .. "/image " .. root .. "/safetensors")

-- IDX: raw and gzip, several element types
local u8 = craft.idx(0x08, { 2, 3 }, "\1\2\3\4\5\6")
craft.write(root .. "/idx/u8_raw.idx", u8)
craft.write(root .. "/idx/u8_gz.idx.gz", craft.gzip(u8))
craft.write(root .. "/idx/i32.idx", craft.idx(0x0C, { 2 }, craft.be32(7) .. craft.be32(0x80000000)))
craft.write(root .. "/idx/f32_3d.idx", craft.idx(0x0D, { 1, 1, 2 }, "\63\128\0\0\64\0\0\0"))
craft.write(root .. "/idx/i16.idx", craft.idx(0x0B, { 3 }, "\0\1\255\255\128\0"))

-- images: PNG of each colour type and depth, a JPEG in colour and in gray
local function rows(w, h, bpp, f)
  local r = {}
  for y = 1, h do
    local s = {}
    for x = 1, w * bpp do s[x] = string.char(f(x, y) % 256) end
    r[y] = table.concat(s)
  end
  return r
end
craft.write(root .. "/image/gray8.png",
  craft.png { width = 4, height = 3, color = 0,
    rows = rows(4, 3, 1, function(x, y) return x * 40 + y end) })
craft.write(root .. "/image/rgb8.png",
  craft.png { width = 3, height = 2, color = 2,
    rows = rows(3, 2, 3, function(x, y) return x * 20 + y * 7 end) })
craft.write(root .. "/image/rgba8.png",
  craft.png { width = 2, height = 2, color = 6,
    rows = rows(2, 2, 4, function(x, y) return x * 31 + y end) })
craft.write(root .. "/image/graya16.png",
  craft.png { width = 2, height = 2, color = 4, depth = 16,
    rows = rows(2, 2, 4, function(x, y) return x * 3 + y end) })
craft.write(root .. "/image/palette.png",
  craft.png { width = 3, height = 1, color = 3,
    palette = "\255\0\0\0\255\0\0\0\255", trns = "\128", rows = { "\0\1\2" } })
-- Adam7: seven passes, each a small image of its own rows (filter byte + packed 1-bit samples)
local passes, raw = { { 0, 0, 8, 8 }, { 4, 0, 8, 8 }, { 0, 4, 4, 8 }, { 2, 0, 4, 4 }, { 0, 2, 2, 4 },
  { 1, 0, 2, 2 }, { 0, 1, 1, 2 } }, {}
for _, p in ipairs(passes) do
  local pw, ph = math.ceil((9 - p[1]) / p[3]), math.ceil((9 - p[2]) / p[4])
  if pw > 0 then
    for _ = 1, ph do raw[#raw + 1] = "\0" .. string.rep("\170", math.ceil(pw / 8)) end
  end
end
craft.write(root .. "/image/gray1_interlaced.png",
  craft.png { width = 9, height = 9, color = 0, depth = 1, interlace = 1,
  idat = craft.zlib(table.concat(raw)) })
local img = pivq.rand(3, 16, 16)
assert(pivq.image.save(root .. "/image/rgb.jpg", img, { quality = 80 }))
assert(pivq.image.save(root .. "/image/gray.jpg", img:narrow(1, 1, 1), { quality = 50 }))

-- safetensors: every native dtype, metadata, an empty tensor
assert(pivq.save(root .. "/safetensors/all.safetensors", {
  f = pivq.tensor { { 1.5, -2 } }, i = pivq.tensor({ 1, -2, 3 }, "int32"),
  l = pivq.tensor({ 5 }, "int64"), b = pivq.tensor({ 255, 0 }, "uint8"),
  e = pivq.zeros(0, 3),
}, { step = 10, note = "seed" }))
assert(pivq.save(root .. "/safetensors/scalar.safetensors", { s = pivq.tensor(3) }))
print("corpus written to " .. root)
