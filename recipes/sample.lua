-- sample: novel images in one forward pass from training images' codes (interpolation-based sampling)
local argparse = require "argparse"
local pivq = require "pivq"
local recipe = require "pivq.display.recipe"

local parser = argparse("pivq sample", "Sample images by mixing training images' codes (no learned prior).\n"
  .. "Parents come from the code bank (every training image's codes, cached beside the checkpoint).")
parser:option("--ckpt", "model checkpoint"):args(1)
parser:option("-n", "number of samples", "64"):convert(tonumber)
parser:option("--strategy", "sampling strategy (see --list)", "pair")
parser:option("--strategy-file", "a Lua file that registers strategies (pivq.sample.register); it is code\n"
  .. "and runs with your rights, like a recipe (checkpoints are data and never execute)")
parser:option("--parents", "parents per sample for mix", "3"):convert(tonumber)
parser:option("--seed", "seed", "1"):convert(tonumber)
parser:option("--out", "PNG grid to write", "samples.png")
parser:option("--save-codes", "also write the sampled codes (safetensors)")
parser:option("--batch", "images decoded per forward pass", "256"):convert(tonumber)
parser:option("--dataset", "parents from this dataset's training split (default: the model's own)")
parser:option("--bank-limit", "encode only the first N training images into the bank (quick looks)")
  :convert(tonumber)
parser:option("--precision",
  "fp32 | bf16: matmuls, linear layers, convolutions in bf16 with fp32 accumulation\n"
  .. "(fp32, with a warning, where the CPU has no bf16)", "fp32")
parser:flag("--list", "list the registered strategies and exit")
local args = parser:parse(arg)
require("pivq.core.precision").use(args.precision, "pivq sample")

-- counts that cannot work, refused before the model loads, naming the option
require("pivq.core.argcheck").counts("pivq sample", args, { "n", "parents", "batch", "bank_limit" })
local done = recipe.strategy_options("pivq sample", pivq.sample, args)
if done then return done end
local model, err_code = recipe.load_model("pivq sample", args.ckpt)
if not model then return err_code end
local data
if args.dataset then
  local derr
  data, derr = require("pivq.data.layouts").for_model(model, args.dataset)
  if not data then
    io.stderr:write("pivq sample: ", derr, "\n")
    return 1
  end
end
local t0 = pivq.clock()
local bank = model:bank({ limit = args.bank_limit, data = data })
local t1 = pivq.clock()
local codes = pivq.sample.codes(args.strategy, bank, args.n, { seed = args.seed, parents = args.parents,
  model = model, codebook = model:codebook() })
local t2 = pivq.clock()
local images = {}
for s = 1, args.n, args.batch do
  images[#images + 1] = model:decode(codes:narrow(1, s, math.min(args.batch, args.n - s + 1)))
end
images = pivq.cat(images, 1)
local t3 = pivq.clock()
assert(pivq.image.save(args.out, pivq.image.grid(images, { nrow = 8, padding = 2, scale = 2 })))
if args.save_codes then assert(pivq.save(args.save_codes, { codes = codes }, { strategy = args.strategy })) end
print(string.format("%d samples (%s): bank %.2f s, codes %.2f s, decode %.2f s (%.0f images/s) -> %s", args.n,
  args.strategy, t1 - t0, t2 - t1, t3 - t2, args.n / (t3 - t2), args.out))
return 0
