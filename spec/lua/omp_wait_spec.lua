-- The OpenMP wait policy chosen before libgomp starts (csrc/host/main.c for the `pivq` host,
-- lua/pivq/core/ffi.lua for a plain luajit): what libgomp itself reports it read
-- (OMP_DISPLAY_ENV=verbose prints GOMP_SPINCOUNT), what pivq.omp_wait() says, and that programs
-- started later see the user's environment, not the host's variable.
local BIN = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"
local LUA_PATH = "lua/?.lua;lua/?/init.lua;" .. (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/lua/?.lua;;"
local SCRIPT = [['local p = require "pivq"; print("omp_wait=" .. p.omp_wait()); ]]
  .. [[print("child=" .. tostring(os.getenv("GOMP_SPINCOUNT")))']]

-- run a command with the wait-policy variables removed and `env` added; stdout + stderr
local function run(env, cmd)
  local p = assert(io.popen("env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=verbose " .. env
    .. " " .. cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

-- libgomp's own report of the spin count it read
local function spincount(out) return out:match("GOMP_SPINCOUNT = '(%d+)'") end

-- Under the ASan stage libpivq (and so libgomp) is preloaded into every process: libgomp has
-- read its environment before anything of pivq runs, and pivq says so.
local preloaded = (os.getenv("LD_PRELOAD") or ""):match("libpivq") ~= nil

describe("the OpenMP wait policy", function()
  it("the host sets a short spin count before libgomp starts, and hides it from child programs", function()
    local out = run("", BIN .. " -e " .. SCRIPT)
    assert.equals("1000", spincount(out), out)
    assert.matches("omp_wait=pivq: GOMP_SPINCOUNT=1000", out, 1, true)
    assert.matches("child=nil", out, 1, true)
  end)

  it("the host keeps the user's choice", function()
    local out = run("GOMP_SPINCOUNT=7", BIN .. " -e " .. SCRIPT)
    assert.equals("7", spincount(out), out)
    assert.matches("omp_wait=user: GOMP_SPINCOUNT=7", out, 1, true)
    assert.matches("child=7", out, 1, true)
    out = run("OMP_WAIT_POLICY=active", BIN .. " -e " .. SCRIPT)
    assert.matches("omp_wait=user: OMP_WAIT_POLICY=active", out, 1, true)
    assert.is_not.equals("1000", spincount(out))
  end)

  it("a plain luajit's require \"pivq\" does the same before it loads libpivq", function()
    local out = run("LUA_PATH='" .. LUA_PATH .. "'", "luajit -e " .. SCRIPT)
    if preloaded then
      assert.matches("omp_wait=libgomp default (libgomp was loaded before pivq)", out, 1, true)
    else
      assert.equals("1000", spincount(out), out)
      assert.matches("omp_wait=pivq: GOMP_SPINCOUNT=1000", out, 1, true)
    end
    assert.matches("child=nil", out, 1, true)
    out = run("GOMP_SPINCOUNT=9 LUA_PATH='" .. LUA_PATH .. "'", "luajit -e " .. SCRIPT)
    assert.equals("9", spincount(out), out)
    assert.matches("omp_wait=user: GOMP_SPINCOUNT=9", out, 1, true)
  end)
end)
