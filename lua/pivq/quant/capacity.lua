-- pivq.capacity: bits a code of L entries from a codebook of K can carry (notebooks/METHOD.md, "Capacity
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
  if type(n) ~= "number" or type(k) ~= "number" or not (k >= 0 and k <= n) then
    error(string.format("log2_binomial: need 0 <= k <= n, got n=%s k=%s", tostring(n), tostring(k)), 2)
  end
  return (lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)) / LN2
end

local SCHEMES = { positional = true, multiset = true, set = true, distinct = true }

local function positive_integer(name, v, fname)
  if type(v) ~= "number" or v % 1 ~= 0 or v < 1 then
    error(string.format("%s: %s must be a positive integer, got %s", fname or "capacity.bits", name, tostring(v)), 3)
  end
end

-- pivq.capacity.bits{K=, L=, scheme=, K_img=}: bits per image.
function M.bits(args)
  if type(args) ~= "table" then error("capacity.bits: expected a table {K=, L=, scheme=}", 2) end
  require("pivq.core.argcheck").keys("capacity.bits", args, { "K", "L", "scheme", "K_img" })
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
  if type(k_img) ~= "number" or not (k_img >= 0 and k_img <= K) then
    error(string.format("capacity.bits: scheme 'distinct' needs K_img in [0, K], got %s", tostring(k_img)), 2)
  end
  -- K_img is a measured mean, so it may be fractional: lgamma interpolates C(K, K_img).
  return M.log2_binomial(K, k_img)
end

local function check_k_img(fname, K_img)
  if K_img ~= nil and (type(K_img) ~= "number" or K_img ~= K_img or K_img < 0) then -- a NaN too
    error(string.format("%s: K_img must be a nonnegative number, got %s", fname, tostring(K_img)), 3)
  end
end

-- The Figure-4 row for one L: bits of every scheme and the matching / nearest ratio.
-- K_img (measured for nearest) defaults to L, i.e. no collapse; it is capped at L and at K (an
-- image cannot use more distinct codes than the codebook has).
function M.row(K, L, K_img)
  positive_integer("K", K, "capacity.row")
  positive_integer("L", L, "capacity.row")
  check_k_img("capacity.row", K_img)
  local k_img = math.min(K_img or L, L, K)
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

-- ---- the Figure-4 table and plot (`pivq capacity` and the notebooks) ---------------------------

local function check_range(fname, K, lo, hi)
  if type(K) ~= "number" or K < 1 or K % 1 ~= 0 then
    error(string.format("%s: K must be a positive integer, got %s", fname, tostring(K)), 3)
  end
  if type(lo) ~= "number" or type(hi) ~= "number" or lo < 1 or hi < lo or lo % 1 ~= 0 or hi % 1 ~= 0 then
    error(string.format("%s: need integers 1 <= lo <= hi, got lo=%s hi=%s", fname, tostring(lo), tostring(hi)), 3)
  end
end

-- Rows of the table for L in lo..hi: the two ends and the powers of two between them.
function M.table(K, lo, hi, K_img)
  check_range("capacity.table", K, lo, hi)
  check_k_img("capacity.table", K_img)
  local Ls, seen = {}, {}
  local function add(L)
    if L >= lo and L <= hi and not seen[L] then
      seen[L] = true
      Ls[#Ls + 1] = L
    end
  end
  add(lo)
  local p = 1
  while p <= hi do
    add(p)
    p = p * 2
  end
  add(hi)
  table.sort(Ls)
  local rows = {}
  for i, L in ipairs(Ls) do rows[i] = M.row(K, L, K_img) end
  return rows
end

-- The table as text: a heading line, column names, one line per row.
function M.format(rows, K, K_img)
  if type(rows) ~= "table" then error("capacity.format: rows must be capacity.table's rows, got " .. type(rows), 2) end
  for i = 1, #rows do
    local r = rows[i]
    if type(r) ~= "table" or type(r.L) ~= "number" or type(r.positional) ~= "number" or type(r.multiset) ~= "number"
      or type(r.nearest) ~= "number" then
      error("capacity.format: row " .. i .. " is not a row of capacity.table", 2)
    end
  end
  positive_integer("K", K, "capacity.format")
  check_k_img("capacity.format", K_img)
  local lines = {
    string.format("K = %d%s", K, K_img and string.format(", K_img = %g (nearest)", K_img) or
      ", K_img = L (nearest without collapse; give a measured K_img)"),
    string.format("%6s %12s %12s %12s %12s %8s", "L", "positional", "multiset", "nearest", "matching", "ratio"),
  }
  for _, r in ipairs(rows) do
    lines[#lines + 1] = string.format("%6d %12.1f %12.1f %12.1f %12s %8s", r.L, r.positional, r.multiset,
      r.nearest, r.matching and string.format("%.1f", r.matching) or "-",
      r.ratio and string.format("%.2f", r.ratio) or "-")
  end
  return table.concat(lines, "\n")
end

-- The plot (a pivq.plot spec): bits against L over lo..hi, stepping geometrically.
function M.figure(K, lo, hi, K_img)
  check_range("capacity.figure", K, lo, hi)
  check_k_img("capacity.figure", K_img)
  local series = { positional = {}, multiset = {}, nearest = {}, matching = {} }
  local xs = {}
  local L = lo
  while L <= hi do
    xs[#xs + 1] = L
    local r = M.row(K, L, K_img)
    for name, s in pairs(series) do s[#xs] = r[name] or 0 / 0 end
    L = math.max(L + 1, math.floor(L * 1.05))
  end
  return {
    title = string.format("Bits per image, K = %d", K),
    xlabel = "L (codes per image)", ylabel = "bits", logx = true, ymin = 0,
    series = {
      { name = "positional", x = xs, y = series.positional },
      { name = "multiset", x = xs, y = series.multiset },
      { name = K_img and string.format("nearest (K_img=%g)", K_img) or "nearest (K_img=L)", x = xs,
        y = series.nearest },
      { name = "matching (set)", x = xs, y = series.matching },
    },
  }
end

-- The paper's Figure-4 point: K = 4096, L = 256, nearest using K_img = 49 distinct codes per image
-- (matching / nearest = 3.5x).
M.PAPER = { K = 4096, L = 256, K_img = 49 }

-- The measured Figure 4 (`pivq capacity --measure`): the formula's curves over the measured L
-- range beside measured points. measured: {{name =, L = {...}, bits = {...}}, ...} (one series
-- per trained model family); notes: lines printed under the legend (steps, minutes). A plot
-- spec for pivq.plot.line (SVG) and pivq.display.raster (PNG).
function M.measured_figure(K, measured, notes)
  positive_integer("K", K, "capacity.measured_figure")
  if type(measured) ~= "table" or #measured == 0 then
    error("capacity.measured_figure: measured must be a non-empty list of {name =, L =, bits =}", 2)
  end
  local lo, hi = math.huge, 0
  for i, m in ipairs(measured) do
    if type(m) ~= "table" or type(m.L) ~= "table" or type(m.bits) ~= "table" or #m.L ~= #m.bits then
      error(string.format("capacity.measured_figure: series %d needs lists L and bits of equal length", i), 2)
    end
    for _, L in ipairs(m.L) do
      positive_integer("L", L, "capacity.measured_figure")
      lo, hi = math.min(lo, L), math.max(hi, L)
    end
  end
  if lo > hi then lo, hi = 1, 1 end
  local f = M.figure(K, lo, hi)
  local series = {
    { name = "positional L log2 K", x = f.series[1].x, y = f.series[1].y },
    { name = "multiset", x = f.series[2].x, y = f.series[2].y },
    { name = "set log2 C(K,L)", x = f.series[4].x, y = f.series[4].y },
  }
  for _, m in ipairs(measured) do
    series[#series + 1] = { name = m.name, x = m.L, y = m.bits, marker = true }
  end
  if K == M.PAPER.K then
    local p = M.row(K, M.PAPER.L, M.PAPER.K_img)
    series[#series + 1] = { name = string.format("paper: nearest K_img=%d (%.1fx)", M.PAPER.K_img, p.ratio),
      x = { M.PAPER.L }, y = { p.nearest }, marker = true, line = false, color = { 0, 0, 0 } }
  end
  return { title = string.format("Bits per image, K = %d: formula and measured", K), xlabel = "L (codes per image)",
    ylabel = "bits", logx = true, ymin = 0, series = series, notes = notes }
end

return M
