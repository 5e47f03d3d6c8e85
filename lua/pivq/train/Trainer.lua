-- pivq.train.Trainer: the training loop of the PI-VQ model, shared by `pivq train` and the specs.
--
--   local run = pivq.train.Trainer(opts)   -- opts as `pivq train --help` lists (underscored)
--   run:fit()                              -- trains, checkpoints, logs; returns the final metrics
--
-- What it does per step: a batch from the threaded loader, forward, loss = w_l1 * L1 + w_l2 *
-- L2 (+ w_lap * Laplacian-pyramid L1) + quantizer losses (+ the adversarial term,
-- pivq.train.Adversarial), backward, global-norm clipping, AdamW with linear warm-up then
-- cosine decay. Quantization is bypassed for the first `quant_start` steps (an autoencoder
-- warm-up); then the codebook is initialised by k-means++ on encoder outputs gathered over
-- `init_batches` batches (delayed initialisation). Codes idle for `dead_after` steps are
-- restarted from recent encoder outputs every `restart_every` steps.
--
-- The concerns around the loop live beside it: the options (pivq.train.options), the checkpoint
-- (pivq.train.checkpoint), the adversarial term (pivq.train.Adversarial) and the ranks
-- (self.dist: pivq.train.DataParallel under mpirun, pivq.train.SingleProcess otherwise; the
-- loop calls it the same way in both cases).
--
-- Outputs in opts.out: model.safetensors (the latest checkpoint: weights, optimizer, schedule,
-- RNG and loader positions, written atomically), log.jsonl (one object per logged step),
-- recon.png (test images over their reconstructions), curve.svg (the loss curves), metrics.json.
-- resume = true continues from out/model.safetensors; with the same seed and thread count the
-- losses equal those of an uninterrupted run.
local pivq_tensor = require "pivq.core.tensor"
local random = require "pivq.core.random"
local autograd = require "pivq.core.autograd"
local precision = require "pivq.core.precision"
local pivq_C = require("pivq.core.ffi").C
local function pivq_flop_count() return tonumber(pivq_C.pivq_flop_count()) end
local gc = require "pivq.core.gc"
local clock = require "pivq.core.clock"
local memory = require "pivq.core.memory"
local F = require "pivq.nn.F"
local optim = require "pivq.nn.optim"
local data = require "pivq.data.datasets"
local image = require "pivq.data.image"
local files = require "pivq.data.files"
local eval = require "pivq.eval.metrics"
local vq = require "pivq.quant.vq"
local plot = require "pivq.display.plot"
local PIVQ = require "pivq.models.pivq"
local options = require "pivq.train.options"
local checkpoint = require "pivq.train.checkpoint"
local Adversarial = require "pivq.train.Adversarial"
local DataParallel = require "pivq.train.DataParallel"
local SingleProcess = require "pivq.train.SingleProcess"
local argcheck = require "pivq.core.argcheck"
local json = require "dkjson"

local M = {}

-- ---- the run folder ----------------------------------------------------------------------------

local LOCK = ".pivq-lock" -- OUT/.pivq-lock: flock held by the run writing OUT, holding its PID

-- The run folder, made (no shell), refused inside the dataset folder (the run's images would
-- become training data), and checked free of another writer (at once, before data and model).
local function prepare_out(opts)
  local ok, err = files.mkdir_p(opts.out)
  if not ok then argcheck.fail("train: --out: " .. err) end
  if opts.dataset ~= "fashion-mnist" then
    local ds, out = files.realpath(opts.dataset), files.realpath(opts.out)
    if ds and out and (out == ds or out:sub(1, #ds + 1) == ds .. "/") then
      argcheck.fail(string.format("train: --out %s is inside the dataset folder %s: the run's images "
        .. "would become training data; choose a folder outside it", opts.out, opts.dataset))
    end
  end
  local lock, lerr, holder = files.lock(opts.out .. "/" .. LOCK)
  if not lock then
    if holder and holder > 0 then
      argcheck.fail(string.format("train: %s is in use by another run (PID %d); one run writes a folder at "
        .. "a time: wait for it, stop it, or choose another --out", opts.out, holder))
    end
    argcheck.fail("train: " .. lerr)
  end
  lock:release()
end

-- ---- data ------------------------------------------------------------------------------------

-- The run's dataset description (pivq.data.layouts: the layout, split, crop, background and
-- attributes, stored in the checkpoint) and its train and held-out splits.
local function load_data(opts)
  local layouts = require "pivq.data.layouts"
  local desc, err
  if opts.dataset == "fashion-mnist" then
    desc = layouts.describe("fashion-mnist")
  else
    desc, err = layouts.describe(opts.dataset, { image_size = opts.image_size > 0 and opts.image_size or 64,
      crop = opts.crop >= 0 and opts.crop or nil, background = opts.background,
      split_file = opts.split_file ~= "" and opts.split_file or nil, seed = opts.split_seed })
    if not desc then return nil, err end
  end
  local train, test
  train, err = layouts.open(desc, "train")
  if not train then return nil, err end
  test, err = layouts.open(desc, "test")
  if not test then return nil, err end
  return train, test, desc.image_size, desc.channels, desc
end

local function float_images(t)
  if t:dtype() == "uint8" then return t:float() / 255 end
  return t
end

-- ---- losses ----------------------------------------------------------------------------------

-- L1 between Laplacian pyramids (3 levels): penalises errors per frequency band, a cheap,
-- weight-free stand-in for a perceptual loss.
local function laplacian_l1(x, y)
  local total
  for _ = 1, 3 do
    if x:size(3) < 4 then break end
    local xd, yd = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    local xu = F.interpolate(xd, { size = { x:size(3), x:size(4) }, mode = "bilinear" })
    local yu = F.interpolate(yd, { size = { y:size(3), y:size(4) }, mode = "bilinear" })
    local band = F.l1_loss(x - xu, y - yu)
    total = total and total + band or band
    x, y = xd, yd
  end
  return total
end

-- ---- the trainer -------------------------------------------------------------------------------

local Trainer = {}
Trainer.__index = Trainer

-- A time-capped run (max_minutes > 0) must not end unquantized on a slow or busy machine: the
-- quantizer starts at step quant_start or once QUANT_BY_SHARE of the time budget has passed,
-- whichever comes first, and the time limit is honoured only after the quantizer has run for
-- QUANT_MIN_STEPS steps and QUANT_MIN_SHARE of this session's steps (so a very slow machine may
-- overrun the budget by that share rather than write an unquantized model).
local QUANT_BY_SHARE, QUANT_MIN_STEPS, QUANT_MIN_SHARE = 0.3, 10, 0.2
M.QUANT_BY_SHARE = QUANT_BY_SHARE

-- a path as one shell word, for the commands printed to the user (never run here)
local function shell_word(s)
  if s:match("^[%w_%-%./=+,:@]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

function M.new(user)
  local opts, given = options.resolve(user)
  options.apply_preset(opts, given)
  if opts.resume then
    -- the model it resumes: model, quantizer, data and optimisation options from the checkpoint
    local path = opts.out .. "/model.safetensors"
    local saved, err = checkpoint.stored_options(path)
    if not saved then argcheck.fail("train: cannot resume: " .. tostring(err)) end
    options.merge_resumed(opts, given, saved, path)
  end
  options.check(opts)
  -- data-parallel when mpirun started us (see pivq.dist and README "Distributed training"), one
  -- process otherwise: the loop calls self.dist alike at the points where ranks communicate
  local dp = DataParallel.launch({ name = "train" }) or SingleProcess.new()
  local pivq_ = require("pivq")
  if opts.threads > 0 then pivq_.set_num_threads(opts.threads)
  elseif dp.size > 1 then pivq_.set_num_threads(dp:threads(pivq_.get_num_threads())) end
  if not dp.is_root then opts.quiet = true end -- rank 0 alone prints
  local warning = options.spin_warning(pivq_.get_num_threads(), os.getenv, files.read_text("/proc/loadavg"),
    files.read_text("/proc/cpuinfo"), pivq_.omp_wait())
  if warning and not opts.quiet then io.stderr:write(warning, "\n") end
  if dp.is_root then prepare_out(opts) end
  local self = setmetatable({ opts = opts, dist = dp }, Trainer)
  -- "fp32" where bf16 is missing (one warning); an unknown value is an error here, before any work
  self.precision = precision.resolve(opts.precision, "train")
  local train, test, size, channels, desc = load_data(opts)
  if not train then error("train: " .. tostring(test), 2) end
  if train.images:size(1) < opts.batch * dp.size then
    argcheck.fail(string.format("train: the training split holds %d images, fewer than --batch %d%s",
      train.images:size(1), opts.batch, dp.size > 1 and string.format(" x %d ranks", dp.size) or ""))
  end
  self.train_set, self.test_set, self.data = train, test, desc
  random.manual_seed(opts.seed)
  self.model = PIVQ(options.model_config(opts, size, channels, desc))
  self.model.quantizer.bypassed = opts.quant_start > 0
  self.opt = optim.AdamW(self.model:parameters(), { lr = opts.lr, weight_decay = opts.weight_decay })
  self.sched = optim.schedules.cosine(self.opt, opts.steps, { warmup = opts.warmup, min_lr = opts.lr / 10 })
  dp:attach(self.model) -- data-parallel: rank 0's initial weights; statistics reduced over the ranks
  -- the global batch (each rank keeps its slice of it, Trainer:next_batch)
  self.loader = data.loader(train, { batch = opts.batch * dp.size, shuffle = true, seed = opts.seed,
    drop_last = true, workers = opts.workers })
  self.step, self.epoch, self.pos = 0, 1, 0
  self.data_gen = random.Generator(opts.seed + 7919) -- restarts and k-means, apart from the model's
  self.adv = Adversarial.new(opts, channels, dp) -- nil without the adversarial term
  self.disc = self.adv and self.adv.disc -- the discriminator (for the specs and scripts)
  return self
end


-- ---- checkpoints (pivq.train.checkpoint) -------------------------------------------------------

function Trainer:checkpoint_path() return checkpoint.path(self) end

-- true, or nil and "train: cannot write checkpoint PATH: reason"; the previous checkpoint is
-- then untouched (pivq.save replaces it atomically) and no temporary file remains.
function Trainer:save_checkpoint() return checkpoint.save(self) end

function Trainer:load_checkpoint() return checkpoint.load(self) end

-- ---- one step ------------------------------------------------------------------------------------

-- The next batch, continuing the current epoch at self.pos (so a resumed run sees the same data).
function Trainer:next_batch()
  if not self.iter then
    self.iter = self.loader:iter(self.epoch)
    for _ = 1, self.pos do self.iter() end
  end
  local b = self.iter()
  if not b then
    self.epoch, self.pos = self.epoch + 1, 0
    self.iter = self.loader:iter(self.epoch)
    b = self.iter()
  end
  self.pos = self.pos + 1
  return self.dist:shard(b.images)
end

-- The loss terms of one batch -> terms (terms.total: the loss), stats, idx, reconstructions, and
-- (when the adversarial term is on) the surrogate to call backward on instead of terms.total.
function Trainer:losses(x)
  local o = self.opts
  local y, idx, qloss, stats, _, features = self.model(x)
  local adversarial = self.adv ~= nil and self.adv:active(self.step)
  -- With the adversarial term on, the reconstruction losses see a detached copy of y: their
  -- gradient at y is then compared with the adversarial one (the adaptive weight) before one
  -- backward pass through the model carries both.
  local yr = adversarial and y:detach():requires_grad(true) or y
  local terms = { l1 = F.l1_loss(yr, x), l2 = F.mse_loss(yr, x) }
  local total = terms.l1 * o.w_l1 + terms.l2 * o.w_l2
  if o.w_lap > 0 then
    terms.lap = laplacian_l1(yr, x)
    total = total + terms.lap * o.w_lap
  end
  local quant
  if not self.model.quantizer.bypassed then
    terms.commit = qloss.commitment
    if self.model.quantizer.ema == false then terms.codebook = qloss.codebook end
    quant = qloss.total
  end
  local surrogate
  if adversarial then
    surrogate = self.adv:surrogate(self.model, terms, total, y, yr, features)
    total = total:detach() + terms.gan:detach() * terms.adv_weight
  end
  if quant then
    total = total + (adversarial and quant:detach() or quant)
    if surrogate then surrogate = surrogate + quant end
  end
  terms.total = total
  return terms, stats, idx, y, surrogate
end

-- Delayed initialisation: k-means++ on encoder outputs of `init_batches` batches.
function Trainer:init_codebook()
  local latents = {}
  autograd.no_grad(function()
    for _ = 1, self.opts.init_batches do
      local x = self:next_batch()
      latents[#latents + 1] = self.model:latents(x):reshape(-1, self.opts.c)
    end
  end)
  local kmeans = { generator = self.data_gen, iters = 10 }
  return self.dist:init_codebook(self.model.quantizer, latents, kmeans)
end


-- ---- evaluation ---------------------------------------------------------------------------------

function Trainer:evaluate(n)
  local model = self.model
  local was = model.training
  model:train(false)
  local imgs = self.test_set.images
  n = math.min(n or self.opts.eval_images, imgs:size(1))
  local psnr_sum, ssim_sum, mse_sum, codes = 0, 0, 0, {}
  autograd.no_grad(function()
    for s = 1, n, 200 do
      local m = math.min(200, n - s + 1)
      local x = float_images(imgs:narrow(1, s, m))
      local y, idx = model(x)
      psnr_sum = psnr_sum + eval.psnr(y, x) * m
      if x:size(3) >= 11 then ssim_sum = ssim_sum + eval.ssim(y, x) * m end
      mse_sum = mse_sum + eval.mse(y, x):sum():item()
      if idx then codes[#codes + 1] = idx end
    end
  end)
  model:train(was)
  -- quantized = false: the quantizer never started (an autoencoder: no codes, no usage)
  local out = { psnr = psnr_sum / n, ssim = ssim_sum / n, mse = mse_sum / n, images = n,
    quantized = not model.quantizer.bypassed }
  if #codes > 0 then
    local all = pivq_tensor.cat(codes, 1)
    local st = vq.code_stats(all, self.opts.K)
    out.usage, out.perplexity, out.K_img, out.code_entropy = st.usage, st.perplexity, st.K_img, st.entropy_bits
  end
  return out
end

function Trainer:write_grid(path)
  local x = float_images(self.test_set.images:narrow(1, 1, math.min(8, self.test_set.images:size(1))))
  local y = autograd.no_grad(function()
    local was = self.model.training
    self.model:train(false)
    local r = self.model(x)
    self.model:train(was)
    return r
  end)
  local g = image.grid(pivq_tensor.cat({ x, y:clamp(0, 1) }, 1), { nrow = 8, padding = 2, scale = 4 })
  return image.save(path, g)
end

-- ---- progress ------------------------------------------------------------------------------------

local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  return string.format("%d:%02d", math.floor(s / 60), s % 60)
end

function Trainer:report(rec, tty)
  if self.opts.quiet then return end
  local parts = {}
  for _, k in ipairs({ "total", "l1", "l2", "lap", "commit", "codebook" }) do
    if rec[k] then parts[#parts + 1] = string.format("%s %.4f", k, rec[k]) end
  end
  local codes = rec.K_img and string.format(" | usage %.0f%% K_img %.1f", 100 * rec.usage, rec.K_img) or
    " | quantizer bypassed"
  if rec.code_entropy then
    codes = codes .. string.format(" H %.2f/%.2f bits", rec.code_entropy, rec.code_entropy_max)
  end
  if rec.match_differ then codes = codes .. string.format(" differ %.1f%%", 100 * rec.match_differ) end
  local line = string.format("step %d/%d ep %d | %s%s | %.0f img/s | ETA %s", rec.step, self.opts.steps,
    rec.epoch, table.concat(parts, " "), codes, rec.img_per_s, fmt_time(rec.eta))
  if tty then
    local width = 40
    local done = math.floor(width * rec.step / self.opts.steps)
    io.write("\r\27[K[", string.rep("#", done), string.rep(".", width - done), "] ", line)
    io.flush()
  else
    print(line)
  end
end

-- ---- set diagnostics (notebooks/METHOD.md, "Set diagnostics") ---------------------------------------

-- After each quantized step: the step's per-code counts (every rank's) added to the epoch's, and
-- the share of latents matching did not give their nearest code added to the interval's. When
-- the loader has moved to a new epoch, the finished epoch's entropy is kept for the next record.
function Trainer:count_codes(stats)
  local q = self.model.quantizer
  if q.bypassed or not q.last_counts then return end
  local d = self.diag
  if not d or d.epoch ~= self.epoch then
    if d and d.images > 0 then
      self.finished_epoch = { epoch = d.epoch, bits = vq.count_stats(pivq_tensor.tensor(d.counts)).entropy_bits,
        images = d.images }
    end
    local counts = {}
    for k = 1, q.K do counts[k] = 0 end
    d = { epoch = self.epoch, counts = counts, images = 0, differ = d and d.differ or 0, steps = d and d.steps or 0 }
    self.diag = d
  end
  local c = q.last_counts:contiguous()
  local p, n = c:data_ptr(), 0
  for k = 1, q.K do
    local v = tonumber(p[k - 1])
    d.counts[k] = d.counts[k] + v
    n = n + v
  end
  d.images = d.images + n / self.opts.L
  if stats and stats.match_differ then d.differ, d.steps = d.differ + stats.match_differ, d.steps + 1 end
end

-- The record's diagnostics: code_entropy (bits, over the codes of the epoch so far: unlike a
-- batch's perplexity it does not depend on the batch size), its maximum log2 K and the images it
-- covers; epoch_code_entropy once an epoch has finished. Resets the interval's match_differ.
function Trainer:set_diagnostics(rec)
  local d = self.diag
  if not d then return end
  if d.images > 0 then
    rec.code_entropy = vq.count_stats(pivq_tensor.tensor(d.counts)).entropy_bits
    rec.code_entropy_max = math.log(self.opts.K) / math.log(2)
    rec.code_entropy_images = d.images
  end
  if self.finished_epoch then
    rec.epoch_code_entropy, rec.epoch_code_entropy_epoch = self.finished_epoch.bits, self.finished_epoch.epoch
  end
  d.differ, d.steps = 0, 0
end

-- ---- the loop --------------------------------------------------------------------------------------

function Trainer:fit()
  -- one writer per run folder: rank 0 holds OUT/.pivq-lock for the run's life (the kernel drops
  -- it if the process is killed, so a stale lock never blocks)
  if self.dist.is_root then
    local lock, err, holder = files.lock(self.opts.out .. "/" .. LOCK)
    if not lock then
      error(string.format("train: %s is in use by another run%s: %s", self.opts.out,
        holder and holder > 0 and string.format(" (PID %d)", holder) or "", err), 2)
    end
    self.lock = lock
  end
  -- data-parallel: an error on one rank stops every rank at once (MPI_Abort) instead of leaving
  -- the others waiting in a collective
  -- --precision: the whole run (forward, backward, evaluation) under it; master weights,
  -- optimizer state and checkpoints stay fp32 (pivq.autocast)
  local ok, a, b = pcall(precision.autocast, self.precision, self.dist.guard, self.dist, self.fit_loop, self)
  if self.lock then
    self.lock:release()
    self.lock = nil
  end
  if not ok then error(a, 0) end
  return a, b
end

function Trainer:fit_loop()
  local o = self.opts
  local root = self.dist.is_root -- rank 0 alone logs and writes files
  if o.resume then
    local ok, err = self:load_checkpoint()
    if not ok then error("train: cannot resume: " .. tostring(err), 2) end
    if not o.quiet then print(string.format("resumed at step %d (epoch %d)", self.step, self.epoch)) end
  end
  local host_ok, host = pcall(require, "pivq.host")
  -- poll Ctrl-C between steps; then give back the caller's mode (the REPL's or a notebook's "raise")
  local previous_mode = host_ok and host.set_interrupt_mode("flag")
  local tty = host_ok and host.isatty(1) and not o.quiet
  local log = { write = function() end, flush = function() end, close = function() end }
  if root then
    local path = o.out .. "/log.jsonl"
    local f, err = io.open(path, o.resume and "a" or "w")
    if not f then error("train: cannot open " .. tostring(err), 2) end
    -- every record checked: a full disk stops the run with the file's name and the reason
    log = {
      write = function(_, ...)
        local ok, werr = f:write(...)
        if not ok then error(string.format("train: cannot write %s: %s", path, tostring(werr)), 0) end
      end,
      flush = function()
        local ok, ferr = f:flush()
        if not ok then error(string.format("train: cannot write %s: %s", path, tostring(ferr)), 0) end
      end,
      close = function() f:close() end,
    }
  end
  local t_start, t_last, imgs_since = clock(), clock(), 0
  local history = self.history or {}
  self.history = history
  local stopped
  -- model FLOP utilisation over the steps (data loading, logging and checkpoints excluded)
  local speed = { seconds = 0, flops = 0, images = 0 }
  self.speed = speed
  self.model:train(true)
  while self.step < o.steps do
    if self.model.quantizer.bypassed and (self.step >= o.quant_start
      or (o.max_minutes > 0 and clock() - t_start >= QUANT_BY_SHARE * o.max_minutes * 60)) then
      local n = self:init_codebook()
      -- the gathered latents and k-means buffers, freed before the step instead of during it
      gc.collect_between_steps()
      if not o.quiet then print(string.format("%sstep %d: codebook initialised by k-means++ on %d latents",
        tty and "\n" or "", self.step, n)) end
    end
    local x = self:next_batch()
    local step_t0, step_f0 = clock(), pivq_flop_count()
    local terms, stats, _, y, surrogate = self:losses(x)
    self:count_codes(stats)
    local total = terms.total:item()
    total = self.dist:mean_numbers({ total = total }).total -- the global batch's
    if total ~= total or total == math.huge or total == -math.huge then
      log:close()
      if host_ok then host.set_interrupt_mode(previous_mode or "default") end
      local kept = io.open(self:checkpoint_path(), "rb")
      if kept then kept:close() end
      error(string.format("train: the loss became %s at step %d; stopping %s. Lower --lr or raise --clip.",
        tostring(total), self.step + 1, kept and ("without overwriting the last good checkpoint ("
          .. self:checkpoint_path() .. ")") or "(no checkpoint was written yet)"), 2)
    end
    local backward_from = surrogate or terms.total
    backward_from:backward()
    self.dist:average_gradients(self.model:parameters())
    if o.clip > 0 then optim.clip_grad_norm(self.model:parameters(), o.clip) end
    self.opt:step()
    self.opt:zero_grad()
    speed.seconds, speed.flops = speed.seconds + clock() - step_t0, speed.flops + pivq_flop_count() - step_f0
    speed.images = speed.images + x:size(1)
    if surrogate then terms.disc = self.adv:disc_step(x, y) end
    self.sched:step()
    self.step = self.step + 1
    imgs_since = imgs_since + x:size(1)
    local q = self.model.quantizer
    if not q.bypassed and o.restart_every > 0 and self.step % o.restart_every == 0 then
      self.dist:restart_dead(q, o.dead_after, { generator = self.data_gen })
    end
    if self.step % o.log_every == 0 or self.step == o.steps then
      local now = clock()
      local rec = { step = self.step, epoch = self.epoch, lr = self.opt.lr, elapsed = now - t_start,
        img_per_s = imgs_since / (now - t_last) }
      rec.rss_mb = memory.rss_mb() -- resident memory, for recipes/bench/rss.sh
      local values = {}
      for k, v in pairs(terms) do values[k] = type(v) == "number" and v or v:item() end
      local differ = self.diag and self.diag.steps > 0 and self.diag.differ / self.diag.steps or nil
      values.match_differ = differ -- the steps' mean since the last record, over the ranks
      values = self.dist:mean_numbers(values) -- the global batch's losses
      for k, v in pairs(values) do rec[k] = v end
      if stats and stats.K_img then
        rec.usage, rec.perplexity, rec.K_img = stats.usage, stats.perplexity, stats.K_img
      end
      self:set_diagnostics(rec)
      rec.eta = (o.steps - self.step) * (now - t_start) / math.max(1, self.step - (self.start_step or 0))
      if o.max_minutes > 0 then rec.eta = math.max(0, math.min(rec.eta, o.max_minutes * 60 - (now - t_start))) end
      log:write(json.encode(rec), "\n")
      log:flush()
      history[#history + 1] = rec
      self:report(rec, tty)
      t_last, imgs_since = now, 0
    end
    local grid, ckpt = root and self.step % o.grid_every == 0, root and self.step % o.ckpt_every == 0
    if grid then self:write_output(o.out .. "/recon.png", self.write_grid) end
    if ckpt then assert(self:save_checkpoint()) end
    -- their garbage (16 MB at the default model's checkpoints), freed before the next step
    -- instead of living through it: that step's peak was the heap's high-water mark (+8 MB RSS)
    if grid or ckpt then gc.collect_between_steps() end
    local interrupted = host_ok and host.interrupted()
    if not q.bypassed then self.quantized_steps = (self.quantized_steps or 0) + 1 end
    -- the time limit waits until the quantizer has had its share (see QUANT_BY_SHARE)
    local late = o.max_minutes > 0 and clock() - t_start > o.max_minutes * 60
      and (self.quantized_steps or 0) >= math.max(QUANT_MIN_STEPS,
        QUANT_MIN_SHARE * (self.step - (self.start_step or 0)))
    interrupted, late = self.dist:any(interrupted, late) -- every rank stops alike
    if interrupted then
      stopped = "interrupted"
      break
    end
    if o.stop_after > 0 and self.step >= o.stop_after and self.step < o.steps then
      stopped = "stopped"
      break
    end
    if late then
      stopped = "time limit"
      break
    end
  end
  if tty then io.write("\n") end
  log:close()
  if host_ok then host.set_interrupt_mode(previous_mode or "default") end
  if root then assert(self:save_checkpoint()) end
  if stopped then
    -- printed under --quiet too: a run that ended early says so (rank 0 alone), with the
    -- command that continues it
    if root then
      print(string.format("%s at step %d: checkpoint saved to %s%s; continue with: %s", stopped, self.step,
        self:checkpoint_path(), self.model.quantizer.bypassed and " (not yet quantized)" or "",
        self.resume_hint or ("pivq train --out " .. shell_word(o.out) .. " --resume")))
    end
    return nil, stopped
  end
  if not root then return nil, "finished (rank 0 evaluates)" end
  self:write_output(o.out .. "/recon.png", self.write_grid)
  local metrics = self:evaluate()
  metrics.step, metrics.quantizer, metrics.L, metrics.K = self.step, o.quantizer, o.L, o.K
  if not metrics.quantized and not o.quiet then
    io.stderr:write(string.format("train: warning: the run ended at step %d, before the quantizer started "
      .. "(--quant-start %d): the model is an unquantized autoencoder, without codes\n", self.step, o.quant_start))
  end
  metrics.train_seconds = clock() - t_start
  for k, v in pairs(self:speed_report()) do metrics[k] = v end
  local ok, err = files.write_text(o.out .. "/metrics.json", json.encode(metrics, { indent = true }) .. "\n")
  if not ok then error("train: " .. err, 0) end
  self:write_output(o.out .. "/curve.svg", self.write_curve)
  return metrics
end

-- An output file written by writer(self, path) (true, or nil, err): a failure stops the run with
-- the file's name and the reason (the previous file stays whole: the writers are atomic).
function Trainer:write_output(path, writer)
  local ok, err = writer(self, path)
  if not ok then error(string.format("train: cannot write %s: %s", path, tostring(err)), 0) end
end

-- The training speed and its model FLOP utilisation: images/s and GFLOP/s over the steps, the
-- FLOPs per image of the products (forward and backward, counted from the layers' shapes:
-- pivq_flop_count), and their share of the machine's peak for the precision in use, measured now
-- on as many threads (pivq_peak_gflops, 0.3 s; on a busy machine both figures shrink alike).
function Trainer:speed_report()
  local s = self.speed
  if not s or s.seconds <= 0 or s.images == 0 then return {} end
  local threads = require("pivq").get_num_threads()
  local peak = pivq_C.pivq_peak_gflops(self.precision == "bf16" and 1 or 0, threads, 0.3)
  local gflops = s.flops / s.seconds / 1e9
  return { img_per_s = s.images / s.seconds, gflops = gflops, mflop_per_image = s.flops / s.images / 1e6,
    peak_gflops = peak > 0 and peak or nil, mfu = peak > 0 and gflops / peak or nil, precision = self.precision,
    threads = threads }
end

function Trainer:write_curve(path)
  local f, err = io.open(self.opts.out .. "/log.jsonl")
  if not f then return nil, err end
  local xs, series = {}, { total = {}, l1 = {}, l2 = {}, commit = {} }
  for line in f:lines() do
    local r = json.decode(line)
    if type(r) == "table" and r.step then
      xs[#xs + 1] = r.step
      for k, s in pairs(series) do s[#xs] = r[k] or 0 / 0 end
    end
  end
  f:close()
  local list = {}
  for _, k in ipairs({ "total", "l1", "l2", "commit" }) do list[#list + 1] = { name = k, x = xs, y = series[k] } end
  return plot.save(path, { title = "training losses", xlabel = "step", ylabel = "loss", series = list, ymin = 0 })
end


M.laplacian_l1 = laplacian_l1
return M
