-- Crafting helpers for the data-and-files specs (and csrc/fuzz/make_corpus.lua): byte-exact
-- IDX, gzip and PNG files built in Lua, so that specs can make well-formed files and then
-- break them on purpose. Compression uses deflate "stored" blocks (no compression needed to be
-- valid), checksums are computed here.
local bit = require "bit"

local M = {}

local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) ~= 0 then c = bit.bxor(0xEDB88320, bit.rshift(c, 1)) else c = bit.rshift(c, 1) end
  end
  crc_table[i] = c
end

function M.crc32(s, crc)
  crc = bit.bnot(crc or 0)
  for i = 1, #s do
    crc = bit.bxor(crc_table[bit.band(bit.bxor(crc, s:byte(i)), 0xFF)], bit.rshift(crc, 8))
  end
  return bit.bnot(crc)
end

function M.adler32(s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  return b * 65536 + a
end

local function byte(x) return string.char(bit.band(x, 0xFF)) end
function M.be32(x)
  return byte(bit.rshift(x, 24)) .. byte(bit.rshift(x, 16)) .. byte(bit.rshift(x, 8)) .. byte(x)
end
function M.le32(x)
  return byte(x) .. byte(bit.rshift(x, 8)) .. byte(bit.rshift(x, 16)) .. byte(bit.rshift(x, 24))
end
function M.le64(x)
  local lo, hi = x % 2 ^ 32, math.floor(x / 2 ^ 32)
  return M.le32(lo) .. M.le32(hi)
end

-- A raw deflate stream of stored blocks holding s.
function M.deflate_stored(s)
  local out, pos = {}, 1
  repeat
    local chunk = s:sub(pos, pos + 65534)
    pos = pos + #chunk
    local final = pos > #s and 1 or 0
    local n = #chunk
    out[#out + 1] = string.char(final) .. byte(n) .. byte(bit.rshift(n, 8))
      .. byte(bit.bnot(n)) .. byte(bit.rshift(bit.bnot(n), 8)) .. chunk
  until pos > #s
  return table.concat(out)
end

function M.zlib(s) return "\120\1" .. M.deflate_stored(s) .. M.be32(M.adler32(s)) end

function M.gzip(s)
  return "\31\139\8\0\0\0\0\0\0\255" .. M.deflate_stored(s) .. M.le32(M.crc32(s)) .. M.le32(#s % 2 ^ 32)
end

-- IDX bytes: type byte (0x08 u8, 0x0C i32, ...), dims, payload string.
function M.idx(type_byte, dims, payload)
  local parts = { "\0\0", string.char(type_byte), string.char(#dims) }
  for _, d in ipairs(dims) do parts[#parts + 1] = M.be32(d) end
  parts[#parts + 1] = payload
  return table.concat(parts)
end

local function chunk(kind, data) return M.be32(#data) .. kind .. data .. M.be32(M.crc32(kind .. data)) end
M.png_chunk = chunk

-- PNG bytes. o = {width, height, depth = 8, color = 0|2|3|4|6, rows = {string per row,
-- unfiltered samples}, palette = "rgbrgb...", trns = "...", interlace = 0, idat = override}
function M.png(o)
  local ihdr = M.be32(o.width) .. M.be32(o.height) .. string.char(o.depth or 8, o.color or 0, 0, 0,
    o.interlace or 0)
  local parts = { "\137PNG\r\n\26\n", chunk("IHDR", ihdr) }
  if o.palette then parts[#parts + 1] = chunk("PLTE", o.palette) end
  if o.trns then parts[#parts + 1] = chunk("tRNS", o.trns) end
  local raw = {}
  for i, row in ipairs(o.rows or {}) do raw[i] = "\0" .. row end -- filter type 0 (none)
  parts[#parts + 1] = chunk("IDAT", o.idat or M.zlib(table.concat(raw)))
  parts[#parts + 1] = chunk("IEND", "")
  return table.concat(parts)
end

function M.write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  return path
end

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- A fresh temporary folder (removed by M.rmdir).
function M.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p '" .. p .. "'") == 0)
  return p
end

function M.rmdir(p) os.execute("rm -rf '" .. p .. "'") end

return M
