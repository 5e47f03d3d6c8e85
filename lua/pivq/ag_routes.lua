-- pivq.ag_routes: the C namespace as the tensor methods see it. It is the FFI library with
-- every differentiable op replaced by its autograd-aware twin from csrc/pivq.h (pivq_ag_*,
-- same arguments and results; it also records a graph node when grad mode is on and an input
-- requires grad), and every in-place op by a twin that first refuses tensors that are part of
-- a graph. tensor.lua calls `C.pivq_unary(...)` and gets `pivq_ag_unary`; everything else is
-- the library itself. Keeping the routing here leaves tensor.lua written against the plain API.
--
-- An op of the tensor core missing from this table is not differentiable: its results do not
-- require grad (add it here, with its gradient in csrc/grad_core.c).
local ROUTES = {
  "unary", "clamp", "binary", "binary_scalar", "where", "reduce", "matmul", "narrow", "select",
  "transpose", "permute", "view", "reshape", "expand", "squeeze", "unsqueeze", "contiguous",
  "clone", "to_dtype", "index_select", "gather", "scatter_add", "masked_fill", "cat", "stack",
  -- in-place ops: guarded
  "binary_", "binary_scalar_", "fill_", "copy_",
}

local M = {}

-- The routed namespace over state.C (state: pivq.ffi's); built once per Lua state.
function M.of(state)
  local registry = debug.getregistry()
  local routed = registry["pivq.ag_routes"]
  if routed then return routed end
  local C = state.C
  routed = {}
  for _, name in ipairs(ROUTES) do routed["pivq_" .. name] = C["pivq_ag_" .. name] end
  -- anything else: the library's own symbol, cached on first use
  setmetatable(routed, { __index = function(t, k)
    local v = C[k]
    rawset(t, k, v)
    return v
  end })
  registry["pivq.ag_routes"] = routed
  return routed
end

return M
