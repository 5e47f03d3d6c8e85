-- The layer rule of csrc/ (csrc/tools/check_layers.lua, run by every build): a file includes only
-- "pivq.h" and headers of its own layer or the layers below it, in the order CMakeLists.txt's
-- PIVQ_LAYERS gives. Checked on the real tree and on small crafted trees, one violation each.

-- the layer order, read from CMakeLists.txt (where it is written down once)
local function layer_order()
  local f = assert(io.open("CMakeLists.txt", "r"))
  local text = f:read("*a")
  f:close()
  return assert(text:match("set%(PIVQ_LAYERS ([%w%s]-)%)"), "PIVQ_LAYERS not found in CMakeLists.txt")
end

-- find, mktemp, mkdir and rm run without the ASan stage's preload (they are not instrumented, and
-- LeakSanitizer would abort them at exit over their own allocations)
local SHELL_TOOLS = "env -u LD_PRELOAD "

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("exit=(%d+)%s*$")), out
end

-- the .c/.h paths under dir, relative to it
local function sources(dir)
  local p = assert(io.popen(SHELL_TOOLS .. "sh -c \"cd '" .. dir .. "' && find . -name '*.c' -o -name '*.h'\""))
  local list = {}
  for line in p:lines() do list[#list + 1] = "'" .. line .. "'" end
  p:close()
  return table.concat(list, " ")
end

local function check(dir)
  return run("luajit csrc/tools/check_layers.lua '" .. dir .. "' '" .. layer_order() .. "' " .. sources(dir))
end

-- a temporary csrc tree holding files = {path = text}
local function tree(files)
  local p = assert(io.popen(SHELL_TOOLS .. "mktemp -d"))
  local dir = p:read("*l")
  p:close()
  for path, text in pairs(files) do
    local folder = path:match("(.*)/")
    if folder then assert(os.execute(SHELL_TOOLS .. "mkdir -p '" .. dir .. "/" .. folder .. "'") == 0) end
    local f = assert(io.open(dir .. "/" .. path, "w"))
    assert(f:write(text))
    assert(f:close())
  end
  return dir
end

local function remove(dir) assert(os.execute(SHELL_TOOLS .. "rm -rf '" .. dir .. "'") == 0) end

describe("csrc layers", function()
  it("the real tree keeps the rule", function()
    local rc, out = check("csrc")
    assert.are.equal(0, rc, out)
  end)

  it("accepts the public header, its own layer and the layers below", function()
    local dir = tree({
      ["pivq.h"] = "",
      ["core/core.h"] = '#include "pivq.h"\n',
      ["ops/ops.h"] = '#include "autograd/autograd.h"\n',
      ["autograd/autograd.h"] = '#include "core/core.h"\n',
      ["quant/vq.c"] = '#include "ops/ops.h"\n#include "core/core.h"\n#include <stdio.h>\n',
      ["host/main.c"] = '#include "pivq.h"\n',
      ["fuzz/fuzz_x.c"] = '#include "quant/vq.h"\n',
    })
    local rc, out = check(dir)
    remove(dir)
    assert.are.equal(0, rc, out)
  end)

  it("fails on an include of a higher layer, naming the file, the line and the rule", function()
    local dir = tree({ ["io/png.c"] = '/* a png reader */\n#include "io/io.h"\n#include "quant/vq.h"\n' })
    local rc, out = check(dir)
    remove(dir)
    assert.are.equal(1, rc, out)
    assert.matches('csrc/io/png.c:3: includes "quant/vq.h": layer io may include only core, autograd, ops, io',
      out, 1, true)
    assert.matches("1 layer violation", out, 1, true)
  end)

  it("fails on an include without its layer folder, a flat file, a stray folder and a host using internals",
    function()
      local dir = tree({
        ["core/tensor.c"] = '#include "internal.h"\n',
        ["flat.c"] = "",
        ["misc/x.c"] = "",
        ["host/main.c"] = '#include "core/core.h"\n',
      })
      local rc, out = check(dir)
      remove(dir)
      assert.are.equal(1, rc, out)
      assert.matches('csrc/core/tensor.c:1: includes "internal.h": name the layer folder', out, 1, true)
      assert.matches("csrc/flat.c:1: is in no layer", out, 1, true)
      assert.matches("csrc/misc/x.c:1: folder 'misc' is not a layer", out, 1, true)
      assert.matches('csrc/host/main.c:1: includes "core/core.h": the host uses the public API only', out, 1, true)
      assert.matches("4 layer violation", out, 1, true)
    end)
end)
