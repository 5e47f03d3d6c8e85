-- pivq.capacity: bits a code of L entries from a codebook of K can carry (METHOD.md, "Capacity
-- accounting"; Figure 4 of the paper). All counts go through log-gamma, so K and L in the
-- thousands neither overflow nor lose precision.
--
--   positional  L codes, order matters (a VQ-VAE grid):        L * log2 K
--   multiset    L codes, order ignored, repeats allowed:        log2 C(K + L - 1, L)
--   distinct    a multiset that uses K_img distinct codes:      log2 C(K, K_img)   (nearest, measured)
--   set         L distinct codes, order ignored (matching):     log2 C(K, L)
local ffi = require "ffi"

local M = {}

-- libm's lgamma through the FFI (declared once per Lua state).
local registry = debug.getregistry()
if not registry["pivq.capacity.lgamma"] then
  ffi.cdef "double lgamma(double x);"
  registry["pivq.capacity.lgamma"] = true
end
local lgamma = ffi.C.lgamma
local LN2 = math.log(2)

-- log2 of the binomial coefficient C(n, k), 0 <= k <= n.
function M.log2_binomial(n, k)
  if k < 0 or k > n then
    error(string.format("log2_binomial: need 0 <= k <= n, got n=%s k=%s", tostring(n), tostring(k)), 2)
  end
  return (lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)) / LN2
end

local SCHEMES = { positional = true, multiset = true, set = true, distinct = true }

local function positive_integer(name, v)
  if type(v) ~= "number" or v % 1 ~= 0 or v < 1 then
    error(string.format("capacity.bits: %s must be a positive integer, got %s", name, tostring(v)), 3)
  end
end

-- pivq.capacity.bits{K=, L=, scheme=, K_img=}: bits per image.
function M.bits(args)
  if type(args) ~= "table" then error("capacity.bits: expected a table {K=, L=, scheme=}", 2) end
  local K, L, scheme = args.K, args.L, args.scheme or "set"
  positive_integer("K", K)
  positive_integer("L", L)
  if not SCHEMES[scheme] then
    error("capacity.bits: unknown scheme '" .. tostring(scheme)
      .. "' (positional, multiset, set, distinct)", 2)
  end
  if scheme == "positional" then return L * math.log(K) / LN2 end
  if scheme == "multiset" then return M.log2_binomial(K + L - 1, L) end
  if scheme == "set" then
    if L > K then
      error(string.format("capacity.bits: a set of L=%d distinct codes needs K >= L, got K=%d", L, K), 2)
    end
    return M.log2_binomial(K, L)
  end
  local k_img = args.K_img
  if type(k_img) ~= "number" or k_img < 0 or k_img > K then
    error(string.format("capacity.bits: scheme 'distinct' needs K_img in [0, K], got %s", tostring(k_img)), 2)
  end
  -- K_img is a measured mean, so it may be fractional: lgamma interpolates C(K, K_img).
  return M.log2_binomial(K, k_img)
end

-- The Figure-4 row for one L: bits of every scheme and the matching / nearest ratio.
-- K_img (measured for nearest) defaults to L, i.e. no collapse; it is capped at L.
function M.row(K, L, K_img)
  local k_img = math.min(K_img or L, L)
  local r = {
    L = L,
    positional = M.bits { K = K, L = L, scheme = "positional" },
    multiset = M.bits { K = K, L = L, scheme = "multiset" },
    nearest = M.bits { K = K, L = L, scheme = "distinct", K_img = k_img },
    matching = L <= K and M.bits { K = K, L = L, scheme = "set" } or nil,
    K_img = k_img,
  }
  r.ratio = r.matching and r.nearest > 0 and r.matching / r.nearest or nil
  return r
end

return M
