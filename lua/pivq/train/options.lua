-- pivq.train.options: the training options (`pivq train --help` is built from the list), their
-- defaults, and the checks and derived settings made from them before a run starts.
local M = {}

-- Every option, its default and its help line; `pivq train --help` is built from this table.
M.list = {
  { "dataset", "fashion-mnist", "fashion-mnist, or a folder of aligned images (PNG/JPEG)" },
  { "image_size", 0, "image side (0: the dataset's: 28 for Fashion-MNIST, 64 for folders)" },
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
  { "precision", "fp32", "fp32 | bf16 (matmuls, linear layers, convolutions in bf16, fp32 accumulation; "
    .. "fp32 with a warning where the CPU has no bf16)" },
  { "quantizer", "matching", "matching | nearest | positional" },
  { "readout", "learned", "learned | exchangeable (slots drawn from one shared distribution)" },
  { "L", 64, "codes per image" },
  { "K", 512, "codebook size" },
  { "c", 32, "code dimension" },
  { "patch", 7, "patch size (28 / 7: a 4 x 4 grid of patches)" },
  { "width", 128, "transformer width" },
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

-- The defaults overridden by the user's table; an unknown option raises at the caller of
-- pivq.train.Trainer.
function M.resolve(user)
  local opts = M.defaults()
  for k, v in pairs(user or {}) do
    if opts[k] == nil then error("Trainer: unknown option '" .. tostring(k) .. "'", 3) end
    opts[k] = v
  end
  return opts
end

-- The model's configuration (pivq.PIVQ) from the options and the dataset's image size and channels.
function M.model_config(opts, size, channels)
  return {
    image_size = size, channels = channels, patch = opts.patch, width = opts.width,
    enc_depth = opts.enc_depth, dec_depth = opts.dec_depth, heads = opts.heads, mlp_ratio = opts.mlp_ratio,
    L = opts.L, K = opts.K, c = opts.c, mode = opts.quantizer, readout = opts.readout,
    query_std = opts.query_std, beta = opts.beta, ema = opts.codebook ~= "loss", decay = opts.decay,
    cosine = opts.cosine, seed = opts.seed, dataset = opts.dataset,
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
