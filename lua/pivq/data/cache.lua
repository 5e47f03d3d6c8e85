-- pivq.data.cache: where decoded-image caches live — the user's cache directory, never a
-- dataset folder (which may be read-only or shared).
--
--   cache.dir()                  $PIVQ_CACHE_DIR, else $XDG_CACHE_HOME/pivq, else ~/.cache/pivq
--   cache.path_for(dir, key)     DIR_CACHE/images-<hash of the folder's absolute path and key>
--                                .safetensors, creating the cache folder (mode 0700) if needed;
--                                nil, err when there is none
--   cache.absolute(path)         the canonical absolute path (realpath), or nil, err
--
-- A cache file is keyed by the folder's absolute path and the preparation (size, channels,
-- crop, background); its metadata holds the files' fingerprint, checked on every load, so
-- a changed folder rebuilds it. Deleting the cache folder is always safe.
local ffi = require "ffi"

local M = {}

local registry = debug.getregistry()
if not registry["pivq.data.cache.libc"] then
  -- one by one: another module may have declared some of them already
  for _, decl in ipairs({ "int mkdir(const char *path, unsigned int mode);",
    "char *realpath(const char *path, char *resolved);", "void free(void *p);",
    "char *strerror(int errnum);" }) do
    pcall(ffi.cdef, decl)
  end
  registry["pivq.data.cache.libc"] = true
end
if not registry["pivq.bank.crc32"] then
  ffi.cdef "unsigned long crc32(unsigned long crc, const unsigned char *buf, unsigned int len);"
  registry["pivq.bank.crc32"] = true
end

local EEXIST = 17

local function getenv(name)
  local v = os.getenv(name)
  if v and v ~= "" then return v end
  return nil
end

-- The cache root, from the environment (not created here).
function M.dir()
  local d = getenv("PIVQ_CACHE_DIR")
  if d then return d end
  local xdg = getenv("XDG_CACHE_HOME")
  if xdg then return xdg .. "/pivq" end
  local home = getenv("HOME")
  if home then return home .. "/.cache/pivq" end
  return nil, "cache: neither PIVQ_CACHE_DIR, XDG_CACHE_HOME nor HOME is set"
end

-- cache.mkdirs(path [, mode = "755"]): mkdir -p without a shell (octal mode for new folders;
-- the umask applies). Returns true or nil, err.
local function mkdirs(path, mode)
  local sofar = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    sofar = sofar .. "/" .. part
    if ffi.C.mkdir(sofar, tonumber(mode or "755", 8)) ~= 0 then
      local e = ffi.errno()
      if e ~= EEXIST then
        return nil, string.format("cache: cannot create %s: %s", sofar, ffi.string(ffi.C.strerror(e)))
      end
    end
  end
  return true
end

M.mkdirs = mkdirs

function M.absolute(path)
  if type(path) ~= "string" then error("cache.absolute: path must be a string", 2) end
  local p = ffi.C.realpath(path, nil)
  if p == nil then
    return nil, string.format("cache: %s: %s", path, ffi.string(ffi.C.strerror(ffi.errno())))
  end
  local s = ffi.string(p)
  ffi.C.free(p)
  return s
end

-- zlib's crc32, found through libpivq (which links zlib), as plain luajit has no zlib in ffi.C
local function crc(s, seed) return tonumber(require("pivq.core.ffi").C.crc32(seed or 0, s, #s)) end

function M.path_for(dir, key)
  if type(dir) ~= "string" then error("cache.path_for: dir must be a string", 2) end
  if type(key) ~= "string" then error("cache.path_for: key must be a string", 2) end
  local root, err = M.dir()
  if not root then return nil, err end
  local abs
  abs, err = M.absolute(dir)
  if not abs then return nil, err end
  local ok
  ok, err = mkdirs(root, "700")
  if not ok then return nil, err end
  local s = abs .. "\0" .. key
  -- two independent CRC-32s: 64 bits, so two folders do not share a file by accident (the
  -- stored metadata repeats the path and the key, and a mismatch is a cache miss anyway)
  local name = string.format("images-%08x%08x.safetensors", crc(s), crc(s, 0x5a5a5a5a))
  return root .. "/" .. name, abs
end

return M
