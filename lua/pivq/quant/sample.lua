-- pivq.sample: interpolation-based sampling (the paper's single-forward-pass generation), as a
-- registry of strategies like pivq.interp.
--
-- A strategy is fn(bank, n, opts) -> an n x L int64 tensor of codes (1-based, in 1..bank.K; for a
-- matching model, whose bank.multiset is false, no code twice in a row). bank is a pivq.bank
-- Bank (bank.codes, bank.K, bank.multiset, bank.labels, bank:size(), bank:codes_of(i),
-- bank:random_parents(n, k, g)); opts holds seed (number), generator (a pivq.Generator seeded
-- from seed: draw from it for reproducible samples), parents (number or nil), model (the
-- pivq.PIVQ, or nil), codebook (K x c float32 tensor, or nil) and whatever else the caller passed.
-- recipes/README.md, "Strategy files", documents each field; `pivq new-strategy NAME` writes a
-- commented template. pivq.sample.codes checks what a strategy returns (shape, range, no repeats
-- in a set) and names the strategy in every error; an error or os.exit inside a strategy makes
-- the command fail. A strategy file is code (it runs with your rights, like a recipe);
-- checkpoints are data and never execute.
--
-- Built-ins:
--   pair      two random training images as parents, a random point on a random path
--   mix       m parents (opts.parents, default 3); L codes drawn from their union without repetition
--   marginal  no parents: codes drawn from the training set's code frequencies (the baseline)
--   uniform   no parents: codes drawn uniformly from 1..K (the positional baseline's random codes)
--   slot_marginal  no parents: slot i's code drawn from the frequencies of slot i (for positional
--             models, whose bank keeps codes in slot order; the strongest prior-free baseline)
local CodeSet = require "pivq.quant.CodeSet"
local random = require "pivq.core.random"
local tensor = require "pivq.core.tensor"

local M = {}
local strategies = require("pivq.quant.Registry").new("sample")
local argcheck = require "pivq.core.argcheck"

-- register(name, fn, doc [, {replace = true}]): a taken name (a built-in too) needs replace
function M.register(name, fn, doc, opts) strategies:register(name, fn, doc, opts) end
function M.list() return strategies:list() end
-- Load a user's strategy file (it registers itself). Returns the names it added, or nil, err.
function M.load_file(path) return strategies:load_file(path) end

-- the codes a strategy returned, checked as interpolation paths are: an n x L tensor of
-- integers in 1..K, and for a set no code twice in a row. Returns them as int64.
local function check_codes(name, codes, n, L, bank)
  local what = string.format("sample '%s'", name)
  if not tensor.is_tensor(codes) or codes:dim() ~= 2 or codes:size(1) ~= n or codes:size(2) ~= L then
    error(string.format("%s: the strategy must return a %d x %d tensor of codes, got %s", what, n, L,
      tensor.is_tensor(codes) and argcheck.shape_string(codes) or type(codes)), 3)
  end
  if codes:dtype() ~= "int64" then
    if codes:dtype() == "float32" and codes:ne(codes:floor()):sum():item() > 0 then
      error(string.format("%s: codes must be integers, got non-integral %s values", what, codes:dtype()), 3)
    end
    codes = codes:long()
  end
  codes = codes:contiguous()
  local p = codes:data_ptr()
  for r = 0, n - 1 do
    local seen = {}
    for j = 0, L - 1 do
      local k = tonumber(p[r * L + j])
      if k < 1 or k > bank.K then
        error(string.format("%s: codes must lie in 1..%d (1-based), got %d in row %d", what, bank.K, k, r + 1), 3)
      end
      if seen[k] and not bank.multiset then
        error(string.format("%s: row %d repeats code %d, but a matching model's codes are a set (distinct)",
          what, r + 1, k), 3)
      end
      seen[k] = true
    end
  end
  return codes
end

-- pivq.sample.codes(name, bank, n, opts): n x L codes from a registered strategy.
function M.codes(name, bank, n, opts)
  bank = require("pivq.quant.bank").wrap(bank, "sample")
  -- at most as many codes as a tensor may hold (beyond, the strategies would loop for ages)
  if type(n) ~= "number" or n % 1 ~= 0 or n < 1 or n * bank.codes:size(2) > 2 ^ 36 then
    error("sample.codes: n must be a positive integer (n x L at most 2^36), got " .. tostring(n), 2)
  end
  opts = argcheck.options("sample.codes", opts)
  if opts.seed ~= nil then argcheck.u53("sample.codes", "seed", opts.seed) end
  argcheck.generator("sample.codes", opts)
  -- the strategy's own copy, with a generator always there (seeded from seed)
  local sopts = {}
  for k, v in pairs(opts) do sopts[k] = v end
  sopts.seed = opts.seed or 0
  sopts.generator = opts.generator or random.Generator(sopts.seed)
  local codes = strategies:call(name, bank, n, sopts)
  return check_codes(name, codes, n, bank.codes:size(2), bank)
end

-- pivq.sample.draw(model, name, bank, n, opts): codes, then images decoded in one forward pass.
function M.draw(model, name, bank, n, opts)
  if type(model) ~= "table" or type(model.decode) ~= "function" then
    error("sample.draw: model must be a model with a decode method, got " .. type(model), 2)
  end
  local codes = M.codes(name, bank, n, opts)
  return model:decode(codes), codes
end

local function generator(opts) return opts.generator or random.Generator(opts.seed or 0) end

-- uniform integer in 1..n from a generator
local function pick(g, n) return random.randint(1, n + 1, { 1 }, { generator = g })[1] end

local function parent(bank, i)
  return CodeSet.new(bank.codes:select(1, i):totable(), { K = bank.K, multiset = bank.multiset })
end

M.register("pair", function(bank, n, opts)
  local g = generator(opts)
  local interp = require "pivq.quant.interp"
  local N, rows = bank.codes:size(1), {}
  for s = 1, n do
    local a, b = pick(g, N), pick(g, N)
    local path = interp.path(opts.path_strategy or "random", parent(bank, a), parent(bank, b),
      { seed = tonumber(g.cdata.offset) + s, model = opts.model, codebook = opts.codebook })
    rows[s] = path[pick(g, #path)]:totable()
  end
  return tensor.tensor(rows, "int64")
end, "two random training images as parents, a random point on a random path between them")

M.register("mix", function(bank, n, opts)
  local g = generator(opts)
  local m = opts.parents or 3
  local N, L, rows = bank.codes:size(1), bank.codes:size(2), {}
  for s = 1, n do
    -- pool: the union of the parents' codes (with multiplicities for multisets)
    local pool = CodeSet.new({}, { K = bank.K, multiset = bank.multiset })
    for _ = 1, m do pool = pool:union(parent(bank, pick(g, N))) end
    local items = pool:totable()
    local perm = random.randperm(#items, { generator = g })
    local row = {}
    for i = 1, L do row[i] = items[perm[i]] end
    table.sort(row)
    rows[s] = row
  end
  return tensor.tensor(rows, "int64")
end, "m parents (opts.parents, default 3): L codes drawn without repetition from their union")

-- each row of an n x L code tensor sorted (a set or multiset has no order to keep)
local function sorted_rows(codes)
  local rows = {}
  for i = 1, codes:size(1) do
    local row = codes:select(1, i):totable()
    table.sort(row)
    rows[i] = row
  end
  return tensor.tensor(rows, "int64")
end

M.register("marginal", function(bank, n, opts)
  local g = generator(opts)
  local L = bank.codes:size(2)
  local counts = require("pivq.quant.vq").code_counts(bank.codes, bank.K):float()
  local probs = counts:view(1, -1):expand(n, bank.K):contiguous()
  -- sets draw without replacement (distinct codes); multisets with
  return sorted_rows(random.multinomial(probs, L, bank.multiset, { generator = g }))
end, "codes drawn from the training set's code frequencies, no parents (the baseline)")

M.register("uniform", function(bank, n, opts)
  local L = bank.codes:size(2)
  local probs = tensor.ones(n, bank.K)
  local codes = random.multinomial(probs, L, bank.multiset, { generator = generator(opts) })
  -- multisets keep the draw order: a positional model's bank is in slot order
  return bank.multiset and codes or sorted_rows(codes)
end, "codes drawn uniformly at random from 1..K, no parents (a baseline)")

M.register("slot_marginal", function(bank, n, opts)
  local counts = {}
  local L = bank.codes:size(2)
  for i = 1, L do
    counts[i] = require("pivq.quant.vq").code_counts(bank.codes:select(2, i), bank.K):float():view(1, -1)
  end
  -- L x K frequencies -> L x n draws with replacement -> n x L, slot i from slot i's frequencies
  local draws = random.multinomial(tensor.cat(counts, 1), n, true, { generator = generator(opts) })
  return draws:t():contiguous()
end, "slot i's code drawn from slot i's frequencies, no parents (the positional model's baseline)")

return M
