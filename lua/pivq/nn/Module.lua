-- pivq.nn.Module: the base of every layer.
--
-- A module holds parameters (tensors that require grad) and children (modules) under names,
-- in registration order; forward(...) computes; calling the module calls forward. Subclasses
-- are made with Module:extend("Name") and define __init(self, ...) and forward(self, ...).
--
--   local Block = nn.Module:extend("Block")
--   function Block:__init(d) self:add_module("fc", nn.Linear(d, d)) end
--   function Block:forward(x) return self.fc(x):relu() end
local tensor = require "pivq.core.tensor"
local autograd = require "pivq.core.autograd"
local argcheck = require "pivq.core.argcheck"

local Module = {}
Module.__index = Module
Module.__name = "Module"

local function instance_call(self, ...) return self:forward(...) end

local function has(list, name)
  for _, n in ipairs(list) do if n == name then return true end end
  return false
end

-- A new class inheriting from self.
function Module:extend(name)
  local cls = setmetatable({}, { __index = self, __call = function(c, ...)
    local obj = setmetatable({ _params = {}, _buffers = {}, _modules = {}, training = true }, c)
    obj:__init(...)
    return obj
  end })
  cls.__index = cls
  cls.__name = name
  cls.__call = instance_call
  cls.__tostring = Module.__tostring
  return cls
end

function Module.__init() end

function Module:forward()
  error(string.format("%s: forward is not implemented", self.__name), 2)
end

local function check_name(fname, name)
  if type(name) ~= "string" then error(string.format("%s: name must be a string, got %s", fname, type(name)), 3) end
end

-- Register a parameter (made to require grad) under name; also self[name].
function Module:register_parameter(name, t)
  check_name("register_parameter", name)
  if t ~= nil and (not tensor.is_tensor(t) or t:dtype() ~= "float32") then
    error(string.format("%s: parameter '%s' must be a float32 tensor", self.__name, name), 2)
  end
  if t ~= nil then t:requires_grad(true) end
  if not has(self._params, name) then
    self._params[#self._params + 1] = name
  end
  rawset(self, name, t)
  return t
end

-- A buffer: state saved with the module but not trained (running statistics, ...).
function Module:register_buffer(name, t)
  check_name("register_buffer", name)
  if not has(self._buffers, name) then self._buffers[#self._buffers + 1] = name end
  rawset(self, name, t)
  return t
end

function Module:add_module(name, m)
  if type(m) ~= "table" or getmetatable(m) == nil or m.forward == nil then
    error(string.format("%s: child '%s' must be a module", self.__name, tostring(name)), 2)
  end
  name = tostring(name)
  if not has(self._modules, name) then self._modules[#self._modules + 1] = name end
  rawset(self, name, m)
  return m
end


function Module:children()
  local out = {}
  for _, name in ipairs(self._modules) do out[#out + 1] = self[name] end
  return out
end

-- {{name, tensor}, ...} with dotted names ("blocks.1.attn.in_proj_weight"), in order.
local function check_prefix(fname, prefix, out)
  if prefix ~= nil and type(prefix) ~= "string" then
    error(string.format("%s: prefix must be a string, got %s", fname, type(prefix)), 3)
  end
  if out ~= nil and type(out) ~= "table" then
    error(string.format("%s: out must be a table, got %s", fname, type(out)), 3)
  end
end

function Module:named_parameters(prefix, out)
  check_prefix("named_parameters", prefix, out)
  out = out or {}
  prefix = prefix or ""
  for _, name in ipairs(self._params) do
    if self[name] ~= nil then out[#out + 1] = { prefix .. name, self[name] } end
  end
  for _, name in ipairs(self._modules) do self[name]:named_parameters(prefix .. name .. ".", out) end
  return out
end

function Module:parameters()
  local out = {}
  for i, np in ipairs(self:named_parameters()) do out[i] = np[2] end
  return out
end

function Module:named_buffers(prefix, out)
  check_prefix("named_buffers", prefix, out)
  out = out or {}
  prefix = prefix or ""
  for _, name in ipairs(self._buffers) do
    if self[name] ~= nil then out[#out + 1] = { prefix .. name, self[name] } end
  end
  for _, name in ipairs(self._modules) do self[name]:named_buffers(prefix .. name .. ".", out) end
  return out
end

function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p:zero_grad() end
  return self
end

function Module:train(flag)
  if flag == nil then flag = true end
  self.training = flag
  for _, name in ipairs(self._modules) do self[name]:train(flag) end
  return self
end

function Module:eval() return self:train(false) end

-- fn(module) for every module, children first, then self (as PyTorch's apply).
function Module:apply(fn)
  if type(fn) ~= "function" then error("apply: fn must be a function, got " .. type(fn), 2) end
  for _, name in ipairs(self._modules) do self[name]:apply(fn) end
  fn(self)
  return self
end

-- name -> tensor (parameters and buffers), sharing storage with the module.
function Module:state_dict()
  local sd = {}
  for _, np in ipairs(self:named_parameters()) do sd[np[1]] = np[2]:detach() end
  for _, nb in ipairs(self:named_buffers()) do sd[nb[1]] = nb[2] end
  return sd
end

-- Copy values in (under no_grad). strict (default true): every key must match both ways.
function Module:load_state_dict(sd, strict)
  if type(sd) ~= "table" then error("load_state_dict: expected a table name -> tensor, got " .. type(sd), 2) end
  if strict == nil then strict = true end
  local entries = self:named_parameters()
  for _, nb in ipairs(self:named_buffers()) do entries[#entries + 1] = nb end
  local seen = {}
  autograd.no_grad(function()
    for _, e in ipairs(entries) do
      local name, t = e[1], e[2]
      local src = sd[name]
      if src == nil then
        if strict then error(string.format("load_state_dict: missing key '%s'", name), 4) end
      elseif not tensor.is_tensor(src) then
        error(string.format("load_state_dict: '%s' is %s, not a tensor", name, type(src)), 4)
      else
        if argcheck.shape_string(src) ~= argcheck.shape_string(t) then
          error(string.format("load_state_dict: '%s' has shape %s, the module expects %s", name,
            argcheck.shape_string(src), argcheck.shape_string(t)), 4)
        end
        t:copy(src)
        seen[name] = true
      end
    end
  end)
  if strict then
    for k in pairs(sd) do
      if not seen[k] then error(string.format("load_state_dict: unexpected key '%s'", k), 2) end
    end
  end
  return self
end

-- One line describing this module's configuration (subclasses override).
function Module.extra_repr() return "" end

local function param_shapes(m)
  local parts = {}
  for _, name in ipairs(m._params) do
    if m[name] ~= nil then parts[#parts + 1] = name .. " " .. argcheck.shape_string(m[name]) end
  end
  return #parts > 0 and ("  [" .. table.concat(parts, ", ") .. "]") or ""
end

function Module:__tostring()
  local head = self.__name .. "(" .. self:extra_repr()
  if #self._modules == 0 then return head .. ")" .. param_shapes(self) end
  local lines = { head .. ")" .. param_shapes(self) .. " {" }
  for _, name in ipairs(self._modules) do
    local child = tostring(self[name]):gsub("\n", "\n  ")
    lines[#lines + 1] = "  (" .. name .. "): " .. child
  end
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n")
end

-- Run child:forward(...) and prefix an error with where it happened: "Sequential(2) Conv2d: ...".
function Module:call_child(name, ...)
  local child = self[name]
  if type(child) ~= "table" or child.forward == nil then
    error(string.format("call_child: %s has no child module '%s'", self.__name, tostring(name)), 2)
  end
  local res = { pcall(child.forward, child, ...) }
  if not res[1] then
    error(string.format("%s.%s (%s): %s", self.__name, name, child.__name, tostring(res[2])), 0)
  end
  return unpack(res, 2, table.maxn(res))
end

return Module
