-- pivq.strict: make reading or writing an undeclared global an error (scripts and tests).
-- Globals that exist when strict mode is switched on stay usable; new ones need rawset.
local M = {}

function M.enable(env)
  env = env or _G
  local mt = getmetatable(env) or {}
  mt.__newindex = function(_, name)
    error(string.format("assignment to undeclared global '%s' (use local)", tostring(name)), 2)
  end
  mt.__index = function(_, name)
    error(string.format("read of undeclared global '%s'", tostring(name)), 2)
  end
  setmetatable(env, mt)
end

function M.disable(env)
  env = env or _G
  local mt = getmetatable(env)
  if mt then
    mt.__newindex = nil
    mt.__index = nil
  end
end

return M
