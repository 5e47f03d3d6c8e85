-- pivq.cli: what the `pivq` executable does with its arguments.
--   pivq                      the REPL (pivq preloaded as a global)
--   pivq -e 'code'            run code (pivq preloaded)
--   pivq FILE.lua [args...]   run a script with `arg` set, in strict mode
--   pivq NAME [args...]       run the bundled recipe recipes/NAME.lua
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
    write_history = function() end,
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
    "       pivq FILE.lua [args...]   run a script",
    "       pivq NAME [args...]       run a bundled recipe (NAME --help for its options)",
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

-- Run a Lua file as a script: fresh `arg`, strict globals. Errors propagate with traceback.
local function run_file(path, args, script_name)
  local fn, err = loadfile(path)
  if not fn then
    io.stderr:write("pivq: ", err, "\n")
    return 1
  end
  local script_arg = { [0] = script_name or path }
  for i, a in ipairs(args) do script_arg[i] = a end
  rawset(_G, "arg", script_arg)
  require("pivq.core.strict").enable()
  local rc = fn(unpack(args))
  require("pivq.core.strict").disable()
  if type(rc) == "number" then return rc end
  return 0
end

function M.main(argv)
  local host = host_module()
  local first = argv[1]
  if first == nil then
    rawset(_G, "pivq", require "pivq")
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
    rawset(_G, "pivq", require "pivq")
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
  return run_file(recipe, rest, "pivq " .. first)
end

return M
