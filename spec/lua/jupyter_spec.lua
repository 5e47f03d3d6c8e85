-- The Jupyter kernel: the Lua side's pieces in-process (framing, cells, completion, display),
-- the `pivq jupyter serve` process over its pipes (no Python), and the whole kernel driven by
-- jupyter_client as a notebook front-end would (spec/helpers/jupyter_kernel_check.py).
local jupyter = require "pivq.display.jupyter"
local display = require "pivq.display"
local pivq = require "pivq"

local BUILD = os.getenv("PIVQ_BUILD_DIR") or "build"
local EXE = BUILD .. "/pivq"

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The ASan test task preloads its runtime into LuaJIT; of our children only pivq may run with
-- it (mktemp, Python, ... fail on their own leaks at exit under it).
local PRELOAD = os.getenv("LD_PRELOAD") or ""
local PIVQ = string.format("env LD_PRELOAD=%s %s", quote(PRELOAD), EXE)

-- Run a shell command (without the preload); returns the exit status and the combined output.
local function sh(cmd)
  local p = io.popen("env -u LD_PRELOAD sh -c " .. quote(cmd .. ' 2>&1; echo "exit=$?"'))
  local out = p:read("*a")
  p:close()
  local status = tonumber(out:match("exit=(%d+)%s*$"))
  return status, (out:gsub("exit=%d+%s*$", ""))
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(sh("mkdir -p '" .. d .. "'") == 0)
  return d
end

-- Run a compiled cell in its own environment; returns the packed values (or nil) and the env.
local function run_cell(src, env)
  env = env or {}
  setmetatable(env, { __index = _G })
  local fn, show = jupyter.compile_cell(src)
  assert(fn, show)
  setfenv(fn, env)
  local r = fn(jupyter.pack)
  return show and type(r) == "table" and r or nil, env
end

describe("pivq.jupyter framing", function()
  it("round-trips messages with empty, binary and multi-line fields", function()
    local path = os.tmpname()
    local a = { "execute", "print(1)\nx = 2", "3" }
    local b = { "display", "image/png", "\137PNG\r\n\26\n\0\1\2", "text/plain", "" }
    write_file(path, jupyter.encode(a) .. jupyter.encode(b))
    local f = assert(io.open(path, "rb"))
    assert.are.same(a, jupyter.read_message(f))
    assert.are.same(b, jupyter.read_message(f))
    assert.is_nil(jupyter.read_message(f))
    f:close()
    os.remove(path)
  end)

  it("raises on a truncated message", function()
    local path = os.tmpname()
    write_file(path, jupyter.encode({ "execute", "some code" }):sub(1, -3))
    local f = assert(io.open(path, "rb"))
    assert.has_error(function() jupyter.read_message(f) end)
    f:close()
    os.remove(path)
  end)
end)

describe("pivq.jupyter cells", function()
  it("shows the value of a cell that is one expression, all of its values", function()
    assert.are.same({ n = 1, 2 }, run_cell("1 + 1"))
    assert.are.same({ n = 2, 1, "a" }, run_cell("1, 'a'"))
  end)

  it("shows the last expression after statements, seeing their locals", function()
    assert.are.same({ n = 1, 6 }, run_cell("local x = 2\nx * 3"))
    assert.are.same({ n = 1, 5 }, run_cell("local a = 5\na\n-- a comment at the end"))
    assert.are.same({ n = 1, 3 }, run_cell("local t = {}\ntable.insert(t, 1)\nselect('#',\n  1, 2, 3)"))
  end)

  it("splits off a last call statement but not a continued expression", function()
    local env = { f = function(v) return v * 10 end }
    assert.are.same({ n = 1, 20 }, run_cell("y = 1\nf(2)", env))
    assert.are.equal(1, env.y)
    local r, env2 = run_cell("x = 1\n-2")
    assert.is_nil(r)
    assert.are.equal(-1, env2.x)
  end)

  it("shows nothing for statements or a trailing semicolon", function()
    assert.is_nil(run_cell("for i = 1, 3 do\nlocal _ = i\nend"))
    assert.is_nil(run_cell("{a = 1};"))
    local _, env = run_cell("local t = {}\nt.x = 1\nrawset(t, \"y\", 2); z = t;")
    assert.are.same({ x = 1, y = 2 }, env.z)
  end)

  it("reports syntax errors with the cell's name and line", function()
    local fn, err = jupyter.compile_cell("local a = 1\nx = = 2", "=cell[4]")
    assert.is_nil(fn)
    assert.matches("cell%[4%]:2:", err)
  end)

  it("raises errors at the cell's line, also from its last expression", function()
    local fn = jupyter.compile_cell("local a = 1\nerror('boom')", "=cell[5]")
    local ok, err = pcall(fn, jupyter.pack)
    assert.is_false(ok)
    assert.are.equal("cell[5]:2: boom", err)
  end)

  it("tells complete, incomplete and invalid input apart", function()
    assert.are.equal("complete", jupyter.is_complete("x = 1"))
    assert.are.equal("incomplete", jupyter.is_complete("for i = 1, 2 do"))
    assert.are.equal("invalid", jupyter.is_complete("x = = 1"))
  end)

  it("completes globals, keywords, fields and methods", function()
    local env = { pivq = { rand = 1, randn = 2, zeros = 3 }, print = print }
    local s, e, m = jupyter.complete("y = pivq.ran", 12, env)
    assert.are.same({ 9, 12, { "rand", "randn" } }, { s, e, m })
    m = select(3, jupyter.complete("re", 2, env))
    assert.are.same({ "repeat", "return" }, m)
    m = select(3, jupyter.complete("t:nar", 5, { t = pivq.zeros(2) }))
    assert.are.same({ "narrow" }, m)
  end)

  it("inspects the name under the cursor without calling anything", function()
    local env = { pivq = { version = "1.0", cfg = { lr = 0.1 }, f = function() end }, print = print }
    assert.are.equal('pivq.version: string\n"1.0"', jupyter.inspect("x = pivq.version", 12, env))
    assert.are.equal("pivq.cfg: table\n{lr = 0.1}", jupyter.inspect("pivq.cfg.lr + 1", 6, env))
    assert.are.equal("pivq.cfg.lr: number\n0.1", jupyter.inspect("pivq.cfg.lr + 1", 11, env))
    -- a function: its signature from its definition line and where that is (pivq.display.help)
    assert.matches("^pivq%.f: f%(%)  %-%- .*jupyter_spec%.lua:%d+$", jupyter.inspect("pivq.f(", 6, env))
    assert.are.equal("print: function (built in)", jupyter.inspect("print", 5, env))
    assert.is_nil(jupyter.inspect("nothing.here", 5, env))
  end)

  it("turns a Lua error into ename, evalue and traceback lines", function()
    local text = "cell[2]:1: boom\nstack traceback:\n\tcell[2]:1: in main chunk\n" ..
      "\t[C]: in function 'xpcall'\n\tpivq/jupyter.lua:1: in function 'run'"
    local ename, evalue, tb = jupyter.error_parts(text)
    assert.are.equal("LuaError", ename)
    assert.are.equal("cell[2]:1: boom", evalue)
    assert.are.same({ "cell[2]:1: boom", "stack traceback:", "\tcell[2]:1: in main chunk" }, tb)
    assert.are.equal("Interrupt", (jupyter.error_parts("cell[3]:1: interrupted")))
    local _, shortened = jupyter.error_parts("/src/pivq-1/lua/pivq/t.lua:3: bad", "/src/pivq-1")
    assert.are.equal("lua/pivq/t.lua:3: bad", shortened)
  end)
end)

describe("pivq.display", function()
  local saved_image, shown

  before_each(function()
    saved_image = package.loaded["pivq.data.image"]
    shown = {}
    display.set_sink(function(bundle) shown[#shown + 1] = bundle end)
  end)

  after_each(function()
    package.loaded["pivq.data.image"] = saved_image
    display.set_sink(nil)
  end)

  it("sends PNG images, tiling batches, through pivq.image.encode_png", function()
    package.loaded["pivq.data.image"] = dofile("spec/helpers/png_double.lua")
    display.show(pivq.rand(3, 5, 7))
    display.display(pivq.rand(5, 1, 4, 6), { ncol = 2, padding = 1 })
    assert.are.equal(2, #shown)
    assert.are.equal("\137PNG", shown[1]["image/png"]:sub(1, 4))
    assert.are.equal("<image 3x5x7>", shown[1]["text/plain"])
    -- IHDR: width and height of the 3 x 2 grid with 1-pixel gaps
    local ihdr = shown[2]["image/png"]:sub(17, 24)
    assert.are.same({ 0, 0, 0, 13, 0, 0, 0, 14 }, { ihdr:byte(1, 8) })
  end)

  it("falls back to pivq.image.save and reads the file back", function()
    package.loaded["pivq.data.image"] = {
      save = function(path, t)
        assert(path:match("%.png$"))
        write_file(path, "\137PNG-from-save " .. table.concat(t:size(), "x"))
        return true
      end,
    }
    display.show(pivq.zeros(2, 3)) -- H x W is a gray image
    display.show(pivq.zeros(3, 2):t()) -- also when it is a non-contiguous view
    assert.are.equal("\137PNG-from-save 1x2x3", shown[1]["image/png"])
    assert.are.equal("\137PNG-from-save 1x2x3", shown[2]["image/png"])
  end)

  it("says clearly when there is no PNG support, and at the caller's line", function()
    package.loaded["pivq.data.image"] = nil
    if display.png_available() then return end -- pivq.image is built: nothing to check
    local ok, err = pcall(function() display.show(pivq.zeros(1, 2, 2)) end)
    assert.is_false(ok)
    assert.matches("jupyter_spec.lua:%d+: pivq.display needs pivq.image %(PNG support%)", err)
  end)

  it("shows other values as their pretty text, and raw bundles as given", function()
    display.display({ 1, { a = 2 } })
    display.display(pivq.zeros(2, 5, 5)) -- 2 channels: not an image
    display.mime({ ["text/html"] = "<b>hi</b>" })
    assert.are.same({ ["text/plain"] = "{1, {a = 2}}" }, shown[1])
    assert.matches("%[pivq.Tensor float32 of size 2x5x5%]", shown[2]["text/plain"])
    assert.are.same({ ["text/html"] = "<b>hi</b>" }, shown[3])
    assert.has_error(function() display.show("not an image") end)
    assert.has_error(function() display.show(pivq.zeros(2, 2, 2, 2)) end)
  end)
end)

describe("pivq jupyter serve", function()
  -- Requests are written ahead to a file (fd 3), replies read from another (fd 4).
  local function serve(requests)
    local dir = tmpdir()
    local parts = {}
    for i, r in ipairs(requests) do parts[i] = jupyter.encode(r) end
    write_file(dir .. "/req", table.concat(parts))
    local status = sh(string.format(
      "timeout 60 %s jupyter serve --in 3 --out 4 3<'%s/req' 4>'%s/rep' >'%s/out'", PIVQ, dir, dir, dir))
    local replies = {}
    local f = assert(io.open(dir .. "/rep", "rb"))
    while true do
      local m = jupyter.read_message(f)
      if not m then break end
      replies[#replies + 1] = m
    end
    f:close()
    local out = read_file(dir .. "/out")
    sh("rm -rf '" .. dir .. "'")
    return status, replies, out
  end

  it("runs cells in one state; output stays on stdout; errors do not end it", function()
    local status, r, out = serve({
      { "execute", 'x = 41\nio.write("1\\n2\\nok")\nx + 1', "1" },
      { "execute", "local a = 1\nerror('boom')", "2" },
      { "execute", "x", "3" },
      { "shutdown" },
    })
    assert.are.equal(0, status)
    assert.are.equal("1\n2\nok", out) -- protocol-looking text on stdout cannot confuse the kernel
    assert.are.same({ "ready", pivq.version }, r[1])
    assert.are.same({ "result", "42" }, r[2])
    assert.are.same({ "ok" }, r[3])
    assert.are.equal("error", r[4][1])
    assert.are.equal("LuaError", r[4][2])
    assert.are.equal("cell[2]:2: boom", r[4][3])
    assert.are.same({ "result", "41" }, r[5])
    assert.are.same({ "ok" }, r[6])
    assert.are.same({ "ok" }, r[7]) -- shutdown
    assert.are.equal(7, #r)
  end)

  it("sends displays and waits for their ack", function()
    local status, r = serve({
      { "execute", 'package.loaded["pivq.data.image"] = dofile("spec/helpers/png_double.lua")', "1" },
      { "execute", "pivq.show(pivq.rand(1, 2, 3))\npivq.display('text')", "2" },
      { "ack" },
      { "ack" },
      { "complete", "pivq.zer", "8" },
      { "is_complete", "if x then" },
    })
    assert.are.equal(0, status) -- the end of input ends the server cleanly
    assert.are.same({ "ok" }, r[2])
    assert.are.equal("display", r[3][1])
    assert.are.same({ "image/png", "text/plain", "<image 1x2x3>" },
      { r[3][2], r[3][4], r[3][5] })
    assert.are.equal("\137PNG", r[3][3]:sub(1, 4))
    assert.are.same({ "display", "text/plain", '"text"' }, r[4])
    assert.are.same({ "ok" }, r[5])
    assert.are.same({ "complete", "5", "8", "zeros" }, r[6])
    assert.are.same({ "is_complete", "incomplete" }, r[7])
  end)
end)

describe("the pivq Jupyter kernel through jupyter_client", function()
  local dir, results

  -- Install the kernel spec into a temporary prefix and run the driver once.
  local function run_driver()
    if results then return results end
    dir = tmpdir()
    local status, out = sh(string.format("%s jupyter install --prefix '%s/prefix'", PIVQ, dir))
    assert(status == 0, out)
    local env = string.format("JUPYTER_PATH='%s/prefix/share/jupyter' JUPYTER_RUNTIME_DIR='%s/runtime' " ..
      "JUPYTER_CONFIG_DIR='%s/config' IPYTHONDIR='%s/ipython' PIVQ_KERNEL_INTERRUPT_GRACE=1 " ..
      "PIVQ_KERNEL_PRELOAD=%s", dir, dir, dir, dir, quote(PRELOAD))
    status, out = sh(env .. " timeout 240 /usr/bin/python3 spec/helpers/jupyter_kernel_check.py")
    results = { status = status, out = out }
    return results
  end

  teardown(function()
    if dir then sh("rm -rf '" .. dir .. "'") end
  end)

  it("installs a kernel spec that runs /usr/bin/python3 on kernel.py with this pivq", function()
    run_driver()
    local spec = read_file(dir .. "/prefix/share/jupyter/kernels/pivq/kernel.json")
    local status, out = sh("/usr/bin/python3 -c 'import json, sys; k = json.load(open(sys.argv[1])); " ..
      "print(k[\"argv\"][0], k[\"argv\"][1].endswith(\"lua/pivq/display/jupyter/kernel.py\"), " ..
      "k[\"argv\"][-1], k[\"display_name\"], k[\"language\"])' '" ..
      dir .. "/prefix/share/jupyter/kernels/pivq/kernel.json'")
    assert.are.equal(0, status, spec)
    assert.are.equal("/usr/bin/python3 True {connection_file} pivq (LuaJIT) lua\n", out)
  end)

  for _, check in ipairs({ "execute", "error_then_good", "print_flood", "no_png_message", "image_pixels",
    "image", "interrupt", "interrupt_compiled_loop", "process_exit", "complete" }) do
    it("passes the '" .. check .. "' check", function()
      local r = run_driver()
      if not r.out:find("PASS " .. check .. "\n", 1, true) then
        error("kernel check '" .. check .. "' did not pass; the driver said:\n" .. r.out, 0)
      end
    end)
  end

  it("ran every check to the end", function()
    local r = run_driver()
    assert(r.out:find("\nDONE\n", 1, true) and r.status == 0, r.out)
  end)
end)
