-- LuaRocks build of pivq (`luarocks make`): the C library, the `pivq` host, the Lua package and
-- the recipes, through the project's CMake build. "scm" is LuaRocks' name for "built from this
-- checkout": the release version is defined once, in CMakeLists.txt.
rockspec_format = "3.0"
package = "pivq"
version = "scm-1"
source = { url = "git+file://." }
description = {
  summary = "Permutation-invariant discrete representation learning of spatially aligned images",
  detailed = "A C library (tensors, autograd, convolutions, attention, the matching quantizer, "
    .. "k-NN) bound through the LuaJIT FFI, with recipes to train, interpolate, sample and evaluate.",
}
dependencies = { "lua >= 5.1, < 5.2" } -- LuaJIT (the FFI is required)
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    -- the package where LuaRocks deploys Lua modules; the library and recipes stay in the
    -- rock's own folder (absolute paths: the host and the cdef module name them so)
    PIVQ_INSTALL_LUADIR = "$(LUADIR)",
    CMAKE_INSTALL_LIBDIR = "$(PREFIX)/clib",
    PIVQ_INSTALL_RECIPEDIR = "$(PREFIX)/recipes",
    CMAKE_INSTALL_BINDIR = "$(BINDIR)",
  },
}
