-- pivq.registry: named, documented strategies (interpolation and sampling share this).
--   local reg = registry.new("interp")
--   reg:register(name, fn, doc [, {replace = true}]); reg:list() -> {name = doc};
--   reg:get(name) -> fn (or raises); reg:call(name, ...) -> what fn returns, guarded;
--   reg:load_file(path) -> names a strategy file added (or nil, err)
--
-- Trust model: a strategy file is code, like a recipe or a script: loading it runs it with the
-- user's rights (use files you wrote or read). Checkpoints are data and never execute.
-- A name that is already registered (a built-in such as `pair`, or an earlier file's) is only
-- replaced with {replace = true}. While a strategy file loads and while a strategy runs, os.exit
-- raises an error instead of ending the process, so a stray exit makes the command fail rather
-- than end it with status 0 and no output.
local Registry = {}
Registry.__index = Registry

local M = {}

function M.new(kind) return setmetatable({ kind = kind, fns = {}, docs = {} }, Registry) end

function Registry:register(name, fn, doc, opts)
  if type(name) ~= "string" or not name:match("^[%w_%-]+$") then
    error(string.format("%s.register: name must be a word (letters, digits, _ or -), got %s", self.kind,
      tostring(name)), 3)
  end
  if type(fn) ~= "function" then
    error(string.format("%s.register: fn must be a function, got %s", self.kind, type(fn)), 3)
  end
  if doc ~= nil and type(doc) ~= "string" then
    error(string.format("%s.register: doc must be a string, got %s", self.kind, type(doc)), 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(string.format("%s.register: options must be a table, got %s", self.kind, type(opts)), 3)
  end
  for k in pairs(opts or {}) do
    if k ~= "replace" then
      error(string.format("%s.register: unknown option '%s' (known: replace)", self.kind, tostring(k)), 3)
    end
  end
  if self.fns[name] and not (opts and opts.replace) then
    error(string.format("%s.register: '%s' is already registered; pass {replace = true} to replace it",
      self.kind, name), 3)
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

-- f(...) with os.exit raising instead of exiting; returns f's results or raises its error
local function without_exit(what, f, ...)
  local real_exit = os.exit
  os.exit = function(code) -- luacheck: ignore 122
    error(string.format("%s called os.exit(%s): a strategy must return or raise an error", what,
      tostring(code)), 2)
  end
  local function pack(ok, ...) return ok, { n = select("#", ...), ... } end
  local ok, results = pack(pcall(f, ...))
  os.exit = real_exit -- luacheck: ignore 122
  if not ok then error(results[1], 0) end
  return unpack(results, 1, results.n)
end

-- Run strategy `name` on the arguments; its errors (and any os.exit) are raised as
-- "KIND 'name': message" at the caller's caller.
function Registry:call(name, ...)
  local fn = self:get(name)
  local function pack(ok, ...) return ok, { n = select("#", ...), ... } end
  local ok, results = pack(pcall(without_exit, string.format("%s strategy '%s'", self.kind, name), fn, ...))
  if not ok then
    error(string.format("%s strategy '%s' failed: %s", self.kind, name, tostring(results[1])), 3)
  end
  return unpack(results, 1, results.n)
end

-- Run a user's strategy file (it registers itself); returns the sorted names it added.
function Registry:load_file(path)
  if type(path) ~= "string" then error(self.kind .. ".load_file: path must be a string, got " .. type(path), 3) end
  local before = {}
  for k, fn in pairs(self.fns) do before[k] = fn end
  local chunk, err = loadfile(path)
  if not chunk then return nil, self.kind .. ".load_file: " .. err end
  local ok, run_err = pcall(without_exit, "the strategy file " .. path, chunk)
  if not ok then return nil, self.kind .. ".load_file: " .. tostring(run_err) end
  local added = {}
  for k, fn in pairs(self.fns) do
    if before[k] ~= fn then added[#added + 1] = k end
  end
  table.sort(added)
  if #added == 0 then
    return nil, string.format("%s.load_file: %s registered no strategy (call pivq.%s.register(name, fn, doc))",
      self.kind, path, self.kind)
  end
  return added
end

return M
