-- A test double for pivq.image, whose PNG support (libpng) lands on another branch: just
-- encode_png, writing a valid PNG with stored (uncompressed) deflate blocks, enough for the
-- kernel specs to check image outputs end to end. Install it in a pivq process with
--   package.loaded["pivq.data.image"] = dofile("spec/helpers/png_double.lua")
local bit = require "bit"

local M = {}

local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) ~= 0 then
      c = bit.bxor(0xEDB88320, bit.rshift(c, 1))
    else
      c = bit.rshift(c, 1)
    end
  end
  crc_table[i] = c
end

local function crc32(s)
  local c = bit.bnot(0)
  for i = 1, #s do
    c = bit.bxor(crc_table[bit.band(bit.bxor(c, s:byte(i)), 0xFF)], bit.rshift(c, 8))
  end
  return bit.bnot(c)
end

local function be32(n)
  return string.char(bit.band(bit.rshift(n, 24), 255), bit.band(bit.rshift(n, 16), 255),
    bit.band(bit.rshift(n, 8), 255), bit.band(n, 255))
end

local function chunk(kind, data)
  return be32(#data) .. kind .. data .. be32(crc32(kind .. data))
end

-- zlib stream of stored deflate blocks
local function zlib_stored(raw)
  local parts = { "\120\1" }
  local pos = 1
  repeat
    local piece = raw:sub(pos, pos + 65534)
    pos = pos + #piece
    local final = pos > #raw and 1 or 0
    local n = #piece
    parts[#parts + 1] = string.char(final, n % 256, math.floor(n / 256), (65535 - n) % 256,
      math.floor((65535 - n) / 256)) .. piece
  until pos > #raw
  local a, b = 1, 0
  for i = 1, #raw do
    a = (a + raw:byte(i)) % 65521
    b = (b + a) % 65521
  end
  parts[#parts + 1] = be32(b * 65536 + a)
  return table.concat(parts)
end

local COLOR_TYPE = { [1] = 0, [2] = 4, [3] = 2, [4] = 6 }

function M.encode_png(t)
  if t:dim() == 2 then t = t:view(1, t:size(1), t:size(2)) end
  local c, h, w = t:size(1), t:size(2), t:size(3)
  local v = t:float():clamp(0, 1):contiguous():totable()
  local rows = {}
  for y = 1, h do
    local row = { "\0" }
    for x = 1, w do
      for k = 1, c do row[#row + 1] = string.char(math.floor(v[k][y][x] * 255 + 0.5)) end
    end
    rows[y] = table.concat(row)
  end
  local ihdr = be32(w) .. be32(h) .. string.char(8, COLOR_TYPE[c], 0, 0, 0)
  return "\137PNG\r\n\26\n" .. chunk("IHDR", ihdr) .. chunk("IDAT", zlib_stored(table.concat(rows)))
    .. chunk("IEND", "")
end

return M
