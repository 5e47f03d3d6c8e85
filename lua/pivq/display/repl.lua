-- pivq.repl: the interactive loop of `pivq` with no arguments.
-- Each entry is tried first as an expression (so `t:size()` prints its value), then as a
-- statement, then as statements followed by an expression (`s = f(x); s[1]` prints s[1]);
-- incomplete input continues on the next line. A trailing `;` runs the entry without printing
-- its value. Errors print and the loop goes on.
--
-- Ctrl-C at a prompt clears the entry being typed; during a computation it raises "interrupted"
-- and returns to the prompt with every variable kept. The chunks typed here run with the JIT off
-- for them (their own functions included), because LuaJIT checks the interrupt hook only in its
-- interpreter: a compiled loop would never see it. Library code stays compiled; see lua/README.md
-- ("The REPL") for the mechanism, its cost and its limits.
--
-- History (~/.pivq_history) is written after every entry; a multi-line entry is one entry.
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

local function ends_short(err) return err:match("'<eof>'$") ~= nil end

-- Compile a chunk: as "return <src>" first (so an expression prints its value), then as a
-- statement, then as "<statements>; return <expression>" split at a `;`. Returns fn, or nil and
-- "incomplete" (the input stopped short: `1 +`, `for i = 1, 3 do`) or the syntax error.
local function compile(src)
  local fn, err_expr = loadstring("return " .. src, "=stdin")
  if fn then return fn end
  local err
  fn, err = loadstring(src, "=stdin")
  if fn then return fn end
  -- `a = f(x); a[1]`: statements, then one expression whose value prints (the last `;` that
  -- gives a valid chunk; a `;` inside a string only matters if both halves compile)
  local cut = #src
  while true do
    local at = src:sub(1, cut):match(".*();")
    if not at then break end
    local head, tail = src:sub(1, at - 1), src:sub(at + 1)
    if tail:match("%S") then
      local split = loadstring(head .. ";\nreturn " .. tail, "=stdin")
      if split then return split end
    end
    cut = at - 1
  end
  -- as lua.c: a message ending in '<eof>' means the input stopped short ("near '<eof>'");
  -- "'<eof>' expected near '='" is a real error
  if ends_short(err) or ends_short(err_expr) then return nil, "incomplete" end
  return nil, err
end
M.compile = compile

-- An entry ending in `;` runs without printing its value (as in Torch7's trepl and Julia).
-- (a comment may follow the `;`: `x = f(); -- note`)
function M.silenced(src) return src:match(";%s*$") ~= nil or src:match(";%s*%-%-[^\n]*$") ~= nil end

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
  if jit then jit.off(fn, true) end -- interpreted, so Ctrl-C's hook can stop its loops
  local results = pack(xpcall(fn, traceback))
  if results[1] then
    if not M.silenced(src) then print_results(out, results.n - 1, unpack(results, 2, results.n)) end
    return true
  end
  local msg = tostring(results[2])
  if msg:match("^[^\n]*interrupted\n") or msg:match("interrupted$") then
    out("interrupted")
    return false
  end
  -- keep the message and the user's frames; drop the REPL's own frames (xpcall and below)
  msg = msg:gsub("\n%s*%[C%]: in function 'xpcall'.*$", "")
  msg = msg:gsub("\nstack traceback:%s*$", "")
  out(require("pivq.display.help").with_suggestion(msg, env))
  return false
end

-- `?name` (or `? expr`): the documentation of a value, as help(value) prints it
local function question(entry)
  local expr = entry:match("^%s*%?%s*(.-)%s*$")
  if not expr then return nil end
  expr = expr:gsub("%s*%-%-[^\n]*$", "") -- `?f  -- a comment`
  if expr == "" then return nil end
  return "print(require('pivq.display.help').doc((" .. expr .. "), " .. string.format("%q", expr) .. "))"
end

-- The REPL's completion: libedit hands over the word before the cursor (it breaks words at
-- spaces and operators, not at '.' or ':') and takes back whole words.
function M.complete_word(word)
  local help = require "pivq.display.help"
  local start, _, matches = help.complete(word, #word)
  local base = word:sub(1, start)
  local out = {}
  for i, m in ipairs(matches) do out[i] = base .. m end
  return out
end

-- help(v): print v's documentation (pivq.display.help.doc); a global in the REPL and in -e
function M.help(v)
  if v == nil then
    print("help(f) or ?f shows a function's signature and documentation, help(pivq) the package's;\n"
      .. "Tab completes names (pivq.ra<Tab>, m:code_<Tab>); a trailing ; hides a value; Ctrl-C stops a\n"
      .. "computation or clears the line; Ctrl-D quits. lua/README.md, \"The REPL\", has the rest.")
    return
  end
  print(require("pivq.display.help").doc(v))
end

-- Ctrl-C: the REPL itself runs in "flag" mode, so a Ctrl-C between entries (compiling one,
-- writing the history) only sets the flag. In "raise" mode its hook raises at whatever Lua
-- instruction runs next, and there, outside any protection, "interrupted" ended the session
-- (Enter then Ctrl-C at once did, in 3 sessions of 3). An entry runs in "raise" mode inside a
-- protected call, as the Jupyter kernel's cells do.
local function run_entry(host, src)
  local ok = pcall(function()
    host.set_interrupt_mode("raise")
    M.eval(src)
    host.set_interrupt_mode("flag")
  end)
  if not ok then -- an interrupt that landed just outside eval's own protection
    host.set_interrupt_mode("flag")
    print("interrupted")
  end
end

function M.run(host, banner)
  local history = (os.getenv("HOME") or ".") .. "/.pivq_history"
  host.read_history(history)
  if host.set_completer then host.set_completer(M.complete_word) end
  print(banner)
  host.set_interrupt_mode("flag")
  local buffer
  local history_ok = true
  while true do
    -- a Ctrl-C after the last entry ended, before this prompt: shown, as the prompt's own are
    if host.interrupted() then print("^C") end
    local ok, line = pcall(host.readline, buffer and ">> " or "> ")
    if not ok then line = false end
    if line == nil then
      print()
      break
    end
    if line == false then
      buffer = nil -- Ctrl-C: the entry is dropped, as in bash and Python
    else
      buffer = buffer and (buffer .. "\n" .. line) or line
      local _, err = compile(question(buffer) or buffer)
      if err ~= "incomplete" then
        local entry = buffer
        buffer = nil
        if entry:match("%S") then
          host.add_history(entry)
          local written, why = host.write_history(history)
          if not written and history_ok then
            io.stderr:write("pivq: ", tostring(why), " (history is kept for this session only)\n")
            history_ok = false
          end
        end
        if host.interrupted() then
          print("interrupted") -- Ctrl-C came before the entry ran: it does not run
        else
          run_entry(host, question(entry) or entry)
        end
      end
    end
  end
  host.set_interrupt_mode("default")
end

return M
