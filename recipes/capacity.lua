-- capacity: the Figure-4 table of bits per image for positional, multiset, nearest and matching codes
local argparse = require "argparse"
local capacity = require "pivq.capacity"
local plot = require "pivq.plot"

local parser = argparse("pivq capacity",
  "Bits an image's code can carry with codebook size K and L codes per image (METHOD.md).\n"
  .. "nearest = log2 C(K, K_img) with K_img = min(--K_img, L) distinct codes per image;\n"
  .. "matching = log2 C(K, L); ratio = matching / nearest.")
parser:option("--K", "codebook size", "4096"):convert(tonumber)
parser:option("--L", "codes per image: N, or a range A:B (rows at powers of two)", "1:512")
parser:option("--K_img", "mean distinct codes per image under nearest quantization (measured)")
  :convert(tonumber)
parser:option("--out", "SVG plot to write", "capacity.svg")
local args = parser:parse(arg)

local lo, hi = args.L:match("^(%d+):(%d+)$")
lo, hi = tonumber(lo or args.L), tonumber(hi or args.L)
if not lo or not hi or lo < 1 or hi < lo then
  io.stderr:write("pivq capacity: --L must be N or A:B with 1 <= A <= B, got " .. args.L .. "\n")
  return 2
end
if not args.K or args.K < 1 or args.K % 1 ~= 0 then
  io.stderr:write("pivq capacity: --K must be a positive integer\n")
  return 2
end

-- table rows: the ends of the range and the powers of two inside it
local rows, seen = {}, {}
local function add_row(L)
  if L >= lo and L <= hi and not seen[L] then
    seen[L] = true
    rows[#rows + 1] = L
  end
end
add_row(lo)
local p = 1
while p <= hi do
  add_row(p)
  p = p * 2
end
add_row(hi)
table.sort(rows)

print(string.format("K = %d%s", args.K, args.K_img and string.format(", K_img = %g (nearest)", args.K_img) or
  ", K_img = L (nearest without collapse; pass --K_img to use a measured value)"))
print(string.format("%6s %12s %12s %12s %12s %8s", "L", "positional", "multiset", "nearest", "matching", "ratio"))
for _, L in ipairs(rows) do
  local r = capacity.row(args.K, L, args.K_img)
  print(string.format("%6d %12.1f %12.1f %12.1f %12s %8s", L, r.positional, r.multiset, r.nearest,
    r.matching and string.format("%.1f", r.matching) or "-", r.ratio and string.format("%.2f", r.ratio) or "-"))
end

-- the plot: every L in the range (stepping geometrically for long ranges)
local series = { positional = {}, multiset = {}, nearest = {}, matching = {} }
local xs = {}
local L = lo
while L <= hi do
  xs[#xs + 1] = L
  local r = capacity.row(args.K, L, args.K_img)
  for name, s in pairs(series) do s[#xs] = r[name] or 0 / 0 end
  L = math.max(L + 1, math.floor(L * 1.05))
end
local ok, err = plot.save(args.out, {
  title = string.format("Bits per image, K = %d", args.K),
  xlabel = "L (codes per image)", ylabel = "bits", logx = true, ymin = 0,
  series = {
    { name = "positional", x = xs, y = series.positional },
    { name = "multiset", x = xs, y = series.multiset },
    { name = args.K_img and string.format("nearest (K_img=%g)", args.K_img) or "nearest (K_img=L)",
      x = xs, y = series.nearest },
    { name = "matching (set)", x = xs, y = series.matching },
  },
})
if not ok then
  io.stderr:write(err, "\n")
  return 1
end
print("plot: " .. args.out)
return 0
