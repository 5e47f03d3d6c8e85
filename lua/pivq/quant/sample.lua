-- pivq.sample: interpolation-based sampling (the paper's single-forward-pass generation), as a
-- registry of strategies like pivq.interp.
--
-- A strategy is fn(bank, n, opts) -> an n x L int64 tensor of codes (1-based, in 1..bank.K; for a
-- matching model, whose bank.multiset is false, no code twice in a row) and, optionally, its
-- provenance: a list of n entries {parents = {training indices}, taken = {{codes}, ...}, ...}
-- (pivq.provenance; parents = {} for a strategy that draws none). bank is a pivq.bank
-- Bank (bank.codes, bank.K, bank.multiset, bank.labels, bank:size(), bank:codes_of(i),
-- bank:random_parents(n, k, g)); opts holds seed (number), generator (a pivq.Generator seeded
-- from seed: draw from it for reproducible samples), parents (number or nil), model (the
-- pivq.PIVQ, or nil), codebook (K x c float32 tensor, or nil) and whatever else the caller passed.
-- recipes/README.md, "Strategy files", documents each field; `pivq new-strategy NAME` writes a
-- commented template. pivq.sample.codes checks what a strategy returns (shape, range, no repeats
-- in a set, the provenance's parents and codes) and names the strategy in every error; it returns
-- codes, prov (a pivq.provenance.Provenance). An error or os.exit inside a strategy makes
-- the command fail. A strategy file is code (it runs with your rights, like a recipe);
-- checkpoints are data and never execute.
--
-- Built-ins:
--   pair      two random training images as parents, a random point on a random path
--   exchange  two random parents, round(fraction x d) of the d codes in which they differ taken
--             from the second (opts.fraction in 0..1, default 0.5; fraction 0 returns the first
--             parent's own codes); positional models exchange slots instead
--   mix       m parents (opts.parents, default 3); L codes drawn from their union without repetition
--   marginal  no parents: codes drawn from the training set's code frequencies (the baseline)
--   uniform   no parents: codes drawn uniformly from 1..K (the positional baseline's random codes)
--   slot_marginal  no parents: slot i's code drawn from the frequencies of slot i (for positional
--             models, whose bank keeps codes in slot order; the strongest prior-free baseline)
local CodeSet = require "pivq.quant.CodeSet"
local provenance = require "pivq.quant.provenance"
local random = require "pivq.core.random"
local tensor = require "pivq.core.tensor"
local C = require("pivq.core.ffi").C
local check_rc = require("pivq.core.gc").check_rc

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
  -- seen[k] == r + 1: code k met in row r (one array over 1..K for all rows, never cleared)
  local seen = {}
  for k = 1, math.min(bank.K, 65536) do seen[k] = 0 end -- (a larger K: a hash, as correct)
  for r = 0, n - 1 do
    for j = 0, L - 1 do
      local k = tonumber(p[r * L + j])
      if k < 1 or k > bank.K then
        error(string.format("%s: codes must lie in 1..%d (1-based), got %d in row %d", what, bank.K, k, r + 1), 3)
      end
      if seen[k] == r + 1 and not bank.multiset then
        error(string.format("%s: row %d repeats code %d, but a matching model's codes are a set (distinct)",
          what, r + 1, k), 3)
      end
      seen[k] = r + 1
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
  local codes, entries = strategies:call(name, bank, n, sopts)
  codes = check_codes(name, codes, n, bank.codes:size(2), bank)
  return codes, provenance.check(name, entries, codes, bank, sopts)
end

-- pivq.sample.draw(model, name, bank, n, opts): codes, then images decoded in one forward pass;
-- returns images, codes, prov.
function M.draw(model, name, bank, n, opts)
  if type(model) ~= "table" or type(model.decode) ~= "function" then
    error("sample.draw: model must be a model with a decode method, got " .. type(model), 2)
  end
  local codes, prov = M.codes(name, bank, n, opts)
  return model:decode(codes), codes, prov
end

local function generator(opts) return opts.generator or random.Generator(opts.seed or 0) end

-- uniform integer in 1..n from a generator
local function pick(g, n) return random.randint(1, n + 1, { 1 }, { generator = g })[1] end

local function parent(bank, i)
  return CodeSet.new(bank.codes:select(1, i):totable(), { K = bank.K, multiset = bank.multiset })
end

-- ---- drawing cheaply ------------------------------------------------------------------------
-- The built-in strategies draw thousands of samples per call, so they work on plain Lua arrays:
-- the bank's rows read once through the data pointer, one reused 1-element tensor for each
-- single draw (the same C call, so the same numbers as pick), and only the one point of a path
-- that a sample needs. spec/lua/sample_draw_spec.lua pins them to the CodeSet/interp.path
-- algorithm they replace, draw for draw.

-- picker(g)(n): pick(g, n) without a new tensor and options table per draw
local function picker(g)
  local t = tensor.tensor({ 0 }, "int64")
  local p = t:data_ptr()
  return function(n)
    check_rc(C.pivq_randint_(t.c, 1, n + 1, g.cdata))
    return tonumber(p[0])
  end
end

-- random.randperm(n) from g as a Lua array (1-based), or {} for n = 0 (no draw, as shuffled())
local function perm_of(n, g)
  if n == 0 then return {} end
  local t = random.randperm(n, { generator = g })
  local p, out = t:data_ptr(), {}
  for i = 1, n do out[i] = tonumber(p[i - 1]) end
  return out
end

-- rows(bank)(i, sorted): bank row i as a Lua array (cached), in slot order or sorted; checked
-- as CodeSet.new checks a parent (codes in 1..K, a set's codes distinct)
local function rows_of(bank)
  local codes = bank.codes:contiguous()
  local L, p = codes:size(2), codes:data_ptr()
  local raw, sorted = {}, {}
  local function get(i, want_sorted)
    local r = raw[i]
    if not r then
      r = {}
      for j = 1, L do
        local k = tonumber(p[(i - 1) * L + j - 1])
        if k < 1 or k > bank.K then
          error(string.format("CodeSet: code %s is not an integer in 1..%s", tostring(k), tostring(bank.K)), 0)
        end
        r[j] = k
      end
      raw[i] = r
    end
    if not want_sorted then return r end
    local s = sorted[i]
    if not s then
      s = {}
      local in_order = true
      for j = 1, L do
        s[j] = r[j]
        if j > 1 and s[j] < s[j - 1] then in_order = false end
      end
      if not in_order then table.sort(s) end
      for j = 2, L do
        if s[j] == s[j - 1] and not bank.multiset then
          error(string.format("CodeSet: code %d appears twice in a set (use {multiset = true})", s[j]), 0)
        end
      end
      sorted[i] = s
    end
    return s
  end
  return get, codes -- codes kept alive with the pointer
end

-- an n x L int64 tensor of n Lua rows of L codes, written through the data pointer (tensor.tensor
-- walks nested tables slowly); rows of another length go to tensor.tensor (and its error)
local function rows_tensor(rows, L)
  for s = 1, #rows do
    if #rows[s] ~= L then return tensor.tensor(rows, "int64") end
  end
  local t = tensor.empty(#rows, L, "int64")
  local p = t:data_ptr()
  for s = 1, #rows do
    local r = rows[s]
    for j = 1, L do p[(s - 1) * L + j - 1] = r[j] end
  end
  return t
end

-- taken[p]: each code of the sorted row given to the first parent (in order) that still holds an
-- unused copy (provenance.attribute on sorted parent rows, by merging)
local function attribute_sorted(row, parents)
  local taken, at = {}, {}
  for q = 1, #parents do
    taken[q], at[q] = {}, 1
  end
  for _, k in ipairs(row) do
    for q = 1, #parents do
      local P, j = parents[q], at[q]
      while P[j] and P[j] < k do j = j + 1 end
      at[q] = j
      if P[j] == k then
        at[q] = j + 1
        local t = taken[q]
        t[#t + 1] = k
        break
      end
    end
  end
  return taken
end

-- the codes of sorted A not in sorted B and of B not in A (with multiplicities), sorted: A:diff(B)
local function sorted_diff(A, B)
  local rem, add, i, j = {}, {}, 1, 1
  while i <= #A or j <= #B do
    local a, b = A[i], B[j]
    if b == nil or (a ~= nil and a < b) then
      rem[#rem + 1] = a
      i = i + 1
    elseif a == nil or b < a then
      add[#add + 1] = b
      j = j + 1
    else
      i, j = i + 1, j + 1
    end
  end
  return rem, add
end

-- point t of interp's built-in "random" path from A to B (both sorted) with seed path_seed: A
-- with the first t - 1 of its shuffled swaps made, sorted; at(len) picks t from the path's length
local function random_path_point(A, B, gp, path_seed, at)
  local rem, add = sorted_diff(A, B)
  gp:manual_seed(path_seed)
  local pr, pa = perm_of(#rem, gp), perm_of(#add, gp)
  local d = #rem
  local t = at(d + 1)
  -- the swaps made: removals and additions by position in the sorted lists (so no sort below)
  local out_r, in_a = {}, {}
  for i = 1, t - 1 do
    out_r[pr[i]], in_a[pa[i]] = true, true
  end
  -- merge A without the removed with the added, both ascending
  local row, i, j = {}, 1, 1
  local r = 1 -- next removal position: rem is the ascending sub-list of A's removable codes
  local kept = {}
  for _, k in ipairs(A) do
    if rem[r] == k then
      if not out_r[r] then kept[#kept + 1] = k end
      r = r + 1
    else
      kept[#kept + 1] = k
    end
  end
  local added = {}
  for q = 1, d do
    if in_a[q] then added[#added + 1] = add[q] end
  end
  while i <= #kept or j <= #added do
    local a, b = kept[i], added[j]
    if b == nil or (a ~= nil and a <= b) then
      row[#row + 1] = a
      i = i + 1
    else
      row[#row + 1] = b
      j = j + 1
    end
  end
  return row, d
end

-- one parent-pair sample: parents a, b, the path between them and the point `at` on it (a function
-- of the path's length); the row and its provenance entry
local function pair_sample(bank, g, s, opts, at)
  local interp = require "pivq.quant.interp"
  local N = bank.codes:size(1)
  local a, b = pick(g, N), pick(g, N)
  local path_seed = tonumber(g.cdata.offset) + s
  local A, B = parent(bank, a), parent(bank, b)
  local path = interp.path(opts.path_strategy or "random", A, B,
    { seed = path_seed, model = opts.model, codebook = opts.codebook })
  local t = at(#path)
  local row = path[t]:totable()
  local taken = provenance.attribute(row, { A:totable(), B:totable() })
  return row, { parents = { a, b }, taken = taken, exchanged = #taken[2], differing = #path - 1,
    path_seed = path_seed, path_strategy = opts.path_strategy or "random" }
end

-- the samples of pair (at = nil: a random point) and exchange (at(len) a fixed point): rows and
-- provenance; the path built by interp.path when opts.path_strategy is not the built-in random
local function pair_samples(bank, n, opts, g, at)
  local interp = require "pivq.quant.interp"
  local strategy = opts.path_strategy or "random"
  local rows, prov = {}, {}
  if strategy ~= "random" or interp.get("random") ~= interp._random_path then
    for s = 1, n do
      rows[s], prov[s] = pair_sample(bank, g, s, opts, at or function(len) return pick(g, len) end)
    end
    return rows, prov
  end
  local draw, get = picker(g), rows_of(bank)
  local gp = random.Generator(0)
  local point = at or draw
  local N = bank.codes:size(1)
  for s = 1, n do
    local a, b = draw(N), draw(N)
    local path_seed = tonumber(g.cdata.offset) + s
    local A, B = get(a, true), get(b, true)
    local row, d = random_path_point(A, B, gp, path_seed, point)
    local taken = attribute_sorted(row, { A, B })
    rows[s] = row
    prov[s] = { parents = { a, b }, taken = taken, exchanged = #taken[2], differing = d,
      path_seed = path_seed, path_strategy = strategy }
  end
  return rows, prov
end

M.register("pair", function(bank, n, opts)
  local rows, prov = pair_samples(bank, n, opts, generator(opts))
  return rows_tensor(rows, bank.codes:size(2)), prov
end, "two random training images as parents, a random point on a random path between them")

-- positional models: slot i keeps A's code or takes B's; the n exchanged slots drawn at random
-- among the slots where A and B differ
local function slot_exchange(bank, g, fraction, draw, get)
  local N = bank.codes:size(1)
  local a, b = draw(N), draw(N)
  local A, B = get(a), get(b)
  local differ = {}
  for i = 1, #A do
    if A[i] ~= B[i] then differ[#differ + 1] = i end
  end
  local k = math.floor(fraction * #differ + 0.5)
  local row, from_b = {}, {}
  for i = 1, #A do row[i] = A[i] end
  if k > 0 then
    local perm = perm_of(#differ, g)
    for j = 1, k do from_b[differ[perm[j]]] = true end
  end
  local ta, tb = {}, {}
  for i = 1, #A do
    if from_b[i] then
      row[i] = B[i]
      tb[#tb + 1] = B[i]
    else
      ta[#ta + 1] = A[i]
    end
  end
  return row, { parents = { a, b }, taken = { ta, tb }, exchanged = k, differing = #differ }
end

M.register("exchange", function(bank, n, opts)
  local fraction = opts.fraction == nil and 0.5 or opts.fraction
  if type(fraction) ~= "number" or fraction ~= fraction or fraction < 0 or fraction > 1 then
    error("fraction must be a number in 0..1 (the share of differing codes taken from the second parent), got "
      .. tostring(fraction), 2)
  end
  local g = generator(opts)
  local positional = opts.model and opts.model.config and opts.model.config.mode == "positional"
  local rows, prov = {}, {}
  if positional then
    local draw, get = picker(g), rows_of(bank)
    for s = 1, n do rows[s], prov[s] = slot_exchange(bank, g, fraction, draw, get) end
  else
    rows, prov = pair_samples(bank, n, opts, g, function(len) return math.floor(fraction * (len - 1) + 0.5) + 1 end)
  end
  for s = 1, n do prov[s].fraction = fraction end
  return rows_tensor(rows, bank.codes:size(2)), prov
end, "two random parents; opts.fraction (0..1, default 0.5) of the codes in which they differ taken from the second")

M.register("mix", function(bank, n, opts)
  local g = generator(opts)
  local m = opts.parents or 3
  local N, L, rows, prov = bank.codes:size(1), bank.codes:size(2), {}, {}
  local draw, get = picker(g), rows_of(bank)
  for s = 1, n do
    -- pool: the union of the parents' codes (with multiplicities for multisets: the largest),
    -- ascending, by merging the sorted parent rows
    local who, parents, at = {}, {}, {}
    for p = 1, m do
      who[p] = draw(N)
      parents[p], at[p] = get(who[p], true), 1
    end
    local items = {}
    while true do
      local v
      for p = 1, m do
        local k = parents[p][at[p]]
        if k and (not v or k < v) then v = k end
      end
      if not v then break end
      local most = 0
      for p = 1, m do
        local P, j = parents[p], at[p]
        local c = 0
        while P[j + c] == v do c = c + 1 end
        at[p] = j + c
        if c > most then most = c end
      end
      for _ = 1, most do items[#items + 1] = v end
    end
    -- L items at random positions, read in ascending position order: the row comes sorted
    local perm = perm_of(#items, g)
    local chosen = {}
    for i = 1, math.min(L, #items) do chosen[perm[i]] = true end
    local row = {}
    for q = 1, #items do
      if chosen[q] then row[#row + 1] = items[q] end
    end
    rows[s] = row
    prov[s] = { parents = who, taken = attribute_sorted(row, parents) }
  end
  return rows_tensor(rows, L), prov
end, "m parents (opts.parents, default 3): L codes drawn without repetition from their union")

-- the provenance of n samples drawn from no parent
local function no_parents(n)
  local out = {}
  for s = 1, n do out[s] = { parents = {} } end
  return out
end

-- each row of an n x L code tensor sorted (a set or multiset has no order to keep)
local function sorted_rows(codes)
  codes = codes:contiguous()
  local n, L, p = codes:size(1), codes:size(2), codes:data_ptr()
  local rows = {}
  for i = 1, n do
    local row = {}
    for j = 1, L do row[j] = tonumber(p[(i - 1) * L + j - 1]) end
    table.sort(row)
    rows[i] = row
  end
  return rows_tensor(rows, L)
end

M.register("marginal", function(bank, n, opts)
  local g = generator(opts)
  local L = bank.codes:size(2)
  local counts = require("pivq.quant.vq").code_counts(bank.codes, bank.K):float()
  local probs = counts:view(1, -1):expand(n, bank.K):contiguous()
  -- sets draw without replacement (distinct codes); multisets with
  return sorted_rows(random.multinomial(probs, L, bank.multiset, { generator = g })), no_parents(n)
end, "codes drawn from the training set's code frequencies, no parents (the baseline)")

M.register("uniform", function(bank, n, opts)
  local L = bank.codes:size(2)
  local probs = tensor.ones(n, bank.K)
  local codes = random.multinomial(probs, L, bank.multiset, { generator = generator(opts) })
  -- multisets keep the draw order: a positional model's bank is in slot order
  return bank.multiset and codes or sorted_rows(codes), no_parents(n)
end, "codes drawn uniformly at random from 1..K, no parents (a baseline)")

M.register("slot_marginal", function(bank, n, opts)
  local counts = {}
  local L = bank.codes:size(2)
  for i = 1, L do
    counts[i] = require("pivq.quant.vq").code_counts(bank.codes:select(2, i), bank.K):float():view(1, -1)
  end
  -- L x K frequencies -> L x n draws with replacement -> n x L, slot i from slot i's frequencies
  local draws = random.multinomial(tensor.cat(counts, 1), n, true, { generator = generator(opts) })
  return draws:t():contiguous(), no_parents(n)
end, "slot i's code drawn from slot i's frequencies, no parents (the positional model's baseline)")

return M
