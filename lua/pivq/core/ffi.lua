-- pivq.core.ffi: loads the generated cdef and the C library exactly once per Lua state.
--
-- busted (and a user's REPL) may re-require modules; ffi.cdef and ffi.metatype may not run
-- twice for one type, so the loaded state is kept in the Lua registry and reused.
local ffi = require "ffi"

local registry = debug.getregistry()
local KEY = "pivq.ffi.state"

local state = registry[KEY]
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
  local C = in_process and ffi.C or ffi.load(build.libpath)
  if not in_process then
    -- Pin the library for the life of the process. LuaJIT dlclose()s an ffi.load'ed library
    -- when the Lua state closes, in no fixed order with the finalizers of tensors still alive
    -- then; a finalizer running after the unmap calls freed code and the process segfaults at
    -- exit. A second dlopen with RTLD_NODELETE keeps the code mapped until exit.
    pcall(ffi.cdef, "void *dlopen(const char *filename, int flags);") -- may exist already
    local RTLD_NOW, RTLD_NODELETE = 0x2, 0x1000 -- glibc's values (dlfcn.h)
    if ffi.C.dlopen(build.libpath, RTLD_NOW + RTLD_NODELETE) == nil then
      error("pivq: cannot pin " .. build.libpath, 2)
    end
  end
  -- A Lua tensor is a one-field struct holding the C pointer, not the pointer itself: LuaJIT
  -- gives pointers built-in arithmetic (p + 1, p - q) that would shadow __add and __sub.
  ffi.cdef("typedef struct pivq_handle { pivq_tensor *c; } pivq_handle;")
  state = { C = C, libpath = build.libpath, in_process = in_process, handle_t = ffi.typeof("pivq_handle") }
  registry[KEY] = state
end

return state
