-- pivq.autograd: the Lua face of the C autograd engine (csrc/autograd.c).
--
-- Adds the autograd methods to the tensor type (requires_grad, grad, backward, detach, ...)
-- and the grad-mode helpers (no_grad, enable_grad). The graph itself is recorded in C by the
-- differentiable ops; nothing here walks it.
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local tensor = require "pivq.core.tensor"
local gc = require "pivq.core.gc"
local argcheck = require "pivq.core.argcheck"

local C = state.C
local T = {} -- tensor methods, added (with their self check) at the end
local wrap, check_rc = gc.wrap, gc.check_rc

local M = {}

local check_tensor = argcheck.self_tensor

-- t:requires_grad() -> boolean; t:requires_grad(flag) marks a leaf and returns t.
function T.requires_grad(t, flag)
  if flag == nil then return C.pivq_requires_grad(t.c) == 1 end
  check_rc(C.pivq_requires_grad_(t.c, flag and 1 or 0))
  return t
end
function T.requires_grad_(t, flag)
  if flag == nil then flag = true end
  return T.requires_grad(t, flag)
end

function T.is_leaf(t) return C.pivq_is_leaf(t.c) == 1 end

-- Name of the op that produced t, or nil for a leaf.
function T.grad_fn(t)
  local name = C.pivq_grad_fn_name(t.c)
  return name ~= nil and ffi.string(name) or nil
end

local out_ptr = ffi.typeof("pivq_tensor*[1]")

-- The accumulated gradient (a tensor sharing the gradient buffer), or nil.
function T.grad(t)
  local out = out_ptr()
  check_rc(C.pivq_get_grad(t.c, out))
  if out[0] == nil then return nil end
  return wrap(out[0])
end

-- Replace (or with nil, drop) the gradient.
function T.set_grad(t, g)
  if g ~= nil then check_tensor("set_grad", g) end
  check_rc(C.pivq_set_grad(t.c, g ~= nil and g.c or nil))
  return t
end

-- Drop the gradient (the next backward starts from nothing, as set_to_none in PyTorch).
function T.zero_grad(t)
  check_rc(C.pivq_set_grad(t.c, nil))
  return t
end

function T.detach(t) return wrap(C.pivq_detach(t.c)) end

-- loss:backward(), t:backward(grad), t:backward{retain_graph = true}, t:backward(grad, opts)
function T.backward(t, grad, opts)
  if type(grad) == "table" and not tensor.is_tensor(grad) then grad, opts = nil, grad end
  if grad ~= nil then check_tensor("backward", grad) end
  local retain = opts and opts.retain_graph and 1 or 0
  check_rc(C.pivq_backward(t.c, grad ~= nil and grad.c or nil, retain))
  if retain == 0 then gc.after_backward() end -- a retained graph: the step goes on
end

-- Run fn(...) with grad mode set to `enabled`, restoring the previous mode even on error.
local function with_grad_mode(enabled, fname, fn, ...)
  if type(fn) ~= "function" then
    argcheck.fail(string.format("%s: expected a function, got %s", fname, type(fn)))
  end
  local prev = C.pivq_set_grad_enabled(enabled and 1 or 0)
  local res = { pcall(fn, ...) }
  C.pivq_set_grad_enabled(prev)
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

-- pivq.no_grad(function() ... end): nothing inside is recorded; returns fn's results.
function M.no_grad(fn, ...) return with_grad_mode(false, "no_grad", fn, ...) end
function M.enable_grad(fn, ...) return with_grad_mode(true, "enable_grad", fn, ...) end

-- Set grad mode for this thread; returns the previous setting.
function M.set_grad_enabled(flag) return C.pivq_set_grad_enabled(flag and 1 or 0) == 1 end
function M.is_grad_enabled() return C.pivq_is_grad_enabled() == 1 end

-- Live graph nodes (for leak checks).
function M.graph_node_count() return tonumber(C.pivq_graph_node_count()) end

tensor.add_methods(T)

return M
