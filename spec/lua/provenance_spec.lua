-- Provenance of samples (issue 20): on a hand-made code bank whose images hold disjoint blocks of
-- codes, a sample's codes name the images they came from, so the recorded parents and the codes
-- taken from each can be checked against the codes themselves.
local pivq = require "pivq"
local sample, random = pivq.sample, pivq

local N, L = 6, 4
-- image i holds codes (i-1)*L+1 .. i*L
local function block_bank(multiset)
  local rows = {}
  for i = 1, N do
    rows[i] = {}
    for j = 1, L do rows[i][j] = (i - 1) * L + j end
  end
  return { codes = pivq.tensor(rows, "int64"), K = N * L, multiset = multiset or false }
end
local function image_of(code) return math.floor((code - 1) / L) + 1 end

local function sorted(t)
  local o = {}
  for i, v in ipairs(t) do o[i] = v end
  table.sort(o)
  return o
end

local function concat(lists)
  local o = {}
  for _, l in ipairs(lists) do for _, v in ipairs(l) do o[#o + 1] = v end end
  return sorted(o)
end

-- every taken code is held by its parent, and the taken codes (plus `other`) are the sample's
local function check_taken(bank, codes, prov, s)
  local row = codes:select(1, s):totable()
  local taken = prov:taken(s)
  for p, i in ipairs(prov:parents(s)) do
    local parent = pivq.CodeSet(bank.codes:select(1, i):totable(), { K = bank.K, multiset = bank.multiset })
    local got = pivq.CodeSet(taken[p], { K = bank.K, multiset = bank.multiset })
    assert.is_true((got - parent):size() == 0, string.format("sample %d: codes of parent %d not in image %d", s, p, i))
  end
  local all = { prov.samples[s].other }
  for p = 1, #taken do all[#all + 1] = taken[p] end
  assert.are.same(sorted(row), concat(all), "sample " .. s)
end

describe("provenance", function()
  it("pair: the recorded parents are the images the codes come from, and the bank's draws", function()
    local bank = block_bank()
    local codes, prov = sample.codes("pair", bank, 20, { seed = 7 })
    assert.are.equal("pair", prov.strategy)
    assert.are.equal(7, prov.seed)
    assert.is_true(prov.recorded)
    -- the generator's draws replayed: a, b, then the point on the path (L + 1 frames, or 1)
    local g = random.Generator(7)
    local function pick(n) return random.randint(1, n + 1, { 1 }, { generator = g })[1] end
    for s = 1, 20 do
      local a, b = pick(N), pick(N)
      pick(a == b and 1 or L + 1)
      assert.are.same({ a, b }, prov:parents(s), "sample " .. s)
      -- from the codes alone: those in image a's block were kept from a, those in b's brought in
      local from_a, from_b = {}, {}
      for _, k in ipairs(codes:select(1, s):totable()) do
        local img = image_of(k)
        assert.is_true(img == a or img == b, "sample " .. s .. " holds a code of image " .. img)
        if img == a then from_a[#from_a + 1] = k else from_b[#from_b + 1] = k end
      end
      assert.are.same(sorted(from_a), prov:taken(s)[1])
      assert.are.same(sorted(from_b), prov:taken(s)[2])
      assert.are.equal(#from_b, prov.samples[s].exchanged)
      assert.are.same({}, prov.samples[s].other)
      check_taken(bank, codes, prov, s)
    end
    assert.matches("sample 1 %(pair, seed 7%): parents #%d+", prov:describe(1))
    assert.matches("provenance of 20 samples %(pair, seed 7%)", tostring(prov))
  end)

  it("exchange: fraction 0 gives the first parent, 1 the second, 0.5 half the differing codes", function()
    local bank = block_bank()
    local c0, p0 = sample.codes("exchange", bank, 12, { seed = 3, fraction = 0 })
    local c1, p1 = sample.codes("exchange", bank, 12, { seed = 3, fraction = 1 })
    local ch, ph = sample.codes("exchange", bank, 12, { seed = 3, fraction = 0.5 })
    for s = 1, 12 do
      local a, b = p0:parents(s)[1], p0:parents(s)[2]
      assert.are.same({ a, b }, p1:parents(s)) -- the same seed draws the same parents
      assert.are.same({ a, b }, ph:parents(s))
      assert.are.same(bank.codes:select(1, a):totable(), c0:select(1, s):totable())
      assert.are.same(bank.codes:select(1, b):totable(), c1:select(1, s):totable())
      local want = a == b and 0 or L / 2
      assert.are.equal(want, ph.samples[s].exchanged)
      assert.are.equal(want, #ph:taken(s)[2])
      check_taken(bank, ch, ph, s)
    end
    local ok, err = pcall(sample.codes, "exchange", bank, 2, { fraction = 1.5 })
    assert.is_false(ok)
    assert.matches("sample strategy 'exchange' failed: .*fraction must be a number in 0..1.*got 1.5", err)
  end)

  it("exchange on a positional model swaps slots", function()
    local bank = block_bank(true)
    local model = { config = { mode = "positional" } }
    local c, p = sample.codes("exchange", bank, 8, { seed = 5, fraction = 0.5, model = model })
    for s = 1, 8 do
      local A = bank.codes:select(1, p:parents(s)[1]):totable()
      local B = bank.codes:select(1, p:parents(s)[2]):totable()
      local row, swapped = c:select(1, s):totable(), 0
      for i = 1, L do
        assert.is_true(row[i] == A[i] or row[i] == B[i], "slot " .. i)
        if row[i] ~= A[i] then swapped = swapped + 1 end
      end
      assert.are.equal(p.samples[s].exchanged, swapped)
      check_taken(bank, c, p, s)
    end
  end)

  it("mix: each code credited to a parent that holds it; nearest banks too", function()
    for _, multiset in ipairs({ false, true }) do
      local bank = block_bank(multiset)
      local codes, prov = sample.codes("mix", bank, 10, { seed = 2, parents = 3 })
      for s = 1, 10 do
        local ps = prov:parents(s)
        assert.are.equal(3, #ps)
        for _, k in ipairs(codes:select(1, s):totable()) do
          local held = false
          for _, i in ipairs(ps) do held = held or image_of(k) == i end
          assert.is_true(held, "code " .. k .. " of sample " .. s)
        end
        check_taken(bank, codes, prov, s)
      end
      codes, prov = sample.codes("pair", bank, 10, { seed = 4 })
      for s = 1, 10 do check_taken(bank, codes, prov, s) end
    end
  end)

  it("strategies without parents say so; files without provenance say they recorded none", function()
    local bank = block_bank()
    local _, prov = sample.codes("marginal", bank, 3, { seed = 1 })
    assert.is_true(prov:parentless())
    assert.are.same({}, prov:parents(2))
    assert.matches("no parents", prov:describe(2))
    assert.matches("draws no parents", prov:json_table().note)
    sample.register("spec_noprov", function(b, n) return b.codes:narrow(1, 1, n) end, "doc", { replace = true })
    local codes
    codes, prov = sample.codes("spec_noprov", bank, 2, { seed = 1 })
    assert.are.equal(2, codes:size(1))
    assert.is_false(prov.recorded)
    assert.is_false(prov:parentless())
    assert.matches("recorded no provenance", prov:json_table().note)
    local ok, err = pcall(prov.parents, prov, 1)
    assert.is_false(ok)
    assert.matches("strategy 'spec_noprov' recorded no provenance", err)
  end)

  it("refuses provenance that does not match the bank, naming the strategy and the sample", function()
    local bank = block_bank()
    local function reg(entry)
      sample.register("spec_bad", function(b) return b.codes:narrow(1, 1, 1), { entry } end, "doc", { replace = true })
    end
    reg({ parents = { 7 } })
    local ok, err = pcall(sample.codes, "spec_bad", bank, 1)
    assert.is_false(ok)
    assert.matches("sample 'spec_bad': provenance of sample 1: parent 1 must be a training index in 1..6, got 7", err)
    reg({ parents = { 2 }, taken = { { 1 } } })
    ok, err = pcall(sample.codes, "spec_bad", bank, 1)
    assert.is_false(ok)
    assert.matches("code 1 is said to come from parent 1 %(training image 2%), which does not hold it", err)
    reg({ parents = { 1 }, taken = { { 1, 2 } }, note = "kept" })
    local _, prov = sample.codes("spec_bad", bank, 1)
    assert.are.same({ 3, 4 }, prov.samples[1].other) -- image 1's other codes, not said to be taken
    assert.are.equal("kept", prov.samples[1].note)
    sample.register("spec_bad", function(b) return b.codes:narrow(1, 1, 2), { { parents = {} } } end, "doc",
      { replace = true })
    ok, err = pcall(sample.codes, "spec_bad", bank, 2)
    assert.is_false(ok)
    assert.matches("provenance must be a list of 2 entries %(one per sample%), got 1 entries", err)
  end)

  it("json_table names parents by index and file, with the codes taken from each", function()
    local bank = block_bank()
    local codes, prov = sample.codes("pair", bank, 2, { seed = 7 })
    local files = { "a.png", "b.png", "c.png", "d.png", "e.png", "f.png" }
    local doc = prov:json_table({ files = files, codes = codes, meta = { checkpoint = "m.safetensors" } })
    assert.are.equal("m.safetensors", doc.checkpoint)
    assert.are.equal(1, doc.index_base)
    for s = 1, 2 do
      local e = doc.samples[s]
      assert.are.same(codes:select(1, s):totable(), e.codes)
      for p, i in ipairs(prov:parents(s)) do
        assert.are.equal(i, e.parents[p].index)
        assert.are.equal(files[i], e.parents[p].file)
        assert.are.same(prov:taken(s)[p], e.parents[p].codes)
      end
    end
    -- and it encodes (no functions or cdata inside)
    assert.is_string(require("dkjson").encode(doc))
  end)
end)
