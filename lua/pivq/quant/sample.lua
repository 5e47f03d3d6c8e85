-- pivq.sample: interpolation-based sampling (the paper's single-forward-pass generation), as a
-- registry of strategies like pivq.interp.
--
-- A strategy is fn(bank, n, opts) -> n x L int64 codes (1-based), where bank is
-- {codes = N x L int64 tensor of training images' codes, K = codebook size, multiset = bool}.
-- The caller decodes the whole batch in one forward pass (pivq.sample.draw does both).
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

function M.register(name, fn, doc) strategies:register(name, fn, doc) end
function M.list() return strategies:list() end
-- Load a user's strategy file (it registers itself). Returns the names it added, or nil, err.
function M.load_file(path) return strategies:load_file(path) end

local function check_bank(bank)
  if type(bank) ~= "table" or not tensor.is_tensor(bank.codes) or bank.codes:dim() ~= 2 or bank.codes:size(1) == 0
    or bank.codes:dtype() ~= "int64" or type(bank.K) ~= "number" or bank.K % 1 ~= 0 or bank.K < 1 then
    error("sample: bank must be {codes = N x L int64 tensor (N >= 1), K = codebook size, multiset = bool}", 3)
  end
end

-- pivq.sample.codes(name, bank, n, opts): n x L codes from a registered strategy.
function M.codes(name, bank, n, opts)
  check_bank(bank)
  -- at most as many codes as a tensor may hold (beyond, the strategies would loop for ages)
  if type(n) ~= "number" or n % 1 ~= 0 or n < 1 or n * bank.codes:size(2) > 2 ^ 36 then
    error("sample.codes: n must be a positive integer (n x L at most 2^36), got " .. tostring(n), 2)
  end
  opts = argcheck.options("sample.codes", opts)
  if opts.seed ~= nil then argcheck.u53("sample.codes", "seed", opts.seed) end
  argcheck.generator("sample.codes", opts)
  local codes = strategies:get(name)(bank, n, opts)
  local L = bank.codes:size(2)
  if not tensor.is_tensor(codes) or codes:dim() ~= 2 or codes:size(1) ~= n or codes:size(2) ~= L then
    error(string.format("sample '%s': the strategy must return a %d x %d tensor of codes", name, n, L), 2)
  end
  return codes
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
