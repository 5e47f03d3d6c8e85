-- pivq.core.ffi: loads the generated cdef and the C library exactly once per Lua state.
--
-- busted (and a user's REPL) may re-require modules; ffi.cdef and ffi.metatype may not run
-- twice for one type, so the loaded state is kept in the Lua registry and reused.
local ffi = require "ffi"

local registry = debug.getregistry()
local KEY = "pivq.ffi.state"

local state = registry[KEY]

-- The OpenMP wait policy for a plain luajit (the `pivq` host chooses it itself, before libgomp
-- starts: csrc/host/main.c). libgomp reads GOMP_SPINCOUNT when it is loaded, which for plain
-- luajit is the ffi.load of libpivq below; unless the user has chosen (OMP_WAIT_POLICY or
-- GOMP_SPINCOUNT set) or libgomp is already in the process, set the host's spin count first
-- and remove it again after the load. Returns the text pivq.omp_wait() reports.
local SPINCOUNT = "1000" -- the host's PIVQ_HOST_SPINCOUNT
-- The user's own wait settings, as pivq.omp_wait() reports them, or nil.
local function user_omp_wait()
  local policy, spin = os.getenv("OMP_WAIT_POLICY"), os.getenv("GOMP_SPINCOUNT")
  if policy or spin then
    return "user: " .. (policy and "OMP_WAIT_POLICY=" .. policy or "")
      .. ((policy and spin) and " " or "") .. (spin and "GOMP_SPINCOUNT=" .. spin or "")
  end
end

local function omp_wait_before_load()
  local user = user_omp_wait()
  if user then return user end
  for _, decl in ipairs({ "void *dlopen(const char *filename, int flags);", "int unsetenv(const char *name);",
    "int setenv(const char *name, const char *value, int overwrite);" }) do
    pcall(ffi.cdef, decl) -- each may exist already
  end
  local RTLD_LAZY, RTLD_NOLOAD = 0x1, 0x4 -- glibc's values (dlfcn.h)
  if ffi.C.dlopen("libgomp.so.1", RTLD_LAZY + RTLD_NOLOAD) ~= nil then
    return "libgomp default (libgomp was loaded before pivq)"
  end
  if ffi.C.setenv("GOMP_SPINCOUNT", SPINCOUNT, 1) ~= 0 then return "libgomp default" end
  return "pivq: GOMP_SPINCOUNT=" .. SPINCOUNT
end
if not state then
  local ok, build = pcall(require, "pivq._build")
  if not ok then
    error("pivq: the generated module pivq._build was not found; build the project first "
      .. "(cmake -S . -B build && cmake --build build) and put build/lua on package.path\n"
      .. tostring(build), 2)
  end
  ffi.cdef(build.cdef)
  -- Inside the `pivq` host the library is already linked in; from plain luajit load it by path.
  local in_process = pcall(function() return ffi.C.pivq_version end)
  pcall(ffi.cdef, "void *dlopen(const char *filename, int flags);") -- may exist already
  local omp_wait
  if in_process then
    local found, host = pcall(require, "pivq.host")
    -- without the pivq host, libpivq (and libgomp with it) was in the process before this module
    -- ran: preloaded (as the ASan stage does) or linked into another host
    omp_wait = found and type(host) == "table" and host.omp_wait
      or user_omp_wait() or "libgomp default (libgomp was loaded before pivq)"
  else
    omp_wait = omp_wait_before_load()
  end
  local C = in_process and ffi.C or ffi.load(build.libpath)
  if not in_process and omp_wait:match("^pivq: ") then
    ffi.C.unsetenv("GOMP_SPINCOUNT") -- libgomp has read it; programs started later see the user's
  end
  if not in_process then
    -- Pin the library for the life of the process. LuaJIT dlclose()s an ffi.load'ed library
    -- when the Lua state closes, in no fixed order with the finalizers of tensors still alive
    -- then; a finalizer running after the unmap calls freed code and the process segfaults at
    -- exit. A second dlopen with RTLD_NODELETE keeps the code mapped until exit.
    local RTLD_NOW, RTLD_NODELETE = 0x2, 0x1000 -- glibc's values (dlfcn.h)
    if ffi.C.dlopen(build.libpath, RTLD_NOW + RTLD_NODELETE) == nil then
      error("pivq: cannot pin " .. build.libpath, 2)
    end
  end
  -- A Lua tensor is a one-field struct holding the C pointer, not the pointer itself: LuaJIT
  -- gives pointers built-in arithmetic (p + 1, p - q) that would shadow __add and __sub.
  ffi.cdef("typedef struct pivq_handle { pivq_tensor *c; } pivq_handle;")
  state = { C = C, libpath = build.libpath, in_process = in_process,
    omp_wait = omp_wait, handle_t = ffi.typeof("pivq_handle") }
  registry[KEY] = state
end

return state
