-- pivq.recipe: what the bundled recipes share — loading the checkpoint named by --ckpt and a
-- --strategy-file, with one-line messages on stderr instead of tracebacks for a user's mistake.
local M = {}

local function say(prog, ...)
  io.stderr:write(prog, ": ", ...)
  io.stderr:write("\n")
end

-- model, or nil and the exit code after printing why
function M.load_model(prog, path)
  if not path then
    say(prog, "--ckpt is required")
    return nil, 2
  end
  local model, err = require("pivq.models.pivq").load(path)
  if not model then
    say(prog, err)
    return nil, 1
  end
  return model
end

-- true, or nil and the exit code after printing why; registry is pivq.interp or pivq.sample
function M.load_strategy_file(prog, registry, path)
  if not path then return true end
  local added, err = registry.load_file(path)
  if not added then
    say(prog, err)
    return nil, 1
  end
  return true
end

-- The strategy options both interpolate and sample take: load --strategy-file, then answer
-- --list. Returns nil to go on, or the exit code the recipe should return now.
function M.strategy_options(prog, registry, args)
  local ok, code = M.load_strategy_file(prog, registry, args.strategy_file)
  if not ok then return code end
  if args.list then
    local names = {}
    for name in pairs(registry.list()) do names[#names + 1] = name end
    table.sort(names)
    local docs = registry.list()
    for _, name in ipairs(names) do print(string.format("%-12s %s", name, docs[name])) end
    return 0
  end
  return nil
end

return M
