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

return M
