-- pivq.registry: named, documented strategies (interpolation and sampling share this).
--   local reg = registry.new("interp")
--   reg:register(name, fn, doc); reg:list() -> {name = doc}; reg:get(name) -> fn (or raises);
--   reg:load_file(path) -> names a strategy file added (or nil, err)
local Registry = {}
Registry.__index = Registry

local M = {}

function M.new(kind) return setmetatable({ kind = kind, fns = {}, docs = {} }, Registry) end

function Registry:register(name, fn, doc)
  if type(name) ~= "string" or not name:match("^[%w_%-]+$") then
    error(string.format("%s.register: name must be a word (letters, digits, _ or -), got %s", self.kind,
      tostring(name)), 3)
  end
  if type(fn) ~= "function" then
    error(string.format("%s.register: fn must be a function, got %s", self.kind, type(fn)), 3)
  end
  self.fns[name], self.docs[name] = fn, doc or ""
end

function Registry:list()
  local out = {}
  for k, v in pairs(self.docs) do out[k] = v end
  return out
end

function Registry:get(name)
  local fn = self.fns[name]
  if not fn then
    local names = {}
    for k in pairs(self.fns) do names[#names + 1] = k end
    table.sort(names)
    error(string.format("%s: unknown strategy '%s' (known: %s)", self.kind, tostring(name),
      table.concat(names, ", ")), 3)
  end
  return fn
end

-- Run a user's strategy file (it registers itself); returns the sorted names it added.
function Registry:load_file(path)
  if type(path) ~= "string" then error(self.kind .. ".load_file: path must be a string, got " .. type(path), 3) end
  local before = {}
  for k in pairs(self.fns) do before[k] = true end
  local chunk, err = loadfile(path)
  if not chunk then return nil, self.kind .. ".load_file: " .. err end
  local ok, run_err = pcall(chunk)
  if not ok then return nil, self.kind .. ".load_file: " .. tostring(run_err) end
  local added = {}
  for k in pairs(self.fns) do
    if not before[k] then added[#added + 1] = k end
  end
  table.sort(added)
  return added
end

return M
