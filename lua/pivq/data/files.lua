-- pivq.files: checkpoints as safetensors files (pivq.save / pivq.load), and the package's one way
-- to write a file (write_text and the C image writers: temporary file beside the target, every
-- write checked, fsync, rename), make folders (mkdir_p), lock a run folder (lock) and run a
-- program (run) -- the last three without a shell.
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

-- pivq.files.mkdir_p(path) -> true, or nil, err: the folder and its missing parents (no shell).
function M.mkdir_p(path)
  if type(path) ~= "string" then error("mkdir_p: path must be a string, got " .. type(path), 2) end
  if C.pivq_mkdir_p(path) ~= 0 then return nil, last_error() end
  return true
end

-- pivq.files.parent(path) -> the folder holding path ("." for a bare name).
function M.parent(path)
  if type(path) ~= "string" then error("parent: path must be a string, got " .. type(path), 2) end
  return path:match("^(.*)/[^/]*$") or "."
end

-- pivq.files.write_or_fail(fname, path, text): write_text, raising "fname: cannot write ..." on
-- failure (a recipe's output: the command must exit non-zero, not report success).
function M.write_or_fail(fname, path, text)
  local args = { fname, path, text }
  for i = 1, 3 do
    local v = args[i]
    if type(v) ~= "string" then
      error(string.format("write_or_fail: %s must be a string, got %s", ({ "fname", "path", "text" })[i], type(v)), 2)
    end
  end
  local ok, err = M.write_text(path, text)
  if not ok then error(string.format("%s: %s", fname, err), 2) end
  return true
end

-- pivq.files.lock(path) -> a lock (lock:release(); released too when collected or at exit), or
-- nil, err, holder_pid. An exclusive flock on path holding the owner's PID: a second holder is
-- refused at once, naming the first's PID; the kernel drops a killed holder's lock.
local Lock = {}
Lock.__index = Lock
function Lock:release()
  if self.fd >= 0 then
    C.pivq_lock_release(self.fd)
    self.fd = -1
  end
end
Lock.__gc = Lock.release
function M.lock(path)
  if type(path) ~= "string" then error("lock: path must be a string, got " .. type(path), 2) end
  local holder = ffi.new("int64_t[1]")
  local fd = C.pivq_lock_acquire(path, holder)
  if fd < 0 then return nil, last_error(), tonumber(holder[0]) end
  -- a userdata proxy carries __gc in Lua 5.1: the descriptor closes when the lock is collected
  local lock = setmetatable({ fd = fd, path = path }, Lock)
  local proxy = newproxy(true)
  getmetatable(proxy).__gc = function() lock:release() end
  lock.proxy = proxy
  return lock
end

-- pivq.files.run({program, arg, ...} [, max_output]) -> exit status, output (stdout and stderr,
-- at most max_output bytes, default 1 MB), or nil, err. No shell: the arguments reach the
-- program as they are, so user text is never parsed by /bin/sh.
function M.run(argv, max_output)
  if type(argv) ~= "table" or type(argv[1]) ~= "string" or argv[1] == "" then
    error("run: argv must be a table {program, args...} of strings", 2)
  end
  local n = #argv
  local cargv = ffi.new("const char*[?]", n + 1)
  for i = 1, n do
    if type(argv[i]) ~= "string" then
      error(string.format("run: argv[%d] must be a string, got %s", i, type(argv[i])), 2)
    end
    cargv[i - 1] = argv[i]
  end
  cargv[n] = nil
  local cap = max_output or 2 ^ 20
  if type(cap) ~= "number" or cap % 1 ~= 0 or cap < 0 or cap > 2 ^ 31 then
    error("run: max_output must be an integer in 0..2^31, got " .. tostring(cap), 2)
  end
  local buf = ffi.new("char[?]", cap + 1)
  local len = ffi.new("size_t[1]")
  local status = C.pivq_run(cargv, buf, cap, len)
  if status < 0 then return nil, last_error() end
  return status, ffi.string(buf, len[0])
end

-- pivq.files.realpath(path) -> the absolute path with links resolved, or nil, err (a missing
-- path, say).
do
  -- declared once per process, whoever declared them first (the cdef refuses redefinitions)
  pcall(ffi.cdef, "char *realpath(const char *path, char *resolved);")
  pcall(ffi.cdef, "void free(void *p);")
end
function M.realpath(path)
  if type(path) ~= "string" then error("realpath: path must be a string, got " .. type(path), 2) end
  local r = ffi.C.realpath(path, nil)
  if r == nil then return nil, "realpath: cannot resolve " .. path end
  local s = ffi.string(r)
  ffi.C.free(r)
  return s
end

return M
