-- pivq.repl: the interactive loop of `pivq` with no arguments.
-- Each line is tried first as an expression (so `t:size()` prints its value), then as a
-- statement; incomplete input continues on the next line. Errors print and the loop goes on;
-- Ctrl-C interrupts a running computation without leaving.
local pretty = require "pivq.display.pretty"

local M = {}

local function print_results(out, n, ...)
  if n == 0 then return end
  local parts = {}
  for i = 1, n do parts[i] = pretty.format((select(i, ...))) end
  out(table.concat(parts, "\t"))
end

local function pack(...) return { n = select("#", ...), ... } end

local function traceback(msg)
  return debug.traceback(tostring(msg), 2)
end

-- Compile a chunk: as "return <line>" first (so an expression prints its value), then as a
-- statement. Returns fn, or nil and "incomplete" (either form ran out of input: `1 +`,
-- `for i = 1, 3 do`) or the syntax error.
local function compile(src)
  local fn, err_expr = loadstring("return " .. src, "=stdin")
  if fn then return fn end
  local err
  fn, err = loadstring(src, "=stdin")
  if fn then return fn end
  -- as lua.c: a message ending in '<eof>' means the input stopped short ("near '<eof>'");
  -- "'<eof>' expected near '='" is a real error
  if err:match("'<eof>'$") or err_expr:match("'<eof>'$") then return nil, "incomplete" end
  return nil, err
end
M.compile = compile

-- Evaluate one complete chunk, printing its values or its error through `out` (default
-- print); returns true if it ran without error. `env` replaces the chunk's globals.
function M.eval(src, env, out)
  out = out or print
  local fn, err = compile(src)
  if not fn then
    out(err == "incomplete" and "stdin: incomplete input" or err)
    return false
  end
  if env then setfenv(fn, env) end
  local results = pack(xpcall(fn, traceback))
  if results[1] then
    print_results(out, results.n - 1, unpack(results, 2, results.n)) -- nils included
    return true
  end
  -- keep the message and the user's frames; drop the REPL's own frames (xpcall and below)
  local msg = tostring(results[2]):gsub("\n%s*%[C%]: in function 'xpcall'.*$", "")
  msg = msg:gsub("\nstack traceback:%s*$", "")
  out(msg)
  return false
end

function M.run(host, banner)
  local history = (os.getenv("HOME") or ".") .. "/.pivq_history"
  host.read_history(history)
  print(banner)
  host.set_interrupt_mode("raise")
  local buffer
  while true do
    local line = host.readline(buffer and ">> " or "> ")
    if line == nil then
      print()
      break
    end
    if line:match("%S") then host.add_history(line) end
    buffer = buffer and (buffer .. "\n" .. line) or line
    local _, err = compile(buffer)
    if err ~= "incomplete" then
      M.eval(buffer)
      buffer = nil
    end
  end
  host.set_interrupt_mode("default")
  host.write_history(history)
end

return M
