-- pivq.train.options: the training options (`pivq train --help` is built from the list), their
-- defaults, and the checks and derived settings made from them before a run starts.
local M = {}

-- Every option, its default and its help line; `pivq train --help` is built from this table.
M.list = {
  { "dataset", "fashion-mnist", "fashion-mnist, or a folder of aligned images (PNG/JPEG)" },
  { "image_size", 0, "image side (0: the dataset's: 28 for Fashion-MNIST, 64 for folders)" },
  { "crop", -1, "centre crop in source pixels before resizing (-1: the layout's, 148 for CelebA; 0: none)" },
  { "background", "white", "background under transparent pixels: white | black" },
  { "split_file", "", "held-out split file (\"FILE 0|1|2\" lines; default: the layout's split)" },
  { "split_seed", 1, "seed of the random held-out split of a plain folder" },
  { "preset", "auto", "model preset: auto (by --image-size for a folder), none, face64, colour32, colour128" },
  { "out", "runs/default", "output folder (checkpoint, logs, images)" },
  { "resume", false, "continue from OUT/model.safetensors" },
  { "steps", 3000, "optimizer steps" },
  { "batch", 64, "images per step" },
  { "lr", 2e-3, "peak learning rate (AdamW)" },
  { "weight_decay", 0.01, "AdamW weight decay" },
  { "warmup", 200, "linear learning-rate warm-up steps (then cosine decay to lr/10)" },
  { "clip", 1.0, "global gradient-norm clip (0: off)" },
  { "seed", 1, "seed of everything (model init, data order, codebook init)" },
  { "threads", 0, "threads (0: all cores)" },
  { "precision", "fp32", "fp32 | bf16 (matmuls, linear layers, attention, convolutions in bf16, fp32 accumulation; "
    .. "fp32 with a warning where the CPU has no bf16)" },
  { "quantizer", "matching", "matching | nearest | positional" },
  { "readout", "learned", "learned | exchangeable (slots drawn from one shared distribution)" },
  { "L", 64, "codes per image" },
  { "K", 512, "codebook size" },
  { "c", 32, "code dimension" },
  { "patch", 7, "patch size (28 / 7: a 4 x 4 grid of patches)" },
  { "width", 128, "transformer width" },
  { "head", "linear", "decoder head: linear (per patch) | conv (upsampling convolutions, no patch grid)" },
  { "head_width", 64, "channels of the conv head's first stage" },
  { "enc_depth", 2, "encoder blocks" },
  { "dec_depth", 2, "decoder blocks" },
  { "heads", 4, "attention heads" },
  { "mlp_ratio", 2, "MLP hidden width / width" },
  { "query_std", 1.0, "init std of the learned readout tokens" },
  { "beta", 0.25, "commitment weight" },
  { "codebook", "ema", "ema | loss (how the codebook learns)" },
  { "decay", 0.99, "EMA decay of the codebook" },
  { "cosine", false, "l2-normalised latents and codes" },
  { "quant_start", 300, "steps with the quantizer bypassed before k-means++ initialisation" },
  { "init_batches", 16, "batches of encoder outputs gathered for the k-means++ initialisation" },
  { "dead_after", 200, "a code unused for this many steps is dead" },
  { "restart_every", 100, "how often dead codes are restarted (0: never)" },
  { "w_l1", 1.0, "weight of the L1 reconstruction loss" },
  { "w_l2", 1.0, "weight of the L2 (MSE) reconstruction loss" },
  { "w_lap", 0.0, "weight of the Laplacian-pyramid L1 (a weight-free perceptual substitute)" },
  { "w_adv", 0.0, "weight of the adversarial term (PatchGAN, hinge), times the adaptive weight (0: off)" },
  { "adv_start", 1000, "step at which the discriminator and the adversarial term start" },
  { "disc_width", 32, "discriminator base width" },
  { "disc_layers", 2, "discriminator stride-2 layers" },
  { "disc_lr", 0, "discriminator learning rate (Adam, betas 0.5/0.9; 0: --lr)" },
  { "log_every", 50, "steps between log lines / JSONL records" },
  { "grid_every", 500, "steps between reconstruction grids" },
  { "ckpt_every", 500, "steps between checkpoints" },
  { "eval_images", 2000, "test images for the final PSNR/SSIM and code statistics" },
  { "workers", 1, "data-loader threads" },
  { "max_minutes", 0, "stop (with a checkpoint) after this many minutes (0: no limit)" },
  { "stop_after", 0, "stop (with a checkpoint) after this step of the schedule (0: run to --steps)" },
  { "quiet", false, "no progress output" },
}

function M.defaults()
  local d = {}
  for _, o in ipairs(M.list) do d[o[1]] = o[2] end
  return d
end

local argcheck = require "pivq.core.argcheck"

local function flag(name) return (name:gsub("_", "-")) end

local NAMES = {}
for _, o in ipairs(M.list) do NAMES[#NAMES + 1] = o[1] end
M.names = NAMES

-- The options a resumed run may change (`pivq train --help` lists them): how long it runs and
-- what it prints and writes, not the model, the quantizer, the data or the optimisation.
-- --batch too: the loader's position is kept in images, so another batch (or number of ranks)
-- continues at the same place in the epoch; --precision: the weights stay fp32 either way.
M.may_change_on_resume = { "out", "resume", "steps", "batch", "threads", "workers", "precision", "log_every",
  "grid_every", "ckpt_every", "eval_images", "max_minutes", "stop_after", "quiet" }

-- The defaults overridden by the user's table; an unknown option raises at the caller of
-- pivq.train.Trainer, naming the closest option. Returns opts and the set of keys the user gave.
function M.resolve(user)
  user = argcheck.options("pivq.train.Trainer", user)
  argcheck.keys("pivq.train.Trainer", user, NAMES)
  local opts, given = M.defaults(), {}
  for k, v in pairs(user) do
    opts[k] = v
    given[k] = true
  end
  return opts, given
end

-- Values that cannot work, refused before anything is built, naming the option as `pivq train`
-- spells it (--lr).
function M.check(opts)
  local function bad(name, want, v)
    argcheck.fail(string.format("train: --%s must be %s, got %s", flag(name), want, tostring(v)))
  end
  local defaults = M.defaults()
  for _, o in ipairs(M.list) do
    local name, v = o[1], opts[o[1]]
    local want = type(defaults[name])
    if type(v) ~= want then bad(name, "a " .. want, type(v) == "string" and ("'" .. v .. "'") or v) end
    if want == "number" and not (v > -math.huge and v < math.huge) then bad(name, "a finite number", v) end
  end
  local function int(name, min)
    local v = opts[name]
    if v % 1 ~= 0 or v < min then bad(name, "an integer >= " .. min, v) end
  end
  for _, name in ipairs({ "steps", "batch", "L", "K", "c", "patch", "width", "enc_depth", "dec_depth", "heads",
    "init_batches", "log_every", "eval_images", "workers", "disc_width", "disc_layers" }) do
    int(name, 1)
  end
  for _, name in ipairs({ "image_size", "warmup", "seed", "threads", "quant_start", "dead_after", "restart_every",
    "adv_start", "grid_every", "ckpt_every", "stop_after" }) do
    int(name, 0)
  end
  if opts.lr <= 0 then bad("lr", "> 0", opts.lr) end
  if opts.disc_lr < 0 then bad("disc_lr", ">= 0", opts.disc_lr) end
  if opts.decay < 0 or opts.decay >= 1 then bad("decay", "in [0, 1)", opts.decay) end
  for _, name in ipairs({ "weight_decay", "clip", "beta", "w_l1", "w_l2", "w_lap", "w_adv", "max_minutes",
    "mlp_ratio", "query_std" }) do
    if opts[name] < 0 then bad(name, ">= 0", opts[name]) end
  end
  int("head_width", 1)
  int("split_seed", 0)
  if opts.crop % 1 ~= 0 or opts.crop < -1 then bad("crop", "an integer >= -1 (-1: the layout's)", opts.crop) end
  local choices = { quantizer = { "matching", "nearest", "positional" }, readout = { "learned", "exchangeable" },
    codebook = { "ema", "loss" }, head = { "linear", "conv" }, background = { "white", "black" } }
  for name, list in pairs(choices) do
    local ok = false
    for _, c in ipairs(list) do ok = ok or opts[name] == c end
    if not ok then bad(name, table.concat(list, " | "), "'" .. opts[name] .. "'") end
  end
  if opts.out == "" then bad("out", "a folder name", "''") end
  if opts.dataset == "fashion-mnist" and opts.image_size ~= 0 and opts.image_size ~= 28 then
    bad("image_size", "0 or 28 for fashion-mnist (its images are 28 x 28)", opts.image_size)
  end
  return opts
end

-- A preset (pivq.models.presets; "auto": by image size for a folder, none for Fashion-MNIST)
-- fills the options the user did not give (`given`, from resolve). Returns opts.
function M.apply_preset(opts, given)
  local presets = require "pivq.models.presets"
  local name = opts.preset
  if name == "auto" then
    name = opts.dataset ~= "fashion-mnist" and presets.name_for_size(opts.image_size > 0 and opts.image_size or 64)
      or nil
  elseif name == "none" then
    name = nil
  elseif not presets.list[name] then
    argcheck.fail("train: --preset must be auto, none, face64, colour32 or colour128, got '"
      .. tostring(name) .. "'")
  end
  if name then
    for k, v in pairs(presets.list[name]) do
      if not given[k] then opts[k] = v end
    end
    opts.preset = name
  end
  return opts
end

-- Resuming: the model, quantizer, data and optimisation options come from the checkpoint's
-- stored options (saved), those the user gave that contradict them are an error naming both
-- values. Returns opts with the stored values in place.
function M.merge_resumed(opts, given, saved, path)
  if type(saved) ~= "table" then
    argcheck.fail("train: cannot resume: " .. path .. " holds no training options")
  end
  argcheck.keys("train: the options stored in " .. path, saved, NAMES)
  local free = {}
  for _, k in ipairs(M.may_change_on_resume) do free[k] = true end
  for _, k in ipairs(NAMES) do
    if not free[k] and saved[k] ~= nil then
      if given[k] and opts[k] ~= saved[k] then
        argcheck.fail(string.format("train: --%s %s contradicts the checkpoint %s, trained with --%s %s "
          .. "(a resumed run keeps its model; options that may change: --%s)", flag(k), tostring(opts[k]),
          path, flag(k), tostring(saved[k]), flag(table.concat(M.may_change_on_resume, ", --"))))
      end
      opts[k] = saved[k]
    end
  end
  return opts
end

-- The model's configuration (pivq.PIVQ) from the options and the dataset's image size and channels.
function M.model_config(opts, size, channels, data)
  return {
    image_size = size, channels = channels, patch = opts.patch, width = opts.width, head = opts.head,
    head_width = opts.head_width,
    enc_depth = opts.enc_depth, dec_depth = opts.dec_depth, heads = opts.heads, mlp_ratio = opts.mlp_ratio,
    L = opts.L, K = opts.K, c = opts.c, mode = opts.quantizer, readout = opts.readout,
    query_std = opts.query_std, beta = opts.beta, ema = opts.codebook ~= "loss", decay = opts.decay,
    cosine = opts.cosine, seed = opts.seed, dataset = opts.dataset, data = data,
  }
end

-- A warning when OpenMP's idle threads would spin on a busy machine, or nil. libgomp's default
-- waiting spins for a long while between parallel regions; when other jobs keep the cores
-- busy those spinning threads take the time slices their partners need, and a step with 2
-- threads became 12x slower on this project's shared machine (2,263 vs 179 ms with
-- OMP_WAIT_POLICY=PASSIVE). The `pivq` host and a plain luajit's require "pivq" now choose a
-- short spin count before libgomp loads (pivq.omp_wait(), csrc/host/main.c), so this only fires
-- when libgomp's default is still in force (omp_wait "libgomp default ...", e.g. libgomp was
-- loaded before pivq) or the caller gives no omp_wait and no variable is set.
-- getenv(name), the /proc texts and omp_wait are arguments so that a spec can drive every case.
function M.spin_warning(threads, getenv, loadavg_text, cpuinfo_text, omp_wait)
  if omp_wait and not omp_wait:match("^libgomp default") then return nil end
  if threads < 2 or getenv("OMP_WAIT_POLICY") or getenv("GOMP_SPINCOUNT") then return nil end
  local load = tonumber((loadavg_text or ""):match("^(%S+)"))
  local _, cpus = (cpuinfo_text or ""):gsub("\nprocessor%s*:", "")
  if (cpuinfo_text or ""):match("^processor%s*:") then cpus = cpus + 1 end
  if not load or cpus < 1 or load <= cpus then return nil end
  return string.format("train: the machine is busy (load %.1f on %d cores) and OpenMP's idle threads spin "
    .. "while waiting: %d threads may run many times slower than 1. Set OMP_WAIT_POLICY=PASSIVE "
    .. "(or use --threads 1).", load, cpus, threads)
end

return M
