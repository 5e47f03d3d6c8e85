-- capacity: the Figure-4 table of bits per image for positional, multiset, nearest and matching codes
local argparse = require "argparse"
local capacity = require "pivq.quant.capacity"
local plot = require "pivq.display.plot"

local parser = argparse("pivq capacity",
  "Bits an image's code can carry with codebook size K and L codes per image (notebooks/METHOD.md).\n"
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

print(capacity.format(capacity.table(args.K, lo, hi, args.K_img), args.K, args.K_img))
local ok, err = plot.save(args.out, capacity.figure(args.K, lo, hi, args.K_img))
if not ok then
  io.stderr:write(err, "\n")
  return 1
end
print("plot: " .. args.out)
return 0
