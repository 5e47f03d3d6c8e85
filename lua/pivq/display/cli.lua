-- pivq.cli: what the `pivq` executable does with its arguments.
--   pivq                      the REPL (pivq preloaded as a global)
--   pivq -e 'code'            run code (pivq preloaded)
--   pivq FILE.lua [args...]   run a script with `arg` set, pivq preloaded, in strict mode
--   pivq NAME [args...]       run the bundled recipe recipes/NAME.lua (errors as one line;
--                             --debug for the traceback)
--   pivq help | --version
local M = {}

local function host_module()
  local ok, host = pcall(require, "pivq.host")
  if ok then return host end
  -- running under plain luajit (tests): a minimal stand-in
  return {
    root = os.getenv("PIVQ_HOME") or ".",
    recipes_dir = (os.getenv("PIVQ_HOME") or ".") .. "/recipes",
    readline = function(prompt)
      io.write(prompt)
      io.flush()
      return io.read("*l")
    end,
    add_history = function() end,
    read_history = function() end,
    write_history = function() return true end,
    isatty = function() return false end,
    set_interrupt_mode = function() end,
    interrupted = function() return false end,
  }
end

-- First comment line of a recipe (after any shebang): its one-line summary.
local function summary_of(path)
  local f = io.open(path, "r")
  if not f then return "" end
  for line in f:lines() do
    if not line:match("^#!") then
      f:close()
      return (line:match("^%-%-%s*(.-)%s*$") or "")
    end
  end
  f:close()
  return ""
end

local function list_recipes(dir)
  local names = {}
  -- ls through execvp (pivq.files.run): the folder's name never reaches a shell
  local status, out = require("pivq.data.files").run({ "ls", "-1", "--", dir })
  if status == 0 then
    for name in out:gmatch("[^\n]+") do
      local base = name:match("^([%w_%-]+)%.lua$")
      if base then names[#names + 1] = base end
    end
  end
  table.sort(names)
  return names
end

function M.usage(host)
  local lines = {
    "usage: pivq                      start the REPL",
    "       pivq -e 'code'            run Lua code (pivq preloaded)",
    "       pivq FILE.lua [args...]   run a script (pivq preloaded; strict globals)",
    "       pivq NAME [args...]       run a bundled recipe (NAME --help for its options;\n"
      .. "                                 --debug shows an error's traceback)",
    "       pivq help | --version",
    "",
    "bundled recipes:",
  }
  for _, name in ipairs(list_recipes(host.recipes_dir)) do
    local s = summary_of(host.recipes_dir .. "/" .. name .. ".lua")
    s = s:gsub("^" .. name:gsub("%-", "%%-") .. "%s*[:%-]%s*", "")
    lines[#lines + 1] = string.format("  %-16s %s", name, s)
  end
  return table.concat(lines, "\n")
end

-- The globals every way of running code starts with: `pivq` and `help` (lua/README.md, "Scripts,
-- -e and the REPL": the same globals everywhere; only scripts run in strict mode).
local function preload()
  rawset(_G, "pivq", require "pivq")
  rawset(_G, "help", require("pivq.display.repl").help)
end

-- Run a Lua file as a script: fresh `arg`, strict globals. A script's error prints its
-- traceback; a recipe's (is_recipe) prints one line, "pivq NAME: message", unless --debug is
-- among its arguments (taken out before the recipe sees them).
local function run_file(path, args, script_name, is_recipe)
  local fn, err = loadfile(path)
  if not fn then
    io.stderr:write("pivq: ", err, "\n")
    return 1
  end
  local debug_mode = not is_recipe
  local kept = {}
  for _, a in ipairs(args) do
    if is_recipe and a == "--debug" then debug_mode = true else kept[#kept + 1] = a end
  end
  args = kept
  local script_arg = { [0] = script_name or path }
  for i, a in ipairs(args) do script_arg[i] = a end
  preload()
  rawset(_G, "arg", script_arg)
  local strict = require("pivq.core.strict")
  strict.enable()
  local ok, rc = xpcall(function() return fn(unpack(args)) end, function(msg)
    if debug_mode then return debug.traceback(tostring(msg), 2) end
    return tostring(msg)
  end)
  strict.disable()
  if not ok then
    if debug_mode then
      -- the script's frames; the runner's own (xpcall and below) are not the user's
      io.stderr:write("pivq: ", (rc:gsub("\n%s*%[C%]: in function 'xpcall'.*$", "")), "\n")
      return 1
    end
    -- one line: the message without its source location (the recipe's internals)
    local line = rc:match("^[^\n]*"):gsub("^[^:\n]*%.lua:%d+: ", "")
    io.stderr:write(script_name or path, ": ", line, " (--debug shows the traceback)\n")
    return 1
  end
  if type(rc) == "number" then return rc end
  return 0
end

function M.main(argv)
  local host = host_module()
  local first = argv[1]
  if first == nil then
    preload()
    local pivq = require "pivq"
    require("pivq.display.repl").run(host, string.format(
      "pivq %s (LuaJIT) — `pivq` is loaded; Ctrl-D to quit, Ctrl-C interrupts a computation",
      pivq.version))
    return 0
  end
  if first == "--version" or first == "-v" or first == "version" then
    print("pivq " .. require("pivq").version)
    return 0
  end
  if first == "help" or first == "--help" or first == "-h" then
    print(M.usage(host))
    return 0
  end
  local rest = {}
  for i = 2, #argv do rest[#rest + 1] = argv[i] end
  if first == "-e" then
    if not argv[2] then
      io.stderr:write("pivq: -e needs a Lua chunk\n")
      return 2
    end
    preload()
    local fn, err = loadstring(argv[2], "=(command line)")
    if not fn then
      io.stderr:write("pivq: ", err, "\n")
      return 1
    end
    local extra = {}
    for i = 3, #argv do extra[#extra + 1] = argv[i] end
    rawset(_G, "arg", extra)
    fn()
    return 0
  end
  if first:match("%.lua$") then
    local f = io.open(first, "r")
    if not f then
      io.stderr:write("pivq: cannot open script ", first, "\n")
      return 1
    end
    f:close()
    return run_file(first, rest)
  end
  local recipe = host.recipes_dir .. "/" .. first .. ".lua"
  local f = io.open(recipe, "r")
  if not f then
    io.stderr:write(string.format("pivq: unknown command or recipe '%s'\n\n%s\n", first,
      M.usage(host)))
    return 2
  end
  f:close()
  return run_file(recipe, rest, "pivq " .. first, true)
end

return M
