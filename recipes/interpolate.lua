-- interpolate: interpolation strips between two images' code sets (one row per path)
local argparse = require "argparse"
local pivq = require "pivq"
local recipe = require "pivq.display.recipe"

local parser = argparse("pivq interpolate", "Interpolate between images A and B by exchanging codes.\n"
  .. "Each row is one path: A, the decoded frames, B. A and B are test-set indices or image files.")
parser:option("--ckpt", "model checkpoint"):args(1)
parser:option("--a", "image A: a held-out image's index (1-based) or an image file", "1")
parser:option("--b", "image B: a held-out image's index (1-based) or an image file", "2")
parser:option("--dataset", "indices refer to this dataset's held-out split (default: the model's own)")
parser:option("--strategy", "interpolation strategy (see --list)", "random")
parser:option("--strategy-file", "a Lua file that registers strategies (pivq.interp.register); it is code\n"
  .. "and runs with your rights, like a recipe (checkpoints are data and never execute)")
parser:option("--paths", "number of paths (rows); random paths differ by seed", "4"):convert(tonumber)
parser:option("--steps", "transitions per path (default: one code swap per step)"):convert(tonumber)
parser:option("--seed", "seed of the first path", "1"):convert(tonumber)
parser:option("--out", "PNG to write", "strip.png")
parser:option("--scale", "pixel scale of the strip", "3"):convert(tonumber)
parser:option("--batch", "frames decoded per forward pass", "256"):convert(tonumber)
parser:flag("--list", "list the registered strategies and exit")
local args = parser:parse(arg)

-- counts that cannot work, refused before the model loads, naming the option
require("pivq.core.argcheck").counts("pivq interpolate", args, { "paths", "scale", "batch", "steps" })
for _, name in ipairs({ "a", "b" }) do
  local n = tonumber(args[name])
  if n and (n % 1 ~= 0 or n < 1) then
    error(string.format("pivq interpolate: --%s must be a test-set index from 1 or an image file, got %s", name,
      args[name]), 0)
  end
end

local done = recipe.strategy_options("pivq interpolate", pivq.interp, args)
if done then return done end
local model, err_code = recipe.load_model("pivq interpolate", args.ckpt)
if not model then return err_code end
if model.config.mode == "positional" then
  io.stderr:write("pivq interpolate: a positional model's codes are tied to slots, not a set; "
    .. "interpolation by exchanging codes is defined for matching and nearest models only\n")
  return 2
end

local layouts = require "pivq.data.layouts"
local desc, derr = layouts.for_model(model, args.dataset)
if not desc then
  io.stderr:write("pivq interpolate: ", derr, "\n")
  return 1
end
local function load_image(spec) return recipe.load_image(model, desc, spec) end

local xa, aerr = load_image(args.a)
local xb, berr = load_image(args.b)
if not xa or not xb then
  io.stderr:write("pivq interpolate: ", aerr or berr, "\n")
  return 1
end
local codes = model:encode(pivq.cat({ xa, xb }, 1))
local sets = model:code_sets(codes)
local A, B = sets[1], sets[2]
print(string.format("A: %s\nB: %s\nshared codes: %d of %d", tostring(A), tostring(B), A:intersection(B):size(),
  A:size()))

-- Bounded memory: the strip may hold at most image.max_pixels() pixels (checked before
-- decoding, so a path of 200,000 frames is refused, not decoded), and frames are decoded
-- --batch at a time, like pivq sample.
local side = model.config.image_size * args.scale + 2
local function check_strip(frames)
  local pixels = (frames + 2) * args.paths * side * side
  if pixels > pivq.image.max_pixels() then
    error(string.format("pivq interpolate: %d paths of %d frames at --scale %d make a strip of %.3g pixels, more "
      .. "than the image limit (%.3g, pivq.image.max_pixels); lower --steps, --paths or --scale", args.paths, frames,
      args.scale, pixels, pivq.image.max_pixels()), 0)
  end
end
if args.steps then check_strip(args.steps + 1) end
local rows = {}
local width
for p = 1, args.paths do
  local path = pivq.interp.path(args.strategy, A, B,
    pivq.interp.model_options(model, xa, xb, { steps = args.steps, seed = args.seed + p - 1 }))
  -- a path is a list of code sets (or a tensor of code rows from a strategy file)
  local tensor_path = pivq.is_tensor(path)
  local n = tensor_path and path:size(1) or #path
  check_strip(n)
  local parts = {}
  for s = 1, n, args.batch do
    local m = math.min(args.batch, n - s + 1)
    parts[#parts + 1] = model:decode(tensor_path and path:narrow(1, s, m) or { unpack(path, s, s + m - 1) })
  end
  local frames = pivq.cat(parts, 1)
  rows[p] = pivq.cat({ xa, frames, xb }, 1)
  width = math.max(width or 0, rows[p]:size(1))
end
-- pad shorter rows (e.g. lerp with other steps) with blank frames so the grid is rectangular
local all = {}
for _, r in ipairs(rows) do
  if r:size(1) < width then
    r = pivq.cat({ r, pivq.zeros(width - r:size(1), r:size(2), r:size(3), r:size(4)) }, 1)
  end
  all[#all + 1] = r
end
local grid = pivq.image.grid(pivq.cat(all, 1), { nrow = width, padding = 2, scale = args.scale })
assert(pivq.image.save(args.out, grid))
print(string.format("%d paths of %d frames (strategy %s) -> %s", args.paths, width - 2, args.strategy, args.out))
return 0
