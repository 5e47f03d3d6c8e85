-- The built-in sampling strategies draw on plain Lua arrays (one point of a path, not the path:
-- issue 21, sampling speed). What they draw must not change: the same seed gives bit-identical
-- codes and provenance to the algorithm they replaced, re-implemented here from the public
-- building blocks (CodeSet, interp.path "random", provenance.attribute, one randint per draw,
-- randperm) exactly as pivq.sample drew before, on small random banks, sets and multisets.
local pivq = require "pivq"
local sample, interp, random = pivq.sample, require "pivq.quant.interp", require "pivq.core.random"
local CodeSet, provenance = pivq.CodeSet, require "pivq.quant.provenance"

-- ---- the reference: the strategies as they were (CodeSets, whole paths, tensor draws) ----------

local function pick(g, n) return random.randint(1, n + 1, { 1 }, { generator = g })[1] end
local function parent(bank, i)
  return CodeSet.new(bank.codes:select(1, i):totable(), { K = bank.K, multiset = bank.multiset })
end

local function ref_pair_sample(bank, g, s, at)
  local N = bank.codes:size(1)
  local a, b = pick(g, N), pick(g, N)
  local path_seed = tonumber(g.cdata.offset) + s
  local A, B = parent(bank, a), parent(bank, b)
  local path = interp.path("random", A, B, { seed = path_seed })
  local row = path[at(#path)]:totable()
  local taken = provenance.attribute(row, { A:totable(), B:totable() })
  return row, { parents = { a, b }, taken = taken, exchanged = #taken[2], differing = #path - 1,
    path_seed = path_seed, path_strategy = "random" }
end

local ref = {}
function ref.pair(bank, n, seed)
  local g, rows, prov = random.Generator(seed), {}, {}
  for s = 1, n do rows[s], prov[s] = ref_pair_sample(bank, g, s, function(len) return pick(g, len) end) end
  return rows, prov
end

function ref.exchange(bank, n, seed, fraction, positional)
  local g, rows, prov = random.Generator(seed), {}, {}
  for s = 1, n do
    if positional then
      local N = bank.codes:size(1)
      local a, b = pick(g, N), pick(g, N)
      local A, B = bank.codes:select(1, a):totable(), bank.codes:select(1, b):totable()
      local differ = {}
      for i = 1, #A do if A[i] ~= B[i] then differ[#differ + 1] = i end end
      local k = math.floor(fraction * #differ + 0.5)
      local row, from_b, ta, tb = {}, {}, {}, {}
      if k > 0 then
        local perm = random.randperm(#differ, { generator = g })
        for j = 1, k do from_b[differ[perm[j]]] = true end
      end
      for i = 1, #A do
        row[i] = from_b[i] and B[i] or A[i]
        if from_b[i] then tb[#tb + 1] = B[i] else ta[#ta + 1] = A[i] end
      end
      rows[s], prov[s] = row, { parents = { a, b }, taken = { ta, tb }, exchanged = k, differing = #differ }
    else
      rows[s], prov[s] = ref_pair_sample(bank, g, s,
        function(len) return math.floor(fraction * (len - 1) + 0.5) + 1 end)
    end
    prov[s].fraction = fraction
  end
  return rows, prov
end

function ref.mix(bank, n, seed, m)
  local g, rows, prov = random.Generator(seed), {}, {}
  local N, L = bank.codes:size(1), bank.codes:size(2)
  for s = 1, n do
    local pool, who = CodeSet.new({}, { K = bank.K, multiset = bank.multiset }), {}
    for p = 1, m do
      who[p] = pick(g, N)
      pool = pool:union(parent(bank, who[p]))
    end
    local items = pool:totable()
    local perm = random.randperm(#items, { generator = g })
    local row = {}
    for i = 1, L do row[i] = items[perm[i]] end
    table.sort(row)
    local parent_rows = {}
    for p, i in ipairs(who) do parent_rows[p] = bank.codes:select(1, i):totable() end
    rows[s], prov[s] = row, { parents = who, taken = provenance.attribute(row, parent_rows) }
  end
  return rows, prov
end

function ref.marginal(bank, n, seed)
  local counts = require("pivq.quant.vq").code_counts(bank.codes, bank.K):float()
  local probs = counts:view(1, -1):expand(n, bank.K):contiguous()
  local draws = random.multinomial(probs, bank.codes:size(2), bank.multiset, { generator = random.Generator(seed) })
  local rows = {}
  for i = 1, n do
    rows[i] = draws:select(1, i):totable()
    table.sort(rows[i])
  end
  return rows
end

-- ---- banks ---------------------------------------------------------------------------------------

-- N random images of L codes in 1..K (a set: distinct, rows sorted; a multiset: repeats allowed,
-- rows in draw order when positional, else sorted), from a fixed generator
local function make_bank(N, L, K, multiset, positional, seed)
  local g = random.Generator(seed)
  local rows = {}
  for i = 1, N do
    local row
    if multiset then
      row = random.randint(1, K + 1, { L }, { generator = g }):totable()
    else
      local perm = random.randperm(K, { generator = g }):totable()
      row = { unpack(perm, 1, L) }
    end
    if not positional then table.sort(row) end
    rows[i] = row
  end
  return { codes = pivq.tensor(rows, "int64"), K = K, multiset = multiset }
end

local function same(codes, prov, rows, entries)
  assert.are.same(rows, codes:totable())
  if not entries then return end
  for s = 1, #rows do
    local e, got = entries[s], prov.samples[s]
    assert.are.same(e.parents, got.parents, "parents of sample " .. s)
    local want_taken = {}
    for p, t in ipairs(e.taken) do
      want_taken[p] = { unpack(t) }
      table.sort(want_taken[p])
    end
    assert.are.same(want_taken, got.taken, "taken of sample " .. s)
    for _, k in ipairs({ "exchanged", "differing", "path_seed", "path_strategy", "fraction" }) do
      assert.are.equal(e[k], got[k], k .. " of sample " .. s)
    end
  end
end

describe("the built-in strategies draw what the CodeSet/path algorithm drew", function()
  local banks = {
    set = make_bank(40, 6, 24, false, false, 11),
    small_K = make_bank(25, 8, 10, false, false, 12), -- parents share most codes
    multiset = make_bank(30, 7, 5, true, false, 13), -- many repeats
  }

  for name, bank in pairs(banks) do
    it("pair, " .. name, function()
      for _, seed in ipairs({ 0, 1, 977 }) do
        local codes, prov = sample.codes("pair", bank, 60, { seed = seed })
        same(codes, prov, ref.pair(bank, 60, seed))
      end
    end)

    it("exchange at fractions 0, 0.3, 0.5, 1, " .. name, function()
      for _, f in ipairs({ 0, 0.3, 0.5, 1 }) do
        local codes, prov = sample.codes("exchange", bank, 50, { seed = 5, fraction = f })
        same(codes, prov, ref.exchange(bank, 50, 5, f))
      end
    end)

    it("mix with 1, 2, 3 and 5 parents, " .. name, function()
      for _, m in ipairs({ 1, 2, 3, 5 }) do
        local codes, prov = sample.codes("mix", bank, 50, { seed = 3, parents = m })
        same(codes, prov, ref.mix(bank, 50, 3, m))
      end
    end)

    it("marginal, " .. name, function()
      local codes = sample.codes("marginal", bank, 40, { seed = 8 })
      same(codes, nil, ref.marginal(bank, 40, 8))
    end)
  end

  it("exchange on a positional model swaps slots as before", function()
    local bank = make_bank(30, 7, 6, true, true, 14)
    local model = { config = { mode = "positional" } }
    for _, f in ipairs({ 0, 0.5, 1 }) do
      local codes, prov = sample.codes("exchange", bank, 40, { seed = 2, fraction = f, model = model })
      same(codes, prov, ref.exchange(bank, 40, 2, f, true))
    end
  end)

  it("a generator passed in is drawn from as before, and left where the reference leaves it", function()
    local bank = banks.set
    local g1, g2 = random.Generator(42), random.Generator(42)
    local codes = sample.codes("pair", bank, 20, { generator = g1 })
    local rows = {}
    for s = 1, 20 do rows[s] = ref_pair_sample(bank, g2, s, function(len) return pick(g2, len) end) end
    assert.are.same(rows, codes:totable())
    assert.are.equal(tonumber(g2.cdata.offset), tonumber(g1.cdata.offset))
  end)

  it("a user's replacement of interp's 'random' is still used (the whole path is built)", function()
    local bank = banks.set
    -- a different path: B's codes in ascending order replacing A's in descending order
    interp.register("random", function(A, B, opts)
      local rem, add = A:diff(B)
      local swaps = {}
      for i = 1, #rem do swaps[i] = { remove = rem[#rem + 1 - i], add = add[i] } end
      return interp.path_from_swaps(A, swaps, opts.steps)
    end, "test replacement", { replace = true })
    local ok, err = pcall(function()
      local codes, prov = sample.codes("exchange", bank, 30, { seed = 4, fraction = 0.5 })
      local rows, entries = ref.exchange(bank, 30, 4, 0.5) -- interp.path "random" is the replacement
      same(codes, prov, rows, entries)
      interp.register("random", interp._random_path, "restored", { replace = true })
      local fast = sample.codes("exchange", bank, 30, { seed = 4, fraction = 0.5 }):totable()
      assert.are_not.same(rows, fast) -- the replacement made a difference, so the check above means something
    end)
    interp.register("random", interp._random_path,
      "replace A's codes by B's one at a time in a random order (different seeds, different paths)", { replace = true })
    assert(ok, err)
  end)

  it("a bank row outside 1..K or repeating a code in a set is refused, naming the strategy", function()
    local bad = { codes = pivq.tensor({ { 1, 2, 3 }, { 2, 2, 4 } }, "int64"), K = 5, multiset = false }
    local ok, err = pcall(sample.codes, "mix", bad, 20, { seed = 1, parents = 2 })
    assert.is_false(ok)
    assert.matches("strategy 'mix'.*appears twice", err)
    bad = { codes = pivq.tensor({ { 1, 2, 3 }, { 2, 3, 9 } }, "int64"), K = 5, multiset = false }
    ok, err = pcall(sample.codes, "pair", bad, 20, { seed = 1 })
    assert.is_false(ok)
    assert.matches("strategy 'pair'.*1%.%.5", err)
  end)
end)
