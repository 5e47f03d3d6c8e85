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
  "fp32 | bf16: matmuls, linear layers, attention, convolutions in bf16 with fp32 accumulation\n"
  .. "(fp32, with a warning, where the CPU has no bf16)", "fp32")
parser:option("--provenance", "also write each sample's provenance (JSON): parents (training indices, 1-based,\n"
  .. "and file names), the codes taken from each, strategy and seed")
parser:option("--fraction", "for the exchange strategy: the share of the differing codes taken from the second\n"
  .. "parent (0..1)", "0.5"):convert(tonumber)
parser:flag("--with-parents", "draw each sample between its parents (A | sample | B; mix: the parents split\n"
  .. "around the sample)")
parser:flag("--list", "list the registered strategies and exit")
local args = parser:parse(arg)
require("pivq.core.precision").use(args.precision, "pivq sample")

-- counts that cannot work, refused before the model loads, naming the option
require("pivq.core.argcheck").counts("pivq sample", args, { "n", "parents", "batch", "bank_limit" })
local done = recipe.strategy_options("pivq sample", pivq.sample, args)
if done then return done end
local model, err_code = recipe.load_model("pivq sample", args.ckpt)
if not model then return err_code end
local layouts = require "pivq.data.layouts"
local data
if args.dataset then
  local derr
  data, derr = layouts.for_model(model, args.dataset)
  if not data then
    io.stderr:write("pivq sample: ", derr, "\n")
    return 1
  end
end
local t0 = pivq.clock()
local bank = model:bank({ limit = args.bank_limit, data = data })
local t1 = pivq.clock()
local codes, prov = pivq.sample.codes(args.strategy, bank, args.n, { seed = args.seed, parents = args.parents,
  fraction = args.strategy == "exchange" and args.fraction or nil, model = model, codebook = model:codebook() })
local t2 = pivq.clock()
local images = {}
for s = 1, args.n, args.batch do
  images[#images + 1] = model:decode(codes:narrow(1, s, math.min(args.batch, args.n - s + 1)))
end
images = pivq.cat(images, 1)
local t3 = pivq.clock()
local desc = data or layouts.of_model(model)
local no_parents = not prov.recorded and string.format("strategy '%s' recorded no provenance", args.strategy)
  or prov:parentless() and string.format("strategy '%s' draws no parents", args.strategy) or nil
local grid = pivq.image.grid(images, { nrow = 8, padding = 2, scale = 2 })
if args.with_parents and no_parents then
  io.stderr:write("pivq sample: ", no_parents, "; --with-parents draws the samples alone\n")
elseif args.with_parents then
  -- one row per sample: the first half of its parents, the sample, the rest (A | sample | B)
  local train, terr = layouts.open(desc, "train")
  if not train then
    io.stderr:write("pivq sample: ", terr, "\n")
    return 1
  end
  local widest = 0
  for s = 1, args.n do widest = math.max(widest, #prov:parents(s)) end
  local blank = pivq.ones(images:size(2), images:size(3), images:size(4))
  local cells = {}
  for s = 1, args.n do
    local ps = prov:parents(s)
    local left = math.ceil(#ps / 2)
    local function parent_image(i)
      local x = train.images:select(1, i)
      return x:dtype() == "uint8" and x:float() / 255 or x
    end
    for j = 1, left do cells[#cells + 1] = parent_image(ps[j]) end
    for _ = left + 1, math.ceil(widest / 2) do cells[#cells + 1] = blank end
    cells[#cells + 1] = images:select(1, s)
    for j = left + 1, #ps do cells[#cells + 1] = parent_image(ps[j]) end
    for _ = #ps - left + 1, widest - math.ceil(widest / 2) do cells[#cells + 1] = blank end
  end
  grid = pivq.image.grid(cells, { nrow = widest + 1, padding = 2, scale = 2 })
end
local ok, serr = pivq.image.save(args.out, grid)
if not ok then error("sample: " .. tostring(serr), 0) end
if args.save_codes then assert(pivq.save(args.save_codes, { codes = codes }, { strategy = args.strategy })) end
if args.provenance then
  local files, ferr = layouts.files(desc, "train")
  if ferr then
    io.stderr:write("pivq sample: ", ferr, "\n")
    return 1
  end
  local doc = prov:json_table({ files = files, codes = codes, meta = { checkpoint = args.ckpt,
    checkpoint_hash = pivq.bank.file_hash(args.ckpt), dataset = desc.path, dataset_kind = desc.kind, split = "train",
    bank_limit = args.bank_limit, images = args.out,
    file_names = files == nil and "the dataset has no file names (IDX): parents are named by index" or nil } })
  pivq.files.write_or_fail("sample", args.provenance, require("dkjson").encode(doc, { indent = true }) .. "\n")
  print("provenance: " .. args.provenance)
end
print(string.format("%d samples (%s): bank %.2f s, codes %.2f s, decode %.2f s (%.0f images/s) -> %s", args.n,
  args.strategy, t1 - t0, t2 - t1, t3 - t2, args.n / (t3 - t2), args.out))
return 0
