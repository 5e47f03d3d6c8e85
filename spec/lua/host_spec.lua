-- The `pivq` executable (csrc/host/main.c + lua/pivq/display/cli.lua), run as a subprocess: -e, scripts
-- with arguments, strict globals, exit codes, tracebacks, help, --version, the REPL on a pipe.
local pivq = require "pivq"

local BIN = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function tmpname()
  local name = os.tmpname()
  os.remove(name)
  return name
end

-- run BIN with argument string `args` (and optional stdin); returns stdout, stderr, exit code
local function run(args, stdin)
  local err = tmpname()
  local cmd = BIN .. " " .. args
  if stdin then
    local inf = tmpname()
    local f = assert(io.open(inf, "w"))
    f:write(stdin)
    f:close()
    cmd = cmd .. " < " .. inf
  end
  local p = assert(io.popen(cmd .. " 2> " .. err .. "; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  local f = assert(io.open(err))
  local stderr = f:read("*a")
  f:close()
  os.remove(err)
  local code = tonumber(out:match("exit=(%d+)\n$"))
  return out:gsub("exit=%d+\n$", ""), stderr, code
end

local function script(text)
  local name = tmpname() .. ".lua"
  local f = assert(io.open(name, "w"))
  f:write(text)
  f:close()
  return name
end

describe("the pivq host", function()
  it("-e runs code with pivq preloaded", function()
    local out, err, code = run("-e " .. shell_quote("print(pivq.randn(2, 3))"))
    assert.are.equal(0, code, err)
    assert.matches("%[pivq.Tensor float32 of size 2x3%]\n$", out)
    local lines = select(2, out:gsub("\n", ""))
    assert.are.equal(3, lines)
  end)

  it("--version and help", function()
    local out, _, code = run("--version")
    assert.are.equal(0, code)
    assert.are.equal("pivq " .. pivq.version .. "\n", out)
    out, _, code = run("help")
    assert.are.equal(0, code)
    assert.matches("usage: pivq", out)
    assert.matches("\n  demo%s+the main job", out)
  end)

  it("runs a script with arg set and its arguments as ...", function()
    local s = script([[
local pivq = require "pivq"
local a, b = ...
print(arg[0], arg[1], arg[2], #arg, a, b)
print(pivq.tensor{1, 2}:sum():item())
]])
    local out, err, code = run(s .. " first 'second arg'")
    os.remove(s)
    assert.are.equal(0, code, err)
    assert.are.equal(s .. "\tfirst\tsecond arg\t2\tfirst\tsecond arg\n3\n", out)
  end)

  it("a script's number return value is the exit code", function()
    local s = script("return 3\n")
    local _, _, code = run(s)
    os.remove(s)
    assert.are.equal(3, code)
  end)

  it("an uncaught error exits non-zero with the message and a traceback", function()
    local s = script([[
local pivq = require "pivq"
local function inner() return pivq.ones(2, 3) + pivq.ones(3, 2) end
inner()
]])
    local out, err, code = run(s)
    os.remove(s)
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("add: shapes 2x3 and 3x2 cannot broadcast", err)
    assert.matches(s:gsub("%p", "%%%0") .. ":2:", err) -- the user's line
    assert.matches("stack traceback:", err)
    assert.matches("in function 'inner'", err)
    local _
    _, err, code = run("-e " .. shell_quote("error('boom')"))
    assert.are.equal(1, code)
    assert.matches("boom", err)
    assert.matches("stack traceback:", err)
  end)

  it("scripts run with strict globals", function()
    local s = script("x = 1\n")
    local _, err, code = run(s)
    os.remove(s)
    assert.are.equal(1, code)
    assert.matches("assignment to undeclared global 'x'", err)
  end)

  it("an unknown command exits 2 with the usage; a missing script exits 1", function()
    local _, err, code = run("no-such-recipe")
    assert.are.equal(2, code)
    assert.matches("unknown command or recipe 'no%-such%-recipe'", err)
    assert.matches("usage: pivq", err)
    _, err, code = run("/nonexistent/x.lua")
    assert.are.equal(1, code)
    assert.matches("cannot open script", err)
  end)

  it("training gives Ctrl-C back to the caller's mode (a REPL or notebook survives it)", function()
    local dir = tmpname()
    local out, err, code = run("-e " .. shell_quote([[
local ffi = require "ffi"
ffi.cdef "int raise(int sig);"
local host = require "pivq.host"
print(host.set_interrupt_mode("raise"), host.set_interrupt_mode("flag"), host.set_interrupt_mode("raise"))
pivq.train.Trainer{out = "]] .. dir .. [[", steps = 2, batch = 4, L = 4, K = 8, c = 4, width = 16, heads = 2,
  enc_depth = 1, dec_depth = 1, quant_start = 1, init_batches = 1, eval_images = 10, quiet = true}:fit()
jit.off() -- the hook that raises "interrupted" runs in interpreted code only
local ok, msg = pcall(function()
  ffi.C.raise(2) -- SIGINT: in "raise" mode an error at the next instruction, in "default" death
  for _ = 1, 1000 do end
end)
print(ok, msg)]]))
    os.execute("rm -rf '" .. dir .. "'")
    assert.are.equal(0, code, err)
    assert.matches("^default\traise\tflag\nfalse\t[^\n]*interrupted\n$", out)
  end)

  it("the REPL reads a pipe: prints values, survives errors, continues lines", function()
    local out, err, code = run("", "1 + 1\nt = pivq.ones(2)\nt:sum():item()\nerror('oops')\n1 +\n2\n")
    assert.are.equal(0, code, err)
    assert.matches("\n2\n", out)
    assert.matches("\n2\n.*oops.*\n3\n", out)
  end)
end)
