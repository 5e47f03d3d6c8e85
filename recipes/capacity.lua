-- capacity: the Figure-4 table of bits per image for positional, multiset, nearest and matching codes;
-- with --measure, Figure 4 measured on Fashion-MNIST: matching and nearest models (learned and
-- exchangeable readouts) trained at K = 4096 for each L with identical budgets, K_img measured on
-- held-out images, the measured bits beside the formula's curves (cached in --dir like `pivq reproduce`)
local argparse = require "argparse"
local capacity = require "pivq.quant.capacity"
local plot = require "pivq.display.plot"

local FULL_STEPS = 1500 -- the full setting's budget per model (20 models: about two hours on 2 cores)

local parser = argparse("pivq capacity",
  "Bits an image's code can carry with codebook size K and L codes per image (notebooks/METHOD.md).\n"
  .. "nearest = log2 C(K, K_img) with K_img = min(--K_img, L) distinct codes per image;\n"
  .. "matching = log2 C(K, L); ratio = matching / nearest.\n"
  .. "--measure trains matching and nearest models (learned and exchangeable readouts) on Fashion-MNIST\n"
  .. "for every --Ls at --K with identical budgets (--steps), measures K_img on held-out images and plots\n"
  .. "the measured bits beside the formula (DIR/figure4.png, .svg, .json; every model cached in DIR).")
parser:option("--K", "codebook size", "4096"):convert(tonumber)
parser:option("--L", "codes per image: N, or a range A:B (rows at powers of two)", "1:512")
parser:option("--K_img", "mean distinct codes per image under nearest quantization (measured)")
  :convert(tonumber)
parser:option("--out", "SVG plot to write (default capacity.svg; --measure: DIR/figure4.png and its .svg, .json)")
parser:flag("--measure", "train the models and measure K_img (Figure 4 on data)")
parser:option("--dir", "--measure: working folder (models, measurements)", "runs/capacity")
parser:option("--Ls", "--measure: codes per image, comma-separated", "16,32,64,128,256")
parser:option("--models", "--measure: comma-separated of matching, nearest, matching-exch, nearest-exch",
  "matching,nearest,matching-exch,nearest-exch")
parser:option("--steps", "--measure: training steps of every model (the budget)", tostring(FULL_STEPS))
  :convert(tonumber)
parser:option("--batch", "--measure: images per step", "64"):convert(tonumber)
parser:option("--threads", "--measure: threads (0: all cores)", "0"):convert(tonumber)
parser:option("--test-images", "--measure: held-out images K_img is measured on", "2000"):convert(tonumber)
parser:flag("--cached-only", "--measure: plot what DIR holds; train nothing (e.g. after parallel runs of subsets)")
parser:flag("--fresh", "--measure: ignore cached models and measurements")
local args = parser:parse(arg)

if not args.K or args.K < 1 or args.K % 1 ~= 0 then
  io.stderr:write("pivq capacity: --K must be a positive integer\n")
  return 2
end

if not args.measure then
  local lo, hi = args.L:match("^(%d+):(%d+)$")
  lo, hi = tonumber(lo or args.L), tonumber(hi or args.L)
  if not lo or not hi or lo < 1 or hi < lo then
    io.stderr:write("pivq capacity: --L must be N or A:B with 1 <= A <= B, got " .. args.L .. "\n")
    return 2
  end
  local out = args.out or "capacity.svg"
  print(capacity.format(capacity.table(args.K, lo, hi, args.K_img), args.K, args.K_img))
  local ok, err = plot.save(out, capacity.figure(args.K, lo, hi, args.K_img))
  if not ok then
    io.stderr:write(err, "\n")
    return 1
  end
  print("plot: " .. out)
  return 0
end

-- ---- --measure ---------------------------------------------------------------------------------------

local pivq = require "pivq"
local json = require "dkjson"
local function fail(code, ...)
  io.stderr:write("pivq capacity: ", ...)
  io.stderr:write("\n")
  return code
end
require("pivq.core.argcheck").counts("pivq capacity", args, { "steps", "batch", "test_images" })
if args.threads % 1 ~= 0 or args.threads < 0 then return fail(2, "--threads must be an integer >= 0") end

local FAMILIES = {
  matching = { quantizer = "matching", readout = "learned", what = "matching, learned readout" },
  nearest = { quantizer = "nearest", readout = "learned", what = "nearest, learned readout" },
  ["matching-exch"] = { quantizer = "matching", readout = "exchangeable", what = "matching, exchangeable readout" },
  ["nearest-exch"] = { quantizer = "nearest", readout = "exchangeable", what = "nearest, exchangeable readout" },
}
local ORDER = { "matching", "nearest", "matching-exch", "nearest-exch" }
local families, Ls = {}, {}
for name in args.models:gmatch("[^,]+") do
  if not FAMILIES[name] then
    return fail(2, "--models: unknown model '", name, "' (", table.concat(ORDER, ", "), ")")
  end
  families[#families + 1] = name
end
for v in args.Ls:gmatch("[^,]+") do
  local L = tonumber(v)
  if not L or L % 1 ~= 0 or L < 1 or L > args.K then
    return fail(2, string.format("--Ls: each L must be an integer in 1..K=%d, got '%s'", args.K, v))
  end
  Ls[#Ls + 1] = L
end
if #families == 0 or #Ls == 0 then return fail(2, "--models and --Ls must name at least one each") end
table.sort(Ls)
if args.threads > 0 then pivq.set_num_threads(args.threads) end

local function read_json(path)
  local f = io.open(path)
  if not f then return nil end
  local v = json.decode(f:read("*a"))
  f:close()
  return type(v) == "table" and v or nil
end

local layouts = require "pivq.data.layouts"
local test = assert(layouts.open(layouts.describe("fashion-mnist"), "test"))
local n_test = math.min(args.test_images, test.images:size(1))
-- a short budget keeps the default share of warm-up steps before the quantizer (300 of 3000)
local quant_start = math.max(1, math.floor(args.steps / 10))

-- one model: trained (or cached), then its K_img measured on the held-out images (or cached)
local function run(name, L)
  local fam = FAMILIES[name]
  local dir = string.format("%s/%s-L%d", args.dir, name, L)
  local ckpt = dir .. "/model.safetensors"
  local metrics = not args.fresh and read_json(dir .. "/metrics.json")
  local fresh_metrics = metrics and metrics.step == args.steps and metrics.K == args.K and metrics.batch == args.batch
  if not fresh_metrics then
    if args.cached_only then return nil end
    print(string.format("== training %s L=%d (%s), K=%d, %d steps", name, L, fam.what, args.K, args.steps))
    local trainer = pivq.train.Trainer { out = dir, steps = args.steps, batch = args.batch, L = L, K = args.K,
      quantizer = fam.quantizer, readout = fam.readout, quant_start = quant_start, warmup = math.min(200, quant_start),
      -- k-means++ on at most 16 batches and 65,536 latents (the default model's 16 x 64 x 64):
      -- at L = 256 the default 16 batches cost minutes of K = 4096 k-means
      init_batches = math.max(1, math.min(16, math.ceil(65536 / (args.batch * L)))),
      eval_images = n_test, quiet = true, grid_every = args.steps, ckpt_every = args.steps }
    metrics = assert(trainer:fit())
    metrics.batch = args.batch
    pivq.files.write_or_fail("capacity", dir .. "/metrics.json", json.encode(metrics, { indent = true }) .. "\n")
    print(string.format("   %.0f s, PSNR %.2f dB, K_img %.2f", metrics.train_seconds, metrics.psnr, metrics.K_img))
  end
  local hash = pivq.bank.file_hash(ckpt)
  local m = not args.fresh and read_json(dir .. "/measure.json")
  if not m or m.checkpoint_hash ~= hash or m.test_images ~= n_test then
    local model = assert(pivq.load_model(ckpt))
    local codes = pivq.bank.encode_all(model, test.images:narrow(1, 1, n_test))
    local st = pivq.vq.code_stats(codes, args.K)
    m = { name = name, what = fam.what, quantizer = fam.quantizer, readout = fam.readout, L = L, K = args.K,
      K_img = st.K_img, usage = st.usage, code_entropy = st.entropy_bits, test_images = n_test,
      checkpoint_hash = hash }
    m.bits = capacity.bits { K = args.K, L = L, scheme = "distinct", K_img = math.min(st.K_img, L) }
    m.bits_set = capacity.bits { K = args.K, L = L, scheme = "set" }
    -- the codebook this model actually uses on held-out images caps its bits too
    local used = math.floor(st.usage * args.K + 0.5)
    m.codes_used = used
    m.bits_used_codebook = capacity.log2_binomial(math.max(used, st.K_img), st.K_img)
    pivq.files.write_or_fail("capacity", dir .. "/measure.json", json.encode(m, { indent = true }) .. "\n")
  end
  m.psnr, m.steps, m.train_seconds, m.img_per_s, m.threads = metrics.psnr, metrics.step, metrics.train_seconds,
    metrics.img_per_s, metrics.threads
  return m
end

-- L outermost: an interrupted run leaves every family measured at the same Ls
local rows, seconds = {}, 0
for _, L in ipairs(Ls) do
  for _, name in ipairs(families) do
    local m = run(name, L)
    if m then
      rows[#rows + 1] = m
      seconds = seconds + (m.train_seconds or 0)
    end
  end
end
if #rows == 0 then return fail(1, "no cached models in ", args.dir, " (run without --cached-only)") end

print(string.format("K = %d, %d steps of %d images per model, K_img on %d held-out Fashion-MNIST images", args.K,
  args.steps, args.batch, n_test))
print(string.format("%-14s %5s %9s %9s %10s %10s %8s %9s %8s", "model", "L", "K_img", "used", "bits", "set bits",
  "ratio", "PSNR dB", "train s"))
for _, r in ipairs(rows) do
  print(string.format("%-14s %5d %9.2f %9d %10.1f %10.1f %8.2f %9.2f %8.0f", r.name, r.L, r.K_img, r.codes_used,
    r.bits, r.bits_set, r.bits_set / math.max(r.bits, 1e-9), r.psnr or 0 / 0, r.train_seconds or 0 / 0))
end

local measured = {}
for _, name in ipairs(ORDER) do
  local s = { name = FAMILIES[name].what .. " (measured)", L = {}, bits = {} }
  for _, r in ipairs(rows) do
    if r.name == name then
      s.L[#s.L + 1], s.bits[#s.bits + 1] = r.L, r.bits
    end
  end
  if #s.L > 0 then measured[#measured + 1] = s end
end
local threads = rows[1].threads or pivq.get_num_threads()
local notes = { string.format("%d steps x %d images per model", args.steps, args.batch),
  string.format("%d models, %.0f min of training", #rows, seconds / 60),
  string.format("(%d thread%s), Fashion-MNIST", threads, threads == 1 and "" or "s"),
  string.format("K_img on %d held-out images", n_test) }
local spec = capacity.measured_figure(args.K, measured, notes)
local png = args.out or (args.dir .. "/figure4.png")
local base = png:gsub("%.png$", "")
local ok, err = require("pivq.display.raster").save_plot(base .. ".png", spec)
if not ok then return fail(1, err) end
ok, err = plot.save(base .. ".svg", spec)
if not ok then return fail(1, err) end
local paper = capacity.row(capacity.PAPER.K, capacity.PAPER.L, capacity.PAPER.K_img)
pivq.files.write_or_fail("capacity", base .. ".json", json.encode({ K = args.K, steps = args.steps,
  batch = args.batch, test_images = n_test, quant_start = quant_start, train_minutes = seconds / 60,
  dataset = "fashion-mnist", rows = rows, paper = { K = capacity.PAPER.K, L = capacity.PAPER.L,
    K_img = capacity.PAPER.K_img, matching = paper.matching, nearest = paper.nearest, ratio = paper.ratio },
  command = "pivq capacity --measure " .. table.concat(arg, " ") }, { indent = true }) .. "\n")
print(string.format("figure: %s.png, %s.svg; data: %s.json", base, base, base))
return 0
