-- jupyter: install the pivq Jupyter kernel (`pivq jupyter install [--user]`), or serve it
local jupyter = require "pivq.display.jupyter"

local USAGE = [[
usage: pivq jupyter install [--user | --prefix DIR] [--name NAME] [--display-name TEXT]
                            [--python PATH]
         Install the kernel spec "pivq" (display name "pivq (LuaJIT)") for Jupyter Notebook,
         Lab, nbconvert and VS Code. Default: system-wide (/usr/local/share/jupyter, as root);
         --user: ~/.local/share/jupyter; --prefix DIR: DIR/share/jupyter (set JUPYTER_PATH to
         DIR/share/jupyter to use it). The spec runs --python (default /usr/bin/python3) on
         lua/pivq/display/jupyter/kernel.py with this pivq executable; re-run after moving pivq.
       pivq jupyter uninstall [--name NAME]
       pivq jupyter serve --in FD --out FD
         The kernel's Lua side (started by kernel.py; not for interactive use).]]

local args = { ... }
local cmd = args[1]

local function parse(from, known)
  local opts = {}
  local i = from
  while i <= #args do
    local a = args[i]
    local name = a:match("^%-%-([%w%-]+)$")
    local kind = name and known[name]
    if not kind then
      io.stderr:write("pivq jupyter: unknown option ", a, "\n\n", USAGE, "\n")
      os.exit(2)
    end
    local key = name:gsub("%-", "_")
    if kind == "flag" then
      opts[key] = true
    else
      i = i + 1
      if args[i] == nil then
        io.stderr:write("pivq jupyter: ", a, " needs a value\n")
        os.exit(2)
      end
      opts[key] = args[i]
    end
    i = i + 1
  end
  return opts
end

if cmd == "install" then
  local opts = parse(2, { user = "flag", prefix = "value", name = "value", ["display-name"] = "value",
    python = "value" })
  if opts.user and opts.prefix then
    io.stderr:write("pivq jupyter: --user and --prefix exclude each other\n")
    return 2
  end
  local dir, err = jupyter.install(opts)
  if not dir then
    io.stderr:write("pivq jupyter install: ", err, "\n")
    return 1
  end
  print("installed the kernel spec '" .. (opts.name or jupyter.kernel_name) .. "' in " .. dir)
  print("start Jupyter with:  jupyter notebook   (choose the kernel \"" ..
    (opts.display_name or jupyter.display_name) .. "\")")
  return 0
elseif cmd == "uninstall" then
  local opts = parse(2, { name = "value", python = "value" })
  local out, err = jupyter.uninstall(opts)
  if not out then
    io.stderr:write("pivq jupyter uninstall: ", err, "\n")
    return 1
  end
  print("removed " .. out)
  return 0
elseif cmd == "serve" then
  local opts = parse(2, { ["in"] = "value", out = "value" })
  if not opts["in"] or not opts.out then
    io.stderr:write("pivq jupyter serve: needs --in FD and --out FD\n")
    return 2
  end
  return jupyter.serve({ in_fd = opts["in"], out_fd = opts.out, die_with_parent = true })
elseif cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
  print(USAGE)
  return cmd == nil and 2 or 0
else
  io.stderr:write("pivq jupyter: unknown command '", cmd, "'\n\n", USAGE, "\n")
  return 2
end
