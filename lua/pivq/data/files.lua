-- pivq.files: checkpoints as safetensors files (pivq.save / pivq.load).
--
-- The format is the public one (8-byte header length, JSON header, raw little-endian data), so
-- weights written here load in other ecosystems and theirs load here. Writes are atomic: a
-- temporary file beside the target (TARGET.tmp-XXXXXX), fsynced, renamed over it, the folder
-- fsynced; a reader sees the old file or the new one, never a mix, whatever happens meanwhile.
-- Loading only reads: tensors and string metadata, nothing in a file is ever executed.
--
-- Failures that depend on the outside world (missing file, corrupt bytes, full disk) return
-- nil, err; wrong arguments (a non-tensor value, a table as metadata value) raise.
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local tensor = require "pivq.core.tensor"
local gc = require "pivq.core.gc"

local C = state.C
local M = {}

local function last_error() return ffi.string(C.pivq_last_error()) end

-- Metadata values are strings in the format; numbers and booleans are converted exactly.
local function meta_string(key, v, level)
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "boolean" then return tostring(v) end
  if tv == "number" then
    if v % 1 == 0 and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    -- the shortest form that reads back exactly (0.1, not 0.10000000000000001)
    for digits = 15, 16 do
      local str = string.format("%." .. digits .. "g", v)
      if tonumber(str) == v then return str end
    end
    return string.format("%.17g", v)
  end
  error(string.format("save: metadata value for %q is a %s; values must be strings, numbers or "
    .. "booleans (encode tables as JSON)", tostring(key), tv), level + 1)
end

-- pivq.save(path, {name = tensor, ...} [, metadata]) -> true, or nil, err
function M.save(path, tensors, metadata)
  if type(path) ~= "string" then error("save: path must be a string, got " .. type(path), 2) end
  if type(tensors) ~= "table" then
    error("save: tensors must be a table {name = tensor}, got " .. type(tensors), 2)
  end
  if metadata ~= nil and type(metadata) ~= "table" then
    error("save: metadata must be a table of strings, got " .. type(metadata), 2)
  end
  local names = {}
  for name, t in pairs(tensors) do
    if type(name) ~= "string" or name == "" then
      error("save: tensor names must be non-empty strings, got " .. tostring(name), 2)
    end
    if not tensor.is_tensor(t) then
      error(string.format("save: value for %q is a %s, not a tensor", name, type(t)), 2)
    end
    names[#names + 1] = name
  end
  table.sort(names)
  local n = #names
  local cnames = ffi.new("const char*[?]", math.max(n, 1))
  local ctensors = ffi.new("pivq_tensor*[?]", math.max(n, 1))
  for i, name in ipairs(names) do
    cnames[i - 1] = name
    ctensors[i - 1] = tensors[name].c
  end
  local keys, values = {}, {}
  for k in pairs(metadata or {}) do
    if type(k) ~= "string" then error("save: metadata keys must be strings, got " .. type(k), 2) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local ckeys = ffi.new("const char*[?]", math.max(#keys, 1))
  local cvalues = ffi.new("const char*[?]", math.max(#keys, 1))
  for i, k in ipairs(keys) do
    values[i] = meta_string(k, metadata[k], 2)
    ckeys[i - 1] = k
    cvalues[i - 1] = values[i]
  end
  local rc = C.pivq_safetensors_write(path, n, cnames, ctensors, #keys, ckeys, cvalues)
  if rc ~= 0 then return nil, last_error() end
  return true
end

-- pivq.load(path) -> {name = tensor, ...}, {key = "value", ...}, or nil, err
function M.load(path)
  if type(path) ~= "string" then error("load: path must be a string, got " .. type(path), 2) end
  local set = C.pivq_safetensors_read(path)
  if set == nil then return nil, last_error() end
  set = ffi.gc(set, C.pivq_tensor_set_free)
  local tensors, metadata = {}, {}
  for i = 0, C.pivq_tensor_set_count(set) - 1 do
    tensors[ffi.string(C.pivq_tensor_set_name(set, i))] = gc.wrap(C.pivq_tensor_set_tensor(set, i))
  end
  for i = 0, C.pivq_tensor_set_metadata_count(set) - 1 do
    metadata[ffi.string(C.pivq_tensor_set_metadata_key(set, i))] =
      ffi.string(C.pivq_tensor_set_metadata_value(set, i))
  end
  C.pivq_tensor_set_free(ffi.gc(set, nil))
  return tensors, metadata
end

-- pivq.files.write_text(path, string) -> true, or nil, err: the same atomic replacement for any
-- small file (metrics, configs).
function M.write_text(path, text)
  if type(path) ~= "string" then error("write_text: path must be a string, got " .. type(path), 2) end
  if type(text) ~= "string" then error("write_text: text must be a string, got " .. type(text), 2) end
  if C.pivq_write_file_atomic(path, text, #text) ~= 0 then return nil, last_error() end
  return true
end

-- pivq.files.read_text(path) -> the whole file as a string, or nil, err (e.g. a missing file).
function M.read_text(path)
  if type(path) ~= "string" then error("read_text: path must be a string, got " .. type(path), 2) end
  local f, err = io.open(path, "rb")
  if not f then return nil, "read_text: " .. tostring(err) end
  local text = f:read("*a")
  f:close()
  return text
end

-- pivq.files.remove_stale(path) -> count, or nil, err: removes the PATH.tmp-XXXXXX files that
-- writes killed before their rename left beside path. Only when nobody else is writing path.
function M.remove_stale(path)
  if type(path) ~= "string" then error("remove_stale: path must be a string, got " .. type(path), 2) end
  local n = C.pivq_atomic_remove_stale(path)
  if n < 0 then return nil, last_error() end
  return n
end

return M
