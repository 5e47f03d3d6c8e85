-- Reads the Fashion-MNIST IDX files (gzip) for the slow specs, through zlib's gz* API.
-- (The IO module of the package has its own reader; the specs of autograd should not depend
-- on it.) Returns images as float (N, 1, 28, 28) in [0, 1] and labels as 1-based int64 (N).
local ffi = require "ffi"
local pivq = require "pivq"

local registry = debug.getregistry()
if not registry["spec.zlib.cdef"] then
  ffi.cdef [[
    typedef struct gzFile_s *gzFile;
    gzFile gzopen(const char *path, const char *mode);
    int gzread(gzFile file, void *buf, unsigned int len);
    int gzclose(gzFile file);
  ]]
  registry["spec.zlib.cdef"] = true
end
local z = ffi.load("z")

local DIR = "/usr/share/datasets/fashion-mnist/"

local function read_all(path)
  local f = z.gzopen(path, "rb")
  if f == nil then return nil, "cannot open " .. path end
  local chunks, buf = {}, ffi.new("uint8_t[65536]")
  while true do
    local n = z.gzread(f, buf, 65536)
    if n <= 0 then break end
    chunks[#chunks + 1] = ffi.string(buf, n)
  end
  z.gzclose(f)
  return table.concat(chunks)
end

local function be32(s, pos)
  local a, b, c, d = s:byte(pos, pos + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local M = {}

function M.available()
  local f = io.open(DIR .. "train-images-idx3-ubyte.gz", "rb")
  if f then f:close() end
  return f ~= nil
end

-- split: "train" or "t10k"; n: how many (from the start)
function M.load(split, n)
  local imgs = assert(read_all(DIR .. split .. "-images-idx3-ubyte.gz"))
  local labs = assert(read_all(DIR .. split .. "-labels-idx1-ubyte.gz"))
  local count = math.min(n or be32(imgs, 5), be32(imgs, 5))
  local x = pivq.empty(count, 1, 28, 28)
  local xp = x:data_ptr()
  local src = ffi.cast("const uint8_t *", imgs) + 16
  for i = 0, count * 784 - 1 do xp[i] = src[i] / 255 end
  local y = pivq.empty(count, "int64")
  local yp = y:data_ptr()
  local lsrc = ffi.cast("const uint8_t *", labs) + 8
  for i = 0, count - 1 do yp[i] = lsrc[i] + 1 end
  return x, y
end

return M
