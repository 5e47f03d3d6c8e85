-- pivq.tiny: a small PI-VQ model on Fashion-MNIST that trains in seconds, for notebooks,
-- examples and quick looks. It is far too small for good images (expect blurry reconstructions,
-- about 15 dB PSNR); use `pivq train` for a real model.
--
--   local model, metrics = pivq.tiny.model()                 -- the preset below
--   local nearest = pivq.tiny.model{quantizer = "nearest"}   -- any pivq.train option overrides it
--
-- The checkpoint is kept in a cache folder named after the options and pivq's version, so a
-- second call with the same options (another notebook, a re-run cell) loads it instead of
-- training again. The folder is $PIVQ_CACHE_DIR, else $XDG_CACHE_HOME/pivq, else ~/.cache/pivq;
-- delete it to retrain. Training uses one thread (the preset's `threads = 1`, which sets pivq's
-- thread count for the whole process): on a shared, busy machine OpenMP's waiting threads can
-- slow such small operations many times over, and one thread gives the same model everywhere.
local bit = require "bit"
local train = require "pivq.train"
local PIVQ = require "pivq.models.pivq"

local M = {}

-- The preset: one transformer block each side, L = 16 codes of 16 dims from K = 128, 400 steps
-- of 32 images (about 10 s on one core), the quantizer switched on after 80 warm-up steps.
M.preset = {
  steps = 400, batch = 32, lr = 3e-3, warmup = 40, threads = 1,
  L = 16, K = 128, c = 16, width = 64, heads = 2, enc_depth = 1, dec_depth = 1,
  quant_start = 80, init_batches = 4, dead_after = 50, restart_every = 25,
  eval_images = 500, log_every = 100, grid_every = 1000000, ckpt_every = 1000000, quiet = true,
}

-- Options that do not change the model (where it goes, what it prints).
local NOT_IN_KEY = { out = true, quiet = true, resume = true }

-- The preset with the user's options on top (checked against pivq.train's option names). Errors
-- are raised at the caller of pivq.tiny.model, which calls this.
function M.options(user)
  if user ~= nil and type(user) ~= "table" then
    error("pivq.tiny.model: expected a table of pivq.train options, got " .. type(user), 3)
  end
  local known = train.defaults()
  local o = {}
  for k, v in pairs(M.preset) do o[k] = v end
  for k, v in pairs(user or {}) do
    if known[k] == nil then error("pivq.tiny.model: unknown option '" .. tostring(k) .. "'", 3) end
    o[k] = v
  end
  return o
end

-- A stable text of the options that shape the model, and a short name for it.
function M.key(opts)
  local d = train.defaults()
  local names = {}
  for k in pairs(d) do
    if not NOT_IN_KEY[k] then names[#names + 1] = k end
  end
  table.sort(names)
  local parts = { "pivq " .. require("pivq").version }
  for _, k in ipairs(names) do
    local v = opts[k]
    if v == nil then v = d[k] end
    parts[#parts + 1] = k .. "=" .. tostring(v)
  end
  local text = table.concat(parts, "\n")
  -- FNV-1a (32 bits) names the folder; the full text is stored beside the checkpoint and compared
  local h = 2166136261
  for i = 1, #text do
    local x = bit.bxor(h, text:byte(i)) % 4294967296
    h = ((x % 256) * 16777216 + x * 403) % 4294967296 -- x * 16777619 mod 2^32, exact in doubles
  end
  return text, string.format("tiny-%08x", h)
end

function M.cache_dir()
  local dir = os.getenv("PIVQ_CACHE_DIR")
  if dir and dir ~= "" then return dir end
  local xdg = os.getenv("XDG_CACHE_HOME")
  if xdg and xdg ~= "" then return xdg .. "/pivq" end
  local home = os.getenv("HOME")
  if home and home ~= "" then return home .. "/.cache/pivq" end
  return (os.getenv("TMPDIR") or "/tmp") .. "/pivq-cache"
end

local read_file = require("pivq.data.files").read_text

local function write_file(path, s)
  local files = require "pivq.data.files"
  local ok, err = files.write_text(path, s)
  if not ok then error("pivq.tiny: " .. err, 0) end
end

-- model(opts) -> the trained model (eval mode, model.path set), its metrics (test PSNR, SSIM,
-- codebook usage, K_img, ...), and whether it came from the cache. opts: pivq.train options
-- over the preset; opts.out, if given, is the folder to use instead of the cache.
function M.model(user)
  local opts = M.options(user)
  local key, name = M.key(opts)
  opts.out = opts.out or (M.cache_dir() .. "/" .. name)
  local json = require "dkjson"
  -- the same thread count whether trained or loaded, so what follows computes the same way
  if opts.threads > 0 then require("pivq").set_num_threads(opts.threads) end
  local ckpt = opts.out .. "/model.safetensors"
  if read_file(opts.out .. "/key.txt") == key then
    local model = PIVQ.load(ckpt)
    local metrics = json.decode(read_file(opts.out .. "/metrics.json") or "")
    if model and type(metrics) == "table" then return model, metrics, true end
  end
  local run = train.Trainer(opts)
  local metrics = run:fit()
  if not metrics then error("pivq.tiny.model: training stopped early", 2) end
  write_file(opts.out .. "/key.txt", key) -- last: a folder without it is never trusted
  local model, err = PIVQ.load(ckpt)
  if not model then error("pivq.tiny.model: " .. tostring(err), 2) end
  return model, metrics, false
end

return M
