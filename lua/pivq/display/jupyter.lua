-- pivq.jupyter: the Lua half of the pivq Jupyter kernel, and its installation.
--
-- The kernel is a thin Python wrapper (lua/pivq/display/jupyter/kernel.py, an ipykernel Kernel) that
-- runs one `pivq jupyter serve --in R --out W` process for the life of the kernel and talks to
-- it over two pipes of its own (file descriptors R and W, passed down at spawn). The process's
-- stdout and stderr stay the user's: whatever a cell prints — print, io.write, C's printf —
-- streams to the notebook, and cannot corrupt the protocol, which never touches them.
--
-- Framing (both directions): a message is a list of byte strings,
--   "<count>\n" then, for each field, "<byte length>\n<bytes>"
-- so code and PNG bytes travel raw, with nothing to escape and no JSON parser on either side.
-- The first field is the message kind.
--
--   kernel -> pivq                          pivq -> kernel
--   execute <code> <execution count>        display <mime> <data> [<mime> <data> ...]  (0..n)
--     (ack, after each display)             result <text>                              (0..1)
--                                           ok | error <ename> <evalue> <traceback line>...
--   complete <code> <cursor (0-based)>      complete <start> <end> <match>...
--   is_complete <code>                      is_complete complete|incomplete|invalid
--   inspect <code> <cursor (0-based)>       inspect [<text>]
--   shutdown                                ok  (then the process exits)
--   (at start-up)                           ready <pivq version>
--
-- Before each message pivq flushes stdout and stderr, so everything a cell printed is already
-- in the pipes when the kernel reads the message that follows it (the kernel drains them then).
-- A display waits for the kernel's ack before the cell goes on, so the drain cannot take in
-- output printed after the image either: text and images keep the order the cell made them.
-- A stray ack (its display was interrupted) is ignored.
--
-- Interrupts: the kernel forwards SIGINT to the pivq process, which runs cells in the host's
-- "raise" interrupt mode (the hook raises "interrupted" in running Lua code) and waits for
-- requests in "flag" mode (a stray SIGINT is harmless). LuaJIT does not run hooks inside
-- JIT-compiled traces, so a tight compiled loop or a long C call may not stop; the kernel then
-- restarts the pivq process after a grace period (see kernel.py).
local pretty = require "pivq.display.pretty"
local help = require "pivq.display.help"

local M = {}

M.python = "/usr/bin/python3" -- Debian's Python, which has ipykernel and jupyter_client
M.kernel_name = "pivq"
M.display_name = "pivq (LuaJIT)"

-- ---- framing ----------------------------------------------------------------------------------

function M.encode(fields)
  local parts = { tostring(#fields), "\n" }
  for _, f in ipairs(fields) do
    f = tostring(f)
    parts[#parts + 1] = tostring(#f)
    parts[#parts + 1] = "\n"
    parts[#parts + 1] = f
  end
  return table.concat(parts)
end

-- One message from a file, or nil at a clean end of file. A truncated message raises.
function M.read_message(f)
  local line = f:read("*l")
  if line == nil then return nil end
  local n = tonumber(line)
  if not n or n < 1 or n % 1 ~= 0 then
    error("pivq.jupyter: bad message header " .. string.format("%q", line))
  end
  local fields = {}
  for i = 1, n do
    local len = tonumber(f:read("*l") or "")
    if not len then error("pivq.jupyter: truncated message (field " .. i .. " of " .. n .. ")") end
    local data = len == 0 and "" or f:read(len)
    if data == nil or #data ~= len then error("pivq.jupyter: truncated message (field " .. i .. ")") end
    fields[i] = data
  end
  return fields
end

-- ---- cells ------------------------------------------------------------------------------------

local function is_skippable(line)
  return line:match("^%s*$") ~= nil or line:match("^%s*%-%-") ~= nil
end

-- Compile a cell so that the value of its last expression is returned, as IPython shows it:
--   1. the whole cell as one expression ("t:size()", "pivq.randn(2, 3)");
--   2. else the cell's last lines as an expression after the statements before them, in one
--      chunk so the statements' locals are visible ("local x = 2\nx * 3"). When the whole cell
--      compiles as statements, only a last line that is itself a statement (a call) is split
--      off, so "x = 1\n-2" keeps meaning x = 1 - 2;
--   3. else the cell as statements, showing nothing.
-- A cell ending in ";" shows nothing (as in IPython).
-- The expression is returned through a function passed as the chunk's vararg, not as
-- `return expr`, so that a call in it is no tail call: its errors then name the cell's line
-- and its traceback keeps the cell's frame. Call the result as fn(M.pack).
-- Returns fn, show_value or nil, message.
local PREFIX = "local __pivq_pack = ...; "

function M.pack(...) return { n = select("#", ...), ... } end

function M.compile_cell(src, chunkname)
  chunkname = chunkname or "=cell"
  src = src:gsub("%s+$", "")
  local show = src:sub(-1) ~= ";"
  local expr = show and src or src:sub(1, -2) -- "t:size();" still runs, showing nothing
  local fn = loadstring(PREFIX .. "return __pivq_pack(" .. expr .. "\n)", chunkname)
  if fn then return fn, show end
  local whole, err = loadstring(src, chunkname)
  local lines = {}
  for line in (expr .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  for i = #lines, 2, -1 do
    if not is_skippable(lines[i]) then
      local head = table.concat(lines, "\n", 1, i - 1)
      local tail = table.concat(lines, "\n", i)
      local split = loadstring(PREFIX .. head .. "\nreturn __pivq_pack(" .. tail .. "\n)", chunkname)
      if split and loadstring("return " .. tail) and (not whole or loadstring(tail, chunkname)) then
        return split, show
      end
    end
  end
  if whole then return whole, false end
  return nil, err
end

-- Can the cell run as it is? "complete", "incomplete" (an unfinished block or string, so a
-- console should read another line) or "invalid".
function M.is_complete(src)
  if loadstring("return " .. src) or loadstring(src) then return "complete" end
  local _, err = loadstring(src)
  if err and err:match("<eof>") then return "incomplete" end
  return "invalid"
end

-- ---- completion and inspection (pivq.display.help, shared with the REPL) ------------------------

M.complete = help.complete
M.inspect = help.inspect

-- ---- the server --------------------------------------------------------------------------------

local function traceback_handler(msg)
  if type(msg) ~= "string" then msg = pretty.format(msg) end
  return debug.traceback(msg, 1)
end

-- Split a Lua error (message + traceback) into Jupyter's ename, evalue and traceback lines,
-- dropping the frames that belong to the server rather than the user. Paths inside the pivq
-- tree (root) are shown relative to it, so saved notebooks do not carry one machine's paths.
function M.error_parts(text, root)
  text = text:gsub("\n%s*%[C%]: in function 'xpcall'.*$", "")
  if root and root ~= "" then
    text = text:gsub(root:gsub("%p", "%%%0") .. "/", "")
  end
  local evalue = text:match("^(.-)\nstack traceback:") or text
  local ename = "LuaError"
  if evalue:match("interrupted$") then ename = "Interrupt" end
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  return ename, evalue, lines
end

local Server = {}
Server.__index = Server

function Server:send(fields)
  io.stdout:flush()
  io.stderr:flush()
  self.output:write(M.encode(fields))
  self.output:flush()
end

-- Run a compiled cell in the host's "raise" interrupt mode. Returns the xpcall results packed.
-- An interrupt that lands just after the user's code ended (before "flag" mode is back) is
-- caught by the outer pcall and reported like any other interrupt.
function Server:run_interruptible(fn)
  local host = self.host
  local out
  local ok, err = pcall(function()
    host.set_interrupt_mode("raise")
    out = M.pack(xpcall(fn, traceback_handler, M.pack))
    host.set_interrupt_mode("flag")
    debug.sethook()
  end)
  if not ok then
    host.set_interrupt_mode("flag")
    debug.sethook()
    out = { n = 2, false, traceback_handler(err) }
  end
  return out
end

-- Wait for the kernel's ack of a display. The wait runs in "flag" mode, so an interrupt cannot
-- cut a message read in half; one that came meanwhile is raised once the ack is in.
function Server:wait_ack()
  local host = self.host
  host.set_interrupt_mode("flag")
  local ok, msg = pcall(M.read_message, self.input)
  local interrupted = host.interrupted()
  host.set_interrupt_mode("raise")
  if not ok then error(msg, 0) end
  if msg == nil then os.exit(0) end -- the kernel is gone
  if msg[1] ~= "ack" then error("pivq.jupyter: expected an ack, got " .. tostring(msg[1]), 0) end
  if interrupted then error("interrupted", 0) end
end

function Server:execute(code, count)
  local fn, show = M.compile_cell(code, "=cell[" .. (count or "?") .. "]")
  if not fn then
    local err = show
    self:send({ "error", "SyntaxError", err, err })
    return
  end
  local r = self:run_interruptible(fn)
  if r[1] then
    -- a cell compiled as an expression returns its values packed; statements return nothing
    local values = type(r[2]) == "table" and r[2] or { n = 0 }
    if show and values.n > 0 then
      local parts = {}
      for i = 1, values.n do parts[#parts + 1] = pretty.format(values[i]) end
      local text = table.concat(parts, "\t"):gsub("^\n", "")
      self:send({ "result", text })
    end
    self:send({ "ok" })
  else
    local ename, evalue, lines = M.error_parts(r[2], self.host.root)
    local msg = { "error", ename, evalue }
    for _, line in ipairs(lines) do msg[#msg + 1] = line end
    self:send(msg)
  end
end

function Server:handle(req)
  local kind = req[1]
  if kind == "execute" then
    self:execute(req[2] or "", req[3])
  elseif kind == "complete" then
    local ok, s, e, matches = pcall(M.complete, req[2] or "", tonumber(req[3]) or #(req[2] or ""))
    local msg = { "complete", ok and s or 0, ok and e or 0 }
    for _, m in ipairs(ok and matches or {}) do msg[#msg + 1] = m end
    self:send(msg)
  elseif kind == "is_complete" then
    self:send({ "is_complete", M.is_complete(req[2] or "") })
  elseif kind == "inspect" then
    local ok, text = pcall(M.inspect, req[2] or "", tonumber(req[3]) or #(req[2] or ""))
    self:send(ok and text and { "inspect", text } or { "inspect" })
  elseif kind == "ack" then
    return true -- the ack of a display the user interrupted: nothing to do
  elseif kind == "shutdown" then
    self:send({ "ok" })
    return false
  else
    self:send({ "error", "ProtocolError", "unknown request " .. tostring(kind) })
  end
  return true
end

-- Do not outlive the kernel: if it is killed while a long cell runs (so nobody closes our
-- pipes), Linux sends us SIGKILL (prctl PR_SET_PDEATHSIG).
local function die_with_parent()
  local ffi = require "ffi"
  if ffi.os ~= "Linux" then return end
  pcall(ffi.cdef, "int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, "
    .. "unsigned long a5);")
  pcall(function() ffi.C.prctl(1, 9, 0, 0, 0) end) -- PR_SET_PDEATHSIG = 1, SIGKILL = 9
end

-- Serve requests until shutdown or the end of input. opts: input, output (open files), or
-- in_fd, out_fd (descriptor numbers, opened through /dev/fd); host (pivq.host or a stand-in);
-- die_with_parent (the kernel's process).
function M.serve(opts)
  opts = opts or {}
  if opts.die_with_parent then die_with_parent() end
  local input = opts.input or assert(io.open("/dev/fd/" .. assert(opts.in_fd, "serve: in_fd"), "rb"))
  local output = opts.output or assert(io.open("/dev/fd/" .. assert(opts.out_fd, "serve: out_fd"), "wb"))
  local host = opts.host or require "pivq.host"
  -- Cells create globals, as at the REPL: scripts' strict mode is off here.
  require("pivq.core.strict").disable()
  local pivq = require "pivq"
  rawset(_G, "pivq", pivq)
  local display = require "pivq.display"
  -- In a notebook, images are PNGs in the page rather than text in a terminal.
  pivq.show = display.show
  pivq.display = display.display
  io.stdout:setvbuf("line") -- progress lines reach the notebook as they are printed
  local server = setmetatable({ input = input, output = output, host = host }, Server)
  display.set_sink(function(bundle)
    local msg = { "display" }
    local mimes = {}
    for mime in pairs(bundle) do mimes[#mimes + 1] = mime end
    table.sort(mimes)
    for _, mime in ipairs(mimes) do
      msg[#msg + 1] = mime
      msg[#msg + 1] = bundle[mime]
    end
    server:send(msg)
    server:wait_ack()
  end)
  host.set_interrupt_mode("flag")
  server:send({ "ready", pivq.version })
  while true do
    local req = M.read_message(input)
    if req == nil then break end
    if not server:handle(req) then break end
  end
  display.set_sink(nil)
  host.set_interrupt_mode("default")
  return 0
end

-- ---- installation ----------------------------------------------------------------------------

-- Minimal JSON encoding for kernel.json (strings, numbers, booleans, arrays, objects).
local function json(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
      return named[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "number" or t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    local inner = indent .. "  "
    if #v > 0 or next(v) == nil then
      local parts = {}
      for i = 1, #v do parts[i] = inner .. json(v[i], inner) end
      if #parts == 0 then return "[]" end
      return "[\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = inner .. json(tostring(k)) .. ": " .. json(v[k], inner) end
    return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
  end
  error("pivq.jupyter: cannot encode a " .. t .. " as JSON")
end
M.json = json

-- The running executable's absolute path (the pivq host when called from `pivq jupyter`).
function M.executable()
  local ffi = require "ffi"
  pcall(ffi.cdef, "long readlink(const char *path, char *buf, size_t len);")
  local buf = ffi.new("char[4096]")
  local n = tonumber(ffi.C.readlink("/proc/self/exe", buf, 4095))
  if n <= 0 then return nil end
  return ffi.string(buf, n)
end

-- The kernel.json table. opts: exe (the pivq host), kernel_py, python, display_name.
function M.kernel_spec(opts)
  return {
    argv = { opts.python or M.python, opts.kernel_py, "--pivq", opts.exe, "-f", "{connection_file}" },
    display_name = opts.display_name or M.display_name,
    language = "lua",
    interrupt_mode = "signal",
    metadata = { pivq = { exe = opts.exe } },
  }
end

-- Run a program (argv, no shell: pivq.files.run); returns whether it exited 0, and its output
-- (stdout and stderr).
local function run(argv)
  local status, out = require("pivq.data.files").run(argv)
  if not status then return false, out end
  return status == 0, (out:gsub("%s+$", ""))
end

-- Python (jupyter_client) is run without LD_PRELOAD: a sanitizer runtime preloaded for pivq
-- (the ASan test task does that) would make Python's own exit fail with leak reports.
local function python_command(python, ...)
  return { "env", "-u", "LD_PRELOAD", python, ... }
end

local function file_exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- Install the kernel spec with jupyter_client's KernelSpecManager (so it lands where Jupyter
-- looks: --user -> ~/.local/share/jupyter, --prefix P -> P/share/jupyter, else the system's
-- /usr/local/share/jupyter). opts: user, prefix, name, display_name, python, exe, kernel_py.
-- Returns the installed directory, or nil and a message.
function M.install(opts)
  opts = opts or {}
  local host_ok, host = pcall(require, "pivq.host")
  local root = opts.root or (host_ok and host.root) or "."
  local spec = {
    exe = opts.exe or M.executable(),
    kernel_py = opts.kernel_py or (root .. "/lua/pivq/display/jupyter/kernel.py"),
    python = opts.python,
    display_name = opts.display_name,
  }
  if not spec.exe or not file_exists(spec.exe) then return nil, "cannot find the pivq executable" end
  if not file_exists(spec.kernel_py) then return nil, "cannot find the kernel script " .. spec.kernel_py end
  local python = opts.python or M.python
  if not file_exists(python) then
    return nil, python .. " not found (install python3-ipykernel and python3-jupyter-client)"
  end
  local dir = os.tmpname()
  os.remove(dir)
  local made, why = require("pivq.data.files").mkdir_p(dir)
  if not made then return nil, "cannot create " .. dir .. ": " .. why end
  local written, werr = require("pivq.data.files").write_text(dir .. "/kernel.json", json(M.kernel_spec(spec)) .. "\n")
  if not written then return nil, werr end
  local script = "import sys\n" ..
    "from jupyter_client.kernelspec import KernelSpecManager\n" ..
    "print(KernelSpecManager().install_kernel_spec(sys.argv[1], sys.argv[2], " ..
    "user=sys.argv[3] == '1', prefix=sys.argv[4] or None))\n"
  local cmd = python_command(python, "-c", script, dir, opts.name or M.kernel_name, opts.user and "1" or "0",
    opts.prefix or "")
  local ok, out = run(cmd)
  os.remove(dir .. "/kernel.json")
  os.remove(dir)
  if not ok and out == "" then return nil, "kernel spec installation failed" end
  local installed = out:match("([^\n]*)$")
  if not ok or not file_exists(installed .. "/kernel.json") then return nil, out end
  return installed
end

-- Remove an installed kernel spec (the first one Jupyter finds by that name).
function M.uninstall(opts)
  opts = opts or {}
  local python = opts.python or M.python
  local script = "import sys\n" ..
    "from jupyter_client.kernelspec import KernelSpecManager\n" ..
    "try:\n" ..
    "    print(KernelSpecManager().remove_kernel_spec(sys.argv[1]))\n" ..
    "except KeyError:\n" ..
    "    sys.exit('no kernel spec named %s is installed' % sys.argv[1])\n"
  local ok, out = run(python_command(python, "-c", script, opts.name or M.kernel_name))
  if not ok then return nil, out end
  return out
end

return M
